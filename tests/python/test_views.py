"""Zero-copy views of pool blocks and Addresses, from Python and Cython:
memoryview and numpy see the block's own bytes, a view keeps its owner
alive, and a block under a live view cannot be freed or moved."""

import gc
import struct
import sys
import weakref

import numpy as np
import pytest

from cymem_rs import Address, Pool
from cymem_rs.cymem import BlockView

LANGUAGES = ["c", "c++"]


@pytest.fixture(params=LANGUAGES)
def cy(request, cython_module):
    return cython_module("views", request.param)


# ---------------------------------------------------------------- sharing


def test_numpy_sees_cython_data_and_writes_go_both_ways(make_pool, cy):
    pool = make_pool()
    addr, view = cy.matrix_view(pool, 3, 4)
    array = np.asarray(view)
    assert array.dtype == np.float64 and array.shape == (3, 4)
    assert array.ctypes.data == addr, "no copy: the array's data is the block"
    assert array.tolist() == [[10.0 * i + j for j in range(4)] for i in range(3)]

    array[2, 3] = -1.5  # numpy -> Cython
    assert cy.read_double(addr, 11) == -1.5
    cy.write_double(addr, 4, 99.0)  # Cython -> numpy
    assert array[1, 0] == 99.0


def test_frombuffer_and_memoryview_share_the_block(make_pool, cy):
    pool = make_pool()
    addr, view = cy.int_view(pool, 6)
    flat = np.frombuffer(view, dtype=np.int32)
    assert flat.tolist() == [0, 1, 2, 3, 4, 5]
    mv = memoryview(view)
    assert (mv.format, mv.shape, mv.itemsize, mv.readonly) == ("i", (6,), 4, False)
    mv[3] = 42
    assert flat[3] == 42
    assert flat.ctypes.data == addr
    np.asarray(view)[5] = -7
    assert mv[5] == -7 and flat[5] == -7


def test_cython_typed_memoryviews_take_views(make_pool, cy):
    pool = make_pool()
    addr, view = cy.matrix_view(pool, 2, 3)
    assert cy.sum_2d(view) == sum(10.0 * i + j for i in range(2) for j in range(3))
    flat = pool.view(addr, "d")
    cy.scale(flat, 2.0)
    assert np.asarray(view).tolist() == [[0.0, 2.0, 4.0], [20.0, 22.0, 24.0]]
    readonly = pool.view(addr, "d", readonly=True)
    assert cy.sum_const(readonly) == 72.0
    with pytest.raises((BufferError, ValueError), match="read-only"):
        cy.scale(readonly, 0.0)
    assert cy.read_double(addr, 1) == 2.0


def test_python_alloc_then_view(make_pool):
    pool = make_pool()
    addr = pool.alloc(4, 8)
    view = pool.view(addr, "q")
    assert (view.addr, view.nbytes, view.shape, view.strides) == (addr, 32, (4,), (8,))
    assert (view.format, view.itemsize, view.ndim, view.readonly) == ("q", 8, 1, False)
    assert view.obj is pool
    np.asarray(view)[:] = [1, 2, 3, 4]
    assert bytes(memoryview(pool.view(addr))) == struct.pack("=4q", 1, 2, 3, 4)


# ---------------------------------------------------------------- format and shape


NATIVE_CODES = "bBhHiIlLqQnNfde?"


