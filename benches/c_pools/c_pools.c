/*
 * cymem_rs's C library beside the C pool libraries a C programmer would pick
 * instead: libc (calloc/free), talloc, APR pools and mimalloc heaps. One
 * process, shuffled interleaved rounds, CPU time per operation
 * (CLOCK_PROCESS_CPUTIME_ID), medians over rounds and medians of per-round
 * ratios. Built and run by benches/c_pools/run.sh, which compiles in each
 * peer that pkg-config (or the compiler) finds: -DHAVE_TALLOC, -DHAVE_APR,
 * -DHAVE_MIMALLOC with -DMIMALLOC_SO="path"; -DHAVE_UNLOCKED_POOLS when the
 * header has the unlocked constructors.
 *
 *   c_pools time [--rounds R] [--ir FILE] [--machine TEXT] [--json F] [--md F]
 *   c_pools list-ir                  cells whose Ir run.sh measures
 *   c_pools ir WORKLOAD COLUMN N     N operations, untimed (for callgrind)
 *
 * Workloads: pair = zeroed alloc(64) + free on a pool holding 1000 live
 * blocks (per pair); bulk = new pool, 1M zeroed allocs of 16..512 B, destroy
 * (per alloc); small = new pool, 10 zeroed allocs of 64 B, destroy (per pool).
 */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cymem_rs.h"
#ifdef HAVE_TALLOC
#include <talloc.h>
#endif
#ifdef HAVE_APR
#include <apr_general.h>
#include <apr_pools.h>
#endif
#ifdef HAVE_MIMALLOC
#include <dlfcn.h>
#include <mimalloc.h> /* its types; the functions are loaded (see load_mimalloc) */
#endif

enum { PAIR, BULK, SMALL, NWORK };
enum { LIBC, HEAP, HEAP_UNLOCKED, ARENA, ARENA_UNLOCKED, TALLOC, APR, MIMALLOC, NCOL };

static const char *const work_key[NWORK] = {"pair", "bulk", "small"};
static const char *const work_title[NWORK] = {
    "pair: zeroed alloc(64) + free, 1000 live blocks (ns/pair)",
    "bulk: new pool, 1M zeroed allocs of 16..512 B, destroy (ns/alloc)",
    "small: new pool, 10 zeroed allocs of 64 B, destroy (ns/pool)",
};
/* Operations per timed run, and per callgrind run (`ir`). */
static const long work_ops[NWORK] = {1000000, 1000000, 50000};
#define LIVE_BLOCKS 1000
#define SMALL_ALLOCS 10

/* A pointer the compiler must produce: keeps calloc/free pairs from being
   optimised away. */
static void *volatile g_sink;

static size_t bulk_size(long i) { return (size_t)(16 * (1 + i % 32)); }

static double now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static void die(const char *what)
{
    fprintf(stderr, "c_pools: %s\n", what);
    exit(1);
}

/* ---- the workloads, once for every library with pools ------------------ */

typedef CymemPool *(*NewPool)(void);
/* One cell's run of `n` operations: its CPU time in ns. `make` is the
   cymem_rs column's constructor (NULL for the other libraries). */
typedef double (*Run)(NewPool make, long n);

/* The three workloads over a library of pools, expanded once per library
   so that each calls its own functions directly: NEW makes a pool (an
   expression, which may use `make`), ZALLOC(pool, size) returns a zeroed
   block of it, FREE_ONE(pool, p) frees one block, DESTROY(pool) frees the
   pool with its blocks. */
#define BULK_AND_SMALL(lib, Pool, NEW, ZALLOC, DESTROY)                          \
    static double lib##_bulk(NewPool make, long n)                                \
    {                                                                             \
        double t0 = now_ns();                                                     \
        Pool pool = NEW;                                                          \
        long i;                                                                   \
        (void)make;                                                               \
        for (i = 0; i < n; i++) g_sink = ZALLOC(pool, bulk_size(i));              \
        DESTROY(pool);                                                            \
        return now_ns() - t0;                                                     \
    }                                                                             \
    static double lib##_small(NewPool make, long n)                               \
    {                                                                             \
        double t0 = now_ns();                                                     \
        long i;                                                                   \
        int k;                                                                    \
        (void)make;                                                               \
        for (i = 0; i < n; i++) {                                                 \
            Pool pool = NEW;                                                      \
            for (k = 0; k < SMALL_ALLOCS; k++) g_sink = ZALLOC(pool, 64);         \
            DESTROY(pool);                                                        \
        }                                                                         \
        return now_ns() - t0;                                                     \
    }
