/*
 * C tests for lifetimes shorter than the pool's: cymem_pool_clear, scopes
 * (cymem_pool_mark / cymem_pool_release_to), cleanup callbacks
 * (cymem_pool_add_cleanup) and limits (cymem_pool_set_limit /
 * cymem_pool_limit), in heap, arena, debug and custom-allocator pools.
 *
 * A failed CHECK prints file:line and the expression, and the run goes on;
 * the last line is "N passed, M failed", exit status 1 if any failed.
 */

#include <stdlib.h>
#include <string.h>

#include "cymem_rs.h"

#include "check.h"

static int contains(const char *haystack, const char *needle)
{
    return haystack != NULL && strstr(haystack, needle) != NULL;
}

static CymemPoolStats stats_of(const CymemPool *pool)
{
    CymemPoolStats stats;
    memset(&stats, 0, sizeof stats);
    CHECK(cymem_pool_stats(pool, &stats) == CYMEM_OK);
    return stats;
}

static void test_clear(CymemPool *pool)
{
    void *blocks[4];
    int i;
    CymemPoolStats before, after;
    for (i = 0; i < 4; i++) {
        blocks[i] = cymem_pool_alloc(pool, (size_t)(i + 1), 16);
        CHECK(blocks[i] != NULL);
    }
    before = stats_of(pool);
    CHECK(before.size == 160);
    CHECK(cymem_pool_pin(pool, blocks[2]) == CYMEM_OK);
    CHECK(cymem_pool_clear(pool) == CYMEM_ERR_BLOCK_IN_USE);
    CHECK(cymem_pool_block_count(pool) == 4);
    CHECK(cymem_pool_unpin(pool, blocks[2]) == CYMEM_OK);
    CHECK(cymem_pool_clear(pool) == CYMEM_OK);
    after = stats_of(pool);
    CHECK(after.size == 0 && after.block_count == 0);
    CHECK(after.total_allocs == before.total_allocs);
    CHECK(after.total_frees == before.total_frees + 4);
    CHECK(after.peak_size >= 160);
    CHECK(cymem_pool_free(pool, blocks[0]) == CYMEM_ERR_UNKNOWN_POINTER);
    CHECK(cymem_pool_alloc(pool, 1, 8) != NULL);
    CHECK(cymem_pool_clear(pool) == CYMEM_OK);
    CHECK(cymem_pool_clear(NULL) == CYMEM_ERR_NULL_ARGUMENT);
}

static void test_scopes(CymemPool *pool, CymemPool *other)
{
    unsigned char *old = (unsigned char *)cymem_pool_alloc(pool, 8, 1);
    size_t outer, inner, foreign;
    void *a, *b, *c;
    CHECK(old != NULL);
    memset(old, 0x5A, 8);
    outer = cymem_pool_mark(pool);
    CHECK(outer != 0);
    a = cymem_pool_alloc(pool, 100, 1);
    /* An older block grown inside the scope survives it. */
    old = (unsigned char *)cymem_pool_realloc(pool, old, 4096);
    CHECK(old != NULL);
    inner = cymem_pool_mark(pool);
    CHECK(inner != 0 && inner != outer);
    b = cymem_pool_alloc(pool, 200, 1);
    CHECK(cymem_pool_release_to(pool, inner) == CYMEM_OK);
    CHECK(cymem_pool_block_size(pool, b, NULL) == CYMEM_ERR_NULL_ARGUMENT);
    CHECK(cymem_pool_free(pool, b) == CYMEM_ERR_UNKNOWN_POINTER);
    CHECK(cymem_pool_free(pool, a) == CYMEM_OK);
    c = cymem_pool_alloc(pool, 300, 1);
    CHECK(c != NULL);
    /* Stale, foreign and zero marks: a clear error, nothing changed. */
    CHECK(cymem_pool_release_to(pool, inner) == CYMEM_ERR_BAD_MARK);
    CHECK(contains(cymem_last_error_message(), "not open in this pool"));
    foreign = cymem_pool_mark(other);
    CHECK(cymem_pool_release_to(pool, foreign) == CYMEM_ERR_BAD_MARK);
    CHECK(cymem_pool_release_to(pool, 0) == CYMEM_ERR_BAD_MARK);
    CHECK(cymem_pool_release_to(other, foreign) == CYMEM_OK);
    CHECK(cymem_pool_block_count(pool) == 2);
    /* A pinned block since the mark refuses the release. */
    CHECK(cymem_pool_pin(pool, c) == CYMEM_OK);
    CHECK(cymem_pool_release_to(pool, outer) == CYMEM_ERR_BLOCK_IN_USE);
    CHECK(cymem_pool_block_count(pool) == 2);
    CHECK(cymem_pool_unpin(pool, c) == CYMEM_OK);
    CHECK(cymem_pool_release_to(pool, outer) == CYMEM_OK);
    CHECK(cymem_pool_block_count(pool) == 1);
    CHECK(cymem_pool_size(pool) == 4096);
    CHECK(old[0] == 0x5A && old[7] == 0x5A && old[8] == 0);
    CHECK(cymem_pool_release_to(pool, outer) == CYMEM_ERR_BAD_MARK);
    CHECK(cymem_pool_free(pool, old) == CYMEM_OK);
    CHECK(cymem_pool_mark(NULL) == 0);
    CHECK(cymem_pool_release_to(NULL, 1) == CYMEM_ERR_NULL_ARGUMENT);
}

