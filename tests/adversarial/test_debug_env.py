"""`CYMEM_RS_DEBUG`: 1, true, yes, on turn debug mode on; unset, empty, 0,
false, no, off leave it off (any case); any other value leaves it off and
writes one warning naming the accepted values to stderr, from C (no Python
involved) as from Python."""

from __future__ import annotations

import os

import pytest
from conftest import run, run_python

C_PROGRAM = r"""
#include <stdio.h>
#include "cymem_rs.h"

int main(void) {
    /* The variable is read once: every pool follows the same answer. */
    for (int i = 0; i < 3; i++) {
        CymemPool *pool = cymem_pool_new();
        printf("%d\n", cymem_pool_is_debug(pool));
        cymem_pool_destroy(&pool);
    }
    return 0;
}
"""

ON = ["1", "true", "TRUE", "yes", "On"]
OFF = [None, "", "0", "false", "No", "OFF"]
UNKNOWN = ["2", "enable", "y", "tru e", "\u00e9t\u00e9"]


def c_run(c_program, value):
    exe = c_program("debug_env", C_PROGRAM)
    env = dict(os.environ)
    env.pop("CYMEM_RS_DEBUG", None)
    if value is not None:
        env["CYMEM_RS_DEBUG"] = value
    return run([str(exe)], env=env).ok()


@pytest.mark.parametrize("value", ON + OFF + UNKNOWN)
def test_c(c_program, value):
    out = c_run(c_program, value)
    expected = "1" if value in ON else "0"
    assert out.stdout.split() == [expected] * 3, out.describe()
    if value in UNKNOWN:
        lines = out.stderr.splitlines()
        assert len(lines) == 1, out.describe()
        assert "CYMEM_RS_DEBUG" in lines[0]
        for accepted in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            assert accepted in lines[0]
    else:
        assert out.stderr == "", out.describe()


@pytest.mark.parametrize("value", ["yes", "off", "maybe"])
def test_python(value):
    code = """
    from cymem_rs import Pool
    print(Pool().debug, Pool(debug=None).debug, Pool(debug=False).debug)
    """
    out = run_python(code, env={"CYMEM_RS_DEBUG": value}).ok()
    on = str(value == "yes")
    assert out.stdout.split() == [on, on, "False"], out.describe()
    warnings = [line for line in out.stderr.splitlines() if "CYMEM_RS_DEBUG" in line]
    assert len(warnings) == (value == "maybe"), out.describe()
