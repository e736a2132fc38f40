/*
 * cymem_rs from C, in five minutes.
 *
 * A pool hands out zeroed blocks and remembers every one of them. You may
 * free a block yourself, or not bother: destroying the pool frees whatever is
 * left. Here we keep a small weather station in a pool: an array of sensor
 * records, each with its own name string and its own growing array of
 * readings.
 *
 * Build and run (`make demo` does the same):
 *   cc -std=c99 -Wall -Wextra -Werror -pedantic -Iinclude examples/demo.c \
 *      target/release/libcymem_rs.a -lpthread -ldl -lm -o build/demo
 *   build/demo
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cymem_rs.h"

/* One sensor. Both pointers are blocks of the same pool as the record. */
typedef struct {
    char *name;        /* NUL-terminated copy of the sensor's name */
    float *readings;   /* grown with cymem_pool_realloc */
    size_t count;      /* readings stored */
    size_t capacity;   /* readings that fit */
} Sensor;

/* A station: a growable array of sensors, itself a pool block. */
typedef struct {
    Sensor *sensors;
    size_t count;
    size_t capacity;
} Station;

static int g_unexpected; /* set when anything does not go as planned */

static void expect(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "demo: unexpected: %s (last error: %s)\n", what,
                cymem_last_error_message());
        g_unexpected = 1;
    }
}

static void show(const char *step, const CymemPool *pool)
{
    printf("%-44s %2zu blocks, %5zu bytes\n", step, cymem_pool_block_count(pool),
           cymem_pool_size(pool));
}

/* strdup, but the copy belongs to the pool. */
static char *pool_strdup(CymemPool *pool, const char *s)
{
    size_t len = strlen(s);
    /* The block is zeroed, so the terminating NUL is already there. */
    char *copy = (char *)cymem_pool_alloc(pool, len + 1, 1);
    if (copy != NULL) {
        memcpy(copy, s, len);
    }
    return copy;
}

/*
 * Makes an array block hold at least `wanted` elements of `elem_size` bytes,
 * doubling its capacity when it has to grow. The first call allocates; later
 * ones use cymem_pool_realloc, which keeps the contents and zeroes the new
 * tail. Returns 0 on failure: the old array is then untouched (and still
 * owned by the pool).
 */
static int reserve(CymemPool *pool, void **array, size_t *capacity, size_t wanted,
                   size_t elem_size)
{
    size_t new_capacity = 2 * *capacity > wanted ? 2 * *capacity : wanted;
    void *bigger;

    if (wanted <= *capacity) {
        return 1;
    }
    if (*array == NULL) {
        /* number * elem_size, checked for overflow by the pool (as calloc). */
        bigger = cymem_pool_alloc(pool, new_capacity, elem_size);
    } else if (new_capacity > (size_t)-1 / elem_size) {
        return 0;
    } else {
        bigger = cymem_pool_realloc(pool, *array, new_capacity * elem_size);
    }
    if (bigger == NULL) {
        return 0;
    }
    *array = bigger;
    *capacity = new_capacity;
    return 1;
}

static Sensor *add_sensor(CymemPool *pool, Station *station, const char *name)
{
    void *array = station->sensors;
    Sensor *sensor;

    if (!reserve(pool, &array, &station->capacity, station->count + 1, sizeof(Sensor))) {
        return NULL;
    }
    station->sensors = (Sensor *)array;
    /* A fresh record is all zeros: no name, no readings. */
    sensor = &station->sensors[station->count];
    sensor->name = pool_strdup(pool, name);
    if (sensor->name == NULL) {
        return NULL;
    }
    station->count++;
    return sensor;
}

static int add_reading(CymemPool *pool, Sensor *sensor, float value)
{
    void *array = sensor->readings;

    if (!reserve(pool, &array, &sensor->capacity, sensor->count + 1, sizeof(float))) {
        return 0;
    }
    sensor->readings = (float *)array;
    sensor->readings[sensor->count++] = value;
    return 1;
}

