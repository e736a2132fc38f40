# cython: language_level=3
# Cython side of the valgrind workloads (tests/valgrind/run.sh). Compiled ONCE,
# outside valgrind, against the installed cymem_rs; only workloads.py runs
# under valgrind. Each function exercises the pool from C the way cymem users'
# code does, and returns what workloads.py asserts on.
#
# Everything here must be leak-free and touch only memory it owns, EXCEPT the
# `selftest_*` functions, which are defects on purpose: run.sh calls them
# (CYMEM_VALGRIND_SELFTEST) and requires valgrind to report them.
from libc.stdint cimport int64_t, uint8_t
from libc.stdlib cimport free as libc_free
from libc.stdlib cimport malloc as libc_malloc
from libc.string cimport memset

from cpython.ref cimport Py_INCREF


cdef extern from "Python.h":
    void PyObject_GC_UnTrack(void* op)

from cymem_rs.cymem cimport Address, Pool, PyFree, PyMalloc, WrapFree, WrapMalloc


# --------------------------------------------------------------------------
# A counting allocator (cymem's WrapMalloc/WrapFree use case). It hands out
# dirty memory, so a pool that forgot to zero would be visible, and it can be
# told to fail the n-th call, so error paths run too.
# --------------------------------------------------------------------------

cdef size_t n_mallocs = 0
cdef size_t n_frees = 0
cdef size_t fail_at = 0  # make the fail_at-th malloc return NULL (0: never)


cdef void* counting_malloc(size_t size) noexcept:
    global n_mallocs, fail_at
    if fail_at:
        fail_at -= 1
        if fail_at == 0:
            return NULL
    cdef void* p = libc_malloc(size)
    if p != NULL:
        n_mallocs += 1
        memset(p, 0xAB, size)
    return p


cdef void counting_free(void* p) noexcept:
    global n_frees
    if p != NULL:
        n_frees += 1
    libc_free(p)


def allocator_counts():
    """(mallocs, frees) of the counting allocator since the last reset."""
    return n_mallocs, n_frees


def reset_allocator():
    global n_mallocs, n_frees, fail_at
    n_mallocs = n_frees = fail_at = 0


def fail_nth_malloc(size_t n):
    """The n-th counting_malloc call from now returns NULL (once)."""
    global fail_at
    fail_at = n


def counting_pool():
    cdef PyMalloc m = WrapMalloc(counting_malloc)
    cdef PyFree f = WrapFree(counting_free)
    return Pool(m, f)


# --------------------------------------------------------------------------
# Pool churn: alloc / free / realloc from C, with every byte written.
# --------------------------------------------------------------------------

def churn(Pool mem, int rounds, int width):
    """Allocates `width` blocks per round, grows half, frees a third, writes
    every byte it holds. Returns the pool's size as C sees it."""
    cdef uint8_t** blocks = <uint8_t**>mem.alloc(width, sizeof(uint8_t*))
    cdef size_t* sizes = <size_t*>mem.alloc(width, sizeof(size_t))
    cdef int r, i
    cdef size_t n, j, fresh
    for r in range(rounds):
        for i in range(width):
            n = <size_t>(((r * 131 + i * 17) % 200) + 1)
            fresh = 0  # bytes the pool just handed out: must read as zero
            if blocks[i] == NULL:
                blocks[i] = <uint8_t*>mem.alloc(n, 1)
                sizes[i] = fresh = n
            elif i % 2 == 0:
                blocks[i] = <uint8_t*>mem.realloc(blocks[i], sizes[i] + n)
                sizes[i] += n
                fresh = n
            elif i % 3 == 0:
                mem.free(blocks[i])
                blocks[i] = NULL
                sizes[i] = 0
                continue
            for j in range(sizes[i]):
                if j >= sizes[i] - fresh and blocks[i][j] != 0:
                    raise AssertionError("new bytes not zeroed")
                blocks[i][j] = <uint8_t>(j & 0xFF)
    return mem.size


