/*
 * C tests of the process-wide peak (include/cymem_rs.h): cymem_peak_report
 * against known allocation sequences, from one thread and from several,
 * its snprintf rules, cymem_reset_peak, and the report in a forked child.
 * This program is alone in its process, so the figures are exact: every
 * block here is at least CYMEM_PEAK_STEP bytes and is counted at once.
 *
 * Prints "N passed, M failed"; exit status 1 if any check failed.
 */

#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cymem_rs.h"

#include "check.h"

#define KIB ((size_t)1024)

/* The peak report, in a buffer the caller frees. */
static char *peak_text(void)
{
    size_t n = cymem_peak_report(NULL, 0);
    char *text = (char *)malloc(n + 1);
    CHECK(cymem_peak_report(text, n + 1) == n);
    CHECK(strlen(text) == n);
    return text;
}

/* The heading's figures: "peak 1.5 MiB (1572864 bytes, ...), now ... (N bytes)". */
static void heading(const char *text, size_t *peak, size_t *now)
{
    const char *p = strchr(text, '(');
    const char *n = strstr(text, "), now ");
    *peak = 0;
    *now = 0;
    CHECK(p != NULL && n != NULL);
    if (p == NULL || n == NULL) {
        return;
    }
    CHECK(sscanf(p, "(%zu bytes", peak) == 1);
    n = strchr(n + 1, '(');
    CHECK(n != NULL && sscanf(n, "(%zu bytes", now) == 1);
}

/* The row of the pool called `name`: its bytes, blocks, mode and state; 1 if found. */
static int row(const char *text, const char *name, size_t *bytes, size_t *blocks, char *mode,
               char *state)
{
    const char *line = text;
    while ((line = strchr(line, '\n')) != NULL) {
        char found[64];
        line++;
        if (sscanf(line, "%zu %zu %15s %15s %63s", bytes, blocks, mode, state, found) == 5 &&
            strcmp(found, name) == 0) {
            return 1;
        }
    }
    return 0;
}

static void test_a_known_sequence(void)
{
    CymemPool *heap = cymem_pool_new_named("c-heap");
    CymemPool *arena = cymem_pool_new_arena();
    void *blocks[4];
    size_t peak, now, bytes, blocks_n, i, base;
    char mode[16], state[16], *text;
    cymem_reset_peak();
    text = peak_text();
    heading(text, &peak, &base);
    free(text);
    CHECK(cymem_pool_set_name(arena, "c-arena") == CYMEM_OK);
    for (i = 0; i < 4; i++) {
        blocks[i] = cymem_pool_alloc(heap, 1, 256 * KIB);
    }
    CHECK(cymem_pool_alloc(arena, 1, 512 * KIB) != NULL);
    for (i = 0; i < 4; i++) {
        CHECK(cymem_pool_free(heap, blocks[i]) == CYMEM_OK);
    }
    text = peak_text();
    heading(text, &peak, &now);
    CHECK(peak == base + 1536 * KIB);
    CHECK(now == base + 512 * KIB);
    CHECK(row(text, "c-heap", &bytes, &blocks_n, mode, state));
    CHECK(bytes == 1024 * KIB && blocks_n == 4);
    CHECK(strcmp(mode, "heap") == 0 && strcmp(state, "live") == 0);
    CHECK(row(text, "c-arena", &bytes, &blocks_n, mode, state));
    CHECK(bytes == 512 * KIB && blocks_n == 1 && strcmp(mode, "arena") == 0);
    free(text);

    /* A destroyed pool still held its bytes at the peak. */
    cymem_pool_destroy(&heap);
    cymem_pool_destroy(&arena);
    text = peak_text();
    CHECK(row(text, "c-heap", &bytes, &blocks_n, mode, state));
    CHECK(bytes == 1024 * KIB && strcmp(state, "dropped") == 0);
    heading(text, &peak, &now);
    CHECK(now == base);
    free(text);

    /* A reset starts from what is held now: nothing of these pools. */
    cymem_reset_peak();
    text = peak_text();
    heading(text, &peak, &now);
    CHECK(peak == base && now == base);
    CHECK(!row(text, "c-heap", &bytes, &blocks_n, mode, state));
    free(text);
}

