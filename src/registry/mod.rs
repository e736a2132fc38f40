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
//! - Out of memory is an error, never an abort: making a pool can fail
//!   (growing the slab), dropping one never allocates. The shared free list
//!   always has room for every record ever made, so a record can be handed
//!   back to it whatever the thread's own lists could do.
//! - The process-wide total of pool bytes, its peak and the pools that held
//!   it live in `peak.rs`: records carry each pool's bytes at the last peak
//!   snapshot, so the peak report reads records only.

use std::cell::RefCell;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::fallible::{try_boxed_str, try_string, OutOfMemory};

mod fork;
mod label;
mod peak;
mod peak_report;
mod record;
mod report;

pub use label::{Label, Origin, OriginSource};
pub use peak::{flush_this_thread, reset_peak, TooManyTraces, Trace, TraceFigures, PEAK_STEP};
pub use peak_report::{
    format_peak, peak, peak_report, try_peak, try_peak_report, write_peak, PeakPool, PeakReport,
};
pub use record::DeferredOrigin;
use record::Meta;
pub(crate) use record::Record;
pub use record::{PoolStats, StatsField};
pub use report::{format_table, report, try_report, write_table};

/// One live pool in a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolInfo {
    pub name: Option<String>,
    /// Where the pool was made (empty if unknown).
    pub origin: String,
    pub arena: bool,
    pub stats: PoolStats,
    /// The pool's limit on live bytes (`None`: none).
    pub limit: Option<usize>,
}

/// Records are made in chunks of this many and never freed.
const CHUNK: usize = 64;
/// Records a thread takes from (or gives back to) the shared lists at once:
/// making and dropping pools takes the registry lock once per this many.
const BATCH: usize = 16;

struct Registry {
    /// Every record ever made (reports scan them for live ones).
    records: Vec<&'static Record>,
    /// Recycled records, ready for new pools. Its capacity is at least
    /// `records.len()`, so pushing a record never allocates.
    free: Vec<&'static Record>,
    /// Records of dropped pools that held bytes at the current peak
    /// snapshot (`held_epoch`): the peak report still names them. Its
    /// capacity is at least `records.len()` too.
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
    /// Adds a chunk of fresh records to the free list; nothing changes if
    /// memory runs out.
    fn grow(&mut self) -> Result<(), OutOfMemory> {
        let total = self.records.len() + CHUNK;
        self.records.try_reserve_exact(CHUNK)?;
        self.free
            .try_reserve_exact(total.saturating_sub(self.free.len()))?;
        self.held
            .try_reserve_exact(total.saturating_sub(self.held.len()))?;
        let mut chunk = Vec::new();
        chunk.try_reserve_exact(CHUNK)?;
        chunk.extend((0..CHUNK).map(|_| Record::new()));
        let chunk: &'static [Record] = chunk.leak();
        self.records.extend(chunk.iter());
        self.free.extend(chunk.iter().rev());
        Ok(())
    }

    /// A free record, growing the slab if none is left.
    fn pop_free(&mut self) -> Result<&'static Record, OutOfMemory> {
        if self.free.is_empty() {
            self.grow()?;
        }
        self.free.pop().ok_or(OutOfMemory)
    }

    /// Makes dead records reusable. Their labels stay until the next owner
    /// overwrites them, outside the lock (a label may release Python objects).
    /// Records the current peak snapshot counts are held back (in `held`)
    /// until a newer snapshot replaces it. Never allocates (see `free`,
    /// `held`).
    fn recycle(&mut self, dead: &mut Vec<&'static Record>) {
        debug_assert!(dead.iter().all(|r| !r.live.load(Relaxed)));
        debug_assert!(self.free.capacity() - self.free.len() >= dead.len());
        let epoch = self.sweep_held();
        dead.retain(|&record| !self.hold(record, epoch));
        self.free.append(dead);
    }

    /// [`Registry::recycle`] of one record.
    fn recycle_one(&mut self, record: &'static Record) {
        let epoch = self.sweep_held();
        if !self.hold(record, epoch) {
            self.free.push(record);
        }
    }

    /// Frees the held records of an older snapshot; the current snapshot's
    /// number.
    fn sweep_held(&mut self) -> u64 {
        let epoch = peak::epoch();
        if std::mem::replace(&mut self.held_epoch, epoch) != epoch {
            self.free.append(&mut self.held);
        }
        epoch
    }

    /// Keeps a dead record in `held` if snapshot `epoch` counts it.
    fn hold(&mut self, record: &'static Record, epoch: u64) -> bool {
        let at_peak = record.at_peak(epoch).is_some();
        if at_peak {
            self.held.push(record);
        }
        at_peak
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
fn take_free() -> Result<&'static Record, OutOfMemory> {
    let taken = LOCAL.try_with(|local| {
        let mut local = local.borrow_mut();
        if let Some(record) = local.free.pop() {
            return Ok(record);
        }
        let local = &mut *local;
        let mut reg = registry();
        reg.recycle(&mut local.dead);
        if local.free.try_reserve(BATCH).is_err() {
            // No room for a batch here: one record straight from the registry.
            return reg.pop_free();
        }
        while local.free.len() < BATCH {
            match reg.pop_free() {
                Ok(record) => local.free.push(record),
                Err(err) if local.free.is_empty() => return Err(err),
                Err(_) => break,
            }
        }
        local.free.pop().ok_or(OutOfMemory)
    });
    // Thread teardown: no thread-local lists any more.
    taken.unwrap_or_else(|_| registry().pop_free())
}

