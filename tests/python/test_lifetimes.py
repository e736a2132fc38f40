"""Lifetimes shorter than the pool's, from Python and Cython: `clear()`,
scopes (`with pool.scope():`, `mark` / `release_to`), cleanup callbacks
and limits, in heap, arena and debug pools."""

import ctypes
import gc
import os
import subprocess
import sys
import weakref

import pytest

from cymem_rs import Pool

KINDS = {
    "heap": {},
    "arena": {"arena": True},
    "debug": {"debug": True},
    "debug_arena": {"arena": True, "debug": True},
}


@pytest.fixture(params=list(KINDS))
def new_pool(request):
    """Makes pools of each kind: every rule holds for all of them."""
    return lambda **kw: Pool(**KINDS[request.param], **kw)


@pytest.fixture(params=["c", "c++"])
def api(request, cython_module):
    return cython_module("lifetimes_api", request.param)


@pytest.fixture
def unraisable(monkeypatch):
    """The exceptions reported through `sys.unraisablehook` meanwhile."""
    seen = []
    monkeypatch.setattr(sys, "unraisablehook", seen.append)
    return seen


def byte_at(addr):
    return ctypes.c_ubyte.from_address(addr).value


def set_byte(addr, value):
    ctypes.c_ubyte.from_address(addr).value = value


# clear()


def test_clear_frees_every_block_and_keeps_the_pool_usable(new_pool):
    pool = new_pool()
    addrs = [pool.alloc(n, 8) for n in range(1, 6)]
    pool.free(addrs[0])
    before = pool.stats
    pool.clear()
    after = pool.stats
    assert (after.size, after.block_count, pool.addresses) == (0, 0, {})
    assert after.total_allocs == before.total_allocs
    assert after.total_frees == before.total_frees + 4
    assert after.peak_size == 120, "the peak stays until reset_peak()"
    with pytest.raises(KeyError):
        pool.free(addrs[1])
    pool.alloc(1, 8)
    pool.reset_peak()
    assert pool.peak_size == 8


def test_clear_with_a_live_view_raises_buffer_error_and_changes_nothing(new_pool):
    pool = new_pool()
    a = pool.alloc(4, 1)
    view = pool.view(a)
    with pytest.raises(BufferError):
        pool.clear()
    assert pool.addresses == {a: 4}
    del view
    pool.clear()
    assert pool.block_count == 0


# Scopes


def test_a_scope_frees_what_was_allocated_inside_and_nothing_else(new_pool):
    pool = new_pool()
    old = pool.alloc(8, 1)
    set_byte(old, 0x5A)
    with pool.scope() as mark:
        assert isinstance(mark, int) and mark != 0
        inner = [pool.alloc(n + 1, 4) for n in range(50)]
        pool.free(inner[7])
        old = pool.realloc(old, 4096)  # older block, grown inside: survives
    assert pool.addresses == {old: 4096}
    assert byte_at(old) == 0x5A
    assert pool.stats.total_frees == 50


def test_an_exception_inside_a_scope_propagates_and_the_blocks_are_freed(new_pool):
    pool = new_pool()
    keep = pool.alloc(1, 1)
    with pytest.raises(ZeroDivisionError), pool.scope():
        for _ in range(10):
            pool.alloc(1, 16)
        1 / 0  # noqa: B018
    assert pool.addresses == {keep: 1}
    # The pool goes on as before: scopes nest again from the top.
    with pool.scope():
        pool.alloc(1, 1)
    assert pool.block_count == 1


def test_nested_scopes_and_releasing_an_outer_mark(new_pool):
    pool = new_pool()
    outer = pool.mark()
    a = pool.alloc(1, 10)
    with pool.scope():
        b = pool.alloc(1, 20)
        inner = pool.mark()
        pool.alloc(1, 30)
        pool.release_to(inner)
        assert set(pool.addresses) == {a, b}
        pool.mark()
        pool.alloc(1, 40)
    # Leaving the `with` released its scope and the one opened inside it.
    assert set(pool.addresses) == {a}
    pool.release_to(outer)
    assert pool.block_count == 0


def test_stale_and_foreign_marks_raise_value_error(new_pool):
    pool, other = new_pool(), new_pool()
    foreign = other.mark()
    mark = pool.mark()
    addr = pool.alloc(1, 1)
    with pytest.raises(ValueError, match="not open in this pool"):
        pool.release_to(foreign)
    with pytest.raises(ValueError):
        pool.release_to(0)
    assert pool.addresses == {addr: 1}
    pool.release_to(mark)
    with pytest.raises(ValueError):
        pool.release_to(mark)
    with pytest.raises((ValueError, OverflowError)):
        pool.release_to(-1)


