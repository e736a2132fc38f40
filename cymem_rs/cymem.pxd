# cython: language_level=3
# Cython declarations of cymem_rs: `from cymem_rs.cymem cimport Pool, Address,
# PyMalloc, PyFree, WrapMalloc, WrapFree` (or `from cymem_rs cimport ...`).
#
# The types are declared as extern types over the Rust (pyo3) classes. Their
# methods are inline C calls through the `cymem_rs.cymem._C_API` capsule, so
# `mem.alloc(n, size)` costs no Python attribute lookup and no boxing. The C
# block below needs no header and no include_dirs.

from libc.stdint cimport uint64_t

ctypedef void* (*malloc_t)(size_t n)
ctypedef void (*free_t)(void *p)
ctypedef void (*cleanup_t)(void *data)

cdef extern from *:
    """
    #include <stddef.h>
    #include <stdint.h>

    #if defined(__GNUC__) || defined(__clang__)
    #define CYMEM_RS_UNLIKELY(x) __builtin_expect(!!(x), 0)
    #else
    #define CYMEM_RS_UNLIKELY(x) (x)
    #endif

    typedef void *(*cymem_rs_malloc_fn)(size_t);
    typedef void (*cymem_rs_free_fn)(void *);
    typedef void (*cymem_rs_cleanup_fn)(void *);

    /* The C-visible head of the objects whose fields Cython reads: that field
       comes first after the object header. The C API table reports where the
       Rust side put it, and the two are compared before first use. A Pool's
       core lives inside the object at `pool_core_offset`; C passes its
       address to the table's functions and reads nothing from it. */
    typedef struct { PyObject_HEAD } CymemRsPoolObject;
    typedef struct { PyObject_HEAD void *ptr; } CymemRsAddressObject;
    typedef struct { PyObject_HEAD cymem_rs_malloc_fn malloc; } CymemRsPyMallocObject;
    typedef struct { PyObject_HEAD cymem_rs_free_fn free; } CymemRsPyFreeObject;

    /* Mirror of `CymemPoolStats` (include/cymem_rs.h). */
    typedef struct {
        size_t size;
        size_t peak_size;
        size_t block_count;
        uint64_t total_allocs;
        uint64_t total_frees;
        uint64_t total_reallocs;
    } CymemRsPoolStats;

    /* Mirror of `CApi` in src/python/capi.rs, versioned on its own
       (`CAPSULE_VERSION` there), apart from the C ABI's version. */
    #define CYMEM_RS_CAPSULE_VERSION 2

    /* The operation codes of `raise_last_error` (`CYMEM_RS_OP_*` in capi.rs). */
    #define CYMEM_RS_OP_ALLOC 0
    #define CYMEM_RS_OP_FREE 1
    #define CYMEM_RS_OP_REALLOC 2
    #define CYMEM_RS_OP_CHECK 3
    #define CYMEM_RS_OP_LIFETIME 4

    typedef struct {
        size_t capsule_version;
        size_t table_size;
        size_t pool_core_offset;
        size_t address_ptr_offset;
        size_t pymalloc_fn_offset;
        size_t pyfree_fn_offset;
        int (*raise_last_error)(int operation);
        int (*warn_zero_alloc)(void);
        PyObject *(*wrap_malloc)(cymem_rs_malloc_fn malloc_fn);
        PyObject *(*wrap_free)(cymem_rs_free_fn free_fn);
        int (*pool_check)(void *pool);
        /* The pool calls for a Pool object's core (never NULL): no handle check. */
        void *(*core_alloc)(void *core, size_t number, size_t elem_size);
        int (*core_free)(void *core, void *ptr);
        void *(*core_realloc)(void *core, void *ptr, size_t new_size);
        size_t (*core_size)(const void *core);
        int (*pool_stats)(const void *pool, CymemRsPoolStats *out);
        int (*pool_reset_peak)(void *pool);
        /* Appended within version 2 (the table_size check refuses an older table). */
        int (*pool_clear)(void *pool);
        size_t (*pool_mark)(void *pool);
        int (*pool_release_to)(void *pool, size_t mark);
        int (*pool_add_cleanup)(void *pool, cymem_rs_cleanup_fn fn, void *data);
        int (*pool_set_limit)(void *pool, size_t limit);
        size_t (*pool_limit)(const void *pool);
    } CymemRsCAPI;

    /* Filled on first use by cymem_rs_load_capi(); the table is static in
       cymem_rs and lives as long as the process. */
    static const CymemRsCAPI *cymem_rs_capi = NULL;
    static size_t cymem_rs_core_offset = 0;

    /* Cython fetches a vtable for extern types with cdef methods; the Rust
       type offers an empty one. */
    static void *__pyx_vtabptr_8cymem_rs_5cymem_Pool = NULL;

    static int cymem_rs_load_capi(void) {
        const CymemRsCAPI *api =
            (const CymemRsCAPI *)PyCapsule_Import("cymem_rs.cymem._C_API", 0);
        if (api == NULL) return -1;
        if (api->capsule_version != CYMEM_RS_CAPSULE_VERSION) {
            PyErr_Format(PyExc_ImportError,
                "cymem_rs C API version mismatch: this module was compiled for "
                "capsule version %d, the installed cymem_rs provides version %zu; "
                "recompile the module against the installed cymem_rs",
                CYMEM_RS_CAPSULE_VERSION, api->capsule_version);
            return -1;
        }
        if (api->table_size < sizeof(CymemRsCAPI)
            || api->pool_core_offset < sizeof(CymemRsPoolObject)
            || api->address_ptr_offset != offsetof(CymemRsAddressObject, ptr)
            || api->pymalloc_fn_offset != offsetof(CymemRsPyMallocObject, malloc)
            || api->pyfree_fn_offset != offsetof(CymemRsPyFreeObject, free)) {
            PyErr_SetString(PyExc_ImportError,
                "cymem_rs object layout mismatch between this compiled module "
                "and the installed cymem_rs; recompile the module");
            return -1;
        }
        cymem_rs_core_offset = api->pool_core_offset;
        cymem_rs_capi = api;
        return 0;
    }

    /* 0 when the C API is ready, -1 with ImportError set. */
    #define CYMEM_RS_READY() \\
        (CYMEM_RS_UNLIKELY(cymem_rs_capi == NULL) ? cymem_rs_load_capi() : 0)

    /* cymem crashes on a method call through a None Pool; raise as Python does. */
    static int cymem_rs_none_pool(PyObject *pool, const char *method) {
        if (CYMEM_RS_UNLIKELY(pool == Py_None)) {
            PyErr_Format(PyExc_AttributeError,
                "'NoneType' object has no attribute '%s'", method);
            return -1;
        }
        return 0;
    }

    #define CYMEM_RS_CORE(pool) ((void *)((char *)(pool) + cymem_rs_core_offset))

    /* alloc, free and realloc may run Python code (the zero-allocation
       warning, a custom allocator function) that drops the last reference to
       the pool: Cython passes attributes such as `self.mem` borrowed. Each
       holds its own reference until it returns. */
    static inline void *cymem_rs_pool_alloc(PyObject *pool, size_t number, size_t elem_size) {
        void *block = NULL;
        if (CYMEM_RS_READY() < 0 || cymem_rs_none_pool(pool, "alloc") < 0) return NULL;
        Py_INCREF(pool);
        if (CYMEM_RS_UNLIKELY(number == 0 || elem_size == 0)
            && cymem_rs_capi->warn_zero_alloc() < 0) goto done;
        block = cymem_rs_capi->core_alloc(CYMEM_RS_CORE(pool), number, elem_size);
        if (CYMEM_RS_UNLIKELY(block == NULL)) cymem_rs_capi->raise_last_error(CYMEM_RS_OP_ALLOC);
    done:
        Py_DECREF(pool);
        return block;
    }

    static inline int cymem_rs_pool_free(PyObject *pool, void *ptr) {
        int status;
        if (CYMEM_RS_READY() < 0 || cymem_rs_none_pool(pool, "free") < 0) return -1;
        Py_INCREF(pool);
        status = cymem_rs_capi->core_free(CYMEM_RS_CORE(pool), ptr);
        if (CYMEM_RS_UNLIKELY(status != 0)) status = cymem_rs_capi->raise_last_error(CYMEM_RS_OP_FREE);
        Py_DECREF(pool);
        return status;
    }

    static inline void *cymem_rs_pool_realloc(PyObject *pool, void *ptr, size_t new_size) {
        void *block;
        if (CYMEM_RS_READY() < 0 || cymem_rs_none_pool(pool, "realloc") < 0) return NULL;
        Py_INCREF(pool);
        block = cymem_rs_capi->core_realloc(CYMEM_RS_CORE(pool), ptr, new_size);
        if (CYMEM_RS_UNLIKELY(block == NULL)) cymem_rs_capi->raise_last_error(CYMEM_RS_OP_REALLOC);
        Py_DECREF(pool);
        return block;
    }

    /* (size_t)-1 with an exception set on failure (no pool holds that many
       bytes: the core returns it when refusing a call made from inside one of
       the pool's own calls). */
    static inline size_t cymem_rs_pool_size(PyObject *pool) {
        size_t size;
        if (CYMEM_RS_READY() < 0 || cymem_rs_none_pool(pool, "size") < 0) return (size_t)-1;
        size = cymem_rs_capi->core_size(CYMEM_RS_CORE(pool));
        if (CYMEM_RS_UNLIKELY(size == (size_t)-1)) cymem_rs_capi->raise_last_error(CYMEM_RS_OP_CHECK);
        return size;
    }

    /* Debug mode: 0, or -1 with MemoryCorruptionError set. */
    static inline int cymem_rs_pool_check(PyObject *pool) {
        if (CYMEM_RS_READY() < 0 || cymem_rs_none_pool(pool, "check") < 0) return -1;
        if (CYMEM_RS_UNLIKELY(cymem_rs_capi->pool_check(CYMEM_RS_CORE(pool)) != 0))
            return cymem_rs_capi->raise_last_error(CYMEM_RS_OP_CHECK);
        return 0;
    }

    /* The pool's counters into *out: 0, or -1 with an exception set. */
    static inline int cymem_rs_pool_stats(PyObject *pool, CymemRsPoolStats *out) {
        if (CYMEM_RS_READY() < 0 || cymem_rs_none_pool(pool, "stats") < 0) return -1;
        if (CYMEM_RS_UNLIKELY(cymem_rs_capi->pool_stats(CYMEM_RS_CORE(pool), out) != 0))
            return cymem_rs_capi->raise_last_error(CYMEM_RS_OP_CHECK);
        return 0;
    }

    static inline int cymem_rs_pool_reset_peak(PyObject *pool) {
        if (CYMEM_RS_READY() < 0 || cymem_rs_none_pool(pool, "reset_peak") < 0) return -1;
        if (CYMEM_RS_UNLIKELY(cymem_rs_capi->pool_reset_peak(CYMEM_RS_CORE(pool)) != 0))
            return cymem_rs_capi->raise_last_error(CYMEM_RS_OP_CHECK);
        return 0;
    }

    /* Runs cleanups and frees every block: 0, or -1 with an exception set. */
    static inline int cymem_rs_pool_clear(PyObject *pool) {
        if (CYMEM_RS_READY() < 0 || cymem_rs_none_pool(pool, "clear") < 0) return -1;
        if (CYMEM_RS_UNLIKELY(cymem_rs_capi->pool_clear(CYMEM_RS_CORE(pool)) != 0))
            return cymem_rs_capi->raise_last_error(CYMEM_RS_OP_LIFETIME);
        return 0;
    }

    /* A new scope's mark (never 0), or 0 with an exception set. */
    static inline size_t cymem_rs_pool_mark(PyObject *pool) {
        size_t mark;
        if (CYMEM_RS_READY() < 0 || cymem_rs_none_pool(pool, "mark") < 0) return 0;
        mark = cymem_rs_capi->pool_mark(CYMEM_RS_CORE(pool));
        if (CYMEM_RS_UNLIKELY(mark == 0)) cymem_rs_capi->raise_last_error(CYMEM_RS_OP_LIFETIME);
        return mark;
    }

    static inline int cymem_rs_pool_release_to(PyObject *pool, size_t mark) {
        if (CYMEM_RS_READY() < 0 || cymem_rs_none_pool(pool, "release_to") < 0) return -1;
        if (CYMEM_RS_UNLIKELY(cymem_rs_capi->pool_release_to(CYMEM_RS_CORE(pool), mark) != 0))
            return cymem_rs_capi->raise_last_error(CYMEM_RS_OP_LIFETIME);
        return 0;
    }

    static inline int cymem_rs_pool_add_cleanup(PyObject *pool, cymem_rs_cleanup_fn fn, void *data) {
        if (CYMEM_RS_READY() < 0 || cymem_rs_none_pool(pool, "add_cleanup") < 0) return -1;
        if (CYMEM_RS_UNLIKELY(cymem_rs_capi->pool_add_cleanup(CYMEM_RS_CORE(pool), fn, data) != 0))
            return cymem_rs_capi->raise_last_error(CYMEM_RS_OP_LIFETIME);
        return 0;
    }

    static inline int cymem_rs_pool_set_limit(PyObject *pool, size_t limit) {
        if (CYMEM_RS_READY() < 0 || cymem_rs_none_pool(pool, "set_limit") < 0) return -1;
        cymem_rs_capi->pool_set_limit(CYMEM_RS_CORE(pool), limit);
        return 0;
    }

    /* The limit (0: none), or (size_t)-1 with an exception set. */
    static inline size_t cymem_rs_pool_limit(PyObject *pool) {
        if (CYMEM_RS_READY() < 0 || cymem_rs_none_pool(pool, "limit") < 0) return (size_t)-1;
        return cymem_rs_capi->pool_limit(CYMEM_RS_CORE(pool));
    }

    static PyObject *cymem_rs_wrap_malloc(cymem_rs_malloc_fn malloc_fn) {
        if (CYMEM_RS_READY() < 0) return NULL;
        return cymem_rs_capi->wrap_malloc(malloc_fn);
    }

    static PyObject *cymem_rs_wrap_free(cymem_rs_free_fn free_fn) {
        if (CYMEM_RS_READY() < 0) return NULL;
        return cymem_rs_capi->wrap_free(free_fn);
    }
    """
    void* cymem_rs_pool_alloc(object pool, size_t number, size_t elem_size) except NULL
    int cymem_rs_pool_free(object pool, void* ptr) except -1
    void* cymem_rs_pool_realloc(object pool, void* ptr, size_t new_size) except NULL
    size_t cymem_rs_pool_size(object pool) except? <size_t>-1
    int cymem_rs_pool_check(object pool) except -1
    ctypedef struct CymemPoolStats "CymemRsPoolStats":
        size_t size
        size_t peak_size
        size_t block_count
        uint64_t total_allocs
        uint64_t total_frees
        uint64_t total_reallocs

    int cymem_rs_pool_stats(object pool, CymemPoolStats* out) except -1
    int cymem_rs_pool_reset_peak(object pool) except -1
    int cymem_rs_pool_clear(object pool) except -1
    size_t cymem_rs_pool_mark(object pool) except 0
    int cymem_rs_pool_release_to(object pool, size_t mark) except -1
    int cymem_rs_pool_add_cleanup(object pool, cleanup_t fn, void* data) except -1
    int cymem_rs_pool_set_limit(object pool, size_t limit) except -1
    size_t cymem_rs_pool_limit(object pool) except? <size_t>-1
    object cymem_rs_wrap_malloc(malloc_t malloc_fn)
    object cymem_rs_wrap_free(free_t free_fn)

    ctypedef class cymem_rs.cymem.PyMalloc [object CymemRsPyMallocObject, check_size ignore]:
        cdef malloc_t malloc

    ctypedef class cymem_rs.cymem.PyFree [object CymemRsPyFreeObject, check_size ignore]:
        cdef free_t free

    # Python methods of these types stay reachable from Cython through
    # ordinary attribute lookup, e.g. zero-copy views (views are Python
    # objects, so this is a Python call in any case):
    #     arr = numpy.asarray(mem.view(<size_t>p, "d", (rows, cols)))
    #     cdef double[:, ::1] m = mem.view(<size_t>p, "d", (rows, cols))
    #     v = address.view("i")
    # While a view lives, the inline `mem.free(p)` / `mem.realloc(p, n)` of
    # its block raise BufferError (the block is pinned).
    ctypedef class cymem_rs.cymem.Pool [object CymemRsPoolObject, check_size ignore]:
        cdef inline void* alloc(self, size_t number, size_t elem_size) except NULL:
            return cymem_rs_pool_alloc(self, number, elem_size)

        cdef inline void free(self, void* addr) except *:
            cymem_rs_pool_free(self, addr)

        cdef inline void* realloc(self, void* addr, size_t n) except NULL:
            return cymem_rs_pool_realloc(self, addr, n)

        @property
        cdef inline size_t size(self) except? <size_t>-1:
            return cymem_rs_pool_size(self)

        # Debug mode: raises MemoryCorruptionError for damaged blocks.
        cdef inline int check(self) except -1:
            return cymem_rs_pool_check(self)
        # Statistics, inline C calls like the above (no Python call).
        @property
        cdef inline CymemPoolStats stats(self) except *:
            cdef CymemPoolStats out
            cymem_rs_pool_stats(self, &out)
            return out

        @property
        cdef inline size_t peak_size(self) except? <size_t>-1:
            cdef CymemPoolStats out
            cymem_rs_pool_stats(self, &out)
            return out.peak_size

        cdef inline void reset_peak(self) except *:
            cymem_rs_pool_reset_peak(self)

        # Shorter lifetimes, inline too. `clear()` runs the cleanups and
        # frees every block; `mark()` opens a scope that `release_to(mark)`
        # closes, freeing the blocks allocated since. `add_cleanup(fn, data)`
        # takes a C function (`(<object>mem).add_cleanup(f)` a Python one).
        cdef inline void clear(self) except *:
            cymem_rs_pool_clear(self)

        cdef inline size_t mark(self) except 0:
            return cymem_rs_pool_mark(self)

        cdef inline void release_to(self, size_t mark) except *:
            cymem_rs_pool_release_to(self, mark)

        cdef inline void add_cleanup(self, cleanup_t fn, void* data) except *:
            cymem_rs_pool_add_cleanup(self, fn, data)

        # Live bytes allowed (0: no limit); past it alloc/realloc raise MemoryError.
        @property
        cdef inline size_t limit(self) except? <size_t>-1:
            return cymem_rs_pool_limit(self)

        cdef inline void set_limit(self, size_t limit) except *:
            cymem_rs_pool_set_limit(self, limit)

    ctypedef class cymem_rs.cymem.Address [object CymemRsAddressObject, check_size ignore]:
        cdef void* ptr


cdef inline PyMalloc WrapMalloc(malloc_t malloc):
    return <PyMalloc>cymem_rs_wrap_malloc(malloc)


cdef inline PyFree WrapFree(free_t free):
    return <PyFree>cymem_rs_wrap_free(free)
