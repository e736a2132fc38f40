"""Python/Cython workloads that tests/valgrind/run.sh runs under valgrind.

    workloads.py build DIR              compile vg_workloads.pyx into DIR (outside valgrind)
    workloads.py run DIR NAME...        run workloads against the module built in DIR
    workloads.py precompile DIR NAME... run them natively, then write hash-based .pyc
                                        files into $PYTHONPYCACHEPREFIX (see precompile())
    workloads.py list                   the workload names

`run` only imports the already-built module: nothing is compiled under
valgrind. Besides what valgrind checks (definite leaks, invalid accesses,
uninitialised reads), every workload asserts on its own that the pools died
(weak references are dead) and, for pools on the counting allocator, that
every block malloc'd was freed. A leaked *reference* to a pool keeps the pool
and its blocks alive, which valgrind's definite-leak check cannot be relied on
to see (a live pool is reachable); these assertions catch it (exit status 1).

Self-test: with CYMEM_VALGRIND_SELFTEST=leak (or 1) the run ends by leaking
SELFTEST_LEAK_BYTES bytes from C on purpose; with CYMEM_VALGRIND_SELFTEST=
invalid-read it reads one byte past the end of a pool block. run.sh requires
valgrind to report both. With CYMEM_VALGRIND_SELFTEST=pool-reference it leaks
a reference to a pool (valgrind cannot be relied on to flag that) and run.sh
requires this script's own checks to fail.
Arena pools: arena-overrun reads one byte past an arena block,
arena-use-after-free reads one after freeing it, and arena-leaked-pool leaks
an arena pool (the object itself) holding a SELFTEST_LEAKED_POOL_BYTES block;
run.sh requires valgrind to report each with the block's allocation stack.
"""

from __future__ import annotations

import gc
import importlib.util
import os
import sys
import threading
import warnings
import weakref

HERE = os.path.dirname(os.path.abspath(__file__))
MODULE = "vg_workloads"
SELFTEST_LEAK_BYTES = 4242  # an odd size, so run.sh can find it in the log
SELFTEST_READ_BYTES = 24
SELFTEST_LEAKED_POOL_BYTES = 4321


def build(out_dir: str) -> None:
    """Compiles vg_workloads.pyx the way the Cython tests do (cython_build)."""
    sys.path.insert(0, os.path.dirname(HERE))  # tests/
    import cython_build

    module = cython_build.build_module(os.path.join(HERE, f"{MODULE}.pyx"), out_dir)
    print(f"built {module.__file__}")


