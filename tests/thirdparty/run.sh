#!/usr/bin/env bash
# Acceptance test of cymem_rs's promise: take real third-party Cython projects
# that cimport cymem, change only their cymem import/cimport lines and build
# requirements to cymem_rs, build them against a cymem_rs wheel and run THEIR
# OWN test suites. The real cymem is never installed in the venv used here.
#
#   tests/thirdparty/run.sh
#
# Projects (sdists fetched from PyPI with `pip download --no-binary NAME
# --no-deps NAME==VERSION`, cached in build/thirdparty/sdists/):
#   preshed  explosion's hash tables and Bloom filter; cimports cymem.cymem.Pool
#            in maps.pxd, counter.pxd, bloom.pxd
#   thinc    explosion's ML library; cimports Pool in extra/search (the Beam used
#            by spaCy's parser), backends/linalg.pxd, backends/numpy_ops; it
#            also cimports preshed, so it is built against the preshed above
#
# Environment:
#   PYTHON              interpreter to test with (default: .venv/bin/python if
#                       present, else python3); a venv is made from it in
#                       build/thirdparty/venv
#   CYMEM_RS_WHEEL_DIR  take the cymem_rs wheel from here if one fits PYTHON;
#                       otherwise one is built with maturin into build/wheels
#   PROJECTS            which projects to run (default: "preshed thinc");
#                       thinc needs preshed and pulls it in
#   PRESHED_VERSION     default 3.0.15
#   THINC_VERSION       default 8.3.14
#   CYTHON_SPEC         pip requirement for Cython (default "cython>=3.1,<4")
#   FRESH_VENV=1        recreate the venv
#   KEEP_WORK=1         keep the unpacked, rewritten and built source trees
#   PYTEST_ARGS         extra arguments for every project's pytest run
set -euo pipefail
shopt -s inherit_errexit # `x=$(f)` stops at the first failing command in f too

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
OUT=$ROOT/build/thirdparty
# shellcheck source=tests/thirdparty/sources.sh
source "$HERE/sources.sh"
VENV=$OUT/venv
SDISTS=$OUT/sdists
LOGS=$OUT/logs

PROJECTS=${PROJECTS:-preshed thinc}
PYTEST_ARGS=${PYTEST_ARGS:-}
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x "$ROOT/.venv/bin/python" ]]; then PYTHON=$ROOT/.venv/bin/python; else PYTHON=python3; fi
fi

# Nothing from the caller's environment may put another cymem on the path.
unset PYTHONPATH PYTHONHOME PYTHONSTARTUP VIRTUAL_ENV
export PYTHONNOUSERSITE=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

START=$SECONDS
mkdir -p "$SDISTS" "$LOGS"
WORKTMP=$(mktemp -d "${TMPDIR:-/tmp}/cymem_rs_thirdparty.XXXXXX")
cleanup() {
    if [[ "${KEEP_WORK:-0}" == 1 ]]; then
        echo "work trees kept in $WORKTMP"
    else
        rm -rf "$WORKTMP"
    fi
}
trap cleanup EXIT
# Work from a neutral folder: run from the checkout, Python would import the
# source folder cymem_rs/ (no extension module) instead of the installed wheel.
cd "$WORKTMP"

# --- the venv ---------------------------------------------------------------

say "venv: $VENV (from $PYTHON)"
"$PYTHON" -c 'import sys; assert sys.version_info >= (3, 9)' || die "PYTHON=$PYTHON does not run, or is older than Python 3.9"
ORIGIN=$("$PYTHON" -c 'import sys, os; print(sys.version.split()[0], os.path.realpath(sys.executable))')
if [[ "${FRESH_VENV:-0}" == 1 || ! -x "$VENV/bin/python" || "$(cat "$VENV/.origin" 2>/dev/null)" != "$ORIGIN" ]]; then
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
    echo "$ORIGIN" >"$VENV/.origin"
fi
VPY=$VENV/bin/python
echo "python $("$VPY" -c 'import sys; print(sys.version.split()[0])')"
# Build tools and test runner (wheels are fine here: only the projects under
# test and cymem_rs itself must be built from source).
logged pip-tools.log "$VPY" -m pip install --upgrade "pip>=23" "$CYTHON_SPEC" setuptools wheel pytest

