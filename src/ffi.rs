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
//!   by a lock inside the pool).

use std::cell::RefCell;
use std::ffi::{c_char, c_int, c_uint, c_void, CStr};
use std::fmt::{self, Write as _};
use std::ptr;

use crate::allocator::Allocator;
use crate::error::PoolError;
use crate::fallible::{try_box, try_format, FixedText, OutOfMemory, TryString};
use crate::pool::{DebugOptions, Pool};
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
/// A custom allocator returned a block that is still live in this pool.
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

/// `void *malloc(size_t)`-shaped function for a custom allocator.
pub type CymemMallocFn = Option<unsafe extern "C" fn(usize) -> *mut c_void>;
/// `void free(void *)`-shaped function for a custom allocator.
pub type CymemFreeFn = Option<unsafe extern "C" fn(*mut c_void)>;

/// An opaque pool handle. Create with `cymem_pool_new*`, release with
/// `cymem_pool_destroy`.
#[repr(transparent)]
pub struct CymemPool(pub(crate) SharedPool);

impl CymemPool {
    fn with<R>(&self, f: impl FnOnce(&mut Pool) -> R) -> R {
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
            PoolError::AllocatorReturnedLiveBlock { .. } => CYMEM_ERR_BAD_ALLOCATOR,
            PoolError::BlockInUse { .. } => CYMEM_ERR_BLOCK_IN_USE,
            PoolError::Corrupted { .. } => CYMEM_ERR_CORRUPTED,
            PoolError::NotPinned { .. } => CYMEM_ERR_NOT_PINNED,
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
        CYMEM_ERR_BAD_ALLOCATOR => c"custom allocator returned a live block",
        CYMEM_ERR_BLOCK_IN_USE => c"block is pinned by live views; unpin it first",
        CYMEM_ERR_CORRUPTED => c"memory corruption detected (debug mode)",
        CYMEM_ERR_NOT_PINNED => c"block is not pinned",
        _ => c"unknown status code",
    }
}

/// The pool behind a handle, or `None` (with the error recorded) for NULL.
///
/// # Safety
/// `pool` is NULL or a live handle from `cymem_pool_new*`.
unsafe fn handle<'a>(pool: *const CymemPool, function: &str) -> Option<&'a CymemPool> {
    // SAFETY: caller's contract; a live handle is a valid, shared `CymemPool`.
    let found = unsafe { pool.as_ref() };
    if found.is_none() {
        null_argument(function, "pool");
    }
    found
}

/// Runs `op` on a live handle and turns its outcome into a status, recording
/// an error for `cymem_last_error`; `CYMEM_ERR_NULL_ARGUMENT` for a NULL pool.
///
/// # Safety
/// `pool` is NULL or a live handle.
unsafe fn status_of<T>(
    pool: *const CymemPool,
    function: &str,
    op: impl FnOnce(&mut Pool) -> Result<T, PoolError>,
) -> CymemStatus {
    // SAFETY: caller's contract.
    let Some(pool) = (unsafe { handle(pool, function) }) else {
        return CYMEM_ERR_NULL_ARGUMENT;
    };
    match pool.with(op) {
        Ok(_) => CYMEM_OK,
        Err(err) => report(err),
    }
}

