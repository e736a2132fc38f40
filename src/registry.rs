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

use std::cell::{RefCell, UnsafeCell};
use std::fmt::{self, Write as _};
use std::panic::Location;
use std::sync::atomic::{
    AtomicBool, AtomicU64, AtomicUsize, Ordering::Acquire, Ordering::Relaxed, Ordering::Release,
};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::pool::PoolStats;

/// Describes, at report time, where a pool was made. The Python binding
/// implements it to turn a code object and instruction offset into
/// `file:line`, so creation stays cheap and the core stays Python-free.
pub trait OriginSource: Send + Sync {
    /// A short human-readable place, e.g. `app/cache.py:42 in build`.
    fn describe(&self) -> String;
}

/// Where a pool was made.
#[derive(Clone, Default)]
pub enum Origin {
    /// Not known.
    #[default]
    Unknown,
    /// A Rust caller (from `#[track_caller]`, free to capture).
    Rust(&'static Location<'static>),
    /// A fixed description, e.g. `"C"`.
    Static(&'static str),
    /// A description given at run time (e.g. a C caller's `__FILE__:__LINE__`).
    Text(Arc<str>),
    /// Formatted lazily at report time.
    Source(Arc<dyn OriginSource>),
    /// Formatted lazily at report time; never freed, so handing it to a new
    /// pool costs no reference count (for creation sites used again and again).
    Interned(&'static dyn OriginSource),
}

impl Origin {
    /// The origin as text (calls the [`OriginSource`] if there is one).
    pub fn describe(&self) -> String {
        match self {
            Origin::Unknown => String::new(),
            Origin::Rust(location) => format!("{}:{}", location.file(), location.line()),
            Origin::Static(text) => (*text).to_owned(),
            Origin::Text(text) => text.to_string(),
            Origin::Source(source) => source.describe(),
            Origin::Interned(source) => source.describe(),
        }
    }
}

impl fmt::Debug for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Source(_) | Origin::Interned(_) => f.write_str("Origin::Source(..)"),
            other => write!(f, "Origin({:?})", other.describe()),
        }
    }
}

/// What a pool is called in the report, and where it was made.
#[derive(Debug, Clone, Default)]
pub struct Label {
    pub name: Option<String>,
    pub origin: Origin,
}

impl Label {
    /// No name; the origin is the Rust caller (through `#[track_caller]`
    /// callers, the first caller that is not one).
    #[track_caller]
    pub fn here() -> Self {
        Label {
            name: None,
            origin: Origin::Rust(Location::caller()),
        }
    }
}

/// One live pool in a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolInfo {
    pub name: Option<String>,
    /// Where the pool was made (empty if unknown).
    pub origin: String,
    pub arena: bool,
    pub stats: PoolStats,
}

/// A pool's record: its counters and report label, shared with reports.
/// Aligned to a cache line so two pools used by two threads never write the
/// same line.
#[repr(align(64))]
pub(crate) struct Record {
    /// Set (Release) once the record describes a live pool, cleared (Release)
    /// when the pool drops. Reports read a record only while it is live.
    live: AtomicBool,
    /// The label. Access protocol (what makes the `Sync` impl sound):
    /// - while not live and not yet handed to a pool, only the thread that
    ///   took it from a free list writes it (no report reads a record that
    ///   is not live, and records are recycled only under the registry lock,
    ///   so no report that saw an earlier life can still be reading);
    /// - while live, it is read and changed only under the registry lock;
    /// - after the pool drops, nobody touches it until it is handed out again.
    meta: UnsafeCell<Meta>,
    size: AtomicUsize,
    peak: AtomicUsize,
    allocs: AtomicU64,
    frees: AtomicU64,
    reallocs: AtomicU64,
}

// SAFETY: the counters are atomics; `meta` follows the protocol above.
unsafe impl Sync for Record {}

impl fmt::Debug for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Record")
            .field("stats", &self.snapshot())
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Meta {
    name: Option<Box<str>>,
    origin: Origin,
    arena: bool,
}

// The owner's updates. Only the owning pool calls these, through `&mut Pool`,
// so a relaxed load followed by a relaxed store never loses an update; readers
// on other threads see each field's old or new value, never a torn one.
impl Record {
    fn new() -> Self {
        Record {
            live: AtomicBool::new(false),
            meta: UnsafeCell::new(Meta::default()),
            size: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            allocs: AtomicU64::new(0),
            frees: AtomicU64::new(0),
            reallocs: AtomicU64::new(0),
        }
    }

    fn clear(&self) {
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
    }

