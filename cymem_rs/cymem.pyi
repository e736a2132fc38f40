"""Type stubs for the `cymem_rs.cymem` extension module (Rust, pyo3)."""

import sys
from collections.abc import Callable
from types import TracebackType
from typing import Any, NamedTuple, TypedDict, final

from typing_extensions import Self, disjoint_base

__all__ = [
    "ABI_VERSION",
    "TRACEMALLOC_DOMAIN",
    "WARN_ZERO_ALLOC",
    "_C_API",
    "_C_API_VERSION",
    "_POOL_LOCK",
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
    "Scope",
    "format_report",
    "live_pools",
    "peak",
    "reset_peak",
    "trace",
    "track_origins",
]

WARN_ZERO_ALLOC: bool
ABI_VERSION: int
# The tracemalloc domain of pool blocks PyMem does not allocate (arena pools,
# WrapMalloc allocators); see docs/debugging-memory.md.
TRACEMALLOC_DOMAIN: int
_C_API: Any
_C_API_VERSION: int
_POOL_LOCK: bool

@final
class PyMalloc:
    """A C `malloc`-like function; made from Cython with `WrapMalloc(f)`."""

@final
class PyFree:
    """A C `free`-like function; made from Cython with `WrapFree(f)`."""

Default_Malloc: PyMalloc
Default_Free: PyFree

class PoolStats(NamedTuple):
    """A pool's counters (`Pool.stats`)."""

    size: int
    peak_size: int
    block_count: int
    total_allocs: int
    total_frees: int
    total_reallocs: int

class PoolInfo(NamedTuple):
    """One live pool in `live_pools()`."""

    name: str | None
    size: int
    peak_size: int
    block_count: int
    total_allocs: int
    total_frees: int
    total_reallocs: int
    arena: bool
    origin: str
    limit: int | None

def live_pools() -> list[PoolInfo]:
    """The pools alive now, most bytes first (holds no reference to them).

    An unnamed `Pool()` is listed from its first block (or name, or limit) on.
    """

def format_report(*, peak: bool = False) -> str:
    """The live-pool report as an aligned text table (with `peak=True`, the
    peak report: `peak()` as a table)."""

class PeakPool(TypedDict):
    """A pool that held bytes at the peak (in `peak()["pools"]`)."""

    name: str | None
    origin: str
    bytes: int
    blocks: int
    arena: bool
    alive: bool

class PeakReport(TypedDict):
    """`peak()`: the process-wide peak of pool bytes and who held them."""

    peak: int
    current: int
    snapshot: int
    step: int
    pools: list[PeakPool]

def peak() -> PeakReport:
    """The most bytes this module's pools held at once (since the start or
    `reset_peak()`), the bytes held now, and the pools that held them at the
    peak; exact to within `step` bytes (plus `step` per thread using C
    pools)."""

def reset_peak() -> None:
    """Starts a new process-wide peak from the bytes held now."""

@final
class PoolTrace:
    """Pool bytes allocated, freed and the peak above the start, in every
    thread, while a `with` block runs."""

    def __init__(self) -> None: ...
    def __enter__(self) -> PoolTrace: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool: ...
    @property
    def allocated(self) -> int: ...
    @property
    def freed(self) -> int: ...
    @property
    def peak(self) -> int: ...

def trace() -> PoolTrace:
    """`with trace() as t: ...`, then `t.allocated`, `t.freed`, `t.peak`."""

def track_origins(enabled: bool) -> bool:
    """Whether new pools remember the Python line that made them (default
    True); returns the previous setting."""

