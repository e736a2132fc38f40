"""cymem_rs: a drop-in, faster cymem.

Memory pools for Cython and C with a Rust core: every block a ``Pool`` hands
out is zeroed and freed exactly once, by ``Pool.free`` or when the Pool is
garbage collected. Cython code cimports ``cymem_rs.cymem`` (or ``cymem_rs``)
exactly as it cimported ``cymem.cymem``.
"""

import os

from .cymem import (
    ABI_VERSION,
    Address,
    BlockView,
    Default_Free,
    Default_Malloc,
    MemoryCorruptionError,
    Pool,
    PyFree,
    PyMalloc,
)

__all__ = [
    "ABI_VERSION",
    "Address",
    "BlockView",
    "Default_Free",
    "Default_Malloc",
    "MemoryCorruptionError",
    "Pool",
    "PyFree",
    "PyMalloc",
    "get_include",
]


def get_include() -> str:
    """The folder holding ``cymem_rs.h``, the C header of the C library."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "include")
