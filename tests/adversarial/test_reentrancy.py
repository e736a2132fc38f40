"""Python code that runs inside a pool call and calls back into the pool.

Every argument Python converts (`__index__`, `__bool__`) and every callback
the library makes (custom allocator functions, the garbage collector started
by an allocation, `__del__` of released objects, warnings) may re-enter the
same pool. Each case runs in its own process under glibc's `MALLOC_CHECK_=3`
(and, where the blocks come from PyMem, `PYTHONMALLOC=malloc_debug`), so
heap damage aborts that case instead of passing silently; each asserts the
clean exception or the correct result.
"""

from __future__ import annotations

import pytest
from conftest import run, run_python

CHECKED_HEAP = {"MALLOC_CHECK_": "3", "MALLOC_PERTURB_": "165"}
DEBUG_PYMEM = {**CHECKED_HEAP, "PYTHONMALLOC": "malloc_debug"}


def run_checked(code: str, *, env=CHECKED_HEAP, path=()) -> str:
    """Runs `code`; it must exit 0 and print `ok` last. Returns stdout."""
    outcome = run_python(code, env=env, path=path, timeout=30).ok()
    assert outcome.stdout.strip().splitlines()[-1:] == ["ok"], outcome.describe()
    return outcome.stdout


# ---------------------------------------------------------------- views

# `__index__` of a shape dimension frees the block and allocates smaller
# ones until one lands at the same address (glibc hands the space back at
# once). The view must be checked against the block as it is after the
# conversion: ValueError (doesn't fit) if the address was reused, KeyError
# if it is gone, never a 2000-byte view over a 1500-byte block.
SHRINK_UNDER_VIEW = """
import cymem_rs
pool = cymem_rs.Pool()
addr = pool.alloc(2000, 1)
reused = False

class Evil:
    def __index__(self):
        global reused
        pool.free(addr)
        spare = []
        for _ in range(64):
            b = pool.alloc(1500, 1)
            if b == addr:
                reused = True
                break
            spare.append(b)
        for b in spare:
            pool.free(b)
        return 2000

try:
    v = pool.view(addr, "B", SHAPE)
except (ValueError, KeyError) as e:
    expected = ValueError if reused else KeyError
    assert type(e) is expected, (reused, repr(e))
    print("refused", type(e).__name__, "reused" if reused else "moved")
else:
    size = pool.addresses.get(addr)
    memoryview(v)[:] = b"x" * v.nbytes
    raise AssertionError(f"view of {v.nbytes} bytes over a block of {size}")
print("ok")
"""


@pytest.mark.parametrize(
    "shape", ["(Evil(),)", "[Evil()]", "Evil()", "(1, Evil())"], ids=["tuple", "list", "int", "2d"]
)
def test_view_shape_index_that_shrinks_the_block_is_refused(shape):
    out = run_checked(SHRINK_UNDER_VIEW.replace("SHAPE", shape))
    print(out)


def test_view_shape_index_that_frees_the_block_is_a_key_error():
    run_checked(
        """
        import cymem_rs
        pool = cymem_rs.Pool()
        addr = pool.alloc(64, 1)
        class Evil:
            def __index__(self):
                pool.free(addr)
                return 8
        try:
            pool.view(addr, "B", (Evil(),))
        except KeyError:
            pass
        else:
            raise AssertionError("a view of a freed block")
        assert pool.block_count == 0
        print("ok")
        """,
        env=DEBUG_PYMEM,
    )


def test_view_shape_index_that_views_the_same_block_pins_it_twice():
    # A nested view of the same block inside the conversion: both pins count,
    # and the block is freeable once both views are gone.
    run_checked(
        """
        import cymem_rs
        pool = cymem_rs.Pool()
        addr = pool.alloc(64, 1)
        inner = []
        class Evil:
            def __index__(self):
                inner.append(pool.view(addr, "B"))
                return 64
        outer = pool.view(addr, "B", (Evil(),))
        for v in (outer, inner[0]):
            memoryview(v)[:] = b"y" * 64
        del v
        try:
            pool.free(addr)
        except BufferError:
            pass
        else:
            raise AssertionError("freed under live views")
        del outer, inner[:]
        pool.free(addr)
        print("ok")
        """,
        env=DEBUG_PYMEM,
    )