def test_a_viewed_block_keeps_the_scope_open_and_chains_to_the_exception(new_pool):
    pool = new_pool()
    scope = pool.scope()
    with pytest.raises(BufferError) as raised, scope:
        view = pool.view(pool.alloc(8, 1))
        raise KeyError("in flight")
    assert isinstance(raised.value.__context__, KeyError)
    assert pool.block_count == 1, "nothing was released"
    assert scope.mark is not None
    del view
    pool.release_to(scope.mark)
    assert pool.block_count == 0


def test_a_scope_cannot_be_entered_twice_at_once(new_pool):
    pool = new_pool()
    scope = pool.scope()
    with scope, pytest.raises(RuntimeError):
        scope.__enter__()
    with scope:  # reusable once closed
        pool.alloc(1, 1)
    assert pool.block_count == 0


# Cleanups


def test_cleanups_run_newest_first_before_the_blocks_are_freed(new_pool):
    pool = new_pool()
    addr = pool.alloc(1, 1)
    set_byte(addr, 0xC3)
    ran = []
    pool.add_cleanup(lambda: ran.append(("first", byte_at(addr))))
    with pool.scope():
        pool.add_cleanup(lambda: ran.append(("scoped", None)))
    assert ran == [("scoped", None)]
    pool.add_cleanup(lambda: ran.append(("last", byte_at(addr))))
    pool.clear()
    assert ran == [("scoped", None), ("last", 0xC3), ("first", 0xC3)]
    pool.clear()
    assert len(ran) == 3, "clear forgets the cleanups it ran"


def test_a_cleanup_that_raises_is_reported_and_the_others_still_run(new_pool, unraisable):
    pool = new_pool()
    ran = []

    def boom():
        raise OSError("cleanup failed")

    pool.add_cleanup(lambda: ran.append(1))
    pool.add_cleanup(boom)
    pool.add_cleanup(lambda: ran.append(3))
    pool.clear()
    assert ran == [3, 1]
    assert len(unraisable) == 1
    assert isinstance(unraisable[0].exc_value, OSError)


def test_a_cleanup_that_touches_its_pool_gets_runtime_error(new_pool):
    pool = new_pool()
    addr = pool.alloc(1, 1)
    mark = pool.mark()
    errors = []

    def touch():
        for call in (
            lambda: pool.alloc(1, 1),
            lambda: pool.free(addr),
            lambda: pool.realloc(addr, 64),
            pool.clear,
            pool.mark,
            lambda: pool.release_to(mark),
            lambda: pool.add_cleanup(print),
            lambda: pool.view(addr),
        ):
            try:
                call()
            except RuntimeError as err:
                errors.append(str(err))
        errors.append(pool.size)

    pool.add_cleanup(touch)
    pool.release_to(mark)
    assert len(errors) == 9 and errors[-1] == 1
    assert all("running its cleanups" in e for e in errors[:-1])
    pool.alloc(1, 1)  # usable again


def test_cleanups_run_when_the_pool_dies_and_release_their_callables(new_pool):
    pool = new_pool()
    addr = pool.alloc(1, 1)
    set_byte(addr, 7)
    seen = []

    class Callback:
        def __call__(self):
            seen.append(byte_at(addr))

    callback = Callback()
    ref = weakref.ref(callback)
    pool.add_cleanup(callback)
    del callback
    assert ref() is not None, "the pool holds the callable"
    del pool
    gc.collect()
    assert seen == [7]
    assert ref() is None, "and lets it go after running it"


def test_a_cleanup_in_a_cycle_with_its_pool_is_collected_and_runs(new_pool):
    ran = []

    class Owner:
        def __init__(self):
            self.pool = new_pool()
            self.pool.alloc(1, 8)
            self.pool.add_cleanup(self.close)  # owner -> pool -> method -> owner

        def close(self):
            ran.append("closed")

    owner = Owner()
    ref = weakref.ref(owner)
    del owner
    gc.collect()
    assert ran == ["closed"]
    assert ref() is None, "the garbage collector saw the cycle"


def test_cleanups_of_a_module_level_pool_run_at_exit(tmp_path):
    script = tmp_path / "exit_cleanup.py"
    script.write_text(
        "import os\n"
        "from cymem_rs import Pool\n"
        "pool = Pool()\n"
        # Bound now: at exit the module's globals may be gone first.
        "pool.add_cleanup(lambda write=os.write: write(1, b'ran at exit'))\n"
    )
    out = subprocess.run([sys.executable, str(script)], capture_output=True, check=True)
    assert (out.stdout, out.stderr) == (b"ran at exit", b"")


def test_add_cleanup_needs_a_callable(new_pool):
    with pytest.raises(TypeError):
        new_pool().add_cleanup(42)


# Limits


