# Statistics from Cython: `mem.stats`, `mem.peak_size` and `mem.reset_peak()`
# on a typed Pool are inline C calls through the C API table (no Python call);
# used by test_stats.py.
from cymem_rs.cymem cimport CymemPoolStats, Pool


def stats_tuple(Pool mem):
    """The counters as Cython reads them (a C struct)."""
    cdef CymemPoolStats s = mem.stats
    return (s.size, s.peak_size, s.block_count, s.total_allocs, s.total_frees, s.total_reallocs)


def peak(Pool mem):
    return mem.peak_size


def reset_peak(Pool mem):
    mem.reset_peak()


def phase_peak(Pool mem, size_t n):
    """A phase measured the way a Cython user would: reset, work, read the peak."""
    cdef size_t i
    cdef void* p
    mem.reset_peak()
    for i in range(n):
        p = mem.alloc(1, 1024)
        mem.free(p)
    return mem.peak_size - mem.size
