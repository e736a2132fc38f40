"""`Pool()`, `Address(n, size)` and `Pool.size` have fast paths of their own
(vectorcall on the type, a direct `Address.__new__`, a plain getter). Every
other way of calling them goes to the pyo3 implementation: these check that
both kinds of call make the same objects and raise the same errors."""

from __future__ import annotations

import sys

import pytest

import cymem_rs
from cymem_rs import Address, Pool


class Int(int):
    pass


def test_a_pool_made_without_arguments_is_a_full_default_pool():
    pool = Pool()
    line = sys._getframe().f_lineno - 1
    assert type(pool) is Pool
    assert (pool.size, pool.block_count, pool.arena, pool.name, pool.limit) == (
        0,
        0,
        False,
        None,
        None,
    )
    assert pool.pymalloc is cymem_rs.Default_Malloc and pool.pyfree is cymem_rs.Default_Free
    code = test_a_pool_made_without_arguments_is_a_full_default_pool.__code__
    origin = f"{code.co_filename}:{line} in {code.co_name}"
    # Listed from its first block on (an unused pool takes no record), or at
    # once if it has a lock of its own (kept in its record).
    listed = [i for i in cymem_rs.live_pools() if i.origin == origin]
    assert len(listed) == cymem_rs.cymem._POOL_LOCK
    block = pool.alloc(2, 8)
    assert pool.size == 16 and pool.addresses == {block: 16}
    [info] = [i for i in cymem_rs.live_pools() if i.origin == origin]
    assert info.name is None and info.size == 16 and not info.arena
    pool.name = "object-paths-default"
    assert [i.origin for i in cymem_rs.live_pools() if i.name == "object-paths-default"] == [origin]


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        ((None,), {}),
        ((None, None), {}),
        ((), {"pymalloc": None}),
        ((), {"name": "object-paths-kw"}),
        ((), {"arena": True}),
        ((), {"limit": 100}),
    ],
)
def test_pools_made_with_arguments_take_them(args, kwargs):
    pool = Pool(*args, **kwargs)
    assert type(pool) is Pool
    assert pool.name == kwargs.get("name")
    assert pool.arena is bool(kwargs.get("arena"))
    assert pool.limit == kwargs.get("limit")


def test_pool_argument_errors_are_the_constructors():
    with pytest.raises(TypeError, match=r"takes from 0 to 2 positional arguments but 3"):
        Pool(1, 2, 3)
    with pytest.raises(TypeError, match="unexpected keyword argument 'nme'"):
        Pool(nme="x")
    with pytest.raises(TypeError, match="PyMalloc"):
        Pool(3)


def test_a_subclass_is_made_by_its_own_new_and_init():
    made = []

    class Sub(Pool):
        def __new__(cls, tag):
            made.append(("new", tag))
            return super().__new__(cls)

        def __init__(self, tag):
            made.append(("init", tag))
            self.tag = tag

    pool = Sub("t")
    assert type(pool) is Sub and pool.tag == "t"
    assert made == [("new", "t"), ("init", "t")]
    pool.alloc(1, 5)
    assert pool.size == 5

    class Plain(Pool):
        pass

    assert type(Plain()) is Plain


@pytest.mark.parametrize(
    ("args", "kwargs", "size"),
    [
        ((2, 8), {}, 16),
        ((), {"number": 2, "elem_size": 8}, 16),
        ((2,), {"elem_size": 8}, 16),
        ((True, 3), {}, 3),
        ((Int(2), 8), {}, 16),
        ((0, 8), {}, 0),
    ],
)
def test_addresses_made_any_way_hold_a_zeroed_block(args, kwargs, size):
    address = Address(*args, **kwargs)
    assert type(address) is Address and address.size == size
    assert bytes(memoryview(address)) == bytes(size)
    assert address.addr != 0


@pytest.mark.parametrize(
    ("args", "error", "message"),
    [
        ((-1, 2), OverflowError, "negative"),
        ((1.5, 2), TypeError, "float"),
        ((2**70, 1), OverflowError, "too big"),
        ((2**40, 2**40), MemoryError, "overflows"),
        ((1,), TypeError, "missing 1 required positional argument: 'elem_size'"),
        ((1, 2, 3), TypeError, "takes 2 positional arguments but 3"),
    ],
)
def test_address_errors_are_the_constructors(args, error, message):
    with pytest.raises(error, match=message):
        Address(*args)
    # The same through `__new__` (the slot Cython's calls reach).
    with pytest.raises(error, match=message):
        Address.__new__(Address, *args)


def test_address_new_called_directly_makes_an_address():
    address = Address.__new__(Address, 3, 4)
    assert type(address) is Address and address.size == 12


def test_size_is_a_read_only_descriptor_of_every_pool():
    assert Pool.size.__doc__ == "Bytes in live blocks."
    pool = Pool()
    with pytest.raises(AttributeError):
        pool.size = 3

    class Sub(Pool):
        pass

    sub = Sub()
    block = sub.alloc(3, 7)
    assert sub.size == 21
    sub.free(block)
    assert sub.size == 0
    with pytest.raises(TypeError):
        Pool.size.__get__(object())


@pytest.mark.skipif(sys.version_info < (3, 10), reason="CPython 3.9 has no immutable heap types")
def test_the_types_are_immutable_as_cymems_are():
    # cymem's Pool and Address are Cython cdef classes: static, immutable
    # types. So are these (which also lets CPython specialise their calls).
    for cls in (Pool, Address):
        with pytest.raises(TypeError, match="immutable"):
            cls.__init__ = lambda self, *args: None
        with pytest.raises(TypeError, match="immutable"):
            cls.extra = 1
    assert Pool().size == 0 and Address(1, 8).size == 8

    # Subclasses stay ordinary classes: their attributes can be assigned.
    class Sub(Pool):
        pass

    calls = []
    Sub.__init__ = lambda self, *args: calls.append(args)
    sub = Sub()
    assert calls == [()] and sub.size == 0