/* What the cleanups saw, in the order they ran. */
static int g_ran[16];
static int g_ran_count;

struct note {
    int id;
    const unsigned char *block; /* read by the cleanup; may be NULL */
    int seen;
};

static void run_note(void *data)
{
    struct note *note = (struct note *)data;
    note->seen = note->block != NULL ? note->block[0] : -1;
    if (g_ran_count < 16) g_ran[g_ran_count++] = note->id;
}

static void test_cleanups(CymemPool *pool)
{
    struct note n1 = {1, NULL, 0}, n2 = {2, NULL, 0}, n3 = {3, NULL, 0};
    unsigned char *p = (unsigned char *)cymem_pool_alloc(pool, 4, 1);
    size_t mark;
    CHECK(p != NULL);
    p[0] = 0xC3;
    n1.block = p;
    n3.block = p;
    g_ran_count = 0;
    CHECK(cymem_pool_add_cleanup(pool, run_note, &n1) == CYMEM_OK);
    mark = cymem_pool_mark(pool);
    CHECK(cymem_pool_add_cleanup(pool, run_note, &n2) == CYMEM_OK);
    CHECK(cymem_pool_add_cleanup(pool, run_note, &n3) == CYMEM_OK);
    CHECK(cymem_pool_release_to(pool, mark) == CYMEM_OK);
    CHECK(g_ran_count == 2 && g_ran[0] == 3 && g_ran[1] == 2);
    CHECK(n3.seen == 0xC3); /* the block was still live */
    CHECK(cymem_pool_clear(pool) == CYMEM_OK);
    CHECK(g_ran_count == 3 && g_ran[2] == 1 && n1.seen == 0xC3);
    CHECK(cymem_pool_clear(pool) == CYMEM_OK);
    CHECK(g_ran_count == 3); /* clear forgot them */
    CHECK(cymem_pool_add_cleanup(pool, NULL, &n1) == CYMEM_ERR_NULL_ARGUMENT);
    CHECK(cymem_pool_add_cleanup(NULL, run_note, &n1) == CYMEM_ERR_NULL_ARGUMENT);
}

/* A cleanup that calls its own pool back: every change is refused. */
struct reentry {
    CymemPool *pool;
    void *block;
    int statuses[8];
    int calls;
};

static void touch_the_pool(void *data)
{
    struct reentry *r = (struct reentry *)data;
    CymemPool *pool = r->pool;
    r->calls++;
    r->statuses[0] = cymem_pool_alloc(pool, 1, 1) == NULL ? cymem_last_error() : CYMEM_OK;
    r->statuses[1] = cymem_pool_free(pool, r->block);
    r->statuses[2] = cymem_pool_clear(pool);
    r->statuses[3] = cymem_pool_mark(pool) == 0 ? cymem_last_error() : CYMEM_OK;
    r->statuses[4] = cymem_pool_release_to(pool, 1);
    r->statuses[5] = cymem_pool_pin(pool, r->block);
    cymem_pool_destroy(&pool);
    r->statuses[6] = pool != NULL ? cymem_last_error() : CYMEM_OK;
    r->statuses[7] = cymem_pool_block_count(pool) == 1 ? CYMEM_OK : -1;
}

