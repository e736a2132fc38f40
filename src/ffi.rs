//! The C ABI: a thin shell over [`Pool`]. `include/cymem_rs.h` is generated
//! from this file by cbindgen (`make header`).
//!
//! Conventions, as a C programmer expects them:
//! - functions returning a pointer return NULL on failure; functions returning
//!   [`CymemStatus`] return [`CYMEM_OK`] on success;
//! - after a failure, [`cymem_last_error`] and [`cymem_last_error_message`]
//!   say why, for the calling thread (like `errno`, a success does not reset them);
//! - every function accepts NULL arguments and reports them instead of crashing;
//! - one pool may be used from several threads at once (calls are serialised
//!   by a lock inside the pool), except one made by a `*_unlocked`
//!   constructor, whose caller serialises the calls.

use std::cell::RefCell;
use std::ffi::{c_char, c_int, c_uint, c_void, CStr};
use std::fmt::{self, Write as _};
use std::ptr::{self, NonNull};

use crate::allocator::Allocator;
use crate::error::PoolError;
use crate::fallible::{try_box, try_format, FixedText, OutOfMemory, TryString};
use crate::pool::{DebugOptions, Mark, Pool};
use crate::registry::{self, Label, Origin, PoolInfo, PoolStats};
use crate::shared::SharedPool;

/// Version of this C ABI; bumped on any incompatible change.
pub const CYMEM_RS_ABI_VERSION: u32 = 1;

/// Result of a call: `CYMEM_OK` (0) or one of the `CYMEM_ERR_*` codes.
pub type CymemStatus = c_int;
/// Success.
pub const CYMEM_OK: CymemStatus = 0;
/// A required argument (pool handle, allocator function, out-pointer) was NULL.
pub const CYMEM_ERR_NULL_ARGUMENT: CymemStatus = 1;
/// The allocator could not provide the memory.
pub const CYMEM_ERR_OUT_OF_MEMORY: CymemStatus = 2;
/// `number * elem_size` overflows, or exceeds the largest addressable object.
pub const CYMEM_ERR_SIZE_OVERFLOW: CymemStatus = 3;
/// The pointer is not a live block of this pool (foreign, NULL or already freed).
pub const CYMEM_ERR_UNKNOWN_POINTER: CymemStatus = 4;
/// `realloc` to a size that is not larger than the block.
pub const CYMEM_ERR_NOT_LARGER: CymemStatus = 5;
/// A custom allocator returned a block that is still live in this pool, or
/// called back into its pool (that call is refused; the pool is unchanged).
pub const CYMEM_ERR_BAD_ALLOCATOR: CymemStatus = 6;
/// `free` or `realloc` of a pinned block (a live zero-copy view, or
/// `cymem_pool_pin`); the block is left as it was.
pub const CYMEM_ERR_BLOCK_IN_USE: CymemStatus = 7;
/// Debug mode found a block's memory damaged: written past its end, before
/// its start, or after it was freed. The message names the block's address,
/// size and allocation number. At `cymem_pool_free` the block is released
/// anyway; at `cymem_pool_realloc` it stays live and unchanged.
pub const CYMEM_ERR_CORRUPTED: CymemStatus = 8;
/// `cymem_pool_unpin` of a block that has no pins left.
pub const CYMEM_ERR_NOT_PINNED: CymemStatus = 9;
/// In the child of `fork`: another thread was inside a call on this pool
/// when the process forked, so the pool may be half updated. Every call on
/// it fails with this status (at once, never waiting), and
/// `cymem_pool_destroy` leaks its blocks instead of touching them.
pub const CYMEM_ERR_FORKED: CymemStatus = 10;
/// An allocation or growth would take the pool's live bytes past its limit
/// (`cymem_pool_set_limit`); the message names the limit. Nothing changed.
pub const CYMEM_ERR_LIMIT: CymemStatus = 11;
/// `cymem_pool_release_to` of a mark that is not open in this pool
/// (already released, or another pool's). Nothing changed.
pub const CYMEM_ERR_BAD_MARK: CymemStatus = 12;
/// The pool is running its cleanup callbacks (`cymem_pool_clear`,
/// `cymem_pool_release_to`, `cymem_pool_destroy`): a callback cannot
/// allocate, free, pin, clear, mark, release or destroy in it.
pub const CYMEM_ERR_RELEASING: CymemStatus = 13;

/// `void *malloc(size_t)`-shaped function for a custom allocator.
pub type CymemMallocFn = Option<unsafe extern "C" fn(usize) -> *mut c_void>;
/// `void free(void *)`-shaped function for a custom allocator.
pub type CymemFreeFn = Option<unsafe extern "C" fn(*mut c_void)>;

/// An opaque pool handle. Create with `cymem_pool_new*`, release with
/// `cymem_pool_destroy`.
#[repr(transparent)]
pub struct CymemPool(pub(crate) SharedPool);

impl CymemPool {
    fn with<R>(&self, f: impl FnOnce(&mut Pool) -> R) -> Result<R, PoolError> {
        self.0.with(f)
    }
}

impl From<PoolError> for CymemStatus {
    fn from(err: PoolError) -> Self {
        match err {
            PoolError::SizeOverflow { .. } => CYMEM_ERR_SIZE_OVERFLOW,
            PoolError::OutOfMemory { .. } => CYMEM_ERR_OUT_OF_MEMORY,
            PoolError::UnknownPointer { .. } => CYMEM_ERR_UNKNOWN_POINTER,
            PoolError::NotLarger { .. } => CYMEM_ERR_NOT_LARGER,
            PoolError::AllocatorReturnedLiveBlock { .. } | PoolError::Reentered => {
                CYMEM_ERR_BAD_ALLOCATOR
            }
            PoolError::BlockInUse { .. } => CYMEM_ERR_BLOCK_IN_USE,
            PoolError::Corrupted { .. } => CYMEM_ERR_CORRUPTED,
            PoolError::NotPinned { .. } => CYMEM_ERR_NOT_PINNED,
            PoolError::Forked => CYMEM_ERR_FORKED,
            PoolError::LimitExceeded { .. } => CYMEM_ERR_LIMIT,
            PoolError::BadMark { .. } => CYMEM_ERR_BAD_MARK,
            PoolError::Releasing => CYMEM_ERR_RELEASING,
        }
    }
}

/// Room for the longest message (a corruption report, about 200 bytes) and
/// its NUL; a longer one would be cut at a character boundary.
const MESSAGE_CAPACITY: usize = 320;

/// This thread's last error. The message is formatted in place: reporting an
/// error never allocates, so running out of memory is reported too.
struct LastError {
    status: CymemStatus,
    /// NUL-terminated UTF-8.
    message: [u8; MESSAGE_CAPACITY],
}

thread_local! {
    static LAST_ERROR: RefCell<LastError> = const {
        RefCell::new(LastError {
            status: CYMEM_OK,
            message: [0; MESSAGE_CAPACITY],
        })
    };
}

fn set_last_error(status: CymemStatus, message: fmt::Arguments<'_>) -> CymemStatus {
    // `try_with`: during thread teardown (atexit, TLS destructors) the slot
    // is gone; the status code is still returned, only the detail is lost.
    let _ = LAST_ERROR.try_with(|last| {
        let mut last = last.borrow_mut();
        last.status = status;
        let mut text = FixedText::new(&mut last.message[..MESSAGE_CAPACITY - 1]);
        // Writing into a fixed buffer cannot fail; it cuts what does not fit.
        let _ = text.write_fmt(message);
        let end = text.len();
        last.message[end] = 0;
    });
    status
}

