"""cymem_rs from Python: the surface cymem users touch, and its errors."""

import gc
import os
import pickle
import tracemalloc
import warnings
import weakref

import pytest

import cymem_rs
import cymem_rs.cymem
from cymem_rs import Address, Default_Free, Default_Malloc, Pool, PyFree, PyMalloc


def test_both_import_paths_name_the_same_objects():
    assert cymem_rs.Pool is cymem_rs.cymem.Pool
    assert cymem_rs.Address is cymem_rs.cymem.Address
    assert Pool.__module__ == "cymem_rs.cymem"
    assert cymem_rs.cymem.WARN_ZERO_ALLOC is False


def test_new_pool_is_empty_with_default_allocators():
    pool = Pool()
    assert pool.size == 0
    assert pool.block_count == 0
    assert pool.addresses == {}
    assert pool.refs == []
    assert pool.pymalloc is Default_Malloc
    assert pool.pyfree is Default_Free
    assert isinstance(Default_Malloc, PyMalloc) and isinstance(Default_Free, PyFree)


def test_alloc_free_realloc_track_sizes_and_addresses(make_pool):
    pool = make_pool()
    a = pool.alloc(10, 4)
    b = pool.alloc(3, 8)
    assert a != b and a and b
    assert pool.size == 64
    assert pool.addresses == {a: 40, b: 24}
    c = pool.realloc(a, 100)
    assert pool.addresses == {c: 100, b: 24}
    assert pool.size == 124
    pool.free(b)
    assert pool.size == 100 and pool.block_count == 1


def test_size_is_read_only(make_pool):
    pool = make_pool()
    with pytest.raises(AttributeError):
        pool.size = 10


def test_free_of_unknown_address_is_key_error(make_pool):
    pool = make_pool()
    with pytest.raises(KeyError, match="not a live block"):
        pool.free(12345)
    a = pool.alloc(1, 8)
    pool.free(a)
    with pytest.raises(KeyError):
        pool.free(a)  # double free
    other = make_pool().alloc(1, 8)
    with pytest.raises(KeyError):
        pool.free(other)  # another pool's block


def test_realloc_rules_are_cymems(make_pool):
    pool = make_pool()
    a = pool.alloc(1, 64)
    with pytest.raises(ValueError, match="only grows"):
        pool.realloc(a, 64)
    with pytest.raises(ValueError):
        pool.realloc(a, 8)
    with pytest.raises(ValueError, match="not a live block"):
        pool.realloc(999, 128)
    assert pool.addresses == {a: 64}


def test_overflow_and_impossible_sizes_are_memory_errors(make_pool):
    pool = make_pool()
    huge = 2**64 - 1
    with pytest.raises(MemoryError, match="overflows"):
        pool.alloc(huge, 2)
    with pytest.raises(MemoryError):
        pool.alloc(2**62, 1)  # representable, but no allocator can give it
    with pytest.raises(MemoryError):
        Address(huge, 16)
    assert pool.size == 0 and pool.block_count == 0


@pytest.mark.parametrize("bad", [-1, -(2**70)])
def test_negative_sizes_are_refused(make_pool, bad):
    pool = make_pool()
    with pytest.raises(OverflowError):
        pool.alloc(bad, 8)
    with pytest.raises(OverflowError):
        Address(1, bad)


@pytest.mark.parametrize("bad", ["8", 8.0, None, [8]])
def test_non_integer_sizes_are_type_errors(make_pool, bad):
    pool = make_pool()
    with pytest.raises(TypeError):
        pool.alloc(bad, 8)
    with pytest.raises(TypeError):
        Address(bad, 8)


def test_allocator_objects_of_the_wrong_type_are_refused():
    with pytest.raises(TypeError):
        Pool(object())
    with pytest.raises(TypeError):
        Pool(Default_Malloc, Default_Malloc)
    with pytest.raises(TypeError):
        PyMalloc()  # made only by WrapMalloc, from Cython


def test_zero_byte_allocations_are_distinct_and_counted_as_zero(make_pool):
    pool = make_pool()
    addrs = {pool.alloc(0, 8) for _ in range(10)} | {pool.alloc(8, 0) for _ in range(10)}
    assert len(addrs) == 20 and 0 not in addrs
    assert pool.size == 0 and pool.block_count == 20


def test_warn_zero_alloc_flag(make_pool, monkeypatch):
    pool = make_pool()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pool.alloc(0, 1)  # no warning by default
    monkeypatch.setattr(cymem_rs.cymem, "WARN_ZERO_ALLOC", True)
    with pytest.warns(UserWarning, match="Allocating zero bytes"):
        pool.alloc(0, 1)


def test_address_owns_one_zeroed_block():
    a = Address(4, 8)
    assert a.addr != 0 and a.size == 32
    empty = Address(0, 8)  # 0 bytes still gets an address of its own
    assert empty.addr != 0 and empty.size == 0