/// The handle of a new pool (a debug pool if `CYMEM_RS_DEBUG` says so), or
/// NULL with the error recorded.
fn into_handle(pool: Result<Pool, PoolError>) -> *mut CymemPool {
    let made = pool.and_then(debug_if_env).and_then(|pool| {
        // C callers may share a handle between threads: it gets its own lock.
        try_box(CymemPool(SharedPool::locked(pool))).map_err(|_| PoolError::OutOfMemory {
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
    into_handle(Pool::try_with_allocator_labelled(
        Allocator::system(),
        c_label(None),
    ))
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
    let (Some(malloc), Some(free)) = (malloc_fn, free_fn) else {
        let missing = if malloc_fn.is_none() {
            "malloc_fn"
        } else {
            "free_fn"
        };
        null_argument("cymem_pool_new_with_allocator", missing);
        return ptr::null_mut();
    };
    // SAFETY: the caller promises malloc/free semantics (see above).
    let allocator = unsafe { Allocator::from_raw(malloc, free) };
    into_handle(Pool::try_with_allocator_labelled(allocator, c_label(None)))
}

/// Frees every block still live in the pool, then the pool, and sets
/// `*pool` to NULL so later calls through it fail cleanly. NULL or a pointer
/// to NULL is a no-op.
///
/// # Safety
/// `pool` is NULL or points to NULL or to a live handle, which no other
/// thread is using.
#[no_mangle]
pub unsafe extern "C" fn cymem_pool_destroy(pool: *mut *mut CymemPool) {
    // SAFETY: caller's contract.
    let Some(slot) = (unsafe { pool.as_mut() }) else {
        return;
    };
    let handle = std::mem::replace(slot, ptr::null_mut());
    if !handle.is_null() {
        // SAFETY: a live handle was made by `Box::into_raw` in `into_handle`,
        // and we just cleared the caller's only way to reach it again.
        drop(unsafe { Box::from_raw(handle) });
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
    // SAFETY: caller's contract.
    let Some(pool) = (unsafe { handle(pool, "cymem_pool_alloc") }) else {
        return ptr::null_mut();
    };
    let result = pool.with(|p| p.alloc(number, elem_size));
    match result {
        Ok(block) => block.as_ptr(),
        Err(err) => {
            report(err);
            ptr::null_mut()
        }
    }
}

/// Releases a block of the pool. `CYMEM_ERR_UNKNOWN_POINTER` (and no memory
/// touched) for a foreign, NULL or already freed pointer.
///
/// # Safety
/// `pool` is NULL or a live handle. `ptr` may be anything.
#[no_mangle]
pub unsafe extern "C" fn cymem_pool_free(pool: *mut CymemPool, ptr: *mut c_void) -> CymemStatus {
    // SAFETY: caller's contract.
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
    // SAFETY: caller's contract.
    let Some(pool) = (unsafe { handle(pool, "cymem_pool_realloc") }) else {
        return ptr::null_mut();
    };
    let result = pool.with(|p| p.realloc(ptr, new_size));
    match result {
        Ok(block) => block.as_ptr(),
        Err(err) => {
            report(err);
            ptr::null_mut()
        }
    }
}

/// Bytes in live blocks. 0 (and `CYMEM_ERR_NULL_ARGUMENT`) for a NULL pool.
///
/// # Safety
/// `pool` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn cymem_pool_size(pool: *const CymemPool) -> usize {
    // SAFETY: caller's contract.
    unsafe { handle(pool, "cymem_pool_size") }.map_or(0, |pool| pool.with(|p| p.size()))
}

/// Number of live blocks. 0 (and `CYMEM_ERR_NULL_ARGUMENT`) for a NULL pool.
///
/// # Safety
/// `pool` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn cymem_pool_block_count(pool: *const CymemPool) -> usize {
    // SAFETY: caller's contract.
    unsafe { handle(pool, "cymem_pool_block_count") }
        .map_or(0, |pool| pool.with(|p| p.block_count()))
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
    // SAFETY: caller's contract.
    let Some(pool) = (unsafe { handle(pool, "cymem_pool_block_size") }) else {
        return CYMEM_ERR_NULL_ARGUMENT;
    };
    if size_out.is_null() {
        return null_argument("cymem_pool_block_size", "size_out");
    }
    let found = pool.with(|p| p.block_size(ptr));
    match found {
        Some(size) => {
            // SAFETY: non-NULL and writable by the caller's contract.
            unsafe { size_out.write(size) };
            CYMEM_OK
        }
        None => report(PoolError::UnknownPointer { addr: ptr as usize }),
    }
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
    // SAFETY: caller's contract.
    unsafe { status_of(pool, "cymem_pool_pin", |p| p.pin(ptr)) }
}

/// Undoes one `cymem_pool_pin`. `CYMEM_ERR_UNKNOWN_POINTER` if `ptr` is not a
/// live block, `CYMEM_ERR_NOT_PINNED` if it has no pins left.
///
/// # Safety
/// `pool` is NULL or a live handle. `ptr` may be anything.
#[no_mangle]
pub unsafe extern "C" fn cymem_pool_unpin(pool: *mut CymemPool, ptr: *const c_void) -> CymemStatus {
    // SAFETY: caller's contract.
    unsafe { status_of(pool, "cymem_pool_unpin", |p| p.unpin(ptr)) }
}

/// The number of pins a block holds: 0 for an unpinned block or a pointer
/// that is not a live block. 0 (and `CYMEM_ERR_NULL_ARGUMENT`) for a NULL pool.
///
/// # Safety
/// `pool` is NULL or a live handle. `ptr` may be anything.
#[no_mangle]
pub unsafe extern "C" fn cymem_pool_pin_count(pool: *const CymemPool, ptr: *const c_void) -> usize {
    // SAFETY: caller's contract.
    unsafe { handle(pool, "cymem_pool_pin_count") }.map_or(0, |pool| pool.with(|p| p.pins(ptr)))
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
    into_handle(debug(
        Pool::try_with_allocator_labelled(Allocator::system(), c_label(None)),
        DebugOptions::default(),
    ))
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
    let (Some(malloc), Some(free)) = (malloc_fn, free_fn) else {
        let missing = if malloc_fn.is_none() {
            "malloc_fn"
        } else {
            "free_fn"
        };
        null_argument("cymem_pool_new_with_allocator_debug", missing);
        return ptr::null_mut();
    };
    // SAFETY: the caller promises malloc/free semantics.
    let allocator = unsafe { Allocator::from_raw(malloc, free) };
    into_handle(debug(
        Pool::try_with_allocator_labelled(allocator, c_label(None)),
        DebugOptions::default(),
    ))
}

/// 1 if the pool is a debug pool, 0 if not (or NULL, with `CYMEM_ERR_NULL_ARGUMENT`).
///
/// # Safety
/// `pool` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn cymem_pool_is_debug(pool: *const CymemPool) -> c_int {
    // SAFETY: caller's contract.
    unsafe { handle(pool, "cymem_pool_is_debug") }
        .map_or(0, |pool| c_int::from(pool.with(|p| p.is_debug())))
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
    // SAFETY: caller's contract.
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
    // SAFETY: caller's contract.
    let Some(slot) = (unsafe { pool.as_mut() }) else {
        return null_argument("cymem_pool_destroy_checked", "pool");
    };
    let handle = std::mem::replace(slot, ptr::null_mut());
    if handle.is_null() {
        return CYMEM_OK;
    }
    // SAFETY: a live handle was made by `Box::into_raw` in `into_handle`,
    // and we just cleared the caller's only way to reach it again.
    let owned = unsafe { Box::from_raw(handle) };
    let result = owned.with(|p| p.free_all_checked());
    drop(owned);
    match result {
        Ok(()) => CYMEM_OK,
        Err(err) => report(err),
    }
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
    // SAFETY: caller's contract.
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
            // SAFETY: `written` <= `size - 1` < `size` (see `write_str`).
            unsafe { self.buf.add(self.written).write(0) };
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
        // SAFETY: `written + n` <= `size - 1` bytes of `buf` are writable (the
        // contract of `new`); `text` cannot overlap the caller's buffer.
        unsafe {
            ptr::copy_nonoverlapping(text.as_ptr(), self.buf.add(self.written).cast::<u8>(), n);
        }
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
    // SAFETY: caller's contract.
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
    // SAFETY: both arrays are valid for their full length.
    unsafe {
        copy_truncated(name, out.name.as_mut_ptr(), CYMEM_POOL_NAME_SIZE);
        copy_truncated(
            &info.origin,
            out.origin.as_mut_ptr(),
            CYMEM_POOL_ORIGIN_SIZE,
        );
    }
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
    // SAFETY: caller's contract.
    let Some(pool) = (unsafe { handle(pool, "cymem_pool_stats") }) else {
        return CYMEM_ERR_NULL_ARGUMENT;
    };
    if out.is_null() {
        return null_argument("cymem_pool_stats", "out");
    }
    let stats = pool.with(|p| p.stats());
    // SAFETY: non-NULL and writable by the caller's contract.
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
    // SAFETY: caller's contract.
    let Some(pool) = (unsafe { handle(pool, "cymem_pool_reset_peak") }) else {
        return CYMEM_ERR_NULL_ARGUMENT;
    };
    pool.with(|p| p.reset_peak());
    CYMEM_OK
}

/// A new pool on the system allocator, called `name` in live-pool reports
/// (copied; NULL for none).
///
/// # Safety
/// `name` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn cymem_pool_new_named(name: *const c_char) -> *mut CymemPool {
    // SAFETY: caller's contract.
    let name = match unsafe { optional_text(name) } {
        Ok(name) => name,
        Err(err) => {
            out_of_memory(err);
            return ptr::null_mut();
        }
    };
    into_handle(Pool::try_with_allocator_labelled(
        Allocator::system(),
        c_label(name),
    ))
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
    // SAFETY: caller's contract.
    let Some(pool) = (unsafe { handle(pool, "cymem_pool_set_name") }) else {
        return CYMEM_ERR_NULL_ARGUMENT;
    };
    // SAFETY: caller's contract.
    match unsafe { optional_text(name) } {
        Ok(name) => {
            pool.with(|p| p.set_name(name));
            CYMEM_OK
        }
        Err(err) => out_of_memory(err),
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
    // SAFETY: caller's contract.
    let Some(pool) = (unsafe { handle(pool, "cymem_pool_name") }) else {
        return 0;
    };
    pool.with(|p| {
        // SAFETY: caller's contract.
        p.with_name(|name| unsafe { copy_truncated(name.unwrap_or(""), buf, size) })
    })
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
    // SAFETY: caller's contract.
    let Some(pool) = (unsafe { handle(pool, "cymem_pool_set_origin") }) else {
        return CYMEM_ERR_NULL_ARGUMENT;
    };
    // SAFETY: caller's contract.
    let origin = match unsafe { optional_text(file) } {
        Ok(Some(file)) => match try_format(format_args!("{file}:{line}")) {
            // Exactly sized: boxing it does not reallocate.
            Ok(text) => Origin::Text(text.into_boxed_str()),
            Err(err) => return out_of_memory(err),
        },
        Ok(None) => Origin::Static("C"),
        Err(err) => return out_of_memory(err),
    };
    pool.with(|p| p.set_origin(origin));
    CYMEM_OK
}

/// Lists the pools alive now in this library (C, Rust and, inside the
/// Python extension, Python pools), most bytes first: fills up to `capacity`
/// entries of `out` and returns how many pools there are, which may be more
/// (call with `out` NULL and `capacity` 0 to count). Pools made or dropped
/// meanwhile may change the count between calls. A dropped pool is never
/// listed, and listing never keeps a pool alive. (Inside the Python
/// extension, describing Python pools' origins briefly takes the GIL.)
/// Out of memory, returns 0 with `CYMEM_ERR_OUT_OF_MEMORY` recorded.
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
            // SAFETY: `i` < `capacity` entries, writable by the caller's contract.
            unsafe { out.add(i).write(to_c_info(info)) };
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
    // SAFETY: caller's contract.
    let mut out = unsafe { CBuffer::new(buf, size) };
    match registry::try_live_pools() {
        // The table goes straight into the caller's buffer.
        Ok(pools) => {
            let _ = registry::write_table(&pools, &mut out);
            out.finish()
        }
        Err(err) => {
            out.finish();
            out_of_memory(err);
            0
        }
    }
}