pub(crate) fn report(err: PoolError) -> CymemStatus {
    set_last_error(err.into(), format_args!("{err}"))
}

fn null_argument(function: &str, argument: &str) -> CymemStatus {
    set_last_error(
        CYMEM_ERR_NULL_ARGUMENT,
        format_args!("{function}: `{argument}` must not be NULL"),
    )
}

/// Records that the library's own bookkeeping could not be allocated.
fn out_of_memory(_: OutOfMemory) -> CymemStatus {
    set_last_error(
        CYMEM_ERR_OUT_OF_MEMORY,
        format_args!("out of memory: the pool's bookkeeping could not be allocated"),
    )
}

fn static_message(status: CymemStatus) -> &'static CStr {
    match status {
        CYMEM_OK => c"no error",
        CYMEM_ERR_NULL_ARGUMENT => c"a required argument was NULL",
        CYMEM_ERR_OUT_OF_MEMORY => c"out of memory",
        CYMEM_ERR_SIZE_OVERFLOW => c"requested size overflows",
        CYMEM_ERR_UNKNOWN_POINTER => c"pointer is not a live block of this pool",
        CYMEM_ERR_NOT_LARGER => c"realloc only grows a block",
        CYMEM_ERR_BAD_ALLOCATOR => {
            c"custom allocator returned a live block or called back into its pool"
        }
        CYMEM_ERR_BLOCK_IN_USE => c"block is pinned by live views; unpin it first",
        CYMEM_ERR_CORRUPTED => c"memory corruption detected (debug mode)",
        CYMEM_ERR_NOT_PINNED => c"block is not pinned",
        CYMEM_ERR_FORKED => c"pool was in use by another thread at fork; unusable in the child",
        CYMEM_ERR_LIMIT => c"the pool's limit on live bytes was reached",
        CYMEM_ERR_BAD_MARK => c"mark is not open in this pool",
        CYMEM_ERR_RELEASING => c"the pool is running its cleanups",
        _ => c"unknown status code",
    }
}

/// The pool behind `pool`, or `None` with `CYMEM_ERR_NULL_ARGUMENT`
/// recorded for `function` if `pool` is NULL.
///
/// # Safety
/// `pool` is NULL or a live handle from `cymem_pool_new*`, which no thread
/// destroys while the returned reference is used.
unsafe fn handle<'a>(pool: *const CymemPool, function: &str) -> Option<&'a CymemPool> {
    // SAFETY: a non-NULL `pool` is a live handle (`# Safety`): a `CymemPool`
    // boxed by `into_handle` and not destroyed while borrowed; it is only
    // ever shared (`with` serialises access).
    let found = unsafe { pool.as_ref() };
    if found.is_none() {
        null_argument(function, "pool");
    }
    found
}

/// The opening of every call on a handle: runs `op` on the pool behind
/// `pool`; if it cannot run, records why for `cymem_last_error` and returns
/// the status: `CYMEM_ERR_NULL_ARGUMENT` (naming `function`) for a NULL
/// pool, `CYMEM_ERR_FORKED` for a pool unusable in this child of `fork`,
/// `CYMEM_ERR_BAD_ALLOCATOR` for a call from inside one of the pool's own
/// calls (its custom allocator).
///
/// # Safety
/// `pool` is NULL or a live handle from `cymem_pool_new*`, which no thread
/// destroys during the call.
unsafe fn try_handle<R>(
    pool: *const CymemPool,
    function: &str,
    op: impl FnOnce(&mut Pool) -> R,
) -> Result<R, CymemStatus> {
    // SAFETY: `pool` is NULL or a live handle no thread destroys during the
    // call (`# Safety`).
    match unsafe { handle(pool, function) } {
        Some(pool) => pool.with(op).map_err(report),
        None => Err(CYMEM_ERR_NULL_ARGUMENT),
    }
}

/// [`try_handle`] for a function that returns `on_fail` (NULL, 0) when the
/// call cannot run.
///
/// # Safety
/// As `try_handle`: `pool` is NULL or a live handle.
unsafe fn with_handle<R>(
    pool: *const CymemPool,
    function: &str,
    on_fail: R,
    op: impl FnOnce(&mut Pool) -> R,
) -> R {
    // SAFETY: `pool` is NULL or a live handle that no thread destroys during
    // the call (`# Safety`), which is all `try_handle` asks.
    unsafe { try_handle(pool, function, op) }.unwrap_or(on_fail)
}

/// [`try_handle`] for a function that returns a status.
///
/// # Safety
/// As `try_handle`: `pool` is NULL or a live handle.
unsafe fn status_call(
    pool: *const CymemPool,
    function: &str,
    op: impl FnOnce(&mut Pool) -> CymemStatus,
) -> CymemStatus {
    // SAFETY: `pool` is NULL or a live handle that no thread destroys during
    // the call (`# Safety`), which is all `try_handle` asks.
    unsafe { try_handle(pool, function, op) }.unwrap_or_else(|status| status)
}

/// The status of a pool call that only succeeds or fails, with the error
/// recorded for `cymem_last_error`.
pub(crate) fn status<T>(result: Result<T, PoolError>) -> CymemStatus {
    match result {
        Ok(_) => CYMEM_OK,
        Err(err) => report(err),
    }
}

/// The block of a pool call that returns one, or NULL with the error
/// recorded for `cymem_last_error`.
pub(crate) fn block_or_null(result: Result<NonNull<c_void>, PoolError>) -> *mut c_void {
    match result {
        Ok(block) => block.as_ptr(),
        Err(err) => {
            report(err);
            ptr::null_mut()
        }
    }
}

/// `with_handle` for a call that only succeeds or fails.
///
/// # Safety
/// As `with_handle`: `pool` is NULL or a live handle.
unsafe fn status_of<T>(
    pool: *const CymemPool,
    function: &str,
    op: impl FnOnce(&mut Pool) -> Result<T, PoolError>,
) -> CymemStatus {
    // SAFETY: `pool` is NULL or a live handle that no thread destroys during
    // the call (`# Safety`), which is all `status_call` asks.
    unsafe { status_call(pool, function, |p| status(op(p))) }
}

/// The custom allocator of `cymem_pool_new_with_allocator*`, or `None` with
/// `CYMEM_ERR_NULL_ARGUMENT` recorded if either function is NULL.
///
/// # Safety
/// The functions behave like C `malloc` and `free` and are callable from any
/// thread that uses the pool, for as long as the pool lives.
unsafe fn c_allocator(
    malloc_fn: CymemMallocFn,
    free_fn: CymemFreeFn,
    function: &str,
) -> Option<Allocator> {
    match (malloc_fn, free_fn) {
        // SAFETY: the `# Safety` section promises exactly what `from_raw`
        // asks of the pair.
        (Some(malloc), Some(free)) => Some(unsafe { Allocator::from_raw(malloc, free) }),
        (None, _) => {
            null_argument(function, "malloc_fn");
            None
        }
        (Some(_), None) => {
            null_argument(function, "free_fn");
            None
        }
    }
}

