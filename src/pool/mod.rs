//! The pool: hands out zeroed blocks, remembers each one, frees each exactly once.

use std::ffi::c_void;
use std::ptr::NonNull;

use bumpalo::Bump;

use crate::fallible::{try_box, OutOfMemory};
use crate::registry::{self, DeferredOrigin, Label, Origin, PoolStats, Record};
use allocator::Allocator;
use arena_log::ArenaLog;
use error::PoolError;
use instrument::ArenaWatch;
use pins::Pins;
use table::{BlockTable, TableFull};

pub mod allocator;
mod arena_log;
mod asan;
pub mod debug;
pub mod error;
mod instrument;
mod lifetimes;
#[cfg(test)]
mod oom_tests;
mod pins;
pub mod shared;
mod table;

pub use debug::DebugOptions;
pub use instrument::BlockObserver;
pub use lifetimes::{CleanupFn, Mark};

/// The largest block C and Rust can address (`isize::MAX` bytes).
const MAX_BLOCK: usize = isize::MAX as usize;

/// The byte size of `number` elements of `elem_size` bytes, refused when it
/// overflows or exceeds the largest addressable object (never truncated).
pub fn block_bytes(number: usize, elem_size: usize) -> Result<usize, PoolError> {
    number
        .checked_mul(elem_size)
        .filter(|&b| b <= MAX_BLOCK)
        .ok_or(PoolError::SizeOverflow { number, elem_size })
}

/// Arena blocks are aligned like `malloc`'s (`max_align_t`).
const ARENA_ALIGN: usize = 16;

/// The error for bookkeeping of `T` that could not be allocated.
fn no_room_for<T>(_: OutOfMemory) -> PoolError {
    PoolError::OutOfMemory {
        bytes: std::mem::size_of::<T>(),
    }
}

/// What the infallible constructors do when memory runs out: what `Box::new`
/// does (abort, or the process's allocation error handler).
fn constructed(pool: Result<Pool, PoolError>) -> Pool {
    pool.unwrap_or_else(|_| std::alloc::handle_alloc_error(std::alloc::Layout::new::<Record>()))
}

/// Where a pool's blocks come from.
#[derive(Debug)]
enum Source {
    /// Each block is one allocation of the backing allocator, released by
    /// `free` or when the pool drops.
    Heap(Allocator),
    /// Blocks are bump-allocated from large chunks (bumpalo, on the system
    /// allocator) that are all released together when the pool drops. `free`
    /// forgets a block; its space is reused only after `free_all` or never.
    /// Arena blocks are indexed by an append-only log instead of the hash
    /// table (`table` stays empty): recording a block is one append.
    /// Boxed: heap pools (the default) stay small, which keeps `Pool()` cheap.
    Arena(Box<Arena>),
}

/// An arena pool's chunks and the log of the blocks cut from them.
#[derive(Debug)]
struct Arena {
    bump: Bump<ARENA_ALIGN>,
    log: ArenaLog,
    /// Describes the blocks to valgrind or ASan when they watch.
    watch: ArenaWatch,
}

/// A memory pool in cymem's sense: every block it hands out is released
/// exactly once, either by [`Pool::free`] or when the pool is dropped.
///
/// Two strategies share this type and its rules: the default heap mode (one
/// allocator call per block) and [`Pool::arena`] (bump allocation, released
/// all at once: the fastest for many small blocks that die together).
///
/// All methods are safe: a pointer passed in is only looked up in the pool's
/// table, never read or written unless the pool handed it out and it is live.
/// Using the returned memory is up to the caller (it is raw memory that dies
/// with the pool).
#[derive(Debug)]
pub struct Pool {
    table: BlockTable,
    source: Source,
    /// The pool's counters, in its live-pool registry record (see
    /// [`crate::registry`]): written only here, read by reports.
    /// A [deferred](Pool::deferred_under_process_lock) pool has its
    /// creation site's stand-in here (never live) until it takes its own.
    stats: &'static Record,
    /// What only some pools use; `None` keeps every block path on its fast
    /// branch, behind one test.
    extras: Option<Box<Extras>>,
}