#define PAIR_WORKLOAD(lib, Pool, NEW, ZALLOC, FREE_ONE, DESTROY)                          \
    static double lib##_pair(NewPool make, long n)                                \
    {                                                                             \
        Pool pool = NEW;                                                          \
        long i;                                                                   \
        double t0, t1;                                                            \
        (void)make;                                                               \
        for (i = 0; i < LIVE_BLOCKS; i++) g_sink = ZALLOC(pool, 64);              \
        t0 = now_ns();                                                            \
        for (i = 0; i < n; i++) {                                                 \
            void *p = ZALLOC(pool, 64);                                           \
            g_sink = p;                                                           \
            FREE_ONE(pool, p);                                                    \
        }                                                                         \
        t1 = now_ns();                                                            \
        DESTROY(pool);                                                            \
        return t1 - t0;                                                           \
    }

/* ---- cymem_rs ---------------------------------------------------------- */

static CymemPool *new_or_die(NewPool make)
{
    CymemPool *pool = make();
    if (!pool) die(cymem_last_error_message());
    return pool;
}

static void free_or_die(CymemPool *pool, void *p)
{
    if (cymem_pool_free(pool, p) != CYMEM_OK) die(cymem_last_error_message());
}

#define CYMEM_ZALLOC(pool, size) cymem_pool_alloc(pool, 1, size)
#define CYMEM_DESTROY(pool) cymem_pool_destroy(&pool)
BULK_AND_SMALL(cymem, CymemPool *, new_or_die(make), CYMEM_ZALLOC, CYMEM_DESTROY)
PAIR_WORKLOAD(cymem, CymemPool *, new_or_die(make), CYMEM_ZALLOC, free_or_die, CYMEM_DESTROY)

#ifdef HAVE_UNLOCKED_POOLS
#define NEW_HEAP_UNLOCKED cymem_pool_new_unlocked
#define NEW_ARENA_UNLOCKED cymem_pool_new_arena_unlocked
#define UNLOCKED_RUN(w) cymem_##w
#else
#define NEW_HEAP_UNLOCKED NULL
#define NEW_ARENA_UNLOCKED NULL
#define UNLOCKED_RUN(w) NULL
#endif
static const NewPool cymem_new[NCOL] = {
    [HEAP] = cymem_pool_new,
    [HEAP_UNLOCKED] = NEW_HEAP_UNLOCKED,
    [ARENA] = cymem_pool_new_arena,
    [ARENA_UNLOCKED] = NEW_ARENA_UNLOCKED,
};

/* ---- libc: no pools, so bulk keeps an array of the blocks to free ------ */

static void **g_blocks;

static double libc_bulk(NewPool make, long n)
{
    double t0 = now_ns();
    long i;
    (void)make;
    for (i = 0; i < n; i++) g_blocks[i] = calloc(1, bulk_size(i));
    for (i = 0; i < n; i++) free(g_blocks[i]);
    return now_ns() - t0;
}

static double libc_small(NewPool make, long n)
{
    void *blocks[SMALL_ALLOCS];
    double t0 = now_ns();
    long i;
    int k;
    (void)make;
    for (i = 0; i < n; i++) {
        for (k = 0; k < SMALL_ALLOCS; k++) blocks[k] = calloc(1, 64);
        g_sink = blocks[SMALL_ALLOCS - 1];
        for (k = 0; k < SMALL_ALLOCS; k++) free(blocks[k]);
    }
    return now_ns() - t0;
}

/* The 1000 live blocks of libc's pair, freed by DESTROY. */
static void *g_live[LIVE_BLOCKS];
static int g_live_count;

static void *libc_zalloc(void *unused, size_t size)
{
    void *p = calloc(1, size);
    (void)unused;
    if (g_live_count < LIVE_BLOCKS) g_live[g_live_count++] = p;
    return p;
}

static void libc_free_one(void *unused, void *p)
{
    (void)unused;
    free(p);
}

static void libc_free_live(void *unused)
{
    (void)unused;
    while (g_live_count > 0) free(g_live[--g_live_count]);
}

PAIR_WORKLOAD(libc, void *, NULL, libc_zalloc, libc_free_one, libc_free_live)

/* ---- talloc ------------------------------------------------------------ */

