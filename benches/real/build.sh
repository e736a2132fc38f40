#!/usr/bin/env bash
# Builds the real projects of `make bench-real` twice, from the same sdists
# with the same Cython and compiler: once against the real cymem, once against
# cymem_rs (imports rewritten as tests/thirdparty/ does). Each build lives in
# its own venv, build/bench-real/venv-cymem and build/bench-real/venv-cymem_rs,
# and is kept: a venv is rebuilt only when what went into it changed (the
# cymem_rs wheel, a project's version, the Cython spec, the driver source).
#
#   bash benches/real/build.sh WHEEL     # WHEEL: the cymem_rs wheel to build on
#
# Environment: BENCH_REAL_DIR (default build/bench-real: where the venvs,
# sdists and logs go), PYTHON (default .venv/bin/python), CYMEM_VERSION (2.0.16),
# BENCH_REAL_SPACY=1 to build spaCy too (SPACY_VERSION, 3.8.18; by far the
# longest build), and PRESHED_VERSION, THINC_VERSION, CYTHON_SPEC as in
# tests/thirdparty/sources.sh.
set -euo pipefail
shopt -s inherit_errexit

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
# shellcheck source=tests/thirdparty/sources.sh
source "$ROOT/tests/thirdparty/sources.sh"
OUT=${BENCH_REAL_DIR:-$ROOT/build/bench-real}
SDISTS=$OUT/sdists
LOGS=$OUT/logs
CYMEM_VERSION=${CYMEM_VERSION:-2.0.16}
SPACY_VERSION=${SPACY_VERSION:-3.8.18}
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
WHEEL=${1:?usage: build.sh CYMEM_RS_WHEEL}
[[ -f "$WHEEL" ]] || die "no wheel at $WHEEL"
WHEEL=$(cd "$(dirname "$WHEEL")" && pwd)/$(basename "$WHEEL")

unset PYTHONPATH PYTHONHOME PYTHONSTARTUP VIRTUAL_ENV
export PYTHONNOUSERSITE=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
mkdir -p "$SDISTS" "$LOGS"
WORKTMP=$(mktemp -d "${TMPDIR:-/tmp}/cymem_rs_bench_real.XXXXXX")
trap 'rm -rf "$WORKTMP"' EXIT
# Out of the checkout: its cymem_rs/ folder would shadow the installed wheel.
cd "$WORKTMP"

# Cython 3 rejects spaCy 3.8's `mid = (start + end) / 2` into a cdef int:
# made an integer division, in both builds alike.
patch_spacy() {
    local doc=$1/spacy/tokens/doc.pyx
    sed -i 's|mid = (start + end) / 2$|mid = (start + end) // 2|' "$doc"
    grep -q 'mid = (start + end) // 2$' "$doc" || die "spacy: the doc.pyx line to patch was not found"
}

# install_project LIB NAME VERSION PIP_ARGS...: build NAME from its sdist
# (rewritten to cymem_rs when LIB is cymem_rs) and install it into the venv.
install_project() {
    local lib=$1 name=$2 version=$3 src
    shift 3
    src=$(unpack "$(fetch "$name" "$version")")
    if [[ $lib == cymem_rs ]]; then point_at_cymem_rs "$src" >"$LOGS/$lib-$name-rewrite.log" 2>&1; fi
    if declare -F "patch_$name" >/dev/null; then "patch_$name" "$src"; fi
    echo "building $name $version against $lib (log: $LOGS/$lib-$name-build.log)"
    # Compiled two at a time first; pip's wheel build then finds it up to date.
    (cd "$src" && logged "$lib-$name-build.log" "$VPY" setup.py build_ext -j 2)
    logged "$lib-$name-install.log" "$VPY" -m pip install --no-build-isolation "$@" "$src"
}

