"""A compiled module and the installed cymem_rs must agree on the C API: a
mismatch is an ImportError at first use, never a crash."""

import ctypes

import pytest

import cymem_rs.cymem
from cymem_rs import Pool

CAPSULE_NAME = b"cymem_rs.cymem._C_API"
TABLE_WORDS = 23  # 6 size_t fields + 17 function pointers (see src/python/capi.rs)

_get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_get_pointer.restype = ctypes.c_void_p
_get_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
_new_capsule = ctypes.pythonapi.PyCapsule_New
_new_capsule.restype = ctypes.py_object
_new_capsule.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]


def real_table():
    address = _get_pointer(cymem_rs.cymem._C_API, CAPSULE_NAME)
    return (ctypes.c_size_t * TABLE_WORDS).from_address(address)


def fake_capsule(**changes):
    """A copy of the real table with some fields changed, in a capsule."""
    fields = ["capsule_version", "table_size", "pool_core_offset", "address_ptr_offset"]
    table = (ctypes.c_size_t * TABLE_WORDS)(*real_table())
    for name, value in changes.items():
        table[fields.index(name)] = value
    capsule = _new_capsule(ctypes.addressof(table), CAPSULE_NAME, None)
    return capsule, table  # keep the table alive with the capsule


def test_real_table_describes_itself():
    table = real_table()
    # The capsule has its own version, apart from the C ABI's.
    assert table[0] == cymem_rs.cymem._C_API_VERSION == 2
    assert table[1] == TABLE_WORDS * ctypes.sizeof(ctypes.c_size_t)
    assert table[2] >= object.__basicsize__  # the pool's core, inside the object
    assert table[3] == object.__basicsize__  # Address.ptr, right after the header


MISMATCHES = [
    ({"capsule_version": 999}, "version mismatch"),
    # The C ABI's version is not the capsule's: a table claiming it is refused.
    ({"capsule_version": cymem_rs.ABI_VERSION}, "version mismatch"),
    ({"table_size": 8}, "layout mismatch"),
    ({"pool_core_offset": 8}, "layout mismatch"),
    ({"address_ptr_offset": 40}, "layout mismatch"),
]


def test_mismatched_capsule_is_an_import_error(cython_module, monkeypatch):
    # The probe module loads the C API on first use and keeps it only when it
    # matches, so every mismatch must be tried before the first success.
    probe = cython_module("capi_probe")
    for changes, message in MISMATCHES:
        capsule, _table = fake_capsule(**changes)
        with monkeypatch.context() as patch:
            patch.setattr(cymem_rs.cymem, "_C_API", capsule)
            with pytest.raises(ImportError, match=message):
                probe.alloc_one(Pool())
    # With the real capsule, the same compiled module works.
    assert probe.alloc_one(Pool())
