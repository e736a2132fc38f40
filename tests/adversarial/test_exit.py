"""Interpreter exit while daemon threads are inside cymem_rs calls.

At exit CPython ends a daemon thread that wants the GIL back; if that
happens inside a Rust frame (Python code run from Rust), the process used to
abort or crash. Each case runs `sys.exit(7)` while daemon threads loop on one
entry point, many times over, and checks every run's exit code is 7.
"""

from __future__ import annotations

import os

import pytest
from conftest import run_python

REPEAT = int(os.environ.get("CYMEM_RS_REPEAT", "10"))

# Groups of entry points; each thread of a case loops on one of its group's
# bodies. `pool` is the thread's own pool, `block` one of its blocks,
# `shared` a pool all threads use, `sink` a StringIO, `lib` the extension's
# C ABI through ctypes (called without the GIL).
ENTRY_POINTS = {
    "stats": ["pool.stats", "shared.stats", "pool.stats", "shared.stats"],
    "live_pools": ["cymem_rs.live_pools()", "lib.cymem_live_pools(None, 0)"],
    "report": [
        "cymem_rs.format_report()",
        "cymem_rs.report(file=sink); sink.seek(0); sink.truncate()",
        "lib.cymem_report(None, 0)",
    ],
    "blocks": [
        "pool.free(pool.alloc(4, 16))",
        "pool.free(pool.realloc(pool.alloc(1, 8), 64))",
        "try:\n            pool.free(8)\n        except KeyError:\n            pass",
        "m = memoryview(pool.view(block)); m[0] = 1; m.release()",
        "memoryview(pool.view(block, 'i', (2, 2))).release(); pool.alloc(0, 8)",
    ],
    "pools": [
        "cymem_rs.Pool().alloc(2, 8)",
        "cymem_rs.Pool(arena=True).alloc(2, 8); cymem_rs.Pool(debug=True).alloc(2, 8)",
        "cymem_rs.Pool(cymem_rs.Default_Malloc, cymem_rs.Default_Free).alloc(2, 8)",
        "cymem_rs.Address(2, 8).addr",
    ],
    "attributes": [
        "pool.name = 'renamed'; pool.name",
        "pool.addresses; repr(pool); pool.size; pool.block_count",
        "pool.reset_peak(); pool.peak_size",
        "cymem_rs.track_origins(True)",
    ],
}

SCRIPT = """
import ctypes, io, sys, threading, time
import cymem_rs
from cymem_rs import cymem

lib = ctypes.CDLL(cymem.__file__)
lib.cymem_report.restype = ctypes.c_size_t
lib.cymem_report.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
lib.cymem_live_pools.restype = ctypes.c_size_t
lib.cymem_live_pools.argtypes = [ctypes.c_void_p, ctypes.c_size_t]

shared = cymem_rs.Pool(name="shared")
shared.alloc(10, 10)
keep = [cymem_rs.Pool(name=f"live{i}") for i in range(50)]
counts = [0] * {threads}
{workers}
for slot, work in enumerate(WORKERS):
    threading.Thread(target=work, args=(slot,), daemon=True).start()
while min(counts) < 20:
    time.sleep(0.001)
sys.exit(7)
"""

WORKER = """
def work{n}(slot):
    pool = cymem_rs.Pool(name="thread\\x01")
    block = pool.alloc(4, 4)
    sink = io.StringIO()
    while True:
        {body}
        counts[slot] += 1
"""


def script(bodies: list[str]) -> str:
    workers = "".join(WORKER.format(n=n, body=body) for n, body in enumerate(bodies))
    workers += "WORKERS = [" + ", ".join(f"work{n}" for n in range(len(bodies))) + "]\n"
    return SCRIPT.replace("{threads}", str(len(bodies))).replace("{workers}", workers)


@pytest.mark.parametrize("group", sorted(ENTRY_POINTS))
def test_exit_code_is_kept_with_daemon_threads_inside(group):
    code = script(ENTRY_POINTS[group])
    for attempt in range(REPEAT):
        outcome = run_python(code, timeout=30)
        assert outcome.returncode == 7, f"run {attempt}: {outcome.describe()}"


CYTHON_LOOP = """
# cython: language_level=3
from cymem_rs.cymem cimport Pool

def churn(Pool mem, int rounds):
    cdef int i
    cdef void* p
    for i in range(rounds):
        p = mem.alloc(3, 8)
        p = mem.realloc(p, 64)
        mem.free(p)
    return mem.size
"""


def test_exit_code_is_kept_with_daemon_threads_in_cython_calls(cython_snippet):
    folder = cython_snippet("exit_churn", CYTHON_LOOP)
    code = """
    import sys, threading, time
    import cymem_rs, exit_churn
    counts = [0] * 4

    def work(slot):
        pool = cymem_rs.Pool()
        while True:
            exit_churn.churn(pool, 50)
            pool.stats
            counts[slot] += 1

    for slot in range(4):
        threading.Thread(target=work, args=(slot,), daemon=True).start()
    while min(counts) < 20:
        time.sleep(0.001)
    sys.exit(7)
    """
    for attempt in range(REPEAT):
        outcome = run_python(code, path=[folder], timeout=30)
        assert outcome.returncode == 7, f"run {attempt}: {outcome.describe()}"


def test_stats_and_pool_info_are_still_the_named_tuples():
    # They are now filled through the C API; everything the stubs promise holds.
    run_python(
        """
        import pickle
        import cymem_rs
        from cymem_rs import PoolInfo, PoolStats
        pool = cymem_rs.Pool(name="nt")
        pool.free(pool.alloc(2, 8))
        pool.alloc(3, 8)
        s = pool.stats
        assert type(s) is PoolStats and isinstance(s, tuple)
        assert s == PoolStats(24, 24, 1, 2, 1, 0) == (24, 24, 1, 2, 1, 0)
        assert s._fields == ("size", "peak_size", "block_count", "total_allocs",
                             "total_frees", "total_reallocs")
        assert s._asdict()["total_frees"] == 1 and s.block_count == 1
        assert repr(s) == ("PoolStats(size=24, peak_size=24, block_count=1, "
                           "total_allocs=2, total_frees=1, total_reallocs=0)"), repr(s)
        assert pickle.loads(pickle.dumps(s)) == s and hash(s) == hash(tuple(s))
        anonymous = cymem_rs.Pool()
        anonymous.alloc(1, 1)  # an unnamed pool is listed from its first block on
        infos = {p.name: p for p in cymem_rs.live_pools()}
        info = infos["nt"]
        assert type(info) is PoolInfo and info._fields == ("name",) + s._fields + (
            "arena", "origin", "limit")
        assert info[1:7] == tuple(s) and info.arena is False and info.origin.endswith("<module>")
        assert info.limit is None
        assert infos[None].name is None
        assert repr(info).startswith("PoolInfo(name='nt', size=24, ")
        """,
        timeout=30,
    ).ok()
