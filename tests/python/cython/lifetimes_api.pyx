# Shorter lifetimes from Cython: `mem.clear()`, `mem.mark()` /
# `mem.release_to(mark)`, `mem.add_cleanup(fn, data)` and `mem.limit` /
# `mem.set_limit(n)` on a typed Pool are inline C calls through the C API
# table; used by test_lifetimes.py.
from cymem_rs.cymem cimport Pool

cdef int cleanups_seen = 0
cdef int last_byte_seen = -1


cdef void count_cleanup(void* data) noexcept:
    """A C cleanup: counts itself and reads the block it was given."""
    global cleanups_seen, last_byte_seen
    cleanups_seen += 1
    last_byte_seen = (<unsigned char*>data)[0] if data != NULL else -1


def cleanup_record():
    return cleanups_seen, last_byte_seen


def add_block_cleanup(Pool mem, unsigned char value):
    """Allocates a byte holding `value` and a cleanup that will read it."""
    cdef unsigned char* p = <unsigned char*>mem.alloc(1, 1)
    p[0] = value
    mem.add_cleanup(count_cleanup, p)
    return <size_t>p


def mark(Pool mem):
    return mem.mark()


def release_to(Pool mem, size_t mark):
    mem.release_to(mark)


def clear(Pool mem):
    mem.clear()


def scoped_blocks(Pool mem, size_t n):
    """Allocates `n` blocks inside a scope and releases it: the count after."""
    cdef size_t i
    cdef size_t m = mem.mark()
    for i in range(n):
        mem.alloc(i + 1, 8)
    mem.release_to(m)
    return mem.size


def raise_inside_scope(Pool mem, size_t n):
    """The Cython pattern for a scope: try/finally, an exception half way."""
    cdef size_t i
    cdef size_t m = mem.mark()
    try:
        for i in range(n):
            mem.alloc(1, 16)
            if i == n // 2:
                raise ValueError("half way")
    finally:
        mem.release_to(m)


def limit(Pool mem):
    return mem.limit


def set_limit(Pool mem, size_t n):
    mem.set_limit(n)


def grow_past_limit(Pool mem, size_t first, size_t grown):
    """Allocates `first` bytes, then grows them to `grown` (may raise)."""
    cdef unsigned char* p = <unsigned char*>mem.alloc(first, 1)
    p[0] = 0x42
    try:
        p = <unsigned char*>mem.realloc(p, grown)
    except MemoryError:
        assert p[0] == 0x42
        raise
    return <size_t>p