/// The parts of a pool that most pools never use, boxed together: the block
/// paths test one pointer for all of them, and a pool without them stays
/// small (every Python `Pool` holds one).
#[derive(Debug, Default)]
struct Extras {
    pins: Pins,
    /// `Some` in debug mode (see `debug.rs`).
    debug: Option<Box<debug::DebugState>>,
    /// Told of every block (see [`Pool::set_observer`]).
    observer: Option<&'static BlockObserver>,
    /// `Some` while a limit, scope or cleanup is in use (see `lifetimes.rs`).
    lifetimes: Option<Box<lifetimes::Lifetimes>>,
}

/// What a pool without extras reads.
const NO_EXTRAS: &Extras = &Extras {
    pins: Pins::NONE,
    debug: None,
    observer: None,
    lifetimes: None,
};

impl Extras {
    /// Nothing in use: the box can go.
    fn is_unused(&self) -> bool {
        self.pins.is_empty()
            && self.debug.is_none()
            && self.observer.is_none()
            && self.lifetimes.is_none()
    }
}

impl Default for Pool {
    fn default() -> Self {
        Pool::new()
    }
}

impl Pool {
    /// A pool on the system allocator.
    #[track_caller]
    pub fn new() -> Self {
        Pool::with_allocator(Allocator::system())
    }

    /// A pool whose blocks come from (and return to) `allocator`.
    #[track_caller]
    pub fn with_allocator(allocator: Allocator) -> Self {
        Pool::with_allocator_labelled(allocator, Label::here())
    }

    /// An arena pool: blocks are bump-allocated from chunks of the system
    /// allocator and released all at once when the pool drops. `free` and
    /// `realloc` keep their meaning (errors, `size`, block count), but the
    /// space of a freed or moved block is not reused until [`Pool::free_all`].
    #[track_caller]
    pub fn arena() -> Self {
        Pool::arena_labelled(Label::here())
    }

    /// A pool on the system allocator, called `name` in live-pool reports.
    #[track_caller]
    pub fn named(name: impl Into<String>) -> Self {
        let label = Label {
            name: Some(name.into()),
            ..Label::here()
        };
        Pool::with_allocator_labelled(Allocator::system(), label)
    }

    /// [`Pool::with_allocator`] with a name and origin for live-pool reports.
    /// Out of memory it aborts, as `Box::new` does: see
    /// [`Pool::try_with_allocator_labelled`].
    pub fn with_allocator_labelled(allocator: Allocator, label: Label) -> Self {
        constructed(Pool::try_with_allocator_labelled(allocator, label))
    }

    /// [`Pool::arena`] with a name and origin for live-pool reports. Out of
    /// memory it aborts: see [`Pool::try_arena_labelled`].
    pub fn arena_labelled(label: Label) -> Self {
        constructed(Pool::try_arena_labelled(label))
    }

    /// [`Pool::with_allocator_labelled`], or `OutOfMemory` if the pool's
    /// record could not be allocated.
    pub fn try_with_allocator_labelled(
        allocator: Allocator,
        label: Label,
    ) -> Result<Self, PoolError> {
        Ok(Pool {
            table: BlockTable::default(),
            source: Source::Heap(allocator),
            stats: registry::register(label, false).map_err(no_room_for::<Record>)?,
            extras: None,
        })
    }

    /// [`Pool::arena_labelled`], or `OutOfMemory`.
    pub fn try_arena_labelled(label: Label) -> Result<Self, PoolError> {
        let mut arena = try_box(Arena {
            bump: Bump::with_min_align(),
            log: ArenaLog::default(),
            watch: ArenaWatch::OFF,
        })
        .map_err(no_room_for::<Arena>)?;
        let stats = registry::register(label, true).map_err(no_room_for::<Record>)?;
        // In the box, where the watch stays (and stopped when the pool drops).
        arena.watch.start();
        Ok(Pool {
            table: BlockTable::default(),
            source: Source::Arena(arena),
            stats,
            extras: None,
        })
    }

