#!/usr/bin/env bash
# The release artefacts, checked as users get them:
#
#   tests/compat/check_dist.sh DIST_DIR MINOR...
#
# 1. `twine check` of the sdist and every wheel in DIST_DIR, and
#    `auditwheel show` of each wheel: its platform tag must be manylinux_2_17
#    or newer, never plain linux_x86_64.
# 2. Each MINOR's wheel into a fresh venv of its own, and the sdist into a
#    fresh venv of the last MINOR (pip builds it from source with maturin, as
#    for a user with no wheel for their platform; at the same time as the
#    wheel checks). In each venv: cymem_rs imports from the venv with
#    Cargo.toml's version, tests/compat/smoke.pyx (which cimports
#    cymem_rs.cymem) compiles with no settings and runs, and examples/demo.c
#    compiles (not links: the wheel carries the header, not the C library)
#    against the header at cymem_rs.get_include().
#
# twine and auditwheel come from PATH (the Makefile puts .venv/bin first).
# Logs: build/check-dist/. Ends with `N passed, M failed`.
set -euo pipefail

die() { echo "check_dist: $*" >&2; exit 2; }
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=tests/compat/lib.sh
. "$root/tests/compat/lib.sh"
[ $# -ge 2 ] || die "usage: $0 DIST_DIR MINOR..."
dist=$(cd "$1" && pwd)
shift
cd "$root"
unset PYTHONPATH PYTHONHOME VIRTUAL_ENV CFLAGS CXXFLAGS || true

work=$root/build/check-dist
rm -rf "$work" && mkdir -p "$work"
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
sdist=$dist/cymem_rs-$version.tar.gz
[ -f "$sdist" ] || die "no $sdist: make dist"
passed=0
failed=0
check() {  # description command...
    local what=$1
    shift
    if "$@"; then
        echo "PASS $what"
        passed=$((passed + 1))
    else
        echo "FAIL $what"
        failed=$((failed + 1))
    fi
}

# --- metadata and platform tags ---------------------------------------------
wheels=()
for minor in "$@"; do
    wheels+=("$(wheel_for "$dist" "$minor")") || die "no wheel for CPython $minor"
done
check "twine check: sdist and ${#wheels[@]} wheels" \
    twine check --strict "$sdist" "${wheels[@]}"
manylinux() {  # wheel
    local tag
    tag=$(auditwheel show "$1" | tr -d '\n' | sed -n 's/.*platform tag: *"\([a-z0-9_]*\)".*/\1/p')
    echo "  $(basename "$1"): $tag"
    [[ $tag =~ ^manylinux_2_([0-9]+)_ ]] && [ "${BASH_REMATCH[1]}" -ge 17 ]
}
for wheel in "${wheels[@]}"; do
    check "auditwheel: $(basename "$wheel") is manylinux_2_17 or newer" manylinux "$wheel"
done

# --- installs ---------------------------------------------------------------
# Installs into a fresh venv, then the three checks in it.
install_and_use() {  # python venv log pip-args...
    local py=$1 venv=$2 log=$3
    shift 3
    {
        fresh_venv "$py" "$venv" &&
            pip_into "$py" "$venv" "cython==3.3.1" setuptools &&
            pip_into "$py" "$venv" "$@" &&
            "$venv/bin/python" -I -c '
import importlib.metadata, os, sys, cymem_rs
assert cymem_rs.__file__.startswith(sys.prefix + os.sep), cymem_rs.__file__
assert importlib.metadata.version("cymem_rs") == sys.argv[1], importlib.metadata.version("cymem_rs")
for f in ("py.typed", "cymem.pyi", "cymem.pxd", "__init__.pxd"):
    assert os.path.isfile(os.path.join(os.path.dirname(cymem_rs.__file__), f)), f
print("imported", cymem_rs.__file__)' "$version" &&
            "$venv/bin/python" tests/compat/driver.py c "$venv/work" &&
            ${CC:-cc} -std=c99 -Wall -Wextra -Werror -pedantic \
                -I"$("$venv/bin/python" -I -c 'import cymem_rs; print(cymem_rs.get_include())')" \
                -c examples/demo.c -o "$venv/demo.o" &&
            echo "examples/demo.c compiles against the installed header"
    } >"$log" 2>&1
}

newest=${*: -1}
newest_py=$(python_for "$newest")
# The sdist build runs beside the wheel checks (its own cargo target dir, so
# a warm tree rebuilds only what changed).
CARGO_TARGET_DIR=$root/target/sdist install_and_use "$newest_py" "$work/sdist" "$work/sdist.log" \
    --no-binary cymem_rs "$sdist" &
sdist_job=$!

for i in "${!wheels[@]}"; do
    minor=${*:i+1:1}
    check "wheel for CPython $minor: install, import, cimport, header (log: build/check-dist/py$minor.log)" \
        install_and_use "$(python_for "$minor")" "$work/py$minor" "$work/py$minor.log" "${wheels[$i]}"
done
check "sdist built from source on CPython $newest: install, import, cimport, header (log: build/check-dist/sdist.log)" \
    wait "$sdist_job"

for log in "$work"/*.log; do
    grep -q . "$log" || continue
    if ! grep -q "compiles against the installed header" "$log"; then
        echo "--- last lines of $log"
        tail -n 25 "$log"
    fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
