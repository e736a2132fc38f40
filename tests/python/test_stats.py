"""Statistics and the live-pool report from Python and Cython: the counters
of `Pool.stats`, names, creation lines, `live_pools()`, `format_report()`,
`report()` and the C function `cymem_report` on the same registry."""

from __future__ import annotations

import ctypes
import gc
import io
import weakref

import pytest

import cymem_rs
from cymem_rs import Pool, PoolStats


def find(name: str) -> list[cymem_rs.PoolInfo]:
    return [p for p in cymem_rs.live_pools() if p.name == name]


def test_stats_follow_alloc_free_realloc(make_pool):
    pool = make_pool()
    assert pool.stats == PoolStats(0, 0, 0, 0, 0, 0)
    a = pool.alloc(10, 10)
    b = pool.alloc(1, 300)
    pool.free(b)
    a = pool.realloc(a, 1000)
    s = pool.stats
    assert (s.size, s.peak_size, s.block_count) == (1000, 1000, 1)
    assert (s.total_allocs, s.total_frees, s.total_reallocs) == (2, 1, 1)
    assert s._asdict()["size"] == pool.size == 1000


def test_failed_operations_count_nothing(make_pool):
    pool = make_pool()
    addr = pool.alloc(4, 4)
    before = pool.stats
    with pytest.raises(KeyError):
        pool.free(12345)
    with pytest.raises(ValueError):
        pool.realloc(addr, 8)
    with pytest.raises(MemoryError):
        pool.alloc(2**62, 8)
    assert pool.stats == before


def test_peak_and_reset_peak(make_pool):
    pool = make_pool()
    big = pool.alloc(1, 1 << 20)
    pool.alloc(1, 100)
    pool.free(big)
    assert pool.peak_size == (1 << 20) + 100
    pool.reset_peak()
    assert pool.peak_size == pool.stats.peak_size == 100


@pytest.mark.parametrize("language", ["c", "c++"])
def test_cython_reads_stats_inline_without_python_calls(make_pool, cython_module, language):
    api = cython_module("stats_api", language)

    class Spy(Pool):
        """Python attribute lookups would land here; inline C must not."""

        @property
        def stats(self):
            raise AssertionError("Python-level stats was called")

        @property
        def peak_size(self):
            raise AssertionError("Python-level peak_size was called")

        def reset_peak(self):
            raise AssertionError("Python-level reset_peak was called")

    for pool in (make_pool(), Spy(name="spy")):
        addr = Pool.alloc(pool, 3, 100)
        Pool.realloc(pool, addr, 400)
        assert api.stats_tuple(pool) == (400, 400, 1, 1, 0, 1)
        assert api.peak(pool) == 400
        api.reset_peak(pool)
        assert api.phase_peak(pool, 5) == 1024
    with pytest.raises(AttributeError):
        api.peak(None)


def test_named_pool_shows_in_the_report_with_its_creation_line():
    pool = Pool(name="test-stats-named")
    line = test_named_pool_shows_in_the_report_with_its_creation_line.__code__.co_firstlineno + 1
    pool.alloc(5, 200)
    assert pool.name == "test-stats-named"
    [info] = find("test-stats-named")
    assert info.size == 1000 and info.block_count == 1 and not info.arena
    here = test_named_pool_shows_in_the_report_with_its_creation_line.__code__
    assert info.origin == f"{here.co_filename}:{line} in {here.co_name}"
    text = cymem_rs.format_report()
    row = next(r for r in text.splitlines() if "test-stats-named" in r)
    assert f"test_stats.py:{line}" in row
    out = io.StringIO()
    cymem_rs.report(file=out)
    assert "test-stats-named" in out.getvalue()


def make_in_a_helper():
    return Pool(arena=True, name="test-stats-helper")  # the creation line


def test_origin_is_the_creating_function_and_line():
    pool = make_in_a_helper()
    [info] = find("test-stats-helper")
    code = make_in_a_helper.__code__
    assert info.origin == f"{code.co_filename}:{code.co_firstlineno + 1} in make_in_a_helper"
    assert info.arena
    del pool


def test_renaming_and_unnamed_pools():
    pool = Pool()
    assert pool.name is None
    pool.name = "test-stats-renamed"
    assert find("test-stats-renamed")
    pool.name = None
    assert not find("test-stats-renamed")
    with pytest.raises(TypeError):
        Pool(name=42)
    with pytest.raises(TypeError):
        Pool(None, None, None, None, "positional")


def test_dropped_pool_disappears_from_the_report():
    pool = Pool(name="test-stats-dropped")
    pool.alloc(1, 10)
    assert find("test-stats-dropped")
    del pool
    gc.collect()
    assert not find("test-stats-dropped")
    assert "test-stats-dropped" not in cymem_rs.format_report()


def by_origin(origin: str) -> list[cymem_rs.PoolInfo]:
    return [p for p in cymem_rs.live_pools() if p.origin == origin]


