"""Out of memory: every failure of an allocation, the library's own included,
ends in MemoryError (Python, Cython) or CYMEM_ERR_OUT_OF_MEMORY (C), never in
an abort. Afterwards the pool is consistent, frees everything, and allocates
again once memory is back.

Two ways to run out:
- `ulimit -v` (RLIMIT_AS) at several limits and block sizes, filling many
  pools or one pool until the first failure;
- `failmalloc.c`, an LD_PRELOAD shim that fails chosen allocations of the
  process: each workload is run once to count its allocations, then again
  with allocation n failing (once, and from n on until disarmed) for every n.

Pool kinds: heap, arena, debug, debug arena, custom allocator (libc
malloc/free through WrapMalloc/WrapFree, or the C ABI's allocator entry).
Front doors: Python, Cython, C. `CYMEM_RS_REPEAT` (default 10) scales the
sweep workloads.
"""

from __future__ import annotations

import os
import subprocess

import pytest
from conftest import run, run_python

HERE = os.path.dirname(os.path.abspath(__file__))
REPEAT = int(os.environ.get("CYMEM_RS_REPEAT", "10"))
# A sweep's work grows with the square of its workload.
SWEEP_TIMEOUT = 120 * max(1, REPEAT // 10) ** 2
KINDS = ["heap", "arena", "debug", "debug_arena", "custom"]
# The C door also makes pools without a lock of their own.
C_KINDS = [*KINDS, "unlocked", "unlocked_arena", "unlocked_custom"]
LIMITS_KB = [60_000, 200_000]
SIZES = [64, 4096, 1 << 20]
# (block size, ulimit -v in KiB) for one pool filled: small blocks at both
# limits (index and bookkeeping growth), bigger ones once each.
FILLS = [(64, 60_000), (64, 200_000), (4096, 60_000), (1 << 20, 200_000)]


@pytest.fixture(scope="session")
def failmalloc(tmp_path_factory) -> str:
    """The shim, compiled; its path for LD_PRELOAD."""
    out = tmp_path_factory.mktemp("failmalloc") / "failmalloc.so"
    subprocess.run(
        [
            "cc",
            "-O1",
            "-shared",
            "-fPIC",
            "-Wall",
            "-Wextra",
            "-o",
            str(out),
            os.path.join(HERE, "failmalloc.c"),
        ],
        check=True,
    )
    return str(out)


# Cython side: the inline `mem.alloc` path, and libc malloc/free wrapped as
# a custom allocator for Python pools too.
CYTHON_HELPERS = """
from libc.stdlib cimport malloc, free
from cymem_rs.cymem cimport Pool, WrapMalloc, WrapFree

def libc_allocator():
    return WrapMalloc(malloc), WrapFree(free)

def fill(Pool mem, size_t size, size_t limit):
    # mem.alloc until MemoryError (or `limit` blocks); the blocks allocated.
    cdef size_t n = 0
    try:
        while n < limit:
            mem.alloc(1, size)
            n += 1
    except MemoryError:
        pass
    return n

def work(Pool mem):
    # Every inline call once, each allowed to fail with MemoryError only.
    cdef void* a = NULL
    cdef void* b = NULL
    failures = 0
    for size in (16, 600, 70000):
        try:
            a = mem.alloc(1, size)
        except MemoryError:
            failures += 1
    try:
        b = mem.alloc(2, 40)
        b = mem.realloc(b, 300)
        mem.free(b)
    except MemoryError:
        failures += 1
    try:
        mem.free(<void*>12345)
    except KeyError:
        pass
    except MemoryError:
        failures += 1
    try:
        mem.realloc(<void*>12345, 8)
    except ValueError:
        pass
    except MemoryError:
        failures += 1
    try:
        mem.check()
    except MemoryError:
        failures += 1
    return failures
"""


@pytest.fixture(scope="session")
def helpers(cython_snippet):
    return cython_snippet("oom_helpers", CYTHON_HELPERS)


PRELUDE = """
import gc, os, sys
import cymem_rs
from cymem_rs import Pool
import oom_helpers as cy

KIND = os.environ["OOM_KIND"]

def make():
    if KIND == "heap":
        return Pool()
    if KIND == "arena":
        return Pool(arena=True)
    if KIND == "debug":
        return Pool(debug=True)
    if KIND == "debug_arena":
        return Pool(arena=True, debug=True)
    return Pool(*cy.libc_allocator())

def consistent(p):
    # The counters agree with the blocks, which can all be freed; then the
    # pool allocates again.
    blocks = p.addresses
    assert p.size == sum(blocks.values()), (p.size, blocks)
    assert p.block_count == len(blocks)
    s = p.stats
    assert s.size == p.size and s.block_count == p.block_count, s
    for addr in blocks:
        p.free(addr)
    assert p.size == 0 and p.block_count == 0
    p.free(p.alloc(1, 64))
    p.check()
"""


# --- ulimit -v ---------------------------------------------------------------

ULIMIT_PY = (
    PRELUDE
    + """
SIZE = int(os.environ["OOM_SIZE"])
FRONT = os.environ["OOM_FRONT"]
SHAPE = os.environ["OOM_SHAPE"]
pools = []
filled = kept = 0  # every global made now: a new one may need memory later
# Given back once memory has run out, so the checks below (which make ints
# and tuples) have room; the pool's own state is what they check.
slack = bytearray(4 << 20)
try:
    if SHAPE == "many":
        # Many pools with one block each (registry records, error messages).
        while True:
            p = make()
            pools.append(p)
            if FRONT == "cython":
                if cy.fill(p, SIZE, 1) == 0:
                    break
            else:
                p.alloc(1, SIZE)
    else:
        # One pool filled (its index, debug bookkeeping, arena chunks).
        pools.append(make())
        if FRONT == "cython":
            filled = cy.fill(pools[0], SIZE, 1 << 62)
        else:
            while True:
                pools[0].alloc(1, SIZE)
                filled += 1
except MemoryError:
    pass
del slack
kept = len(pools)
if SHAPE == "one":
    # Every block allocated is counted, and nothing else.
    p = pools[0]
    assert p.block_count == filled and p.size == filled * SIZE, (p.block_count, filled)
    assert p.stats.block_count == filled
else:
    # Give back half the memory, then everything must work again. (One at
    # a time: deleting a slice needs memory of its own.)
    while len(pools) > kept // 2:
        pools.pop()
    gc.collect()
    for p in pools[-50:]:
        consistent(p)
# Releasing a full pool needs no memory.
del pools, p
gc.collect()
p = make()
p.alloc(1, SIZE)
consistent(p)
del p
print("ok", kept, filled)
"""
)


@pytest.mark.parametrize(("size", "limit_kb"), FILLS)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("front", ["python", "cython"])
def test_ulimit_one_pool_filled(helpers, front, kind, size, limit_kb):
    env = {"OOM_KIND": kind, "OOM_SIZE": str(size), "OOM_FRONT": front, "OOM_SHAPE": "one"}
    out = run_python(ULIMIT_PY, path=[helpers], env=env, limit_as=limit_kb * 1024)
    out.ok()
    assert out.stdout.startswith("ok "), out.describe()


@pytest.mark.parametrize("limit_kb", LIMITS_KB[:1])
@pytest.mark.parametrize("size", [64, 4096])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("front", ["python", "cython"])
def test_ulimit_many_pools(helpers, front, kind, size, limit_kb):
    env = {"OOM_KIND": kind, "OOM_SIZE": str(size), "OOM_FRONT": front, "OOM_SHAPE": "many"}
    out = run_python(ULIMIT_PY, path=[helpers], env=env, limit_as=limit_kb * 1024)
    out.ok()
    assert out.stdout.startswith("ok "), out.describe()


def test_ulimit_issue_reproduction(helpers):
    """The reported case: Python keeps `Pool()` objects, each with
    `alloc(1, 64)`, under `ulimit -v 200000`."""
    code = """
    from cymem_rs import Pool
    keep = []
    try:
        while True:
            p = Pool()
            p.alloc(1, 64)
            keep.append(p)
    except MemoryError:
        pass
    n = len(keep)
    while len(keep) > n // 2:  # (deleting a slice would need memory)
        keep.pop()
    keep.append(Pool())
    keep[-1].alloc(1, 64)
    print("ok", n)
    """
    out = run_python(code, limit_as=200_000 * 1024)
    out.ok()
    assert out.stdout.startswith("ok "), out.describe()


C_OOM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cymem_rs.h"

#define REQUIRE(c) do { if (!(c)) { \
    fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, #c); exit(3); } } while (0)

static void *my_malloc(size_t n) { return malloc(n); }
static void my_free(void *p) { free(p); }

static CymemPool *make(const char *kind) {
    if (!strcmp(kind, "heap")) return cymem_pool_new();
    if (!strcmp(kind, "arena")) return cymem_pool_new_arena();
    if (!strcmp(kind, "debug")) return cymem_pool_new_debug();
    if (!strcmp(kind, "debug_arena")) return cymem_pool_new_arena_debug();
    if (!strcmp(kind, "unlocked")) return cymem_pool_new_unlocked();
    if (!strcmp(kind, "unlocked_arena")) return cymem_pool_new_arena_unlocked();
    if (!strcmp(kind, "unlocked_custom"))
        return cymem_pool_new_with_allocator_unlocked(my_malloc, my_free);
    return cymem_pool_new_with_allocator(my_malloc, my_free);
}

/* A failed call must say out of memory, with a message. */
static void expect_oom(void) {
    REQUIRE(cymem_last_error() == CYMEM_ERR_OUT_OF_MEMORY);
    REQUIRE(strlen(cymem_last_error_message()) > 0);
}

/* The pool's blocks (tracked here) match its counters; all can be freed. */
__attribute__((unused)) static void check_and_empty(CymemPool *pool, void **blocks, size_t *sizes, size_t n) {
    size_t total = 0;
    for (size_t i = 0; i < n; i++) total += sizes[i];
    REQUIRE(cymem_pool_size(pool) == total);
    REQUIRE(cymem_pool_block_count(pool) == n);
    CymemPoolStats stats;
    REQUIRE(cymem_pool_stats(pool, &stats) == CYMEM_OK);
    REQUIRE(stats.block_count == n && stats.size == total);
    for (size_t i = 0; i < n; i++) REQUIRE(cymem_pool_free(pool, blocks[i]) == CYMEM_OK);
    REQUIRE(cymem_pool_size(pool) == 0 && cymem_pool_block_count(pool) == 0);
    REQUIRE(cymem_pool_check(pool) == CYMEM_OK);
}
"""

C_ULIMIT = (
    C_OOM
    + r"""
/* argv: kind size shape(one|many). Fills one pool, or makes pools of one
   block each, until out of memory; then memory comes back. */
int main(int argc, char **argv) {
    REQUIRE(argc == 4);
    const char *kind = argv[1];
    size_t size = strtoul(argv[2], NULL, 10);
    int many = !strcmp(argv[3], "many");
    size_t cap = (size_t)1 << 22, n = 0;
    void **items = malloc(cap * sizeof *items); /* blocks, or pools */
    REQUIRE(items);
    CymemPool *pool = make(kind);
    REQUIRE(pool);
    for (;;) {
        REQUIRE(n < cap);
        if (many) {
            CymemPool *p = make(kind);
            if (!p) { expect_oom(); break; }
            items[n++] = p;
            if (!cymem_pool_alloc(p, 1, size)) { expect_oom(); break; }
        } else {
            void *b = cymem_pool_alloc(pool, 1, size);
            if (!b) { expect_oom(); break; }
            items[n++] = b;
        }
    }
    if (many) {
        /* Half the pools go; every pool left is consistent. */
        for (size_t i = n / 2; i < n; i++)
            REQUIRE(cymem_pool_destroy_checked((CymemPool **)&items[i]) == CYMEM_OK);
        for (size_t i = 0; i < n / 2; i++) {
            CymemPool *p = items[i];
            REQUIRE(cymem_pool_block_count(p) == 1 && cymem_pool_size(p) == size);
        }
    } else {
        REQUIRE(cymem_pool_block_count(pool) == n && cymem_pool_size(pool) == n * size);
        for (size_t i = 0; i < n; i++) REQUIRE(cymem_pool_free(pool, items[i]) == CYMEM_OK);
        REQUIRE(cymem_pool_block_count(pool) == 0 && cymem_pool_size(pool) == 0);
        /* An arena reuses its space only once it is destroyed. */
        REQUIRE(cymem_pool_destroy_checked(&pool) == CYMEM_OK);
        pool = make(kind);
        REQUIRE(pool);
    }
    void *b = cymem_pool_alloc(pool, 1, size);
    REQUIRE(b != NULL);
    REQUIRE(cymem_pool_check(pool) == CYMEM_OK);
    /* The report of this many pools may not fit in memory: then it says so. */
    char report[256];
    if (cymem_report(report, sizeof report) == 0) expect_oom();
    if (many)
        for (size_t i = 0; i < n / 2; i++)
            REQUIRE(cymem_pool_destroy_checked((CymemPool **)&items[i]) == CYMEM_OK);
    REQUIRE(cymem_report(report, sizeof report) > 0);
    REQUIRE(cymem_pool_destroy_checked(&pool) == CYMEM_OK);
    printf("ok %zu\n", n);
    return 0;
}
"""
)


@pytest.mark.parametrize(
    ("shape", "size"), [("one", size) for size in SIZES] + [("many", 64), ("many", 4096)]
)
@pytest.mark.parametrize("kind", C_KINDS)
def test_ulimit_c(c_program, kind, size, shape):
    exe = c_program("oom_ulimit", C_ULIMIT)
    for limit_kb in LIMITS_KB:
        out = run([str(exe), kind, str(size), shape], limit_as=limit_kb * 1024)
        out.ok()
        assert out.stdout.startswith("ok "), out.describe()


# --- failmalloc sweeps -------------------------------------------------------

SWEEP_PY = (
    PRELUDE
    + """
import ctypes
fm = ctypes.CDLL(None)
fm.failmalloc_arm.argtypes = [ctypes.c_long, ctypes.c_long]
fm.failmalloc_disarm.restype = ctypes.c_long
fm.failmalloc_failed.restype = ctypes.c_long
FRONT = os.environ["OOM_FRONT"]
ROUNDS = int(os.environ["OOM_ROUNDS"])

def attempt(f, *args):
    try:
        return f(*args)
    except MemoryError:
        return None

def python_work(p):
    addrs = [attempt(p.alloc, 1, size) for size in (16, 600, 70000)]
    a = attempt(p.alloc, 2, 40)
    if a is not None:
        attempt(p.realloc, a, 300)
    for bad in (p.free, lambda a: p.realloc(a, 8)):
        try:
            bad(12345)
        except (KeyError, ValueError, MemoryError):
            pass
    if addrs[0] is not None:
        v = attempt(p.view, addrs[0], "B")
        del v
        attempt(p.free, addrs[0])
    attempt(setattr, p, "name", "swept")
    attempt(lambda: p.stats)
    attempt(lambda: p.addresses)
    attempt(repr, p)
    attempt(p.check)

def workload():
    pools = []
    for _ in range(ROUNDS):
        p = attempt(make)
        if p is None:
            continue
        pools.append(p)
        if FRONT == "cython":
            cy.work(p)
        else:
            python_work(p)
    attempt(cymem_rs.live_pools)
    attempt(cymem_rs.format_report)
    attempt(cymem_rs.peak)
    attempt(lambda: cymem_rs.format_report(peak=True))
    attempt(lambda: repr(cymem_rs.trace()))
    return pools

def disarm():
    while True:
        try:
            return fm.failmalloc_disarm()
        except MemoryError:
            pass

def one_run(first, count):
    fm.failmalloc_arm(first, count)
    try:
        pools = workload()
    except MemoryError:
        pools = []
    total = disarm()
    failed = fm.failmalloc_failed()
    for p in pools:
        consistent(p)
    del pools
    gc.collect()
    return total, failed

workload()  # warm-up: lazy per-thread and per-module set-up
total, _ = one_run(0, 0)
runs = failures = 0
for first in range(1, total + 1):
    for count in (1, 1 << 40):
        print(first, count, flush=True, file=sys.stderr)
        _, failed = one_run(first, count)
        runs += 1
        failures += failed > 0
print("ok", total, runs, failures)
"""
)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("front", ["python", "cython"])
def test_failmalloc_sweep_python(helpers, failmalloc, front, kind):
    env = {
        "OOM_KIND": kind,
        "OOM_FRONT": front,
        "OOM_ROUNDS": str(max(1, REPEAT // 5)),
        "LD_PRELOAD": failmalloc,
    }
    out = run_python(SWEEP_PY, path=[helpers], env=env, timeout=SWEEP_TIMEOUT)
    out.ok()
    words = out.stdout.split()
    assert words[0] == "ok", out.describe()
    total, runs, failures = map(int, words[1:])
    assert total > 10 and runs == 2 * total and failures > runs // 2, out.stdout


C_SWEEP = (
    C_OOM
    + r"""
typedef void (*arm_fn)(long, long);
typedef long (*count_fn)(void);
static arm_fn arm;
static count_fn disarm, failed;

#define MAXB 64

/* Every entry point once; a failure must be out of memory. */
static void workload(const char *kind, int rounds) {
    for (int r = 0; r < rounds; r++) {
        CymemPool *pool = make(kind);
        if (!pool) { expect_oom(); continue; }
        void *blocks[MAXB];
        size_t sizes[MAXB], n = 0;
        static const size_t want[] = {16, 600, 70000, 0, 100};
        for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
            void *b = cymem_pool_alloc(pool, 1, want[i]);
            if (b) { blocks[n] = b; sizes[n++] = want[i]; } else expect_oom();
        }
        if (n > 0) {
            void *g = cymem_pool_realloc(pool, blocks[0], sizes[0] + 5000);
            if (g) { blocks[0] = g; sizes[0] += 5000; } else expect_oom();
            CymemStatus s = cymem_pool_pin(pool, blocks[0]);
            if (s == CYMEM_OK) REQUIRE(cymem_pool_unpin(pool, blocks[0]) == CYMEM_OK);
            else expect_oom();
        }
        if (n > 1) {
            REQUIRE(cymem_pool_free(pool, blocks[n - 1]) == CYMEM_OK);
            n--;
        }
        CymemStatus s = cymem_pool_free(pool, (void *)12345);
        REQUIRE(s == CYMEM_ERR_UNKNOWN_POINTER || s == CYMEM_ERR_OUT_OF_MEMORY);
        REQUIRE(cymem_pool_realloc(pool, (void *)12345, 8) == NULL);
        s = cymem_last_error();
        REQUIRE(s == CYMEM_ERR_UNKNOWN_POINTER || s == CYMEM_ERR_OUT_OF_MEMORY);
        s = cymem_pool_set_name(pool, "swept pool");
        REQUIRE(s == CYMEM_OK || s == CYMEM_ERR_OUT_OF_MEMORY);
        s = cymem_pool_set_origin(pool, __FILE__, __LINE__);
        REQUIRE(s == CYMEM_OK || s == CYMEM_ERR_OUT_OF_MEMORY);
        char name[8];
        cymem_pool_name(pool, name, sizeof name);
        char text[300];
        if (cymem_report(text, sizeof text) == 0) expect_oom();
        if (cymem_peak_report(text, sizeof text) == 0) expect_oom();
        cymem_reset_peak();
        CymemPoolInfo infos[4];
        cymem_live_pools(infos, 4);
        s = cymem_pool_check(pool);
        REQUIRE(s == CYMEM_OK);
        check_and_empty(pool, blocks, sizes, n);
        REQUIRE(cymem_pool_destroy_checked(&pool) == CYMEM_OK);
    }
}

