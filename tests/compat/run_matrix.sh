#!/usr/bin/env bash
# Cython x CPython compatibility matrix for the cymem_rs Cython declarations.
#
#   tests/compat/run_matrix.sh WHEEL_DIR
#
# For each CPython in $PYTHONS and each Cython in $CYTHONS, a venv under
# build/compat/ gets that Cython, setuptools and the cymem_rs wheel for that
# interpreter from WHEEL_DIR (a real install, not editable; `make dist` builds
# the wheels). tests/compat/smoke.pyx is then compiled against the installed
# package, with no include_dirs, as C and as C++, imported, and its smoke test
# run (tests/compat/driver.py). Two (CPython, Cython) pairs run at a time.
# Venvs are reused when they already hold the right versions.
#
# Prints one line per combination, then `N passed, M failed`; exits non-zero
# if any combination failed. Logs: build/compat/logs/.
#
# Overrides (space-separated): PYTHONS="3.9 3.13" CYTHONS="3.0.12 3.3.1" JOBS=2
set -euo pipefail

# The newest patch of each Cython minor release (`pip index versions cython`).
CYTHONS=${CYTHONS:-"3.0.12 3.1.8 3.2.9 3.3.1"}
PYTHONS=${PYTHONS:-"3.9 3.10 3.11 3.12 3.13"}
JOBS=${JOBS:-2}
LANGS="c c++"

die() { echo "run_matrix: $*" >&2; exit 2; }

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=tests/compat/lib.sh
. "$root/tests/compat/lib.sh"
[ $# -eq 1 ] || die "usage: $0 WHEEL_DIR"
wheel_dir=$(cd "$1" && pwd)
cd "$root"

compat_dir=$root/build/compat
log_dir=$compat_dir/logs
result_dir=$compat_dir/results
mkdir -p "$log_dir"
rm -rf "$result_dir" && mkdir -p "$result_dir"
# Nothing from the caller's environment may point Python or Cython at the
# source checkout.
unset PYTHONPATH PYTHONHOME VIRTUAL_ENV CFLAGS CXXFLAGS || true

start_time=$SECONDS

declare -A PY WHEEL
for v in $PYTHONS; do
    PY[$v]=$(python_for "$v") || die "no CPython $v"
    WHEEL[$v]=$(wheel_for "$wheel_dir" "$v") || die "no wheel for CPython $v"
done

# Reuses the venv only if what is installed really is what its stamp says.
setup_venv() {  # python-minor cython-version venv-dir log
    local v=$1 cy=$2 venv=$3 log=$4
    local py=${PY[$v]} wheel=${WHEEL[$v]}
    local want_py stamp have
    want_py=$("$py" -c 'import sys; print(sys.version.split()[0])')
    stamp="python=$want_py cython=$cy wheel=$(sha256sum "$wheel" | cut -d' ' -f1)"
    if [ -x "$venv/bin/python" ] && [ -f "$venv/compat-stamp" ]; then
        have=$("$venv/bin/python" -c '
import sys, Cython, setuptools, importlib.metadata as m
print(sys.version.split()[0], Cython.__version__, m.version("cymem_rs"))' 2>/dev/null || true)
        if [ "$(cat "$venv/compat-stamp")" = "$stamp" ] && [ "${have% *}" = "$want_py $cy" ]; then
            return 0
        fi
    fi
    fresh_venv "$py" "$venv" >>"$log" 2>&1 || return 1
    pip_into "$py" "$venv" "cython==$cy" setuptools "$wheel" >>"$log" 2>&1 || return 1
    echo "$stamp" >"$venv/compat-stamp"
}

# One (CPython, Cython) pair: its venv, then C and C++. Writes one result
# line per language to $result_dir.
run_pair() {  # python-minor cython-version
    local v=$1 cy=$2 venv=$compat_dir/py$1-cy$2 lang log venv_ok=1
    local setup_log=$log_dir/py$v-cy$cy-setup.log
    : >"$setup_log"
    setup_venv "$v" "$cy" "$venv" "$setup_log" || venv_ok=0
    for lang in $LANGS; do
        log=$log_dir/py$v-cy$cy-$lang.log
        if [ $venv_ok = 1 ] &&
            "$venv/bin/python" tests/compat/driver.py "$lang" "$venv/work-$lang" >"$log" 2>&1; then
            echo "$v $cy $lang PASS $log"
        else
            [ $venv_ok = 1 ] || cp "$setup_log" "$log"
            echo "$v $cy $lang FAIL $log"
        fi >"$result_dir/py$v-cy$cy-$lang"
    done
}

running=0
for v in $PYTHONS; do
    for cy in $CYTHONS; do
        if [ "$running" -ge "$JOBS" ]; then
            wait -n || true
            running=$((running - 1))
        fi
        run_pair "$v" "$cy" &
        running=$((running + 1))
    done
done
wait

passed=0
failed=0
failures=()
printf '%-8s %-8s %-4s %s\n' python cython lang result
for v in $PYTHONS; do
    for cy in $CYTHONS; do
        for lang in $LANGS; do
            result=FAIL log=$log_dir/py$v-cy$cy-$lang.log
            [ -f "$result_dir/py$v-cy$cy-$lang" ] && read -r _ _ _ result log <"$result_dir/py$v-cy$cy-$lang"
            if [ "$result" = PASS ]; then passed=$((passed + 1)); else
                failed=$((failed + 1))
                failures+=("$log")
            fi
            printf '%-8s %-8s %-4s %s\n' "$v" "$cy" "$( [ "$lang" = c ] && echo C || echo C++ )" "$result"
        done
    done
done

for log in "${failures[@]+"${failures[@]}"}"; do
    echo
    echo "--- last lines of $log"
    tail -n 25 "$log" 2>/dev/null || echo "(no log)"
done
echo
echo "matrix time: $((SECONDS - start_time)) s"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
