/* An LD_PRELOAD shim that makes chosen allocations of the process fail.

   Nothing fails until a test arms it (so interpreter start-up is not
   counted): `failmalloc_arm(first, count)` makes allocations number
   `first` .. `first + count - 1` after arming return NULL (ENOMEM), counting
   every malloc, calloc, realloc, posix_memalign, aligned_alloc and memalign
   of every thread. `failmalloc_disarm()` stops failing and returns how many
   allocations were made since arming; `failmalloc_failed()` how many failed.
   Python reaches these through ctypes.CDLL(None); C through dlsym.

   The real allocator is glibc's (`__libc_*`), so no dlsym is needed at the
   first call (dlsym itself allocates). */

#define _GNU_SOURCE
#include <errno.h>
#include <stdatomic.h>
#include <stddef.h>

extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t number, size_t size);
extern void *__libc_realloc(void *ptr, size_t size);
extern void *__libc_memalign(size_t align, size_t size);

static atomic_int armed;
static atomic_long counted;
static atomic_long failed;
static long fail_first;
static long fail_end;

void failmalloc_arm(long first, long count) {
    atomic_store(&armed, 0);
    fail_first = first;
    fail_end = count > 0 && first > 0 ? first + count : first;
    atomic_store(&counted, 0);
    atomic_store(&failed, 0);
    atomic_store(&armed, 1);
}

long failmalloc_disarm(void) {
    atomic_store(&armed, 0);
    return atomic_load(&counted);
}

long failmalloc_failed(void) { return atomic_load(&failed); }

/* Whether this allocation is one of those chosen to fail. */
static int fail_now(void) {
    if (!atomic_load_explicit(&armed, memory_order_relaxed)) return 0;
    long n = atomic_fetch_add(&counted, 1) + 1;
    if (n >= fail_first && n < fail_end) {
        atomic_fetch_add(&failed, 1);
        errno = ENOMEM;
        return 1;
    }
    return 0;
}

void *malloc(size_t size) { return fail_now() ? NULL : __libc_malloc(size); }

void *calloc(size_t number, size_t size) {
    return fail_now() ? NULL : __libc_calloc(number, size);
}

void *realloc(void *ptr, size_t size) {
    /* realloc(p, 0) frees: never refuse it. */
    if (ptr != NULL && size == 0) return __libc_realloc(ptr, size);
    return fail_now() ? NULL : __libc_realloc(ptr, size);
}

void *memalign(size_t align, size_t size) {
    return fail_now() ? NULL : __libc_memalign(align, size);
}

void *aligned_alloc(size_t align, size_t size) { return memalign(align, size); }

int posix_memalign(void **out, size_t align, size_t size) {
    if (align < sizeof(void *) || (align & (align - 1)) != 0) return EINVAL;
    if (fail_now()) return ENOMEM;
    void *p = __libc_memalign(align, size);
    if (p == NULL) return ENOMEM;
    *out = p;
    return 0;
}
