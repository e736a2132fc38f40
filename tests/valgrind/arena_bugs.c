/* Memory bugs in arena pools, on purpose: run.sh runs each under valgrind
 * and passes only if valgrind reports it with the block's allocation stack.
 *
 *   arena_bugs overrun          reads one byte past a 24-byte arena block
 *   arena_bugs use-after-free   reads a 24-byte arena block after freeing it
 *   arena_bugs use-after-clear  reads one after cymem_pool_clear()
 *   arena_bugs leaked-pool      drops the only pointer to an arena pool that
 *                               holds a 4321-byte block
 *
 * Natively every case "works" (the bytes read are inside the arena's chunk),
 * which is why a memory checker has to be told where arena blocks are. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "cymem_rs.h"

#define BLOCK_BYTES 24
#define LEAKED_BYTES 4321

/* Keeps the compiler from dropping the reads. */
static volatile uint8_t sink;
/* Where the leaked pool's address goes: an integer the leak checker does not
 * see as a pointer (it is scrambled). */
static volatile uintptr_t scrambled;

static uint8_t *arena_block(CymemPool **pool) {
    *pool = cymem_pool_new_arena();
    /* Two neighbours, so the bad read lands inside the arena's chunk. */
    void *before = cymem_pool_alloc(*pool, 1, BLOCK_BYTES);
    uint8_t *block = cymem_pool_alloc(*pool, 1, BLOCK_BYTES);
    void *after = cymem_pool_alloc(*pool, 1, BLOCK_BYTES);
    if (*pool == NULL || before == NULL || block == NULL || after == NULL) {
        fprintf(stderr, "allocation failed\n");
        return NULL;
    }
    return block;
}

static int overrun(void) {
    CymemPool *pool;
    uint8_t *block = arena_block(&pool);
    if (block == NULL) return 1;
    sink = block[BLOCK_BYTES];
    printf("BUG: read byte %d of a %d-byte arena block\n", BLOCK_BYTES, BLOCK_BYTES);
    cymem_pool_destroy(&pool);
    return 0;
}

static int use_after_free(void) {
    CymemPool *pool;
    uint8_t *block = arena_block(&pool);
    if (block == NULL) return 1;
    if (cymem_pool_free(pool, block) != CYMEM_OK) return 1;
    sink = block[8];
    printf("BUG: read byte 8 of a freed %d-byte arena block\n", BLOCK_BYTES);
    cymem_pool_destroy(&pool);
    return 0;
}

static int use_after_clear(void) {
    CymemPool *pool;
    uint8_t *block = arena_block(&pool);
    if (block == NULL) return 1;
    if (cymem_pool_clear(pool) != CYMEM_OK) return 1;
    sink = block[8];
    printf("BUG: read byte 8 of a %d-byte arena block after clear\n", BLOCK_BYTES);
    cymem_pool_destroy(&pool);
    return 0;
}

static int leaked_pool(void) {
    CymemPool *pool = cymem_pool_new_arena();
    uint8_t *block = cymem_pool_alloc(pool, 1, LEAKED_BYTES);
    if (pool == NULL || block == NULL) return 1;
    memset(block, 0x5A, LEAKED_BYTES);
    scrambled = ~(uintptr_t)pool;
    pool = NULL;
    block = NULL;
    printf("BUG: leaked an arena pool holding a %d-byte block\n", LEAKED_BYTES);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "overrun") == 0) return overrun();
    if (argc == 2 && strcmp(argv[1], "use-after-free") == 0) return use_after_free();
    if (argc == 2 && strcmp(argv[1], "use-after-clear") == 0) return use_after_clear();
    if (argc == 2 && strcmp(argv[1], "leaked-pool") == 0) return leaked_pool();
    fprintf(stderr, "usage: %s overrun|use-after-free|use-after-clear|leaked-pool\n", argv[0]);
    return 2;
}