#ifdef HAVE_TALLOC
#define TALLOC_FREE_ONE(ctx, p) talloc_free(p)
BULK_AND_SMALL(talloc, void *, talloc_new(NULL), talloc_zero_size, talloc_free)
PAIR_WORKLOAD(talloc, void *, talloc_new(NULL), talloc_zero_size, TALLOC_FREE_ONE, talloc_free)
#define TALLOC_RUN(w) talloc_##w
#else
#define TALLOC_RUN(w) NULL
#endif

/* ---- APR pools (no free of one block) ---------------------------------- */

#ifdef HAVE_APR
static apr_pool_t *apr_new(void)
{
    apr_pool_t *pool;
    if (apr_pool_create(&pool, NULL) != APR_SUCCESS) die("apr_pool_create failed");
    return pool;
}
BULK_AND_SMALL(apr, apr_pool_t *, apr_new(), apr_pcalloc, apr_pool_destroy)
#define APR_RUN(w) apr_##w
#else
#define APR_RUN(w) NULL
#endif

/* ---- mimalloc heaps ---------------------------------------------------- */

#ifdef HAVE_MIMALLOC
/* mimalloc's shared library exports malloc and free: linked in, it would
   serve libc's column and cymem_rs's backing allocator too. Loaded with
   RTLD_LOCAL (MIMALLOC_SO, its path, is given by run.sh), it serves only
   its own heaps. */
static struct {
    mi_heap_t *(*heap_new)(void);
    void *(*heap_zalloc)(mi_heap_t *, size_t);
    void (*free)(void *);
    void (*heap_destroy)(mi_heap_t *);
} mi;

static void load_mimalloc(void)
{
    void *so = dlopen(MIMALLOC_SO, RTLD_NOW | RTLD_LOCAL);
    if (!so) die(dlerror());
    /* POSIX's way to turn dlsym's object pointer into a function pointer. */
    *(void **)&mi.heap_new = dlsym(so, "mi_heap_new");
    *(void **)&mi.heap_zalloc = dlsym(so, "mi_heap_zalloc");
    *(void **)&mi.free = dlsym(so, "mi_free");
    *(void **)&mi.heap_destroy = dlsym(so, "mi_heap_destroy");
    if (!mi.heap_new || !mi.heap_zalloc || !mi.free || !mi.heap_destroy)
        die("mimalloc lacks its heap functions");
}
#define MI_FREE_ONE(heap, p) mi.free(p)
BULK_AND_SMALL(mimalloc, mi_heap_t *, mi.heap_new(), mi.heap_zalloc, mi.heap_destroy)
PAIR_WORKLOAD(mimalloc, mi_heap_t *, mi.heap_new(), mi.heap_zalloc, MI_FREE_ONE, mi.heap_destroy)
#define MIMALLOC_RUN(w) mimalloc_##w
#else
#define MIMALLOC_RUN(w) NULL
#endif

/* ---- the grid ---------------------------------------------------------- */

/* NULL where a library lacks the operation or is absent: an arena never
   reuses a freed block's space, and APR cannot free one block, so neither
   has a pair. */
static const Run runs[NWORK][NCOL] = {
    [PAIR] = {libc_pair, cymem_pair, UNLOCKED_RUN(pair), NULL, NULL, TALLOC_RUN(pair), NULL,
              MIMALLOC_RUN(pair)},
    [BULK] = {libc_bulk, cymem_bulk, UNLOCKED_RUN(bulk), cymem_bulk, UNLOCKED_RUN(bulk),
              TALLOC_RUN(bulk), APR_RUN(bulk), MIMALLOC_RUN(bulk)},
    [SMALL] = {libc_small, cymem_small, UNLOCKED_RUN(small), cymem_small, UNLOCKED_RUN(small),
               TALLOC_RUN(small), APR_RUN(small), MIMALLOC_RUN(small)},
};

static const char *const col_key[NCOL] = {
    "libc", "cymem_heap", "cymem_heap_unlocked", "cymem_arena", "cymem_arena_unlocked",
    "talloc", "apr", "mimalloc",
};
static const char *const col_title[NCOL] = {
    "libc", "cymem_rs heap", "heap, unlocked", "cymem_rs arena", "arena, unlocked",
    "talloc", "APR pool", "mimalloc heap",
};

static int is_cymem(int c) { return c >= HEAP && c <= ARENA_UNLOCKED; }

/* Whether the column's library is compiled in (every library has bulk). */
static int available(int c) { return runs[BULK][c] != NULL; }

static int applies(int w, int c) { return runs[w][c] != NULL; }

/* Why a cell is empty, for the table. */
static const char *empty_cell(int w, int c)
{
    if (!available(c)) return "(missing)";
    if (w == PAIR && c == APR) return "(no free)";
    return "—";
}