@pytest.mark.parametrize("prefix", ["", "@", "=", "<", ">", "!"])
@pytest.mark.parametrize("code", NATIVE_CODES)
def test_formats_have_struct_item_sizes(make_pool, prefix, code):
    fmt = prefix + code
    pool = make_pool()
    addr = pool.alloc(8, 8)
    if code in "nN" and prefix not in ("", "@"):
        with pytest.raises(ValueError, match="native"):
            pool.view(addr, fmt)
        return
    view = pool.view(addr, fmt)
    size = struct.calcsize(fmt)
    assert view.itemsize == size and view.shape == (64 // size,)
    mv = memoryview(view)
    assert (mv.format, mv.itemsize, mv.nbytes) == (fmt, size, 64)
    assert np.asarray(view).dtype.itemsize == size


@pytest.mark.parametrize(
    "fmt, dtype",
    [("B", np.uint8), ("b", np.int8), ("h", np.int16), ("i", np.int32), ("q", np.int64),
     ("Q", np.uint64), ("f", np.float32), ("d", np.float64), ("e", np.float16),
     ("?", np.bool_), ("<i", np.dtype("<i4")), (">d", np.dtype(">f8"))],
)  # fmt: skip
def test_formats_give_numpy_dtypes(make_pool, fmt, dtype):
    pool = make_pool()
    view = pool.view(pool.alloc(4, 8), fmt)
    assert np.asarray(view).dtype == np.dtype(dtype)


def test_byte_order_prefix_is_honoured(make_pool):
    pool = make_pool()
    addr = pool.alloc(1, 4)
    memoryview(pool.view(addr))[:] = b"\x00\x00\x01\x02"
    assert np.asarray(pool.view(addr, ">I"))[0] == 0x0102
    assert np.asarray(pool.view(addr, "<I"))[0] == 0x02010000


def test_shapes(make_pool):
    pool = make_pool()
    addr = pool.alloc(24, 1)
    assert pool.view(addr, "h", 5).shape == (5,)
    assert pool.view(addr, "h", [2, 6]).shape == (2, 6)
    view = pool.view(addr, "B", (2, 3, 4))
    assert view.strides == (12, 4, 1)
    array = np.asarray(view)
    assert array.shape == (2, 3, 4) and array.flags.c_contiguous
    assert memoryview(view).c_contiguous
    # A smaller shape covers the start of the block.
    assert pool.view(addr, "d", (2,)).nbytes == 16
    # Default: as many whole items as fit.
    assert pool.view(addr, "d").shape == (3,)
    assert pool.view(addr, "q", 0).nbytes == 0
    assert pool.view(addr, "B", (4, 0, 9)).nbytes == 0
    scalar = pool.view(addr, "d", ())
    assert scalar.shape == () and memoryview(scalar).ndim == 0
    np.asarray(scalar)[()] = 2.5
    assert np.asarray(pool.view(addr, "d"))[0] == 2.5


def test_default_shape_rounds_down(make_pool):
    pool = make_pool()
    assert pool.view(pool.alloc(1, 10), "i").shape == (2,)
    assert pool.view(pool.alloc(1, 3), "d").shape == (0,)


def test_zero_byte_block_gives_an_empty_view(make_pool):
    pool = make_pool()
    addr = pool.alloc(0, 8)
    view = pool.view(addr, "d")
    assert view.shape == (0,) and memoryview(view).nbytes == 0
    assert np.asarray(view).size == 0
    with pytest.raises(ValueError, match="does not fit"):
        pool.view(addr, "B", 1)
    del view
    pool.free(addr)


# ---------------------------------------------------------------- lifetime and pins


def test_view_keeps_its_pool_alive(make_pool):
    pool = make_pool()
    addr = pool.alloc(4, 8)
    np.asarray(pool.view(addr, "d"))[:] = [1, 2, 3, 4]
    view = pool.view(addr, "d")
    alive = weakref.ref(pool)
    del pool
    gc.collect()
    assert alive() is not None, "the view holds the pool"
    assert np.asarray(view).tolist() == [1, 2, 3, 4]
    del view
    gc.collect()
    assert alive() is None, "the pool dies with its last view"


def test_numpy_array_keeps_the_view_and_pool_alive(make_pool):
    pool = make_pool()
    addr = pool.alloc(3, 8)
    array = np.asarray(pool.view(addr, "q"))
    alive = weakref.ref(pool)
    del pool
    gc.collect()
    assert alive() is not None
    array[:] = 7  # still the pool's memory
    assert array.sum() == 21
    del array
    gc.collect()
    assert alive() is None


def test_free_of_viewed_block_raises_buffer_error(make_pool):
    pool = make_pool()
    addr = pool.alloc(2, 8)
    view = pool.view(addr, "d")
    with pytest.raises(BufferError, match=rf"{addr:#x}.*1 live view"):
        pool.free(addr)
    second = pool.view(addr)
    with pytest.raises(BufferError, match="2 live view"):
        pool.free(addr)
    with pytest.raises(BufferError, match="2 live view"):
        pool.realloc(addr, 64)
    assert pool.addresses == {addr: 16}, "the refused calls left the block alone"
    del view, second
    pool.free(addr)
    assert pool.block_count == 0


def test_buffers_taken_from_a_view_keep_the_pin(make_pool):
    pool = make_pool()
    addr = pool.alloc(8, 1)
    mv = memoryview(pool.view(addr))  # the view object lives on in mv
    array = np.frombuffer(pool.view(addr, "q"), dtype=np.int64)
    with pytest.raises(BufferError, match="2 live view"):
        pool.free(addr)
    del mv
    with pytest.raises(BufferError, match="1 live view"):
        pool.free(addr)
    del array
    pool.free(addr)


def test_cython_free_and_realloc_of_viewed_block_raise(make_pool, cy):
    pool = make_pool()
    addr, view = cy.matrix_view(pool, 2, 2)
    with pytest.raises(BufferError, match=rf"{addr:#x}"):
        cy.free_addr(pool, addr)
    with pytest.raises(BufferError, match="1 live view"):
        cy.realloc_addr(pool, addr, 1024)
    assert np.asarray(view).tolist() == [[0.0, 1.0], [10.0, 11.0]]
    del view
    new = cy.realloc_addr(pool, addr, 1024)
    cy.free_addr(pool, new)
    assert pool.block_count == 0


def test_other_blocks_stay_freeable(make_pool):
    pool = make_pool()
    viewed = pool.alloc(1, 8)
    others = [pool.alloc(1, 8) for _ in range(10)]
    view = pool.view(viewed)
    for addr in others:
        pool.free(addr)
    assert pool.block_count == 1 and view.nbytes == 8


def test_view_stored_in_its_own_pool_is_collected(make_pool):
    pool = make_pool()
    pool.own_pyref(pool.view(pool.alloc(1, 8)))  # pool -> refs -> view -> pool
    alive = weakref.ref(pool)
    del pool
    gc.collect()
    assert alive() is None


def test_a_failed_view_leaves_no_pin(make_pool):
    pool = make_pool()
    addr = pool.alloc(1, 8)
    for bad in [("x", None), ("d", 2), ("d", -1)]:
        with pytest.raises(ValueError):
            pool.view(addr, *bad)
    pool.free(addr)


def test_view_refcount_is_released(make_pool):
    pool = make_pool()
    before = sys.getrefcount(pool)
    views = [pool.view(pool.alloc(1, 1)) for _ in range(100)]
    assert sys.getrefcount(pool) == before + 100
    del views
    assert sys.getrefcount(pool) == before
    for addr in list(pool.addresses):
        pool.free(addr)


# ---------------------------------------------------------------- errors


def test_unknown_addresses_raise_key_error(make_pool):
    pool = make_pool()
    with pytest.raises(KeyError, match="not a live block"):
        pool.view(12345)
    addr = pool.alloc(1, 8)
    pool.free(addr)
    with pytest.raises(KeyError):
        pool.view(addr)
    with pytest.raises(KeyError):
        Pool().view(pool.alloc(1, 8))  # another pool's block


@pytest.mark.parametrize("fmt", ["", "x", "dd", "2d", "<", "d<", "Z", "T{d}", "@@d", "P"])
def test_bad_formats_raise_value_error(make_pool, fmt):
    pool = make_pool()
    with pytest.raises(ValueError, match="format"):
        pool.view(pool.alloc(1, 8), fmt)


def test_bad_shapes_raise(make_pool):
    pool = make_pool()
    addr = pool.alloc(2, 8)
    with pytest.raises(ValueError, match="does not fit"):
        pool.view(addr, "d", 3)
    with pytest.raises(ValueError, match="does not fit"):
        pool.view(addr, "B", (4, 5))
    with pytest.raises(ValueError, match="does not fit"):
        pool.view(addr, "q", (2**40, 2**40))  # the product overflows
    with pytest.raises(ValueError, match="does not fit"):
        pool.view(addr, "q", (0, 2**62, 2**62))  # empty, but the strides overflow
    with pytest.raises(ValueError, match="negative"):
        pool.view(addr, "B", (-1, 2))
    with pytest.raises(ValueError, match="at most 64"):
        pool.view(addr, "B", (1,) * 65)
    with pytest.raises(TypeError):
        pool.view(addr, "B", "3")
    with pytest.raises(TypeError):
        pool.view(addr, "B", (1.5,))


def test_readonly_view(make_pool):
    pool = make_pool()
    addr = pool.alloc(2, 8)
    view = pool.view(addr, "q", readonly=True)
    mv = memoryview(view)
    assert mv.readonly
    with pytest.raises(TypeError):
        mv[0] = 1
    array = np.asarray(view)
    assert not array.flags.writeable
    with pytest.raises(ValueError):
        array[0] = 1


def test_blockview_is_not_constructible():
    with pytest.raises(TypeError):
        BlockView()


# ---------------------------------------------------------------- Address


def test_address_exports_its_bytes():
    block = Address(10, 8)
    mv = memoryview(block)
    assert (mv.format, mv.shape, mv.nbytes, mv.readonly) == ("B", (80,), 80, False)
    mv[0:3] = b"abc"
    assert bytes(block)[:4] == b"abc\x00"
    array = np.frombuffer(block, dtype=np.float64)
    assert array.shape == (10,)
    assert np.asarray(block).ctypes.data == block.addr


def test_empty_address_exports_no_bytes():
    assert memoryview(Address(0, 8)).nbytes == 0
    assert bytes(Address(0, 1)) == b""


def test_address_view_from_cython(cy):
    view = cy.address_view(4)
    assert isinstance(view.obj, Address)
    assert np.asarray(view).tolist() == [0.0, 0.5, 1.0, 1.5]


def test_address_view_keeps_the_address_alive():
    block = Address(3, 4)
    view = block.view("i", (3,))
    addr = block.addr
    np.asarray(view)[:] = [5, 6, 7]
    del block
    gc.collect()
    assert view.obj.addr == addr
    assert np.asarray(view).tolist() == [5, 6, 7]
    assert memoryview(view.obj).tobytes() == struct.pack("=3i", 5, 6, 7)


def test_address_view_formats_and_errors():
    block = Address(4, 4)
    assert block.view("f", (2, 2)).shape == (2, 2)
    assert block.view("h").shape == (8,)
    assert block.view(readonly=True).readonly
    with pytest.raises(ValueError, match="does not fit"):
        block.view("d", 3)
    with pytest.raises(ValueError, match="format"):
        block.view("zz")


def test_repr():
    pool = Pool()
    view = pool.view(pool.alloc(2, 8), "d", (2,))
    assert "BlockView of Pool" in repr(view) and "(2,)" in repr(view)
    assert "readonly" in repr(Address(1, 1).view(readonly=True))