/// Takes the handle out of `*slot` (leaving NULL there) and runs the pool's
/// cleanups, as the destroy functions do: `Ok(None)` if it was already
/// NULL; `Err` (`CYMEM_ERR_RELEASING` recorded, nothing changed) if a
/// cleanup of this very pool is calling.
///
/// # Safety
/// `*slot` is NULL or a live handle that no other thread is using.
unsafe fn take_handle(slot: &mut *mut CymemPool) -> Result<Option<Box<CymemPool>>, CymemStatus> {
    // SAFETY: `*slot` is NULL or a live handle (`# Safety`), borrowed shared
    // for this check only.
    let Some(pool) = (unsafe { slot.as_ref() }) else {
        return Ok(None);
    };
    if matches!(pool.with(|p| p.is_releasing()), Ok(true)) {
        return Err(report(PoolError::Releasing));
    }
    let handle = std::mem::replace(slot, ptr::null_mut());
    // SAFETY: a live handle was made by `Box::into_raw` in `into_handle` and
    // is used by no other thread (`# Safety`) nor by a release of this one
    // (checked above); the caller's only way to reach it again, `*slot`, is
    // now NULL, so the box is owned once.
    let owned = unsafe { Box::from_raw(handle) };
    // Outside the lock: a cleanup that reaches the pool gets an error.
    owned.0.run_cleanups();
    Ok(Some(owned))
}

/// A pool on the system allocator, as the plain and named C constructors make.
fn system_pool(name: Option<String>) -> Result<Pool, PoolError> {
    Pool::try_with_allocator_labelled(Allocator::system(), c_label(name))
}

/// The handle of a new pool with its own lock: C callers may share a
/// handle between threads.
fn into_handle(pool: Result<Pool, PoolError>) -> *mut CymemPool {
    handle_of(pool, SharedPool::locked)
}

/// The handle of a new pool without a lock, for the `*_unlocked` constructors.
///
/// # Safety
/// No two calls on the handle overlap, from any threads, for as long as it
/// lives (the contract the `*_unlocked` constructors state to their caller).
unsafe fn into_unlocked_handle(pool: Result<Pool, PoolError>) -> *mut CymemPool {
    handle_of(pool, |pool| {
        // SAFETY: calls on the handle never overlap (`# Safety`), which is
        // all `unsynchronized` asks; a call from inside one of its own calls
        // (a custom allocator) is still refused by `SharedPool::run`.
        unsafe { SharedPool::unsynchronized(pool) }
    })
}

/// The handle of a new pool shared by `share` (a debug pool if
/// `CYMEM_RS_DEBUG` says so), or NULL with the error recorded.
fn handle_of(
    pool: Result<Pool, PoolError>,
    share: impl FnOnce(Pool) -> SharedPool,
) -> *mut CymemPool {
    let made = pool.and_then(debug_if_env).and_then(|pool| {
        try_box(CymemPool(share(pool))).map_err(|_| PoolError::OutOfMemory {
            bytes: std::mem::size_of::<CymemPool>(),
        })
    });
    match made {
        Ok(handle) => Box::into_raw(handle),
        Err(err) => {
            report(err);
            ptr::null_mut()
        }
    }
}

/// The ABI version of the loaded library (compare with `CYMEM_RS_ABI_VERSION`).
#[no_mangle]
pub extern "C" fn cymem_abi_version() -> u32 {
    CYMEM_RS_ABI_VERSION
}

/// A new pool on the system allocator (`calloc`/`realloc`/`free`). Every
/// `cymem_pool_new*` returns NULL with `CYMEM_ERR_OUT_OF_MEMORY` recorded
/// when the pool's own bookkeeping cannot be allocated.
#[no_mangle]
pub extern "C" fn cymem_pool_new() -> *mut CymemPool {
    into_handle(system_pool(None))
}

/// A new arena pool: blocks are bump-allocated from large chunks and all
/// released at once by `cymem_pool_destroy`, the fastest for many small
/// blocks that die together. `cymem_pool_free` and `cymem_pool_realloc` keep
/// their meaning (errors, size, block count), but the space of a freed or
/// moved block is only reused after the pool is destroyed.
#[no_mangle]
pub extern "C" fn cymem_pool_new_arena() -> *mut CymemPool {
    into_handle(Pool::try_arena_labelled(c_label(None)))
}

/// A new pool whose blocks come from `malloc_fn` and go back to `free_fn`.
/// Returns NULL (`CYMEM_ERR_NULL_ARGUMENT`) if either is NULL.
///
/// # Safety
/// The functions must behave like C `malloc` and `free` and be callable from
/// any thread that uses the pool, for as long as the pool lives.
#[no_mangle]
pub unsafe extern "C" fn cymem_pool_new_with_allocator(
    malloc_fn: CymemMallocFn,
    free_fn: CymemFreeFn,
) -> *mut CymemPool {
    // SAFETY: the functions behave like C malloc/free and are callable from
    // every thread that uses the pool while it lives (`# Safety`), which is
    // all `c_allocator` asks.
    match unsafe { c_allocator(malloc_fn, free_fn, "cymem_pool_new_with_allocator") } {
        Some(allocator) => into_handle(Pool::try_with_allocator_labelled(allocator, c_label(None))),
        None => ptr::null_mut(),
    }
}

// ---------------------------------------------------------------------------
// Pools without a lock, for callers that serialise their calls themselves.

/// `cymem_pool_new` without the pool's own lock, for a program that uses
/// the pool from one thread, or from several under a lock of its own: each
/// call saves taking and releasing the pool's lock (uncontended, about 25
/// instructions and 2 ns). Everything else is as for a locked pool,
/// including the refusal (`CYMEM_ERR_BAD_ALLOCATOR`) of a call made from
/// inside one of the pool's own calls, by its custom allocator.
///
/// # Safety
/// The caller serialises every call on this pool: no two calls on it
/// (`cymem_pool_destroy` included) may run at the same time, from any
/// threads, for as long as it lives. One thread using it, or threads taking
/// a mutex of their own around each call, keep this; handing the pool from
/// one thread to another needs the same happens-before as any other data
/// (a mutex, a thread join). Calls that do overlap are undefined behaviour:
/// blocks may be lost, freed twice or corrupted. After `fork`, the child
/// may use the pool only if no other thread of the parent was inside a call
/// on it at the fork (a locked pool detects that case instead:
/// `CYMEM_ERR_FORKED`).
#[no_mangle]
pub unsafe extern "C" fn cymem_pool_new_unlocked() -> *mut CymemPool {
    // SAFETY: the caller serialises every call on the pool (`# Safety`).
    unsafe { into_unlocked_handle(system_pool(None)) }
}

/// `cymem_pool_new_arena` without the pool's own lock (see
/// `cymem_pool_new_unlocked`).
///
/// # Safety
/// As `cymem_pool_new_unlocked`: the caller serialises every call on this pool.
#[no_mangle]
pub unsafe extern "C" fn cymem_pool_new_arena_unlocked() -> *mut CymemPool {
    // SAFETY: the caller serialises every call on the pool (`# Safety`).
    unsafe { into_unlocked_handle(Pool::try_arena_labelled(c_label(None))) }
}