static void test_cleanup_touching_the_pool(CymemPool *pool)
{
    struct reentry r;
    int i;
    memset(&r, 0, sizeof r);
    r.pool = pool;
    r.block = cymem_pool_alloc(pool, 8, 1);
    CHECK(cymem_pool_add_cleanup(pool, touch_the_pool, &r) == CYMEM_OK);
    CHECK(cymem_pool_clear(pool) == CYMEM_OK);
    CHECK(r.calls == 1);
    for (i = 0; i < 7; i++) CHECK(r.statuses[i] == CYMEM_ERR_RELEASING);
    CHECK(r.statuses[7] == CYMEM_OK);
    CHECK(cymem_pool_block_count(pool) == 0);
    CHECK(cymem_pool_alloc(pool, 1, 1) != NULL); /* usable again */
}

static void test_limits(CymemPool *pool)
{
    unsigned char *a;
    void *grown;
    CymemPoolStats before;
    CHECK(cymem_pool_clear(pool) == CYMEM_OK);
    CHECK(cymem_pool_limit(pool) == 0);
    CHECK(cymem_pool_set_limit(pool, 100) == CYMEM_OK);
    CHECK(cymem_pool_limit(pool) == 100);
    a = (unsigned char *)cymem_pool_alloc(pool, 60, 1);
    CHECK(a != NULL);
    memset(a, 0x77, 60);
    before = stats_of(pool);
    CHECK(cymem_pool_alloc(pool, 41, 1) == NULL);
    CHECK(cymem_last_error() == CYMEM_ERR_LIMIT);
    CHECK(contains(cymem_last_error_message(), "limit of 100 bytes"));
    grown = cymem_pool_realloc(pool, a, 101);
    CHECK(grown == NULL && cymem_last_error() == CYMEM_ERR_LIMIT);
    CHECK(stats_of(pool).size == before.size);
    CHECK(stats_of(pool).total_allocs == before.total_allocs);
    CHECK(a[0] == 0x77 && a[59] == 0x77);
    grown = cymem_pool_realloc(pool, a, 100);
    CHECK(grown != NULL);
    CHECK(cymem_pool_set_limit(pool, 0) == CYMEM_OK);
    CHECK(cymem_pool_limit(pool) == 0);
    CHECK(cymem_pool_alloc(pool, 1000, 1) != NULL);
    CHECK(cymem_pool_set_limit(NULL, 1) == CYMEM_ERR_NULL_ARGUMENT);
    CHECK(cymem_pool_clear(pool) == CYMEM_OK);
}

static void test_destroy_runs_cleanups(CymemPool *(*make)(void))
{
    CymemPool *pool = make();
    struct note n = {7, NULL, 0};
    unsigned char *p = (unsigned char *)cymem_pool_alloc(pool, 1, 1);
    p[0] = 42;
    n.block = p;
    g_ran_count = 0;
    CHECK(cymem_pool_add_cleanup(pool, run_note, &n) == CYMEM_OK);
    cymem_pool_mark(pool);
    cymem_pool_destroy(&pool);
    CHECK(pool == NULL);
    CHECK(g_ran_count == 1 && g_ran[0] == 7 && n.seen == 42);
}

static CymemPool *new_custom(void)
{
    return cymem_pool_new_with_allocator(malloc, free);
}

static CymemPool *new_custom_debug(void)
{
    return cymem_pool_new_with_allocator_debug(malloc, free);
}

static void run_all(CymemPool *(*make)(void), const char *kind)
{
    CymemPool *pool = make();
    CymemPool *other = make();
    printf("-- %s pools\n", kind);
    test_clear(pool);
    test_scopes(pool, other);
    test_cleanups(pool);
    test_cleanup_touching_the_pool(pool);
    test_limits(pool);
    test_destroy_runs_cleanups(make);
    CHECK(cymem_pool_check(pool) == CYMEM_OK);
    cymem_pool_destroy(&pool);
    cymem_pool_destroy(&other);
}

int main(void)
{
    run_all(cymem_pool_new, "heap");
    run_all(cymem_pool_new_arena, "arena");
    run_all(cymem_pool_new_debug, "debug");
    run_all(cymem_pool_new_arena_debug, "debug arena");
    run_all(new_custom, "custom allocator");
    run_all(new_custom_debug, "debug custom allocator");
    return check_summary();
}
