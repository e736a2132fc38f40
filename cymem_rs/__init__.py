"""cymem_rs: a drop-in, faster cymem.

Memory pools for Cython and C with a Rust core: every block a ``Pool`` hands
out is zeroed and freed exactly once, by ``Pool.free`` or when the Pool is
garbage collected. Cython code cimports ``cymem_rs.cymem`` (or ``cymem_rs``)
exactly as it cimported ``cymem.cymem``.
"""

from __future__ import annotations

import os
import sys
from typing import Any, TextIO

from .cymem import (
    ABI_VERSION,
    TRACEMALLOC_DOMAIN,
    Address,
    BlockView,
    Default_Free,
    Default_Malloc,
    MemoryCorruptionError,
    Pool,
    PoolInfo,
    PoolStats,
    PoolTrace,
    PyFree,
    PyMalloc,
    format_report,
    live_pools,
    peak,
    reset_peak,
    trace,
    track_origins,
)

__all__ = [
    "ABI_VERSION",
    "TRACEMALLOC_DOMAIN",
    "Address",
    "BlockView",
    "Default_Free",
    "Default_Malloc",
    "MemoryCorruptionError",
    "Pool",
    "PoolInfo",
    "PoolStats",
    "PoolTrace",
    "PyFree",
    "PyMalloc",
    "format_report",
    "get_include",
    "live_pools",
    "load_ipython_extension",
    "peak",
    "report",
    "reset_peak",
    "trace",
    "track_origins",
]


def get_include() -> str:
    """The folder holding ``cymem_rs.h``, the C header of the C library."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "include")


def report(file: TextIO | None = None, *, peak: bool = False) -> None:
    """Prints the live-pool report (``format_report()``) to ``file`` (default
    stdout): one line per live pool, most bytes first, with its name and the
    ``file:line`` that created it. With ``peak=True``, the peak report
    (``format_report(peak=True)``): the process-wide peak of pool bytes and
    the pools that held them."""
    print(format_report(peak=peak), end="", file=sys.stdout if file is None else file)


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext cymem_rs``: adds the ``%%poolmem`` cell magic, which runs
    the cell and prints the pool bytes it allocated, freed and its peak."""
    from ._poolmem import register

    register(ipython)
