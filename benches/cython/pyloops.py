"""(f): the Python-level loops (the loop's own cost is part of every figure;
`object()` in the same loop is the reference). Used by bench.py for timing
and by driver.py under callgrind."""

import itertools
import time


def pool_new(cls, n: int) -> int:
    """`cls()` n times, the result dropped at once; elapsed ns."""
    it = itertools.repeat(None, n)
    t0 = time.perf_counter_ns()
    for _ in it:
        cls()
    return time.perf_counter_ns() - t0


def size_read(mem, n: int) -> int:
    """`mem.size` n times; elapsed ns."""
    it = itertools.repeat(None, n)
    t0 = time.perf_counter_ns()
    for _ in it:
        mem.size  # noqa: B018 (the read is the workload)
    return time.perf_counter_ns() - t0
