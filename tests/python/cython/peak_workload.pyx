# Allocations from Cython, for test_peak.py: calls on a typed Pool go through
# the C API table and count in the process-wide peak like Python's.
from cymem_rs.cymem cimport Pool


def fill(Pool mem, size_t n, size_t size):
    """`n` blocks of `size` bytes, kept by the pool."""
    cdef size_t i
    for i in range(n):
        mem.alloc(1, size)
