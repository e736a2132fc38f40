# One Cython module written for cymem. The test compiles it twice, with the
# cimport line below naming `cymem.cymem` and then `cymem_rs.cymem`, runs the
# same scenario on both and compares what they observe.
from libc.stdint cimport uint8_t
from libc.stdlib cimport free as libc_free
from libc.stdlib cimport malloc as libc_malloc
from libc.string cimport memset

from cymem.cymem cimport Address, Pool, WrapFree, WrapMalloc

cdef size_t calls = 0


cdef void* my_malloc(size_t n) noexcept:
    global calls
    calls += 1
    return libc_malloc(n)


cdef void my_free(void* p) noexcept:
    global calls
    calls += 1
    libc_free(p)


cdef bint all_zero(void* p, size_t n):
    cdef uint8_t* b = <uint8_t*>p
    cdef size_t i
    for i in range(n):
        if b[i] != 0:
            return False
    return True


def observe(label, function, *args):
    try:
        return (label, "ok", function(*args))
    except Exception as error:
        return (label, type(error).__name__)


def free_twice(Pool mem, size_t addr):
    mem.free(<void*>addr)
    mem.free(<void*>addr)


def free_addr(Pool mem, size_t addr):
    mem.free(<void*>addr)


def realloc_addr(Pool mem, size_t addr, size_t new_size):
    return <size_t>mem.realloc(<void*>addr, new_size) != 0


def scenario():
    cdef Pool mem = Pool()
    seen = []

    cdef void* a = mem.alloc(10, 8)
    seen.append(("zeroed", all_zero(a, 80), mem.size))
    memset(a, 7, 80)
    cdef void* b = mem.realloc(a, 160)
    cdef uint8_t* bb = <uint8_t*>b
    seen.append(("realloc", bb[0] == 7 and bb[79] == 7, all_zero(bb + 80, 80), mem.size))
    seen.append(("addresses", sorted(mem.addresses.values())))
    mem.free(b)
    seen.append(("after free", mem.size, len(mem.addresses)))

    cdef void* z1 = mem.alloc(0, 8)
    cdef void* z2 = mem.alloc(8, 0)
    seen.append(("zero bytes", z1 != NULL, z2 != NULL, z1 != z2, mem.size))

    cdef int local = 0
    cdef size_t foreign = <size_t>&local
    seen.append(observe("free foreign", free_addr, mem, foreign))
    seen.append(observe("double free", free_twice, mem, <size_t>z1))
    cdef size_t c = <size_t>mem.alloc(4, 4)
    seen.append(observe("realloc smaller", realloc_addr, mem, c, 8))
    seen.append(observe("realloc equal", realloc_addr, mem, c, 16))
    seen.append(observe("realloc foreign", realloc_addr, mem, foreign, 64))
    seen.append(observe("realloc larger", realloc_addr, mem, c, 64))
    seen.append(("size after errors", mem.size))

    mem.own_pyref(seen)
    seen.append(("refs", len(mem.refs)))

    cdef Address addr = Address(3, 8)
    seen.append(("address", all_zero(addr.ptr, 24), addr.addr == <size_t>addr.ptr))

    global calls
    calls = 0
    custom = Pool(WrapMalloc(my_malloc), WrapFree(my_free))
    cdef Pool typed = custom
    cdef void* p = typed.alloc(2, 2)
    typed.free(p)
    typed.alloc(1, 1)
    del typed, custom
    import gc
    gc.collect()
    seen.append(("custom allocator calls", calls))
    return seen