/// `cymem_pool_new_with_allocator` without the pool's own lock (see
/// `cymem_pool_new_unlocked`). A call on the pool from inside `malloc_fn`
/// or `free_fn` fails with `CYMEM_ERR_BAD_ALLOCATOR` and changes nothing.
///
/// # Safety
/// As `cymem_pool_new_unlocked` (the caller serialises every call on this
/// pool) and as `cymem_pool_new_with_allocator` (the functions behave like
/// C `malloc` and `free`).
#[no_mangle]
pub unsafe extern "C" fn cymem_pool_new_with_allocator_unlocked(
    malloc_fn: CymemMallocFn,
    free_fn: CymemFreeFn,
) -> *mut CymemPool {
    const FUNCTION: &str = "cymem_pool_new_with_allocator_unlocked";
    // SAFETY: the functions behave like C malloc/free (`# Safety`) and are
    // only called inside the pool's calls, on whichever thread makes them.
    match unsafe { c_allocator(malloc_fn, free_fn, FUNCTION) } {
        // SAFETY: the caller serialises every call on the pool (`# Safety`).
        Some(allocator) => unsafe {
            into_unlocked_handle(Pool::try_with_allocator_labelled(allocator, c_label(None)))
        },
        None => ptr::null_mut(),
    }
}

/// 1 if the pool has its own lock (every `cymem_pool_new*` pool but the
/// `*_unlocked` ones), 0 if not (or NULL, with `CYMEM_ERR_NULL_ARGUMENT`).
///
/// # Safety
/// `pool` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn cymem_pool_is_locked(pool: *const CymemPool) -> c_int {
    // SAFETY: `pool` is NULL or a live handle (`# Safety`); whether it has a
    // lock is fixed when it is made, so reading it needs no lock.
    unsafe { handle(pool, "cymem_pool_is_locked") }.map_or(0, |p| c_int::from(p.0.is_locked()))
}

/// Runs the pool's cleanup callbacks (newest first), frees every block still
/// live in the pool, then the pool, and sets `*pool` to NULL so later calls
/// through it fail cleanly. NULL or a pointer to NULL is a no-op. Called by
/// a cleanup of the same pool, it does nothing (`CYMEM_ERR_RELEASING`).
///
/// # Safety
/// `pool` is NULL or points to NULL or to a live handle, which no other
/// thread is using.
#[no_mangle]
pub unsafe extern "C" fn cymem_pool_destroy(pool: *mut *mut CymemPool) {
    // SAFETY: a non-NULL `pool` points to a handle slot the caller lets us
    // write (`# Safety`), and no other thread uses it during the call.
    if let Some(slot) = unsafe { pool.as_mut() } {
        // SAFETY: `*slot` is NULL or a live handle no other thread is using.
        // A refusal (a cleanup destroying its own pool) is recorded for
        // `cymem_last_error`, and the pool lives on.
        drop(unsafe { take_handle(slot) });
    }
}

/// A zeroed block of `number * elem_size` bytes, owned by the pool. A 0-byte
/// request returns a unique non-NULL pointer. NULL on failure.
///
/// # Safety
/// `pool` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn cymem_pool_alloc(
    pool: *mut CymemPool,
    number: usize,
    elem_size: usize,
) -> *mut c_void {
    // SAFETY: `pool` is NULL or a live handle (`# Safety`).
    unsafe {
        with_handle(pool, "cymem_pool_alloc", ptr::null_mut(), |p| {
            block_or_null(p.alloc(number, elem_size))
        })
    }
}

/// Releases a block of the pool. `CYMEM_ERR_UNKNOWN_POINTER` (and no memory
/// touched) for a foreign, NULL or already freed pointer.
///
/// # Safety
/// `pool` is NULL or a live handle. `ptr` may be anything.
#[no_mangle]
pub unsafe extern "C" fn cymem_pool_free(pool: *mut CymemPool, ptr: *mut c_void) -> CymemStatus {
    // SAFETY: `pool` is NULL or a live handle (`# Safety`); the pool checks
    // `ptr` against its table before touching memory.
    unsafe { status_of(pool, "cymem_pool_free", |p| p.free(ptr)) }
}

/// Grows a block to `new_size` bytes (contents kept, tail zeroed, old block
/// released) and returns its new address. NULL on failure, with the block
/// left as it was: `CYMEM_ERR_UNKNOWN_POINTER`, `CYMEM_ERR_NOT_LARGER` (the
/// size is not larger), `CYMEM_ERR_SIZE_OVERFLOW`, `CYMEM_ERR_OUT_OF_MEMORY`.
/// (`CYMEM_ERR_BAD_ALLOCATOR`: a broken custom allocator returned a live
/// block; the old block is already released and no longer tracked.)
///
/// # Safety
/// `pool` is NULL or a live handle. `ptr` may be anything.
#[no_mangle]
pub unsafe extern "C" fn cymem_pool_realloc(
    pool: *mut CymemPool,
    ptr: *mut c_void,
    new_size: usize,
) -> *mut c_void {
    // SAFETY: `pool` is NULL or a live handle (`# Safety`); the pool checks
    // `ptr` against its table before touching memory.
    unsafe {
        with_handle(pool, "cymem_pool_realloc", ptr::null_mut(), |p| {
            block_or_null(p.realloc(ptr, new_size))
        })
    }
}

/// Bytes in live blocks. 0 (and `CYMEM_ERR_NULL_ARGUMENT`) for a NULL pool.
///
/// # Safety
/// `pool` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn cymem_pool_size(pool: *const CymemPool) -> usize {
    // SAFETY: `pool` is NULL or a live handle (`# Safety`).
    unsafe { with_handle(pool, "cymem_pool_size", 0, |p| p.size()) }
}

/// Number of live blocks. 0 (and `CYMEM_ERR_NULL_ARGUMENT`) for a NULL pool.
///
/// # Safety
/// `pool` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn cymem_pool_block_count(pool: *const CymemPool) -> usize {
    // SAFETY: `pool` is NULL or a live handle (`# Safety`).
    unsafe { with_handle(pool, "cymem_pool_block_count", 0, |p| p.block_count()) }
}

/// Stores the size of a live block in `*size_out`.
/// `CYMEM_ERR_UNKNOWN_POINTER` if `ptr` is not one of the pool's blocks.
///
/// # Safety
/// `pool` is NULL or a live handle; `size_out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn cymem_pool_block_size(
    pool: *const CymemPool,
    ptr: *const c_void,
    size_out: *mut usize,
) -> CymemStatus {
    const FUNCTION: &str = "cymem_pool_block_size";
    // SAFETY: `pool` is NULL or a live handle (`# Safety`).
    let found = match unsafe { try_handle(pool, FUNCTION, |p| p.block_size(ptr)) } {
        Ok(found) => found,
        Err(status) => return status,
    };
    if size_out.is_null() {
        return null_argument(FUNCTION, "size_out");
    }
    let size = found.ok_or(PoolError::UnknownPointer { addr: ptr as usize });
    // SAFETY: `size_out` is not NULL (checked above), so it is writable (`# Safety`).
    status(size.map(|size| unsafe { size_out.write(size) }))
}

