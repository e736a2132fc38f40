/*
 * Finding a pool by name among the live pools (cymem_live_pools), for the
 * C tests that check how a pool is listed.
 */
#ifndef CYMEM_RS_TESTS_LIVE_POOLS_H
#define CYMEM_RS_TESTS_LIVE_POOLS_H

#include <stdlib.h>
#include <string.h>

#include "cymem_rs.h"

/* The entry named `name` among the live pools, copied into *out; 1 if found. */
static int find_pool(const char *name, CymemPoolInfo *out)
{
    size_t n = cymem_live_pools(NULL, 0), count, i;
    CymemPoolInfo *all = (CymemPoolInfo *)calloc(n + 8, sizeof *all);
    int found = 0;
    count = cymem_live_pools(all, n + 8);
    for (i = 0; i < count && i < n + 8; i++) {
        if (strcmp(all[i].name, name) == 0) {
            *out = all[i];
            found = 1;
        }
    }
    free(all);
    return found;
}

#endif
