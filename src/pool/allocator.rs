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
    /// Shared, not inline: three words instead of four in every pool.
    accelerators: Option<&'static Accelerators>,
}

/// The zeroing and growing entry points of a heap (see
/// [`Allocator::with_accelerators`]).
#[derive(Debug)]
pub struct Accelerators {
    pub calloc: CallocFn,
    pub realloc: ReallocFn,
}

/// The C library's.
static LIBC: Accelerators = Accelerators {
    calloc: libc::calloc,
    realloc: libc::realloc,
};

impl Default for Allocator {
    fn default() -> Self {
        Allocator::system()
    }
}

impl Allocator {
    /// The C library's allocator (`calloc`, `realloc`, `free`).
    pub fn system() -> Self {
        // SAFETY: the C library's `malloc` and `free` are the C functions
        // themselves, and thread-safe.
        let pair = unsafe { Allocator::from_raw(libc::malloc, libc::free) };
        // SAFETY: its `calloc` and `realloc` serve the same heap, so `free`
        // releases their blocks and `realloc` accepts `malloc`'s.
        unsafe { pair.with_accelerators(&LIBC) }
    }

    /// A malloc/free pair: the one way every allocator starts (a
    /// user-supplied pair such as cymem's `WrapMalloc`/`WrapFree`, or the
    /// heaps above, which then add their accelerators).
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
            accelerators: None,
        }
    }

    /// Adds zeroing and growing entry points that belong to the same heap.
    ///
    /// # Safety
    /// Blocks from `calloc` and `realloc` must be releasable by this
    /// allocator's `free`, and `realloc` must accept its blocks.
    pub unsafe fn with_accelerators(mut self, accelerators: &'static Accelerators) -> Self {
        self.accelerators = Some(accelerators);
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
        if let Some(Accelerators { calloc, .. }) = self.accelerators {
            // SAFETY: `calloc` behaves like C `calloc` (promised to
            // `with_accelerators`); any size may be asked for.
            return NonNull::new(unsafe { calloc(1, bytes) }.cast());
        }
        // SAFETY: `malloc` behaves like C `malloc` (promised to `from_raw`).
        let p = NonNull::new(unsafe { (self.malloc)(bytes) }.cast::<u8>())?;
        // SAFETY: a non-NULL result of `malloc(bytes)` is writable for `bytes`.
        unsafe { p.as_ptr().write_bytes(0, bytes) };
        Some(p)
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
        let grown = match self.accelerators.map(|a| a.realloc) {
            // C realloc keeps the first `old` bytes and frees the old block itself.
            Some(realloc) => {
                // SAFETY: `realloc` behaves like C `realloc` on this heap
                // (promised to `with_accelerators`), and `ptr` is a live block
                // of it (`# Safety`); on NULL the old block is left intact.
                let moved = unsafe { realloc(ptr.as_ptr().cast(), new) };
                NonNull::new(moved.cast::<u8>())?
            }
            None => {
                // SAFETY: `malloc` behaves like C `malloc` (promised to `from_raw`).
                let fresh = NonNull::new(unsafe { (self.malloc)(new) }.cast::<u8>())?;
                // SAFETY: `fresh` is writable for `new` >= `old` bytes, `ptr`
                // readable for `old` (`# Safety`); two live allocations
                // cannot overlap.
                unsafe { fresh.as_ptr().copy_from_nonoverlapping(ptr.as_ptr(), old) };
                // SAFETY: `ptr` is a live block of this allocator (`# Safety`),
                // released once here; the caller switches to `fresh`.
                unsafe { (self.free)(ptr.as_ptr().cast()) };
                fresh
            }
        };
        // SAFETY: `grown` is one allocation of `new` >= `old` bytes, so the
        // offset stays inside it.
        let tail = unsafe { grown.as_ptr().add(old) };
        // SAFETY: `tail` is writable for the `new - old` bytes to the end of
        // `grown`; the caller has not seen them yet.
        unsafe { tail.write_bytes(0, new - old) };
        Some(grown)
    }

    /// Releases a block.
    ///
    /// # Safety
    /// `ptr` must be a live block of this allocator, released exactly once.
    pub unsafe fn release(&self, ptr: NonNull<u8>) {
        // SAFETY: `free` accepts the live blocks of this allocator (type
        // invariant), and the `# Safety` section makes `ptr` one, released once.
        unsafe { (self.free)(ptr.as_ptr().cast()) };
    }
}