def test_the_limit_refuses_allocs_and_growth_and_changes_nothing(new_pool):
    pool = new_pool(limit=100)
    assert pool.limit == 100
    addr = pool.alloc(60, 1)
    set_byte(addr, 0x77)
    stats = pool.stats
    with pytest.raises(MemoryError, match="limit of 100 bytes"):
        pool.alloc(41, 1)
    with pytest.raises(MemoryError, match="limit of 100 bytes"):
        pool.realloc(addr, 101)
    assert pool.stats == stats
    assert pool.addresses == {addr: 60} and byte_at(addr) == 0x77
    addr = pool.realloc(addr, 100)
    pool.limit = None
    assert pool.limit is None
    pool.alloc(1000, 1)
    pool.limit = 50
    with pytest.raises(MemoryError):
        pool.alloc(1, 1)
    pool.limit = 0
    assert pool.limit is None
    with pytest.raises(OverflowError):
        pool.limit = -1
    assert Pool().limit is None


def test_the_limit_inside_a_scope(new_pool):
    pool = new_pool(limit=64)
    with pytest.raises(MemoryError), pool.scope():
        while True:
            pool.alloc(1, 16)
    assert pool.size == 0
    assert pool.stats.total_allocs == 4


def test_live_pools_show_the_limit():
    import cymem_rs

    pool = Pool(name="limited", limit=1000)
    (info,) = [p for p in cymem_rs.live_pools() if p.name == "limited"]
    assert info.limit == 1000
    pool.limit = None
    (info,) = [p for p in cymem_rs.live_pools() if p.name == "limited"]
    assert info.limit is None


# Cython (inline C calls)


def test_cython_scopes_clear_and_exceptions(new_pool, api):
    pool = new_pool()
    keep = pool.alloc(1, 8)
    assert api.scoped_blocks(pool, 20) == 8
    with pytest.raises(ValueError, match="half way"):
        api.raise_inside_scope(pool, 10)
    assert pool.addresses == {keep: 8}
    mark = api.mark(pool)
    pool.alloc(1, 1)
    api.release_to(pool, mark)
    with pytest.raises(ValueError):
        api.release_to(pool, mark)
    api.clear(pool)
    assert pool.block_count == 0


def test_cython_c_cleanups_run_before_the_blocks_go(new_pool, api):
    pool = new_pool()
    count, _ = api.cleanup_record()
    mark = api.mark(pool)
    api.add_block_cleanup(pool, 0x3C)
    api.release_to(pool, mark)
    assert api.cleanup_record() == (count + 1, 0x3C)
    api.add_block_cleanup(pool, 0x4D)
    view = pool.view(next(iter(pool.addresses)))
    with pytest.raises(BufferError):
        api.clear(pool)
    del view
    api.clear(pool)
    assert api.cleanup_record() == (count + 2, 0x4D)
    api.add_block_cleanup(pool, 0x5E)
    del pool
    gc.collect()
    assert api.cleanup_record() == (count + 3, 0x5E)


def test_cython_limits(new_pool, api):
    pool = new_pool()
    assert api.limit(pool) == 0
    api.set_limit(pool, 100)
    assert api.limit(pool) == 100 and pool.limit == 100
    with pytest.raises(MemoryError, match="limit of 100 bytes"):
        api.grow_past_limit(pool, 50, 200)
    assert pool.size == 50
    api.grow_past_limit(pool, 10, 40)
    assert pool.size == 90
    api.set_limit(pool, 0)
    assert pool.limit is None


CLEANUP_IN_A_CYCLE = """
import gc, weakref
from cymem_rs import Pool

def run():
    ran = []
    refs = []
    for k in range(60):
        pool = Pool(arena=(k % 2 == 1))

        class Owner:  # a class per pool: the cycle holds its methods too
            def close(self):
                ran.append(len(self.__dict__))

        owner = Owner()
        owner.pool = pool  # owner -> pool -> cleanup -> owner
        pool.add_cleanup(owner.close)
        pool.alloc(8, 8)
        refs.append(weakref.ref(pool))
        del pool, owner, Owner
    gc.collect()
    assert all(r() is None for r in refs)
    # Each cleanup saw its owner whole: nothing of the cycle cleared yet.
    assert ran == [1] * 60, ran

run()
print("ok")
"""


def test_cleanups_in_a_collected_cycle_see_their_objects_whole():
    # Under PYTHONMALLOC=malloc freed memory is reused at once, so a cleanup
    # run after the collector cleared its function crashes or sees an empty
    # object instead of passing by luck.
    env = {**os.environ, "PYTHONMALLOC": "malloc"}
    out = subprocess.run(
        [sys.executable, "-c", CLEANUP_IN_A_CYCLE],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-3000:]
