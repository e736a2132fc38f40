"""fork() while other threads are inside cymem_rs.

The child of `os.fork()` (or of multiprocessing's fork start method) must
make, use and drop pools and report, whatever the parent's other threads
were doing: Python threads, and threads inside the C ABI that hold no GIL
(the plain C library and the extension's own C ABI, both through ctypes, and
a C program's pthreads). A pool that another thread had locked at the moment
of fork fails every call in the child with CYMEM_ERR_FORKED, never blocks,
and is leaked, not touched, when destroyed. Each fork's child is waited for
with a deadline, so a hang fails the case.
"""

from __future__ import annotations

import os

from conftest import ROOT, run, run_python

REPEAT = int(os.environ.get("CYMEM_RS_REPEAT", "10"))
C_SHARED_LIBRARY = ROOT / "target" / "release" / "libcymem_rs.so"
CYMEM_ERR_FORKED = 10

# Loads a cymem_rs C ABI through ctypes; `forked_child_check(lib, pool)`
# asserts a pool works in the child or fails with CYMEM_ERR_FORKED.
COMMON = f"""
import ctypes, io, os, signal, sys, threading, time, traceback
import cymem_rs
from cymem_rs import cymem

REPEAT = {REPEAT}
FORKED = {CYMEM_ERR_FORKED}
P = ctypes.c_void_p
libc = ctypes.CDLL(None)
libc.malloc.restype = P
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [P]


def load(path):
    lib = ctypes.CDLL(str(path))
    for name, res, args in [
        ("cymem_pool_new", P, []),
        ("cymem_pool_new_arena", P, []),
        ("cymem_pool_new_debug", P, []),
        ("cymem_pool_new_named", P, [ctypes.c_char_p]),
        ("cymem_pool_new_with_allocator", P, [P, P]),
        ("cymem_pool_destroy", None, [ctypes.POINTER(P)]),
        ("cymem_pool_alloc", P, [P, ctypes.c_size_t, ctypes.c_size_t]),
        ("cymem_pool_realloc", P, [P, P, ctypes.c_size_t]),
        ("cymem_pool_free", ctypes.c_int, [P, P]),
        ("cymem_pool_size", ctypes.c_size_t, [P]),
        ("cymem_pool_set_name", ctypes.c_int, [P, ctypes.c_char_p]),
        ("cymem_pool_set_origin", ctypes.c_int, [P, ctypes.c_char_p, ctypes.c_uint]),
        ("cymem_pool_stats", ctypes.c_int, [P, ctypes.c_char_p]),
        ("cymem_report", ctypes.c_size_t, [ctypes.c_char_p, ctypes.c_size_t]),
        ("cymem_live_pools", ctypes.c_size_t, [P, ctypes.c_size_t]),
        ("cymem_last_error", ctypes.c_int, []),
    ]:
        f = getattr(lib, name)
        f.restype = res
        f.argtypes = args
    return lib


MALLOC = ctypes.cast(libc.malloc, P)
FREE = ctypes.cast(libc.free, P)
STATS = ctypes.create_string_buffer(64)


def new_pools(lib):
    return [
        lib.cymem_pool_new(),
        lib.cymem_pool_new_arena(),
        lib.cymem_pool_new_debug(),
        lib.cymem_pool_new_named(b"named"),
        lib.cymem_pool_new_with_allocator(MALLOC, FREE),
    ]


def use(lib, pool):
    block = lib.cymem_pool_alloc(pool, 3, 8)
    assert block, lib.cymem_last_error()
    block = lib.cymem_pool_realloc(pool, block, 64)
    assert block, lib.cymem_last_error()
    assert lib.cymem_pool_free(pool, block) == 0
    assert lib.cymem_pool_set_name(pool, b"used") == 0
    assert lib.cymem_pool_stats(pool, STATS) == 0


def destroy(lib, pool):
    lib.cymem_pool_destroy(ctypes.byref(P(pool)))


def c_worker(lib, shared, stop):
    # Each ctypes call releases the GIL: these threads are inside the C ABI
    # with no GIL when the main thread forks.
    while not stop.is_set():
        for pool in new_pools(lib):
            use(lib, pool)
            lib.cymem_pool_set_origin(pool, b"worker.c", 1)
            destroy(lib, pool)
        lib.cymem_report(None, 0)
        lib.cymem_live_pools(None, 0)
        block = lib.cymem_pool_alloc(shared, 1, 8)
        lib.cymem_pool_free(shared, block)
        lib.cymem_pool_stats(shared, STATS)


def py_worker(stop):
    pool = cymem_rs.Pool(name="py worker")
    while not stop.is_set():
        pool.free(pool.alloc(2, 8))
        cymem_rs.Pool(arena=True).alloc(1, 8)
        pool.stats
        cymem_rs.live_pools()
        cymem_rs.format_report()
        pool.name = "renamed"


def forked_child_check(lib, pool):
    block = lib.cymem_pool_alloc(pool, 1, 8)
    if block:
        assert lib.cymem_pool_free(pool, block) == 0
    else:
        assert lib.cymem_last_error() == FORKED, lib.cymem_last_error()


def python_pools_work(inherited):
    pools = [
        cymem_rs.Pool(),
        cymem_rs.Pool(arena=True),
        cymem_rs.Pool(debug=True),
        cymem_rs.Pool(cymem_rs.Default_Malloc, cymem_rs.Default_Free),
    ]
    for pool in pools + inherited:
        block = pool.alloc(3, 8)
        pool.free(pool.realloc(block, 64))
        pool.stats
        pool.name = "child"
    sink = io.StringIO()
    cymem_rs.report(file=sink)
    assert "child" in sink.getvalue()
    assert cymem_rs.live_pools()
    del pools


def wait_child(pid, deadline=20.0):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.002)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return "hung"


def in_child(work):
    try:
        work()
    except BaseException:
        traceback.print_exc()
        os._exit(1)
    os._exit(0)
"""