/// The status of the last failed call on this thread (`CYMEM_OK` if none).
#[no_mangle]
pub extern "C" fn cymem_last_error() -> CymemStatus {
    LAST_ERROR
        .try_with(|last| last.borrow().status)
        .unwrap_or(CYMEM_OK)
}

/// A description of the last failed call on this thread, with its details
/// (sizes, addresses). Valid until the next failing call on this thread.
#[no_mangle]
pub extern "C" fn cymem_last_error_message() -> *const c_char {
    LAST_ERROR
        .try_with(|last| {
            let last = last.borrow();
            if last.status == CYMEM_OK {
                static_message(CYMEM_OK).as_ptr()
            } else {
                // The text lives in thread-local storage until replaced.
                last.message.as_ptr().cast::<c_char>()
            }
        })
        .unwrap_or_else(|_| static_message(CYMEM_OK).as_ptr())
}

/// A static description of a status code (any value is accepted).
#[no_mangle]
pub extern "C" fn cymem_status_message(status: CymemStatus) -> *const c_char {
    static_message(status).as_ptr()
}

/// Pins a live block so that `cymem_pool_free` and `cymem_pool_realloc` of
/// it fail with `CYMEM_ERR_BLOCK_IN_USE` (block untouched) until a matching
/// `cymem_pool_unpin`: for code that hands the block to someone else (a
/// zero-copy view) and must not have it freed under them. Pins nest.
/// `CYMEM_ERR_UNKNOWN_POINTER` if `ptr` is not a live block of the pool.
/// `cymem_pool_destroy` still frees pinned blocks.
///
/// # Safety
/// `pool` is NULL or a live handle. `ptr` may be anything.
#[no_mangle]
pub unsafe extern "C" fn cymem_pool_pin(pool: *mut CymemPool, ptr: *const c_void) -> CymemStatus {
    // SAFETY: `pool` is NULL or a live handle (`# Safety`); `ptr` is only
    // looked up in the pool's table.
    unsafe { status_of(pool, "cymem_pool_pin", |p| p.pin(ptr)) }
}

/// Undoes one `cymem_pool_pin`. `CYMEM_ERR_UNKNOWN_POINTER` if `ptr` is not a
/// live block, `CYMEM_ERR_NOT_PINNED` if it has no pins left.
///
/// # Safety
/// `pool` is NULL or a live handle. `ptr` may be anything.
#[no_mangle]
pub unsafe extern "C" fn cymem_pool_unpin(pool: *mut CymemPool, ptr: *const c_void) -> CymemStatus {
    // SAFETY: `pool` is NULL or a live handle (`# Safety`); `ptr` is only
    // looked up in the pool's table.
    unsafe { status_of(pool, "cymem_pool_unpin", |p| p.unpin(ptr)) }
}

/// The number of pins a block holds: 0 for an unpinned block or a pointer
/// that is not a live block. 0 (and `CYMEM_ERR_NULL_ARGUMENT`) for a NULL pool.
///
/// # Safety
/// `pool` is NULL or a live handle. `ptr` may be anything.
#[no_mangle]
pub unsafe extern "C" fn cymem_pool_pin_count(pool: *const CymemPool, ptr: *const c_void) -> usize {
    // SAFETY: `pool` is NULL or a live handle (`# Safety`); `ptr` is only
    // looked up in the pool's pin map.
    unsafe { with_handle(pool, "cymem_pool_pin_count", 0, |p| p.pins(ptr)) }
}

// ---------------------------------------------------------------------------
// Debug mode (guard bytes, poisoned quarantine of freed blocks).
// ---------------------------------------------------------------------------

/// Every `cymem_pool_new*` pool is a debug pool when `CYMEM_RS_DEBUG=1` is set
/// (read once per process).
fn debug_if_env(pool: Pool) -> Result<Pool, PoolError> {
    match DebugOptions::from_env() {
        Some(options) if !pool.is_debug() => debug(Ok(pool), options),
        _ => Ok(pool),
    }
}

/// `pool` in debug mode.
fn debug(pool: Result<Pool, PoolError>, options: DebugOptions) -> Result<Pool, PoolError> {
    let mut pool = pool?;
    pool.try_enable_debug(options)?;
    Ok(pool)
}

/// A new debug pool on the system allocator: each block has guard bytes
/// before and after it, checked by `cymem_pool_free`, `cymem_pool_realloc`,
/// `cymem_pool_check` and `cymem_pool_destroy_checked`; freed blocks are
/// poisoned and held in a bounded quarantine so writes after free are caught.
/// Errors: `CYMEM_ERR_CORRUPTED`. (`CYMEM_RS_DEBUG=1` in the environment
/// makes every `cymem_pool_new*` pool a debug pool.)
#[no_mangle]
pub extern "C" fn cymem_pool_new_debug() -> *mut CymemPool {
    into_handle(debug(system_pool(None), DebugOptions::default()))
}

/// A new debug arena pool (see `cymem_pool_new_debug` and `cymem_pool_new_arena`).
#[no_mangle]
pub extern "C" fn cymem_pool_new_arena_debug() -> *mut CymemPool {
    into_handle(debug(
        Pool::try_arena_labelled(c_label(None)),
        DebugOptions::default(),
    ))
}

/// A new debug pool on a custom allocator (see `cymem_pool_new_debug` and
/// `cymem_pool_new_with_allocator`). Each block asks `malloc_fn` for its
/// size plus 32 guard bytes.
///
/// # Safety
/// As `cymem_pool_new_with_allocator`.
#[no_mangle]
pub unsafe extern "C" fn cymem_pool_new_with_allocator_debug(
    malloc_fn: CymemMallocFn,
    free_fn: CymemFreeFn,
) -> *mut CymemPool {
    const FUNCTION: &str = "cymem_pool_new_with_allocator_debug";
    // SAFETY: the functions behave like C malloc/free and are callable from
    // every thread that uses the pool while it lives (`# Safety`), which is
    // all `c_allocator` asks.
    match unsafe { c_allocator(malloc_fn, free_fn, FUNCTION) } {
        Some(allocator) => into_handle(debug(
            Pool::try_with_allocator_labelled(allocator, c_label(None)),
            DebugOptions::default(),
        )),
        None => ptr::null_mut(),
    }
}

/// 1 if the pool is a debug pool, 0 if not (or NULL, with `CYMEM_ERR_NULL_ARGUMENT`).
///
/// # Safety
/// `pool` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn cymem_pool_is_debug(pool: *const CymemPool) -> c_int {
    // SAFETY: `pool` is NULL or a live handle (`# Safety`).
    unsafe {
        with_handle(pool, "cymem_pool_is_debug", 0, |p| {
            c_int::from(p.is_debug())
        })
    }
}

/// Checks the guards of every live block and the poison of every quarantined
/// one: `CYMEM_OK`, or `CYMEM_ERR_CORRUPTED` for the first damage found (also
/// damage found earlier where no error could be returned, e.g. by
/// `cymem_pool_realloc`). Each damage is reported once. Always `CYMEM_OK`
/// for a pool not in debug mode.
///
/// # Safety
/// `pool` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn cymem_pool_check(pool: *mut CymemPool) -> CymemStatus {
    // SAFETY: `pool` is NULL or a live handle (`# Safety`).
    unsafe { status_of(pool, "cymem_pool_check", |p| p.check()) }
}

