#!/usr/bin/env bash
# Shared by the scripts that test the built wheels and sdist on every CPython
# here (run_matrix.sh, run_suite.sh, check_dist.sh) and by the Makefile's
# wheel rule. Sourced, or run as `bash tests/compat/lib.sh FUNCTION ARGS...`.

# The interpreter for a minor version: the newest patch release under
# ~/.pyenv/versions, else pythonX.Y on PATH. Prints its path.
python_for() {  # minor-version
    local found
    found=$(ls -d "$HOME"/.pyenv/versions/"$1".*/bin/python 2>/dev/null | sort -V | tail -n 1 || true)
    [ -n "$found" ] || found=$(command -v "python$1" || true)
    [ -n "$found" ] || { echo "no CPython $1: pyenv install $1" >&2; return 1; }
    echo "$found"
}

# The cymem_rs wheel for a minor version in a folder. Prints its path.
wheel_for() {  # wheel-dir minor-version
    local tag=cp${2/./} found
    found=$(ls -t "$1"/cymem_rs-*-"$tag"-"$tag"-*.whl 2>/dev/null | head -n 1 || true)
    [ -n "$found" ] || { echo "no $tag wheel in $1: make dist" >&2; return 1; }
    echo "$found"
}

# A new venv without pip (ensurepip is slow): the interpreter's own pip
# installs into it. Anything already at that path is removed first.
fresh_venv() {  # python venv-dir
    rm -rf "$2"
    "$1" -m venv --without-pip "$2"
}

# pip install into a venv made by fresh_venv.
pip_into() {  # python venv-dir pip-install-args...
    local py=$1 venv=$2
    shift 2
    PIP_DISABLE_PIP_VERSION_CHECK=1 "$py" -m pip --python "$venv/bin/python" install --quiet "$@"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -euo pipefail
    "$@"
fi