FORK_WITH_BUSY_THREADS = (
    COMMON
    + f"""
libs = [load({str(C_SHARED_LIBRARY)!r}), load(cymem.__file__)]
shared = {{id(lib): lib.cymem_pool_new_named(b"shared") for lib in libs}}
inherited_c = {{id(lib): new_pools(lib) for lib in libs}}
inherited_py = [
    cymem_rs.Pool(), cymem_rs.Pool(arena=True), cymem_rs.Pool(debug=True),
    cymem_rs.Pool(cymem_rs.Default_Malloc, cymem_rs.Default_Free),
]
for pool in inherited_py:
    pool.alloc(10, 10)
stop = threading.Event()
threads = [threading.Thread(target=c_worker, args=(lib, shared[id(lib)], stop))
           for lib in libs for _ in range(2)]
threads += [threading.Thread(target=py_worker, args=(stop,))]
for t in threads:
    t.start()


def child_work():
    for lib in libs:
        forked_child_check(lib, shared[id(lib)])
        for pool in inherited_c[id(lib)] + new_pools(lib):
            use(lib, pool)
            destroy(lib, pool)
        assert lib.cymem_report(None, 0) > 0
        lib.cymem_live_pools(None, 0)
        destroy(lib, shared[id(lib)])
    python_pools_work(inherited_py)


failures = []
for attempt in range(REPEAT):
    time.sleep(0.01)
    code = fork_and_wait(child_work)
    if code != 0:
        failures.append((attempt, code))
stop.set()
for t in threads:
    t.join()
print(failures)
sys.exit(1 if failures else 0)
"""
)


OS_FORK = """
def fork_and_wait(work):
    pid = os.fork()
    if pid == 0:
        in_child(work)
    return wait_child(pid)
"""

MULTIPROCESSING_FORK = """
import multiprocessing


def fork_and_wait(work):
    process = multiprocessing.get_context("fork").Process(target=in_child, args=(work,))
    process.start()
    process.join(20)
    if process.is_alive():
        process.kill()
        process.join()
        return "hung"
    return process.exitcode
"""


def test_os_fork_with_threads_busy_in_every_entry_point():
    run_python(OS_FORK + FORK_WITH_BUSY_THREADS, timeout=120).ok()


def test_multiprocessing_fork_with_threads_busy_in_every_entry_point():
    run_python(MULTIPROCESSING_FORK + FORK_WITH_BUSY_THREADS, timeout=120).ok()


