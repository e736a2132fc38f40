"""Small subprocess drivers of the Cython benchmark (run by bench.py).

    driver.py callgrind WORKLOAD IMPL N SETUP_N MODULE_PATH
        Runs one workload (a, b, c, d, e, f_new, f_size) once with N
        operations, nothing else; run
        under `valgrind --tool=callgrind` with N and with 0, the difference
        divided by N is the instruction count per operation (interpreter
        start-up, imports, Pool creation and drop cancel out). SETUP_N sizes
        the baselines' pre-faulted arena and pointer array, identically in
        both runs.

    driver.py memory IMPL N SIZE METHOD MODULE_PATH
        Makes N live blocks of SIZE bytes in a fresh process and prints, as
        JSON, how much the process grew: METHOD `rss` (resident set from
        /proc/self/statm, plus glibc's mallinfo2 in-use bytes) or
        `tracemalloc` (bytes traced by tracemalloc, i.e. PyMem/PyObject
        allocations only).

    driver.py pools IMPL N
        Keeps N empty pools (`Pool()`) alive in a list made beforehand, in a
        fresh process, and prints as JSON how much the process grew (RSS, and
        glibc's in-use bytes): the footprint of an empty pool.

IMPL: cymem, cymem_rs, cymem_rs_arena, or a baseline (calloc, pymem, bump,
object; for memory: raw_pymem, raw_calloc).
"""

from __future__ import annotations

# Few imports: under callgrind, each costs millions of instructions of start-up
# (they cancel in N minus 0, but make every run slower).
import gc
import importlib.util
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)  # pyloops (f)
# As _common.isolate_from_source_tree(): no checkout root on sys.path, the
# run's snapshot of cymem_rs first.
sys.path[:] = [p for p in sys.path if p and os.path.realpath(p) != ROOT]
if os.environ.get("CYMEM_BENCH_SNAPSHOT"):
    sys.path.insert(0, os.environ["CYMEM_BENCH_SNAPSHOT"])


def pool_impl(impl: str) -> tuple[str, bool]:
    """(module impl, arena?) of a pool implementation."""
    if impl == "cymem_rs_arena":
        return "cymem_rs", True
    return impl, False


def pool_class(impl: str):
    if impl == "cymem":
        import cymem.cymem

        return cymem.cymem.Pool
    import cymem_rs.cymem

    return cymem_rs.cymem.Pool


def new_pool(impl: str):
    module_impl, arena = pool_impl(impl)
    cls = pool_class(module_impl)
    return cls(arena=True) if arena else cls()


def load(impl: str, path: str):
    """The compiled workloads module at `path` (bench_cymem or bench_cymem_rs)."""
    name = os.path.basename(path).split(".")[0]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def callgrind(workload: str, impl: str, n: int, setup_n: int, path: str) -> None:
    mod = load(impl, path)
    if impl == "bump":
        mod.prepare(setup_n)  # the pre-faulted arena (and pointer array)
    elif impl in ("calloc", "pymem"):
        mod.prepare_ptrs(setup_n)
    gc.disable()
    if workload.startswith("f_"):
        import pyloops

        if workload == "f_new":
            pyloops.pool_new(object if impl == "object" else pool_class(impl), n)
        else:
            pyloops.size_read(new_pool(impl), n)
        return
    if not impl.startswith("cymem"):
        fn = getattr(mod, f"{workload}_{impl}")
        if workload == "b":
            fn(1, n)
        else:
            fn(n)
        return
    arena = pool_impl(impl)[1]
    if workload == "a":
        mod.a_pool(new_pool(impl), n)
    elif workload == "b":
        mod.b_pool(1, n, arena)
    elif workload == "c":
        mod.c_pool(new_pool(impl), n)
    elif workload == "d":
        mod.d_pool(n, arena)
    elif workload == "e":
        mod.e_address(n)
    else:
        raise SystemExit(f"no callgrind driver for workload {workload!r}")


def mallinfo_reader():
    """A function returning the bytes glibc's malloc has handed out and not
    got back (brk heap and mmapped chunks), or None where mallinfo2 is missing."""
    import ctypes

    class Mallinfo2(ctypes.Structure):
        _fields_ = [
            (name, ctypes.c_size_t)
            for name in (
                "arena",
                "ordblks",
                "smblks",
                "hblks",
                "hblkhd",
                "usmblks",
                "fsmblks",
                "uordblks",
                "fordblks",
                "keepcost",
            )
        ]

    try:
        fn = ctypes.CDLL(None).mallinfo2
    except (OSError, AttributeError):
        return lambda: None
    fn.restype = Mallinfo2

    def in_use() -> int:
        info = fn()
        return info.uordblks + info.hblkhd

    return in_use


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        resident = int(f.read().split()[1])
    return resident * os.sysconf("SC_PAGE_SIZE")


def memory(impl: str, n: int, size: int, method: str, path: str) -> None:
    import json
    import tracemalloc

    malloc_in_use = mallinfo_reader()
    mod = load(impl, path)
    raw = impl.startswith("raw_")
    if raw:
        mod.prepare_ptrs(n)  # the pointer array is not bookkeeping of a pool
    pool = None if raw else new_pool(impl)
    # Warm the code paths (and the first pymalloc pools) before the baseline.
    if raw:
        mod.keep_raw_blocks(0, size, "PyMem_Malloc")
    else:
        warm = new_pool(impl)
        mod.keep_pool_blocks(warm, 16, size)
        del warm
    gc.collect()
    gc.disable()
    if method == "tracemalloc":
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
    else:
        before, malloc_before = rss_bytes(), malloc_in_use()
    if raw:
        mod.keep_raw_blocks(n, size, "PyMem_Malloc" if impl == "raw_pymem" else "calloc")
    else:
        mod.keep_pool_blocks(pool, n, size)
    result = {"impl": impl, "n": n, "size": size, "method": method}
    if method == "tracemalloc":
        result["bytes"] = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
    else:
        after, malloc_after = rss_bytes(), malloc_in_use()
        result["bytes"] = after - before
        if malloc_before is not None:
            result["malloc_bytes"] = malloc_after - malloc_before
    if pool is not None and hasattr(pool, "size"):
        result["pool_size"] = pool.size
    import _common

    result["fingerprint"] = _common.installed_fingerprint()["cymem_rs"]["sha256"]
    print(json.dumps(result))


def pools(impl: str, n: int) -> None:
    import json

    malloc_in_use = mallinfo_reader()
    kept = [None] * n
    # Warm the code paths (and the registry's first records) before the baseline.
    warm = [new_pool(impl) for _ in range(64)]
    del warm
    gc.collect()
    gc.disable()
    before, malloc_before = rss_bytes(), malloc_in_use()
    for i in range(n):
        kept[i] = new_pool(impl)
    after, malloc_after = rss_bytes(), malloc_in_use()
    result = {"impl": impl, "n": n, "bytes": after - before}
    if malloc_before is not None:
        result["malloc_bytes"] = malloc_after - malloc_before
    print(json.dumps(result))


def main(argv: list[str]) -> None:
    if not argv:
        raise SystemExit(__doc__)
    if argv[0] == "callgrind" and len(argv) == 6:
        callgrind(argv[1], argv[2], int(argv[3]), int(argv[4]), argv[5])
    elif argv[0] == "memory" and len(argv) == 6:
        memory(argv[1], int(argv[2]), int(argv[3]), argv[4], argv[5])
    elif argv[0] == "pools" and len(argv) == 3:
        pools(argv[1], int(argv[2]))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
