"""cymem_rs from Cython: modules compiled at test time against the installed
package, as C and as C++, calling the pool the way cymem users do."""

import gc
import weakref

import pytest

from cymem_rs import Pool

LANGUAGES = ["c", "c++"]


@pytest.fixture(params=LANGUAGES)
def api(request, cython_module):
    return cython_module("pool_api", request.param)


def test_alloc_is_zeroed_and_counted(make_pool, api):
    pool = make_pool()
    assert api.alloc_zeroed(pool, 100, 8)
    assert api.alloc_zeroed(pool, 1, 1 << 20)
    assert api.size_of(pool) == pool.size == 800 + (1 << 20)
    assert pool.block_count == 2


def test_pool_from_python_is_accepted_by_typed_functions(make_pool, api):
    pool = make_pool()
    addr = api.alloc_addr(pool, 4, 4)
    assert pool.addresses == {addr: 16}
    api.free_addr(pool, addr)
    assert pool.size == 0


def test_python_and_cython_see_the_same_blocks(make_pool, api):
    pool = make_pool()
    addr = pool.alloc(2, 8)
    new = api.realloc_addr(pool, addr, 64)
    assert pool.addresses == {new: 64}
    api.free_addr(pool, new)
    assert pool.block_count == 0


def test_realloc_keeps_contents_and_zeroes_the_tail(make_pool, api):
    assert api.realloc_keeps_contents(make_pool())


def test_bad_free_raises_key_error(make_pool, api):
    pool = make_pool()
    with pytest.raises(KeyError):
        api.free_stack_pointer(pool)
    with pytest.raises(KeyError):
        api.free_null(pool)
    with pytest.raises(KeyError):
        api.double_free(pool)
    assert pool.block_count == 0


def test_bad_realloc_raises_value_error_and_keeps_the_block(make_pool, api):
    pool = make_pool()
    assert api.realloc_smaller(pool)
    with pytest.raises(ValueError):
        api.realloc_unknown(pool)


def test_overflow_raises_memory_error(make_pool, api):
    pool = make_pool()
    with pytest.raises(MemoryError, match="overflows"):
        api.overflowing_alloc(pool)
    assert pool.size == 0


def test_zero_byte_allocs_are_unique_non_null(make_pool, api):
    pool = make_pool()
    assert api.zero_byte_blocks(pool, 50) == 50
    assert pool.size == 0 and pool.block_count == 50


def test_warn_zero_alloc_reaches_cython(make_pool, api, monkeypatch):
    import cymem_rs.cymem

    monkeypatch.setattr(cymem_rs.cymem, "WARN_ZERO_ALLOC", True)
    with pytest.warns(UserWarning, match="Allocating zero bytes"):
        api.zero_byte_blocks(make_pool(), 1)


@pytest.mark.parametrize("method", ["alloc", "free", "realloc", "size"])
def test_methods_on_a_none_pool_raise_instead_of_crashing(api, method):
    with pytest.raises(AttributeError, match=f"'NoneType' object has no attribute '{method}'"):
        api.call_on_none_pool(method)


def test_unset_pool_attribute_raises(api):
    with pytest.raises(AttributeError):
        api.Unset().use()


def test_typed_argument_rejects_other_objects(api):
    with pytest.raises(TypeError):
        api.alloc_addr(object(), 1, 1)


def test_address_ptr_is_readable_from_c(api):
    assert api.address_ptr(16, 8)
    assert api.address_ptr(0, 8)


def test_cdef_class_holding_a_pool(api):
    holder = api.Holder(1000)
    holder.fill(3)
    assert holder.total() == 3000
    holder.grow(2000)
    assert holder.total() == 3000  # the new tail is zeroed
    assert holder.pool.size == 2000 * 8
    pool_ref = weakref.ref(holder.pool)
    del holder
    gc.collect()
    assert pool_ref() is None


