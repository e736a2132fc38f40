/*
 * C tests for the cymem_rs C ABI (include/cymem_rs.h).
 *
 * Every function of the header and every error path is exercised here. A
 * failed CHECK prints file:line and the expression, and the run goes on; the
 * last line printed is "N passed, M failed", and the exit status is 1 if any
 * check failed.
 *
 * Build (static):
 *   cc -std=c99 -Wall -Wextra -Werror -pedantic -Iinclude tests/c/test_ffi.c \
 *      target/release/libcymem_rs.a -lpthread -ldl -lm -o build/test_ffi
 * Build (shared):
 *   cc -std=c99 -Wall -Wextra -Werror -pedantic -Iinclude tests/c/test_ffi.c \
 *      -Ltarget/release -lcymem_rs -lpthread -o build/test_ffi_shared
 *   LD_LIBRARY_PATH=target/release build/test_ffi_shared
 */

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cymem_rs.h"

/* ------------------------------------------------------------------------ */
/* CHECK: record, report, keep going (callable from any thread).            */
/* ------------------------------------------------------------------------ */

#include "check.h"

/* ------------------------------------------------------------------------ */
/* Helpers                                                                  */
/* ------------------------------------------------------------------------ */

#define MIB ((size_t)1 << 20)

/* 1 if the n bytes at p all equal value (vacuously true for n == 0). */
static int all_bytes(const void *p, size_t n, unsigned char value)
{
    const unsigned char *b = (const unsigned char *)p;
    size_t i;
    for (i = 0; i < n; i++) {
        if (b[i] != value) {
            return 0;
        }
    }
    return 1;
}

/* 1 if haystack is a non-NULL string containing needle. */
static int contains(const char *haystack, const char *needle)
{
    return haystack != NULL && strstr(haystack, needle) != NULL;
}

static int non_empty(const char *s)
{
    return s != NULL && s[0] != '\0';
}

/* The size of a live block, or (size_t)-1 if the pool does not know it. */
static size_t block_size_or_max(const CymemPool *pool, const void *ptr)
{
    size_t size = 0;
    return cymem_pool_block_size(pool, ptr, &size) == CYMEM_OK ? size : SIZE_MAX;
}

/*
 * Makes the thread's last error something other than `avoid`, so a check
 * that the last error *is* `avoid` right afterwards proves the call under
 * test set it (and not some earlier call).
 */
static void prime_last_error(CymemStatus avoid)
{
    if (avoid == CYMEM_ERR_NULL_ARGUMENT) {
        CymemPool *pool = cymem_pool_new();
        int local = 0;
        cymem_pool_free(pool, &local); /* CYMEM_ERR_UNKNOWN_POINTER */
        cymem_pool_destroy(&pool);
    } else {
        cymem_pool_free(NULL, NULL); /* CYMEM_ERR_NULL_ARGUMENT */
    }
}

/* ------------------------------------------------------------------------ */
/* Custom allocators                                                        */
/* ------------------------------------------------------------------------ */

/* Header in front of each counted block: big enough and suitably aligned. */
typedef union {
    long double ld;
    long long ll;
    double d;
    void *p;
    size_t size;
} MaxAlign;

#define COUNTING_HEADER sizeof(MaxAlign)
#define GARBAGE 0xAB

/* Counters of the counting allocator (main thread only). */
static size_t g_mallocs;     /* successful malloc calls */
static size_t g_frees;       /* free calls on a non-NULL pointer */
static size_t g_null_frees;  /* free(NULL) calls: the pool should never make one */
static size_t g_live_bytes;  /* bytes requested and not yet freed */

/* Failing allocator: call number g_fail_at (1-based) returns NULL. */
static size_t g_failing_calls;
static size_t g_fail_at; /* 0: never fail */

static void counting_reset(void)
{
    g_mallocs = g_frees = g_null_frees = g_live_bytes = 0;
    g_failing_calls = g_fail_at = 0;
}

/*
 * malloc that counts, remembers the size in a header, and hands out garbage
 * (GARBAGE bytes), so memory the pool forgot to zero is easy to see.
 */
static void *counting_malloc(size_t size)
{
    unsigned char *raw;
    if (size > SIZE_MAX - COUNTING_HEADER) {
        return NULL;
    }
    raw = (unsigned char *)malloc(COUNTING_HEADER + size);
    if (raw == NULL) {
        return NULL;
    }
    memcpy(raw, &size, sizeof size);
    memset(raw + COUNTING_HEADER, GARBAGE, size);
    g_mallocs++;
    g_live_bytes += size;
    return raw + COUNTING_HEADER;
}

/* free that counts and scribbles GARBAGE over the block before freeing it. */
static void counting_free(void *ptr)
{
    unsigned char *raw;
    size_t size;
    if (ptr == NULL) {
        g_null_frees++;
        return;
    }
    raw = (unsigned char *)ptr - COUNTING_HEADER;
    memcpy(&size, raw, sizeof size);
    memset(raw, GARBAGE, COUNTING_HEADER + size);
    g_frees++;
    g_live_bytes -= size;
    free(raw);
}

/* The counting allocator, except that call number g_fail_at returns NULL. */
static void *failing_malloc(size_t size)
{
    g_failing_calls++;
    if (g_fail_at != 0 && g_failing_calls == g_fail_at) {
        return NULL;
    }
    return counting_malloc(size);
}

/* Makes the next call of failing_malloc fail. */
static void fail_next_malloc(void)
{
    g_fail_at = g_failing_calls + 1;
}

/*
 * A broken allocator: malloc returns whichever static slot g_arena_next
 * names, even if that slot is still in use; free does nothing but count.
 */
#define ARENA_SLOT_BYTES 64
static union {
    MaxAlign align;
    unsigned char bytes[ARENA_SLOT_BYTES];
} g_arena[2];
static size_t g_arena_next;
static size_t g_arena_frees;

static void *arena_malloc(size_t size)
{
    return size <= ARENA_SLOT_BYTES ? g_arena[g_arena_next].bytes : NULL;
}

