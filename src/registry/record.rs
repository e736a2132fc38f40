//! A pool's record: its counters, written by the pool and read by reports.

use std::cell::UnsafeCell;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard, PoisonError, TryLockError};

use crate::error::PoolError;

use super::label::Origin;
use super::peak::{self, Lane};

/// A snapshot of a pool's statistics.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    /// Bytes in live blocks.
    pub size: usize,
    /// The most bytes live at once since the pool was made or
    /// [`Pool::reset_peak`] was last called.
    pub peak_size: usize,
    /// Live blocks (0-byte blocks included).
    pub block_count: usize,
    /// Blocks handed out by `alloc` (successful calls).
    pub total_allocs: u64,
    /// Blocks released by `free`, `free_all` or the pool's drop.
    pub total_frees: u64,
    /// Successful `realloc` calls.
    pub total_reallocs: u64,
}

/// A [`PoolStats`] field: its name and how to read it.
pub type StatsField = (&'static str, fn(&PoolStats) -> u64);

impl PoolStats {
    /// Every field's name and value, in declaration order: the one list the
    /// Python `PoolStats` and `PoolInfo` types are built from.
    pub const FIELDS: [StatsField; 6] = [
        ("size", |s| s.size as u64),
        ("peak_size", |s| s.peak_size as u64),
        ("block_count", |s| s.block_count as u64),
        ("total_allocs", |s| s.total_allocs),
        ("total_frees", |s| s.total_frees),
        ("total_reallocs", |s| s.total_reallocs),
    ];
}

/// A pool's record: its counters and report label, shared with reports.
/// Aligned to a cache line so two pools used by two threads never write the
/// same line.
#[repr(align(64))]
pub(crate) struct Record {
    /// Set (Release) once the record describes a live pool, cleared (Release)
    /// when the pool drops. Reports read a record only while it is live.
    pub(super) live: AtomicBool,
    /// The label. Access protocol (what makes the `Sync` impl sound):
    /// - while not live and not yet handed to a pool, only the thread that
    ///   took it from a free list writes it (no report reads a record that
    ///   is not live, and records are recycled only under the registry lock,
    ///   so no report that saw an earlier life can still be reading);
    /// - while live, it is read and changed only under the registry lock;
    /// - after the pool drops, nobody writes it until it is handed out again;
    ///   the peak report reads it under the registry lock while the record
    ///   belongs to the current peak snapshot (such a record is not handed
    ///   out: see `Registry::recycle`).
    pub(super) meta: UnsafeCell<Meta>,
    /// The pool's lock, for pools shared between threads (see
    /// [`Record::lock_pool`]). Kept here, where the registry can find every
    /// one of them at `fork`.
    lock: Mutex<()>,
    /// Set in the child of a `fork` when `lock` was held at that moment, by
    /// a thread the child does not have: the pool is unusable there.
    forked: AtomicBool,
    size: AtomicUsize,
    peak: AtomicUsize,
    allocs: AtomicU64,
    frees: AtomicU64,
    reallocs: AtomicU64,
    /// The pool's bytes and blocks at the last peak snapshot, and that
    /// snapshot's number (see `peak.rs`). Written and read only under the
    /// registry lock.
    at_peak_bytes: AtomicUsize,
    at_peak_blocks: AtomicUsize,
    at_peak_epoch: AtomicU64,
    /// The pool's limit on live bytes (0: none), for reports.
    limit: AtomicUsize,
    /// Set when every call of the pool holds the process-wide lock of the
    /// serialised peak lane (see `peak::Lane`); written by the owner only.
    serialised: AtomicBool,
    /// The pool is an arena pool; written before the record is published.
    arena: AtomicBool,
}

// Two cache lines per pool, not three: every pool has a record, and the
// memory of an empty pool is mostly its record and its Python object.
const _: () = assert!(std::mem::size_of::<Record>() == 128);

/// Where deferred pools were made (see
/// [`crate::pool::Pool::deferred_under_process_lock`]): one per creation
/// site, shared by the pools made there until each takes a record of its
/// own. It is a record that is never live, in no list of the registry, its
/// lock never taken, and only ever written with the zeros it holds (an
/// empty pool's `reset_peak` or `free_all`), so any number of pools on any
/// threads read it as their empty counters, and a pool is deferred exactly
/// while its record is not live.
#[repr(transparent)]
pub struct DeferredOrigin(pub(crate) Record);

impl DeferredOrigin {
    /// The stand-in of pools made at `origin`.
    pub const fn new(origin: Origin) -> Self {
        DeferredOrigin(Record::labelled(origin))
    }

    /// Where its pools were made.
    pub(crate) fn origin(&self) -> &Origin {
        // SAFETY: the label of a stand-in is written only by `new`; it is
        // never handed to a pool as its own record nor put in a registry
        // list, so nothing writes it afterwards and shared reads are sound.
        unsafe { &(*self.0.meta.get()).origin }
    }
}

impl fmt::Debug for DeferredOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("DeferredOrigin")
            .field(self.origin())
            .finish()
    }
}

