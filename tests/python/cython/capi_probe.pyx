# Loads the C API lazily on its first pool call; used by test_capi_guard.py.
from cymem_rs.cymem cimport Pool


def alloc_one(Pool mem):
    return <size_t>mem.alloc(1, 8) != 0