# The Cython driver of the workloads that need C-level calls (thinc's Beam is
# driven through cdef methods only), compiled against the venv's thinc.
build_driver() {
    local lib=$1 dir=$VENV/driver
    rm -rf "$dir" && mkdir -p "$dir"
    cp "$HERE/drivers.pyx" "$dir/bench_real_drivers.pyx"
    if [[ $lib == cymem_rs ]]; then point_at_cymem_rs "$dir" >"$LOGS/$lib-driver-rewrite.log" 2>&1; fi
    (cd "$dir" && logged "$lib-driver-build.log" "$VENV/bin/cythonize" -3 -i \
        bench_real_drivers.pyx)
}

# build_venv LIB: venv-LIB with LIB, preshed, thinc and the driver.
build_venv() {
    local lib=$1 what
    VENV=$OUT/venv-$lib
    VPY=$VENV/bin/python
    if [[ $lib == cymem ]]; then what="cymem==$CYMEM_VERSION"; else what="$WHEEL $(sha256sum <"$WHEEL")"; fi
    local stamp="python=$("$PYTHON" -c 'import sys; print(sys.version)') lib=$what
preshed=$PRESHED_VERSION thinc=$THINC_VERSION cython=$CYTHON_SPEC"
    if [[ "$(cat "$VENV/.projects" 2>/dev/null)" != "$stamp" ]]; then
        say "venv-$lib: building preshed $PRESHED_VERSION and thinc $THINC_VERSION against $lib"
        rm -rf "$VENV"
        "$PYTHON" -m venv "$VENV"
        logged "$lib-tools.log" "$VPY" -m pip install --upgrade "pip>=23" "$CYTHON_SPEC" setuptools wheel
        if [[ $lib == cymem ]]; then
            logged "$lib-lib.log" "$VPY" -m pip install "cymem==$CYMEM_VERSION"
        else
            logged "$lib-lib.log" "$VPY" -m pip install --no-deps "$WHEEL"
        fi
        logged "$lib-deps.log" "$VPY" -m pip install "${PRESHED_DEPS[@]}" "${THINC_DEPS[@]}"
        install_project "$lib" preshed "$PRESHED_VERSION" --no-deps
        install_project "$lib" thinc "$THINC_VERSION" --no-deps
        echo "$stamp" >"$VENV/.projects"
        rm -f "$VENV/.driver" "$VENV/.spacy"
    else
        echo "venv-$lib: up to date (${what%% *})"
    fi
    if [[ "${BENCH_REAL_SPACY:-0}" == 1 && "$(cat "$VENV/.spacy" 2>/dev/null)" != "$SPACY_VERSION" ]]; then
        say "venv-$lib: building spaCy $SPACY_VERSION against $lib"
        # Its pure-Python requirements come from PyPI; the compiled ones are
        # the builds above (pip finds them installed).
        install_project "$lib" spacy "$SPACY_VERSION"
        echo "$SPACY_VERSION" >"$VENV/.spacy"
    fi
    local driver_stamp
    driver_stamp=$(sha256sum <"$HERE/drivers.pyx")
    if [[ "$(cat "$VENV/.driver" 2>/dev/null)" != "$driver_stamp" ]]; then
        echo "venv-$lib: compiling benches/real/drivers.pyx"
        build_driver "$lib"
        echo "$driver_stamp" >"$VENV/.driver"
    fi
    # Each build uses its own library and not the other one.
    "$VPY" - "$lib" "$VENV/driver" <<'PY'
import sys
lib, driver = sys.argv[1:]
sys.path.insert(0, driver)
import importlib.util
import preshed.maps, thinc.extra.search, bench_real_drivers  # noqa: E401,F401
if importlib.util.find_spec("spacy"):
    import spacy.tokens.doc  # noqa: F401
other = "cymem_rs" if lib == "cymem" else "cymem"
assert f"{lib}.cymem" in sys.modules, f"{lib}.cymem was not imported"
assert f"{other}.cymem" not in sys.modules, f"{other}.cymem was imported"
PY
}

build_venv cymem
build_venv cymem_rs
