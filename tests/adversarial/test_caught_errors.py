"""Millions of caught errors keep memory flat.

Each case raises and catches one kind of pool error in a tight loop (from
Cython through the inline C API, or from Python) in a fresh process, and the
process measures its own resident set size before and after. Everything an
error allocates (the exception, its message) must be released when the
exception is caught, not queued for later.

`CYMEM_RS_REPEAT` (default 10) scales the counts: 200,000 errors per unit.
"""

from __future__ import annotations

import json
import os

import pytest
from conftest import run_python

REPEAT = int(os.environ.get("CYMEM_RS_REPEAT", "10"))
ERRORS = 200_000 * REPEAT
# Growth allowed in the loop: noise of the interpreter, far below what one
# leaked object per error would cost (about 140 bytes each, 270 MiB for 2M).
MAX_GROWTH_KIB = 4 * 1024

LOOPS = r"""
# cython: language_level=3
from cymem_rs.cymem cimport Pool
from libc.stdint cimport uintptr_t

cdef size_t loop_free_unknown(Pool mem, size_t n) except? 0:
    cdef size_t i, caught = 0
    cdef char foreign = 0
    for i in range(n):
        try:
            mem.free(&foreign)
        except KeyError:
            caught += 1
    return caught

cdef size_t loop_realloc_unknown(Pool mem, size_t n) except? 0:
    cdef size_t i, caught = 0
    cdef char foreign = 0
    for i in range(n):
        try:
            mem.realloc(&foreign, 64)
        except ValueError:
            caught += 1
    return caught

cdef size_t loop_realloc_not_larger(Pool mem, size_t n) except? 0:
    cdef size_t i, caught = 0
    cdef void* p = mem.alloc(1, 64)
    for i in range(n):
        try:
            mem.realloc(p, 8)
        except ValueError:
            caught += 1
    return caught

cdef size_t loop_alloc_overflow(Pool mem, size_t n) except? 0:
    cdef size_t i, caught = 0
    for i in range(n):
        try:
            mem.alloc(<size_t>-1, 16)
        except MemoryError:
            caught += 1
    return caught

cdef size_t loop_free_pinned(Pool mem, size_t n, size_t addr) except? 0:
    cdef size_t i, caught = 0
    for i in range(n):
        try:
            mem.free(<void*><uintptr_t>addr)
        except BufferError:
            caught += 1
    return caught

cdef size_t loop_check_corrupted(Pool mem, size_t n, size_t addr) except? 0:
    cdef size_t i, caught = 0
    for i in range(n):
        (<char*><uintptr_t>addr)[64] = 1  # one byte past the block: a guard byte
        try:
            mem.check()
        except Exception as e:
            if type(e).__name__ == "MemoryCorruptionError":
                caught += 1
    (<char*><uintptr_t>addr)[64] = 0
    return caught

cdef size_t loop_zero_alloc_warning(Pool mem, size_t n) except? 0:
    cdef size_t i, caught = 0
    for i in range(n):
        try:
            mem.alloc(0, 8)
        except UserWarning:
            caught += 1
    return caught

def run(str kind, Pool mem, size_t n, size_t addr=0):
    if kind == "free_unknown":
        return loop_free_unknown(mem, n)
    if kind == "realloc_unknown":
        return loop_realloc_unknown(mem, n)
    if kind == "realloc_not_larger":
        return loop_realloc_not_larger(mem, n)
    if kind == "alloc_overflow":
        return loop_alloc_overflow(mem, n)
    if kind == "free_pinned":
        return loop_free_pinned(mem, n, addr)
    if kind == "check_corrupted":
        return loop_check_corrupted(mem, n, addr)
    if kind == "zero_alloc_warning":
        return loop_zero_alloc_warning(mem, n)
    raise ValueError(kind)
"""

# The child: warm up (so first-use allocations are not counted), then measure.
DRIVER = r"""
import json, os, sys
from cymem_rs import Pool

PAGE = os.sysconf("SC_PAGE_SIZE")

def rss_kib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE // 1024

KIND, SOURCE, N = sys.argv[1], sys.argv[2], int(sys.argv[3])
mem = Pool(debug=KIND == "check_corrupted")
addr = mem.alloc(1, 64)
view = mem.view(addr) if KIND == "free_pinned" else None
if KIND == "zero_alloc_warning":
    import warnings, cymem_rs.cymem
    cymem_rs.cymem.WARN_ZERO_ALLOC = True
    warnings.simplefilter("error")

if SOURCE == "cython":
    import caught_loops
    def run(n):
        return caught_loops.run(KIND, mem, n, addr)
else:
    ERRORS = {"free_unknown": KeyError, "realloc_unknown": ValueError,
              "realloc_not_larger": ValueError, "alloc_overflow": MemoryError,
              "free_pinned": BufferError}
    CALLS = {"free_unknown": lambda: mem.free(1),
             "realloc_unknown": lambda: mem.realloc(1, 64),
             "realloc_not_larger": lambda: mem.realloc(addr, 8),
             "alloc_overflow": lambda: mem.alloc(2**63, 16),
             "free_pinned": lambda: mem.free(addr)}
    def run(n, error=ERRORS[KIND], call=CALLS[KIND]):
        caught = 0
        for _ in range(n):
            try:
                call()
            except error:
                caught += 1
        return caught

run(20_000)
before = rss_kib()
caught = run(N)
after = rss_kib()
print(json.dumps({"caught": caught, "before_kib": before, "after_kib": after}))
"""

CYTHON_KINDS = [
    "free_unknown",  # KeyError
    "realloc_unknown",  # ValueError
    "realloc_not_larger",  # ValueError
    "alloc_overflow",  # MemoryError
    "free_pinned",  # BufferError
    "check_corrupted",  # MemoryCorruptionError
    "zero_alloc_warning",  # UserWarning turned into an error by a filter
]
# Python's `check` and warnings run the same code as Cython's.
PYTHON_KINDS = CYTHON_KINDS[:-2]


@pytest.fixture(scope="module")
def loops(cython_snippet):
    return cython_snippet("caught_loops", LOOPS)


def errors_for(kind: str) -> int:
    # The warnings machinery costs about 5 us per warning: fewer of them.
    return ERRORS // 4 if kind == "zero_alloc_warning" else ERRORS


def measure(kind: str, source: str, path) -> dict:
    outcome = run_python(
        f"import sys; sys.argv[1:] = {[kind, source, str(errors_for(kind))]!r}\n{DRIVER}",
        path=path,
        timeout=120,
    ).ok()
    figures = json.loads(outcome.stdout.strip().splitlines()[-1])
    figures["errors"] = errors_for(kind)
    print(
        f"{source} {kind}: {figures['errors']} errors, RSS {figures['before_kib']} -> "
        f"{figures['after_kib']} KiB"
    )
    return figures


def assert_flat(figures: dict) -> None:
    assert figures["caught"] == figures["errors"]
    growth = figures["after_kib"] - figures["before_kib"]
    assert growth < MAX_GROWTH_KIB, (
        f"RSS grew by {growth} KiB over {figures['errors']} caught errors"
    )


@pytest.mark.parametrize("kind", CYTHON_KINDS)
def test_caught_errors_from_cython_keep_memory_flat(kind, loops):
    assert_flat(measure(kind, "cython", [loops]))


@pytest.mark.parametrize("kind", PYTHON_KINDS)
def test_caught_errors_from_python_keep_memory_flat(kind, loops):
    assert_flat(measure(kind, "python", [loops]))