/// `cymem_pool_destroy` that reports: checks every block while releasing it
/// and returns `CYMEM_ERR_CORRUPTED` for the first damage found (the pool
/// and all its blocks are released anyway, and `*pool` set to NULL).
/// `cymem_pool_destroy` of a debug pool writes such damage to stderr instead.
/// `CYMEM_OK` if `*pool` is NULL; `CYMEM_ERR_NULL_ARGUMENT` if `pool` is.
///
/// # Safety
/// As `cymem_pool_destroy`.
#[no_mangle]
pub unsafe extern "C" fn cymem_pool_destroy_checked(pool: *mut *mut CymemPool) -> CymemStatus {
    // SAFETY: a non-NULL `pool` points to a handle slot the caller lets us
    // write (`# Safety`), and no other thread uses it during the call.
    let Some(slot) = (unsafe { pool.as_mut() }) else {
        return null_argument("cymem_pool_destroy_checked", "pool");
    };
    // SAFETY: `*slot` is NULL or a live handle no other thread is using.
    let owned = match unsafe { take_handle(slot) } {
        Ok(Some(owned)) => owned,
        Ok(None) => return CYMEM_OK,
        Err(status) => return status,
    };
    let result = owned.0.run(|p| p.free_all_checked());
    drop(owned);
    status(result)
}

// ---------------------------------------------------------------------------
// Statistics and the live-pool report.

/// A pool made from C is shown as made in "C" until `cymem_pool_set_origin`
/// (or `CYMEM_POOL_SET_ORIGIN_HERE`) says where.
fn c_label(name: Option<String>) -> Label {
    Label {
        name,
        origin: Origin::Static("C"),
    }
}

/// A C string as text (invalid UTF-8 replaced), `None` for NULL;
/// `OutOfMemory` if the copy could not be allocated.
///
/// # Safety
/// `text` is NULL or a NUL-terminated string.
unsafe fn optional_text(text: *const c_char) -> Result<Option<String>, OutOfMemory> {
    if text.is_null() {
        return Ok(None);
    }
    // SAFETY: `text` is not NULL, so it is a NUL-terminated string
    // (`# Safety`), read here only.
    let bytes = unsafe { CStr::from_ptr(text) }.to_bytes();
    let mut out = TryString::default();
    for chunk in bytes.utf8_chunks() {
        out.write_str(chunk.valid()).map_err(|_| OutOfMemory)?;
        if !chunk.invalid().is_empty() {
            out.write_char(char::REPLACEMENT_CHARACTER)
                .map_err(|_| OutOfMemory)?;
        }
    }
    Ok(Some(out.0))
}

/// Text written into a C buffer of `size` bytes like `snprintf`: at most
/// `size - 1` bytes, cut at a UTF-8 character boundary, then a NUL (nothing
/// is written if `size` is 0), while `total` counts the full length.
struct CBuffer {
    buf: *mut c_char,
    size: usize,
    /// Bytes written to `buf`.
    written: usize,
    /// Once a piece did not fit, nothing more is written.
    full: bool,
    total: usize,
}

impl CBuffer {
    /// # Safety
    /// `buf` is NULL (then `size` must be 0) or valid for `size` bytes of
    /// writes, for as long as the `CBuffer` is used.
    unsafe fn new(buf: *mut c_char, size: usize) -> Self {
        let size = if buf.is_null() { 0 } else { size };
        CBuffer {
            buf,
            size,
            written: 0,
            full: size == 0,
            total: 0,
        }
    }

    /// Ends the text with its NUL; the full length.
    fn finish(self) -> usize {
        if self.size > 0 {
            // SAFETY: `written` <= `size - 1` (see `write_str`), so the byte
            // is inside the caller's buffer, writable (`new`'s contract).
            let end = unsafe { self.buf.add(self.written) };
            // SAFETY: `end` is that writable byte.
            unsafe { end.write(0) };
        }
        self.total
    }
}

impl fmt::Write for CBuffer {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        self.total += text.len();
        if self.full {
            return Ok(());
        }
        let room = self.size - 1 - self.written;
        let mut n = text.len().min(room);
        while !text.is_char_boundary(n) {
            n -= 1;
        }
        self.full = n < text.len();
        // SAFETY: `written` < `size`: inside the caller's buffer.
        let at = unsafe { self.buf.add(self.written) };
        // SAFETY: `written + n` <= `size - 1` bytes of the buffer are
        // writable (`new`'s contract); `text` is a Rust string the C buffer
        // cannot overlap.
        unsafe { ptr::copy_nonoverlapping(text.as_ptr(), at.cast::<u8>(), n) };
        self.written += n;
        Ok(())
    }
}

/// Copies `text` into `buf` (`size` bytes) like `snprintf` (see [`CBuffer`]).
/// Returns the full length of `text`.
///
/// # Safety
/// `buf` is NULL (then `size` must be 0) or valid for `size` bytes of writes.
unsafe fn copy_truncated(text: &str, buf: *mut c_char, size: usize) -> usize {
    // SAFETY: as `CBuffer::new` asks (`# Safety`).
    let mut out = unsafe { CBuffer::new(buf, size) };
    let _ = out.write_str(text);
    out.finish()
}

/// Size of `CymemPoolInfo.name`, NUL included (longer names are truncated).
pub const CYMEM_POOL_NAME_SIZE: usize = 64;
/// Size of `CymemPoolInfo.origin`, NUL included (longer origins are truncated).
pub const CYMEM_POOL_ORIGIN_SIZE: usize = 256;

/// One live pool, as listed by `cymem_live_pools`.
#[repr(C)]
pub struct CymemPoolInfo {
    /// The pool's name, NUL-terminated ("" if unnamed), truncated to fit.
    pub name: [c_char; CYMEM_POOL_NAME_SIZE],
    /// Where the pool was made: "C", "file.c:12" (set by
    /// `cymem_pool_set_origin`), "file.py:12 in func" for Python pools.
    pub origin: [c_char; CYMEM_POOL_ORIGIN_SIZE],
    /// 1 for an arena pool, 0 for a heap pool.
    pub is_arena: c_int,
    /// The pool's counters when listed.
    pub stats: PoolStats,
}

fn to_c_info(info: &PoolInfo) -> CymemPoolInfo {
    let mut out = CymemPoolInfo {
        name: [0; CYMEM_POOL_NAME_SIZE],
        origin: [0; CYMEM_POOL_ORIGIN_SIZE],
        is_arena: c_int::from(info.arena),
        stats: info.stats,
    };
    let name = info.name.as_deref().unwrap_or("");
    // SAFETY: `out.name` is an array of `CYMEM_POOL_NAME_SIZE` bytes, all writable.
    unsafe { copy_truncated(name, out.name.as_mut_ptr(), CYMEM_POOL_NAME_SIZE) };
    let (origin, size) = (out.origin.as_mut_ptr(), CYMEM_POOL_ORIGIN_SIZE);
    // SAFETY: `out.origin` is an array of `CYMEM_POOL_ORIGIN_SIZE` bytes, all writable.
    unsafe { copy_truncated(&info.origin, origin, size) };
    out
}