// SAFETY: the counters and `live` are atomics. `meta` is an UnsafeCell that
// is written by one thread at a time under the protocol above: by the thread
// that took the record from a free list before it is published, or under the
// registry lock while it is live; readers also hold that lock.
unsafe impl Sync for Record {}

impl fmt::Debug for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Record")
            .field("stats", &self.snapshot())
            .finish_non_exhaustive()
    }
}

/// A record's label (see [`Record::meta`] for who may touch it).
#[derive(Default)]
pub(super) struct Meta {
    /// Boxed (no spare capacity word) to keep the record in two lines.
    pub(super) name: Option<Box<str>>,
    pub(super) origin: Origin,
}

// The owner's updates. Only the owning pool calls these, through `&mut Pool`,
// so a relaxed load followed by a relaxed store never loses an update; readers
// on other threads see each field's old or new value, never a torn one.
impl Record {
    pub(super) const fn new() -> Self {
        Record::labelled(Origin::Unknown)
    }

    const fn labelled(origin: Origin) -> Self {
        Record {
            live: AtomicBool::new(false),
            meta: UnsafeCell::new(Meta { name: None, origin }),
            lock: Mutex::new(()),
            forked: AtomicBool::new(false),
            size: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            allocs: AtomicU64::new(0),
            frees: AtomicU64::new(0),
            reallocs: AtomicU64::new(0),
            at_peak_bytes: AtomicUsize::new(0),
            at_peak_blocks: AtomicUsize::new(0),
            at_peak_epoch: AtomicU64::new(0),
            limit: AtomicUsize::new(0),
            serialised: AtomicBool::new(false),
            arena: AtomicBool::new(false),
        }
    }

