/*
 * C tests of debug mode (guard bytes, poisoned quarantine) through the C ABI.
 *
 * Deliberate overruns, underruns and writes after free must come back as
 * CYMEM_ERR_CORRUPTED with a message naming the block's size and allocation
 * number, and every block must still go back to its allocator exactly once
 * (a counting allocator checks). The last line printed is "N passed, M
 * failed"; the exit status is 1 if any check failed.
 *
 * Build (as `make test-c` does):
 *   cc -std=c99 -Wall -Wextra -Werror -pedantic -Iinclude tests/c/test_debug.c \
 *      target/release/libcymem_rs.a -lpthread -ldl -lm -o build/test_debug
 *
 * With CYMEM_RS_DEBUG=1 in the environment, the last test also checks that
 * plain `cymem_pool_new()` pools are debug pools (and without it, that they
 * are not).
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cymem_rs.h"

#include "check.h"

/* 1 if the last error message contains `needle`. */
static int message_has(const char *needle)
{
    const char *message = cymem_last_error_message();
    if (strstr(message, needle) == NULL) {
        fprintf(stderr, "  message \"%s\" lacks \"%s\"\n", message, needle);
        return 0;
    }
    return 1;
}

/* A counting allocator: every malloc must be matched by one free. */
static size_t g_mallocs;
static size_t g_frees;

static void *counting_malloc(size_t size)
{
    void *p = malloc(size);
    if (p != NULL) {
        memset(p, 0xAB, size); /* dirty: zeroing is the pool's job */
        g_mallocs++;
    }
    return p;
}

static void counting_free(void *p)
{
    g_frees++;
    free(p);
}

static void test_one_byte_overrun_is_reported_at_free(void)
{
    CymemPool *pool = cymem_pool_new_debug();
    unsigned char *a, *b;
    CHECK(pool != NULL);
    CHECK(cymem_pool_is_debug(pool) == 1);
    a = (unsigned char *)cymem_pool_alloc(pool, 4, 8);
    b = (unsigned char *)cymem_pool_alloc(pool, 3, 7);
    CHECK(a != NULL && b != NULL);
    CHECK(cymem_pool_check(pool) == CYMEM_OK);
    b[21] = 1; /* one byte past a 21-byte block */
    CHECK(cymem_pool_free(pool, b) == CYMEM_ERR_CORRUPTED);
    CHECK(cymem_last_error() == CYMEM_ERR_CORRUPTED);
    CHECK(message_has("21 bytes"));
    CHECK(message_has("allocation #2"));
    CHECK(message_has("past its end"));
    /* Released anyway: the accounting is right and the pointer is gone. */
    CHECK(cymem_pool_size(pool) == 32);
    CHECK(cymem_pool_block_count(pool) == 1);
    CHECK(cymem_pool_free(pool, b) == CYMEM_ERR_UNKNOWN_POINTER);
    CHECK(cymem_pool_destroy_checked(&pool) == CYMEM_OK);
    CHECK(pool == NULL);
}

static void test_underrun_and_realloc(void)
{
    CymemPool *pool = cymem_pool_new_debug();
    unsigned char *p = (unsigned char *)cymem_pool_alloc(pool, 1, 10);
    unsigned char *q;
    p[0] = 42;
    p[-1] = 0; /* one byte before the block */
    CHECK(cymem_pool_realloc(pool, p, 100) == NULL);
    CHECK(cymem_last_error() == CYMEM_ERR_CORRUPTED);
    CHECK(message_has("before its start"));
    CHECK(message_has("allocation #1"));
    /* The block stays live and unchanged; the damage is reported once. */
    CHECK(cymem_pool_block_count(pool) == 1);
    q = (unsigned char *)cymem_pool_realloc(pool, p, 100);
    CHECK(q != NULL && q[0] == 42 && q[99] == 0);
    CHECK(cymem_pool_check(pool) == CYMEM_OK);
    cymem_pool_destroy(&pool);
}

