//! The backing allocator a pool gets its blocks from.
//!
//! cymem lets users plug in any `malloc`/`free` pair; so does this pool. The
//! optional `calloc` and `realloc` entries let the system (and CPython's
//! `PyMem_*`) allocator skip the pool's own zeroing and copying.

use std::ffi::c_void;
use std::ptr::NonNull;

/// `void *(*)(size_t)`: returns a block of at least the given size, or NULL.
pub type MallocFn = unsafe extern "C" fn(usize) -> *mut c_void;
/// `void (*)(void *)`: releases a block returned by the matching malloc.
pub type FreeFn = unsafe extern "C" fn(*mut c_void);
/// `void *(*)(size_t nelem, size_t elsize)`: a zeroed block, or NULL.
pub type CallocFn = unsafe extern "C" fn(usize, usize) -> *mut c_void;
/// `void *(*)(void *, size_t)`: C `realloc`; on NULL the old block is intact.
pub type ReallocFn = unsafe extern "C" fn(*mut c_void, usize) -> *mut c_void;

/// A malloc/free pair, with optional calloc/realloc accelerators.
///
/// Invariant (promised by whoever builds one, see [`Allocator::from_raw`]):
/// `free` accepts exactly the non-NULL pointers returned by `malloc`,
/// `calloc` and `realloc` of this same allocator, once each.
#[derive(Clone, Copy, Debug)]
pub struct Allocator {
    malloc: MallocFn,
    free: FreeFn,
    calloc: Option<CallocFn>,
    realloc: Option<ReallocFn>,
}

impl Default for Allocator {
    fn default() -> Self {
        Allocator::system()
    }
}

impl Allocator {
    /// The C library's allocator (`calloc`, `realloc`, `free`).
    pub fn system() -> Self {
        Allocator {
            malloc: libc::malloc,
            free: libc::free,
            calloc: Some(libc::calloc),
            realloc: Some(libc::realloc),
        }
    }

    /// A user-supplied malloc/free pair (cymem's `WrapMalloc`/`WrapFree`).
    ///
    /// # Safety
    /// `malloc` must behave like C `malloc` (NULL or a block of at least the
    /// requested size, valid until passed to `free`), and `free` must release
    /// any pointer `malloc` returned. Both must be callable from every thread
    /// that uses the pool.
    pub unsafe fn from_raw(malloc: MallocFn, free: FreeFn) -> Self {
        Allocator {
            malloc,
            free,
            calloc: None,
            realloc: None,
        }
    }

    /// Adds zeroing and growing entry points that belong to the same heap.
    ///
    /// # Safety
    /// Blocks from `calloc` and `realloc` must be releasable by this
    /// allocator's `free`, and `realloc` must accept its blocks.
    pub unsafe fn with_accelerators(
        mut self,
        calloc: Option<CallocFn>,
        realloc: Option<ReallocFn>,
    ) -> Self {
        self.calloc = calloc;
        self.realloc = realloc;
        self
    }

    /// The malloc entry point.
    pub fn malloc_fn(&self) -> MallocFn {
        self.malloc
    }

    /// The free entry point.
    pub fn free_fn(&self) -> FreeFn {
        self.free
    }

    /// A zeroed block of `bytes` (> 0) bytes, or `None` if the allocator failed.
    pub fn alloc_zeroed(&self, bytes: usize) -> Option<NonNull<u8>> {
        debug_assert!(bytes > 0);
        // SAFETY: the functions honour the C contracts (type invariant); a
        // non-NULL result is writable for `bytes` bytes, so the memset is in bounds.
        unsafe {
            if let Some(calloc) = self.calloc {
                return NonNull::new(calloc(1, bytes).cast());
            }
            let p = NonNull::new((self.malloc)(bytes).cast::<u8>())?;
            p.as_ptr().write_bytes(0, bytes);
            Some(p)
        }
    }

    /// Moves a live block of `old` bytes into one of `new` >= `old` bytes whose
    /// tail is zeroed. On success the old block is released; on `None` it is
    /// untouched and still owned by the caller.
    ///
    /// # Safety
    /// `ptr` must be a live block of this allocator, at least `old` bytes long.
    pub(crate) unsafe fn grow_zeroed(
        &self,
        ptr: NonNull<u8>,
        old: usize,
        new: usize,
    ) -> Option<NonNull<u8>> {
        debug_assert!(new >= old);
        let grown = match self.realloc {
            // C realloc keeps the first `old` bytes and frees the old block itself.
            Some(realloc) => NonNull::new(realloc(ptr.as_ptr().cast(), new).cast::<u8>())?,
            None => {
                let fresh = NonNull::new((self.malloc)(new).cast::<u8>())?;
                // The blocks are distinct live allocations, so they cannot overlap.
                fresh.as_ptr().copy_from_nonoverlapping(ptr.as_ptr(), old);
                (self.free)(ptr.as_ptr().cast());
                fresh
            }
        };
        // `grown` is writable for `new` bytes; zero what the caller has not seen.
        grown.as_ptr().add(old).write_bytes(0, new - old);
        Some(grown)
    }

    /// Releases a block.
    ///
    /// # Safety
    /// `ptr` must be a live block of this allocator, released exactly once.
    pub unsafe fn release(&self, ptr: NonNull<u8>) {
        (self.free)(ptr.as_ptr().cast());
    }
}