def test_address_view_shape_index_dropping_the_address_keeps_it_alive():
    run_checked(
        """
        import cymem_rs
        a = cymem_rs.Address(100, 1)
        class Evil:
            def __index__(self):
                global a
                a = None  # the last reference outside the call
                return 100
        v = cymem_rs.Address(1, 1)  # unrelated
        v = a.view("B", (Evil(),))
        assert a is None and v.nbytes == 100
        memoryview(v)[:] = b"z" * 100
        assert bytes(memoryview(v)) == b"z" * 100
        del v
        print("ok")
        """,
        env=DEBUG_PYMEM,
    )


# ------------------------------------------------- alloc / free / realloc args


def test_free_addr_index_that_frees_the_same_block_is_a_key_error():
    run_checked(
        """
        import cymem_rs
        pool = cymem_rs.Pool()
        addr = pool.alloc(64, 1)
        class Evil:
            def __index__(self):
                pool.free(addr)
                return addr
        try:
            pool.free(Evil())
        except KeyError:
            pass
        else:
            raise AssertionError("freed twice")
        assert pool.block_count == 0 and pool.size == 0
        print("ok")
        """,
        env=DEBUG_PYMEM,
    )


def test_realloc_size_index_that_frees_the_block_is_a_value_error():
    run_checked(
        """
        import cymem_rs
        pool = cymem_rs.Pool()
        addr = pool.alloc(64, 1)
        class Evil:
            def __index__(self):
                pool.free(addr)
                return 128
        try:
            pool.realloc(addr, Evil())
        except ValueError:
            pass
        else:
            raise AssertionError("realloc of a freed block")
        assert pool.block_count == 0
        print("ok")
        """,
        env=DEBUG_PYMEM,
    )


def test_realloc_size_index_that_grows_the_block_is_checked_afresh():
    # The block is already 256 bytes when realloc looks: 128 is not larger.
    run_checked(
        """
        import cymem_rs
        pool = cymem_rs.Pool()
        addr = pool.alloc(64, 1)
        moved = []
        class Evil:
            def __index__(self):
                moved.append(pool.realloc(addr, 256))
                return 128
        try:
            pool.realloc(addr, Evil())
        except ValueError:
            pass
        else:
            raise AssertionError("realloc used a stale block")
        assert pool.addresses == {moved[0]: 256} or moved[0] == addr
        print("ok")
        """,
        env=DEBUG_PYMEM,
    )


def test_alloc_arguments_index_that_empties_the_pool():
    run_checked(
        """
        import cymem_rs
        pool = cymem_rs.Pool(arena=True)
        blocks = [pool.alloc(1, 32) for _ in range(100)]
        class Evil:
            def __index__(self):
                for b in blocks:
                    pool.free(b)
                blocks.clear()
                return 16
        p = pool.alloc(Evil(), Evil())
        assert pool.addresses == {p: 256} and pool.size == 256
        print("ok")
        """,
    )


def test_address_arguments_index_that_makes_addresses():
    run_checked(
        """
        import cymem_rs
        made = []
        class Evil:
            def __index__(self):
                made.append(cymem_rs.Address(10, 10))
                return 50
        a = cymem_rs.Address(Evil(), 2)
        assert a.size == 100
        memoryview(a)[:] = b"a" * 100
        del made[:], a
        print("ok")
        """,
        env=DEBUG_PYMEM,
    )


def test_pool_flag_bool_that_raises_propagates():
    run_checked(
        """
        import cymem_rs
        class Evil:
            def __bool__(self):
                raise ZeroDivisionError("no truth")
        for flag in ("arena", "debug"):
            try:
                cymem_rs.Pool(**{flag: Evil()})
            except ZeroDivisionError:
                pass
            else:
                raise AssertionError(flag)
        print("ok")
        """,
    )


# --------------------------------------------- the garbage collector in a call


