# cython: language_level=3
# Cython smoke test of the cymem_rs declarations, compiled by run_matrix.sh
# against the INSTALLED cymem_rs (no include_dirs), once as C and once as C++.
# `run()` raises AssertionError naming the first check that fails.

# Both cimport forms real code uses: the module path (as with cymem.cymem) and
# the package (through cymem_rs/__init__.pxd).
from cymem_rs.cymem cimport Pool, Address, WrapMalloc, WrapFree, PyMalloc, PyFree
from cymem_rs cimport Pool
from cymem_rs cimport Pool as PackagePool

from libc.stdlib cimport malloc, free

import cymem_rs
import cymem_rs.cymem


cdef int n_checks = 0


cdef check(bint ok, str what):
    """Explicit checks: `assert` can be compiled out."""
    global n_checks
    n_checks += 1
    if not ok:
        raise AssertionError(what)


# ---- a C allocator pair, defined here, counted -------------------------------

cdef size_t n_malloc = 0
cdef size_t n_free = 0


cdef void* counting_malloc(size_t n) noexcept nogil:
    global n_malloc
    n_malloc += 1
    return malloc(n)


cdef void counting_free(void* p) noexcept nogil:
    global n_free
    n_free += 1
    free(p)


# ---- alloc / realloc / free / size ---------------------------------------------

cdef check_alloc_realloc_free(Pool mem):
    cdef size_t start = mem.size
    cdef int* xs = <int*>mem.alloc(100, sizeof(int))
    cdef int i
    check(xs != NULL, "alloc returns non-NULL")
    for i in range(100):
        check(xs[i] == 0, "alloc: block is zeroed")
    check(mem.size == start + 100 * sizeof(int), "size after alloc")
    for i in range(100):
        xs[i] = i + 1

    xs = <int*>mem.realloc(xs, 200 * sizeof(int))
    check(xs != NULL, "realloc returns non-NULL")
    for i in range(100):
        check(xs[i] == i + 1, "realloc: contents kept")
    for i in range(100, 200):
        check(xs[i] == 0, "realloc: tail zeroed")
    check(mem.size == start + 200 * sizeof(int), "size after realloc")

    cdef double* ys = <double*>mem.alloc(3, sizeof(double))
    check(mem.size == start + 200 * sizeof(int) + 3 * sizeof(double), "size after 2nd alloc")
    mem.free(xs)
    check(mem.size == start + 3 * sizeof(double), "size after free")
    mem.free(ys)
    check(mem.size == start, "size back to start")

    # Zero-byte requests: distinct non-NULL pointers, no error.
    cdef void* z1 = mem.alloc(0, 8)
    cdef void* z2 = mem.alloc(8, 0)
    check(z1 != NULL and z2 != NULL and z1 != z2, "0-byte allocs are distinct and non-NULL")
    mem.free(z1)
    mem.free(z2)


cdef check_errors(Pool mem):
    cdef int local = 7
    cdef void* p = mem.alloc(4, 4)
    mem.free(p)
    try:
        mem.free(p)
        check(False, "free twice: nothing raised")
    except KeyError:
        check(True, "free twice -> KeyError")
    try:
        mem.free(&local)
        check(False, "free of a foreign pointer: nothing raised")
    except KeyError:
        check(True, "free foreign -> KeyError")
    check(local == 7, "foreign free touched no memory")

    try:
        mem.realloc(&local, 64)
        check(False, "realloc of a foreign pointer: nothing raised")
    except ValueError:
        check(True, "realloc foreign -> ValueError")
    p = mem.alloc(4, 4)
    (<int*>p)[3] = 42
    try:
        mem.realloc(p, 8)
        check(False, "realloc to a smaller size: nothing raised")
    except ValueError:
        check(True, "realloc shrink -> ValueError")
    check((<int*>p)[3] == 42, "block intact after failed realloc")
    mem.free(p)


cdef check_none_pool():
    cdef Pool mem = None
    cdef size_t n
    try:
        mem.alloc(1, 1)
        check(False, "None.alloc: nothing raised")
    except AttributeError:
        check(True, "None.alloc -> AttributeError")
    try:
        mem.free(NULL)
        check(False, "None.free: nothing raised")
    except AttributeError:
        check(True, "None.free -> AttributeError")
    try:
        mem.realloc(NULL, 8)
        check(False, "None.realloc: nothing raised")
    except AttributeError:
        check(True, "None.realloc -> AttributeError")
    try:
        n = mem.size
        check(False, "None.size: nothing raised")
    except AttributeError:
        check(True, "None.size -> AttributeError")


# ---- WrapMalloc / WrapFree with C functions from this module -------------------

