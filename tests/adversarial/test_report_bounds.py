"""The live-pool report stays bounded and printable whatever pools are called.

The table cuts names to 40 characters and origins to 60 (ending in `…`),
writes control characters as `\\xNN`, and so grows with the number of pools
only; `live_pools()` keeps the full values. The C and Python reports are the
same text.
"""

from __future__ import annotations

import json

from conftest import run, run_python

# A row holds six numbers of at most 20 digits, the mode, a 40-character name
# and a 60-character origin, with two spaces between columns.
MAX_ROW = 6 * 20 + 5 + 40 + 60 + 8 * 2


def report_of(code: str) -> dict:
    """Runs `code`, which prints one JSON object as its last line."""
    outcome = run_python(code, timeout=60).ok()
    return json.loads(outcome.stdout.strip().splitlines()[-1])


def test_one_huge_name_among_300_pools_keeps_the_table_small():
    found = report_of(
        """
        import json
        import cymem_rs
        pools = [cymem_rs.Pool(name=f"p{i}") for i in range(299)]
        big = cymem_rs.Pool(name="N" * (1 << 20))
        big.alloc(1, 10)
        text = cymem_rs.format_report()
        full = [p.name for p in cymem_rs.live_pools() if p.name and p.name.startswith("N")]
        print(json.dumps({"text": text, "full": [len(n) for n in full]}))
        """
    )
    text = found["text"]
    lines = text.splitlines()
    assert len(lines) == 300 + 2
    assert len(text) <= 302 * MAX_ROW, len(text)
    # The biggest pool comes first; its name is cut to 40 characters.
    assert "N" * 39 + "…" in lines[1]
    assert "N" * 40 not in lines[1]
    assert found["full"] == [1 << 20]


def test_control_characters_are_escaped_and_rows_stay_one_line():
    found = report_of(
        """
        import json
        import cymem_rs
        evil = cymem_rs.Pool(name="a\\nb\\x1b[31mc\\td\\r\\x7f\\x85e")
        evil.alloc(1, 1000)
        print(json.dumps({
            "text": cymem_rs.format_report(),
            "full": cymem_rs.live_pools()[0].name,
        }))
        """
    )
    lines = found["text"].splitlines()
    assert len(lines) == 3, lines
    assert "a\\x0ab\\x1b[31mc\\x09d\\x0d\\x7f\\x85e" in lines[1]
    assert not any(ch in found["text"] for ch in "\x1b\t\r\x7f\x85")
    assert found["full"] == "a\nb\x1b[31mc\td\r\x7f\x85e"


def test_long_origins_are_cut_to_60_characters():
    found = report_of(
        """
        import json
        import cymem_rs
        where = "/" + "d" * 200 + "/make_pools.py"
        scope = {}
        exec(compile("import cymem_rs\\ndef make():\\n    return cymem_rs.Pool(name='deep')\\n",
                     where, "exec"), scope)
        pool = scope["make"]()
        pool.alloc(1, 1000)
        [info] = [p for p in cymem_rs.live_pools() if p.name == "deep"]
        print(json.dumps({"text": cymem_rs.format_report(), "origin": info.origin}))
        """
    )
    row = found["text"].splitlines()[1]
    assert found["origin"].startswith("/" + "d" * 200 + "/make_pools.py:3")
    origin_cell = row[row.index("deep") + len("deep") :].strip()
    assert len(origin_cell) == 60, origin_cell
    assert origin_cell.endswith("…")
    assert origin_cell[:-1] == found["origin"][:59]


def test_python_and_c_reports_are_the_same_text():
    found = report_of(
        """
        import ctypes, json
        import cymem_rs
        from cymem_rs import cymem
        pools = [cymem_rs.Pool(name=f"n{i}\\x01" + "x" * (i * 7)) for i in range(20)]
        for i, p in enumerate(pools):
            p.alloc(i + 1, 3)
        lib = ctypes.PyDLL(cymem.__file__)
        lib.cymem_report.restype = ctypes.c_size_t
        lib.cymem_report.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
        need = lib.cymem_report(None, 0)
        buf = ctypes.create_string_buffer(need + 1)
        lib.cymem_report(buf, need + 1)
        print(json.dumps({"c": buf.value.decode(), "py": cymem_rs.format_report()}))
        """
    )
    assert found["c"] == found["py"]
    assert "\\x01" in found["py"]


C_REPORT = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cymem_rs.h"

#define POOLS 300
#define BIG (1u << 20)

int main(void) {
    CymemPool *pools[POOLS];
    char *name = malloc(BIG + 1);
    memset(name, 'N', BIG);
    name[BIG] = 0;
    name[5] = '\n';
    name[6] = '\033';
    for (int i = 0; i < POOLS; i++) {
        pools[i] = cymem_pool_new_named(i == 0 ? name : "small");
        cymem_pool_alloc(pools[i], 1, i == 0 ? 100000 : 1);
    }
    char origin[300];
    memset(origin, 'o', sizeof origin - 1);
    origin[sizeof origin - 1] = 0;
    cymem_pool_set_origin(pools[0], origin, 7);
    size_t need = cymem_report(NULL, 0);
    char *text = malloc(need + 1);
    size_t got = cymem_report(text, need + 1);
    if (got != need) { fprintf(stderr, "length changed\n"); return 1; }
    fwrite(text, 1, need, stdout);
    for (int i = 0; i < POOLS; i++) cymem_pool_destroy(&pools[i]);
    free(text);
    free(name);
    return 0;
}
"""


def test_c_report_of_a_huge_name_is_bounded_and_escaped(c_program):
    exe = c_program("report_bounds", C_REPORT)
    outcome = run([str(exe)], timeout=60).ok()
    text = outcome.stdout
    lines = text.splitlines()
    assert len(lines) == 300 + 2
    assert len(text.encode()) <= 302 * (MAX_ROW + 3), len(text)
    first = lines[1]
    assert "NNNNN\\x0a\\x1b" + "N" * (40 - 1 - 5 - 8) + "…" in first
    assert "o" * 59 + "…" in first
    assert "\x1b" not in text


def test_origins_stay_right_beyond_the_interned_sites():
    # More creation sites than are interned: the rest are described per pool.
    found = report_of(
        """
        import json
        import cymem_rs
        pools = []
        for i in range(5000):
            scope = {}
            code = "import cymem_rs\\ndef make():\\n" + "    pass\\n" * (i % 7) + (
                f"    return cymem_rs.Pool(name='site{i}')\\n")
            exec(compile(code, f"gen{i}.py", "exec"), scope)
            pools.append(scope["make"]())
        origins = {p.name: p.origin for p in cymem_rs.live_pools()}
        print(json.dumps([origins[f"site{i}"] for i in (0, 4095, 4096, 4999)]))
        """
    )
    assert found == [f"gen{i}.py:{3 + i % 7} in make" for i in (0, 4095, 4096, 4999)], found