/// Stores the pool's counters in `*out` (bytes in use, peak, live blocks,
/// allocations, frees, reallocs). Always on, and cheap: no walk of the blocks.
///
/// # Safety
/// `pool` is NULL or a live handle; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn cymem_pool_stats(
    pool: *const CymemPool,
    out: *mut PoolStats,
) -> CymemStatus {
    // SAFETY: `pool` is NULL or a live handle (`# Safety`).
    let stats = match unsafe { try_handle(pool, "cymem_pool_stats", |p| p.stats()) } {
        Ok(stats) => stats,
        Err(status) => return status,
    };
    if out.is_null() {
        return null_argument("cymem_pool_stats", "out");
    }
    // SAFETY: `out` is not NULL (checked above), so it is writable (`# Safety`).
    unsafe { out.write(stats) };
    CYMEM_OK
}

/// Starts a new high-water mark (`peak_size`) from the bytes in use now,
/// e.g. to measure one phase of a program.
///
/// # Safety
/// `pool` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn cymem_pool_reset_peak(pool: *mut CymemPool) -> CymemStatus {
    // SAFETY: `pool` is NULL or a live handle (`# Safety`).
    unsafe {
        status_call(pool, "cymem_pool_reset_peak", |p| {
            p.reset_peak();
            CYMEM_OK
        })
    }
}

/// A new pool on the system allocator, called `name` in live-pool reports
/// (copied; NULL for none).
///
/// # Safety
/// `name` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn cymem_pool_new_named(name: *const c_char) -> *mut CymemPool {
    // SAFETY: `name` is NULL or a NUL-terminated string (`# Safety`).
    match unsafe { optional_text(name) } {
        Ok(name) => into_handle(system_pool(name)),
        Err(err) => {
            out_of_memory(err);
            ptr::null_mut()
        }
    }
}

/// Renames a pool (the string is copied; NULL: unnamed).
///
/// # Safety
/// `pool` is NULL or a live handle; `name` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn cymem_pool_set_name(
    pool: *mut CymemPool,
    name: *const c_char,
) -> CymemStatus {
    // SAFETY: `name` is NULL or a NUL-terminated string (`# Safety`).
    let name = match unsafe { optional_text(name) } {
        Ok(name) => name,
        Err(err) => return out_of_memory(err),
    };
    // SAFETY: `pool` is NULL or a live handle (`# Safety`).
    unsafe {
        status_call(pool, "cymem_pool_set_name", |p| match p.set_name(name) {
            Ok(()) => CYMEM_OK,
            Err(err) => report(err),
        })
    }
}

/// Copies the pool's name into `buf` like `snprintf` (at most `size - 1`
/// bytes and a NUL; "" if unnamed) and returns the name's full length, so a
/// result >= `size` means it was truncated. `buf` may be NULL if `size` is 0.
/// Returns 0 (and `CYMEM_ERR_NULL_ARGUMENT`) for a NULL pool.
///
/// # Safety
/// `pool` is NULL or a live handle; `buf` is valid for `size` bytes.
#[no_mangle]
pub unsafe extern "C" fn cymem_pool_name(
    pool: *const CymemPool,
    buf: *mut c_char,
    size: usize,
) -> usize {
    let copy = |name: Option<&str>| {
        // SAFETY: `buf` is valid for `size` bytes of writes, or NULL with
        // `size` 0 (`# Safety`), as `copy_truncated` needs.
        unsafe { copy_truncated(name.unwrap_or(""), buf, size) }
    };
    // SAFETY: `pool` is NULL or a live handle (`# Safety`).
    unsafe { with_handle(pool, "cymem_pool_name", 0, |p| p.with_name(copy)) }
}

/// Records where the pool was made, shown as "file:line" in reports (the
/// string is copied; NULL `file` resets it to "C"). Usually called through
/// `CYMEM_POOL_SET_ORIGIN_HERE(pool)`, which passes `__FILE__` and `__LINE__`.
///
/// # Safety
/// `pool` is NULL or a live handle; `file` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn cymem_pool_set_origin(
    pool: *mut CymemPool,
    file: *const c_char,
    line: c_uint,
) -> CymemStatus {
    // SAFETY: `file` is NULL or a NUL-terminated string (`# Safety`).
    let origin = match unsafe { optional_text(file) } {
        Ok(Some(file)) => match try_format(format_args!("{file}:{line}")) {
            // Exactly sized: boxing it does not reallocate.
            Ok(text) => Origin::Text(text.into_boxed_str()),
            Err(err) => return out_of_memory(err),
        },
        Ok(None) => Origin::Static("C"),
        Err(err) => return out_of_memory(err),
    };
    // SAFETY: `pool` is NULL or a live handle (`# Safety`).
    unsafe {
        status_call(pool, "cymem_pool_set_origin", |p| {
            match p.set_origin(origin) {
                Ok(()) => CYMEM_OK,
                Err(err) => report(err),
            }
        })
    }
}

/// Lists the pools alive now in this library (C, Rust and, inside the
/// Python extension, Python pools), most bytes first: fills up to `capacity`
/// entries of `out` and returns how many pools there are, which may be more
/// (call with `out` NULL and `capacity` 0 to count). Pools made or dropped
/// meanwhile may change the count between calls. A dropped pool is never
/// listed, and listing never keeps a pool alive (nor takes the GIL inside
/// the Python extension: Python pools' origins are already text). Out of
/// memory, returns 0 with `CYMEM_ERR_OUT_OF_MEMORY` recorded.
///
/// # Safety
/// `out` is NULL (then `capacity` must be 0) or valid for `capacity` entries.
#[no_mangle]
pub unsafe extern "C" fn cymem_live_pools(out: *mut CymemPoolInfo, capacity: usize) -> usize {
    let pools = match registry::try_live_pools() {
        Ok(pools) => pools,
        Err(err) => {
            out_of_memory(err);
            return 0;
        }
    };
    if !out.is_null() {
        for (i, info) in pools.iter().take(capacity).enumerate() {
            // SAFETY: `out` is not NULL, so it is valid for `capacity` entries
            // (`# Safety`), and `i` < `capacity`.
            let entry = unsafe { out.add(i) };
            // SAFETY: `entry` is one of those writable entries.
            unsafe { entry.write(to_c_info(info)) };
        }
    }
    pools.len()
}

/// Writes the live-pool report (an aligned text table, one pool a line, most
/// bytes first, then a total line) into `buf` like `snprintf`: at most
/// `size - 1` bytes and a NUL. Returns the report's full length, so a result
/// >= `size` means it was truncated; `buf` may be NULL if `size` is 0.
///
/// Out of memory, writes "" and returns 0 with `CYMEM_ERR_OUT_OF_MEMORY`
/// recorded (a report is never empty).
///
/// # Safety
/// `buf` is NULL (then `size` must be 0) or valid for `size` bytes of writes.
#[no_mangle]
pub unsafe extern "C" fn cymem_report(buf: *mut c_char, size: usize) -> usize {
    // SAFETY: `buf` is valid for `size` bytes of writes, or NULL with `size`
    // 0 (`# Safety`), as `write_report` needs.
    unsafe {
        write_report(buf, size, registry::try_live_pools(), |pools, out| {
            registry::write_table(pools, out)
        })
    }
}

