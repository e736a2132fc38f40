"""Pool blocks in tracemalloc snapshots: every kind of pool (heap, arena,
debug; PyMem, C library), from Python and from Cython. Blocks PyMem does not
allocate are reported in cymem_rs.TRACEMALLOC_DOMAIN, attributed to the
Python line that allocated them, and leave the snapshot when freed or when
their pool dies."""

from __future__ import annotations

import gc
import inspect
import tracemalloc

import pytest

from cymem_rs import TRACEMALLOC_DOMAIN, Pool

BLOCKS = 12
SIZE = 1000  # bytes per block: odd enough to tell the blocks from noise


@pytest.fixture
def tracing():
    tracemalloc.start()
    yield
    tracemalloc.stop()


@pytest.fixture(scope="module")
def traced(cython_module):
    return cython_module("traced")


def line_here() -> int:
    return inspect.currentframe().f_back.f_lineno


def bytes_at(domain: int, lineno: int) -> int:
    """Bytes traced now in `domain` whose newest frame is this file's
    `lineno`, in traces of at least SIZE bytes (so not the Python objects
    made on the same line, which domain 0 holds too)."""
    # (Inclusive filters of one call are alternatives: filter twice.)
    snapshot = tracemalloc.take_snapshot().filter_traces([tracemalloc.DomainFilter(True, domain)])
    snapshot = snapshot.filter_traces([tracemalloc.Filter(True, __file__, lineno)])
    return sum(trace.size for trace in snapshot.traces if trace.size >= SIZE)


def make(kind: str, traced) -> tuple[Pool, int]:
    """A pool of `kind` and the domain its blocks are traced in."""
    if kind in ("heap", "debug-heap"):  # PyMem: tracemalloc's own domain 0
        return Pool(debug=kind == "debug-heap"), 0
    if kind == "arena":
        return Pool(arena=True, debug=False), TRACEMALLOC_DOMAIN
    if kind == "debug-arena":
        return Pool(arena=True, debug=True), TRACEMALLOC_DOMAIN
    if kind == "libc":
        return traced.libc_pool(debug=False), TRACEMALLOC_DOMAIN
    assert kind == "debug-libc"
    return traced.libc_pool(debug=True), TRACEMALLOC_DOMAIN


KINDS = ["heap", "debug-heap", "arena", "debug-arena", "libc", "debug-libc"]


def test_the_domain_is_the_projects_own():
    assert TRACEMALLOC_DOMAIN == 0x63796D65


@pytest.mark.parametrize("kind", KINDS)
def test_python_allocations_are_attributed_and_untracked_when_freed(tracing, traced, kind):
    pool, domain = make(kind, traced)
    addrs = [pool.alloc(1, SIZE) for _ in range(BLOCKS)]
    line = line_here() - 1
    # A debug pool's PyMem blocks carry their guards; the others are exact.
    assert bytes_at(domain, line) >= BLOCKS * SIZE
    if domain == TRACEMALLOC_DOMAIN:
        assert bytes_at(domain, line) == BLOCKS * SIZE
    for addr in addrs[: BLOCKS // 2]:
        pool.free(addr)
    if domain == TRACEMALLOC_DOMAIN:
        assert bytes_at(domain, line) == (BLOCKS - BLOCKS // 2) * SIZE
    del pool
    gc.collect()
    assert bytes_at(domain, line) == 0, "the pool's death untracked its blocks"


@pytest.mark.parametrize("kind", KINDS)
def test_cython_allocations_are_attributed_to_the_calling_line(tracing, traced, kind):
    pool, domain = make(kind, traced)
    addrs = traced.alloc_blocks(pool, BLOCKS, SIZE)
    line = line_here() - 1
    assert bytes_at(domain, line) >= BLOCKS * SIZE
    traced.free_blocks(pool, addrs)
    # (A debug heap pool's freed PyMem blocks wait in its quarantine.)
    if kind != "debug-heap":
        assert bytes_at(domain, line) == 0
    more = traced.alloc_blocks(pool, BLOCKS, SIZE)
    line = line_here() - 1
    traced.grow_block(pool, more[0], 3 * SIZE)
    grow_line = line_here() - 1
    if domain == TRACEMALLOC_DOMAIN:
        assert bytes_at(domain, line) == (BLOCKS - 1) * SIZE
        assert bytes_at(domain, grow_line) == 3 * SIZE
    del pool
    gc.collect()
    assert bytes_at(domain, line) == 0
    assert bytes_at(domain, grow_line) == 0


def test_pools_made_before_tracing_starts_are_not_reported():
    pool = Pool(arena=True)
    tracemalloc.start()
    try:
        pool.alloc(1, SIZE)
        line = line_here() - 1
        assert bytes_at(TRACEMALLOC_DOMAIN, line) == 0
        fresh = Pool(arena=True)
        fresh.alloc(1, SIZE)
        line = line_here() - 1
        assert bytes_at(TRACEMALLOC_DOMAIN, line) == SIZE
    finally:
        tracemalloc.stop()


def test_pools_keep_working_after_tracing_stops(traced):
    tracemalloc.start()
    pool = Pool(arena=True)
    other = traced.libc_pool()
    tracemalloc.stop()
    addrs = [pool.alloc(1, 64) for _ in range(10)] + [other.alloc(1, 64) for _ in range(10)]
    for addr in addrs[:10]:
        pool.free(addr)
    for addr in addrs[10:]:
        other.free(addr)
    assert pool.size == other.size == 0