def test_gc_during_first_own_pyref_reentering_own_pyref():
    # The first `own_pyref` creates the refs list: an allocation, so (at
    # threshold 1) a collection whose callback calls `own_pyref` on the same
    # pool. Which allocation starts the collection depends on the count, so
    # the case runs with 0 to 3 objects allocated beforehand.
    run_checked(
        """
        import gc, cymem_rs
        class C:
            pass
        target = None
        def reenter(phase, info):
            if phase == "start" and target is not None:
                target.own_pyref("from gc")
        gc.callbacks.append(reenter)
        lists = [[] for _ in range(200)]  # drain the free list of lists
        gc.set_threshold(1)
        for before in range(4):
            pool = cymem_rs.Pool()
            gc.collect()
            if before > 0:
                k1 = C()
            if before > 1:
                k2 = C()
            if before > 2:
                k3 = C()
            target = pool
            pool.own_pyref("first")
            target = None
            assert "first" in pool.refs, pool.refs
        print("ok")
        """,
    )


def test_gc_callbacks_reentering_every_entry_point():
    # With threshold 1 object allocations inside calls start collections,
    # and gc.callbacks run Python code there: they hammer the same pool
    # through every method.
    run_checked(
        """
        import gc, cymem_rs
        pool = cymem_rs.Pool()
        blocks = [pool.alloc(1, 64) for _ in range(8)]
        calls = 0
        def hammer(phase, info):
            global calls
            if phase != "start":
                return
            calls += 1
            pool.own_pyref(calls)
            a = pool.alloc(1, 16)
            pool.free(a)
            for b in list(blocks):
                try:
                    pool.free(b)
                    blocks.remove(b)
                except (BufferError, KeyError):
                    pass
            pool.addresses, pool.size, pool.block_count, repr(pool), pool.refs
        pool.own_pyref("first")
        gc.callbacks.append(hammer)
        gc.set_threshold(1)
        try:
            keep = pool.alloc(1, 128)
            view = pool.view(keep, "B", (128,))
            addrs = pool.addresses
            pool.realloc(pool.alloc(1, 8), 4096)
            other = cymem_rs.Pool(arena=True)
            other.own_pyref(pool)
        finally:
            gc.set_threshold(700)
            gc.callbacks.remove(hammer)
        assert calls > 0
        memoryview(view)[:] = b"v" * 128
        assert keep in pool.addresses
        print("ok")
        """,
        env=DEBUG_PYMEM,
    )


# ------------------------------------------------------- a pool being released

DEATH = """
import gc, sys, weakref, cymem_rs
ran = []
class Reenter:
    def __del__(self):
        ran.append(1)
        p = WEAK()
        if p is not None:
            p.alloc(1, 8)
            raise AssertionError("reached a dying pool")
"""


def test_del_of_a_ref_calling_the_released_pool_by_name():
    out = run_python(
        """
        import cymem_rs
        class Reenter:
            def __del__(self):
                print("del ran")
                pool.alloc(1, 8)   # `pool` is gone: NameError, unraisable
        pool = cymem_rs.Pool()
        pool.alloc(4, 8)
        pool.own_pyref(Reenter())
        del pool
        print("ok")
        """,
        env=CHECKED_HEAP,
    )
    out.ok()
    assert "del ran" in out.stdout and "NameError" in out.stderr, out.describe()


@pytest.mark.parametrize("subclass", [False, True], ids=["pool", "subclass"])
def test_del_of_a_ref_reaching_the_released_pool_by_weakref(subclass):
    run_checked(
        DEATH
        + f"""
cls = type("P", (cymem_rs.Pool,), {{}}) if {subclass} else cymem_rs.Pool
pool = cls(debug=True)
pool.alloc(4, 8)
WEAK = weakref.ref(pool)
pool.own_pyref(Reenter())
if {subclass}:
    pool.extra = Reenter()  # released from the instance dict
del pool
assert ran, "no __del__ ran"
print("ok")
""",
    )


def test_del_of_a_ref_in_a_cycle_allocates_while_the_pool_is_alive():
    run_checked(
        """
        import gc, cymem_rs
        got = []
        class Holder:
            def __del__(self):
                p = self.pool.alloc(2, 8)
                got.append(p)
                self.pool.free(p)
        pool = cymem_rs.Pool()
        h = Holder()
        h.pool = pool
        pool.own_pyref(h)
        view = pool.view(pool.alloc(1, 8))
        pool.own_pyref(view)
        del pool, h, view
        gc.collect()
        assert got, "__del__ did not run"
        print("ok")
        """,
        env=DEBUG_PYMEM,
    )