static void arena_free(void *ptr)
{
    (void)ptr;
    g_arena_frees++;
}

/* ------------------------------------------------------------------------ */
/* Tests                                                                    */
/* ------------------------------------------------------------------------ */

/* The pool constructor the generic tests use: every rule is checked for the
   heap pool (cymem_pool_new) and again for the arena pool (cymem_pool_new_arena). */
static CymemPool *(*new_pool)(void) = cymem_pool_new;

static void test_abi_version(void)
{
    CHECK(cymem_abi_version() == CYMEM_RS_ABI_VERSION);
    CHECK(CYMEM_RS_ABI_VERSION == 1);
}

static void test_new_and_destroy(void)
{
    CymemPool *pool = new_pool();
    CymemPool *null_pool = NULL;

    CHECK(pool != NULL);
    CHECK(cymem_pool_size(pool) == 0);
    CHECK(cymem_pool_block_count(pool) == 0);
    cymem_pool_destroy(&pool);
    CHECK(pool == NULL);

    /* Destroying NULL, a pointer to NULL, and a destroyed handle: no-ops. */
    cymem_pool_destroy(NULL);
    cymem_pool_destroy(&null_pool);
    CHECK(null_pool == NULL);
    cymem_pool_destroy(&pool);
    CHECK(pool == NULL);

    /* Destroying a pool with live blocks of every kind releases them all
     * (valgrind's leak check confirms it for the system allocator). */
    pool = new_pool();
    CHECK(cymem_pool_alloc(pool, 1, 100) != NULL);
    CHECK(cymem_pool_alloc(pool, 0, 1) != NULL);
    CHECK(cymem_pool_alloc(pool, 1, MIB) != NULL);
    CHECK(cymem_pool_block_count(pool) == 3);
    cymem_pool_destroy(&pool);
    CHECK(pool == NULL);
}

static void test_alloc_zeroed(void)
{
    static const size_t sizes[] = {1, 2, 7, 8, 16, 63, 64, 100, 4096, 4097, 65536, MIB, 4 * MIB};
    const size_t n_sizes = sizeof sizes / sizeof sizes[0];
    unsigned char *blocks[sizeof sizes / sizeof sizes[0]];
    CymemPool *pool = new_pool();
    size_t expected_size = 0;
    size_t i;
    double *doubles;

    for (i = 0; i < n_sizes; i++) {
        blocks[i] = (unsigned char *)cymem_pool_alloc(pool, sizes[i], 1);
        CHECK(blocks[i] != NULL);
        if (blocks[i] == NULL) {
            continue;
        }
        expected_size += sizes[i];
        CHECK(all_bytes(blocks[i], sizes[i], 0));
        CHECK(cymem_pool_size(pool) == expected_size);
        CHECK(cymem_pool_block_count(pool) == i + 1);
        CHECK(block_size_or_max(pool, blocks[i]) == sizes[i]);
        /* Writable: fill each block with its own byte. */
        memset(blocks[i], (int)(i + 1), sizes[i]);
    }
    /* Distinct and non-overlapping: every block still holds its own byte. */
    for (i = 0; i < n_sizes; i++) {
        size_t j;
        CHECK(blocks[i] != NULL && all_bytes(blocks[i], sizes[i], (unsigned char)(i + 1)));
        for (j = 0; j < i; j++) {
            CHECK(blocks[i] != blocks[j]);
        }
    }

    /* number * elem_size, as calloc does it. */
    doubles = (double *)cymem_pool_alloc(pool, 10, sizeof(double));
    CHECK(doubles != NULL);
    CHECK(block_size_or_max(pool, doubles) == 10 * sizeof(double));
    CHECK(doubles != NULL && all_bytes(doubles, 10 * sizeof(double), 0));
    CHECK(cymem_pool_size(pool) == expected_size + 10 * sizeof(double));
    CHECK(cymem_pool_block_count(pool) == n_sizes + 1);

    /* Freeing shrinks the accounting block by block. */
    for (i = 0; i < n_sizes; i++) {
        CHECK(cymem_pool_free(pool, blocks[i]) == CYMEM_OK);
        expected_size -= sizes[i];
        CHECK(cymem_pool_size(pool) == expected_size + 10 * sizeof(double));
        CHECK(cymem_pool_block_count(pool) == n_sizes - i);
    }
    CHECK(cymem_pool_free(pool, doubles) == CYMEM_OK);
    CHECK(cymem_pool_size(pool) == 0);
    CHECK(cymem_pool_block_count(pool) == 0);

    /* Dirty a block, free it, allocate again: the new block is zeroed even
     * if the system allocator hands back the same memory. */
    for (i = 0; i < 8; i++) {
        unsigned char *p = (unsigned char *)cymem_pool_alloc(pool, 256, 1);
        CHECK(p != NULL && all_bytes(p, 256, 0));
        if (p != NULL) {
            memset(p, 0xFF, 256);
        }
        CHECK(cymem_pool_free(pool, p) == CYMEM_OK);
    }
    cymem_pool_destroy(&pool);
}

static void test_zero_byte_blocks(void)
{
    CymemPool *pool = new_pool();
    void *z[5];
    size_t i, j;

    z[0] = cymem_pool_alloc(pool, 0, 1);
    z[1] = cymem_pool_alloc(pool, 1, 0);
    z[2] = cymem_pool_alloc(pool, 0, 0);
    z[3] = cymem_pool_alloc(pool, 0, SIZE_MAX); /* 0 * anything: no overflow */
    z[4] = cymem_pool_alloc(pool, SIZE_MAX, 0);
    for (i = 0; i < 5; i++) {
        CHECK(z[i] != NULL);
        CHECK(block_size_or_max(pool, z[i]) == 0);
        for (j = 0; j < i; j++) {
            CHECK(z[i] != z[j]);
        }
    }
    CHECK(cymem_pool_size(pool) == 0);
    CHECK(cymem_pool_block_count(pool) == 5);

    /* Mixed with a real block, they still count as 0 bytes. */
    CHECK(cymem_pool_alloc(pool, 3, 4) != NULL);
    CHECK(cymem_pool_size(pool) == 12);
    CHECK(cymem_pool_block_count(pool) == 6);

    for (i = 0; i < 5; i++) {
        CHECK(cymem_pool_free(pool, z[i]) == CYMEM_OK);
        CHECK(cymem_pool_block_count(pool) == 5 - i);
        CHECK(cymem_pool_size(pool) == 12);
    }
    /* Freed 0-byte blocks are gone like any other. */
    prime_last_error(CYMEM_ERR_UNKNOWN_POINTER);
    CHECK(cymem_pool_free(pool, z[0]) == CYMEM_ERR_UNKNOWN_POINTER);
    CHECK(cymem_last_error() == CYMEM_ERR_UNKNOWN_POINTER);
    cymem_pool_destroy(&pool);
}

