//! The process-wide total of bytes held by pools, its high-water mark, and
//! which pools held those bytes at that mark.
//!
//! Design, and why:
//! - The block path must stay as cheap as it is, so a block's bytes go first
//!   into this thread's pending counts (a thread-local add and compare) and
//!   reach the process-wide counters only once a thread has allocated, or
//!   freed, [`PEAK_STEP`] bytes since its last flush (and when it asks for a
//!   figure, and when it exits). Churn below that size (an alloc and free
//!   pair) touches no shared cache line. The price: the process-wide total,
//!   and so the peak, is exact to within `PEAK_STEP` bytes per thread that
//!   holds pending counts. A single block of `PEAK_STEP` bytes or more is
//!   always counted at once.
//! - The peak is attributed by a snapshot: when a flush raises the total
//!   past the total at the last snapshot by more than [`snapshot_step`], every
//!   live pool's current bytes and blocks are copied into its record's
//!   "at the peak" fields, under the registry lock. That walk writes atomics
//!   in records that already exist: it allocates nothing and needs no
//!   thread-local state, so it also works on the block path and in a forked
//!   child. The price of the step: the pools listed describe a moment when
//!   the total was within one step of the peak, not necessarily the peak's
//!   own moment (the report says both figures).
//! - A pool dropped after the snapshot still held its bytes at the peak, so
//!   its record (name and origin included) is kept off the free lists until
//!   a later snapshot or reset no longer needs it (see `Registry::recycle`).
//! - Pools whose every call holds one process-wide lock (Python pools under
//!   CPython's GIL) keep their pending counts in one process-wide pair
//!   instead (see [`Lane`]): in a shared library reaching a thread-local
//!   costs a call of `__tls_get_addr` per block, which was a tenth of the
//!   Cython alloc + free pair. The pair is written with a relaxed load and
//!   store (plain moves), so a broken promise loses precision, never safety.
//!   Figures asked under the lock are exact for those pools.
//! - Traces (a window's allocated, freed and peak bytes) each own one of a
//!   fixed set of slots whose high-water mark flushes raise; with no trace
//!   running a flush reads one word for them.

use std::cell::Cell;
use std::sync::atomic::{
    AtomicIsize, AtomicU64, AtomicUsize, Ordering::Acquire, Ordering::Relaxed,
};

/// Bytes a thread may allocate (or free) in pools before its counts reach
/// the process-wide total: the total and the peak are exact to within this
/// many bytes per thread.
pub const PEAK_STEP: usize = 64 * 1024;

/// How far the total must rise past the last snapshot for a new one: one
/// [`PEAK_STEP`], or 1/64 of the total when that is more, so a growing
/// process takes a bounded number of snapshots (about 64 per doubling).
pub fn snapshot_step(snapped: usize) -> usize {
    PEAK_STEP.max(snapped / 64)
}

/// Bytes held by pools now, as flushed (may dip below 0 while a thread that
/// freed has flushed and the one that allocated has not).
static HELD: AtomicIsize = AtomicIsize::new(0);
/// Bytes ever allocated and freed in pools, as flushed (for traces).
static ALLOCATED: AtomicU64 = AtomicU64::new(0);
static FREED: AtomicU64 = AtomicU64::new(0);
/// The highest `HELD` since the start or the last reset.
static PEAK: AtomicUsize = AtomicUsize::new(0);
/// `HELD` when the last snapshot was taken.
static SNAPPED: AtomicUsize = AtomicUsize::new(0);
/// The current snapshot's number: a record whose `at_peak_epoch` equals it
/// describes its pool at the peak. Starts at 1 so that fresh records (0)
/// belong to no snapshot.
static EPOCH: AtomicU64 = AtomicU64::new(1);

/// This thread's counts not yet added to the process-wide ones.
///
/// No destructor of its own, so reaching it is a plain thread-local access
/// (no "is it alive?" check on the block path). The counts start at
/// [`UNREGISTERED`], which sends the thread's first update to the slow path:
/// that registers [`ExitFlush`] (whose destructor adds the counts when the
/// thread exits) and drops the offset.
struct Pending {
    allocated: Cell<usize>,
    freed: Cell<usize>,
    state: Cell<State>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    /// Counts carry the `UNREGISTERED` offset; `ExitFlush` not registered yet.
    Fresh,
    /// Plain counts; `ExitFlush` will add them when the thread exits.
    Registered,
    /// The thread is exiting and `ExitFlush` has run (or cannot be
    /// registered): counts carry the offset, every update is added at once.
    Exiting,
}

/// The offset of unregistered counts: any update reaches the slow path.
const UNREGISTERED: usize = PEAK_STEP;

impl Pending {
    /// The counts, leaving zero behind (with the offset unless registered).
    fn take(&self) -> (usize, usize) {
        let offset = match self.state.get() {
            State::Registered => 0,
            State::Fresh | State::Exiting => UNREGISTERED,
        };
        let allocated = self.allocated.replace(offset) - offset;
        let freed = self.freed.replace(offset) - offset;
        (allocated, freed)
    }

