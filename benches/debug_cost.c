/*
 * Instruction counts of debug mode through the C ABI, for callgrind (exact
 * and repeatable on a busy machine, unlike wall time):
 *
 *   cc -O2 -Iinclude benches/debug_cost.c target/release/libcymem_rs.a \
 *      -lpthread -ldl -lm -o build/debug_cost
 *   for w in pair pools; do for mode in normal debug; do for n in 0 100000; do
 *     valgrind --tool=callgrind --callgrind-out-file=/dev/null \
 *       build/debug_cost $w $mode $n 2>&1 | grep 'Collected'; done; done; done
 *
 * Ir per operation = (Ir(n) - Ir(0)) / n. Workloads: `pair` is n alloc(1, 64)
 * + free pairs on a pool holding 1000 live blocks; `pools` is n pools, each
 * created, given 10 blocks of 16..512 bytes, and destroyed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cymem_rs.h"

/* Built against an older header (to price the normal path before debug
   mode existed), "debug" falls back to a normal pool. */
#ifdef CYMEM_ERR_CORRUPTED
#define NEW_DEBUG_POOL cymem_pool_new_debug
#else
#define NEW_DEBUG_POOL cymem_pool_new
#endif

int main(int argc, char **argv)
{
    static const size_t sizes[10] = {16, 32, 48, 64, 96, 128, 192, 256, 384, 512};
    int debug, pairs;
    long n, i;
    int j;
    CymemPool *pool;
    if (argc != 4) {
        fprintf(stderr, "usage: %s pair|pools normal|debug N\n", argv[0]);
        return 2;
    }
    pairs = strcmp(argv[1], "pair") == 0;
    debug = strcmp(argv[2], "debug") == 0;
    n = atol(argv[3]);
    pool = debug ? NEW_DEBUG_POOL() : cymem_pool_new();
    for (i = 0; i < 1000; i++) cymem_pool_alloc(pool, 1, 64);
    for (i = 0; pairs && i < n; i++) {
        void *p = cymem_pool_alloc(pool, 1, 64);
        if (cymem_pool_free(pool, p) != CYMEM_OK) return 1;
    }
    cymem_pool_destroy(&pool);
    for (i = 0; !pairs && i < n; i++) {
        CymemPool *small = debug ? NEW_DEBUG_POOL() : cymem_pool_new();
        for (j = 0; j < 10; j++) cymem_pool_alloc(small, 1, sizes[j]);
        cymem_pool_destroy(&small);
    }
    return 0;
}