static void test_size_overflow(void)
{
    CymemPool *pool = new_pool();
    void *keep = cymem_pool_alloc(pool, 5, 5);
    struct {
        size_t number, elem_size;
    } cases[] = {
        {SIZE_MAX, 2},
        {2, SIZE_MAX},
        {SIZE_MAX, SIZE_MAX},
        {SIZE_MAX / 2 + 1, 2},  /* exactly wraps to 0 */
        {1, SIZE_MAX},          /* fits size_t, but no object is that big */
        {SIZE_MAX, 1},
        {(size_t)PTRDIFF_MAX + 1, 1},
        {((size_t)PTRDIFF_MAX / 4) + 1, 4},
    };
    size_t i;

    CHECK(keep != NULL);
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        prime_last_error(CYMEM_ERR_SIZE_OVERFLOW);
        CHECK(cymem_pool_alloc(pool, cases[i].number, cases[i].elem_size) == NULL);
        CHECK(cymem_last_error() == CYMEM_ERR_SIZE_OVERFLOW);
        CHECK(non_empty(cymem_last_error_message()));
        CHECK(contains(cymem_last_error_message(), "overflow"));
        /* Pool unchanged. */
        CHECK(cymem_pool_size(pool) == 25);
        CHECK(cymem_pool_block_count(pool) == 1);
        CHECK(block_size_or_max(pool, keep) == 25);
    }

    /* The largest legal size is not an overflow: the system allocator just
     * cannot provide it (no 64-bit address space is that big). */
    if (sizeof(size_t) >= 8) {
        prime_last_error(CYMEM_ERR_OUT_OF_MEMORY);
        CHECK(cymem_pool_alloc(pool, (size_t)PTRDIFF_MAX, 1) == NULL);
        CHECK(cymem_last_error() == CYMEM_ERR_OUT_OF_MEMORY);
        CHECK(contains(cymem_last_error_message(), "out of memory"));
        CHECK(cymem_pool_size(pool) == 25);
        CHECK(cymem_pool_block_count(pool) == 1);
    }

    /* Growing a block past the largest object is refused the same way. */
    prime_last_error(CYMEM_ERR_SIZE_OVERFLOW);
    CHECK(cymem_pool_realloc(pool, keep, SIZE_MAX) == NULL);
    CHECK(cymem_last_error() == CYMEM_ERR_SIZE_OVERFLOW);
    CHECK(cymem_pool_size(pool) == 25);
    CHECK(block_size_or_max(pool, keep) == 25);
    cymem_pool_destroy(&pool);
}

static void test_free_errors(void)
{
    CymemPool *pool = new_pool();
    CymemPool *other = new_pool();
    int on_stack = 42;
    void *from_malloc = malloc(32);
    unsigned char *block = (unsigned char *)cymem_pool_alloc(pool, 16, 1);
    void *victim = cymem_pool_alloc(pool, 8, 1);
    void *foreign[4];
    size_t i;

    CHECK(block != NULL && victim != NULL && from_malloc != NULL);
    foreign[0] = &on_stack;
    foreign[1] = from_malloc;
    foreign[2] = NULL;
    foreign[3] = block + 1; /* inside a live block, but not its start */

    for (i = 0; i < sizeof foreign / sizeof foreign[0]; i++) {
        prime_last_error(CYMEM_ERR_UNKNOWN_POINTER);
        CHECK(cymem_pool_free(pool, foreign[i]) == CYMEM_ERR_UNKNOWN_POINTER);
        CHECK(cymem_last_error() == CYMEM_ERR_UNKNOWN_POINTER);
        CHECK(contains(cymem_last_error_message(), "not a live block"));
        CHECK(cymem_pool_size(pool) == 24);
        CHECK(cymem_pool_block_count(pool) == 2);
    }
    CHECK(on_stack == 42); /* "no memory touched" */

    /* A block of one pool is foreign to another. */
    prime_last_error(CYMEM_ERR_UNKNOWN_POINTER);
    CHECK(cymem_pool_free(other, block) == CYMEM_ERR_UNKNOWN_POINTER);
    CHECK(cymem_last_error() == CYMEM_ERR_UNKNOWN_POINTER);
    CHECK(block_size_or_max(pool, block) == 16);

    /* Double free. */
    CHECK(cymem_pool_free(pool, victim) == CYMEM_OK);
    CHECK(cymem_pool_size(pool) == 16);
    CHECK(cymem_pool_block_count(pool) == 1);
    prime_last_error(CYMEM_ERR_UNKNOWN_POINTER);
    CHECK(cymem_pool_free(pool, victim) == CYMEM_ERR_UNKNOWN_POINTER);
    CHECK(cymem_last_error() == CYMEM_ERR_UNKNOWN_POINTER);
    CHECK(contains(cymem_last_error_message(), "not a live block"));
    CHECK(cymem_pool_size(pool) == 16);
    CHECK(cymem_pool_block_count(pool) == 1);

    /* Like errno, a later success does not clear the last error. */
    CHECK(cymem_pool_alloc(pool, 1, 1) != NULL);
    CHECK(cymem_last_error() == CYMEM_ERR_UNKNOWN_POINTER);

    free(from_malloc);
    cymem_pool_destroy(&other);
    cymem_pool_destroy(&pool);
}

