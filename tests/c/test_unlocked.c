/*
 * C tests for pools without a lock of their own (cymem_pool_new_unlocked,
 * cymem_pool_new_arena_unlocked, cymem_pool_new_with_allocator_unlocked):
 * they say so (cymem_pool_is_locked), behave as locked pools do, refuse a
 * call from inside their own custom allocator (CYMEM_ERR_BAD_ALLOCATOR, the
 * pool unchanged) and from their cleanups (CYMEM_ERR_RELEASING), and serve
 * several threads that serialise their calls with a mutex of their own.
 *
 * A failed CHECK prints file:line and the expression, and the run goes on;
 * the last line is "N passed, M failed", exit status 1 if any failed.
 */

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "cymem_rs.h"

#include "check.h"
#include "live_pools.h"

static int all_zero(const unsigned char *p, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++)
        if (p[i] != 0) return 0;
    return 1;
}

static void test_which_pools_are_locked(void)
{
    CymemPool *locked = cymem_pool_new();
    CymemPool *heap = cymem_pool_new_unlocked();
    CymemPool *arena = cymem_pool_new_arena_unlocked();
    CymemPool *custom = cymem_pool_new_with_allocator_unlocked(malloc, free);
    CymemPoolInfo info;
    CHECK(locked && heap && arena && custom);
    CHECK(cymem_pool_is_locked(locked) == 1);
    CHECK(cymem_pool_is_locked(heap) == 0);
    CHECK(cymem_pool_is_locked(arena) == 0);
    CHECK(cymem_pool_is_locked(custom) == 0);
    CHECK(cymem_pool_is_locked(NULL) == 0);
    CHECK(cymem_last_error() == CYMEM_ERR_NULL_ARGUMENT);
    /* Each is the kind of pool its name says, listed like any other. */
    CHECK(cymem_pool_set_name(heap, "unlocked heap") == CYMEM_OK);
    CHECK(cymem_pool_set_name(arena, "unlocked arena") == CYMEM_OK);
    CHECK(find_pool("unlocked heap", &info) && info.is_arena == 0);
    CHECK(find_pool("unlocked arena", &info) && info.is_arena == 1);
    CHECK(cymem_pool_new_with_allocator_unlocked(NULL, free) == NULL);
    CHECK(cymem_last_error() == CYMEM_ERR_NULL_ARGUMENT);
    CHECK(cymem_pool_new_with_allocator_unlocked(malloc, NULL) == NULL);
    CHECK(cymem_last_error() == CYMEM_ERR_NULL_ARGUMENT);
    cymem_pool_destroy(&locked);
    cymem_pool_destroy(&heap);
    cymem_pool_destroy(&arena);
    cymem_pool_destroy(&custom);
    CHECK(!locked && !heap && !arena && !custom);
    CHECK(!find_pool("unlocked heap", &info) && !find_pool("unlocked arena", &info));
}

/* The block operations and their errors, as on a locked pool. */
static void test_operations(CymemPool *(*make)(void))
{
    CymemPool *pool = make();
    CymemPoolStats stats;
    unsigned char *a, *b;
    size_t size = 0;
    int local = 0;
    CHECK(pool != NULL);
    a = (unsigned char *)cymem_pool_alloc(pool, 10, 10);
    b = (unsigned char *)cymem_pool_alloc(pool, 1, 300);
    CHECK(a && b && all_zero(a, 100) && all_zero(b, 300));
    memset(a, 0x7F, 100);
    a = (unsigned char *)cymem_pool_realloc(pool, a, 200);
    CHECK(a && a[99] == 0x7F && all_zero(a + 100, 100));
    CHECK(cymem_pool_block_size(pool, a, &size) == CYMEM_OK && size == 200);
    CHECK(cymem_pool_size(pool) == 500 && cymem_pool_block_count(pool) == 2);
    CHECK(cymem_pool_free(pool, &local) == CYMEM_ERR_UNKNOWN_POINTER);
    CHECK(cymem_pool_free(pool, b) == CYMEM_OK);
    CHECK(cymem_pool_free(pool, b) == CYMEM_ERR_UNKNOWN_POINTER);
    CHECK(cymem_pool_realloc(pool, a, 10) == NULL);
    CHECK(cymem_last_error() == CYMEM_ERR_NOT_LARGER);
    CHECK(cymem_pool_alloc(pool, (size_t)-1, 16) == NULL);
    CHECK(cymem_last_error() == CYMEM_ERR_SIZE_OVERFLOW);
    CHECK(cymem_pool_pin(pool, a) == CYMEM_OK);
    CHECK(cymem_pool_free(pool, a) == CYMEM_ERR_BLOCK_IN_USE);
    CHECK(cymem_pool_unpin(pool, a) == CYMEM_OK);
    CHECK(cymem_pool_stats(pool, &stats) == CYMEM_OK);
    CHECK(stats.size == 200 && stats.block_count == 1 && stats.total_allocs == 2);
    cymem_pool_destroy(&pool);
    CHECK(pool == NULL);
}

/* ---- re-entry from the pool's own allocator ---------------------------- */

/* The pool the allocator functions call back into (NULL: they don't), and
   what those calls got. */
static CymemPool *g_target;
static void *g_inner_block;
static size_t g_inner_count;
static CymemStatus g_inner_status;
static int g_inner_calls;

