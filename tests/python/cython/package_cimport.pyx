# The short cimport form: `from cymem_rs cimport ...` and `cimport cymem_rs`.
cimport cymem_rs
from cymem_rs cimport Address, Pool, PyFree, PyMalloc, WrapFree, WrapMalloc
from libc.stdlib cimport free, malloc


def roundtrip():
    cdef Pool mem = Pool()
    cdef cymem_rs.Pool same = mem
    cdef long* p = <long*>mem.alloc(4, sizeof(long))
    p[3] = 9
    p = <long*>same.realloc(p, 8 * sizeof(long))
    cdef Address a = Address(2, 4)
    cdef PyMalloc m = WrapMalloc(malloc)
    cdef PyFree f = WrapFree(free)
    custom = Pool(m, f)
    return p[3], p[7], mem.size, a.ptr != NULL, custom.pymalloc is m
