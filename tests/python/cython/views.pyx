# Zero-copy views from Cython: blocks written here are viewed from Python
# (memoryview, numpy) in place, and the inline mem.free / mem.realloc refuse a
# block under a live view.
from cymem_rs.cymem cimport Address, Pool


def matrix_view(Pool mem, size_t rows, size_t cols):
    """A rows x cols block of doubles, m[i, j] = 10 * i + j, and its view."""
    cdef double* m = <double*>mem.alloc(rows * cols, sizeof(double))
    cdef size_t i, j
    for i in range(rows):
        for j in range(cols):
            m[i * cols + j] = 10.0 * i + j
    return <size_t>m, mem.view(<size_t>m, "d", (rows, cols))


def int_view(Pool mem, size_t n):
    """A block of n int32, set to 0..n-1, viewed with the default shape."""
    cdef int* a = <int*>mem.alloc(n, sizeof(int))
    cdef size_t i
    for i in range(n):
        a[i] = <int>i
    return <size_t>a, mem.view(<size_t>a, "i")


def read_double(size_t addr, size_t index):
    return (<double*>addr)[index]


def write_double(size_t addr, size_t index, double value):
    (<double*>addr)[index] = value


def free_addr(Pool mem, size_t addr):
    mem.free(<void*>addr)


def realloc_addr(Pool mem, size_t addr, size_t new_size):
    return <size_t>mem.realloc(<void*>addr, new_size)


def address_view(size_t n):
    """An Address of n doubles, written through .ptr, and a view of it."""
    cdef Address block = Address(n, sizeof(double))
    cdef double* d = <double*>block.ptr
    cdef size_t i
    for i in range(n):
        d[i] = 0.5 * i
    return block.view("d")


def sum_2d(double[:, ::1] m):
    """Sums a C-contiguous 2-D typed memoryview (a writable buffer request)."""
    cdef double total = 0
    cdef Py_ssize_t i, j
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            total += m[i, j]
    return total


def sum_const(const double[::1] m):
    """Sums a read-only 1-D typed memoryview."""
    cdef double total = 0
    cdef Py_ssize_t i
    for i in range(m.shape[0]):
        total += m[i]
    return total


def scale(double[::1] m, double factor):
    """Writes through a typed memoryview."""
    cdef Py_ssize_t i
    for i in range(m.shape[0]):
        m[i] *= factor