def error_paths(Pool mem):
    """Every refused call: each must touch no memory and leak nothing."""
    cdef int on_stack = 0
    cdef int64_t* p = <int64_t*>mem.alloc(4, sizeof(int64_t))
    cdef size_t huge = <size_t>-1
    caught = []
    try:
        mem.free(&on_stack)
    except KeyError:
        caught.append("free-foreign")
    try:
        mem.free(NULL)
    except KeyError:
        caught.append("free-null")
    try:
        mem.realloc(p, 8)
    except ValueError:
        caught.append("realloc-smaller")
    try:
        mem.realloc(&on_stack, 64)
    except ValueError:
        caught.append("realloc-foreign")
    try:
        mem.alloc(huge, 2)
    except MemoryError:
        caught.append("alloc-overflow")
    mem.free(p)
    try:
        mem.free(p)
    except KeyError:
        caught.append("double-free")
    return caught


def zero_byte_blocks(Pool mem, int n):
    """0-byte blocks: distinct, non-NULL; half of them grown, a third freed."""
    cdef void** ps = <void**>mem.alloc(n, sizeof(void*))
    cdef int i
    for i in range(n):
        ps[i] = mem.alloc(0, 8) if i % 2 else mem.alloc(8, 0)
    for i in range(0, n, 2):
        ps[i] = mem.realloc(ps[i], 24)
        memset(ps[i], 0x11, 24)
    for i in range(0, n, 3):
        mem.free(ps[i])
    return len({<size_t>ps[i] for i in range(n)})


# --------------------------------------------------------------------------
# Nested structs, with an exception raised midway through building them.
# --------------------------------------------------------------------------

cdef struct Node:
    int64_t value
    char* label
    Node** children
    size_t n_children
    size_t capacity


cdef class Budget:
    cdef public int left  # nodes still allowed before the build raises


cdef Node* build(Pool mem, int depth, int fanout, Budget budget) except NULL:
    cdef Node* node = <Node*>mem.alloc(1, sizeof(Node))
    cdef int i
    node.label = <char*>mem.alloc(16, 1)
    memset(node.label, 0x41, 15)
    budget.left -= 1
    if budget.left == 0:
        raise RuntimeError("failed midway through building")
    if depth > 0:
        node.capacity = 1
        node.children = <Node**>mem.alloc(node.capacity, sizeof(Node*))
        for i in range(fanout):
            if node.n_children == node.capacity:
                node.children = <Node**>mem.realloc(
                    node.children, 2 * node.capacity * sizeof(Node*))
                node.capacity *= 2
            node.children[node.n_children] = build(mem, depth - 1, fanout, budget)
            node.n_children += 1
    node.value = depth
    return node


cdef int64_t total(Node* node):
    cdef int64_t s = node.value
    cdef size_t i
    for i in range(node.n_children):
        s += total(node.children[i])
    return s


def build_tree(Pool mem, int depth, int fanout, int fail_after):
    """Builds a tree of pool blocks; raises RuntimeError after `fail_after`
    nodes (0: never), leaving the partial tree to the pool."""
    budget = Budget()
    budget.left = fail_after if fail_after > 0 else -1
    return total(build(mem, depth, fanout, budget))


cdef class Tree:
    """A cdef class owning its pool, built in __init__ (which may fail)."""
    cdef Pool mem
    cdef Node* root

    def __init__(self, Pool mem, int depth, int fanout, int fail_after):
        self.mem = mem
        budget = Budget()
        budget.left = fail_after if fail_after > 0 else -1
        self.root = build(self.mem, depth, fanout, budget)

    def total(self):
        return total(self.root)

    @property
    def pool(self):
        return self.mem


# --------------------------------------------------------------------------
# Address objects read from C.
# --------------------------------------------------------------------------