cdef check_wrapped_allocator():
    global n_malloc, n_free
    n_malloc = 0
    n_free = 0
    cdef PyMalloc pm = WrapMalloc(counting_malloc)
    cdef PyFree pf = WrapFree(counting_free)
    check(pm.malloc == counting_malloc, "PyMalloc.malloc read from C")
    check(pf.free == counting_free, "PyFree.free read from C")
    check(isinstance(pm, cymem_rs.PyMalloc) and isinstance(pf, cymem_rs.PyFree),
          "WrapMalloc/WrapFree return PyMalloc/PyFree")

    cdef Pool mem = Pool(pm, pf)
    check(mem.pymalloc is pm and mem.pyfree is pf, "Pool keeps its allocator objects")
    cdef char* a = <char*>mem.alloc(10, 1)
    cdef char* b = <char*>mem.alloc(20, 1)
    cdef char* c = <char*>mem.alloc(30, 1)
    check(n_malloc == 3, f"custom malloc called per alloc (got {n_malloc})")
    check(a[9] == 0 and b[19] == 0 and c[29] == 0, "custom-allocated blocks are zeroed")
    mem.free(b)
    check(n_free == 1, f"custom free called by free (got {n_free})")
    c = <char*>mem.realloc(c, 100)
    check(c[99] == 0, "custom realloc tail zeroed")
    check(n_malloc == 4 and n_free == 2, f"realloc = malloc + free (got {n_malloc}, {n_free})")
    del mem
    check(n_free == n_malloc, f"every block freed when the pool dies ({n_malloc} vs {n_free})")


# ---- Address ------------------------------------------------------------------

cdef check_address():
    cdef Address addr = Address(10, sizeof(long))
    cdef long* xs = <long*>addr.ptr
    cdef int i
    check(xs != NULL, "Address.ptr non-NULL")
    for i in range(10):
        check(xs[i] == 0, "Address block zeroed")
        xs[i] = i
    check(<size_t>addr.ptr == addr.addr, "Address.ptr (C) == Address.addr (Python)")
    check(addr.size == 10 * sizeof(long), "Address.size")


# ---- cdef class with a Pool attribute -----------------------------------------

cdef struct Node:
    int value
    Node* next


cdef class LinkedList:
    cdef Pool mem
    cdef Node* head
    cdef int length

    def __init__(self):
        self.mem = Pool()

    def push(self, int value):
        cdef Node* node = <Node*>self.mem.alloc(1, sizeof(Node))
        node.value = value
        node.next = self.head
        self.head = node
        self.length += 1

    def pop(self):
        cdef Node* node = self.head
        value = node.value
        self.head = node.next
        self.mem.free(node)
        self.length -= 1
        return value

    def total(self):
        cdef Node* node = self.head
        cdef long s = 0
        while node != NULL:
            s += node.value
            node = node.next
        return s

    @property
    def pool_size(self):
        return self.mem.size


cdef check_cdef_class():
    ll = LinkedList()
    for i in range(50):
        ll.push(i)
    check(ll.total() == sum(range(50)), "cdef class: list contents")
    check(ll.pool_size == 50 * sizeof(Node), "cdef class: pool size")
    check(ll.pop() == 49, "cdef class: pop")
    check(ll.pool_size == 49 * sizeof(Node), "cdef class: size after pop")
    del ll


# ---- a Pool made in Python, passed to Cython -------------------------------------

def fill(Pool mem, size_t n):
    """Called from Python with a Pool made in Python."""
    cdef int* xs = <int*>mem.alloc(n, sizeof(int))
    cdef size_t i
    for i in range(n):
        xs[i] = <int>i
    return <size_t>xs


def fill_pkg(PackagePool mem, size_t n):
    """The same, with the type cimported from the package."""
    return <size_t>mem.alloc(n, 1)


def run():
    global n_checks
    n_checks = 0
    check(PackagePool is cymem_rs.Pool, "the package cimport names cymem_rs.Pool")
    check(Pool is cymem_rs.Pool and Pool is cymem_rs.cymem.Pool, "cimported Pool is cymem_rs.Pool")

    cdef Pool mem = Pool()
    check_alloc_realloc_free(mem)
    check_errors(mem)
    check(mem.size == 0, "pool empty after checks")
    check_none_pool()
    check_wrapped_allocator()
    check_address()
    check_cdef_class()

    # From Python-level objects.
    py_pool = cymem_rs.Pool()
    addr = fill(py_pool, 10)
    check(py_pool.size == 10 * sizeof(int), "Python Pool filled by Cython: size")
    check(py_pool.addresses == {addr: 10 * sizeof(int)}, "Python Pool filled by Cython: addresses")
    py_pool.free(addr)
    check(py_pool.size == 0, "Python free of a Cython alloc")
    fill_pkg(py_pool, 5)
    check(py_pool.size == 5, "package-cimported Pool argument")
    try:
        fill(object(), 1)
        check(False, "non-Pool argument: nothing raised")
    except TypeError:
        check(True, "non-Pool argument -> TypeError")
    try:
        fill(None, 1)
        check(False, "None Pool argument: nothing raised")
    except AttributeError:
        check(True, "None Pool argument -> AttributeError")

    class SubPool(cymem_rs.Pool):
        pass
    sub = SubPool()
    fill(sub, 3)
    check(sub.size == 3 * sizeof(int), "Python subclass of Pool accepted as `Pool mem`")
    return n_checks