/*
 * Realloc semantics on one empty pool. `fresh_block_on_grow`: the pool's
 * allocator has no realloc, so a grown block must move to a new address.
 */
static void realloc_checks(CymemPool *pool, int fresh_block_on_grow)
{
    unsigned char *p = (unsigned char *)cymem_pool_alloc(pool, 16, 1);
    unsigned char *q;
    unsigned char *big;
    unsigned char *z;
    void *gone;
    size_t before;

    CHECK(p != NULL);
    if (p == NULL) {
        return;
    }
    memset(p, 0x5A, 16);
    CHECK(cymem_pool_size(pool) == 16);

    /* Grow: contents kept, tail zeroed, accounting updated. */
    q = (unsigned char *)cymem_pool_realloc(pool, p, 40);
    CHECK(q != NULL);
    if (q == NULL) {
        return;
    }
    CHECK(all_bytes(q, 16, 0x5A));
    CHECK(all_bytes(q + 16, 24, 0));
    CHECK(block_size_or_max(pool, q) == 40);
    CHECK(cymem_pool_size(pool) == 40);
    CHECK(cymem_pool_block_count(pool) == 1);
    if (fresh_block_on_grow) {
        CHECK(q != p);
    }
    if (q != p) {
        /* The old address is no longer a block of the pool. */
        prime_last_error(CYMEM_ERR_UNKNOWN_POINTER);
        CHECK(block_size_or_max(pool, p) == SIZE_MAX);
        CHECK(cymem_pool_free(pool, p) == CYMEM_ERR_UNKNOWN_POINTER);
        CHECK(cymem_last_error() == CYMEM_ERR_UNKNOWN_POINTER);
        prime_last_error(CYMEM_ERR_UNKNOWN_POINTER);
        CHECK(cymem_pool_realloc(pool, p, 100) == NULL);
        CHECK(cymem_last_error() == CYMEM_ERR_UNKNOWN_POINTER);
        CHECK(cymem_pool_size(pool) == 40);
    }

    /* Same size and smaller: refused, block intact. */
    memset(q + 16, 0x33, 24);
    prime_last_error(CYMEM_ERR_NOT_LARGER);
    CHECK(cymem_pool_realloc(pool, q, 40) == NULL);
    CHECK(cymem_last_error() == CYMEM_ERR_NOT_LARGER);
    CHECK(non_empty(cymem_last_error_message()));
    prime_last_error(CYMEM_ERR_NOT_LARGER);
    CHECK(cymem_pool_realloc(pool, q, 8) == NULL);
    CHECK(cymem_last_error() == CYMEM_ERR_NOT_LARGER);
    prime_last_error(CYMEM_ERR_NOT_LARGER);
    CHECK(cymem_pool_realloc(pool, q, 0) == NULL);
    CHECK(cymem_last_error() == CYMEM_ERR_NOT_LARGER);
    CHECK(all_bytes(q, 16, 0x5A) && all_bytes(q + 16, 24, 0x33));
    CHECK(block_size_or_max(pool, q) == 40);
    CHECK(cymem_pool_size(pool) == 40);
    CHECK(cymem_pool_block_count(pool) == 1);

    /* A big jump: 40 bytes to 1 MiB. */
    big = (unsigned char *)cymem_pool_realloc(pool, q, MIB);
    CHECK(big != NULL);
    if (big == NULL) {
        return;
    }
    CHECK(all_bytes(big, 16, 0x5A) && all_bytes(big + 16, 24, 0x33));
    CHECK(all_bytes(big + 40, MIB - 40, 0));
    CHECK(cymem_pool_size(pool) == MIB);
    CHECK(block_size_or_max(pool, big) == MIB);

    /* Unknown pointers: NULL, a stack address, a freed block. */
    prime_last_error(CYMEM_ERR_UNKNOWN_POINTER);
    CHECK(cymem_pool_realloc(pool, NULL, 10) == NULL);
    CHECK(cymem_last_error() == CYMEM_ERR_UNKNOWN_POINTER);
    prime_last_error(CYMEM_ERR_UNKNOWN_POINTER);
    CHECK(cymem_pool_realloc(pool, &before, 10) == NULL);
    CHECK(cymem_last_error() == CYMEM_ERR_UNKNOWN_POINTER);
    CHECK(contains(cymem_last_error_message(), "not a live block"));
    gone = cymem_pool_alloc(pool, 4, 1);
    CHECK(cymem_pool_free(pool, gone) == CYMEM_OK);
    prime_last_error(CYMEM_ERR_UNKNOWN_POINTER);
    CHECK(cymem_pool_realloc(pool, gone, 10) == NULL);
    CHECK(cymem_last_error() == CYMEM_ERR_UNKNOWN_POINTER);
    CHECK(cymem_pool_size(pool) == MIB);
    CHECK(cymem_pool_block_count(pool) == 1);

    /* A 0-byte block grows like any other. */
    z = (unsigned char *)cymem_pool_alloc(pool, 0, 1);
    CHECK(z != NULL);
    before = cymem_pool_size(pool);
    prime_last_error(CYMEM_ERR_NOT_LARGER);
    CHECK(cymem_pool_realloc(pool, z, 0) == NULL);
    CHECK(cymem_last_error() == CYMEM_ERR_NOT_LARGER);
    z = (unsigned char *)cymem_pool_realloc(pool, z, 100);
    CHECK(z != NULL);
    CHECK(z != NULL && all_bytes(z, 100, 0));
    CHECK(block_size_or_max(pool, z) == 100);
    CHECK(cymem_pool_size(pool) == before + 100);
    CHECK(cymem_pool_block_count(pool) == 2);

    CHECK(cymem_pool_free(pool, big) == CYMEM_OK);
    CHECK(cymem_pool_free(pool, z) == CYMEM_OK);
    CHECK(cymem_pool_size(pool) == 0);
    CHECK(cymem_pool_block_count(pool) == 0);
}