def load(out_dir: str):
    # No pathlib here: it imports ipaddress, whose import-time int("0")
    # trips CPython 3.11's maybe_small_long() false positive (see python.supp).
    [name] = [f for f in os.listdir(out_dir) if f.startswith(MODULE) and f.endswith(".so")]
    path = os.path.join(out_dir, name)
    spec = importlib.util.spec_from_file_location(MODULE, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[MODULE] = module
    spec.loader.exec_module(module)
    return module


def check(condition: bool, what: str) -> None:
    if not condition:
        raise AssertionError(what)


def collect() -> None:
    for _ in range(3):
        gc.collect()


def all_dead(refs: list, what: str) -> None:
    collect()
    alive = sum(r() is not None for r in refs)
    check(alive == 0, f"{what}: {alive} of {len(refs)} pools still alive")


def balanced(m, what: str) -> int:
    """The counting allocator freed every block it handed out."""
    collect()
    mallocs, frees = m.allocator_counts()
    check(mallocs > 0, f"{what}: the counting allocator was never used")
    check(mallocs == frees, f"{what}: {mallocs} mallocs but {frees} frees")
    return mallocs


# --------------------------------------------------------------------------
# Workloads
# --------------------------------------------------------------------------


def pool_churn(m) -> str:
    """Many pools created and dropped; alloc/free/realloc from Python and C."""
    from cymem_rs import Pool

    refs = []
    for k in range(150):  # Python API
        pool = Pool()
        addrs = [pool.alloc(i % 50 + 1, 8) for i in range(20)]
        for i in range(0, 20, 2):
            addrs[i] = pool.realloc(addrs[i], (i % 50 + 1) * 8 + 64)
        for i in range(0, 20, 3):
            pool.free(addrs[i])
        check(pool.block_count == len(pool.addresses) == 20 - 7, "block count")
        check(pool.size == sum(pool.addresses.values()), "size vs addresses")
        repr(pool)
        if k % 10 == 0:
            refs.append(weakref.ref(pool))
        del pool
    for k in range(150):  # Cython API
        pool = Pool()
        m.churn(pool, 5, 20)
        check(len(m.error_paths(pool)) == 6, "every refused call raised")
        check(m.zero_byte_blocks(pool, 40) == 40, "0-byte blocks are distinct")
        refs.append(weakref.ref(pool))
        del pool
    import cymem_rs.cymem

    cymem_rs.cymem.WARN_ZERO_ALLOC = True
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            pool = Pool()
            pool.alloc(0, 8)
            m.zero_byte_blocks(pool, 4)
            refs.append(weakref.ref(pool))
            del pool
        check(len(caught) >= 5, "zero-byte allocations warned")
    finally:
        cymem_rs.cymem.WARN_ZERO_ALLOC = False
    all_dead(refs, "pool churn")
    m.reset_allocator()
    for _ in range(100):  # the same churn on the counting allocator
        pool = m.counting_pool()
        m.churn(pool, 4, 16)
        m.error_paths(pool)
        del pool
    n = balanced(m, "pool churn (counting allocator)")
    return f"300 default pools, 100 counting pools ({n} blocks)"


def custom_allocators(m) -> str:
    """WrapMalloc/WrapFree pools: alloc, grow (malloc+copy+free), fail, share."""
    from cymem_rs import Pool

    m.reset_allocator()
    refs = []
    for k in range(60):
        pool = m.counting_pool()
        addrs = [pool.alloc(i + 1, 16) for i in range(30)]
        addrs = [pool.realloc(a, (i + 1) * 16 + 100) for i, a in enumerate(addrs)]
        for a in addrs[::4]:
            pool.free(a)
        m.churn(pool, 3, 12)
        # Another pool on the same PyMalloc/PyFree objects, read from Python.
        twin = Pool(pool.pymalloc, pool.pyfree)
        m.fill(twin, 50)
        refs += [weakref.ref(pool), weakref.ref(twin)]
        del pool, twin
    # The allocator fails midway: MemoryError, and the pool stays consistent.
    for nth in (1, 2, 5):
        pool = m.counting_pool()
        kept = pool.alloc(4, 8)
        m.fail_nth_malloc(nth)
        failed = 0
        for i in range(8):
            try:
                pool.alloc(2, 8)
            except MemoryError:
                failed += 1
        check(failed == 1, f"exactly one failed alloc (nth={nth})")
        m.fail_nth_malloc(1)  # the move inside realloc fails
        try:
            pool.realloc(kept, 256)
            check(False, "realloc on a failing allocator raised")
        except MemoryError:
            pass
        check(kept in pool.addresses, "a failed realloc keeps the block")
        pool.realloc(kept, 256)
        refs.append(weakref.ref(pool))
        del pool
    all_dead(refs, "custom allocators")
    n = balanced(m, "custom allocators")
    return f"{n} blocks malloc'd and freed through WrapMalloc/WrapFree"


def nested_exceptions(m) -> str:
    """Nested structs whose building raises midway (Python and MemoryError)."""
    m.reset_allocator()
    refs = []
    errors = []  # traceback -> this frame -> errors: cycles the GC must break
    depth, fanout = 3, 3
    full = 1 + 3 + 9 + 27
    for fail_after in range(1, full + 1, 2):
        pool = m.counting_pool()
        try:
            m.build_tree(pool, depth, fanout, fail_after)
            check(False, "build_tree raised")
        except RuntimeError as e:
            errors.append(e)
        refs.append(weakref.ref(pool))
        del pool
        try:  # a cdef class whose __init__ fails: the half-built object dies
            m.Tree(m.counting_pool(), depth, fanout, fail_after)
            check(False, "Tree() raised")
        except RuntimeError as e:
            errors.append(e)
    for nth in range(1, 60, 7):  # the allocator fails midway
        pool = m.counting_pool()
        m.fail_nth_malloc(nth)
        try:
            m.build_tree(pool, depth, fanout, 0)
            check(False, "build_tree raised MemoryError")
        except MemoryError as e:
            errors.append(e)
        m.fail_nth_malloc(0)
        refs.append(weakref.ref(pool))
        del pool
    tree = m.Tree(m.counting_pool(), depth, fanout, 0)
    expected = sum(d * fanout ** (depth - d) for d in range(depth + 1))
    check(tree.total() == expected, "a complete tree adds up")
    refs.append(weakref.ref(tree.pool))
    del tree
    del errors
    all_dead(refs, "nested exceptions")
    n = balanced(m, "nested exceptions")
    return f"{len(refs)} pools with partial trees, {n} blocks"


class Owner:
    """A Python object holding a pool that holds it back (own_pyref)."""


def gc_cycles(m) -> str:
    """Pools reachable only through reference cycles via own_pyref."""
    from cymem_rs import Address, Pool

    class SubPool(Pool):  # a Python subclass: has a __dict__ the GC clears
        pass

    m.reset_allocator()
    refs = []
    died = []
    old_threshold = gc.get_threshold()
    for automatic in (False, True):
        gc.set_threshold(*((50, 5, 5) if automatic else old_threshold))
        if not automatic:
            gc.disable()
        for k in range(40):
            # owner -> pool -> refs list -> owner
            owner = Owner()
            owner.pool = m.counting_pool()
            m.fill(owner.pool, 30)
            owner.pool.own_pyref(owner)
            owner.pool.own_pyref(Address(8, 8))
            refs.append(weakref.ref(owner.pool, died.append))
            del owner
            # a pool owning itself
            pool = m.counting_pool()
            m.fill(pool, 20)
            pool.own_pyref(pool)
            refs.append(weakref.ref(pool, died.append))
            del pool
            # two pools owning each other, one holding a list with the other
            a, b = m.counting_pool(), m.counting_pool()
            m.churn(a, 2, 8)
            m.churn(b, 2, 8)
            a.own_pyref(b)
            b.own_pyref([a, Address(3, 5)])
            refs += [weakref.ref(a, died.append), weakref.ref(b, died.append)]
            del a, b
            # a Python subclass pointing at itself through its __dict__
            sub = SubPool(*[getattr(m.counting_pool(), f) for f in ("pymalloc", "pyfree")])
            m.fill(sub, 25)
            sub.me = sub
            sub.own_pyref(sub.__dict__)
            refs.append(weakref.ref(sub, died.append))
            del sub
            # a cdef class owning the pool, the pool owning it: the GC clears
            # the Tree's Pool attribute (tp_clear) before the pool is freed
            tree = m.Tree(m.counting_pool(), 2, 3, 0)
            tree.pool.own_pyref(tree)
            refs.append(weakref.ref(tree.pool, died.append))
            del tree
        if not automatic:
            gc.enable()
    gc.set_threshold(*old_threshold)
    all_dead(refs, "gc cycles")
    check(len(died) == len(refs), f"{len(died)} of {len(refs)} pool weakref callbacks ran")
    n = balanced(m, "gc cycles")
    return f"{len(refs)} pools collected from cycles, {n} blocks"


def addresses(m) -> str:
    """Address objects: from Python and C, zero-sized, owned by pools, failing."""
    from cymem_rs import Address, Pool

    for i in range(1500):
        check(m.address_roundtrip(i % 97 + 1, (i % 3) * 8 + 1), "Address.ptr from C")
    live = [Address(i % 50, 8) for i in range(1000)]  # some 0-byte ones
    check(len({a.addr for a in live}) == len(live), "distinct addresses")
    check(all(a.size == (i % 50) * 8 for i, a in enumerate(live)), "sizes")
    repr(live[1])
    del live
    zero = [Address(0, 8), Address(8, 0), Address(0, 0)]
    check(all(a.size == 0 and a.addr for a in zero), "0-byte Addresses")
    del zero
    for number, size in ((2**63, 4), (2**62, 2**62), (2**63 - 1, 2)):
        try:
            Address(number, size)
            check(False, "impossible Address raised MemoryError")
        except (MemoryError, OverflowError):
            pass
    pool = Pool()
    for i in range(200):
        pool.own_pyref(Address(i + 1, 4))
    ref = weakref.ref(pool)
    del pool
    all_dead([ref], "pool owning Addresses")
    return "1500 read from C, 1000 live at once, 200 owned by a pool"


def big_pools(m) -> str:
    """Pools dying with 100,000 live blocks each."""
    from cymem_rs import Pool

    n = 100_000
    pool = Pool()
    size = m.fill(pool, n)
    check(pool.block_count == n, "100,000 live blocks (default allocator)")
    ref = weakref.ref(pool)
    del pool
    all_dead([ref], "big default pool")
    m.reset_allocator()
    pool = m.counting_pool()
    check(m.fill(pool, n) == size, "same size on the counting allocator")
    check(m.allocator_counts() == (n, 0), "100,000 mallocs, no frees yet")
    del pool
    check(m.allocator_counts() == (n, n), "the dying pool freed all 100,000")
    # the same, dying in a reference cycle
    pool = m.counting_pool()
    m.fill(pool, n)
    pool.own_pyref([pool])
    ref = weakref.ref(pool)
    del pool
    all_dead([ref], "big pool in a cycle")
    balanced(m, "big pools")
    return f"3 pools x {n} live blocks ({size} bytes each)"


def threads(m) -> str:
    """One pool shared by threads (its calls serialised by the GIL), plus
    thread-local pools on the counting allocator."""
    from cymem_rs import Pool

    m.reset_allocator()
    shared = Pool()
    problems = []

    def work(shared) -> None:
        try:
            mine = []
            for i in range(300):
                mine.append(shared.alloc(i % 7 + 1, 8))
                if i % 3 == 0:
                    mine[-1] = shared.realloc(mine[-1], 128)
                if i % 2 == 0:
                    shared.free(mine.pop(0))
            local = m.counting_pool()
            m.churn(local, 3, 10)
        except Exception as e:  # noqa: BLE001 - reported by the main thread below
            problems.append(repr(e))

    workers = [threading.Thread(target=work, args=(shared,)) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    check(not problems, f"thread errors: {problems}")
    check(shared.block_count == 4 * 150, "shared pool block count")
    ref = weakref.ref(shared)
    del shared
    all_dead([ref], "shared pool")
    balanced(m, "threads")
    return "4 threads x 300 ops on a shared pool"


def debug_mode(m) -> str:
    """Debug pools (heap, arena, counting allocator): churn with no false
    positives, then deliberate overruns and writes after free, each reported
    (at free, check or deallocation), every block released once."""
    from cymem_rs import MemoryCorruptionError, Pool

    m.reset_allocator()
    refs = []
    reported = []
    old_hook = sys.unraisablehook
    sys.unraisablehook = lambda u: reported.append(u.exc_type)
    try:
        for k in range(40):
            counting = m.counting_pool()
            for pool in (
                Pool(debug=True),
                Pool(arena=True, debug=True),
                Pool(counting.pymalloc, counting.pyfree, debug=True),
            ):
                check(pool.debug, "a debug pool")
                m.churn(pool, 4, 16)
                check(len(m.error_paths(pool)) == 6, "every refused call raised")
                m.fill(pool, 50)
                pool.check()
                try:
                    m.debug_write_after_free(pool, 24)
                    pool.check()
                    check(False, "write after free reported")
                except MemoryCorruptionError:
                    pass
                addr = m.debug_overrun(pool, 40)
                try:
                    pool.free(addr)
                    check(False, "overrun reported at free")
                except MemoryCorruptionError:
                    pass
                m.debug_overrun(pool, 8)  # found when the pool dies
                refs.append(weakref.ref(pool))
                del pool
            del counting
        collect()
    finally:
        sys.unraisablehook = old_hook
    check(reported == [MemoryCorruptionError] * 120, f"{len(reported)} of 120 reported at dealloc")
    all_dead(refs, "debug pools")
    n = balanced(m, "debug pools (counting allocator)")
    return f"{len(refs)} debug pools, 360 deliberate corruptions reported, {n} counted blocks"


def views_and_report(m) -> str:
    """Zero-copy views of pool blocks and Addresses (pinning, keeping owners
    alive), named pools in the live-pool report, statistics."""
    import cymem_rs
    from cymem_rs import Address, Pool

    refs = []
    for i in range(300):
        pool = Pool(name=f"vg-{i}", arena=bool(i % 2))
        addr = pool.alloc(16, 8)
        view = memoryview(pool.view(addr, "d", (4, 4)))
        view[1, 2] = float(i)
        try:
            pool.free(addr)
            check(False, "free of a viewed block raised BufferError")
        except BufferError:
            pass
        check(pool.stats.block_count == 1, "the viewed block stayed")
        refs.append(weakref.ref(pool))
        del pool  # the view keeps the pool alive
        check(refs[-1]() is not None, "a view keeps its pool alive")
        check(view[1, 2] == float(i), "bytes read back through the view")
        del view
    all_dead(refs, "pools kept alive only by views")
    pool = Pool(name="vg-report")
    blocks = [pool.alloc(i + 1, 8) for i in range(100)]
    view = pool.view(blocks[5], "B")
    del view
    for b in blocks:
        pool.free(b)
    names = [p.name for p in cymem_rs.live_pools()]
    check("vg-report" in names, "a named pool is in the report")
    check("vg-report" in cymem_rs.format_report(), "and in the text table")
    check(pool.stats.total_frees == 100 and pool.peak_size > 0, "counters")
    a = Address(10, 8)
    mv = memoryview(a)
    mv[0] = 7
    del a
    check(mv[0] == 7, "an Address view keeps the Address alive")
    del mv, pool
    collect()
    check(
        "vg-report" not in [p.name for p in cymem_rs.live_pools()], "dropped pools leave the report"
    )
    return "300 viewed pools (heap and arena) released after their views, report, Address views"


def lifetimes(m) -> str:
    """clear(), scopes, cleanups (raising, touching the pool, in cycles with
    their pool) and limits, on default, arena and counting pools."""
    from cymem_rs import Pool

    m.reset_allocator()
    refs = []
    ran = []
    makers = (Pool, lambda: Pool(arena=True), m.counting_pool)
    for k in range(90):
        pool = makers[k % 3]()
        keep = pool.alloc(4, 8)
        pool.limit = 1 << 20
        try:
            with pool.scope():
                for i in range(40):
                    pool.alloc(i + 1, 8)
                keep = pool.realloc(keep, 512)  # an older block: survives
                pool.add_cleanup(lambda: ran.append(1))
                pool.alloc(1 << 21, 1)  # past the limit: MemoryError
        except MemoryError:
            pass
        check(list(pool.addresses) == [keep], "only the older block is left")

        def touch(pool=pool):
            try:
                pool.alloc(1, 1)
            except RuntimeError:
                ran.append(2)
            raise ValueError("a cleanup that raises")

        pool.add_cleanup(touch)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            hook, sys.unraisablehook = sys.unraisablehook, lambda _: None
            try:
                pool.clear()
            finally:
                sys.unraisablehook = hook

        class Owner:
            def close(self):
                ran.append(3)

        owner = Owner()
        owner.pool = pool  # owner -> pool -> cleanup -> owner: a cycle
        pool.add_cleanup(owner.close)
        pool.alloc(8, 8)
        refs.append(weakref.ref(pool))
        del pool, owner, touch
    all_dead(refs, "lifetimes")
    check(ran.count(1) == 90 and ran.count(2) == 90, "scope and clear cleanups ran")
    check(ran.count(3) == 90, "cleanups in collected cycles ran")
    n = balanced(m, "lifetimes (counting allocator)")
    return f"90 pools through scopes, cleanups, clear and limits ({n} counted blocks)"


WORKLOADS = {
    f.__name__.replace("_", "-"): f
    for f in (
        pool_churn,
        custom_allocators,
        nested_exceptions,
        gc_cycles,
        addresses,
        big_pools,
        threads,
        debug_mode,
        views_and_report,
        lifetimes,
    )
}


def selftest(m, mode: str) -> None:
    """Deliberate defects, for run.sh's self-test only."""
    from cymem_rs import Pool

    if mode in ("1", "leak"):
        m.selftest_leak(SELFTEST_LEAK_BYTES)  # the address it returns is dropped
        print(f"SELFTEST: leaked {SELFTEST_LEAK_BYTES} bytes on purpose", flush=True)
    elif mode in ("invalid-read", "arena-overrun"):
        pool = Pool(arena=mode == "arena-overrun")
        m.selftest_invalid_read(pool, SELFTEST_READ_BYTES)
        print(
            f"SELFTEST: read byte {SELFTEST_READ_BYTES} of a {SELFTEST_READ_BYTES}-byte block",
            flush=True,
        )
    elif mode == "arena-use-after-free":
        m.selftest_read_after_free(Pool(arena=True), SELFTEST_READ_BYTES)
        print(f"SELFTEST: read a freed {SELFTEST_READ_BYTES}-byte arena block", flush=True)
    elif mode == "arena-leaked-pool":
        m.selftest_leak_pool(SELFTEST_LEAKED_POOL_BYTES)
        print(
            f"SELFTEST: leaked an arena pool holding a {SELFTEST_LEAKED_POOL_BYTES}-byte block",
            flush=True,
        )
    elif mode == "pool-reference":
        m.reset_allocator()
        pool = m.counting_pool()
        m.fill(pool, 10)
        m.selftest_leak_reference(pool)
        ref = weakref.ref(pool)
        del pool
        print("SELFTEST: leaked a reference to a pool with 10 blocks", flush=True)
        all_dead([ref], "SELFTEST pool-reference")
        balanced(m, "SELFTEST pool-reference")
    else:
        raise SystemExit(
            f"unknown CYMEM_VALGRIND_SELFTEST mode {mode!r} (leak, invalid-read, pool-reference,"
            " arena-overrun, arena-use-after-free, arena-leaked-pool)"
        )


def precompile() -> int:
    """Writes CHECKED_HASH .pyc files of every module imported so far into
    sys.pycache_prefix (PYTHONPYCACHEPREFIX), for the valgrind runs to load.

    Why: importlib reads a .pyc's 4-byte flags field with int.from_bytes; the
    default (timestamp) .pyc has flags 0, and CPython 3.11 builds a zero from
    bytes in a way memcheck flags as an uninitialised read (see python.supp).
    Hash-based .pyc files have non-zero flags and are validated by comparing
    bytes, so loading them is clean; without any .pyc, every run would spend
    seconds compiling the stdlib under valgrind."""
    import py_compile
    from importlib.util import cache_from_source

    if not sys.pycache_prefix:
        raise SystemExit("precompile needs PYTHONPYCACHEPREFIX")
    count = 0
    for module in list(sys.modules.values()):
        source = getattr(module, "__file__", None)
        if not source or not source.endswith(".py") or not os.path.isfile(source):
            continue
        py_compile.compile(
            source,
            cfile=cache_from_source(source),
            doraise=True,
            invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH,
        )
        count += 1
    return count


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[0] == "build":
        build(os.path.abspath(argv[1]))
        return 0
    if argv == ["list"]:
        print(" ".join(WORKLOADS))
        return 0
    precompiling = bool(argv) and argv[0] == "precompile"
    if precompiling:
        argv = ["run", *argv[1:]]
    if len(argv) < 3 or argv[0] != "run" or not set(argv[2:]) <= set(WORKLOADS):
        print(__doc__, file=sys.stderr)
        print("workloads:", " ".join(WORKLOADS), file=sys.stderr)
        return 2
    m = load(os.path.abspath(argv[1]))
    for name in argv[2:]:
        detail = WORKLOADS[name](m)
        print(f"workload {name}: ok ({detail})", flush=True)
    mode = os.environ.get("CYMEM_VALGRIND_SELFTEST", "")
    if mode not in ("", "0") and not precompiling:
        selftest(m, mode)
    collect()
    if precompiling:
        print(f"precompiled {precompile()} modules into {sys.pycache_prefix}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