    /// Takes the pool's lock, waiting for another thread if need be; in the
    /// child of a `fork`, fails at once if the lock was held at the fork.
    /// (The fork check costs nothing until the lock is found taken.)
    #[inline]
    pub(crate) fn lock_pool(&self) -> Result<MutexGuard<'_, ()>, PoolError> {
        // Pool methods never panic while holding the lock, so a poisoned lock
        // still guards a consistent pool.
        match self.lock.try_lock() {
            Ok(guard) => Ok(guard),
            Err(TryLockError::Poisoned(poisoned)) => Ok(poisoned.into_inner()),
            Err(TryLockError::WouldBlock) if self.forked.load(Relaxed) => Err(PoolError::Forked),
            Err(TryLockError::WouldBlock) => {
                Ok(self.lock.lock().unwrap_or_else(PoisonError::into_inner))
            }
        }
    }

    /// Whether the pool is unusable in this child of a `fork`: its lock was
    /// held at the fork, by a thread the child does not have, so it stays
    /// held for good.
    pub(crate) fn is_forked(&self) -> bool {
        self.forked.load(Relaxed)
    }

    /// In the child of a `fork`, with no other thread running: marks the
    /// record if its pool's lock was held at the fork.
    pub(super) fn mark_if_locked_at_fork(&self) {
        if matches!(self.lock.try_lock(), Err(TryLockError::WouldBlock)) {
            self.forked.store(true, Relaxed);
        }
    }

    /// Zeroes the counters for a new pool of the kind `arena` says.
    pub(super) fn clear(&self, arena: bool) {
        self.arena.store(arena, Relaxed);
        self.forked.store(false, Relaxed);
        self.size.store(0, Relaxed);
        self.peak.store(0, Relaxed);
        self.allocs.store(0, Relaxed);
        self.frees.store(0, Relaxed);
        self.reallocs.store(0, Relaxed);
        self.limit.store(0, Relaxed);
        self.serialised.store(false, Relaxed);
    }

    /// Whether the pool is an arena pool.
    pub(super) fn is_arena(&self) -> bool {
        self.arena.load(Relaxed)
    }

    /// Whether the record is a live pool's own (not a deferred pool's
    /// stand-in). Only its pool's thread asks, and only its pool changes it.
    #[inline(always)]
    pub(crate) fn is_live(&self) -> bool {
        self.live.load(Relaxed)
    }

    /// Sends the pool's bytes through the serialised peak lane from now on.
    pub(crate) fn set_serialised(&self) {
        self.serialised.store(true, Relaxed);
    }

    /// Where the pool's pending peak counts go.
    #[inline(always)]
    fn lane(&self) -> Lane {
        if self.serialised.load(Relaxed) {
            Lane::Serialised
        } else {
            Lane::Thread
        }
    }

    #[inline]
    fn set_size(&self, size: usize) {
        self.size.store(size, Relaxed);
        // Stored even when unchanged: the line is being written anyway.
        self.peak.store(size.max(self.peak.load(Relaxed)), Relaxed);
    }

    #[inline]
    fn add(cell: &AtomicU64, n: u64) {
        cell.store(cell.load(Relaxed).wrapping_add(n), Relaxed);
    }

    /// A block of `bytes` entered the pool.
    #[inline]
    pub(crate) fn added(&self, bytes: usize) {
        self.set_size(self.size.load(Relaxed) + bytes);
        Self::add(&self.allocs, 1);
        peak::allocated(self.lane(), bytes);
    }

    /// A block of `bytes` left the pool.
    #[inline]
    pub(crate) fn removed(&self, bytes: usize) {
        self.size.store(self.size.load(Relaxed) - bytes, Relaxed);
        Self::add(&self.frees, 1);
        peak::freed(self.lane(), bytes);
    }

    /// A block of `old` bytes grew to `new` bytes.
    #[inline]
    pub(crate) fn resized(&self, old: usize, new: usize) {
        self.set_size(self.size.load(Relaxed) - old + new);
        Self::add(&self.reallocs, 1);
        // Blocks only grow (cymem's `realloc` rule): the process-wide counts
        // see the growth.
        debug_assert!(new > old, "a block grows");
        peak::allocated(self.lane(), new - old);
    }

    /// All `blocks` live blocks left the pool.
    pub(crate) fn cleared(&self, blocks: usize) {
        let size = self.size.load(Relaxed);
        // An empty pool touches no peak count: a thread's first count
        // registers its exit flush with glibc, which allocates and aborts
        // when memory has run out (a pool whose making failed is dropped
        // then, often in a thread that counted nothing yet).
        if size != 0 {
            peak::freed(self.lane(), size);
        }
        self.size.store(0, Relaxed);
        Self::add(&self.frees, blocks as u64);
    }

    /// Copies the pool's bytes and blocks now into its "at the peak" fields
    /// for snapshot `epoch`. Under the registry lock.
    pub(super) fn mark_peak(&self, epoch: u64) {
        let stats = self.snapshot();
        self.at_peak_bytes.store(stats.size, Relaxed);
        self.at_peak_blocks.store(stats.block_count, Relaxed);
        self.at_peak_epoch.store(epoch, Relaxed);
    }

    /// The pool's bytes and blocks at snapshot `epoch`, if it held any then.
    /// Under the registry lock.
    pub(super) fn at_peak(&self, epoch: u64) -> Option<(usize, usize)> {
        let bytes = self.at_peak_bytes.load(Relaxed);
        (self.at_peak_epoch.load(Relaxed) == epoch && bytes > 0)
            .then(|| (bytes, self.at_peak_blocks.load(Relaxed)))
    }

    pub(crate) fn set_limit(&self, limit: usize) {
        self.limit.store(limit, Relaxed);
    }

    /// The pool's limit on live bytes (`None`: none).
    pub(crate) fn limit(&self) -> Option<usize> {
        Some(self.limit.load(Relaxed)).filter(|&limit| limit != 0)
    }

    pub(crate) fn reset_peak(&self) {
        self.peak.store(self.size.load(Relaxed), Relaxed);
    }

    pub(crate) fn size(&self) -> usize {
        self.size.load(Relaxed)
    }

    /// The counters now; the block count is derived (allocs - frees: every
    /// block enters once and leaves once). Frees are read first so a
    /// concurrent reader cannot see more frees than allocations.
    pub(crate) fn snapshot(&self) -> PoolStats {
        let frees = self.frees.load(Relaxed);
        let allocs = self.allocs.load(Relaxed);
        PoolStats {
            size: self.size.load(Relaxed),
            peak_size: self.peak.load(Relaxed),
            block_count: allocs.saturating_sub(frees) as usize,
            total_allocs: allocs,
            total_frees: frees,
            total_reallocs: self.reallocs.load(Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::PoolStats;

    /// `FIELDS` names every field once, in order, with its own value.
    #[test]
    fn fields_list_every_counter_in_order() {
        let stats = PoolStats {
            size: 1,
            peak_size: 2,
            block_count: 3,
            total_allocs: 4,
            total_frees: 5,
            total_reallocs: 6,
        };
        let listed: Vec<(&str, u64)> = PoolStats::FIELDS
            .iter()
            .map(|(name, value)| (*name, value(&stats)))
            .collect();
        let debug = format!("{stats:?}");
        for (i, (name, value)) in listed.iter().enumerate() {
            assert_eq!(*value, i as u64 + 1);
            assert!(debug.contains(&format!("{name}: {value}")), "{debug}");
        }
        assert_eq!(listed.len(), debug.matches(':').count());
    }
}