def test_an_unnamed_pool_is_listed_from_its_first_block():
    """`Pool()` takes no registry record until it needs one: an unused pool
    is not listed (it holds nothing); from its first block on it is, with
    the line that made it."""
    code = test_an_unnamed_pool_is_listed_from_its_first_block.__code__
    pools = [Pool(), Pool(), Pool()]
    origin = f"{code.co_filename}:{code.co_firstlineno + 5} in {code.co_name}"
    assert pools[0].stats == PoolStats(0, 0, 0, 0, 0, 0)
    pools[0].reset_peak()
    pools[0].clear()
    assert pools[0].size == 0 and pools[0].name is None
    # (Pools with a lock of their own keep it in their record: listed at once.)
    assert len(by_origin(origin)) == 3 * cymem_rs.cymem._POOL_LOCK
    pools[0].alloc(2, 50)
    pools[2:] = []
    info = by_origin(origin)[0]
    assert (info.size, info.block_count, info.name) == (100, 1, None)
    pools[1].limit = 1000
    assert [p.limit for p in by_origin(origin)] == [None, 1000]
    del pools
    gc.collect()
    assert by_origin(origin) == []


def test_the_report_keeps_no_pool_alive():
    pool = Pool(name="test-stats-weak")
    ref = weakref.ref(pool)
    pools = cymem_rs.live_pools()
    text = cymem_rs.format_report()
    assert any(p.name == "test-stats-weak" for p in pools) and "test-stats-weak" in text
    del pool
    assert ref() is None
    assert not find("test-stats-weak")


def test_live_pools_are_sorted_by_bytes():
    pools = [Pool(name=f"test-stats-sort-{i}") for i in range(4)]
    for pool, size in zip(pools, [10, 5000, 0, 300]):
        if size:
            pool.alloc(1, size)
    everything = cymem_rs.live_pools()
    sizes = [p.size for p in everything]
    assert sizes == sorted(sizes, reverse=True)
    ours = [p.name for p in everything if p.name and p.name.startswith("test-stats-sort-")]
    assert ours == [
        "test-stats-sort-1",
        "test-stats-sort-3",
        "test-stats-sort-0",
        "test-stats-sort-2",
    ]


def parse_table(text: str) -> list[dict[str, str]]:
    """Parses the report by the header's column positions."""
    lines = text.splitlines()
    header, rows, total = lines[0], lines[1:-1], lines[-1]
    assert "live pool" in total
    names = header.split()
    starts = [header.index(n) for n in ("mode", "name", "origin")]
    parsed = []
    for row in rows:
        numbers = row[: starts[0]].split()
        assert len(numbers) == 6, row
        cells = dict(zip(names[:6], numbers))
        cells["mode"] = row[starts[0] : starts[1]].strip()
        cells["name"] = row[starts[1] : starts[2]].strip()
        cells["origin"] = row[starts[2] :].strip()
        parsed.append(cells)
    return parsed


def test_the_c_report_of_the_same_registry_parses():
    """`cymem_report`, the C function, called in this process through ctypes:
    it lists the Python pools, in a table that parses."""
    lib = ctypes.CDLL(cymem_rs.cymem.__file__)
    lib.cymem_report.restype = ctypes.c_size_t
    lib.cymem_report.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
    pool = Pool(name="test-stats-c-table")
    pool.alloc(7, 100)
    length = lib.cymem_report(None, 0)
    buf = ctypes.create_string_buffer(length + 1)
    assert lib.cymem_report(buf, length + 1) == length
    text = buf.value.decode()
    rows = {r["name"]: r for r in parse_table(text)}
    row = rows["test-stats-c-table"]
    assert (row["bytes"], row["peak"], row["blocks"], row["allocs"]) == ("700", "700", "1", "1")
    assert row["mode"] == "heap" and "test_stats.py:" in row["origin"]
    # The Python formatter is the same table.
    assert parse_table(cymem_rs.format_report())[0].keys() == rows["test-stats-c-table"].keys()


def test_origin_tracking_can_be_switched_off():
    assert cymem_rs.track_origins(False) is True
    try:
        pool = Pool(name="test-stats-untracked")
        [info] = find("test-stats-untracked")
        assert info.origin == "Python"
    finally:
        assert cymem_rs.track_origins(True) is False
    del pool
    tracked = Pool(name="test-stats-tracked")
    [info] = find("test-stats-tracked")
    assert "test_stats.py:" in info.origin
    assert tracked.name == "test-stats-tracked"


def test_reports_while_other_threads_make_and_drop_pools():
    import threading

    def churn():
        for _ in range(500):
            pool = Pool(name="test-stats-thread")
            pool.alloc(4, 16)
            del pool

    threads = [threading.Thread(target=churn) for _ in range(4)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        for info in find("test-stats-thread"):
            # Seen before or after its alloc, never in between.
            assert (info.size, info.block_count) in ((0, 0), (64, 1))
        cymem_rs.format_report()
    for t in threads:
        t.join()
    assert not find("test-stats-thread")