/// Writes a report of `data` (or, out of memory, "" and returns 0 with
/// `CYMEM_ERR_OUT_OF_MEMORY` recorded) straight into the caller's buffer
/// like `snprintf`; returns the report's full length.
///
/// # Safety
/// `buf` is NULL (then `size` must be 0) or valid for `size` bytes of writes.
unsafe fn write_report<T>(
    buf: *mut c_char,
    size: usize,
    data: Result<T, OutOfMemory>,
    write: impl FnOnce(&T, &mut CBuffer) -> std::fmt::Result,
) -> usize {
    // SAFETY: `buf` is valid for `size` bytes of writes, or NULL with `size`
    // 0 (`# Safety`), as `CBuffer::new` needs.
    let mut out = unsafe { CBuffer::new(buf, size) };
    match data {
        Ok(data) => {
            let _ = write(&data, &mut out);
            out.finish()
        }
        Err(err) => {
            out.finish();
            out_of_memory(err);
            0
        }
    }
}

/// Writes the peak report into `buf` like `snprintf` (as `cymem_report`): the
/// process-wide high-water mark of bytes held by this library's pools
/// (exact to within `CYMEM_PEAK_STEP` bytes per thread), the bytes held
/// now, and a table of the pools that held bytes at the peak (bytes,
/// blocks, mode, whether the pool is still alive, name, origin), then a
/// total line. Returns the report's full length; `buf` may be NULL if
/// `size` is 0. Out of memory, as `cymem_report`.
///
/// # Safety
/// `buf` is NULL (then `size` must be 0) or valid for `size` bytes of writes.
#[no_mangle]
pub unsafe extern "C" fn cymem_peak_report(buf: *mut c_char, size: usize) -> usize {
    // SAFETY: `buf` is valid for `size` bytes of writes, or NULL with `size`
    // 0 (`# Safety`), as `write_report` needs.
    unsafe { write_report(buf, size, registry::try_peak(), registry::write_peak) }
}

/// Starts a new process-wide peak (`cymem_peak_report`) from the bytes held
/// now. Pools' own peaks (`cymem_pool_reset_peak`) are not touched.
#[no_mangle]
pub extern "C" fn cymem_reset_peak() {
    registry::reset_peak();
}

// ---------------------------------------------------------------------------
// Lifetimes shorter than the pool's: clear, scopes, cleanups, limits.

/// Runs every cleanup callback (newest first, while the blocks are still
/// live), forgets them, then frees every block; the pool stays usable and
/// open marks stay open. Size and block count drop to 0, the totals go on
/// counting, the peak stays until `cymem_pool_reset_peak`; an arena keeps its
/// largest chunk. `CYMEM_ERR_BLOCK_IN_USE` (nothing changed) while a block is
/// pinned; `CYMEM_ERR_CORRUPTED` (everything freed anyway) if debug mode
/// found damage.
///
/// # Safety
/// `pool` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn cymem_pool_clear(pool: *mut CymemPool) -> CymemStatus {
    // SAFETY: `pool` is NULL or a live handle (`# Safety`).
    match unsafe { handle(pool, "cymem_pool_clear") } {
        Some(pool) => status(pool.0.clear()),
        None => CYMEM_ERR_NULL_ARGUMENT,
    }
}

/// Opens a scope and returns its mark (never 0): `cymem_pool_release_to`
/// with it frees every block allocated from now on and runs every cleanup
/// added from now on. Scopes nest. 0 on failure.
///
/// # Safety
/// `pool` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn cymem_pool_mark(pool: *mut CymemPool) -> usize {
    // SAFETY: `pool` is NULL or a live handle (`# Safety`).
    unsafe {
        with_handle(pool, "cymem_pool_mark", 0, |p| match p.mark() {
            Ok(mark) => mark.to_raw(),
            Err(err) => {
                report(err);
                0
            }
        })
    }
}

/// Closes the scope of `mark` and every scope opened after it: runs their
/// cleanups (newest first), then frees their blocks. Blocks allocated before
/// the mark stay, even if `cymem_pool_realloc` moved them inside the scope.
/// `CYMEM_ERR_BAD_MARK` for a mark that is not open in this pool (released,
/// or another pool's), `CYMEM_ERR_BLOCK_IN_USE` if a block allocated since
/// the mark is pinned: nothing changed. Arena pools reuse the space of the
/// released blocks only after `cymem_pool_clear`.
///
/// # Safety
/// `pool` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn cymem_pool_release_to(pool: *mut CymemPool, mark: usize) -> CymemStatus {
    // SAFETY: `pool` is NULL or a live handle (`# Safety`).
    match unsafe { handle(pool, "cymem_pool_release_to") } {
        Some(pool) => status(pool.0.release_to(Mark::from_raw(mark))),
        None => CYMEM_ERR_NULL_ARGUMENT,
    }
}

/// `void (*)(void *)`: a cleanup callback.
pub type CymemCleanupFn = Option<unsafe extern "C" fn(*mut c_void)>;

/// Registers `fn(data)` to run once: when the pool is cleared or destroyed,
/// or, if added while a scope is open, when that scope is released; newest
/// first, before the blocks are freed (so it may still read them). It runs
/// outside the pool's lock; if it calls the pool, anything that would
/// change it fails with `CYMEM_ERR_RELEASING`. `CYMEM_ERR_NULL_ARGUMENT` if
/// `fn` is NULL.
///
/// # Safety
/// `pool` is NULL or a live handle. `fn` may be called with `data` once, on
/// any thread that clears, releases or destroys the pool.
#[no_mangle]
pub unsafe extern "C" fn cymem_pool_add_cleanup(
    pool: *mut CymemPool,
    func: CymemCleanupFn,
    data: *mut c_void,
) -> CymemStatus {
    const FUNCTION: &str = "cymem_pool_add_cleanup";
    let Some(func) = func else {
        return null_argument(FUNCTION, "func");
    };
    let add = |p: &mut Pool| {
        // SAFETY: `func` may be called once with `data` on the threads that
        // release the pool (`# Safety`), which is what `add_cleanup` asks;
        // C functions do not unwind.
        unsafe { p.add_cleanup(func, data) }
    };
    // SAFETY: `pool` is NULL or a live handle (`# Safety`).
    unsafe { status_of(pool, FUNCTION, add) }
}

/// Limits the bytes in the pool's live blocks (0: no limit): an allocation
/// or growth that would pass it fails with `CYMEM_ERR_LIMIT` and changes
/// nothing. A limit below the live bytes refuses allocations until enough
/// is freed. `CYMEM_ERR_OUT_OF_MEMORY` (nothing changed) if no memory is
/// left for the bookkeeping of limits, scopes and cleanups.
///
/// # Safety
/// `pool` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn cymem_pool_set_limit(pool: *mut CymemPool, limit: usize) -> CymemStatus {
    // SAFETY: `pool` is NULL or a live handle (`# Safety`).
    unsafe { status_of(pool, "cymem_pool_set_limit", |p| p.set_limit(Some(limit))) }
}

/// The pool's limit on live bytes (0: no limit; also 0, with
/// `CYMEM_ERR_NULL_ARGUMENT`, for a NULL pool).
///
/// # Safety
/// `pool` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn cymem_pool_limit(pool: *const CymemPool) -> usize {
    // SAFETY: `pool` is NULL or a live handle (`# Safety`).
    unsafe { with_handle(pool, "cymem_pool_limit", 0, |p| p.limit().unwrap_or(0)) }
}