def test_own_pyref_keeps_objects_alive(make_pool):
    class Thing:
        pass

    pool = make_pool()
    thing = Thing()
    ref = weakref.ref(thing)
    pool.own_pyref(thing)
    del thing
    gc.collect()
    assert ref() is not None
    assert pool.refs == [ref()]
    del pool
    gc.collect()
    assert ref() is None


def test_reference_cycle_through_own_pyref_is_collected(make_pool):
    class Node:
        pass

    pool = make_pool()
    node = Node()
    node.pool = pool
    pool.own_pyref(node)
    pool.alloc(1, 1024)
    pool_ref = weakref.ref(pool)
    del pool, node
    gc.collect()
    assert pool_ref() is None


def test_pools_refuse_pickling(make_pool):
    with pytest.raises(TypeError):
        pickle.dumps(make_pool())


def test_python_subclass_and_weakref():
    class MyPool(Pool):
        pass

    pool = MyPool()
    assert isinstance(pool, Pool)
    assert pool.alloc(2, 2) and pool.size == 4
    assert weakref.ref(pool)() is pool


def test_repr_mentions_size_and_blocks(make_pool):
    pool = make_pool()
    pool.alloc(3, 3)
    assert "size=9" in repr(pool) and "blocks=1" in repr(pool)


def test_tracemalloc_sees_pool_memory_and_its_release():
    gc.collect()
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        pool = Pool()
        for _ in range(16):
            pool.alloc(1, 64 * 1024)
        grown = tracemalloc.get_traced_memory()[0] - baseline
        assert grown >= 16 * 64 * 1024
        del pool
        gc.collect()
        leftover = tracemalloc.get_traced_memory()[0] - baseline
        assert leftover < 16 * 1024, leftover
    finally:
        tracemalloc.stop()


def test_get_include_holds_the_c_header():
    import os

    header = os.path.join(cymem_rs.get_include(), "cymem_rs.h")
    with open(header) as f:
        assert "cymem_pool_alloc" in f.read()


def test_capsule_is_exported_for_cython():
    assert type(cymem_rs.cymem._C_API).__name__ == "PyCapsule"
    assert "cymem_rs.cymem._C_API" in repr(cymem_rs.cymem._C_API)


def test_tests_run_against_the_installed_wheel():
    # `make test-python` installs the wheel; the source tree must not shadow it.
    assert "site-packages" in cymem_rs.__file__, cymem_rs.__file__


def test_arena_pool_reports_its_mode():
    pool = Pool(arena=True)
    assert pool.arena is True and Pool().arena is False
    assert "arena" in repr(pool)
    assert pool.pymalloc is Default_Malloc


def test_arena_pool_refuses_custom_allocators():
    with pytest.raises(ValueError, match="arena"):
        Pool(Default_Malloc, Default_Free, arena=True)


def test_arena_free_does_not_reuse_space_but_keeps_accounting():
    pool = Pool(arena=True)
    a = pool.alloc(1, 64)
    pool.free(a)
    b = pool.alloc(1, 64)
    assert b != a  # freed arena space waits for the pool to die
    assert pool.size == 64 and pool.block_count == 1
    with pytest.raises(KeyError):
        pool.free(a)


class _Truthy:
    """An object whose truth value is its own choice (as `__bool__` says)."""

    def __init__(self, value):
        self.value = value

    def __bool__(self):
        return self.value


@pytest.mark.parametrize(
    "flag, expected",
    [
        (1, True),
        (0, False),
        ("yes", True),
        ("", False),
        ([0], True),
        ([], False),
        (_Truthy(True), True),
        (_Truthy(False), False),
        (True, True),
        (False, False),
    ],
)
def test_arena_and_debug_take_the_truth_value_of_any_object(flag, expected):
    assert Pool(arena=flag).arena is expected
    assert Pool(debug=flag).debug is expected


def test_debug_none_follows_the_environment_and_false_overrides_it():
    # The variable is read once per process: ask a fresh one.
    import subprocess
    import sys

    code = (
        "from cymem_rs import Pool; "
        "print(Pool(debug=None).debug, Pool(debug=0).debug, Pool(debug=[1]).debug)"
    )
    for value, follows in (("1", True), ("0", False)):
        env = {**os.environ, "CYMEM_RS_DEBUG": value}
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        assert out.stdout.split() == [str(follows), "False", "True"]


def test_arena_and_debug_truth_value_errors_propagate():
    class Undecided:
        def __bool__(self):
            raise ZeroDivisionError("no truth value")

    with pytest.raises(ZeroDivisionError):
        Pool(arena=Undecided())
    with pytest.raises(ZeroDivisionError):
        Pool(debug=Undecided())


def test_pool_signature_shows_the_flag_defaults():
    import inspect

    assert str(inspect.signature(Pool)) == (
        "(pymalloc=None, pyfree=None, *, arena=False, name=None, debug=None, limit=None)"
    )