static void test_realloc(void)
{
    CymemPool *pool = new_pool();
    realloc_checks(pool, 0); /* system realloc may grow in place */
    cymem_pool_destroy(&pool);

    /* A malloc/free allocator always moves the block, and its fresh memory
     * is garbage, so both the move and the zeroed tail are really tested. */
    counting_reset();
    pool = cymem_pool_new_with_allocator(counting_malloc, counting_free);
    CHECK(pool != NULL);
    realloc_checks(pool, 1);
    cymem_pool_destroy(&pool);
    CHECK(g_mallocs == g_frees);
    CHECK(g_live_bytes == 0);
    CHECK(g_null_frees == 0);
}

static void test_block_size(void)
{
    CymemPool *pool = new_pool();
    void *p = cymem_pool_alloc(pool, 3, 7);
    int on_stack = 0;
    size_t size = 12345;

    CHECK(cymem_pool_block_size(pool, p, &size) == CYMEM_OK);
    CHECK(size == 21);

    size = 12345;
    prime_last_error(CYMEM_ERR_UNKNOWN_POINTER);
    CHECK(cymem_pool_block_size(pool, &on_stack, &size) == CYMEM_ERR_UNKNOWN_POINTER);
    CHECK(cymem_last_error() == CYMEM_ERR_UNKNOWN_POINTER);
    CHECK(contains(cymem_last_error_message(), "not a live block"));
    CHECK(size == 12345); /* not written on failure */
    prime_last_error(CYMEM_ERR_UNKNOWN_POINTER);
    CHECK(cymem_pool_block_size(pool, NULL, &size) == CYMEM_ERR_UNKNOWN_POINTER);
    CHECK(cymem_last_error() == CYMEM_ERR_UNKNOWN_POINTER);

    prime_last_error(CYMEM_ERR_NULL_ARGUMENT);
    CHECK(cymem_pool_block_size(pool, p, NULL) == CYMEM_ERR_NULL_ARGUMENT);
    CHECK(cymem_last_error() == CYMEM_ERR_NULL_ARGUMENT);
    CHECK(contains(cymem_last_error_message(), "size_out"));

    CHECK(cymem_pool_free(pool, p) == CYMEM_OK);
    prime_last_error(CYMEM_ERR_UNKNOWN_POINTER);
    CHECK(cymem_pool_block_size(pool, p, &size) == CYMEM_ERR_UNKNOWN_POINTER);
    CHECK(cymem_last_error() == CYMEM_ERR_UNKNOWN_POINTER);
    cymem_pool_destroy(&pool);
}

static void test_null_pool(void)
{
    CymemPool *pool = NULL;
    size_t size = 777;
    int local = 0;

    prime_last_error(CYMEM_ERR_NULL_ARGUMENT);
    CHECK(cymem_pool_alloc(NULL, 1, 1) == NULL);
    CHECK(cymem_last_error() == CYMEM_ERR_NULL_ARGUMENT);
    CHECK(contains(cymem_last_error_message(), "cymem_pool_alloc"));

    prime_last_error(CYMEM_ERR_NULL_ARGUMENT);
    CHECK(cymem_pool_realloc(NULL, &local, 10) == NULL);
    CHECK(cymem_last_error() == CYMEM_ERR_NULL_ARGUMENT);
    CHECK(contains(cymem_last_error_message(), "cymem_pool_realloc"));

    prime_last_error(CYMEM_ERR_NULL_ARGUMENT);
    CHECK(cymem_pool_free(NULL, &local) == CYMEM_ERR_NULL_ARGUMENT);
    CHECK(cymem_last_error() == CYMEM_ERR_NULL_ARGUMENT);
    CHECK(contains(cymem_last_error_message(), "cymem_pool_free"));

    prime_last_error(CYMEM_ERR_NULL_ARGUMENT);
    CHECK(cymem_pool_block_size(NULL, &local, &size) == CYMEM_ERR_NULL_ARGUMENT);
    CHECK(cymem_last_error() == CYMEM_ERR_NULL_ARGUMENT);
    CHECK(size == 777);
    prime_last_error(CYMEM_ERR_NULL_ARGUMENT);
    CHECK(cymem_pool_block_size(NULL, NULL, NULL) == CYMEM_ERR_NULL_ARGUMENT);
    CHECK(cymem_last_error() == CYMEM_ERR_NULL_ARGUMENT);

    prime_last_error(CYMEM_ERR_NULL_ARGUMENT);
    CHECK(cymem_pool_size(NULL) == 0);
    CHECK(cymem_last_error() == CYMEM_ERR_NULL_ARGUMENT);

    prime_last_error(CYMEM_ERR_NULL_ARGUMENT);
    CHECK(cymem_pool_block_count(NULL) == 0);
    CHECK(cymem_last_error() == CYMEM_ERR_NULL_ARGUMENT);

    /* A destroyed handle is NULL, so every call through it fails cleanly. */
    pool = cymem_pool_new();
    CHECK(cymem_pool_alloc(pool, 8, 8) != NULL);
    cymem_pool_destroy(&pool);
    CHECK(pool == NULL);
    prime_last_error(CYMEM_ERR_NULL_ARGUMENT);
    CHECK(cymem_pool_alloc(pool, 1, 1) == NULL);
    CHECK(cymem_last_error() == CYMEM_ERR_NULL_ARGUMENT);
    prime_last_error(CYMEM_ERR_NULL_ARGUMENT);
    CHECK(cymem_pool_free(pool, &local) == CYMEM_ERR_NULL_ARGUMENT);
    CHECK(cymem_last_error() == CYMEM_ERR_NULL_ARGUMENT);
    prime_last_error(CYMEM_ERR_NULL_ARGUMENT);
    CHECK(cymem_pool_realloc(pool, &local, 64) == NULL);
    CHECK(cymem_last_error() == CYMEM_ERR_NULL_ARGUMENT);
    CHECK(cymem_pool_size(pool) == 0);
    CHECK(cymem_pool_block_count(pool) == 0);
    cymem_pool_destroy(&pool); /* destroying it again is harmless */
    CHECK(pool == NULL);
}