    /// The slow path of an update: a count reached `PEAK_STEP` (or the
    /// thread has not registered yet).
    #[cold]
    #[inline(never)]
    fn overflow(&self) {
        if self.state.get() == State::Fresh {
            let (allocated, freed) = self.take();
            let registered = EXIT_FLUSH.try_with(|_| ()).is_ok();
            self.state.set(if registered {
                State::Registered
            } else {
                State::Exiting
            });
            self.allocated.set(allocated);
            self.freed.set(freed);
            if !registered {
                return self.flush();
            }
        }
        if self.state.get() == State::Exiting
            || self.allocated.get() >= PEAK_STEP
            || self.freed.get() >= PEAK_STEP
        {
            self.flush();
        }
    }

    fn flush(&self) {
        let (allocated, freed) = self.take();
        flush(allocated, freed);
    }
}

/// Adds this thread's counts to the process-wide ones when it exits.
struct ExitFlush;

impl Drop for ExitFlush {
    fn drop(&mut self) {
        PENDING.with(|p| {
            p.flush();
            // Pools dropped by later destructors count at once.
            p.state.set(State::Exiting);
            p.allocated.set(UNREGISTERED);
            p.freed.set(UNREGISTERED);
        });
    }
}

thread_local! {
    static PENDING: Pending = const {
        Pending {
            allocated: Cell::new(UNREGISTERED),
            freed: Cell::new(UNREGISTERED),
            state: Cell::new(State::Fresh),
        }
    };
    static EXIT_FLUSH: ExitFlush = const { ExitFlush };
}

/// Where a pool's pending counts are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lane {
    /// This thread's counts (any pool, any thread).
    Thread,
    /// The process-wide serialised counts: only for pools whose every call
    /// holds one process-wide lock shared by all pools in this lane.
    Serialised,
}

/// Pending counts of the [`Lane::Serialised`] pools. Updated by a relaxed
/// load and store, not a read-modify-write: the lock the lane's pools
/// share orders the updates.
static SERIAL_ALLOCATED: AtomicUsize = AtomicUsize::new(0);
static SERIAL_FREED: AtomicUsize = AtomicUsize::new(0);

#[cold]
#[inline(never)]
fn flush_serialised() {
    flush(
        SERIAL_ALLOCATED.swap(0, Relaxed),
        SERIAL_FREED.swap(0, Relaxed),
    );
}

/// `bytes` entered a pool of `lane`.
#[inline(always)]
pub(crate) fn allocated(lane: Lane, bytes: usize) {
    count(lane, bytes, &SERIAL_ALLOCATED, |p| &p.allocated);
}

/// `bytes` left a pool of `lane`.
#[inline(always)]
pub(crate) fn freed(lane: Lane, bytes: usize) {
    count(lane, bytes, &SERIAL_FREED, |p| &p.freed);
}

/// Adds `bytes` to one pending count of `lane` (`serialised`, or the one
/// `pending` picks of this thread's): an add and a compare, and a load and
/// store (serialised) or a thread-local access.
#[inline(always)]
fn count(
    lane: Lane,
    bytes: usize,
    serialised: &AtomicUsize,
    pending: fn(&Pending) -> &Cell<usize>,
) {
    if lane == Lane::Serialised {
        let sum = serialised.load(Relaxed) + bytes;
        serialised.store(sum, Relaxed);
        if sum >= PEAK_STEP {
            flush_serialised();
        }
        return;
    }
    PENDING.with(|p| {
        let count = pending(p);
        let sum = count.get() + bytes;
        count.set(sum);
        if sum >= PEAK_STEP {
            p.overflow();
        }
    });
}

/// Adds this thread's pending counts, and the serialised pools' (exact
/// when the caller holds their lock), to the process-wide ones, so that the
/// figures that follow are exact for them.
pub fn flush_this_thread() {
    PENDING.with(Pending::flush);
    flush_serialised();
}

#[cold]
#[inline(never)]
fn flush(allocated: usize, freed: usize) {
    if allocated == 0 && freed == 0 {
        return;
    }
    ALLOCATED.fetch_add(allocated as u64, Relaxed);
    FREED.fetch_add(freed as u64, Relaxed);
    // Block sizes are at most isize::MAX and each count stays below
    // PEAK_STEP plus one block: the difference fits.
    let delta = (allocated as isize).wrapping_sub(freed as isize);
    let held = HELD.fetch_add(delta, Relaxed).wrapping_add(delta);
    if delta <= 0 || held <= 0 {
        return;
    }
    let held = held as usize;
    raise_traces(held);
    // (Flushes are rare, a step of bytes apart: no need to look before
    // raising. A snapshot is only ever due above the peak.)
    PEAK.fetch_max(held, Relaxed);
    let snapped = SNAPPED.load(Relaxed);
    if held >= snapped.saturating_add(snapshot_step(snapped)) {
        snapshot(held, false);
    }
}