# ---------------------------------------- custom allocators and Cython paths

ALLOCATORS = r"""
# cython: language_level=3
from cymem_rs.cymem cimport Pool, WrapMalloc, WrapFree
from libc.stdlib cimport malloc, free as c_free
from libc.stdint cimport uintptr_t

cdef object on_malloc = None
cdef object on_free = None
seen = []

cdef void call(object hook) noexcept:
    try:
        hook()
    except Exception as e:
        seen.append(type(e).__name__)
    else:
        seen.append("returned")

cdef void* hook_malloc(size_t n) noexcept with gil:
    global on_malloc
    hook, on_malloc = on_malloc, None
    if hook is not None:
        call(hook)
    return malloc(n)

cdef void hook_free(void* p) noexcept with gil:
    global on_free
    hook, on_free = on_free, None
    if hook is not None:
        call(hook)
    c_free(p)

def make_pool():
    return Pool(WrapMalloc(hook_malloc), WrapFree(hook_free))

def set_hooks(malloc_hook=None, free_hook=None):
    global on_malloc, on_free
    on_malloc, on_free = malloc_hook, free_hook

# The inline C paths, for hooks that re-enter from Cython.
def c_alloc(Pool mem, size_t n):
    return <uintptr_t>mem.alloc(1, n)

def c_free_addr(Pool mem, size_t addr):
    mem.free(<void*><uintptr_t>addr)

def c_realloc(Pool mem, size_t addr, size_t n):
    return <uintptr_t>mem.realloc(<void*><uintptr_t>addr, n)

def c_size(Pool mem):
    return mem.size

def c_zero_alloc(Pool mem):
    return <uintptr_t>mem.alloc(0, 8)

# Cython passes `self.mem` to the inline methods as a borrowed reference: a
# hook that drops the holder's reference must not free the pool mid-call.
cdef class Holder:
    cdef public Pool mem

def holder_alloc(Holder h, size_t number):
    return <uintptr_t>h.mem.alloc(number, 8)

def holder_free(Holder h, size_t addr):
    h.mem.free(<void*><uintptr_t>addr)

def holder_realloc(Holder h, size_t addr, size_t n):
    return <uintptr_t>h.mem.realloc(<void*><uintptr_t>addr, n)
"""

ALLOCATOR_CASES = {
    # hook set, operation, what the hook does
    "alloc_reenters_alloc": ("malloc", "pool.alloc(1, 64)", "pool.alloc(1, 8)"),
    "alloc_reenters_free": ("malloc", "pool.alloc(1, 64)", "pool.free(first)"),
    "realloc_reenters_free_of_the_block": (
        "malloc",
        "pool.realloc(first, 4096)",
        "pool.free(first)",
    ),
    "realloc_reenters_realloc": (
        "malloc",
        "pool.realloc(first, 4096)",
        "pool.realloc(first, 8192)",
    ),
    "free_reenters_free": ("free", "pool.free(first)", "pool.free(second)"),
    "free_reenters_view": ("free", "pool.free(first)", "pool.view(second)"),
    "alloc_reenters_cython_alloc": ("malloc", "pool.alloc(1, 64)", "m.c_alloc(pool, 8)"),
    "realloc_reenters_cython_free": (
        "malloc",
        "m.c_realloc(pool, first, 4096)",
        "m.c_free_addr(pool, first)",
    ),
    "cython_alloc_reenters_size": ("malloc", "m.c_alloc(pool, 64)", "pool.size"),
    "cython_free_reenters_cython_size": ("free", "m.c_free_addr(pool, first)", "m.c_size(pool)"),
}


@pytest.fixture(scope="module")
def allocators(cython_snippet):
    return cython_snippet("reentrant_allocators", ALLOCATORS)


