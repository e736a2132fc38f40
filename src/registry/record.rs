//! A pool's record: its counters, written by the pool and read by reports.

use std::cell::UnsafeCell;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};

use super::label::Origin;
use super::peak;

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
    pub(super) name: Option<Box<str>>,
    pub(super) origin: Origin,
    pub(super) arena: bool,
}

// The owner's updates. Only the owning pool calls these, through `&mut Pool`,
// so a relaxed load followed by a relaxed store never loses an update; readers
// on other threads see each field's old or new value, never a torn one.
impl Record {
    pub(super) fn new() -> Self {
        Record {
            live: AtomicBool::new(false),
            meta: UnsafeCell::new(Meta::default()),
            size: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            allocs: AtomicU64::new(0),
            frees: AtomicU64::new(0),
            reallocs: AtomicU64::new(0),
            at_peak_bytes: AtomicUsize::new(0),
            at_peak_blocks: AtomicUsize::new(0),
            at_peak_epoch: AtomicU64::new(0),
        }
    }

    pub(super) fn clear(&self) {
        self.size.store(0, Relaxed);
        self.peak.store(0, Relaxed);
        self.allocs.store(0, Relaxed);
        self.frees.store(0, Relaxed);
        self.reallocs.store(0, Relaxed);
    }

    #[inline]
    fn set_size(&self, size: usize) {
        self.size.store(size, Relaxed);
        if size > self.peak.load(Relaxed) {
            self.peak.store(size, Relaxed);
        }
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
        peak::allocated(bytes);
    }

    /// A block of `bytes` left the pool.
    #[inline]
    pub(crate) fn removed(&self, bytes: usize) {
        self.size.store(self.size.load(Relaxed) - bytes, Relaxed);
        Self::add(&self.frees, 1);
        peak::freed(bytes);
    }

    /// A block of `old` bytes became one of `new` bytes.
    #[inline]
    pub(crate) fn resized(&self, old: usize, new: usize) {
        self.set_size(self.size.load(Relaxed) - old + new);
        Self::add(&self.reallocs, 1);
        // The process-wide counts see the growth (or shrinkage) only.
        if new >= old {
            peak::allocated(new - old);
        } else {
            peak::freed(old - new);
        }
    }

    /// All `blocks` live blocks left the pool.
    pub(crate) fn cleared(&self, blocks: usize) {
        peak::freed(self.size.load(Relaxed));
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