    /// A block of `bytes` left the pool.
    #[inline]
    pub(crate) fn removed(&self, bytes: usize) {
        self.size.store(self.size.load(Relaxed) - bytes, Relaxed);
        Self::add(&self.frees, 1);
    }

    /// A block of `old` bytes became one of `new` bytes.
    #[inline]
    pub(crate) fn resized(&self, old: usize, new: usize) {
        self.set_size(self.size.load(Relaxed) - old + new);
        Self::add(&self.reallocs, 1);
    }

    /// All `blocks` live blocks left the pool.
    pub(crate) fn cleared(&self, blocks: usize) {
        self.size.store(0, Relaxed);
        Self::add(&self.frees, blocks as u64);
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
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    records: Vec::new(),
    free: Vec::new(),
});

fn registry() -> MutexGuard<'static, Registry> {
    // Nothing panics while the lock is held with the registry half-updated.
    REGISTRY.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Registry {
    fn grow(&mut self) {
        let chunk: &'static [Record] = (0..CHUNK).map(|_| Record::new()).collect::<Vec<_>>().leak();
        self.records.extend(chunk.iter());
        self.free.extend(chunk.iter().rev());
    }

    /// Makes dead records reusable. Their labels stay until the next owner
    /// overwrites them, outside the lock (a label may release Python objects).
    fn recycle(&mut self, dead: &mut Vec<&'static Record>) {
        debug_assert!(dead.iter().all(|r| !r.live.load(Relaxed)));
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
    // SAFETY: a free record, not live, ours alone (protocol, first case).
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

pub(crate) fn name(record: &Record) -> Option<String> {
    let _reg = registry();
    // SAFETY: a live record, read under the lock (protocol, second case).
    unsafe { &*record.meta.get() }
        .name
        .as_deref()
        .map(str::to_owned)
}

pub(crate) fn set_name(record: &Record, name: Option<String>) {
    let old = {
        let _reg = registry();
        // SAFETY: a live record, changed under the lock (protocol, second case).
        let meta = unsafe { &mut *record.meta.get() };
        std::mem::replace(&mut meta.name, name.map(String::into_boxed_str))
    };
    drop(old);
}

pub(crate) fn set_origin(record: &Record, origin: Origin) {
    let old = {
        let _reg = registry();
        // SAFETY: as in `set_name`.
        let meta = unsafe { &mut *record.meta.get() };
        std::mem::replace(&mut meta.origin, origin)
    };
    drop(old);
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
            // SAFETY: a live record, read under the lock (protocol, second
            // case); if its pool drops meanwhile, the record can be handed
            // out again only after a recycle, which needs the lock we hold.
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

/// `1536` -> `1.5 KiB`: the total line is for people.
fn human_bytes(bytes: usize) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// The report as an aligned text table, for people: one row per pool (as
/// given, normally most bytes first), byte counts in full so it also parses,
/// then a total line. Columns: bytes, peak, blocks, allocs, frees, reallocs,
/// mode (heap/arena), name (`-` if none), origin.
pub fn format_table(pools: &[PoolInfo]) -> String {
    let headers = [
        "bytes", "peak", "blocks", "allocs", "frees", "reallocs", "mode", "name", "origin",
    ];
    let rows: Vec<[String; 9]> = pools
        .iter()
        .map(|p| {
            let s = &p.stats;
            [
                s.size.to_string(),
                s.peak_size.to_string(),
                s.block_count.to_string(),
                s.total_allocs.to_string(),
                s.total_frees.to_string(),
                s.total_reallocs.to_string(),
                if p.arena { "arena" } else { "heap" }.to_owned(),
                p.name.clone().unwrap_or_else(|| "-".to_owned()),
                if p.origin.is_empty() {
                    "-".to_owned()
                } else {
                    p.origin.clone()
                },
            ]
        })
        .collect();
    let mut widths = headers.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[&str]| {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i > 0 {
                text.push_str("  ");
            }
            let pad = widths[i].saturating_sub(cell.chars().count());
            if i < 6 {
                // Numbers right-aligned.
                text.extend(std::iter::repeat(' ').take(pad));
                text.push_str(cell);
            } else {
                text.push_str(cell);
                text.extend(std::iter::repeat(' ').take(pad));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&headers);
    for row in &rows {
        line(&row.each_ref().map(String::as_str));
    }
    let total: usize = pools.iter().map(|p| p.stats.size).sum();
    let _ = writeln!(
        out,
        "{} live pool{}, {} in use ({total} bytes)",
        pools.len(),
        if pools.len() == 1 { "" } else { "s" },
        human_bytes(total)
    );
    out
}

/// The report of every live pool as a text table ([`format_table`] of
/// [`live_pools`]).
pub fn report() -> String {
    format_table(&live_pools())
}