@pytest.mark.parametrize("case", sorted(ALLOCATOR_CASES))
def test_custom_allocator_reentering_its_pool_gets_a_clean_error(case, allocators):
    # The pool is inside an allocator call: a call back into it must be
    # refused (RuntimeError) rather than run on a pool in mid-update, and the
    # outer call must complete with the pool consistent.
    hook, operation, reentry = ALLOCATOR_CASES[case]
    run_checked(
        f"""
        import reentrant_allocators as m
        pool = m.make_pool()
        first = pool.alloc(1, 32)
        second = pool.alloc(1, 32)
        m.set_hooks(**{{"{hook}_hook": lambda: {reentry}}})
        result = {operation}
        m.set_hooks()
        assert m.seen == ["RuntimeError"], m.seen
        blocks = pool.addresses
        assert pool.size == sum(blocks.values()) and pool.block_count == len(blocks)
        for b in list(blocks):
            pool.free(b)
        assert pool.block_count == 0 and pool.size == 0
        pool.alloc(1, 8)  # usable after the refusal
        print("ok")
        """,
        path=[allocators],
    )


def test_zero_alloc_warning_hook_reentering_the_pool(allocators):
    # WARN_ZERO_ALLOC runs Python (a warnings hook) before the inline alloc.
    run_checked(
        """
        import warnings, cymem_rs, cymem_rs.cymem
        import reentrant_allocators as m
        pool = cymem_rs.Pool()
        blocks = [pool.alloc(1, 8) for _ in range(4)]
        def showwarning(*args, **kwargs):
            for b in blocks:
                pool.free(b)
            blocks[:] = [pool.alloc(3, 8)]
        warnings.showwarning = showwarning
        warnings.simplefilter("always")
        cymem_rs.cymem.WARN_ZERO_ALLOC = True
        p = m.c_zero_alloc(pool)
        q = pool.alloc(0, 8)
        assert pool.addresses == {blocks[0]: 24, p: 0, q: 0}, pool.addresses
        print("ok")
        """,
        path=[allocators],
        env=DEBUG_PYMEM,
    )


def test_buffer_exported_from_a_view_survives_reentrant_frees(allocators):
    # A memoryview taken from a view pins the block for Cython's inline free
    # too; after everything is released the block can go.
    run_checked(
        """
        import cymem_rs
        import reentrant_allocators as m
        pool = cymem_rs.Pool()
        addr = m.c_alloc(pool, 64)
        mv = memoryview(pool.view(addr, "q"))
        for attempt in (lambda: m.c_free_addr(pool, addr), lambda: pool.free(addr),
                        lambda: m.c_realloc(pool, addr, 128)):
            try:
                attempt()
            except BufferError:
                pass
            else:
                raise AssertionError("block released under an exported buffer")
        mv[:] = memoryview(bytes(range(64))).cast("q")
        mv.release()
        m.c_free_addr(pool, addr)
        print("ok")
        """,
        path=[allocators],
        env=DEBUG_PYMEM,
    )


# ------------------------------------------------------------------ the C ABI

REENTRANT_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include "cymem_rs.h"

/* The pool a hook calls back into (once), and what that call got. */
static CymemPool *target;
static int inner_status = -1;

static void reenter(void) {
    CymemPool *p = target;
    target = NULL;
    if (p == NULL) return;
    void *b = cymem_pool_alloc(p, 1, 8);
    inner_status = b ? 0 : cymem_last_error();
    /* Queries are refused too (0 and the error recorded). */
    if (cymem_pool_size(p) != 0 || cymem_last_error() != CYMEM_ERR_BAD_ALLOCATOR)
        inner_status = -2;
}

static void *hook_malloc(size_t n) { reenter(); return malloc(n); }
static void hook_free(void *p) { reenter(); free(p); }

static int expect_refused(const char *what) {
    if (inner_status != CYMEM_ERR_BAD_ALLOCATOR) {
        printf("%s: inner call got %d\n", what, inner_status);
        return 1;
    }
    inner_status = -1;
    return 0;
}

