/*
 * C tests for pinned blocks: cymem_pool_pin / cymem_pool_unpin /
 * cymem_pool_pin_count and CYMEM_ERR_BLOCK_IN_USE, in heap and arena pools.
 *
 * The scenario: C code hands a block to a consumer (a zero-copy view) and
 * pins it; a free or realloc elsewhere must then fail cleanly, leaving the
 * block and its contents intact, until the consumer unpins.
 *
 * A failed CHECK prints file:line and the expression, and the run goes on;
 * the last line is "N passed, M failed", exit status 1 if any failed.
 */

#include <stdio.h>
#include <string.h>

#include "cymem_rs.h"

#include "check.h"

static int contains(const char *haystack, const char *needle)
{
    return haystack != NULL && strstr(haystack, needle) != NULL;
}

static int all_bytes(const void *p, size_t n, unsigned char value)
{
    const unsigned char *b = (const unsigned char *)p;
    size_t i;
    for (i = 0; i < n; i++) {
        if (b[i] != value) return 0;
    }
    return 1;
}

static void test_pinned_block_cannot_be_freed_or_moved(CymemPool *pool)
{
    unsigned char *p = (unsigned char *)cymem_pool_alloc(pool, 64, 1);
    size_t size = 0;
    char addr_text[32];
    CHECK(p != NULL);
    if (p == NULL) return;
    memset(p, 0x5A, 64);

    CHECK(cymem_pool_pin_count(pool, p) == 0);
    CHECK(cymem_pool_pin(pool, p) == CYMEM_OK);
    CHECK(cymem_pool_pin_count(pool, p) == 1);

    CHECK(cymem_pool_free(pool, p) == CYMEM_ERR_BLOCK_IN_USE);
    CHECK(cymem_last_error() == CYMEM_ERR_BLOCK_IN_USE);
    snprintf(addr_text, sizeof addr_text, "%#lx", (unsigned long)(size_t)p);
    CHECK(contains(cymem_last_error_message(), addr_text));
    CHECK(contains(cymem_last_error_message(), "1 live view"));

    CHECK(cymem_pool_realloc(pool, p, 4096) == NULL);
    CHECK(cymem_last_error() == CYMEM_ERR_BLOCK_IN_USE);

    /* The block is still there, same size, same contents. */
    CHECK(cymem_pool_block_size(pool, p, &size) == CYMEM_OK && size == 64);
    CHECK(cymem_pool_block_count(pool) == 1);
    CHECK(all_bytes(p, 64, 0x5A));

    CHECK(cymem_pool_unpin(pool, p) == CYMEM_OK);
    CHECK(cymem_pool_pin_count(pool, p) == 0);
    p = (unsigned char *)cymem_pool_realloc(pool, p, 128);
    CHECK(p != NULL);
    if (p == NULL) return;
    CHECK(all_bytes(p, 64, 0x5A) && all_bytes(p + 64, 64, 0));
    CHECK(cymem_pool_free(pool, p) == CYMEM_OK);
    CHECK(cymem_pool_block_count(pool) == 0);
}

static void test_pins_nest(CymemPool *pool)
{
    void *p = cymem_pool_alloc(pool, 1, 8);
    int i;
    CHECK(p != NULL);
    for (i = 0; i < 3; i++) CHECK(cymem_pool_pin(pool, p) == CYMEM_OK);
    CHECK(cymem_pool_pin_count(pool, p) == 3);
    CHECK(cymem_pool_free(pool, p) == CYMEM_ERR_BLOCK_IN_USE);
    CHECK(contains(cymem_last_error_message(), "3 live view"));
    CHECK(cymem_pool_unpin(pool, p) == CYMEM_OK);
    CHECK(cymem_pool_unpin(pool, p) == CYMEM_OK);
    CHECK(cymem_pool_free(pool, p) == CYMEM_ERR_BLOCK_IN_USE);
    CHECK(cymem_pool_unpin(pool, p) == CYMEM_OK);
    CHECK(cymem_pool_free(pool, p) == CYMEM_OK);
}

static void test_bad_pins_are_errors(CymemPool *pool)
{
    int local = 0;
    void *p = cymem_pool_alloc(pool, 4, 1);
    CHECK(p != NULL);

    /* Unpin of an unpinned block: an error, and no underflow afterwards. */
    CHECK(cymem_pool_unpin(pool, p) == CYMEM_ERR_NOT_PINNED);
    CHECK(cymem_last_error() == CYMEM_ERR_NOT_PINNED);
    CHECK(contains(cymem_last_error_message(), "not pinned"));
    CHECK(cymem_pool_pin_count(pool, p) == 0);
    CHECK(cymem_pool_free(pool, p) == CYMEM_OK);

    /* Foreign, NULL and freed pointers are unknown. */
    CHECK(cymem_pool_pin(pool, &local) == CYMEM_ERR_UNKNOWN_POINTER);
    CHECK(cymem_pool_unpin(pool, &local) == CYMEM_ERR_UNKNOWN_POINTER);
    CHECK(cymem_pool_pin(pool, NULL) == CYMEM_ERR_UNKNOWN_POINTER);
    CHECK(cymem_pool_pin(pool, p) == CYMEM_ERR_UNKNOWN_POINTER);
    CHECK(cymem_pool_pin_count(pool, &local) == 0);

    /* A NULL pool. */
    CHECK(cymem_pool_pin(NULL, p) == CYMEM_ERR_NULL_ARGUMENT);
    CHECK(cymem_pool_unpin(NULL, p) == CYMEM_ERR_NULL_ARGUMENT);
    CHECK(cymem_pool_pin_count(NULL, p) == 0);
    CHECK(cymem_last_error() == CYMEM_ERR_NULL_ARGUMENT);

    CHECK(contains(cymem_status_message(CYMEM_ERR_BLOCK_IN_USE), "pinned"));
    CHECK(contains(cymem_status_message(CYMEM_ERR_NOT_PINNED), "not pinned"));
}

static void test_a_pin_protects_only_its_block(CymemPool *pool)
{
    void *pinned = cymem_pool_alloc(pool, 16, 1);
    void *other = cymem_pool_alloc(pool, 16, 1);
    CHECK(cymem_pool_pin(pool, pinned) == CYMEM_OK);
    CHECK(cymem_pool_free(pool, other) == CYMEM_OK);
    CHECK(cymem_pool_block_count(pool) == 1);
    CHECK(cymem_pool_unpin(pool, pinned) == CYMEM_OK);
    CHECK(cymem_pool_free(pool, pinned) == CYMEM_OK);
}

/* Destroying a pool with pinned blocks still frees them (no leak under
   `valgrind --leak-check=full build/test_pins`). */
static void test_destroy_frees_pinned_blocks(CymemPool *pool)
{
    void *p = cymem_pool_alloc(pool, 1000, 1);
    CHECK(p != NULL);
    CHECK(cymem_pool_pin(pool, p) == CYMEM_OK);
}

static void run_all(CymemPool *(*make)(void), const char *mode)
{
    CymemPool *pool = make();
    printf("%s pool\n", mode);
    CHECK(pool != NULL);
    if (pool == NULL) return;
    test_pinned_block_cannot_be_freed_or_moved(pool);
    test_pins_nest(pool);
    test_bad_pins_are_errors(pool);
    test_a_pin_protects_only_its_block(pool);
    test_destroy_frees_pinned_blocks(pool);
    cymem_pool_destroy(&pool);
    CHECK(pool == NULL);
}

int main(void)
{
    run_all(cymem_pool_new, "heap");
    run_all(cymem_pool_new_arena, "arena");
    return check_summary();
}