/// The current snapshot's number (read under the registry lock).
pub(super) fn epoch() -> u64 {
    EPOCH.load(Relaxed)
}

/// Copies every live pool's bytes and blocks into its record as the new
/// snapshot, if one at `held` is still due (another thread may have taken
/// one meanwhile) or for a reset. Allocates nothing: it writes atomics of
/// existing records under the registry lock.
fn snapshot(held: usize, reset: bool) {
    let reg = super::registry();
    let snapped = SNAPPED.load(Relaxed);
    if !reset && held < snapped.saturating_add(snapshot_step(snapped)) {
        return;
    }
    SNAPPED.store(held, Relaxed);
    if reset {
        PEAK.store(held, Relaxed);
    }
    let epoch = EPOCH.load(Relaxed) + 1;
    for record in reg.records.iter().filter(|r| r.live.load(Acquire)) {
        record.mark_peak(epoch);
    }
    EPOCH.store(epoch, Relaxed);
}

/// Starts a new process-wide peak from the bytes held now: the peak report
/// then lists the pools holding bytes now, until the total rises past them.
pub fn reset_peak() {
    flush_this_thread();
    snapshot(held(), true);
}

/// Bytes held now as flushed (never below 0).
pub(super) fn held() -> usize {
    HELD.load(Relaxed).max(0) as usize
}

/// The highest total since the start or the last reset.
pub(super) fn peak() -> usize {
    PEAK.load(Relaxed)
}

/// The total when the last snapshot was taken.
pub(super) fn snapped() -> usize {
    SNAPPED.load(Relaxed)
}

// Traces.

/// How many traces may run at once (in all threads).
const TRACE_SLOTS: usize = 64;

/// Bit `i` set: slot `i` belongs to a running trace.
static TRACING: AtomicU64 = AtomicU64::new(0);
/// Each running trace's highest `HELD` since it started.
static TRACE_PEAK: [AtomicUsize; TRACE_SLOTS] = [const { AtomicUsize::new(0) }; TRACE_SLOTS];

fn raise_traces(held: usize) {
    let mut running = TRACING.load(Relaxed);
    while running != 0 {
        let slot = running.trailing_zeros() as usize;
        TRACE_PEAK[slot].fetch_max(held, Relaxed);
        running &= running - 1;
    }
}

/// What a trace measured: pool bytes allocated and freed in every thread
/// while it ran, and how far the total rose above its starting value
/// (each exact to within [`PEAK_STEP`] per thread).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceFigures {
    pub allocated: u64,
    pub freed: u64,
    pub peak: usize,
}

/// A running trace of the process's pool bytes (every thread's pools); see
/// [`Trace::start`]. Dropping it without [`Trace::finish`] frees its slot.
#[derive(Debug)]
pub struct Trace {
    slot: usize,
    allocated: u64,
    freed: u64,
    held: usize,
}

/// All [`TRACE_SLOTS`] traces are running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooManyTraces;

impl std::fmt::Display for TooManyTraces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "more than {TRACE_SLOTS} pool-memory traces at once")
    }
}

impl std::error::Error for TooManyTraces {}

impl Trace {
    /// Starts counting (after adding this thread's pending counts).
    pub fn start() -> Result<Trace, TooManyTraces> {
        flush_this_thread();
        let mut running = TRACING.load(Relaxed);
        let slot = loop {
            let free = !running;
            if free == 0 {
                return Err(TooManyTraces);
            }
            let slot = free.trailing_zeros() as usize;
            // The slot's bit is clear in `running`: adding it sets it.
            let claimed = running + (1 << slot);
            match TRACING.compare_exchange_weak(running, claimed, Relaxed, Relaxed) {
                Ok(_) => break slot,
                Err(now) => running = now,
            }
        };
        // The slot is ours; a flush that raised the previous trace's mark
        // between the claim and this store is overwritten.
        TRACE_PEAK[slot].store(held(), Relaxed);
        Ok(Trace {
            slot,
            allocated: ALLOCATED.load(Relaxed),
            freed: FREED.load(Relaxed),
            held: TRACE_PEAK[slot].load(Relaxed),
        })
    }

    /// The figures so far (after adding this thread's pending counts).
    pub fn figures(&self) -> TraceFigures {
        flush_this_thread();
        let top = TRACE_PEAK[self.slot].load(Relaxed).max(held());
        TraceFigures {
            allocated: ALLOCATED.load(Relaxed).wrapping_sub(self.allocated),
            freed: FREED.load(Relaxed).wrapping_sub(self.freed),
            peak: top.saturating_sub(self.held),
        }
    }

    /// Stops counting; the figures of the whole trace.
    pub fn finish(self) -> TraceFigures {
        self.figures()
    }
}

impl Drop for Trace {
    fn drop(&mut self) {
        TRACING.fetch_and(!(1 << self.slot), Relaxed);
    }
}
