#!/usr/bin/env bash
# The Python/Cython test suite against a cymem_rs wheel, on any CPython here:
#
#   tests/compat/run_suite.sh MINOR WHEEL_DIR NAME [TEST_PATHS...]
#
# Installs the cpMINOR wheel from WHEEL_DIR and the test tools pinned for that
# interpreter (tests/compat/test-tools.txt) into build/compat/suite-NAME (kept
# while the interpreter, the wheel and the pins are the same), then runs
# pytest over TEST_PATHS (relative to tests/; default: python adversarial;
# pytest options through PYTEST_ADDOPTS).
set -euo pipefail

die() { echo "run_suite: $*" >&2; exit 2; }
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=tests/compat/lib.sh
. "$root/tests/compat/lib.sh"
[ $# -ge 3 ] || die "usage: $0 MINOR WHEEL_DIR NAME [TEST_PATHS...]"
minor=$1 name=$3
py=$(python_for "$minor") || die "no CPython $minor"
wheel=$(wheel_for "$2" "$minor") || die "no wheel for CPython $minor"
shift 3
[ $# -gt 0 ] || set -- python adversarial
unset PYTHONPATH PYTHONHOME VIRTUAL_ENV || true

venv=$root/build/compat/suite-$name
tools=$root/tests/compat/test-tools.txt
stamp="$("$py" -c 'import sys; print(sys.version.split()[0])') $(sha256sum "$wheel" "$tools" | cut -d' ' -f1 | tr '\n' ' ')"
if ! [ -x "$venv/bin/python" ] || [ "$(cat "$venv/suite-stamp" 2>/dev/null)" != "$stamp" ]; then
    echo "run_suite: installing the test tools and $(basename "$wheel") into $venv"
    fresh_venv "$py" "$venv"
    pip_into "$py" "$venv" -r "$tools" "$wheel"
    echo "$stamp" >"$venv/suite-stamp"
fi

# One pytest per top folder: each folder's conftest.py is imported as the
# module `conftest`, so two folders cannot share a run. (Exit code 5, no test
# collected, is not a failure.)
cd "$root/tests"
status=0
for folder in $(printf '%s\n' "$@" | cut -d/ -f1 | awk '!seen[$0]++'); do
    paths=()
    for arg in "$@"; do [ "${arg%%/*}" != "$folder" ] || paths+=("$arg"); done
    echo "run_suite: CPython $minor ($(basename "$wheel")): ${paths[*]}"
    "$venv/bin/python" -m pytest -q -p no:cacheprovider "${paths[@]}" || [ $? -eq 5 ] || status=1
done
exit $status
