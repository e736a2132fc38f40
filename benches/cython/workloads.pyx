# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The Cython-level benchmark workloads, written for cymem.

bench.py compiles this one file twice: as-is (module `bench_cymem`), and with
the cimport line below changed to `from cymem_rs.cymem cimport ...` (module
`bench_cymem_rs`). Nothing else differs, so both implementations run the same
machine code around their pool calls. The baselines (raw calloc/free,
PyMem_Calloc/PyMem_Free, a zeroing bump allocator) are compiled into the same
binary and run in the same process.

Every timed function runs its loop in C and returns the elapsed nanoseconds
(time.perf_counter_ns around the loop). The pointers the loops get are passed
through bench_escape(), an empty asm statement, so the C compiler can neither
drop an allocation nor fuse an allocation with its free.
"""
from cymem.cymem cimport Pool, Address

from cpython.mem cimport PyMem_Calloc, PyMem_Free, PyMem_Malloc, PyMem_Realloc
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memset

from time import perf_counter_ns

cdef extern from *:
    """
    #if defined(__GNUC__) || defined(__clang__)
    static inline void bench_escape(void *p) { __asm__ volatile("" : : "g"(p) : "memory"); }
    #else
    static void *volatile bench_sink;
    static inline void bench_escape(void *p) { bench_sink = p; }
    #endif
    """
    void bench_escape(void* p) nogil

# Compile-time constants (C enum values, usable without the GIL).
cdef enum:
    # (b): allocation i is b_size(i) bytes: 16, 32, ..., 512, cycling (mean 264 B).
    B_SIZES = 32
    # (d): 10 allocations per pool, of 16, 32, ..., 160 bytes.
    D_ALLOCS = 10
    # (c): one growth sequence = alloc(1, 16), 16 reallocs doubling to 1 MiB, free.
    C_FIRST = 16
    C_LAST = 1 << 20
    C_REALLOCS = 16
    # (a), (d): the bump arena's window (a pair's "free" is a no-op; the
    # window is reset when full, so it stays cache-resident like a recycled
    # malloc chunk).
    A_WINDOW = 64 * 1024


def constants():
    return dict(B_SIZES=B_SIZES, D_ALLOCS=D_ALLOCS, C_FIRST=C_FIRST, C_LAST=C_LAST,
                C_REALLOCS=C_REALLOCS, A_WINDOW=A_WINDOW)


cdef inline size_t b_size(Py_ssize_t i) noexcept nogil:
    return 16 + <size_t>(i % B_SIZES) * 16

cdef inline size_t d_size(int k) noexcept nogil:
    return 16 * <size_t>(k + 1)

# The zeroing bump allocator (the floor for free-everything-at-once): one big
# malloc'd arena, pre-faulted once (outside timing) and kept for the process.
cdef char* arena = NULL
cdef size_t arena_cap = 0

# Pointer array for the calloc/PyMem baselines of (b) (the caller's own
# bookkeeping: allocated and faulted once, outside timing).
cdef void** ptrs = NULL
cdef Py_ssize_t ptrs_cap = 0


def prepare(Py_ssize_t b_allocs):
    """Allocates and pre-faults the bump arena and the (b) pointer array."""
    global arena, arena_cap
    cdef size_t need = 0
    cdef Py_ssize_t i
    for i in range(b_allocs):
        need += b_size(i)
    need = max(need, <size_t>A_WINDOW) + 4096
    if arena_cap < need:
        free(arena)
        arena = <char*>malloc(need)
        if arena == NULL:
            raise MemoryError()
        memset(arena, 1, need)
        arena_cap = need
    prepare_ptrs(b_allocs)


def prepare_ptrs(Py_ssize_t b_allocs):
    """Allocates and pre-faults the pointer array of the raw baselines."""
    global ptrs, ptrs_cap
    if ptrs_cap < b_allocs:
        free(ptrs)
        ptrs = <void**>malloc(max(b_allocs, 1) * sizeof(void*))
        if ptrs == NULL:
            raise MemoryError()
        memset(ptrs, 1, max(b_allocs, 1) * sizeof(void*))
        ptrs_cap = b_allocs


def release():
    global arena, arena_cap, ptrs, ptrs_cap
    free(arena)
    free(ptrs)
    arena = NULL
    ptrs = NULL
    arena_cap = ptrs_cap = 0


cdef inline void* bump(size_t* off, size_t size, size_t cap) noexcept nogil:
    """A zeroed block from the arena, or NULL when the window is full."""
    cdef size_t at = off[0]
    if size > cap - at:
        return NULL
    off[0] = at + ((size + 15) & ~(<size_t>15))
    memset(arena + at, 0, size)
    return arena + at


# ---------------------------------------------------------------- (a)
# alloc(1, 64) + free pairs; ns per pair.

def a_pool(Pool mem, Py_ssize_t n):
    cdef Py_ssize_t i
    cdef void* p
    t0 = perf_counter_ns()
    for i in range(n):
        p = mem.alloc(1, 64)
        bench_escape(p)
        mem.free(p)
    return perf_counter_ns() - t0


def a_calloc(Py_ssize_t n):
    cdef Py_ssize_t i
    cdef void* p
    t0 = perf_counter_ns()
    for i in range(n):
        p = calloc(1, 64)
        if p == NULL:
            raise MemoryError()
        bench_escape(p)
        free(p)
    return perf_counter_ns() - t0


def a_pymem(Py_ssize_t n):
    cdef Py_ssize_t i
    cdef void* p
    t0 = perf_counter_ns()
    for i in range(n):
        p = PyMem_Calloc(1, 64)
        if p == NULL:
            raise MemoryError()
        bench_escape(p)
        PyMem_Free(p)
    return perf_counter_ns() - t0


def a_bump(Py_ssize_t n):
    cdef Py_ssize_t i
    cdef void* p
    cdef size_t off = 0
    cdef size_t window = A_WINDOW
    t0 = perf_counter_ns()
    for i in range(n):
        p = bump(&off, 64, window)
        if p == NULL:
            off = 0  # reset: everything freed at once
            p = bump(&off, 64, window)
        bench_escape(p)
    return perf_counter_ns() - t0


# ---------------------------------------------------------------- (b)
# `reps` times: a new Pool, `n` allocs of b_size(i), then the Pool is dropped.
# ns per alloc = elapsed / (reps * n), the drop included.

def b_pool(Py_ssize_t reps, Py_ssize_t n, bint arena_pool=False):
    cdef Py_ssize_t r, i
    cdef Pool mem
    cdef void* p
    t0 = perf_counter_ns()
    for r in range(reps):
        if arena_pool:
            mem = Pool(arena=True)
        else:
            mem = Pool()
        for i in range(n):
            p = mem.alloc(1, b_size(i))
            bench_escape(p)
        mem = None  # drop: the pool frees every block
    return perf_counter_ns() - t0


def b_calloc(Py_ssize_t reps, Py_ssize_t n):
    cdef Py_ssize_t r, i
    if n > ptrs_cap:
        raise ValueError("call prepare() first")
    t0 = perf_counter_ns()
    for r in range(reps):
        for i in range(n):
            ptrs[i] = calloc(1, b_size(i))
            if ptrs[i] == NULL:
                raise MemoryError()
            bench_escape(ptrs[i])
        for i in range(n):
            free(ptrs[i])
    return perf_counter_ns() - t0


def b_pymem(Py_ssize_t reps, Py_ssize_t n):
    cdef Py_ssize_t r, i
    if n > ptrs_cap:
        raise ValueError("call prepare() first")
    t0 = perf_counter_ns()
    for r in range(reps):
        for i in range(n):
            ptrs[i] = PyMem_Calloc(1, b_size(i))
            if ptrs[i] == NULL:
                raise MemoryError()
            bench_escape(ptrs[i])
        for i in range(n):
            PyMem_Free(ptrs[i])
    return perf_counter_ns() - t0


def b_bump(Py_ssize_t reps, Py_ssize_t n):
    cdef Py_ssize_t r, i
    cdef size_t off
    cdef void* p
    t0 = perf_counter_ns()
    for r in range(reps):
        off = 0  # reset: everything freed at once
        for i in range(n):
            p = bump(&off, b_size(i), arena_cap)
            if p == NULL:
                raise MemoryError("call prepare() first")
            bench_escape(p)
    return perf_counter_ns() - t0


# ---------------------------------------------------------------- (c)
# `reps` growth sequences: alloc(1, 16), realloc doubling to 1 MiB (16
# reallocs), free. ns per sequence = elapsed / reps.

def c_pool(Pool mem, Py_ssize_t reps):
    cdef Py_ssize_t r
    cdef size_t size
    cdef void* p
    t0 = perf_counter_ns()
    for r in range(reps):
        p = mem.alloc(1, C_FIRST)
        size = C_FIRST * 2
        while size <= C_LAST:
            p = mem.realloc(p, size)
            bench_escape(p)
            size *= 2
        mem.free(p)
    return perf_counter_ns() - t0


def c_pymem(Py_ssize_t reps):
    """Reference: PyMem_Calloc, then PyMem_Realloc + memset of the new tail."""
    cdef Py_ssize_t r
    cdef size_t size
    cdef void* p
    cdef void* q
    t0 = perf_counter_ns()
    for r in range(reps):
        p = PyMem_Calloc(1, C_FIRST)
        if p == NULL:
            raise MemoryError()
        size = C_FIRST * 2
        while size <= C_LAST:
            q = PyMem_Realloc(p, size)
            if q == NULL:
                PyMem_Free(p)
                raise MemoryError()
            p = q
            memset(<char*>p + size // 2, 0, size // 2)
            bench_escape(p)
            size *= 2
        PyMem_Free(p)
    return perf_counter_ns() - t0


# ---------------------------------------------------------------- (d)
# `n` times: a new Pool, 10 allocs (16..160 B), drop. ns per pool.

def d_pool(Py_ssize_t n, bint arena_pool=False):
    cdef Py_ssize_t i
    cdef int k
    cdef Pool mem
    t0 = perf_counter_ns()
    for i in range(n):
        if arena_pool:
            mem = Pool(arena=True)
        else:
            mem = Pool()
        for k in range(D_ALLOCS):
            bench_escape(mem.alloc(1, d_size(k)))
        mem = None
    return perf_counter_ns() - t0


def d_calloc(Py_ssize_t n):
    cdef Py_ssize_t i
    cdef int k
    cdef void* local[D_ALLOCS]
    t0 = perf_counter_ns()
    for i in range(n):
        for k in range(D_ALLOCS):
            local[k] = calloc(1, d_size(k))
            if local[k] == NULL:
                raise MemoryError()
            bench_escape(local[k])
        for k in range(D_ALLOCS):
            free(local[k])
    return perf_counter_ns() - t0


def d_pymem(Py_ssize_t n):
    cdef Py_ssize_t i
    cdef int k
    cdef void* local[D_ALLOCS]
    t0 = perf_counter_ns()
    for i in range(n):
        for k in range(D_ALLOCS):
            local[k] = PyMem_Calloc(1, d_size(k))
            if local[k] == NULL:
                raise MemoryError()
            bench_escape(local[k])
        for k in range(D_ALLOCS):
            PyMem_Free(local[k])
    return perf_counter_ns() - t0


def d_bump(Py_ssize_t n):
    cdef Py_ssize_t i
    cdef int k
    cdef size_t off
    cdef size_t window = A_WINDOW
    cdef void* p
    t0 = perf_counter_ns()
    for i in range(n):
        off = 0  # a fresh arena per "pool": reset is the drop
        for k in range(D_ALLOCS):
            p = bump(&off, d_size(k), window)
            bench_escape(p)
    return perf_counter_ns() - t0


# ---------------------------------------------------------------- (e)
# Address(1, 64) created and dropped; ns per Address.

def e_address(Py_ssize_t n):
    cdef Py_ssize_t i
    cdef Address a
    t0 = perf_counter_ns()
    for i in range(n):
        a = Address(1, 64)
        bench_escape(a.ptr)
        a = None
    return perf_counter_ns() - t0


# ---------------------------------------------------------------- checks
# Untimed: what the workloads rely on (run once before timing).

def check(bint arena_pool=False):
    cdef Pool mem = Pool(arena=True) if arena_pool else Pool()
    cdef unsigned char* p = <unsigned char*>mem.alloc(1, 64)
    cdef size_t i
    for i in range(64):
        if p[i] != 0:
            raise AssertionError("alloc block not zeroed")
    p[0] = 7
    p = <unsigned char*>mem.realloc(p, 1 << 20)
    if p[0] != 7 or p[(1 << 20) - 1] != 0:
        raise AssertionError("realloc lost contents or left the tail dirty")
    if mem.size != (1 << 20):
        raise AssertionError("size %d after realloc" % mem.size)
    mem.free(p)
    if mem.size != 0:
        raise AssertionError("size %d after free" % mem.size)
    cdef Address a = Address(1, 64)
    if a.ptr == NULL or (<unsigned char*>a.ptr)[63] != 0:
        raise AssertionError("Address block")
    return True


# ---------------------------------------------------------------- memory
# Untimed helpers for the bookkeeping measurement (bookkeeping.py).

def keep_pool_blocks(Pool mem, Py_ssize_t n, size_t size):
    """n live blocks of `size` bytes in `mem`, each written once."""
    cdef Py_ssize_t i
    cdef char* p
    for i in range(n):
        p = <char*>mem.alloc(1, size)
        p[0] = 1


def keep_raw_blocks(Py_ssize_t n, size_t size, str allocator):
    """n live blocks from PyMem_Malloc (+ memset) or calloc, pointers in the
    prepared array (prepare_ptrs(n) first, so the array is not counted)."""
    cdef Py_ssize_t i
    cdef bint use_pymem = allocator == "PyMem_Malloc"
    if n > ptrs_cap:
        raise ValueError("call prepare() first")
    for i in range(n):
        if use_pymem:  # what cymem's Default_Malloc does
            ptrs[i] = PyMem_Malloc(size)
            if ptrs[i] != NULL:
                memset(ptrs[i], 0, size)
        else:
            ptrs[i] = calloc(1, size)
        if ptrs[i] == NULL:
            raise MemoryError()
        (<char*>ptrs[i])[0] = 1