@disjoint_base
class Pool:
    """A memory pool: every block is zeroed, and freed when the Pool dies."""

    def __new__(
        cls,
        pymalloc: PyMalloc | None = None,
        pyfree: PyFree | None = None,
        *,
        arena: bool = False,
        name: str | None = None,
        debug: bool | None = None,
        limit: int | None = None,
    ) -> Self: ...
    @property
    def arena(self) -> bool:
        """Whether the pool is an arena pool (`Pool(arena=True)`)."""
    @property
    def limit(self) -> int | None:
        """Live bytes allowed (None: no limit; settable, None or 0 removes it);
        past it alloc/realloc raise MemoryError and change nothing."""
    @limit.setter
    def limit(self, value: int | None) -> None: ...
    def clear(self) -> None:
        """Runs every cleanup, then frees every block; the pool stays usable
        (BufferError, changing nothing, while a block is viewed)."""
    def mark(self) -> int:
        """Opens a scope; returns its mark for `release_to`."""
    def release_to(self, mark: int) -> None:
        """Closes the scope of `mark` (and inner ones): runs their cleanups and
        frees their blocks. ValueError for a stale or foreign mark."""
    def scope(self) -> Scope:
        """`with pool.scope():` frees the blocks allocated inside on exit."""
    def add_cleanup(self, callback: Callable[[], object]) -> None:
        """Calls `callback()` once when the pool is cleared or dies, or when
        the scope it was added in is released (newest first)."""
    @property
    def debug(self) -> bool:
        """Whether the pool is in debug mode (`debug=True` or `CYMEM_RS_DEBUG=1`)."""
    def check(self) -> None:
        """Debug mode: raises MemoryCorruptionError if a block was damaged."""
    @property
    def stats(self) -> PoolStats:
        """The pool's counters now."""
    @property
    def peak_size(self) -> int:
        """The most bytes live at once since creation or `reset_peak()`."""
    def reset_peak(self) -> None:
        """Starts a new high-water mark from the bytes live now."""
    @property
    def name(self) -> str | None:
        """The pool's name in reports (settable)."""
    @name.setter
    def name(self, value: str | None) -> None: ...
    @property
    def size(self) -> int:
        """Bytes in live blocks."""
    @property
    def block_count(self) -> int:
        """Number of live blocks."""
    @property
    def addresses(self) -> dict[int, int]:
        """A snapshot of the live blocks: {address: size}."""
    @property
    def refs(self) -> list[Any]:
        """Objects kept alive by `own_pyref`."""
    @property
    def pymalloc(self) -> PyMalloc: ...
    @property
    def pyfree(self) -> PyFree: ...
    def own_pyref(self, obj: Any) -> None:
        """Keeps `obj` alive as long as the pool."""
    def alloc(self, number: int, elem_size: int) -> int:
        """A zeroed block of `number * elem_size` bytes; returns its address."""
    def free(self, addr: int) -> None:
        """Releases a block (KeyError if the pool does not hold it)."""
    def realloc(self, addr: int, new_size: int) -> int:
        """Grows a block (ValueError unless larger); returns its new address."""
    def view(
        self,
        addr: int,
        format: str = "B",
        shape: int | tuple[int, ...] | list[int] | None = None,
        readonly: bool = False,
    ) -> BlockView:
        """A zero-copy view of a live block (KeyError if unknown). It keeps the
        pool alive; `free`/`realloc` of the block raise BufferError while it lives."""

@final
class Scope:
    """The context manager of `Pool.scope()`; `as` gives the mark."""

    @property
    def mark(self) -> int | None:
        """The open scope's mark (None when not open)."""
    def __enter__(self) -> int: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool: ...

class MemoryCorruptionError(RuntimeError):
    """Debug mode found a block written past its end, before its start, or
    after it was freed; the message names its address, size and allocation
    number."""

@final
class Address:
    """One zeroed block of `number * elem_size` bytes, freed with the object."""

    def __new__(cls, number: int, elem_size: int) -> Self: ...
    @property
    def addr(self) -> int: ...
    @property
    def size(self) -> int: ...
    def view(
        self,
        format: str = "B",
        shape: int | tuple[int, ...] | list[int] | None = None,
        readonly: bool = False,
    ) -> BlockView:
        """A zero-copy view of the block; it keeps this Address alive."""
    # The buffer protocol is a C slot; Python names it `__buffer__` from 3.12.
    if sys.version_info >= (3, 12):
        def __buffer__(self, flags: int, /) -> memoryview:
            """The block as writable bytes: `memoryview(address)`."""

@final
class BlockView:
    """A typed, shaped, C-contiguous window on a pool block or an Address,
    exported through the buffer protocol (`memoryview`, `numpy.asarray`) with
    no copy. Made by `Pool.view` / `Address.view`; keeps its owner alive."""

    @property
    def obj(self) -> Pool | Address:
        """The owner whose memory this is."""
    @property
    def addr(self) -> int: ...
    @property
    def nbytes(self) -> int:
        """`product(shape) * itemsize`."""
    @property
    def format(self) -> str:
        """The struct-module item code, e.g. "d" or "<i"."""
    @property
    def itemsize(self) -> int: ...
    @property
    def ndim(self) -> int: ...
    @property
    def shape(self) -> tuple[int, ...]: ...
    @property
    def strides(self) -> tuple[int, ...]: ...
    @property
    def readonly(self) -> bool: ...
    if sys.version_info >= (3, 12):
        def __buffer__(self, flags: int, /) -> memoryview: ...
