"""The ``%%poolmem`` IPython cell magic: how much pool memory a cell needed."""

from __future__ import annotations

from typing import Any

from .cymem import PoolTrace, trace


def _human(n: int) -> str:
    """``1536`` -> ``1.5 KiB``."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def describe(t: PoolTrace) -> str:
    """The line ``%%poolmem`` prints for a finished trace."""
    return (
        f"pool memory: peak {_human(t.peak)} ({t.peak} bytes) above the start, "
        f"allocated {_human(t.allocated)} ({t.allocated} bytes), "
        f"freed {_human(t.freed)} ({t.freed} bytes)"
    )


def register(ipython: Any) -> None:
    """Registers ``%%poolmem`` with an IPython shell."""

    def poolmem(line: str, cell: str) -> None:
        """Runs the cell, then prints the pool bytes allocated, freed and
        the peak above the start while it ran (every thread's pools)."""
        with trace() as t:
            ipython.run_cell(cell, store_history=False)
        print(describe(t))

    ipython.register_magic_function(poolmem, magic_kind="cell", magic_name="poolmem")