static double run_cell(int w, int c, long n) { return runs[w][c](cymem_new[c], n); }

static int find(const char *const *keys, int count, const char *key)
{
    int i;
    for (i = 0; i < count; i++)
        if (strcmp(keys[i], key) == 0) return i;
    return -1;
}

/* ---- statistics -------------------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median, minimum and maximum of `n` values (sorted in place). */
typedef struct Summary { double median, min, max; } Summary;

static Summary summarise(double *v, int n)
{
    Summary s;
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    s.median = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
    s.min = v[0];
    s.max = v[n - 1];
    return s;
}

/* The ratios reported: `num` over `den` within a round, with the target it
   should meet (at most `limit`; 0: no target, e.g. what the lock costs). */
typedef struct Target { int work, num, den; double limit; } Target;
static const Target targets[] = {
    {PAIR, HEAP, TALLOC, 1.5},         {PAIR, HEAP_UNLOCKED, TALLOC, 1.0},
    {BULK, HEAP, LIBC, 1.25},          {BULK, HEAP_UNLOCKED, LIBC, 1.25},
    {BULK, ARENA, APR, 1.25},          {BULK, ARENA_UNLOCKED, APR, 1.25},
    {SMALL, HEAP, LIBC, 2.0},          {SMALL, HEAP_UNLOCKED, LIBC, 2.0},
    {SMALL, ARENA, APR, 2.0},          {SMALL, ARENA_UNLOCKED, APR, 2.0},
    {PAIR, HEAP_UNLOCKED, HEAP, 0},    {BULK, HEAP_UNLOCKED, HEAP, 0},
    {BULK, ARENA_UNLOCKED, ARENA, 0},  {SMALL, HEAP_UNLOCKED, HEAP, 0},
    {SMALL, ARENA_UNLOCKED, ARENA, 0},
};
#define NTARGET ((int)(sizeof targets / sizeof targets[0]))

/* ---- the timed run ----------------------------------------------------- */

typedef struct Options {
    int rounds;
    const char *ir_file, *machine, *json, *md;
} Options;

static double g_ir[NWORK][NCOL]; /* < 0: not measured */

static void read_ir(const char *path)
{
    char work[32], col[32];
    double ir;
    int w, c;
    FILE *f;
    for (w = 0; w < NWORK; w++)
        for (c = 0; c < NCOL; c++) g_ir[w][c] = -1;
    if (!path) return;
    f = fopen(path, "r");
    if (!f) die("cannot read the --ir file");
    while (fscanf(f, "%31s %31s %lf", work, col, &ir) == 3) {
        w = find(work_key, NWORK, work);
        c = find(col_key, NCOL, col);
        if (w >= 0 && c >= 0) g_ir[w][c] = ir;
    }
    fclose(f);
}

static uint64_t g_rng = 0x9e3779b97f4a7c15u;
static unsigned next_random(unsigned bound)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (unsigned)(g_rng % bound);
}

static void print_number(FILE *f, double v)
{
    if (v >= 100) fprintf(f, "%.0f", v);
    else fprintf(f, "%.1f", v);
}