/* Three sensors with a day of hourly readings each, then a fourth. */
static Station build_station(CymemPool *pool, int verbose)
{
    static const char *const names[] = {"north", "south", "east"};
    Station station = {NULL, 0, 0};
    void *records = NULL;
    Sensor *late;
    size_t i, hour;

    /* Room for exactly 3 records, all zero: no names, no readings yet. */
    expect(reserve(pool, &records, &station.capacity, 3, sizeof(Sensor)), "allocate the records");
    station.sensors = (Sensor *)records;
    for (i = 0; i < 3; i++) {
        expect(add_sensor(pool, &station, names[i]) != NULL, "add a sensor");
    }
    if (verbose) {
        show("3 sensors (records + names):", pool);
    }
    for (i = 0; i < station.count; i++) {
        for (hour = 0; hour < 24; hour++) {
            float celsius = 10.0f + (float)i + 0.5f * (float)(hour % 12);
            expect(add_reading(pool, &station.sensors[i], celsius), "add a reading");
        }
    }
    if (verbose) {
        show("24 readings each (grown by realloc):", pool);
    }
    /* The sensor array moves when it grows; the names and readings it points
     * to are separate blocks and stay where they are. */
    late = add_sensor(pool, &station, "west");
    expect(late != NULL && add_reading(pool, late, 12.5f), "add a late sensor");
    if (verbose) {
        show("a 4th sensor (the record array grew):", pool);
    }
    return station;
}

/* ---- A custom allocator that counts what it hands out. ---------------- */

typedef union {
    long double ld;
    void *p;
    size_t size;
} Header; /* stores the block size, keeps the block aligned */

static size_t g_mallocs, g_frees, g_live_bytes;

static void *counting_malloc(size_t size)
{
    Header *h = (Header *)malloc(sizeof(Header) + size);
    if (h == NULL) {
        return NULL;
    }
    h->size = size;
    g_mallocs++;
    g_live_bytes += size;
    return h + 1;
}

static void counting_free(void *ptr)
{
    Header *h;
    if (ptr == NULL) {
        return; /* like free(NULL) */
    }
    h = (Header *)ptr - 1;
    g_frees++;
    g_live_bytes -= h->size;
    free(h);
}

int main(void)
{
    CymemPool *pool;
    CymemPool *counted;
    Station station;
    size_t i, blocks, bytes;

    printf("cymem_rs demo (C ABI version %u)\n", (unsigned)cymem_abi_version());
    expect(cymem_abi_version() == CYMEM_RS_ABI_VERSION, "header and library versions match");

    /* 1. A pool on the system allocator. */
    pool = cymem_pool_new();
    expect(pool != NULL, "create a pool");
    show("new pool:", pool);

    /* 2. Build something with it. Every block is zeroed and tracked. */
    station = build_station(pool, 1);
    printf("  readings:");
    for (i = 0; i < station.count; i++) {
        const Sensor *s = &station.sensors[i];
        double last = s->count > 0 ? (double)s->readings[s->count - 1] : 0.0;
        printf(" %s %zu (last %.1f C)%s", s->name, s->count, last,
               i + 1 < station.count ? "," : "\n");
    }

    /* 3. Free one block yourself, then make a mistake: free it again. The
     *    pool refuses (nothing is touched) and says why. */
    expect(cymem_pool_free(pool, station.sensors[3].name) == CYMEM_OK, "free a name");
    blocks = cymem_pool_block_count(pool);
    bytes = cymem_pool_size(pool);
    if (cymem_pool_free(pool, station.sensors[3].name) != CYMEM_OK) {
        printf("double free refused: %s\n", cymem_last_error_message());
    }
    expect(cymem_last_error() == CYMEM_ERR_UNKNOWN_POINTER, "double free is reported");
    expect(cymem_pool_block_count(pool) == blocks && cymem_pool_size(pool) == bytes,
           "a refused free changes nothing");
    station.sensors[3].name = NULL;

    /* 4. Destroy the pool: every block still live goes with it, in one call,
     *    and the handle is set to NULL. */
    printf("destroying the pool frees its %zu remaining blocks\n", cymem_pool_block_count(pool));
    cymem_pool_destroy(&pool);
    expect(pool == NULL, "destroy clears the handle");

    /* 5. The same work on a pool with your own malloc/free. */
    counted = cymem_pool_new_with_allocator(counting_malloc, counting_free);
    expect(counted != NULL, "create a pool on a custom allocator");
    station = build_station(counted, 0);
    expect(station.count == 4, "the second station has 4 sensors");
    printf("custom allocator: %zu mallocs, %zu frees (old blocks of reallocs), %zu live bytes\n",
           g_mallocs, g_frees, g_live_bytes);
    cymem_pool_destroy(&counted);
    printf("after destroy:    %zu mallocs, %zu frees, %zu live bytes -> %s\n", g_mallocs,
           g_frees, g_live_bytes,
           g_mallocs == g_frees && g_live_bytes == 0 ? "everything released" : "LEAK");
    expect(g_mallocs > 0 && g_mallocs == g_frees && g_live_bytes == 0,
           "the custom allocator got everything back");

    if (g_unexpected) {
        fprintf(stderr, "demo: FAILED\n");
        return 1;
    }
    return 0;
}