def test_wrapmalloc_wrapfree_route_every_block_through_user_functions(api):
    assert api.wrapped_functions_are_ours()
    api.reset_allocator()
    pool = api.counting_pool()
    for n in range(1, 50):
        assert api.alloc_zeroed(pool, n, 3)  # zeroed though counting_malloc dirties
    addr = api.alloc_addr(pool, 1, 16)
    addr = api.realloc_addr(pool, addr, 4096)
    api.free_addr(pool, addr)
    mallocs, frees = api.allocator_counts()
    assert (mallocs, frees) == (51, 2)
    del pool
    gc.collect()
    mallocs, frees = api.allocator_counts()
    assert mallocs == frees == 51


def test_allocator_failure_is_memory_error_and_pool_stays_consistent(api):
    api.reset_allocator(fail=3)
    pool = api.counting_pool()
    api.alloc_addr(pool, 1, 8)
    api.alloc_addr(pool, 1, 8)
    with pytest.raises(MemoryError):
        api.alloc_addr(pool, 1, 8)
    assert pool.block_count == 2 and pool.size == 16
    del pool
    gc.collect()
    mallocs, frees = api.allocator_counts()
    assert mallocs == frees == 2


def test_exception_midway_through_nested_build_leaks_nothing(api):
    api.reset_allocator()
    pool = api.counting_pool()
    with pytest.raises(RuntimeError):
        api.build_nested_then_fail(pool, 10)
    assert pool.block_count == 11
    del pool
    gc.collect()
    mallocs, frees = api.allocator_counts()
    assert mallocs == frees == 11


def test_pool_in_a_reference_cycle_frees_its_blocks(api):
    api.reset_allocator()

    class Owner:
        pass

    pool = api.counting_pool()
    owner = Owner()
    owner.pool = pool
    pool.own_pyref(owner)
    for _ in range(100):
        api.alloc_addr(pool, 1, 32)
    del pool, owner
    gc.collect()
    mallocs, frees = api.allocator_counts()
    assert mallocs == frees == 100


def test_cython_code_opts_into_an_arena_where_the_pool_is_made(api):
    pool = Pool(arena=True)
    assert api.alloc_zeroed(pool, 1000, 8)
    holder_total = api.realloc_keeps_contents(pool)
    assert holder_total
    with pytest.raises(KeyError):
        api.double_free(pool)
    assert pool.size == 8000 and pool.block_count == 1


def test_every_allocation_failure_point_raises_memory_error_and_leaks_nothing(api):
    api.reset_allocator()
    pool = api.counting_pool()
    api.build_rows(pool, 20)
    del pool
    calls, _ = api.allocator_counts()
    assert calls >= 80
    for k in range(1, calls + 1):
        api.reset_allocator(fail=k)
        pool = api.counting_pool()
        with pytest.raises(MemoryError):
            api.build_rows(pool, 20)
        assert sum(pool.addresses.values()) == pool.size
        mallocs, frees = api.allocator_counts()
        assert mallocs - frees == pool.block_count, k
        del pool
        gc.collect()
        mallocs, frees = api.allocator_counts()
        assert mallocs == frees, k


def test_threads_hammering_one_pool(api, make_pool):
    import threading

    pool = make_pool()
    keep = [pool.alloc(1, 8) for _ in range(100)]
    errors = []

    def work():
        try:
            api.alloc_free_loop(pool, 20_000)
            for _ in range(2_000):  # and from Python
                pool.free(pool.realloc(pool.alloc(1, 8), 32))
        except (KeyError, ValueError, MemoryError) as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "deadlock"
    assert errors == []
    assert pool.block_count == 100 and pool.size == 800
    for addr in keep:
        pool.free(addr)
    assert pool.block_count == 0 and pool.size == 0


def test_a_pool_used_only_from_cython_is_listed_from_its_first_block(api):
    import cymem_rs

    code = test_a_pool_used_only_from_cython_is_listed_from_its_first_block.__code__
    pool = Pool()
    origin = f"{code.co_filename}:{code.co_firstlineno + 4} in {code.co_name}"

    def listed():
        return [p for p in cymem_rs.live_pools() if p.origin == origin]

    # (Pools with a lock of their own keep it in their record: listed at once.)
    assert len(listed()) == cymem_rs.cymem._POOL_LOCK
    api.alloc_addr(pool, 4, 4)
    [info] = listed()
    assert (info.size, info.block_count) == (16, 1)
