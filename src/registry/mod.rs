//! The live-pool registry: every pool alive in the process, its name, where
//! it was made, and its counters, for "what is holding 3 GB?" reports.
//!
//! Design, and why:
//! - Each pool owns one [`Record`] of a never-freed slab (chunks of records
//!   that are only ever recycled). The pool keeps a `&'static Record`, so
//!   moving the pool (pyo3 moves a Python Pool's core into its object after
//!   construction) changes nothing, and a report never dereferences a pool:
//!   it only reads records, so it can neither keep a pool alive nor touch a
//!   dead one.
//! - The counters are atomics written only by the owning pool (through
//!   `&mut Pool`), with a relaxed load and a relaxed store: plain `mov`s on
//!   x86-64 and AArch64, no read-modify-write, no fence on `alloc`/`free`.
//!   The report reads them with relaxed loads from any thread, which is
//!   race-free whether the pool is locked (C) or GIL-serialised (Python).
//!   A report row is not a snapshot taken at one instant across fields.
//! - Making and dropping a pool is usually lock-free too (a lock costs
//!   about as much as the rest of `Pool()`): a record comes from a small
//!   per-thread free list and is published by one Release store of its
//!   `live` flag; dropping clears the flag (the pool leaves every later report
//!   at once) and queues the record, which is recycled under the registry
//!   lock with others. Since recycling needs the lock a report holds, a
//!   report never sees a label change under it. The price: a dropped pool's
//!   name and origin are freed later, when its record is reused.
//! - The process-wide total of pool bytes, its peak and the pools that held
//!   it live in `peak.rs`: records carry each pool's bytes at the last peak
//!   snapshot, so the peak report reads records only.

use std::cell::RefCell;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::{Mutex, MutexGuard, PoisonError};

mod fork;
mod label;
mod peak;
mod peak_report;
mod record;
mod report;

pub use label::{Label, Origin, OriginSource};
pub use peak::{flush_this_thread, reset_peak, TooManyTraces, Trace, TraceFigures, PEAK_STEP};
pub use peak_report::{format_peak, peak, peak_report, PeakPool, PeakReport};
use record::Meta;
pub(crate) use record::Record;
pub use record::{PoolStats, StatsField};
pub use report::{format_table, report};

/// One live pool in a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolInfo {
    pub name: Option<String>,
    /// Where the pool was made (empty if unknown).
    pub origin: String,
    pub arena: bool,
    pub stats: PoolStats,
}

/// Records are made in chunks of this many and never freed.
const CHUNK: usize = 64;
/// Records a thread takes from (or gives back to) the shared lists at once:
/// making and dropping pools takes the registry lock once per this many.
const BATCH: usize = 16;

struct Registry {
    /// Every record ever made (reports scan them for live ones).
    records: Vec<&'static Record>,
    /// Recycled records, ready for new pools.
    free: Vec<&'static Record>,
    /// Records of dropped pools that held bytes at the current peak
    /// snapshot (`held_epoch`): the peak report still names them.
    held: Vec<&'static Record>,
    held_epoch: u64,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    records: Vec::new(),
    free: Vec::new(),
    held: Vec::new(),
    held_epoch: 0,
});

fn registry() -> MutexGuard<'static, Registry> {
    fork::install_handlers();
    lock_registry()
}

fn lock_registry() -> MutexGuard<'static, Registry> {
    // Nothing panics while the lock is held with the registry half-updated.
    REGISTRY.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Marks a dropped pool's record dead without recycling it: its pool was
/// unusable after a `fork` (see `fork.rs`) and is being leaked, its lock
/// held for ever. The record leaves reports at once and is never reused.
pub(crate) fn abandon(record: &'static Record) {
    record.live.store(false, Release);
}

impl Registry {
    fn grow(&mut self) {
        let chunk: &'static [Record] = (0..CHUNK).map(|_| Record::new()).collect::<Vec<_>>().leak();
        self.records.extend(chunk.iter());
        self.free.extend(chunk.iter().rev());
    }

    /// Makes dead records reusable. Their labels stay until the next owner
    /// overwrites them, outside the lock (a label may release Python objects).
    /// Records the current peak snapshot counts are held back until a newer
    /// snapshot replaces it.
    fn recycle(&mut self, dead: &mut Vec<&'static Record>) {
        debug_assert!(dead.iter().all(|r| !r.live.load(Relaxed)));
        let epoch = peak::epoch();
        if self.held_epoch != epoch {
            self.held_epoch = epoch;
            self.free.append(&mut self.held);
        }
        dead.retain(|record| {
            let at_peak = record.at_peak(epoch).is_some();
            if at_peak {
                self.held.push(record);
            }
            !at_peak
        });
        self.free.append(dead);
    }
}

/// This thread's share: records ready for new pools, and records of dropped
/// pools waiting to be recycled under the lock.
#[derive(Default)]
struct Local {
    free: Vec<&'static Record>,
    dead: Vec<&'static Record>,
}

impl Drop for Local {
    fn drop(&mut self) {
        let mut reg = registry();
        reg.recycle(&mut self.dead);
        reg.free.append(&mut self.free);
    }
}