/// A fresh (zeroed) record for a new pool. Usually no lock: the record comes
/// from this thread's free list. `OutOfMemory` if the slab could not grow.
pub(crate) fn register(label: Label, arena: bool) -> Result<&'static Record, OutOfMemory> {
    let name = label.name.map(try_boxed_str).transpose()?;
    let record = take_free()?;
    Ok(publish(
        record,
        Meta {
            name,
            origin: label.origin,
        },
        arena,
    ))
}

/// Hands a record taken from a free list to a new pool, labelled `meta`.
fn publish(record: &'static Record, meta: Meta, arena: bool) -> &'static Record {
    // SAFETY: `take_free` handed us a record that is not live and is on no
    // free list any more, so no report reads it and no other thread took it
    // (the first case of `Record::meta`'s protocol): this is the only
    // reference.
    let slot = unsafe { &mut *record.meta.get() };
    // Drops the label of the record's previous pool, if any.
    *slot = meta;
    record.clear(arena);
    // Publishes the label and zeroed counters to reports (Acquire there).
    record.live.store(true, Release);
    record
}

/// Unlinks a dropped pool's record: at once for reports (no lock), recycled
/// later under the lock, a batch at a time. Never allocates.
pub(crate) fn release(record: &'static Record) {
    // Bytes still counted (an arena pool's blocks die with its chunks)
    // leave the process-wide total.
    record.cleared(0);
    record.live.store(false, Release);
    let queued = LOCAL.try_with(|local| {
        let mut local = local.borrow_mut();
        if local.dead.try_reserve(1).is_err() {
            return false;
        }
        local.dead.push(record);
        if local.dead.len() >= 4 * BATCH {
            registry().recycle(&mut local.dead);
        }
        true
    });
    if queued != Ok(true) {
        // The shared lists always have room (see `Registry::free`, `held`).
        registry().recycle_one(record);
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

/// Calls `f` with the pool's name, under the registry lock (so `f` must not
/// make or drop pools, nor wait for a thread that does).
pub(crate) fn with_name<R>(record: &Record, f: impl FnOnce(Option<&str>) -> R) -> R {
    with_meta(record, |meta| f(meta.name.as_deref()))
}

/// Renames a live pool, or `OutOfMemory` (the old name stays).
pub(crate) fn set_name(record: &Record, name: Option<String>) -> Result<(), OutOfMemory> {
    let name = name.map(try_boxed_str).transpose()?;
    // The old name is dropped after the lock is released.
    drop(with_meta(record, |meta| {
        std::mem::replace(&mut meta.name, name)
    }));
    Ok(())
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
    try_live_pools()
        .unwrap_or_else(|_| std::alloc::handle_alloc_error(std::alloc::Layout::new::<PoolInfo>()))
}

/// [`live_pools`], or `OutOfMemory` if the list could not be built.
pub fn try_live_pools() -> Result<Vec<PoolInfo>, OutOfMemory> {
    type Found = (
        usize,
        Option<String>,
        Origin,
        bool,
        PoolStats,
        Option<usize>,
    );
    let mut found: Vec<Found> = Vec::new();
    {
        let reg = registry();
        let live = || reg.records.iter().filter(|r| r.live.load(Acquire));
        found.try_reserve_exact(live().count())?;
        // Pools made meanwhile on other threads are published without the
        // lock: room is made for them too, rather than cutting the list at
        // the first count (which would drop a pool alive all along).
        for (index, record) in live().enumerate() {
            found.try_reserve(1)?;
            // SAFETY: the record was live when loaded and `reg` holds the
            // registry lock (the second case of `Record::meta`'s protocol),
            // so nobody writes `meta`; if its pool drops meanwhile, the
            // record can be handed out again only after a recycle, which
            // needs the lock we hold.
            let meta = unsafe { &*record.meta.get() };
            let name = meta.name.as_deref().map(try_string).transpose()?;
            let origin = meta.origin.try_clone()?;
            found.push((
                index,
                name,
                origin,
                record.is_arena(),
                record.snapshot(),
                record.limit(),
            ));
        }
    }
    // Not `sort_by`: a stable sort allocates scratch space. The registry
    // order breaks ties instead.
    found.sort_unstable_by(|a, b| {
        (b.4.size, b.4.peak_size)
            .cmp(&(a.4.size, a.4.peak_size))
            .then_with(|| a.1.cmp(&b.1))
            .then(a.0.cmp(&b.0))
    });
    let mut pools = Vec::new();
    pools.try_reserve_exact(found.len())?;
    for (_, name, origin, arena, stats, limit) in found {
        pools.push(PoolInfo {
            name,
            origin: origin.try_describe()?,
            arena,
            stats,
            limit,
        });
    }
    Ok(pools)
}

/// How many pools are alive now.
pub fn live_count() -> usize {
    let reg = registry();
    reg.records.iter().filter(|r| r.live.load(Acquire)).count()
}

/// Taken by the unit tests that need the shared free list to themselves
/// (they run in parallel threads of one process).
#[cfg(test)]
pub(crate) fn free_list_to_myself() -> std::sync::MutexGuard<'static, ()> {
    static FREE_LIST_TESTS: Mutex<()> = Mutex::new(());
    FREE_LIST_TESTS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::{free_list_to_myself, register, registry, release, take_free, Label};
    use crate::fallible::failing::with_failures;
    use crate::Pool;

    /// Records made so far (they are never freed, only reused).
    fn records_made() -> usize {
        registry().records.len()
    }

    /// Records of dropped pools are reused, whether the pools die on a
    /// long-lived thread or with short-lived threads: making and dropping
    /// pools for ever holds a bounded number of records. (Other tests make
    /// pools meanwhile, hence the slack: a leak here is thousands.)
    #[test]
    fn making_and_dropping_pools_reuses_their_records() {
        let before = records_made();
        for _ in 0..20_000 {
            drop(Pool::new());
        }
        for _ in 0..200 {
            std::thread::spawn(|| drop(Pool::arena())).join().unwrap();
        }
        let grown = records_made() - before;
        assert!(grown < 1024, "{grown} records made for 20,200 pools");
    }

    /// A thread refilling its list gets a record whenever one is free, even
    /// if memory runs out while it fills its batch.
    #[test]
    fn a_free_record_is_handed_out_while_memory_runs_out() {
        let _alone = free_list_to_myself();
        for first in 1..=3 {
            // One record left on the shared list (other tests may add more).
            let stash: Vec<_> = {
                let mut reg = registry();
                if reg.free.is_empty() {
                    reg.grow().unwrap();
                }
                reg.free.split_off(1)
            };
            let taken = std::thread::spawn(move || {
                let (taken, _) = with_failures(first, u64::MAX, take_free);
                taken.inspect(|&record| release(record)).is_ok()
            })
            .join()
            .unwrap();
            // Never allocates: `free` has room for every record.
            registry().free.extend(stash);
            assert!(taken, "failing from allocation {first}");
        }
    }

    /// A pool dropped when its thread cannot queue the record (memory ran
    /// out) hands the record straight back to the shared list: it is
    /// reused, not lost.
    #[test]
    fn a_record_released_while_memory_runs_out_is_reused() {
        let _alone = free_list_to_myself();
        let returned = std::thread::spawn(|| {
            let record = register(Label::default(), false).unwrap();
            // This thread has queued no dead record: queueing one allocates.
            with_failures(1, u64::MAX, || release(record));
            let reg = registry();
            reg.free.iter().any(|&free| std::ptr::eq(free, record))
        })
        .join()
        .unwrap();
        assert!(returned, "the record is on the shared free list");
    }

    /// Records kept for the peak report stay out of the free list while
    /// their snapshot is current, and return to it once a newer one is
    /// taken.
    #[test]
    fn held_records_are_freed_when_the_snapshot_changes() {
        let _alone = free_list_to_myself();
        let record = take_free().unwrap();
        let mut reg = registry();
        let epoch = reg.sweep_held();
        reg.held.push(record);
        let is = |list: &[&'static super::Record]| list.iter().any(|&r| std::ptr::eq(r, record));
        assert_eq!(reg.sweep_held(), epoch);
        assert!(
            is(&reg.held) && !is(&reg.free),
            "kept while its snapshot is current"
        );
        // As if a snapshot had been taken since.
        reg.held_epoch = epoch.wrapping_sub(1);
        assert_eq!(reg.sweep_held(), epoch);
        assert!(
            !is(&reg.held) && is(&reg.free),
            "freed after a newer snapshot"
        );
    }
}