int main(void) {
    CymemPool *pool = cymem_pool_new_with_allocator(hook_malloc, hook_free);
    target = pool;
    void *a = cymem_pool_alloc(pool, 1, 64);
    if (a == NULL || expect_refused("alloc")) return 2;
    target = pool;
    a = cymem_pool_realloc(pool, a, 4096);
    if (a == NULL || expect_refused("realloc")) return 3;
    target = pool;
    if (cymem_pool_free(pool, a) != CYMEM_OK || expect_refused("free")) return 4;
    if (cymem_pool_block_count(pool) != 0 || cymem_pool_size(pool) != 0) return 5;
    cymem_pool_destroy(&pool);
    puts("ok");
    return 0;
}
"""


def test_c_allocator_reentering_its_locked_pool_is_refused_not_deadlocked(c_program):
    # A C handle has its own lock: re-entering it from its allocator used to
    # wait for itself forever.
    exe = c_program("reentrant_c_allocator", REENTRANT_C)
    outcome = run([str(exe)], timeout=30, env=CHECKED_HEAP).ok()
    assert outcome.stdout.strip() == "ok", outcome.describe()


@pytest.mark.parametrize(
    "hook, operation",
    [
        ("malloc", "m.holder_alloc(h, 8)"),
        ("malloc", "m.holder_realloc(h, first, 4096)"),
        ("free", "m.holder_free(h, first)"),
        ("warning", "m.holder_alloc(h, 0)"),
    ],
    ids=["alloc", "realloc", "free", "zero_alloc_warning"],
)
def test_hook_dropping_the_last_reference_to_the_pool_mid_call(hook, operation, allocators):
    # The pool must live until the inline call returns; the hook's drop
    # takes effect after it.
    run_checked(
        f"""
        import gc, warnings, weakref, cymem_rs.cymem
        import reentrant_allocators as m
        h = m.Holder()
        h.mem = m.make_pool()
        first = h.mem.alloc(1, 32)
        gone = weakref.ref(h.mem)
        def drop_pool():
            h.mem = None
            gc.collect()
        if "{hook}" == "warning":
            cymem_rs.cymem.WARN_ZERO_ALLOC = True
            warnings.simplefilter("always")
            warnings.showwarning = lambda *a, **k: drop_pool()
        else:
            m.set_hooks(**{{"{hook}_hook": drop_pool}})
        {operation}
        m.set_hooks()
        assert gone() is None and h.mem is None
        print("ok")
        """,
        path=[allocators],
        env=DEBUG_PYMEM,
    )


def test_another_thread_calling_while_an_allocator_hook_lets_it_run(allocators):
    # The hook sleeps, so the interpreter lets another thread run, and that
    # thread frees the very block being moved. It must be refused while the
    # call is in progress (RuntimeError), and find the block moved after.
    run_checked(
        """
        import threading, time
        import reentrant_allocators as m
        pool = m.make_pool()
        first = pool.alloc(1, 32)
        started, results = threading.Event(), []
        def other():
            started.wait()
            for _ in range(200):
                try:
                    pool.free(first)
                    results.append("freed")
                except RuntimeError:
                    results.append("refused")
                except KeyError:
                    results.append("moved")
                time.sleep(0.0005)
        t = threading.Thread(target=other)
        t.start()
        def pause():
            started.set()
            time.sleep(0.05)
        m.set_hooks(malloc_hook=pause)
        moved = pool.realloc(first, 4096)
        t.join()
        assert "freed" not in results and "refused" in results, set(results)
        assert pool.addresses == {moved: 4096}
        print("ok")
        """,
        path=[allocators],
        env=DEBUG_PYMEM,
    )


def test_view_released_inside_an_allocator_hook_keeps_its_block_pinned(allocators):
    # The view's unpin arrives while the pool is in mid-call: it is refused,
    # so the block stays pinned (never freed under a consumer) until the pool
    # dies, which releases it with everything else.
    run_checked(
        """
        import reentrant_allocators as m
        pool = m.make_pool()
        first = pool.alloc(1, 32)
        views = [pool.view(first)]
        m.set_hooks(malloc_hook=views.clear)
        pool.alloc(1, 64)
        m.set_hooks()
        assert m.seen == ["returned"] and not views, (m.seen, views)
        try:
            pool.free(first)
        except BufferError:
            pass
        else:
            raise AssertionError("the refused unpin was lost the other way")
        memoryview(pool.view(first))[:] = b"p" * 32  # still a live block
        del pool
        print("ok")
        """,
        path=[allocators],
        env=DEBUG_PYMEM,
    )