static void test_write_after_free_is_found_by_check(void)
{
    CymemPool *pool = cymem_pool_new_debug();
    unsigned char *p;
    CHECK(cymem_pool_alloc(pool, 1, 16) != NULL);
    p = (unsigned char *)cymem_pool_alloc(pool, 1, 16);
    CHECK(cymem_pool_free(pool, p) == CYMEM_OK);
    p[5] = 7; /* a dangling write: the block waits in quarantine */
    CHECK(cymem_pool_check(pool) == CYMEM_ERR_CORRUPTED);
    CHECK(message_has("after it was freed"));
    CHECK(message_has("allocation #2"));
    CHECK(message_has("offset 5"));
    CHECK(cymem_pool_check(pool) == CYMEM_OK);
    cymem_pool_destroy(&pool);
}

static void test_destroy_checked_reports_and_releases_everything(void)
{
    CymemPool *pool = cymem_pool_new_with_allocator_debug(counting_malloc, counting_free);
    int i;
    unsigned char *p = NULL;
    g_mallocs = g_frees = 0;
    CHECK(pool != NULL && cymem_pool_is_debug(pool) == 1);
    for (i = 0; i < 100; i++) {
        p = (unsigned char *)cymem_pool_alloc(pool, 1, (size_t)i + 1);
        CHECK(p != NULL && p[i] == 0);
        if (i % 3 == 0) CHECK(cymem_pool_free(pool, p) == CYMEM_OK);
    }
    p[100] = 1; /* overrun of the last (100-byte) block */
    CHECK(g_mallocs == 100);
    CHECK(cymem_pool_destroy_checked(&pool) == CYMEM_ERR_CORRUPTED);
    CHECK(message_has("100 bytes"));
    CHECK(message_has("allocation #100"));
    CHECK(pool == NULL);
    CHECK(g_frees == 100);
    CHECK(cymem_pool_destroy_checked(&pool) == CYMEM_OK);
    CHECK(cymem_pool_destroy_checked(NULL) == CYMEM_ERR_NULL_ARGUMENT);
}

static void test_arena_debug_pool(void)
{
    CymemPool *pool = cymem_pool_new_arena_debug();
    unsigned char *p = (unsigned char *)cymem_pool_alloc(pool, 2, 4);
    CHECK(p != NULL && ((size_t)p % 16) == 0);
    CHECK(cymem_pool_is_debug(pool) == 1);
    p[8] = 9;
    CHECK(cymem_pool_check(pool) == CYMEM_ERR_CORRUPTED);
    CHECK(message_has("8 bytes"));
    CHECK(cymem_pool_destroy_checked(&pool) == CYMEM_OK);
}

static void test_null_and_non_debug_pools(void)
{
    CymemPool *pool;
    CHECK(cymem_pool_check(NULL) == CYMEM_ERR_NULL_ARGUMENT);
    CHECK(cymem_pool_is_debug(NULL) == 0);
    CHECK(cymem_pool_new_with_allocator_debug(NULL, free) == NULL);
    CHECK(cymem_last_error() == CYMEM_ERR_NULL_ARGUMENT);
    CHECK(strcmp(cymem_status_message(CYMEM_ERR_CORRUPTED),
                 "memory corruption detected (debug mode)") == 0);
    /* Plain pools follow CYMEM_RS_DEBUG. */
    pool = cymem_pool_new();
    {
        const char *env = getenv("CYMEM_RS_DEBUG");
        int want = env != NULL && strcmp(env, "1") == 0;
        CHECK(cymem_pool_is_debug(pool) == want);
    }
    CHECK(cymem_pool_alloc(pool, 1, 8) != NULL);
    CHECK(cymem_pool_check(pool) == CYMEM_OK);
    CHECK(cymem_pool_destroy_checked(&pool) == CYMEM_OK);
}

int main(void)
{
    test_one_byte_overrun_is_reported_at_free();
    test_underrun_and_realloc();
    test_write_after_free_is_found_by_check();
    test_destroy_checked_reports_and_releases_everything();
    test_arena_debug_pool();
    test_null_and_non_debug_pools();
    return check_summary();
}