int main(int argc, char **argv) {
    REQUIRE(argc == 3);
    arm = (arm_fn)(void (*)(void))dlsym(RTLD_DEFAULT, "failmalloc_arm");
    disarm = (count_fn)(void (*)(void))dlsym(RTLD_DEFAULT, "failmalloc_disarm");
    failed = (count_fn)(void (*)(void))dlsym(RTLD_DEFAULT, "failmalloc_failed");
    REQUIRE(arm && disarm && failed);
    const char *kind = argv[1];
    int rounds = atoi(argv[2]);
    workload(kind, 1); /* warm-up: per-thread set-up */
    arm(0, 0);
    workload(kind, rounds);
    long total = disarm();
    long runs = 0, failures = 0;
    for (long first = 1; first <= total; first++) {
        for (int sticky = 0; sticky < 2; sticky++) {
            arm(first, sticky ? 1L << 40 : 1);
            workload(kind, rounds);
            disarm();
            runs++;
            failures += failed() > 0;
        }
    }
    printf("ok %ld %ld %ld\n", total, runs, failures);
    return 0;
}
"""
)


@pytest.mark.parametrize("kind", C_KINDS)
def test_failmalloc_sweep_c(c_program, failmalloc, kind):
    exe = c_program("oom_sweep", C_SWEEP)
    rounds = max(1, REPEAT // 5)
    out = run([str(exe), kind, str(rounds)], env={"LD_PRELOAD": failmalloc}, timeout=SWEEP_TIMEOUT)
    out.ok()
    words = out.stdout.split()
    assert words[0] == "ok", out.describe()
    total, runs, failures = map(int, words[1:])
    assert total > 5 and runs == 2 * total and failures == runs, out.stdout