/* The tables, in Markdown, to `f`. */
static void write_tables(FILE *f, double med[NWORK][NCOL], const Summary *ratio, int rounds)
{
    int w, c, t;
    fprintf(f, "CPU time per operation, median of %d interleaved rounds (ns):\n\n| workload |", rounds);
    for (c = 0; c < NCOL; c++) fprintf(f, " %s |", col_title[c]);
    fprintf(f, "\n| --- |");
    for (c = 0; c < NCOL; c++) fprintf(f, " --- |");
    fprintf(f, "\n");
    for (w = 0; w < NWORK; w++) {
        fprintf(f, "| %s |", work_title[w]);
        for (c = 0; c < NCOL; c++) {
            fprintf(f, " ");
            if (applies(w, c)) print_number(f, med[w][c]);
            else fprintf(f, "%s", empty_cell(w, c));
            fprintf(f, " |");
        }
        fprintf(f, "\n");
    }
    fprintf(f, "\nRatios and targets, median of per-round ratios (min–max):\n\n"
               "| workload | ratio | median (min–max) | target | met? |\n"
               "| --- | --- | --- | --- | --- |\n");
    for (t = 0; t < NTARGET; t++) {
        const Target *g = &targets[t];
        fprintf(f, "| %s | %s / %s | ", work_key[g->work], col_title[g->num], col_title[g->den]);
        if (!applies(g->work, g->num) || !applies(g->work, g->den)) fprintf(f, "(missing) | ");
        else fprintf(f, "%.2f (%.2f–%.2f) | ", ratio[t].median, ratio[t].min, ratio[t].max);
        if (g->limit == 0) fprintf(f, "— | — |\n");
        else if (!applies(g->work, g->num) || !applies(g->work, g->den))
            fprintf(f, "<= %.2f | — |\n", g->limit);
        else fprintf(f, "<= %.2f | %s |\n", g->limit, ratio[t].median <= g->limit ? "yes" : "**no**");
    }
    fprintf(f, "\nCallgrind instructions per operation, (Ir(N) − Ir(0)) / N:\n\n| workload |");
    for (c = 0; c <= ARENA_UNLOCKED; c++) fprintf(f, " %s |", col_title[c]);
    fprintf(f, "\n| --- |");
    for (c = 0; c <= ARENA_UNLOCKED; c++) fprintf(f, " --- |");
    fprintf(f, "\n");
    for (w = 0; w < NWORK; w++) {
        fprintf(f, "| %s |", work_key[w]);
        for (c = 0; c <= ARENA_UNLOCKED; c++) {
            if (g_ir[w][c] >= 0) fprintf(f, " %.0f |", g_ir[w][c]);
            else fprintf(f, " %s |", applies(w, c) ? "(not run)" : empty_cell(w, c));
        }
        fprintf(f, "\n");
    }
}

static void write_json(FILE *f, const Options *o, double *ns, double med[NWORK][NCOL],
                       const Summary *ratio)
{
    int w, c, r, t;
    fprintf(f, "{\n  \"machine\": \"%s\",\n  \"rounds\": %d,\n  \"missing\": [",
            o->machine ? o->machine : "", o->rounds);
    for (c = 0, r = 0; c < NCOL; c++)
        if (!available(c)) fprintf(f, "%s\"%s\"", r++ ? ", " : "", col_key[c]);
    fprintf(f, "],\n  \"ns_per_op\": {");
    for (w = 0; w < NWORK; w++) {
        fprintf(f, "%s\n    \"%s\": {", w ? "," : "", work_key[w]);
        for (c = 0, t = 0; c < NCOL; c++) {
            if (!applies(w, c)) continue;
            fprintf(f, "%s\n      \"%s\": {\"median\": %.2f, \"ir\": ", t++ ? "," : "", col_key[c],
                    med[w][c]);
            if (g_ir[w][c] >= 0) fprintf(f, "%.0f", g_ir[w][c]);
            else fprintf(f, "null");
            fprintf(f, ", \"rounds\": [");
            for (r = 0; r < o->rounds; r++)
                fprintf(f, "%s%.2f", r ? ", " : "", ns[(r * NWORK + w) * NCOL + c]);
            fprintf(f, "]}");
        }
        fprintf(f, "\n    }");
    }
    fprintf(f, "\n  },\n  \"targets\": [");
    for (t = 0, r = 0; t < NTARGET; t++) {
        const Target *g = &targets[t];
        if (!applies(g->work, g->num) || !applies(g->work, g->den)) continue;
        fprintf(f, "%s\n    {\"workload\": \"%s\", \"column\": \"%s\", \"against\": \"%s\", "
                   "\"limit\": %.2f, \"median\": %.3f, \"min\": %.3f, \"max\": %.3f, \"met\": %s}",
                r++ ? "," : "", work_key[g->work], col_key[g->num], col_key[g->den], g->limit,
                ratio[t].median, ratio[t].min, ratio[t].max,
                g->limit == 0 ? "null" : ratio[t].median <= g->limit ? "true" : "false");
    }
    fprintf(f, "\n  ]\n}\n");
}

static FILE *open_or_die(const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f) die("cannot write an output file");
    return f;
}

