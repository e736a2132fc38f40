# The C-level halves of the real-project workloads: what spaCy does with
# preshed and thinc from Cython, which pure Python cannot reach. Compiled in
# each build's venv by build.sh; the cymem_rs build gets its imports rewritten
# as any cymem user's code would be.
# distutils: language = c++
# cython: boundscheck=False, wraparound=False, cdivision=True

from libc.stdint cimport uint64_t
from libc.string cimport memcpy

from cymem.cymem cimport Pool
from preshed.maps cimport PreshMap
from thinc.extra.search cimport Beam, class_t, hash_t, weight_t


# Callgrind's client requests, where valgrind's header is installed: the
# profile runs with --instr-atstart=no and counts only what instrumented()
# runs (no imports, no input making), at near-native speed outside it.
cdef extern from *:
    """
    #if defined(__has_include)
    #  if __has_include(<valgrind/callgrind.h>)
    #    include <valgrind/callgrind.h>
    #    define BENCH_REAL_CALLGRIND 1
    #  endif
    #endif
    static int bench_real_instrument(int on) {
    #ifdef BENCH_REAL_CALLGRIND
        if (on) { CALLGRIND_START_INSTRUMENTATION; } else { CALLGRIND_STOP_INSTRUMENTATION; }
        return 1;
    #else
        (void)on;
        return 0;
    #endif
    }
    """
    int bench_real_instrument(int on)


def instrumented(work):
    """work() with callgrind's instrumentation on around it alone."""
    if not bench_real_instrument(1):
        raise RuntimeError("compiled without valgrind/callgrind.h: no profile")
    try:
        return work()
    finally:
        bench_real_instrument(0)


# A parse in progress: the moves taken so far, in Pool memory (as spaCy's
# parser states were when the Beam was written).
cdef struct Path:
    int length
    int n
    uint64_t key
    class_t* moves


cdef void* new_path(Pool mem, int n, void* extra) except NULL:
    cdef Path* path = <Path*>mem.alloc(1, sizeof(Path))
    path.moves = <class_t*>mem.alloc(n, sizeof(class_t))
    path.n = n
    return path


cdef int free_path(Pool mem, void* state, void* extra) except -1:
    cdef Path* path = <Path*>state
    mem.free(path.moves)
    mem.free(path)
    return 0


cdef int take_move(void* dest, void* src, class_t clas, void* extra) except -1:
    cdef Path* to = <Path*>dest
    cdef Path* frm = <Path*>src
    memcpy(to.moves, frm.moves, frm.length * sizeof(class_t))
    to.moves[frm.length] = clas
    to.length = frm.length + 1
    to.n = frm.n
    to.key = frm.key * 1000003 + clas + 1
    return 0


cdef hash_t path_key(void* state, void* extra) except 0:
    # 0 reports an error and 1 means "no key" to the Beam: keep clear of both.
    return (<Path*>state).key | 2


cdef int path_done(void* state, void* extra) except -1:
    cdef Path* path = <Path*>state
    return path.length >= path.n


cdef inline uint64_t xorshift(uint64_t* x) noexcept nogil:
    x[0] ^= x[0] << 13
    x[0] ^= x[0] >> 7
    x[0] ^= x[0] << 17
    return x[0]


def beam_search(int n_sentences, int length, int width, int nr_class, uint64_t seed):
    """Decode n_sentences sequences of `length` moves with a Beam of `width`
    over nr_class classes (one Beam, so one Pool, per sequence, as spaCy's
    beam parser does per Doc); scores from a xorshift generator. Returns the
    sum of the best scores, a check that both builds did the same work."""
    cdef Beam beam
    cdef uint64_t x = seed | 1
    cdef int s, i, j
    cdef double total = 0.0
    for s in range(n_sentences):
        beam = Beam(nr_class, width)
        beam.initialize(new_path, free_path, length, NULL)
        while not beam.is_done:
            for i in range(beam.size):
                for j in range(nr_class):
                    beam.set_cell(i, j, <weight_t>(xorshift(&x) >> 44) / 1048576.0, 1, 0)
            beam.advance(take_move, path_key, NULL)
            beam.check_done(path_done, NULL)
        total += beam.score
    return total


def small_maps(int n_maps, int keys_per_map, uint64_t seed):
    """Make n_maps PreshMaps (each with its own Pool) of keys_per_map keys set
    and read back from Cython, as spaCy's per-Doc and per-step caches do.
    Returns a checksum."""
    cdef PreshMap table
    cdef uint64_t x = seed | 1
    cdef uint64_t key, found = 0
    cdef int m, k
    for m in range(n_maps):
        table = PreshMap(8)
        for k in range(keys_per_map):
            key = xorshift(&x) | 2
            table.set(key, <void*><size_t>(k + 1))
            found += <uint64_t><size_t>table.get(key)
    return found
