/*
 * C tests of statistics and the live-pool report (include/cymem_rs.h):
 * cymem_pool_stats, cymem_pool_reset_peak, names, origins, cymem_live_pools
 * and cymem_report, their NULL and truncation rules, and reports racing
 * with pools made and destroyed on other threads.
 *
 * Prints "N passed, M failed"; exit status 1 if any check failed.
 */

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cymem_rs.h"

#include "check.h"
#include "live_pools.h"

static CymemPoolStats stats_of(const CymemPool *pool)
{
    CymemPoolStats s;
    memset(&s, 0xAB, sizeof s);
    CHECK(cymem_pool_stats(pool, &s) == CYMEM_OK);
    return s;
}

static void test_counters_follow_every_operation(CymemPool *(*make)(void))
{
    CymemPool *pool = make();
    CymemPoolStats s = stats_of(pool);
    void *a, *b;
    int local = 0;

    CHECK(s.size == 0 && s.peak_size == 0 && s.block_count == 0);
    CHECK(s.total_allocs == 0 && s.total_frees == 0 && s.total_reallocs == 0);

    a = cymem_pool_alloc(pool, 10, 10);
    b = cymem_pool_alloc(pool, 1, 300);
    s = stats_of(pool);
    CHECK(s.size == 400 && s.peak_size == 400 && s.block_count == 2);
    CHECK(s.total_allocs == 2 && s.total_frees == 0);

    CHECK(cymem_pool_free(pool, b) == CYMEM_OK);
    a = cymem_pool_realloc(pool, a, 1000);
    CHECK(a != NULL);
    s = stats_of(pool);
    CHECK(s.size == 1000 && s.peak_size == 1000 && s.block_count == 1);
    CHECK(s.total_allocs == 2 && s.total_frees == 1 && s.total_reallocs == 1);

    /* Failures count nothing. */
    CHECK(cymem_pool_free(pool, &local) == CYMEM_ERR_UNKNOWN_POINTER);
    CHECK(cymem_pool_free(pool, b) == CYMEM_ERR_UNKNOWN_POINTER);
    CHECK(cymem_pool_realloc(pool, a, 10) == NULL);
    CHECK(cymem_pool_alloc(pool, SIZE_MAX, 2) == NULL);
    s = stats_of(pool);
    CHECK(s.size == 1000 && s.total_allocs == 2 && s.total_frees == 1 && s.total_reallocs == 1);

    /* The peak keeps the high-water mark until reset. */
    CHECK(cymem_pool_free(pool, a) == CYMEM_OK);
    s = stats_of(pool);
    CHECK(s.size == 0 && s.peak_size == 1000);
    CHECK(cymem_pool_reset_peak(pool) == CYMEM_OK);
    CHECK(stats_of(pool).peak_size == 0);
    a = cymem_pool_alloc(pool, 1, 64);
    CHECK(stats_of(pool).peak_size == 64);
    CHECK(cymem_pool_size(pool) == stats_of(pool).size);
    cymem_pool_destroy(&pool);
}

static void test_null_arguments_are_reported(void)
{
    CymemPool *pool = cymem_pool_new();
    CymemPoolStats s;
    char buf[8];
    CHECK(cymem_pool_stats(NULL, &s) == CYMEM_ERR_NULL_ARGUMENT);
    CHECK(cymem_last_error() == CYMEM_ERR_NULL_ARGUMENT);
    CHECK(cymem_pool_stats(pool, NULL) == CYMEM_ERR_NULL_ARGUMENT);
    CHECK(strstr(cymem_last_error_message(), "out") != NULL);
    CHECK(cymem_pool_reset_peak(NULL) == CYMEM_ERR_NULL_ARGUMENT);
    CHECK(cymem_pool_set_name(NULL, "x") == CYMEM_ERR_NULL_ARGUMENT);
    CHECK(cymem_pool_set_origin(NULL, "x.c", 1) == CYMEM_ERR_NULL_ARGUMENT);
    CHECK(cymem_pool_name(NULL, buf, sizeof buf) == 0);
    /* Counting calls: NULL buffers with size / capacity 0. */
    CHECK(cymem_pool_name(pool, NULL, 0) == 0);
    CHECK(cymem_live_pools(NULL, 0) >= 1);
    CHECK(cymem_report(NULL, 0) > 0);
    cymem_pool_destroy(&pool);
}

static void test_names_and_origins_show_in_the_list(void)
{
    CymemPool *named = cymem_pool_new_named("c-stats-named");
    CymemPool *arena = cymem_pool_new_arena();
    CymemPoolInfo info;
    char buf[64], expected[128];
    unsigned line;

    CHECK(cymem_pool_alloc(named, 4, 256) != NULL);
    CHECK(find_pool("c-stats-named", &info));
    CHECK(info.stats.size == 1024 && info.stats.block_count == 1 && !info.is_arena);
    CHECK(strcmp(info.origin, "C") == 0);

    CHECK(cymem_pool_name(named, buf, sizeof buf) == strlen("c-stats-named"));
    CHECK(strcmp(buf, "c-stats-named") == 0);
    /* snprintf rule: truncated, NUL-terminated, full length returned. */
    CHECK(cymem_pool_name(named, buf, 5) == strlen("c-stats-named"));
    CHECK(strcmp(buf, "c-st") == 0);

    CHECK(cymem_pool_set_name(arena, "c-stats-arena") == CYMEM_OK);
    line = __LINE__ + 1;
    CHECK(CYMEM_POOL_SET_ORIGIN_HERE(arena) == CYMEM_OK);
    CHECK(find_pool("c-stats-arena", &info));
    CHECK(info.is_arena == 1);
    sprintf(expected, "%s:%u", __FILE__, line);
    CHECK(strcmp(info.origin, expected) == 0);

    /* Renaming to NULL: unnamed ("" in the list). */
    CHECK(cymem_pool_set_name(arena, NULL) == CYMEM_OK);
    CHECK(!find_pool("c-stats-arena", &info));
    CHECK(cymem_pool_name(arena, buf, sizeof buf) == 0 && buf[0] == '\0');

    cymem_pool_destroy(&named);
    CHECK(!find_pool("c-stats-named", &info));
    cymem_pool_destroy(&arena);
}

