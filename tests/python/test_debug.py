"""Debug mode from Python and Cython: deliberate overruns and writes after
free (made in compiled Cython code, through the inline C calls) come back as
MemoryCorruptionError naming the block's size and allocation number."""

from __future__ import annotations

import ctypes
import gc
import os
import re
import subprocess
import sys

import pytest

import cymem_rs
from cymem_rs import MemoryCorruptionError, Pool


@pytest.fixture(params=["heap", "arena"])
def make_debug_pool(request):
    arena = request.param == "arena"
    return lambda: Pool(arena=arena, debug=True)


@pytest.fixture
def probe(cython_module):
    return cython_module("debug_probe")


def test_the_exception_is_a_runtime_error_exported_from_both_modules():
    assert issubclass(MemoryCorruptionError, RuntimeError)
    assert cymem_rs.cymem.MemoryCorruptionError is MemoryCorruptionError
    assert MemoryCorruptionError.__module__ == "cymem_rs.cymem"
    assert "MemoryCorruptionError" in cymem_rs.__all__


def test_debug_is_opt_in_and_visible(make_debug_pool):
    assert make_debug_pool().debug is True
    assert Pool(debug=False).debug is False
    assert Pool(arena=True, debug=False).debug is False


def test_one_byte_overrun_in_cython_is_caught_at_free(make_debug_pool, probe):
    pool = make_debug_pool()
    pool.alloc(1, 8)
    pool.alloc(1, 8)
    with pytest.raises(MemoryCorruptionError) as info:
        probe.overrun_then_free(pool, 24)
    message = str(info.value)
    assert "of 24 bytes" in message
    assert "allocation #3" in message
    assert "past its end (offset 24, byte 1 after the block)" in message
    # The block was released anyway: accounting is right, nothing left to report.
    assert (pool.size, pool.block_count) == (16, 2)
    pool.check()


def test_overrun_further_past_the_end_names_the_offset(probe):
    pool = Pool(debug=True)
    with pytest.raises(MemoryCorruptionError, match=r"offset 13, byte 4 after"):
        probe.overrun_then_free(pool, 10, 3)


def test_underrun_is_caught_by_realloc_which_leaves_the_block(probe):
    pool = Pool(debug=True)
    with pytest.raises(MemoryCorruptionError, match=r"of 5 bytes \(allocation #1\).*before"):
        probe.underrun_then_realloc(pool, 5)
    # The `finally: free` in the probe ran: the damage was reported once.
    assert pool.block_count == 0
    pool.check()


def test_write_after_free_in_cython_is_caught_by_check(make_debug_pool, probe):
    pool = make_debug_pool()
    addr = probe.write_after_free(pool, 40, 7)
    with pytest.raises(MemoryCorruptionError) as info:
        probe.check(pool)  # Pool.check through the inline C call
    assert f"block {addr:#x} of 40 bytes (allocation #1)" in str(info.value)
    assert "after it was freed (offset 7)" in str(info.value)
    pool.check()  # reported once


def test_write_after_free_from_python_is_caught_by_check():
    pool = Pool(debug=True)
    addr = pool.alloc(2, 8)
    pool.free(addr)
    ctypes.memset(addr, 0, 1)
    with pytest.raises(MemoryCorruptionError, match="after it was freed"):
        pool.check()


def test_a_write_to_the_old_block_after_realloc_is_caught():
    pool = Pool(debug=True)
    old = pool.alloc(1, 16)
    new = pool.realloc(old, 64)
    assert new != old
    ctypes.memset(old, 7, 1)
    with pytest.raises(
        MemoryCorruptionError, match=r"16 bytes \(allocation #1\).*after it was freed"
    ):
        pool.check()


def test_no_false_positives_across_churn(make_debug_pool, probe):
    pool = make_debug_pool()
    probe.churn(pool, 20, 40)
    for i in range(300):
        addr = pool.alloc(i % 17, 3)
        ctypes.memset(addr, 0xFD, (i % 17) * 3)
        if i % 3:
            addr = pool.realloc(addr, (i % 17) * 3 + 5)
        if i % 2:
            pool.free(addr)
    pool.check()
    assert pool.block_count == 150


def test_damage_found_at_deallocation_is_unraisable(monkeypatch, probe):
    seen = []
    monkeypatch.setattr(sys, "unraisablehook", seen.append)
    pool = Pool(debug=True)
    probe.overrun_kept(pool, 12)
    del pool
    gc.collect()
    assert len(seen) == 1
    assert seen[0].exc_type is MemoryCorruptionError
    assert "of 12 bytes (allocation #1)" in str(seen[0].exc_value)
    assert "deallocated" in str(seen[0].object)


def test_pools_not_in_debug_mode_do_not_check(probe):
    pool = Pool(debug=False)
    pool.check()
    # A write into a non-debug block's own last byte is fine, of course; and
    # check() has nothing to say.
    addr = pool.alloc(1, 8)
    ctypes.memset(addr + 7, 1, 1)
    pool.free(addr)
    pool.check()


def test_check_on_none_raises_like_an_attribute_access(probe):
    with pytest.raises(AttributeError):
        probe.check(None)


RUN = """
import sys, cymem_rs
print(cymem_rs.Pool().debug, cymem_rs.Pool(debug=False).debug, cymem_rs.Pool(arena=True).debug)
"""


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1", "True False True"), ("0", "False False False"), (None, "False False False")],
)
def test_the_environment_variable_makes_every_pool_debug(value, expected):
    env = dict(os.environ)
    env.pop("CYMEM_RS_DEBUG", None)
    if value is not None:
        env["CYMEM_RS_DEBUG"] = value
    out = subprocess.run(
        [sys.executable, "-c", RUN], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == expected


def test_the_environment_variable_catches_an_overrun_in_unchanged_code(tmp_path, cython_module):
    # A program that never asks for debug mode, run with CYMEM_RS_DEBUG=1:
    # its overrun is reported when the pool dies.
    probe_file = cython_module("debug_probe").__file__
    script = tmp_path / "prog.py"
    script.write_text(
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('debug_probe', {probe_file!r})\n"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        "import cymem_rs\n"
        "pool = cymem_rs.Pool()\n"
        "m.overrun_kept(pool, 9)\n"
        "del pool\n"
        "print('done')\n"
    )
    env = dict(os.environ, CYMEM_RS_DEBUG="1")
    out = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "done"
    assert re.search(r"MemoryCorruptionError: .* of 9 bytes \(allocation #1\)", out.stderr)