static void test_new_with_allocator_errors(void)
{
    CymemPool *pool;

    prime_last_error(CYMEM_ERR_NULL_ARGUMENT);
    pool = cymem_pool_new_with_allocator(NULL, counting_free);
    CHECK(pool == NULL);
    CHECK(cymem_last_error() == CYMEM_ERR_NULL_ARGUMENT);
    CHECK(contains(cymem_last_error_message(), "malloc_fn"));

    prime_last_error(CYMEM_ERR_NULL_ARGUMENT);
    pool = cymem_pool_new_with_allocator(counting_malloc, NULL);
    CHECK(pool == NULL);
    CHECK(cymem_last_error() == CYMEM_ERR_NULL_ARGUMENT);
    CHECK(contains(cymem_last_error_message(), "free_fn"));

    prime_last_error(CYMEM_ERR_NULL_ARGUMENT);
    pool = cymem_pool_new_with_allocator(NULL, NULL);
    CHECK(pool == NULL);
    CHECK(cymem_last_error() == CYMEM_ERR_NULL_ARGUMENT);
}

static void test_counting_allocator(void)
{
    CymemPool *pool;
    unsigned char *a, *b, *c, *d, *z;
    size_t i;

    counting_reset();
    pool = cymem_pool_new_with_allocator(counting_malloc, counting_free);
    CHECK(pool != NULL);
    CHECK(g_mallocs == 0); /* creating a pool does not use the allocator */

    /* Zeroed even though counting_malloc returns GARBAGE bytes. */
    a = (unsigned char *)cymem_pool_alloc(pool, 100, 1);
    CHECK(a != NULL && all_bytes(a, 100, 0));
    b = (unsigned char *)cymem_pool_alloc(pool, 1, MIB);
    CHECK(b != NULL && all_bytes(b, MIB, 0));
    CHECK(g_mallocs == 2);
    CHECK(g_live_bytes == 100 + MIB);

    /* Freed memory is scribbled over by counting_free and likely reused. */
    for (i = 0; i < 16; i++) {
        unsigned char *p = (unsigned char *)cymem_pool_alloc(pool, 200, 1);
        CHECK(p != NULL && all_bytes(p, 200, 0));
        if (p != NULL) {
            memset(p, 0xEE, 200);
        }
        CHECK(cymem_pool_free(pool, p) == CYMEM_OK);
    }

    /* A mixed workload: allocs, frees, reallocs, 0-byte blocks. */
    c = (unsigned char *)cymem_pool_alloc(pool, 10, sizeof(int));
    CHECK(c != NULL);
    c = (unsigned char *)cymem_pool_realloc(pool, c, 80 * sizeof(int));
    CHECK(c != NULL && all_bytes(c, 80 * sizeof(int), 0));
    z = (unsigned char *)cymem_pool_alloc(pool, 0, 0);
    CHECK(z != NULL);
    z = (unsigned char *)cymem_pool_realloc(pool, z, 3);
    CHECK(z != NULL && all_bytes(z, 3, 0));
    d = (unsigned char *)cymem_pool_alloc(pool, 0, 8);
    CHECK(d != NULL);
    CHECK(cymem_pool_free(pool, a) == CYMEM_OK);
    CHECK(cymem_pool_free(pool, a) == CYMEM_ERR_UNKNOWN_POINTER);
    CHECK(cymem_pool_block_count(pool) == 4); /* b, c, z, d */
    CHECK(cymem_pool_size(pool) == MIB + 80 * sizeof(int) + 3);
    CHECK(g_mallocs - g_frees == 4);
    CHECK(g_live_bytes == MIB + 80 * sizeof(int) + 3 + 1); /* + d's 1 backing byte */

    /* Destroy with blocks still live: each goes back to counting_free. */
    cymem_pool_destroy(&pool);
    CHECK(pool == NULL);
    CHECK(g_mallocs > 0);
    CHECK(g_mallocs == g_frees);
    CHECK(g_live_bytes == 0);
    CHECK(g_null_frees == 0);
}