    /// A heap pool for callers that hold one process-wide lock for every
    /// call on it, as [`Pool::count_under_process_lock`] declares (CPython's
    /// GIL), made at `origin` (one per creation site). It joins the
    /// live-pool registry when it first needs a record: at its first block,
    /// or when it is named, limited or shared through a lock. Until then it
    /// owns nothing but itself, so making and dropping an unused pool costs
    /// no registry work and no memory beyond the struct, and making one
    /// cannot fail. Live-pool reports list it once it has registered.
    pub fn deferred_under_process_lock(
        allocator: Allocator,
        origin: &'static DeferredOrigin,
    ) -> Self {
        Pool {
            table: BlockTable::default(),
            source: Source::Heap(allocator),
            stats: &origin.0,
            extras: None,
        }
    }

    /// The pool's extras (all unused if it has none).
    #[inline(always)]
    fn extras(&self) -> &Extras {
        self.extras.as_deref().unwrap_or(NO_EXTRAS)
    }

    /// The pool's extras, made on first use (`OutOfMemory` if they cannot be).
    fn extras_mut(&mut self) -> Result<&mut Extras, PoolError> {
        if self.extras.is_none() {
            self.extras = Some(try_box(Extras::default()).map_err(no_room_for::<Extras>)?);
        }
        Ok(self.extras.as_deref_mut().expect("made above"))
    }