LOCKED_AT_FORK_PY = (
    COMMON
    + f"""
lib = load({str(C_SHARED_LIBRARY)!r})
entered, release = threading.Event(), threading.Event()
blocking = [False]


@ctypes.CFUNCTYPE(P, ctypes.c_size_t)
def slow_malloc(size):
    if blocking[0]:
        entered.set()
        release.wait()
    return libc.malloc(size)


@ctypes.CFUNCTYPE(None, P)
def plain_free(block):
    libc.free(block)


locked = lib.cymem_pool_new_with_allocator(ctypes.cast(slow_malloc, P), ctypes.cast(plain_free, P))
lib.cymem_pool_alloc(locked, 1, 8)
other = lib.cymem_pool_new()
blocking[0] = True
holder = threading.Thread(target=lib.cymem_pool_alloc, args=(locked, 1, 16))
holder.start()
entered.wait()


def child_work():
    # The locked pool: every call fails at once with CYMEM_ERR_FORKED.
    assert not lib.cymem_pool_alloc(locked, 1, 8)
    assert lib.cymem_last_error() == FORKED
    assert lib.cymem_pool_free(locked, 8) == FORKED
    assert lib.cymem_pool_size(locked) == 0 and lib.cymem_last_error() == FORKED
    assert lib.cymem_pool_stats(locked, STATS) == FORKED
    assert lib.cymem_pool_set_name(locked, b"x") == FORKED
    # Destroying it leaks its blocks (the allocator is not called).
    destroy(lib, locked)
    # Everything else works.
    use(lib, other)
    for pool in new_pools(lib):
        use(lib, pool)
        destroy(lib, pool)
    assert lib.cymem_report(None, 0) > 0
    python_pools_work([])


pid = os.fork()
if pid == 0:
    in_child(child_work)
code = wait_child(pid)
blocking[0] = False
release.set()
holder.join()
destroy(lib, locked)
destroy(lib, other)
print("child:", code)
sys.exit(0 if code == 0 else 1)
"""
)


def test_pool_locked_at_fork_fails_with_forked_status_in_the_child():
    run_python(LOCKED_AT_FORK_PY, timeout=60).ok()