thread_local! {
    static LOCAL: RefCell<Local> = RefCell::new(Local::default());
}

/// One record off a free list, refilling this thread's list (and recycling
/// its dead records) under the lock when it is empty.
fn take_free() -> &'static Record {
    let taken = LOCAL.try_with(|local| {
        let mut local = local.borrow_mut();
        if let Some(record) = local.free.pop() {
            return record;
        }
        let local = &mut *local;
        let mut reg = registry();
        reg.recycle(&mut local.dead);
        while local.free.len() < BATCH {
            if reg.free.is_empty() {
                reg.grow();
            }
            let record = reg.free.pop().expect("grown above");
            local.free.push(record);
        }
        local.free.pop().expect("filled above")
    });
    // Thread teardown: no thread-local lists any more.
    taken.unwrap_or_else(|_| {
        let mut reg = registry();
        if reg.free.is_empty() {
            reg.grow();
        }
        reg.free.pop().expect("grown above")
    })
}

/// A fresh (zeroed) record for a new pool. Usually no lock: the record comes
/// from this thread's free list.
pub(crate) fn register(label: Label, arena: bool) -> &'static Record {
    let record = take_free();
    // SAFETY: `take_free` handed us a record that is not live and is on no
    // free list any more, so no report reads it and no other thread took it
    // (the first case of `Record::meta`'s protocol): this is the only
    // reference.
    let meta = unsafe { &mut *record.meta.get() };
    // Drops the label of the record's previous pool, if any.
    *meta = Meta {
        name: label.name.map(String::into_boxed_str),
        origin: label.origin,
        arena,
    };
    record.clear();
    // Publishes the label and zeroed counters to reports (Acquire there).
    record.live.store(true, Release);
    record
}

/// Unlinks a dropped pool's record: at once for reports (no lock), recycled
/// later under the lock, a batch at a time.
pub(crate) fn release(record: &'static Record) {
    // Bytes still counted (an arena pool's blocks die with its chunks)
    // leave the process-wide total.
    record.cleared(0);
    record.live.store(false, Release);
    let queued = LOCAL.try_with(|local| {
        let mut local = local.borrow_mut();
        local.dead.push(record);
        if local.dead.len() >= 4 * BATCH {
            registry().recycle(&mut local.dead);
        }
    });
    if queued.is_err() {
        registry().recycle(&mut vec![record]);
    }
}

/// Runs `f` on the label of a live pool's record, under the registry lock.
fn with_meta<R>(record: &Record, f: impl FnOnce(&mut Meta) -> R) -> R {
    let _reg = registry();
    // SAFETY: the record is live (its pool calls this, so it has not dropped)
    // and `_reg` holds the registry lock until `f` returns: the second case of
    // `Record::meta`'s protocol, so no other reference to `meta` exists.
    f(unsafe { &mut *record.meta.get() })
}

pub(crate) fn name(record: &Record) -> Option<String> {
    with_meta(record, |meta| meta.name.as_deref().map(str::to_owned))
}

pub(crate) fn set_name(record: &Record, name: Option<String>) {
    let name = name.map(String::into_boxed_str);
    // The old name is dropped after the lock is released.
    drop(with_meta(record, |meta| {
        std::mem::replace(&mut meta.name, name)
    }));
}

pub(crate) fn set_origin(record: &Record, origin: Origin) {
    // The old origin is dropped after the lock is released.
    drop(with_meta(record, |meta| {
        std::mem::replace(&mut meta.origin, origin)
    }));
}

/// Every pool alive now, most bytes first (then highest peak, then name).
///
/// Origins are described after the registry lock is released: a Python
/// origin takes the GIL, and a thread holding the GIL may be waiting for
/// the registry lock to create a pool.
pub fn live_pools() -> Vec<PoolInfo> {
    let found: Vec<(Option<String>, Origin, bool, PoolStats)> = {
        let reg = registry();
        let mut found = Vec::new();
        for record in reg.records.iter().filter(|r| r.live.load(Acquire)) {
            // SAFETY: the record was live when loaded and `reg` holds the
            // registry lock (the second case of `Record::meta`'s protocol),
            // so nobody writes `meta`; if its pool drops meanwhile, the
            // record can be handed out again only after a recycle, which
            // needs the lock we hold.
            let meta = unsafe { &*record.meta.get() };
            found.push((
                meta.name.as_deref().map(str::to_owned),
                meta.origin.clone(),
                meta.arena,
                record.snapshot(),
            ));
        }
        found
    };
    let mut pools: Vec<PoolInfo> = found
        .into_iter()
        .map(|(name, origin, arena, stats)| PoolInfo {
            name,
            origin: origin.describe(),
            arena,
            stats,
        })
        .collect();
    pools.sort_by(|a, b| {
        (b.stats.size, b.stats.peak_size)
            .cmp(&(a.stats.size, a.stats.peak_size))
            .then_with(|| a.name.cmp(&b.name))
    });
    pools
}

/// How many pools are alive now.
pub fn live_count() -> usize {
    let reg = registry();
    reg.records.iter().filter(|r| r.live.load(Acquire)).count()
}