    /// The observer, if any (one test of the extras pointer when there are
    /// none: the block paths call it).
    #[inline(always)]
    fn observer(&self) -> Option<&'static BlockObserver> {
        self.extras.as_deref().and_then(|extras| extras.observer)
    }

    /// Drops the extras once nothing in them is in use, which puts the
    /// block paths back on their fast branch.
    fn shed_extras(&mut self) {
        if self
            .extras
            .as_ref()
            .is_some_and(|extras| extras.is_unused())
        {
            self.extras = None;
        }
    }

    /// The pool's record, taking one first if the pool is deferred.
    fn registered(&mut self) -> Result<&'static Record, PoolError> {
        if self.is_deferred() {
            self.register_deferred()?;
        }
        Ok(self.stats)
    }

    /// Whether the pool still has its creation site's stand-in record.
    #[inline(always)]
    fn is_deferred(&self) -> bool {
        !self.stats.is_live()
    }

    /// A deferred pool takes its record (and stays deferred if memory ran
    /// out).
    #[cold]
    #[inline(never)]
    fn register_deferred(&mut self) -> Result<(), PoolError> {
        // SAFETY: a pool's own record is live from `register` until the
        // pool drops, so a pool whose record is not live holds the record
        // that `deferred_under_process_lock` took from a `DeferredOrigin`
        // (`repr(transparent)` over it), which lives for ever.
        let site = unsafe { &*std::ptr::from_ref(self.stats).cast::<DeferredOrigin>() };
        let origin = site.origin().try_clone().map_err(no_room_for::<Origin>)?;
        let label = Label { name: None, origin };
        let record = registry::register(label, false).map_err(no_room_for::<Record>)?;
        record.set_serialised();
        self.stats = record;
        Ok(())
    }

    /// The pool's name in live-pool reports.
    pub fn name(&self) -> Option<String> {
        self.with_name(|name| name.map(str::to_owned))
    }

    /// Calls `f` with the pool's name, without copying it. `f` must not make
    /// or drop pools (the registry is locked meanwhile).
    pub fn with_name<R>(&self, f: impl FnOnce(Option<&str>) -> R) -> R {
        registry::with_name(self.stats, f)
    }

    /// Renames the pool (`None`: unnamed); `OutOfMemory` if the name could
    /// not be stored (the old one stays).
    pub fn set_name(&mut self, name: Option<String>) -> Result<(), PoolError> {
        let bytes = name.as_ref().map_or(0, String::len);
        registry::set_name(self.registered()?, name).map_err(|_| PoolError::OutOfMemory { bytes })
    }

    /// Changes where the reports say the pool was made.
    /// `OutOfMemory` (nothing changed) if a deferred pool could not take
    /// its record first.
    pub fn set_origin(&mut self, origin: Origin) -> Result<(), PoolError> {
        registry::set_origin(self.registered()?, origin);
        Ok(())
    }

    /// Declares that every call on this pool, for as long as it lives, holds
    /// one process-wide lock shared by every pool so declared (CPython's
    /// GIL, for Python pools). Its bytes then reach the process-wide total
    /// and peak through counts kept under that lock instead of per-thread
    /// counts, which in a shared library cost a thread-local lookup per
    /// block. A false declaration makes the peak figures imprecise, never
    /// unsafe.
    pub fn count_under_process_lock(&mut self) {
        // A deferred pool counts so once it registers.
        if !self.is_deferred() {
            self.stats.set_serialised();
        }
    }

    /// The backing allocator of a heap pool (`None` for an arena pool).
    pub fn allocator(&self) -> Option<&Allocator> {
        match &self.source {
            Source::Heap(allocator) => Some(allocator),
            Source::Arena(..) => None,
        }
    }

    /// Whether this is an arena pool.
    pub fn is_arena(&self) -> bool {
        matches!(self.source, Source::Arena(..))
    }

    /// A zeroed block of `bytes` (> 0) bytes from the pool's source.
    fn new_block(&self, bytes: usize) -> Option<NonNull<u8>> {
        match &self.source {
            Source::Heap(allocator) => allocator.alloc_zeroed(bytes),
            Source::Arena(arena) => {
                let block = arena.watch.carve(&arena.bump, bytes)?;
                // SAFETY: `carve` returned a fresh block of `bytes` bytes cut
                // from the arena, so all of it is writable.
                unsafe { block.as_ptr().write_bytes(0, bytes) };
                Some(block)
            }
        }
    }

    /// Gives a block of `bytes` (as asked of `new_block`) back to the
    /// pool's source. An arena keeps the space (its chunks are released
    /// together) and only tells the memory checker, if one watches.
    ///
    /// # Safety
    /// `block` is a live block of this pool's source, no longer in the table.
    unsafe fn release(&self, block: NonNull<u8>, bytes: usize) {
        match &self.source {
            // SAFETY: for a heap pool the source is `allocator`; the
            // `# Safety` section makes `block` one of its live blocks, and
            // with it out of the table nothing releases it again.
            Source::Heap(allocator) => unsafe { allocator.release(block) },
            Source::Arena(arena) => arena.watch.block_released(block, bytes),
        }
    }

    // The block index. Every block enters through `record` and leaves through
    // `forget` or `moved`, which also keep the counters.

    /// Adds a fresh block to the index. `Ok(false)`: already there (a broken
    /// custom allocator), nothing changed. (Inlined: as a call it cost the
    /// alloc + free pair a tenth of the pool's own instructions.)
    #[inline(always)]
    fn record(&mut self, addr: usize, bytes: usize) -> Result<bool, TableFull> {
        if self.is_deferred() {
            self.register_deferred().map_err(|_| TableFull)?;
        }
        let added = match &mut self.source {
            Source::Heap(_) => self.table.insert(addr, bytes)?,
            // Arena space is never reused while logged: `addr` is fresh.
            Source::Arena(arena) => arena.log.push(addr, bytes).map(|()| true)?,
        };
        if added {
            self.stats.added(bytes);
            if let Some(observer) = self.observer() {
                (observer.added)(addr, bytes);
            }
        }
        Ok(added)
    }

    /// Removes a block from the index; its size, or `None` if unknown.
    #[inline(always)]
    fn forget(&mut self, addr: usize) -> Option<usize> {
        let bytes = match &mut self.source {
            Source::Heap(_) => self.table.remove(addr)?,
            Source::Arena(arena) => arena.log.remove(addr)?,
        };
        self.stats.removed(bytes);
        if let Some(observer) = self.observer() {
            (observer.removed)(addr);
        }
        Some(bytes)
    }

    /// The size of a block in the index.
    fn lookup(&self, addr: usize) -> Option<usize> {
        match &self.source {
            Source::Heap(_) => self.table.get(addr),
            Source::Arena(arena) => arena.log.get(addr),
        }
    }

    /// Records that the block at `old_addr` (of `old_size` bytes) now lives
    /// at `new_addr` with `new_size` bytes. Needs `reserve_move` first.
    fn moved(&mut self, old_addr: usize, old_size: usize, new_addr: usize, new_size: usize) {
        match &mut self.source {
            Source::Heap(_) => self.table.replace(old_addr, new_addr, new_size),
            Source::Arena(arena) => {
                arena.log.remove(old_addr);
                let pushed = arena.log.push(new_addr, new_size);
                debug_assert!(pushed.is_ok(), "reserve_move reserved the entry");
            }
        }
        self.stats.resized(old_size, new_size);
        if let Some(observer) = self.observer() {
            (observer.removed)(old_addr);
            (observer.added)(new_addr, new_size);
        }
    }

    /// Tells the observer, if any, that every live block is going.
    fn all_removed(&self) {
        if let Some(observer) = self.observer() {
            self.blocks().for_each(|(addr, _)| (observer.removed)(addr));
        }
    }

    /// Installs (or with `None` removes) the observer told of every block
    /// handed out and taken back from now on. Blocks live already are not
    /// reported to it. `OutOfMemory` (nothing changed) if the pool's box of
    /// rarely used parts could not be made.
    pub fn set_observer(
        &mut self,
        observer: Option<&'static BlockObserver>,
    ) -> Result<(), PoolError> {
        match observer {
            Some(_) => self.extras_mut()?.observer = observer,
            None => {
                if let Some(extras) = self.extras.as_deref_mut() {
                    extras.observer = None;
                }
                self.shed_extras();
            }
        }
        Ok(())
    }

    /// Makes sure `moved` cannot fail for want of memory.
    fn reserve_move(&mut self, new_size: usize) -> Result<(), TableFull> {
        match &mut self.source {
            Source::Heap(_) => self.table.reserve_large(),
            Source::Arena(arena) => arena.log.reserve_one(new_size),
        }
    }

    /// Empties the index and releases every block, counting them as freed.
    /// The source's block of a user address `addr` starts at `addr - offset`
    /// (debug pools hand out addresses past a guard). Allocates nothing.
    fn release_all(&mut self, offset: usize) {
        self.all_removed();
        match &mut self.source {
            Source::Heap(allocator) => {
                let allocator = *allocator;
                self.stats.cleared(self.table.len());
                self.table.drain(|addr| {
                    // SAFETY: a table entry's source block starts `offset`
                    // bytes before it, inside one allocation: never NULL.
                    let block = unsafe { NonNull::new_unchecked((addr - offset) as *mut u8) };
                    // SAFETY: every table entry is a live block of
                    // `allocator`; `drain` removes each as it goes, so each
                    // is released once.
                    unsafe { allocator.release(block) }
                });
            }
            Source::Arena(arena) => {
                // The blocks die with their chunks: forget them all at once.
                arena.watch.all_released(arena.log.iter(), offset);
                arena.bump.reset();
                self.stats.cleared(arena.log.len());
                arena.log.clear();
            }
        }
    }

    /// Bytes in live blocks.
    pub fn size(&self) -> usize {
        self.stats.size()
    }

    /// Number of live blocks (0-byte blocks included).
    pub fn block_count(&self) -> usize {
        match &self.source {
            Source::Heap(_) => self.table.len(),
            Source::Arena(arena) => arena.log.len(),
        }
    }

    /// The pool's counters, now.
    pub fn stats(&self) -> PoolStats {
        let stats = self.stats.snapshot();
        debug_assert_eq!(stats.block_count, self.block_count());
        stats
    }

    /// Starts a new high-water mark from the bytes live now.
    pub fn reset_peak(&mut self) {
        self.stats.reset_peak();
    }

    /// The size of a live block, or `None` if `ptr` is not one of this pool's.
    pub fn block_size(&self, ptr: *const c_void) -> Option<usize> {
        self.lookup(ptr as usize)
    }

    /// Whether `ptr` is a live block of this pool.
    pub fn contains(&self, ptr: *const c_void) -> bool {
        self.block_size(ptr).is_some()
    }

    /// Every live block as `(address, size)`, in no particular order.
    pub fn blocks(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        let log = match &self.source {
            Source::Arena(arena) => Some(&arena.log),
            Source::Heap(_) => None,
        };
        // An arena pool's table is empty; a heap pool has no log.
        self.table
            .iter()
            .chain(log.into_iter().flat_map(ArenaLog::iter))
    }

    /// A zeroed block of `number * elem_size` bytes.
    ///
    /// A 0-byte request still returns a unique non-NULL pointer (counted as 0
    /// bytes): Cython code relies on it, as it did with cymem.
    ///
    /// Fails with `LimitExceeded` if the block would take the live bytes
    /// past the pool's [limit](Pool::set_limit).
    pub fn alloc(&mut self, number: usize, elem_size: usize) -> Result<NonNull<c_void>, PoolError> {
        if self.extras.is_some() {
            return self.alloc_with_extras(number, elem_size);
        }
        self.alloc_block(number, elem_size)
    }

    /// `alloc` on a pool with extras.
    #[inline(never)]
    fn alloc_with_extras(
        &mut self,
        number: usize,
        elem_size: usize,
    ) -> Result<NonNull<c_void>, PoolError> {
        if self.extras().lifetimes.is_some() {
            return self.alloc_with_lifetimes(number, elem_size);
        }
        self.alloc_block(number, elem_size)
    }

    /// `alloc` apart from limits and scopes.
    #[inline(always)]
    fn alloc_block(
        &mut self,
        number: usize,
        elem_size: usize,
    ) -> Result<NonNull<c_void>, PoolError> {
        if self.is_debug() {
            return self.debug_alloc(number, elem_size);
        }
        let bytes = block_bytes(number, elem_size)?;
        // A 0-byte block is backed by 1 byte so it has an address of its own.
        let block = self
            .new_block(bytes.max(1))
            .ok_or(PoolError::OutOfMemory { bytes })?;
        let addr = block.as_ptr() as usize;
        match self.record(addr, bytes) {
            Ok(true) => Ok(block.cast()),
            // A broken custom allocator handed out a live block again. Tracking
            // it twice would mean a double free later; leave it untracked.
            Ok(false) => Err(PoolError::AllocatorReturnedLiveBlock { addr }),
            Err(_) => {
                // SAFETY: `block` came from `new_block` just now and `record`
                // failed, so it is a live block of the source in no table.
                unsafe { self.release(block, bytes.max(1)) };
                Err(PoolError::OutOfMemory { bytes })
            }
        }
    }

    /// Releases a live block. Fails, touching no memory, if `ptr` is not one
    /// (a foreign pointer, NULL, or a block already freed). Returns its size.
    pub fn free(&mut self, ptr: *mut c_void) -> Result<usize, PoolError> {
        if self.extras.is_some() {
            return self.free_with_extras(ptr);
        }
        self.free_block(ptr)
    }

    /// `free` on a pool with extras.
    #[inline(never)]
    fn free_with_extras(&mut self, ptr: *mut c_void) -> Result<usize, PoolError> {
        if self.extras().lifetimes.is_some() {
            return self.free_with_lifetimes(ptr);
        }
        self.free_block(ptr)
    }

    /// `free` apart from scopes.
    #[inline(always)]
    fn free_block(&mut self, ptr: *mut c_void) -> Result<usize, PoolError> {
        let addr = ptr as usize;
        if let Some(extras) = self.extras.as_deref() {
            extras.pins.check_unpinned(addr)?;
        }
        if self.is_debug() {
            return self.debug_free(ptr);
        }
        let bytes = self
            .forget(addr)
            .ok_or(PoolError::UnknownPointer { addr })?;
        // SAFETY: the table holds only non-NULL block addresses, and `addr`
        // was in it.
        let block = unsafe { NonNull::new_unchecked(ptr.cast()) };
        // SAFETY: `addr` was in the table, so it is a live block of our
        // source; `forget` removed it, which makes this its only release.
        // (A 0-byte block is backed by 1 byte.)
        unsafe { self.release(block, bytes.max(1)) };
        Ok(bytes)
    }

    /// Grows a live block to `new_size` bytes: the contents move, the new tail
    /// is zeroed, and the old block is released. The returned pointer replaces
    /// `ptr`. cymem's rule: `new_size` must be larger than the block.
    ///
    /// On error the block is left exactly as it was. Fails with
    /// `LimitExceeded` if the growth would take the live bytes past the
    /// pool's limit. A block keeps its scope (if any) under its new address.
    pub fn realloc(
        &mut self,
        ptr: *mut c_void,
        new_size: usize,
    ) -> Result<NonNull<c_void>, PoolError> {
        if self.extras().lifetimes.is_some() {
            return self.realloc_with_lifetimes(ptr, new_size);
        }
        self.realloc_block(ptr, new_size)
    }

    /// `realloc` apart from limits and scopes.
    #[inline(always)]
    fn realloc_block(
        &mut self,
        ptr: *mut c_void,
        new_size: usize,
    ) -> Result<NonNull<c_void>, PoolError> {
        let addr = ptr as usize;
        if let Some(extras) = self.extras.as_deref() {
            extras.pins.check_unpinned(addr)?;
        }
        let old = self.growable(addr, new_size)?;
        if self.is_debug() {
            return self.debug_realloc(ptr, old, new_size);
        }
        // Recording the moved block must not fail once the move happened.
        self.reserve_move(new_size)
            .map_err(|_| PoolError::OutOfMemory { bytes: new_size })?;
        // A 0-byte block is backed by 1 zeroed byte; `new_size` >= 1 covers it.
        let backed = old.max(1);
        // SAFETY: `growable` found `addr` in the table, which holds only
        // non-NULL block addresses.
        let block = unsafe { NonNull::new_unchecked(ptr.cast()) };
        // SAFETY: `addr` is in the table: a live block of our source, backed
        // by `backed` bytes.
        let grown = unsafe { self.grow(block, backed, new_size) }
            .ok_or(PoolError::OutOfMemory { bytes: new_size })?;
        let new_addr = grown.as_ptr() as usize;
        if new_addr != addr && self.lookup(new_addr).is_some() {
            // Broken custom allocator: the old block is gone, and the "new" one
            // is someone else's live block. Forget the old record only.
            self.forget(addr);
            return Err(PoolError::AllocatorReturnedLiveBlock { addr: new_addr });
        }
        self.moved(addr, old, new_addr, new_size);
        Ok(grown.cast())
    }

    /// The size of the live block at `addr`, if `realloc` may grow it to
    /// `new_size` bytes (cymem's rule: only larger, and addressable).
    fn growable(&self, addr: usize, new_size: usize) -> Result<usize, PoolError> {
        let old = self
            .lookup(addr)
            .ok_or(PoolError::UnknownPointer { addr })?;
        if new_size <= old {
            return Err(PoolError::NotLarger {
                addr,
                current: old,
                requested: new_size,
            });
        }
        if new_size > MAX_BLOCK {
            return Err(PoolError::SizeOverflow {
                number: 1,
                elem_size: new_size,
            });
        }
        Ok(old)
    }

    /// Moves a block of `old` bytes into a zero-tailed block of `new` bytes
    /// and releases the old one; `None` (old block intact) on failure.
    ///
    /// # Safety
    /// `block` is a live block of this pool's source, at least `old` bytes.
    unsafe fn grow(&self, block: NonNull<u8>, old: usize, new: usize) -> Option<NonNull<u8>> {
        match &self.source {
            // SAFETY: for a heap pool the source is `allocator`, and the
            // `# Safety` section makes `block` one of its live blocks of at
            // least `old` bytes.
            Source::Heap(allocator) => unsafe { allocator.grow_zeroed(block, old, new) },
            Source::Arena(arena) => {
                let fresh = self.new_block(new)?;
                // SAFETY: distinct live blocks of `new` >= `old` bytes. The old
                // block's space stays with the arena until it drops.
                unsafe { fresh.as_ptr().copy_from_nonoverlapping(block.as_ptr(), old) };
                arena.watch.block_released(block, old);
                Some(fresh)
            }
        }
    }

    /// Releases every live block now; the pool stays usable.
    ///
    /// Pinned blocks are released too and every pin is dropped: this is the
    /// whole pool going away, which pins do not stop (as with drop). Python
    /// cannot reach it while a view lives, since the view keeps its Pool alive.
    ///
    /// In debug mode damage found here is reported by the next
    /// [`Pool::check`] (or use [`Pool::free_all_checked`]).
    ///
    /// Unlike [`Pool::clear`], runs no cleanup.
    pub fn free_all(&mut self) {
        if let Some(extras) = self.extras.as_deref_mut() {
            extras.pins.clear();
        }
        self.shed_extras();
        self.forget_scoped_blocks();
        if self.is_debug() {
            return self.debug_free_all();
        }
        self.release_all(0);
    }
}