static void test_failing_allocator(void)
{
    CymemPool *pool;
    unsigned char *a, *b;
    size_t k;

    counting_reset();
    pool = cymem_pool_new_with_allocator(failing_malloc, counting_free);
    CHECK(pool != NULL);
    a = (unsigned char *)cymem_pool_alloc(pool, 32, 1);
    CHECK(a != NULL);
    if (a == NULL) {
        cymem_pool_destroy(&pool);
        return;
    }
    memset(a, 0x77, 32);

    /* alloc fails: NULL, OUT_OF_MEMORY, pool unchanged. */
    fail_next_malloc();
    prime_last_error(CYMEM_ERR_OUT_OF_MEMORY);
    CHECK(cymem_pool_alloc(pool, 64, 1) == NULL);
    CHECK(cymem_last_error() == CYMEM_ERR_OUT_OF_MEMORY);
    CHECK(contains(cymem_last_error_message(), "out of memory"));
    CHECK(cymem_pool_size(pool) == 32);
    CHECK(cymem_pool_block_count(pool) == 1);

    /* A failing 0-byte request fails the same way. */
    fail_next_malloc();
    prime_last_error(CYMEM_ERR_OUT_OF_MEMORY);
    CHECK(cymem_pool_alloc(pool, 0, 1) == NULL);
    CHECK(cymem_last_error() == CYMEM_ERR_OUT_OF_MEMORY);
    CHECK(cymem_pool_block_count(pool) == 1);

    /* realloc fails: NULL, OUT_OF_MEMORY, old block intact and still owned. */
    fail_next_malloc();
    prime_last_error(CYMEM_ERR_OUT_OF_MEMORY);
    CHECK(cymem_pool_realloc(pool, a, 4096) == NULL);
    CHECK(cymem_last_error() == CYMEM_ERR_OUT_OF_MEMORY);
    CHECK(all_bytes(a, 32, 0x77));
    CHECK(block_size_or_max(pool, a) == 32);
    CHECK(cymem_pool_size(pool) == 32);
    CHECK(cymem_pool_block_count(pool) == 1);

    /* The allocator recovers; so does the pool. */
    b = (unsigned char *)cymem_pool_realloc(pool, a, 4096);
    CHECK(b != NULL && all_bytes(b, 32, 0x77) && all_bytes(b + 32, 4096 - 32, 0));
    CHECK(cymem_pool_size(pool) == 4096);
    CHECK(cymem_pool_free(pool, b) == CYMEM_OK);
    cymem_pool_destroy(&pool);
    CHECK(g_mallocs == g_frees);
    CHECK(g_live_bytes == 0);

    /* Fault injection: make call k of a fixed workload fail, for every k.
     * Each step succeeds or fails with OUT_OF_MEMORY leaving its block as it
     * was, the accounting stays right, and nothing leaks. */
    for (k = 1; k <= 7; k++) {
        void *p, *q, *r;
        size_t expected = 0, failures = 0;

        counting_reset();
        g_fail_at = k;
        pool = cymem_pool_new_with_allocator(failing_malloc, counting_free);
        CHECK(pool != NULL);

        p = cymem_pool_alloc(pool, 10, 1);
        if (p != NULL) {
            expected += 10;
        } else {
            failures++;
            CHECK(cymem_last_error() == CYMEM_ERR_OUT_OF_MEMORY);
        }
        q = cymem_pool_alloc(pool, 0, 1);
        if (q == NULL) {
            failures++;
            CHECK(cymem_last_error() == CYMEM_ERR_OUT_OF_MEMORY);
        }
        if (p != NULL) {
            if (cymem_pool_realloc(pool, p, 1000) != NULL) {
                expected += 990;
            } else {
                failures++;
                CHECK(cymem_last_error() == CYMEM_ERR_OUT_OF_MEMORY);
                CHECK(block_size_or_max(pool, p) == 10);
            }
        }
        if (q != NULL) {
            if (cymem_pool_realloc(pool, q, 5) != NULL) {
                expected += 5;
            } else {
                failures++;
                CHECK(cymem_last_error() == CYMEM_ERR_OUT_OF_MEMORY);
                CHECK(block_size_or_max(pool, q) == 0);
            }
        }
        r = cymem_pool_alloc(pool, 7, 1);
        if (r != NULL) {
            expected += 7;
        } else {
            failures++;
            CHECK(cymem_last_error() == CYMEM_ERR_OUT_OF_MEMORY);
        }
        /* Exactly one failure if the workload reached call k, else none. */
        CHECK(failures == (g_failing_calls >= k ? 1u : 0u));
        CHECK(cymem_pool_size(pool) == expected);
        cymem_pool_destroy(&pool);
        CHECK(g_mallocs == g_frees);
        CHECK(g_live_bytes == 0);
    }
}

static void test_bad_allocator(void)
{
    CymemPool *pool;
    unsigned char *a, *b;

    g_arena_next = 0;
    g_arena_frees = 0;
    pool = cymem_pool_new_with_allocator(arena_malloc, arena_free);
    CHECK(pool != NULL);

    a = (unsigned char *)cymem_pool_alloc(pool, 8, 1);
    CHECK(a == g_arena[0].bytes);
    if (a == NULL) {
        cymem_pool_destroy(&pool);
        return;
    }

    /* The allocator hands out slot 0 again while it is live: refused. */
    prime_last_error(CYMEM_ERR_BAD_ALLOCATOR);
    CHECK(cymem_pool_alloc(pool, 8, 1) == NULL);
    CHECK(cymem_last_error() == CYMEM_ERR_BAD_ALLOCATOR);
    CHECK(contains(cymem_last_error_message(), "still a live block"));
    CHECK(cymem_pool_block_count(pool) == 1);
    CHECK(cymem_pool_size(pool) == 8);
    CHECK(block_size_or_max(pool, a) == 8);
    CHECK(g_arena_frees == 0); /* the duplicate was not freed (that would free a) */

    g_arena_next = 1;
    b = (unsigned char *)cymem_pool_alloc(pool, 8, 1);
    CHECK(b == g_arena[1].bytes);

    /* realloc(a) receives live slot 1: refused. The old block was already
     * released by the move, so the pool forgets it; b is still tracked. */
    prime_last_error(CYMEM_ERR_BAD_ALLOCATOR);
    CHECK(cymem_pool_realloc(pool, a, 16) == NULL);
    CHECK(cymem_last_error() == CYMEM_ERR_BAD_ALLOCATOR);
    CHECK(cymem_pool_block_count(pool) == 1);
    CHECK(cymem_pool_size(pool) == 8);
    CHECK(block_size_or_max(pool, a) == SIZE_MAX);
    CHECK(block_size_or_max(pool, b) == 8);
    CHECK(g_arena_frees == 1);

    cymem_pool_destroy(&pool);
    CHECK(g_arena_frees == 2); /* each slot released exactly once */
}

static void test_status_messages(void)
{
    static const CymemStatus codes[] = {
        CYMEM_OK, CYMEM_ERR_NULL_ARGUMENT, CYMEM_ERR_OUT_OF_MEMORY, CYMEM_ERR_SIZE_OVERFLOW,
        CYMEM_ERR_UNKNOWN_POINTER, CYMEM_ERR_NOT_LARGER, CYMEM_ERR_BAD_ALLOCATOR,
    };
    static const CymemStatus unknown[] = {7, 999, -1, INT32_MIN, INT32_MAX};
    const char *unknown_message = cymem_status_message(999);
    size_t i, j;

    CHECK(non_empty(unknown_message));
    for (i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        const char *msg = cymem_status_message(codes[i]);
        CHECK(non_empty(msg));
        /* Every known code has its own text, different from "unknown". */
        CHECK(msg != NULL && strcmp(msg, unknown_message) != 0);
        for (j = 0; j < i; j++) {
            CHECK(msg != NULL && strcmp(msg, cymem_status_message(codes[j])) != 0);
        }
    }
    for (i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        CHECK(non_empty(cymem_status_message(unknown[i])));
    }
    CHECK(contains(cymem_status_message(CYMEM_ERR_UNKNOWN_POINTER), "not a live block"));

    /* The detailed message carries the numbers of the failed call. */
    {
        CymemPool *pool = cymem_pool_new();
        prime_last_error(CYMEM_ERR_SIZE_OVERFLOW);
        CHECK(cymem_pool_alloc(pool, SIZE_MAX, 3) == NULL);
        CHECK(cymem_last_error() == CYMEM_ERR_SIZE_OVERFLOW);
        CHECK(contains(cymem_last_error_message(), "x 3"));
        cymem_pool_destroy(&pool);
    }
}