#define THREADS 4
static pthread_barrier_t g_all_hold;

static void *hold_then_release(void *arg)
{
    char name[32];
    CymemPool *pool;
    int i;
    snprintf(name, sizeof name, "c-thread-%d", (int)(size_t)arg);
    pool = cymem_pool_new_named(name);
    for (i = 0; i < 8; i++) {
        CHECK(cymem_pool_alloc(pool, 1, 128 * KIB) != NULL);
    }
    pthread_barrier_wait(&g_all_hold);
    cymem_pool_destroy(&pool);
    return NULL;
}

static void test_threads_holding_at_once(void)
{
    pthread_t threads[THREADS];
    size_t peak, base, now, bytes, blocks, i;
    char mode[16], state[16], name[32], *text;
    cymem_reset_peak();
    text = peak_text();
    heading(text, &peak, &base);
    free(text);
    pthread_barrier_init(&g_all_hold, NULL, THREADS);
    for (i = 0; i < THREADS; i++) {
        CHECK(pthread_create(&threads[i], NULL, hold_then_release, (void *)i) == 0);
    }
    for (i = 0; i < THREADS; i++) {
        pthread_join(threads[i], NULL);
    }
    pthread_barrier_destroy(&g_all_hold);
    text = peak_text();
    heading(text, &peak, &now);
    CHECK(peak == base + THREADS * 1024 * KIB);
    CHECK(now == base);
    for (i = 0; i < THREADS; i++) {
        snprintf(name, sizeof name, "c-thread-%d", (int)i);
        CHECK(row(text, name, &bytes, &blocks, mode, state));
        CHECK(bytes == 1024 * KIB && blocks == 8 && strcmp(state, "dropped") == 0);
    }
    free(text);
}

static void test_snprintf_rules(void)
{
    size_t n = cymem_peak_report(NULL, 0);
    char small[8];
    memset(small, 'x', sizeof small);
    CHECK(n > 0);
    CHECK(cymem_peak_report(small, sizeof small) == n);
    CHECK(small[7] == '\0' && strncmp(small, "peak ", 5) == 0);
    small[0] = 'x';
    CHECK(cymem_peak_report(small, 0) == n && small[0] == 'x');
}

static void test_a_forked_child(void)
{
    pid_t child;
    int status = -1;
    CymemPool *held = cymem_pool_new_named("c-before-fork");
    CHECK(cymem_pool_alloc(held, 1, 256 * KIB) != NULL);
    child = fork();
    if (child == 0) {
        /* The child: its own copy of the counters, and a working report. */
        CymemPool *pool = cymem_pool_new_named("c-in-child");
        size_t peak, now, bytes, blocks;
        char mode[16], state[16], *text;
        int ok;
        cymem_reset_peak();
        ok = cymem_pool_alloc(pool, 1, 1024 * KIB) != NULL;
        cymem_pool_destroy(&pool);
        text = peak_text();
        heading(text, &peak, &now);
        ok = ok && row(text, "c-in-child", &bytes, &blocks, mode, state) && bytes == 1024 * KIB;
        ok = ok && peak == now + 1024 * KIB;
        ok = ok && row(text, "c-before-fork", &bytes, &blocks, mode, state) && bytes == 256 * KIB;
        free(text);
        _exit(ok ? 0 : 1);
    }
    CHECK(child > 0);
    CHECK(waitpid(child, &status, 0) == child);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    cymem_pool_destroy(&held);
}

int main(void)
{
    test_a_known_sequence();
    test_threads_holding_at_once();
    test_snprintf_rules();
    test_a_forked_child();
    return check_summary();
}
