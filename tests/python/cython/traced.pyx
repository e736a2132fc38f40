# Blocks allocated from Cython, for the tracemalloc tests: the pools' blocks
# must show up in snapshots at the Python line that called in here.
from libc.stdlib cimport free as libc_free
from libc.stdlib cimport malloc as libc_malloc

from cymem_rs.cymem cimport Pool, WrapFree, WrapMalloc


cdef void* c_malloc(size_t size) noexcept:
    return libc_malloc(size)


cdef void c_free(void* p) noexcept:
    libc_free(p)


def libc_pool(debug=None):
    """A pool on the C library's malloc/free (which tracemalloc cannot see)."""
    return Pool(WrapMalloc(c_malloc), WrapFree(c_free), debug=debug)


def alloc_blocks(Pool mem, size_t count, size_t size):
    """Allocates `count` blocks of `size` bytes; their addresses."""
    return [<size_t>mem.alloc(size, 1) for _ in range(count)]


def free_blocks(Pool mem, addresses):
    cdef size_t addr
    for addr in addresses:
        mem.free(<void*>addr)


def grow_block(Pool mem, size_t addr, size_t new_size):
    return <size_t>mem.realloc(<void*>addr, new_size)