C_FORK = r"""
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "cymem_rs.h"

#ifndef CYMEM_ERR_FORKED
#define CYMEM_ERR_FORKED -1 /* older headers: the child then hangs */
#endif

#define CHECK(cond) do { if (!(cond)) { \
    fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, #cond); _exit(1); } } while (0)

static volatile int stop;
static CymemPool *shared;
static pthread_mutex_t gate = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cond = PTHREAD_COND_INITIALIZER;
static int in_malloc, released;

static void *slow_malloc(size_t n) {
    pthread_mutex_lock(&gate);
    in_malloc = 1;
    pthread_cond_broadcast(&gate_cond);
    while (!released) pthread_cond_wait(&gate_cond, &gate);
    pthread_mutex_unlock(&gate);
    return malloc(n);
}

static CymemPool *(*const makers[])(void) = {
    cymem_pool_new, cymem_pool_new_arena, cymem_pool_new_debug, cymem_pool_new_arena_debug,
};

static void use(CymemPool *pool) {
    void *p = cymem_pool_alloc(pool, 3, 8);
    CHECK(p);
    p = cymem_pool_realloc(pool, p, 64);
    CHECK(p);
    CHECK(cymem_pool_free(pool, p) == CYMEM_OK);
    CymemPoolStats stats;
    CHECK(cymem_pool_stats(pool, &stats) == CYMEM_OK);
    CHECK(cymem_pool_set_name(pool, "used") == CYMEM_OK);
}

static void *worker(void *arg) {
    (void)arg;
    char text[256];
    CymemPoolInfo infos[4];
    while (!stop) {
        for (size_t k = 0; k < sizeof makers / sizeof *makers; k++) {
            CymemPool *pool = makers[k]();
            use(pool);
            CYMEM_POOL_SET_ORIGIN_HERE(pool);
            cymem_pool_destroy(&pool);
        }
        CymemPool *custom = cymem_pool_new_with_allocator(malloc, free);
        use(custom);
        cymem_pool_destroy(&custom);
        CymemPool *named = cymem_pool_new_named("worker");
        cymem_report(text, sizeof text);
        cymem_live_pools(infos, 4);
        cymem_pool_destroy(&named);
        void *p = cymem_pool_alloc(shared, 1, 8);
        cymem_pool_free(shared, p);
    }
    return NULL;
}

static void *hold_lock(void *pool) {
    void *p = cymem_pool_alloc(pool, 1, 16);
    return p;
}

static int wait_child(pid_t pid) {
    for (int i = 0; i < 20000; i++) {
        int status;
        pid_t done = waitpid(pid, &status, WNOHANG);
        if (done == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        struct timespec pause = {0, 1000000};
        nanosleep(&pause, NULL);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return -1;
}

static void child_common(void) {
    for (size_t k = 0; k < sizeof makers / sizeof *makers; k++) {
        CymemPool *pool = makers[k]();
        use(pool);
        cymem_pool_destroy(&pool);
    }
    CymemPool *custom = cymem_pool_new_with_allocator(malloc, free);
    use(custom);
    cymem_pool_destroy(&custom);
    CHECK(cymem_report(NULL, 0) > 0);
    CHECK(cymem_live_pools(NULL, 0) > 0);
}

int main(int argc, char **argv) {
    int repeat = argc > 1 ? atoi(argv[1]) : 10;
    shared = cymem_pool_new_named("shared");
    CymemPool *inherited[4];
    for (int k = 0; k < 4; k++) {
        inherited[k] = makers[k]();
        CHECK(cymem_pool_alloc(inherited[k], 10, 10));
    }
    pthread_t threads[3];
    for (int i = 0; i < 3; i++) pthread_create(&threads[i], NULL, worker, NULL);

    /* Forks while the workers are busy in every entry point. */
    for (int attempt = 0; attempt < repeat * 10; attempt++) {
        struct timespec pause = {0, 500000};
        nanosleep(&pause, NULL);
        pid_t pid = fork();
        if (pid == 0) {
            void *p = cymem_pool_alloc(shared, 1, 8);
            CHECK(p || cymem_last_error() == CYMEM_ERR_FORKED);
            for (int k = 0; k < 4; k++) {
                use(inherited[k]);
                cymem_pool_destroy(&inherited[k]);
            }
            child_common();
            cymem_pool_destroy(&shared);
            _exit(0);
        }
        int code = wait_child(pid);
        if (code != 0) {
            fprintf(stderr, "fork %d: child ended with %d\n", attempt, code);
            return 1;
        }
    }
    stop = 1;
    for (int i = 0; i < 3; i++) pthread_join(threads[i], NULL);

    /* A pool whose lock another thread holds at the fork. */
    CymemPool *locked = cymem_pool_new_with_allocator(slow_malloc, free);
    pthread_t holder;
    pthread_create(&holder, NULL, hold_lock, locked);
    pthread_mutex_lock(&gate);
    while (!in_malloc) pthread_cond_wait(&gate_cond, &gate);
    pthread_mutex_unlock(&gate);
    pid_t pid = fork();
    if (pid == 0) {
        CHECK(cymem_pool_alloc(locked, 1, 8) == NULL);
        CHECK(cymem_last_error() == CYMEM_ERR_FORKED);
        CHECK(cymem_pool_free(locked, (void *)8) == CYMEM_ERR_FORKED);
        CHECK(cymem_pool_realloc(locked, (void *)8, 8) == NULL);
        CHECK(cymem_last_error() == CYMEM_ERR_FORKED);
        CHECK(cymem_pool_size(locked) == 0 && cymem_last_error() == CYMEM_ERR_FORKED);
        CHECK(cymem_pool_block_count(locked) == 0);
        CymemPoolStats stats;
        CHECK(cymem_pool_stats(locked, &stats) == CYMEM_ERR_FORKED);
        CHECK(cymem_pool_set_name(locked, "x") == CYMEM_ERR_FORKED);
        CHECK(cymem_pool_check(locked) == CYMEM_ERR_FORKED);
        CHECK(cymem_pool_pin(locked, (void *)8) == CYMEM_ERR_FORKED);
        CHECK(strstr(cymem_status_message(CYMEM_ERR_FORKED), "fork") != NULL);
        size_t listed = cymem_live_pools(NULL, 0);
        cymem_pool_destroy(&locked); /* leaks its blocks, touches nothing */
        CHECK(locked == NULL);
        CHECK(cymem_live_pools(NULL, 0) == listed - 1);
        CHECK(cymem_pool_destroy_checked(&inherited[0]) == CYMEM_OK);
        child_common();
        _exit(0);
    }
    int code = wait_child(pid);
    pthread_mutex_lock(&gate);
    released = 1;
    pthread_cond_broadcast(&gate_cond);
    pthread_mutex_unlock(&gate);
    pthread_join(holder, NULL);
    cymem_pool_destroy(&locked);
    if (code != 0) {
        fprintf(stderr, "locked-pool child ended with %d\n", code);
        return 1;
    }
    for (int k = 0; k < 4; k++) cymem_pool_destroy(&inherited[k]);
    cymem_pool_destroy(&shared);
    puts("ok");
    return 0;
}
"""


def test_c_program_forks_with_pthreads_busy_and_a_pool_locked(c_program):
    exe = c_program("fork_busy", C_FORK)
    outcome = run([str(exe), str(REPEAT)], timeout=90)
    assert outcome.returncode == 0, outcome.describe()
    assert outcome.stdout.strip() == "ok"