def address_roundtrip(size_t number, size_t elem_size):
    """Address.ptr from C: zeroed, fully writable, and equal to .addr."""
    cdef Address a = Address(number, elem_size)
    cdef uint8_t* p = <uint8_t*>a.ptr
    cdef size_t i
    for i in range(number * elem_size):
        if p[i] != 0:
            return False
    memset(p, 0x7F, number * elem_size)
    return a.addr == <size_t>a.ptr


# --------------------------------------------------------------------------
# Many live blocks left to the pool's destructor.
# --------------------------------------------------------------------------

def fill(Pool mem, int n_blocks):
    """n_blocks live blocks of 1..64 bytes, each written, none freed."""
    cdef int i
    cdef size_t n
    cdef uint8_t* p
    for i in range(n_blocks):
        n = <size_t>((i % 64) + 1)
        p = <uint8_t*>mem.alloc(n, 1)
        p[0] = <uint8_t>i
        p[n - 1] = <uint8_t>i
    return mem.size


# --------------------------------------------------------------------------
# Deliberate defects for run.sh's self-test. Never called by the real run.
# --------------------------------------------------------------------------

def selftest_leak(size_t nbytes):
    """Takes a block out of any pool's custody: malloc'd, written, and the
    only pointer to it dropped. valgrind must report `nbytes` definitely lost.

    The address is returned as a Python int (which the caller drops): that
    makes it escape, so the C compiler cannot delete the unused malloc, and an
    int keeps it in 30-bit digits, which valgrind does not take for a pointer."""
    cdef void* p = libc_malloc(nbytes)
    if p == NULL:
        raise MemoryError()
    memset(p, 0x5A, nbytes)
    return <size_t>p


def selftest_invalid_read(Pool mem, size_t nbytes):
    """Reads one byte past the end of a pool block: valgrind must report an
    invalid read (a heap pool's block comes from malloc under
    PYTHONMALLOC=malloc; an arena pool's is described to valgrind)."""
    cdef uint8_t* p = <uint8_t*>mem.alloc(nbytes, 1)
    return p[nbytes]


def selftest_read_after_free(Pool mem, size_t nbytes):
    """Reads a pool block after freeing it: valgrind must report an invalid
    read."""
    cdef uint8_t* p = <uint8_t*>mem.alloc(nbytes, 1)
    mem.free(p)
    return p[nbytes // 2]


def selftest_leak_pool(size_t nbytes):
    """Leaks an arena pool holding one block of `nbytes`: the pool object
    keeps a reference nobody owns and leaves the garbage collector's lists,
    so nothing points at it. valgrind must report the block lost, with the
    stack that allocated it."""
    pool = Pool(arena=True)
    memset(pool.alloc(nbytes, 1), 0x5A, nbytes)
    Py_INCREF(pool)
    PyObject_GC_UnTrack(<void*>pool)


def selftest_leak_reference(obj):
    """Leaks a reference to `obj` (a pool): the pool and its blocks stay
    reachable, which valgrind's definite-leak check cannot see; workloads.py's
    own checks (weakref dead, counting allocator balanced) must."""
    Py_INCREF(obj)


# --------------------------------------------------------------------------
# Debug mode: deliberate damage inside a debug pool's own memory (its guard
# bytes and quarantined blocks), which debug mode reports and valgrind must
# see as clean.
# --------------------------------------------------------------------------

def debug_overrun(Pool mem, size_t nbytes):
    """Writes the byte just past an nbytes block and keeps the block."""
    cdef uint8_t* p = <uint8_t*>mem.alloc(nbytes, 1)
    p[nbytes] = 1
    return <size_t>p


def debug_write_after_free(Pool mem, size_t nbytes):
    """Frees an nbytes block, then writes its first byte."""
    cdef uint8_t* p = <uint8_t*>mem.alloc(nbytes, 1)
    mem.free(p)
    p[0] = 1


def debug_check(Pool mem):
    mem.check()