static void test_long_names_are_truncated_safely(void)
{
    char name[300];
    CymemPool *pool;
    CymemPoolInfo info;
    size_t i;
    for (i = 0; i < sizeof name - 1; i++) {
        name[i] = (char)('a' + i % 26);
    }
    name[sizeof name - 1] = '\0';
    pool = cymem_pool_new_named(name);
    name[CYMEM_POOL_NAME_SIZE - 1] = '\0';
    CHECK(find_pool(name, &info));
    CHECK(strlen(info.name) == CYMEM_POOL_NAME_SIZE - 1);
    cymem_pool_destroy(&pool);
}

static void test_list_is_sorted_and_respects_capacity(void)
{
    CymemPool *small = cymem_pool_new_named("c-stats-small");
    CymemPool *big = cymem_pool_new_named("c-stats-big");
    CymemPoolInfo two[2];
    size_t total, i, n;
    CymemPoolInfo *all;
    CHECK(cymem_pool_alloc(small, 1, 10) != NULL);
    CHECK(cymem_pool_alloc(big, 1, 100000) != NULL);

    memset(two, 0x5A, sizeof two);
    total = cymem_live_pools(two, 1);
    CHECK(total >= 2);
    CHECK((unsigned char)two[1].name[0] == 0x5A); /* nothing past capacity */

    n = cymem_live_pools(NULL, 0);
    all = (CymemPoolInfo *)calloc(n, sizeof *all);
    total = cymem_live_pools(all, n);
    for (i = 1; i < total && i < n; i++) {
        CHECK(all[i - 1].stats.size >= all[i].stats.size);
    }
    free(all);
    cymem_pool_destroy(&small);
    cymem_pool_destroy(&big);
}

static void test_report_is_a_table_with_snprintf_semantics(void)
{
    CymemPool *pool = cymem_pool_new_named("c-stats-report");
    size_t len, again;
    char *text, small[16];
    const char *row;
    unsigned long bytes, peak, blocks;

    CHECK(cymem_pool_alloc(pool, 3, 1000) != NULL);
    len = cymem_report(NULL, 0);
    text = (char *)malloc(len + 1);
    again = cymem_report(text, len + 1);
    CHECK(again == len);
    CHECK(strlen(text) == len);
    CHECK(strncmp(text, "bytes", 5) == 0 || strstr(text, "bytes") < strstr(text, "\n"));
    row = strstr(text, "c-stats-report");
    CHECK(row != NULL);
    if (row != NULL) {
        while (row > text && row[-1] != '\n') {
            row--;
        }
        CHECK(sscanf(row, "%lu %lu %lu", &bytes, &peak, &blocks) == 3);
        CHECK(bytes == 3000 && peak == 3000 && blocks == 1);
    }
    CHECK(strstr(text, "live pool") != NULL);

    CHECK(cymem_report(small, sizeof small) == len);
    CHECK(strlen(small) == sizeof small - 1);
    CHECK(strncmp(small, text, sizeof small - 1) == 0);
    free(text);
    cymem_pool_destroy(&pool);
}

/* Pools made, filled and destroyed on worker threads while this thread lists
 * and reports: no crash, no dropped pool seen, counters within bounds. */
static void *churn(void *arg)
{
    int round, i;
    (void)arg;
    for (round = 0; round < 300; round++) {
        CymemPool *pool = cymem_pool_new_named("c-stats-churn");
        for (i = 1; i <= 8; i++) {
            cymem_pool_alloc(pool, (size_t)i, 16);
        }
        cymem_pool_destroy(&pool);
    }
    return NULL;
}

static void test_reports_race_safely_with_create_and_destroy(void)
{
    pthread_t threads[3];
    int t, k, bad = 0;
    CymemPoolInfo infos[64];
    char buf[4096];
    for (t = 0; t < 3; t++) {
        CHECK(pthread_create(&threads[t], NULL, churn, NULL) == 0);
    }
    for (k = 0; k < 300; k++) {
        size_t n = cymem_live_pools(infos, 64), i;
        for (i = 0; i < n && i < 64; i++) {
            if (strcmp(infos[i].name, "c-stats-churn") == 0
                && (infos[i].stats.size > 36 * 16 || infos[i].stats.block_count > 8)) {
                bad++;
            }
        }
        cymem_report(buf, sizeof buf);
    }
    for (t = 0; t < 3; t++) {
        CHECK(pthread_join(threads[t], NULL) == 0);
    }
    CHECK(bad == 0);
    {
        CymemPoolInfo info;
        CHECK(!find_pool("c-stats-churn", &info));
    }
}

int main(void)
{
    test_counters_follow_every_operation(cymem_pool_new);
    test_counters_follow_every_operation(cymem_pool_new_arena);
    test_null_arguments_are_reported();
    test_names_and_origins_show_in_the_list();
    test_long_names_are_truncated_safely();
    test_list_is_sorted_and_respects_capacity();
    test_report_is_a_table_with_snprintf_semantics();
    test_reports_race_safely_with_create_and_destroy();
    return check_summary();
}
