#!/usr/bin/env bash
# The Cython-level benchmark of cymem_rs against cymem, from a checkout where
# `make install` has been run (it builds the cymem_rs wheel into .venv/, which
# also holds cymem 2.0.16, Cython and setuptools).
#
#   bash benches/cython/run.sh           # full run, ~3-5 min on 2 cores: writes
#                                        # build/bench/{results.json,chart.png,REPORT.md}
#   bash benches/cython/run.sh --quick   # CI smoke (~1-2 min): every workload once,
#                                        # checks every figure is finite and > 0;
#                                        # writes to build/bench/quick/
#
# Other options go to bench.py (see `bash benches/cython/run.sh --help`).
# Needs a C compiler; valgrind for the instruction counts (skipped without it).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
VPY=$ROOT/.venv/bin/python
cd "$ROOT"

if [ ! -x "$VPY" ]; then
    echo "no .venv/ in $ROOT: run \`make install\` first" >&2
    exit 2
fi
# Checked from outside the checkout: its cymem_rs/ folder would shadow the wheel.
if ! (cd / && "$VPY" -c 'import cymem_rs.cymem, cymem.cymem, Cython, setuptools') 2>/dev/null; then
    echo "cymem_rs (or cymem, Cython, setuptools) is not installed in .venv: run \`make install\`" >&2
    exit 2
fi
if ! "$VPY" -c 'import matplotlib' 2>/dev/null; then
    echo "installing matplotlib into .venv (for chart.png) ..." >&2
    "$VPY" -m pip install -q matplotlib || echo "matplotlib could not be installed" >&2
fi
if ! command -v valgrind >/dev/null; then
    echo "valgrind not found: the callgrind instruction counts will be skipped" >&2
fi

exec "$VPY" "$ROOT/benches/cython/bench.py" "$@"
