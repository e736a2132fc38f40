/*
 * The C tests' one assertion macro: CHECK(expr) records a pass or a failure
 * (printing the failed expression with its file and line) and keeps going,
 * from any thread; check_summary() prints "N passed, M failed" and gives
 * the exit status (1 if any check failed).
 */
#ifndef CYMEM_RS_TESTS_CHECK_H
#define CYMEM_RS_TESTS_CHECK_H

#include <pthread.h>
#include <stdio.h>

static pthread_mutex_t g_check_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned long g_passed;
static unsigned long g_failed;

static int check_impl(int ok, const char *expr, const char *file, int line)
{
    pthread_mutex_lock(&g_check_lock);
    if (ok) {
        g_passed++;
    } else {
        g_failed++;
        fprintf(stderr, "%s:%d: CHECK failed: %s\n", file, line, expr);
    }
    pthread_mutex_unlock(&g_check_lock);
    return ok;
}

#define CHECK(expr) check_impl((expr) ? 1 : 0, #expr, __FILE__, __LINE__)

static int check_summary(void)
{
    printf("%lu passed, %lu failed\n", g_passed, g_failed);
    return g_failed == 0 ? 0 : 1;
}

#endif
