# Deliberate memory errors in Cython code, for test_debug.py: debug mode
# must turn each into MemoryCorruptionError through the inline C calls.
from libc.stdint cimport uint8_t
from cymem_rs.cymem cimport Pool


def overrun_then_free(Pool mem, size_t n, size_t past=0):
    """Writes one byte `past` bytes after the end of an n-byte block, frees it."""
    cdef uint8_t* p = <uint8_t*>mem.alloc(n, 1)
    p[n + past] = 1
    mem.free(p)


def underrun_then_realloc(Pool mem, size_t n):
    """Writes the byte before an n-byte block, then tries to grow it."""
    cdef uint8_t* p = <uint8_t*>mem.alloc(n, 1)
    p[-1] = 1
    try:
        mem.realloc(p, n * 2 + 1)
    finally:
        mem.free(p)


def write_after_free(Pool mem, size_t n, size_t offset):
    """Frees an n-byte block, then writes into it; returns the old address."""
    cdef uint8_t* p = <uint8_t*>mem.alloc(n, 1)
    mem.free(p)
    p[offset] = 1
    return <size_t>p


def overrun_kept(Pool mem, size_t n):
    """Overruns an n-byte block and keeps it live (found later)."""
    cdef uint8_t* p = <uint8_t*>mem.alloc(n, 1)
    p[n] = 1
    return <size_t>p


def check(Pool mem):
    mem.check()


def churn(Pool mem, int rounds, int width):
    """Fills blocks edge to edge, grows and frees them: nothing to report."""
    cdef uint8_t** blocks = <uint8_t**>mem.alloc(width, sizeof(uint8_t*))
    cdef size_t* sizes = <size_t*>mem.alloc(width, sizeof(size_t))
    cdef int r, i
    cdef size_t j
    for r in range(rounds):
        for i in range(width):
            sizes[i] = <size_t>(i * 7 + r) % 97
            blocks[i] = <uint8_t*>mem.alloc(sizes[i], 1)
            for j in range(sizes[i]):
                blocks[i][j] = 0xFD
        for i in range(0, width, 2):
            blocks[i] = <uint8_t*>mem.realloc(blocks[i], sizes[i] + 33)
            for j in range(sizes[i] + 33):
                blocks[i][j] = 0xDD
        for i in range(width):
            mem.free(blocks[i])
        mem.check()
    mem.free(blocks)
    mem.free(sizes)