static void *fresh_thread_errors(void *arg)
{
    CymemPool *pool = (CymemPool *)arg;
    int local = 0;

    /* A new thread starts with no error, whatever the main thread did. */
    CHECK(cymem_last_error() == CYMEM_OK);
    CHECK(non_empty(cymem_last_error_message()));
    CHECK(cymem_pool_free(pool, &local) == CYMEM_ERR_UNKNOWN_POINTER);
    CHECK(cymem_last_error() == CYMEM_ERR_UNKNOWN_POINTER);
    return NULL;
}

static void test_last_error_is_per_thread(void)
{
    CymemPool *pool = cymem_pool_new();
    pthread_t thread;

    CHECK(cymem_pool_alloc(pool, SIZE_MAX, 2) == NULL);
    CHECK(cymem_last_error() == CYMEM_ERR_SIZE_OVERFLOW);
    CHECK(pthread_create(&thread, NULL, fresh_thread_errors, pool) == 0);
    CHECK(pthread_join(thread, NULL) == 0);
    /* The thread's error did not leak into this thread. */
    CHECK(cymem_last_error() == CYMEM_ERR_SIZE_OVERFLOW);
    CHECK(contains(cymem_last_error_message(), "overflow"));
    cymem_pool_destroy(&pool);
}

typedef struct {
    CymemPool *pool;
    unsigned char tag;     /* this thread's fill byte */
    unsigned long iterations;
    unsigned long errors;  /* counted here, CHECKed by the main thread */
} Hammer;

static void *hammer(void *arg)
{
    enum { WINDOW = 32 };
    Hammer *h = (Hammer *)arg;
    unsigned char *live[WINDOW];
    size_t sizes[WINDOW];
    unsigned long i;
    uint32_t rng = 2463534242u ^ h->tag;
    size_t slot;

    for (slot = 0; slot < WINDOW; slot++) {
        live[slot] = NULL;
        sizes[slot] = 0;
    }
    for (i = 0; i < h->iterations; i++) {
        unsigned char *p;
        size_t size;

        slot = i % WINDOW;
        if (live[slot] != NULL) {
            /* Nobody else wrote into our block. */
            if (!all_bytes(live[slot], sizes[slot], h->tag)) {
                h->errors++;
            }
            if (cymem_pool_free(h->pool, live[slot]) != CYMEM_OK) {
                h->errors++;
            }
            live[slot] = NULL;
        }
        rng ^= rng << 13;
        rng ^= rng >> 17;
        rng ^= rng << 5;
        size = rng % 97; /* 0..96, 0-byte blocks included */
        p = (unsigned char *)cymem_pool_alloc(h->pool, size, 1);
        if (p == NULL || !all_bytes(p, size, 0)) {
            h->errors++;
            continue;
        }
        memset(p, h->tag, size);
        if (i % 8 == 0) {
            unsigned char *grown = (unsigned char *)cymem_pool_realloc(h->pool, p, size + 32);
            if (grown == NULL || !all_bytes(grown, size, h->tag) || !all_bytes(grown + size, 32, 0)) {
                h->errors++;
                if (grown == NULL) {
                    cymem_pool_free(h->pool, p);
                    continue;
                }
            }
            p = grown;
            size += 32;
            memset(p, h->tag, size);
        }
        live[slot] = p;
        sizes[slot] = size;
    }
    for (slot = 0; slot < WINDOW; slot++) {
        if (live[slot] != NULL && cymem_pool_free(h->pool, live[slot]) != CYMEM_OK) {
            h->errors++;
        }
    }
    return NULL;
}

static void test_threads(void)
{
    enum { THREADS = 2 };
    CymemPool *pool = new_pool();
    pthread_t threads[THREADS];
    Hammer work[THREADS];
    int started[THREADS];
    size_t t;

    for (t = 0; t < THREADS; t++) {
        work[t].pool = pool;
        work[t].tag = (unsigned char)(0xC0 + t);
        work[t].iterations = 100000;
        work[t].errors = 0;
        started[t] = pthread_create(&threads[t], NULL, hammer, &work[t]) == 0;
        CHECK(started[t]);
    }
    for (t = 0; t < THREADS; t++) {
        if (started[t]) {
            CHECK(pthread_join(threads[t], NULL) == 0);
        }
        CHECK(work[t].errors == 0);
    }
    CHECK(cymem_pool_size(pool) == 0);
    CHECK(cymem_pool_block_count(pool) == 0);
    cymem_pool_destroy(&pool);
}

int main(void)
{
    int mode;

    test_abi_version();
    for (mode = 0; mode < 2; mode++) {
        new_pool = mode == 0 ? cymem_pool_new : cymem_pool_new_arena;
        test_new_and_destroy();
        test_alloc_zeroed();
        test_zero_byte_blocks();
        test_size_overflow();
        test_free_errors();
        test_realloc();
        test_block_size();
        test_threads();
    }
    new_pool = cymem_pool_new;
    test_null_pool();
    test_new_with_allocator_errors();
    test_counting_allocator();
    test_failing_allocator();
    test_bad_allocator();
    test_status_messages();
    test_last_error_is_per_thread();

    return check_summary();
}