static int time_all(const Options *o)
{
    int cells[NWORK * NCOL], ncells = 0, w, c, r, i, t;
    double *ns = calloc((size_t)o->rounds * NWORK * NCOL, sizeof *ns);
    double *col = calloc((size_t)o->rounds, sizeof *col);
    double med[NWORK][NCOL] = {{0}};
    Summary ratio[NTARGET];
    if (!ns || !col) die("out of memory");
#define NS(r, w, c) ns[((r) * NWORK + (w)) * NCOL + (c)]
    for (w = 0; w < NWORK; w++)
        for (c = 0; c < NCOL; c++)
            if (applies(w, c)) cells[ncells++] = w * NCOL + c;
    for (c = 0; c < NCOL; c++)
        if (!available(c))
            fprintf(stderr, "c_pools: %s: column skipped (%s)\n", col_title[c],
                    is_cymem(c) ? "the library has no unlocked pools" : "not installed");
    /* Round -1 warms caches and the allocators' free lists; not kept. */
    for (r = -1; r < o->rounds; r++) {
        for (i = ncells - 1; i > 0; i--) {
            unsigned j = next_random((unsigned)i + 1);
            int tmp = cells[i];
            cells[i] = cells[j];
            cells[j] = tmp;
        }
        for (i = 0; i < ncells; i++) {
            w = cells[i] / NCOL;
            c = cells[i] % NCOL;
            double per_op = run_cell(w, c, work_ops[w]) / (double)work_ops[w];
            if (r >= 0) NS(r, w, c) = per_op;
        }
        fprintf(stderr, "\rround %d/%d", r + 1, o->rounds);
    }
    fprintf(stderr, "\n");
    for (w = 0; w < NWORK; w++)
        for (c = 0; c < NCOL; c++) {
            if (!applies(w, c)) continue;
            for (r = 0; r < o->rounds; r++) col[r] = NS(r, w, c);
            med[w][c] = summarise(col, o->rounds).median;
        }
    for (t = 0; t < NTARGET; t++) {
        const Target *g = &targets[t];
        if (!applies(g->work, g->num) || !applies(g->work, g->den)) continue;
        for (r = 0; r < o->rounds; r++) col[r] = NS(r, g->work, g->num) / NS(r, g->work, g->den);
        ratio[t] = summarise(col, o->rounds);
    }
#undef NS
    write_tables(stdout, med, ratio, o->rounds);
    if (o->md) {
        FILE *f = open_or_die(o->md);
        if (o->machine) fprintf(f, "%s\n\n", o->machine);
        write_tables(f, med, ratio, o->rounds);
        fclose(f);
    }
    if (o->json) {
        FILE *f = open_or_die(o->json);
        write_json(f, o, ns, med, ratio);
        fclose(f);
    }
    free(col);
    free(ns);
    return 0;
}

static void usage(void)
{
    die("usage: c_pools time [--rounds R] [--ir FILE] [--machine TEXT] [--json F] [--md F]\n"
        "       c_pools list-ir | c_pools ir WORKLOAD COLUMN N");
}

int main(int argc, char **argv)
{
    int w, c, i;
#ifdef HAVE_APR
    if (apr_initialize() != APR_SUCCESS) die("apr_initialize failed");
#endif
#ifdef HAVE_MIMALLOC
    load_mimalloc();
#endif
    g_blocks = malloc(sizeof *g_blocks * (size_t)work_ops[BULK]);
    if (!g_blocks) die("out of memory");
    if (argc >= 2 && strcmp(argv[1], "list-ir") == 0) {
        /* cymem_rs's columns, and libc's as the floor. */
        for (w = 0; w < NWORK; w++)
            for (c = 0; c <= ARENA_UNLOCKED; c++)
                if (applies(w, c)) printf("%s %s %ld\n", work_key[w], col_key[c], work_ops[w] / 5);
        return 0;
    }
    if (argc == 5 && strcmp(argv[1], "ir") == 0) {
        long n = atol(argv[4]);
        w = find(work_key, NWORK, argv[2]);
        c = find(col_key, NCOL, argv[3]);
        if (w < 0 || c < 0 || !applies(w, c) || n < 0 || n > work_ops[BULK]) usage();
        run_cell(w, c, n);
        return 0;
    }
    if (argc >= 2 && strcmp(argv[1], "time") == 0) {
        Options o = {15, NULL, NULL, NULL, NULL};
        for (i = 2; i + 1 < argc; i += 2) {
            if (strcmp(argv[i], "--rounds") == 0) o.rounds = atoi(argv[i + 1]);
            else if (strcmp(argv[i], "--ir") == 0) o.ir_file = argv[i + 1];
            else if (strcmp(argv[i], "--machine") == 0) o.machine = argv[i + 1];
            else if (strcmp(argv[i], "--json") == 0) o.json = argv[i + 1];
            else if (strcmp(argv[i], "--md") == 0) o.md = argv[i + 1];
            else usage();
        }
        if (i != argc || o.rounds < 1) usage();
        read_ir(o.ir_file);
        return time_all(&o);
    }
    usage();
    return 2;
}