impl Pool {
    /// The pool's registry record (its counters, and the lock of a shared
    /// pool), taking one first if the pool is deferred.
    pub(crate) fn registry_record(&mut self) -> Result<&'static Record, PoolError> {
        self.registered()
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // Cleanups first, while the blocks they may read are still live.
        self.run_cleanups_at_drop();
        if self.is_debug() {
            // Nobody can be told but the process: say it on stderr. (Python
            // pools and `cymem_pool_destroy_checked` check before this.)
            if let Err(err) = self.debug_release_everything() {
                eprintln!("cymem_rs: {err} (found when the pool was dropped)");
            }
        } else if self.block_count() != 0 {
            // An arena's chunks go with the Bump; only heap blocks need a
            // walk, and an empty pool (common for short-lived ones) none.
            match &self.source {
                Source::Heap(_) => self.free_all(),
                Source::Arena(_) => self.all_removed(),
            }
        }
        if let Source::Arena(arena) = &self.source {
            arena.watch.stop();
        }
        // A deferred pool that never registered has nothing to give back.
        if !self.is_deferred() {
            registry::release(self.stats);
        }
    }
}

#[cfg(test)]
mod extras_tests {
    use super::{BlockObserver, Pool};

    /// Every rarely used part gives the box back once it is no longer in
    /// use, so the block paths return to their fast branch.
    #[test]
    fn the_extras_go_when_nothing_in_them_is_used() {
        static OBSERVER: BlockObserver = BlockObserver {
            added: |_, _| {},
            removed: |_| {},
        };
        let mut pool = Pool::new();
        let block = pool.alloc(1, 8).unwrap().as_ptr();
        assert!(pool.extras.is_none());
        pool.pin(block).unwrap();
        pool.pin(block).unwrap();
        pool.unpin(block).unwrap();
        assert!(pool.extras.is_some(), "still pinned once");
        pool.unpin(block).unwrap();
        assert!(pool.extras.is_none());
        pool.set_limit(Some(100)).unwrap();
        pool.set_limit(None).unwrap();
        assert!(pool.extras.is_none());
        pool.set_observer(Some(&OBSERVER)).unwrap();
        pool.set_limit(Some(100)).unwrap();
        pool.set_limit(None).unwrap();
        assert!(pool.extras.is_some(), "the observer is still in use");
        pool.set_observer(None).unwrap();
        assert!(pool.extras.is_none());
        pool.pin(block).unwrap();
        pool.free_all();
        assert!(pool.extras.is_none(), "free_all drops every pin");
        let mark = pool.mark().unwrap();
        pool.alloc(1, 8).unwrap();
        pool.release_to(mark).unwrap();
        assert!(pool.extras.is_none(), "the scope is closed");
    }
}
