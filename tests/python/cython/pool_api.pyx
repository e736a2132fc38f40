# The pool's Cython surface, as cymem users write it. Compiled by the tests as
# C and as C++. Each function returns what the Python test asserts on.
from libc.stdint cimport uint8_t, int64_t
from libc.stdlib cimport free as libc_free
from libc.stdlib cimport malloc as libc_malloc
from libc.string cimport memset

from cymem_rs.cymem cimport Address, Pool, PyFree, PyMalloc, WrapFree, WrapMalloc


cdef size_t n_mallocs = 0
cdef size_t n_frees = 0
cdef size_t fail_at = 0  # fail the n-th malloc (0: never)


cdef void* counting_malloc(size_t size) noexcept:
    global n_mallocs
    n_mallocs += 1
    if fail_at and n_mallocs == fail_at:
        n_mallocs -= 1
        return NULL
    cdef void* p = libc_malloc(size)
    if p != NULL:
        memset(p, 0xAB, size)  # dirty, so zeroing by the pool is visible
    return p


cdef void counting_free(void* p) noexcept:
    global n_frees
    n_frees += 1
    libc_free(p)


def allocator_counts():
    return n_mallocs, n_frees


def reset_allocator(size_t fail=0):
    global n_mallocs, n_frees, fail_at
    n_mallocs = n_frees = 0
    fail_at = fail


def counting_pool():
    """A Pool on C functions of this module, as cymem's WrapMalloc docs show."""
    cdef PyMalloc m = WrapMalloc(counting_malloc)
    cdef PyFree f = WrapFree(counting_free)
    return Pool(m, f)


def wrapped_functions_are_ours():
    cdef PyMalloc m = WrapMalloc(counting_malloc)
    cdef PyFree f = WrapFree(counting_free)
    return m.malloc == counting_malloc and f.free == counting_free


def alloc_zeroed(Pool mem, size_t number, size_t elem_size):
    """Allocates, checks every byte is zero, then dirties the block."""
    cdef uint8_t* p = <uint8_t*>mem.alloc(number, elem_size)
    cdef size_t i
    for i in range(number * elem_size):
        if p[i] != 0:
            return False
    memset(p, 0xCD, number * elem_size)
    return True


def alloc_addr(Pool mem, size_t number, size_t elem_size):
    return <size_t>mem.alloc(number, elem_size)


def free_addr(Pool mem, size_t addr):
    mem.free(<void*>addr)


def realloc_addr(Pool mem, size_t addr, size_t new_size):
    return <size_t>mem.realloc(<void*>addr, new_size)


def realloc_keeps_contents(Pool mem):
    cdef int64_t* p = <int64_t*>mem.alloc(4, sizeof(int64_t))
    cdef int i
    for i in range(4):
        p[i] = i + 1
    p = <int64_t*>mem.realloc(p, 16 * sizeof(int64_t))
    ok = p[0] == 1 and p[3] == 4
    for i in range(4, 16):
        ok = ok and p[i] == 0
    mem.free(p)
    return ok


def free_stack_pointer(Pool mem):
    cdef int on_stack = 0
    mem.free(&on_stack)


def free_null(Pool mem):
    mem.free(NULL)


def double_free(Pool mem):
    cdef void* p = mem.alloc(1, 8)
    mem.free(p)
    mem.free(p)


def realloc_smaller(Pool mem):
    cdef int64_t* p = <int64_t*>mem.alloc(4, sizeof(int64_t))
    p[0] = 42
    try:
        mem.realloc(p, 8)
    except ValueError:
        return p[0] == 42 and mem.size == 32
    return False


def realloc_unknown(Pool mem):
    cdef int on_stack = 0
    mem.realloc(&on_stack, 64)


def overflowing_alloc(Pool mem):
    cdef size_t huge = <size_t>-1
    mem.alloc(huge, 2)


def size_of(Pool mem):
    return mem.size


def zero_byte_blocks(Pool mem, int n):
    """n 0-byte allocs: all distinct and non-NULL."""
    addrs = set()
    cdef int i
    cdef void* p
    for i in range(n):
        p = mem.alloc(0, 8) if i % 2 else mem.alloc(8, 0)
        if p == NULL:
            return None
        addrs.add(<size_t>p)
    return len(addrs)


def call_on_none_pool(str method):
    cdef Pool mem = None
    if method == "alloc":
        mem.alloc(1, 8)
    elif method == "free":
        mem.free(NULL)
    elif method == "realloc":
        mem.realloc(NULL, 8)
    elif method == "size":
        return mem.size


def address_ptr(size_t number, size_t elem_size):
    """Reads Address.ptr from C: zeroed, writable, and equal to .addr."""
    cdef Address a = Address(number, elem_size)
    cdef uint8_t* p = <uint8_t*>a.ptr
    cdef size_t i
    for i in range(number * elem_size):
        if p[i] != 0:
            return False
    memset(p, 1, number * elem_size)
    return a.addr == <size_t>a.ptr


cdef class Holder:
    """A cdef class owning a Pool, the usual cymem pattern."""
    cdef Pool mem
    cdef int64_t* data
    cdef size_t length

    def __init__(self, size_t length):
        self.mem = Pool()
        self.length = length
        self.data = <int64_t*>self.mem.alloc(length, sizeof(int64_t))

    def fill(self, int64_t value):
        cdef size_t i
        for i in range(self.length):
            self.data[i] = value

    def total(self):
        cdef int64_t s = 0
        cdef size_t i
        for i in range(self.length):
            s += self.data[i]
        return s

    def grow(self, size_t length):
        self.data = <int64_t*>self.mem.realloc(self.data, length * sizeof(int64_t))
        self.length = length

    @property
    def pool(self):
        return self.mem


cdef class Unset:
    """A cdef class whose Pool attribute was never assigned (still None)."""
    cdef Pool mem

    def use(self):
        return <size_t>self.mem.alloc(1, 8)


def build_nested_then_fail(Pool mem, int n_ok):
    """Builds n_ok nested records, then raises midway: the pool keeps them all."""
    cdef int64_t** rows = <int64_t**>mem.alloc(n_ok + 1, sizeof(int64_t*))
    cdef int i
    for i in range(n_ok):
        rows[i] = <int64_t*>mem.alloc(8, sizeof(int64_t))
    raise RuntimeError("failed while building")


def build_rows(Pool mem, int n_rows):
    """A realistic nested build: a row table, rows grown by realloc, some freed."""
    cdef int64_t** rows = <int64_t**>mem.alloc(n_rows, sizeof(int64_t*))
    cdef int i, shift
    for i in range(n_rows):
        rows[i] = <int64_t*>mem.alloc(4, sizeof(int64_t))
        for shift in range(3):
            rows[i] = <int64_t*>mem.realloc(rows[i], (64 << shift))
        rows[i][0] = i
        if i % 3 == 0:
            mem.free(rows[i])
            rows[i] = NULL
    return mem.size


def alloc_free_loop(Pool mem, int n):
    """n alloc/realloc/free rounds; used from several Python threads at once."""
    cdef int i
    cdef void* p
    for i in range(n):
        p = mem.alloc(1, 16 + i % 64)
        if i % 4 == 0:
            p = mem.realloc(p, 256)
        mem.free(p)
