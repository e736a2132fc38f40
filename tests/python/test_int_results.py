"""Ints handed to Python (addresses, sizes, counts) when CPython cannot
allocate them: MemoryError, never PanicException, and `alloc` keeps no block
its caller never saw. `_testcapi.set_nomemory(n, n + 1)` fails the n-th
allocation of every CPython domain from the next call on."""

from __future__ import annotations

import pytest

from cymem_rs import Address, Pool

_testcapi = pytest.importorskip("_testcapi")


def failing_each_step(call, steps=8):
    """`call()` with the n-th allocation failing, for n in 0..steps; what
    each attempt gave: a result or the exception type."""
    outcomes = []
    for n in range(steps):
        _testcapi.set_nomemory(n, n + 1)
        try:
            outcomes.append(call())
        except MemoryError:
            outcomes.append(MemoryError)
        finally:
            _testcapi.remove_mem_hooks()
    return outcomes


def test_alloc_raises_memory_error_and_keeps_no_unseen_block():
    pool = Pool()
    outcomes = failing_each_step(lambda: pool.alloc(1, 100))
    assert MemoryError in outcomes
    handed_out = [o for o in outcomes if o is not MemoryError]
    assert handed_out, outcomes
    # Every block the pool holds is one the caller was given.
    assert sorted(pool.addresses) == sorted(handed_out)
    assert pool.size == 100 * len(handed_out)


def test_realloc_raises_memory_error_and_the_pool_stays_consistent():
    pool = Pool()
    outcomes = []
    for n in range(8):
        addr = pool.alloc(1, 16)
        _testcapi.set_nomemory(n, n + 1)
        try:
            outcomes.append(pool.realloc(addr, 100_000))
        except MemoryError:
            outcomes.append(MemoryError)
        finally:
            _testcapi.remove_mem_hooks()
    assert MemoryError in outcomes
    # Every block is listed once, at its size, whatever step failed.
    assert pool.block_count == 8
    assert sum(pool.addresses.values()) == pool.size
    assert all(pool.addresses[o] == 100_000 for o in outcomes if o is not MemoryError)


@pytest.mark.parametrize(
    "read",
    [
        lambda p, a: p.size,
        lambda p, a: p.block_count,
        lambda p, a: p.peak_size,
        lambda p, a: a.addr,
        lambda p, a: a.size,
    ],
    ids=["size", "block_count", "peak_size", "Address.addr", "Address.size"],
)
def test_getters_raise_memory_error(read):
    pool = Pool()
    for _ in range(300):  # counts past the ints CPython keeps made
        pool.alloc(1, 1000)
    address = Address(1, 100_000)
    outcomes = failing_each_step(lambda: read(pool, address), steps=4)
    assert set(outcomes) <= {MemoryError, read(pool, address)}, outcomes