static void *reentrant_malloc(size_t n)
{
    CymemPool *target = g_target;
    if (target) {
        g_target = NULL;
        g_inner_block = cymem_pool_alloc(target, 1, 8);
        g_inner_status = cymem_last_error();
        g_inner_calls++;
    }
    return malloc(n);
}

static void reentrant_free(void *p)
{
    CymemPool *target = g_target;
    if (target) {
        g_target = NULL;
        g_inner_count = cymem_pool_block_count(target);
        g_inner_status = cymem_last_error();
        g_inner_calls++;
    }
    free(p);
}

static void test_reentry_is_refused(void)
{
    CymemPool *pool = cymem_pool_new_with_allocator_unlocked(reentrant_malloc, reentrant_free);
    CymemPoolStats stats;
    void *block;
    CHECK(pool != NULL);

    /* From malloc_fn: the inner alloc fails, the outer one succeeds, and
       the pool holds exactly the outer block. */
    g_inner_block = (void *)1;
    g_inner_status = CYMEM_OK;
    g_target = pool;
    block = cymem_pool_alloc(pool, 1, 64);
    CHECK(g_inner_calls == 1);
    CHECK(g_inner_block == NULL);
    CHECK(g_inner_status == CYMEM_ERR_BAD_ALLOCATOR);
    CHECK(block != NULL);
    CHECK(cymem_pool_block_count(pool) == 1 && cymem_pool_size(pool) == 64);

    /* From free_fn: the inner call fails, the outer free goes through.
       (Under CYMEM_RS_DEBUG=1 a freed block waits in the quarantine, and
       free_fn is not called here.) */
    g_inner_count = 99;
    g_inner_status = CYMEM_OK;
    g_target = pool;
    CHECK(cymem_pool_free(pool, block) == CYMEM_OK);
    if (!cymem_pool_is_debug(pool)) {
        CHECK(g_inner_calls == 2);
        CHECK(g_inner_count == 0);
        CHECK(g_inner_status == CYMEM_ERR_BAD_ALLOCATOR);
    }
    g_target = NULL;

    /* Nothing half done: the pool is empty, its counters agree, and it is
       usable again. */
    CHECK(cymem_pool_stats(pool, &stats) == CYMEM_OK);
    CHECK(stats.size == 0 && stats.block_count == 0);
    CHECK(stats.total_allocs == 1 && stats.total_frees == 1);
    block = cymem_pool_alloc(pool, 4, 4);
    CHECK(block != NULL && cymem_pool_block_count(pool) == 1);
    cymem_pool_destroy(&pool);
}

/* ---- cleanups ---------------------------------------------------------- */

static int g_cleanup_runs;
static CymemStatus g_cleanup_status;

static void cleanup_reaching_its_pool(void *data)
{
    CymemPool *pool = (CymemPool *)data;
    g_cleanup_runs++;
    CHECK(cymem_pool_alloc(pool, 1, 8) == NULL);
    g_cleanup_status = cymem_last_error();
    /* Reading is allowed while it releases. */
    CHECK(cymem_pool_block_count(pool) == 1);
}

static void test_cleanup_cannot_change_its_pool(void)
{
    CymemPool *pool = cymem_pool_new_unlocked();
    CHECK(cymem_pool_alloc(pool, 1, 32) != NULL);
    CHECK(cymem_pool_add_cleanup(pool, cleanup_reaching_its_pool, pool) == CYMEM_OK);
    cymem_pool_destroy(&pool);
    CHECK(pool == NULL);
    CHECK(g_cleanup_runs == 1);
    CHECK(g_cleanup_status == CYMEM_ERR_RELEASING);
}

/* ---- several threads, serialised by the caller ------------------------- */

#define THREADS 4
#define ROUNDS 20000

static pthread_mutex_t g_pool_lock = PTHREAD_MUTEX_INITIALIZER;

static void *serialised_worker(void *arg)
{
    CymemPool *pool = (CymemPool *)arg;
    int i, failures = 0;
    for (i = 0; i < ROUNDS; i++) {
        void *p;
        pthread_mutex_lock(&g_pool_lock);
        p = cymem_pool_alloc(pool, 1, 64);
        pthread_mutex_unlock(&g_pool_lock);
        if (!p) failures++;
        pthread_mutex_lock(&g_pool_lock);
        if (cymem_pool_free(pool, p) != CYMEM_OK) failures++;
        pthread_mutex_unlock(&g_pool_lock);
    }
    CHECK(failures == 0);
    return NULL;
}

static void test_threads_with_their_own_lock(void)
{
    CymemPool *pool = cymem_pool_new_unlocked();
    pthread_t threads[THREADS];
    CymemPoolStats stats;
    int i;
    for (i = 0; i < THREADS; i++)
        CHECK(pthread_create(&threads[i], NULL, serialised_worker, pool) == 0);
    for (i = 0; i < THREADS; i++) pthread_join(threads[i], NULL);
    CHECK(cymem_pool_stats(pool, &stats) == CYMEM_OK);
    CHECK(stats.block_count == 0 && stats.size == 0);
    CHECK(stats.total_allocs == THREADS * ROUNDS && stats.total_frees == THREADS * ROUNDS);
    cymem_pool_destroy(&pool);
}

int main(void)
{
    test_which_pools_are_locked();
    test_operations(cymem_pool_new_unlocked);
    test_operations(cymem_pool_new_arena_unlocked);
    test_reentry_is_refused();
    test_cleanup_cannot_change_its_pool();
    test_threads_with_their_own_lock();
    return check_summary();
}