no_real_cymem() {
    # The real cymem must not be importable: anything that still needed it would
    # fail instead of silently working.
    if "$VPY" -m pip show cymem >/dev/null 2>&1; then
        echo "the real cymem is installed in $VENV: uninstalling it"
        "$VPY" -m pip uninstall -y cymem
    fi
    "$VPY" - <<'EOF'
import importlib.util, sys
spec = importlib.util.find_spec("cymem")
if spec is not None:
    sys.exit(f"a module named cymem is importable in the test venv: {spec.origin}")
EOF
}

# --- cymem_rs -----------------------------------------------------------------

say "cymem_rs wheel"
WHEEL=""
if [[ -n "${CYMEM_RS_WHEEL_DIR:-}" ]]; then
    if "$VPY" -m pip install --no-index --no-deps --force-reinstall \
        --find-links "$CYMEM_RS_WHEEL_DIR" cymem_rs >"$LOGS/cymem_rs-install.log" 2>&1; then
        WHEEL="from $CYMEM_RS_WHEEL_DIR"
    else
        echo "no cymem_rs wheel for this interpreter in $CYMEM_RS_WHEEL_DIR: building one"
    fi
fi
if [[ -z "$WHEEL" ]]; then
    logged pip-maturin.log "$VPY" -m pip install "maturin>=1.7,<2"
    echo "building: CARGO_TARGET_DIR=target/wheels maturin build --release -o build/wheels -i $VPY"
    (cd "$ROOT" && CARGO_TARGET_DIR=target/wheels "$VENV/bin/maturin" build --release \
        -o build/wheels -i "$VPY") >"$LOGS/maturin.log" 2>&1 ||
        { tail -n 60 "$LOGS/maturin.log"; die "maturin build failed"; }
    WHEEL=$(sed -n 's/.*Built wheel.* to \(.*\.whl\).*/\1/p' "$LOGS/maturin.log" | tail -n 1)
    [[ -z "$WHEEL" || "$WHEEL" == /* ]] || WHEEL=$ROOT/$WHEEL
    [[ -f "$WHEEL" ]] || die "could not find the wheel maturin built (see $LOGS/maturin.log)"
    logged cymem_rs-install.log "$VPY" -m pip install --no-deps --force-reinstall "$WHEEL"
fi
echo "installed cymem_rs $WHEEL"
"$VPY" - <<'EOF'
import os, cymem_rs, cymem_rs.cymem
pkg = os.path.dirname(cymem_rs.__file__)
pxd = [f for f in ("cymem.pxd", "__init__.pxd") if os.path.exists(os.path.join(pkg, f))]
assert "cymem.pxd" in pxd, f"the installed cymem_rs has no cymem.pxd (in {pkg})"
print(f"cymem_rs at {pkg}; Cython declarations: {', '.join(pxd)}")
EOF
no_real_cymem

# --- per-project steps ---------------------------------------------------------

build_inplace() {
    local name=$1 src=$2
    echo "building in place: python setup.py build_ext --inplace -j 2 (log: $LOGS/$name-build.log)"
    (cd "$src" && logged "$name-build.log" "$VPY" setup.py build_ext --inplace -j 2)
}

# uses_cymem_rs SRC MODULE...: the built modules import cymem_rs, and no cymem.
uses_cymem_rs() {
    local src=$1
    shift
    (cd "$src" && "$VPY" - "$@" <<'EOF'
import importlib, sys
for mod in sys.argv[1:]:
    importlib.import_module(mod)
bad = sorted(m for m in sys.modules if m == "cymem" or m.startswith("cymem."))
assert not bad, f"the real cymem was imported: {bad}"
assert "cymem_rs.cymem" in sys.modules, "cymem_rs.cymem was never imported"
print(f"imported {', '.join(sys.argv[1:])}: they use cymem_rs.cymem, no cymem")
EOF
    )
}

# run_pytest NAME SRC ARGS...: the project's own tests, in its tree, with its
# own pytest configuration. The full output goes to the log; the console gets
# it less the one-line-per-test PASSED/SKIPPED lines of verbose runs.
run_pytest() {
    local name=$1 src=$2
    shift 2
    echo "running: (cd $src && python -m pytest $* $PYTEST_ARGS)"
    local rc=0
    # shellcheck disable=SC2086
    (cd "$src" && "$VPY" -m pytest -p no:cacheprovider --color=no "$@" $PYTEST_ARGS) 2>&1 |
        tee "$LOGS/$name-pytest.log" |
        { grep -vE '^[^ ]+::[^ ]+.* (PASSED|SKIPPED|XFAIL)( |$)' || true; } || rc=$?
    { grep -E '^=+ .* in [0-9.]+s( \([0-9:.]+\))? =+$' \
        "$LOGS/$name-pytest.log" || true; } | tail -n 1 | sed -E 's/^=+ //; s/ =+$//' >"$LOGS/$name-counts"
    return "$rc"
}

project_preshed() {
    local src
    src=$(prepare preshed "$PRESHED_VERSION")
    logged preshed-deps.log "$VPY" -m pip install "${PRESHED_DEPS[@]}"
    no_real_cymem
    build_inplace preshed "$src"
    uses_cymem_rs "$src" preshed.maps preshed.counter preshed.bloom
    # Installed as a dependency for thinc. --check-build-dependencies: the
    # rewritten [build-system] requires (cymem_rs, not cymem) are met.
    echo "installing it for thinc: pip install --no-build-isolation --check-build-dependencies --no-deps ."
    logged preshed-install.log "$VPY" -m pip install --no-build-isolation \
        --check-build-dependencies --no-deps --force-reinstall "$src"
    # Its rewritten install_requires (cymem_rs, murmurhash) are met too.
    "$VPY" -m pip check
    run_pytest preshed "$src" preshed/tests
}

project_thinc() {
    local src
    src=$(prepare thinc "$THINC_VERSION")
    "$VPY" -c 'import preshed.maps' 2>/dev/null || { echo "thinc needs preshed, which is not installed"; return 1; }
    # thinc's other requirements and its test requirements (coverage: its
    # pytest config names a coverage warning class).
    logged thinc-deps.log "$VPY" -m pip install "${THINC_DEPS[@]}" hypothesis mock coverage
    no_real_cymem
    build_inplace thinc "$src"
    uses_cymem_rs "$src" thinc.extra.search thinc.backends.linalg thinc.backends.numpy_ops
    run_pytest thinc "$src" thinc
}

# --- run ---------------------------------------------------------------------

declare -a NAMES=() RESULTS=() DETAILS=()
run_project() {
    local name=$1 version=$2 t0=$SECONDS rc
    say "$name $version"
    rm -f "$LOGS/$name-counts"
    set +e
    ( set -euo pipefail; "project_$name" )
    rc=$?
    set -e
    no_real_cymem
    local counts
    counts=$(cat "$LOGS/$name-counts" 2>/dev/null || true)
    NAMES+=("$name==$version")
    if [[ $rc == 0 ]]; then RESULTS+=(PASS); else RESULTS+=(FAIL); fi
    DETAILS+=("${counts:-no pytest result line (failed before its tests ran?)}; $((SECONDS - t0))s")
    printf '%s %s==%s: %s\n' "${RESULTS[-1]}" "$name" "$version" "${DETAILS[-1]}"
}

want() { [[ " $PROJECTS " == *" $1 "* ]]; }
# The venv is kept between runs: drop what an earlier run built, so thinc can
# only be built against the preshed built in this run.
"$VPY" -m pip uninstall -y preshed thinc >/dev/null 2>&1 || true
if want preshed || want thinc; then run_project preshed "$PRESHED_VERSION"; fi
if want thinc; then run_project thinc "$THINC_VERSION"; fi
[[ ${#NAMES[@]} -gt 0 ]] || die "no known project in PROJECTS='$PROJECTS' (known: preshed thinc)"

passed=0 failed=0
say "short summary (logs in $LOGS)"
for i in "${!NAMES[@]}"; do
    printf '%-6s %-18s %s\n' "${RESULTS[$i]}" "${NAMES[$i]}" "${DETAILS[$i]}"
    if [[ ${RESULTS[$i]} == PASS ]]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
done
echo "thirdparty: $passed passed, $failed failed"
printf '==================== %d passed, %d failed in %ds ====================\n' \
    "$passed" "$failed" "$((SECONDS - START))"
[[ $failed == 0 ]]
