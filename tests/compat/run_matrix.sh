#!/usr/bin/env bash
# Cython x CPython compatibility matrix for the cymem_rs Cython declarations.
#
#   tests/compat/run_matrix.sh [WHEEL_DIR]      (default: build/wheels)
#
# For each CPython in $PYTHONS and each Cython in $CYTHONS, a venv under
# build/compat/ gets that Cython, setuptools and the cymem_rs wheel for that
# interpreter (a real install, not editable). tests/compat/smoke.pyx is then
# compiled against the installed package, with no include_dirs, as C and as
# C++, imported, and its smoke test run (tests/compat/driver.py).
#
# Wheels missing from WHEEL_DIR are built with maturin, into their own cargo
# target dir (target/wheels) so the dev build in target/release is untouched.
# Venvs are reused when they already hold the right versions.
#
# Prints one line per combination, then `N passed, M failed`; exits non-zero
# if any combination failed. Logs: build/compat/logs/.
#
# Overrides (space-separated): PYTHONS="3.9 3.11 3.13" CYTHONS="3.0.12 3.1.8 3.2.9 3.3.1"
set -euo pipefail

# The newest patch of each Cython minor release (`pip index versions cython`).
CYTHONS=${CYTHONS:-"3.0.12 3.1.8 3.2.9 3.3.1"}
PYTHONS=${PYTHONS:-"3.9 3.11 3.13"}
LANGS="c c++"

die() { echo "run_matrix: $*" >&2; exit 2; }

invocation_dir=$PWD
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
if [ $# -gt 1 ]; then die "usage: $0 [WHEEL_DIR]"; fi
# WHEEL_DIR is relative to the caller's directory; the default to the project.
wheel_dir=${1:-$root/build/wheels}
case $wheel_dir in /*) ;; *) wheel_dir=$invocation_dir/$wheel_dir ;; esac
cd "$root"

compat_dir=$root/build/compat
log_dir=$compat_dir/logs
mkdir -p "$wheel_dir" "$log_dir"
# Nothing from the caller's environment may point Python or Cython at the
# source checkout.
unset PYTHONPATH PYTHONHOME VIRTUAL_ENV CFLAGS CXXFLAGS || true
export PIP_DISABLE_PIP_VERSION_CHECK=1

start_time=$SECONDS

# --- interpreters ---------------------------------------------------------------
declare -A PY
for v in $PYTHONS; do
    # The newest pyenv patch release of this minor version.
    candidates=$(ls -d "$HOME"/.pyenv/versions/"$v".*/bin/python 2>/dev/null | sort -V || true)
    [ -n "$candidates" ] ||
        die "no CPython $v: expected ~/.pyenv/versions/$v.*/bin/python (pyenv install $v)"
    PY[$v]=$(echo "$candidates" | tail -n 1)
    "${PY[$v]}" -c 'import sys, venv' ||
        die "${PY[$v]} does not run or has no venv module"
done

# --- wheels ---------------------------------------------------------------------
declare -A WHEEL
for v in $PYTHONS; do
    tag=cp${v/./}
    wheel=$(ls -t "$wheel_dir"/cymem_rs-*-"$tag"-"$tag"-*.whl 2>/dev/null | head -n 1 || true)
    if [ -z "$wheel" ]; then
        command -v maturin >/dev/null ||
            die "maturin not on PATH (pip install maturin); needed to build the $tag wheel"
        echo "building the cymem_rs wheel for CPython $v (log: $log_dir/wheel-$v.log)"
        CARGO_TARGET_DIR=target/wheels maturin build --release -i "${PY[$v]}" -o "$wheel_dir" \
            >"$log_dir/wheel-$v.log" 2>&1 ||
            { tail -n 30 "$log_dir/wheel-$v.log" >&2; die "maturin build for CPython $v failed"; }
        wheel=$(ls -t "$wheel_dir"/cymem_rs-*-"$tag"-"$tag"-*.whl 2>/dev/null | head -n 1 || true)
        [ -n "$wheel" ] || die "maturin built no $tag wheel into $wheel_dir"
    fi
    WHEEL[$v]=$wheel
    # A wheel built before the last .pxd edit tests the old declarations.
    "${PY[$v]}" - "$wheel" cymem_rs/cymem.pxd <<'EOF' || true
import sys, zipfile
wheel, pxd = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z, open(pxd, "rb") as f:
    if z.read("cymem_rs/cymem.pxd") != f.read():
        print(f"note: {wheel} holds a cymem.pxd that differs from {pxd}; "
              "delete the wheel to test the current one", file=sys.stderr)
EOF
done

# --- venvs ----------------------------------------------------------------------
# Prints nothing; returns non-zero (with the reason in the log) on failure.
setup_venv() {  # python-minor cython-version venv-dir log
    local v=$1 cy=$2 venv=$3 log=$4
    local py=${PY[$v]} wheel=${WHEEL[$v]}
    local want_py want_wheel stamp have
    want_py=$("$py" -c 'import sys; print(sys.version.split()[0])')
    want_wheel=$(sha256sum "$wheel" | cut -d' ' -f1)
    stamp="python=$want_py cython=$cy wheel=$want_wheel"
    if [ -x "$venv/bin/python" ] && [ -f "$venv/compat-stamp" ]; then
        # Reuse only if what is installed really is what the stamp says.
        have=$("$venv/bin/python" -c '
import sys, Cython, setuptools, importlib.metadata as m
print(sys.version.split()[0], Cython.__version__, m.version("cymem_rs"))' 2>/dev/null || true)
        if [ "$(cat "$venv/compat-stamp")" = "$stamp" ] &&
            [ "${have% *}" = "$want_py $cy" ]; then
            return 0
        fi
    fi
    rm -rf "$venv"
    # No pip inside the venv (ensurepip is slow): the interpreter's own pip
    # installs into it with --python.
    "$py" -m venv --without-pip "$venv" >>"$log" 2>&1 || return 1
    "$py" -m pip --python "$venv/bin/python" install --quiet \
        "cython==$cy" setuptools "$wheel" >>"$log" 2>&1 || return 1
    echo "$stamp" >"$venv/compat-stamp"
}

# --- the matrix -----------------------------------------------------------------
passed=0
failed=0
failures=()
printf '%-8s %-8s %-4s %s\n' python cython lang result
for v in $PYTHONS; do
    for cy in $CYTHONS; do
        venv=$compat_dir/py$v-cy$cy
        setup_log=$log_dir/py$v-cy$cy-setup.log
        : >"$setup_log"
        venv_ok=1
        setup_venv "$v" "$cy" "$venv" "$setup_log" || venv_ok=0
        for lang in $LANGS; do
            label=$( [ "$lang" = c ] && echo C || echo C++ )
            log=$log_dir/py$v-cy$cy-$lang.log
            if [ $venv_ok = 1 ] &&
                "$venv/bin/python" tests/compat/driver.py "$lang" "$venv/work-$lang" >"$log" 2>&1; then
                result=PASS
                passed=$((passed + 1))
            else
                result=FAIL
                failed=$((failed + 1))
                [ $venv_ok = 1 ] || cp "$setup_log" "$log"
                failures+=("$log")
            fi
            printf '%-8s %-8s %-4s %s\n' "$v" "$cy" "$label" "$result"
        done
    done
done

for log in "${failures[@]+"${failures[@]}"}"; do
    echo
    echo "--- last lines of $log"
    tail -n 25 "$log"
done
echo
echo "matrix time: $((SECONDS - start_time)) s"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
