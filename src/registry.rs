//! The live-pool registry: every pool alive in the process, its name, where
//! it was made, and its counters, for "what is holding 3 GB?" reports.
//!
//! Design, and why:
//! - Each pool owns one [`Record`] of a never-freed slab (chunks of records
//!   plus a free list, under one `Mutex`). The pool keeps a `&'static Record`,
//!   so moving the pool (pyo3 moves a Python Pool's core into its object after
//!   construction) changes nothing, and the report never dereferences a pool:
//!   it only reads records. A record of a dropped pool is unlinked under the
//!   same lock the report holds, so it vanishes atomically for the report.
//! - The counters are atomics written only by the owning pool (through
//!   `&mut Pool`), with a relaxed load and a relaxed store: plain `mov`s on
//!   x86-64 and AArch64, no read-modify-write, no fence on `alloc`/`free`.
//!   The report reads them with relaxed loads from any thread, which is
//!   race-free whether the pool is locked (C) or GIL-serialised (Python).
//!   A report row is not a snapshot taken at one instant across fields.
//! - Creating and dropping a pool takes the registry lock once each.
//! - The registry holds no reference to any pool, so it keeps none alive.

use std::fmt::{self, Write as _};
use std::panic::Location;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
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
        }
    }
}

impl fmt::Debug for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Source(_) => f.write_str("Origin::Source(..)"),
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

/// A pool's counters, shared with the report. Aligned to a cache line so two
/// pools used by two threads never write the same line.
#[repr(align(64))]
#[derive(Debug)]
pub(crate) struct Record {
    /// Index of this record's slot in the registry.
    slot: usize,
    size: AtomicUsize,
    peak: AtomicUsize,
    allocs: AtomicU64,
    frees: AtomicU64,
    reallocs: AtomicU64,
}

// The owner's updates. Only the owning pool calls these, through `&mut Pool`,
// so a relaxed load followed by a relaxed store never loses an update; readers
// on other threads see each field's old or new value, never a torn one.
impl Record {
    fn new(slot: usize) -> Self {
        Record {
            slot,
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

struct Slot {
    record: &'static Record,
    live: bool,
    arena: bool,
    name: Option<Box<str>>,
    origin: Origin,
}

struct Registry {
    slots: Vec<Slot>,
    /// Indices of slots whose pool has dropped, reused last-freed first.
    free: Vec<usize>,
    live: usize,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    slots: Vec::new(),
    free: Vec::new(),
    live: 0,
});

fn registry() -> MutexGuard<'static, Registry> {
    // Nothing panics while the lock is held with the registry half-updated.
    REGISTRY.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Registry {
    fn grow(&mut self) {
        let base = self.slots.len();
        let chunk: &'static [Record] = (base..base + CHUNK)
            .map(Record::new)
            .collect::<Vec<_>>()
            .leak();
        for record in chunk {
            self.slots.push(Slot {
                record,
                live: false,
                arena: false,
                name: None,
                origin: Origin::Unknown,
            });
        }
        // Lowest index on top: slots are handed out in order.
        self.free.extend((base..base + CHUNK).rev());
    }
}

/// A fresh (zeroed) record for a new pool.
pub(crate) fn register(label: Label, arena: bool) -> &'static Record {
    let mut reg = registry();
    if reg.free.is_empty() {
        reg.grow();
    }
    let index = reg.free.pop().expect("grown above");
    reg.live += 1;
    let slot = &mut reg.slots[index];
    slot.record.clear();
    slot.live = true;
    slot.arena = arena;
    slot.name = label.name.map(String::into_boxed_str);
    slot.origin = label.origin;
    slot.record
}

/// Unlinks a dropped pool's record; it may be handed to a new pool at once.
pub(crate) fn release(record: &'static Record) {
    let (name, origin) = {
        let mut reg = registry();
        let slot = &mut reg.slots[record.slot];
        debug_assert!(slot.live, "record released twice");
        slot.live = false;
        let taken = (slot.name.take(), std::mem::take(&mut slot.origin));
        reg.free.push(record.slot);
        reg.live -= 1;
        taken
    };
    // Dropped outside the lock: an origin may release Python objects.
    drop((name, origin));
}

pub(crate) fn name(record: &Record) -> Option<String> {
    registry().slots[record.slot]
        .name
        .as_deref()
        .map(str::to_owned)
}

pub(crate) fn set_name(record: &Record, name: Option<String>) {
    let old = {
        let mut reg = registry();
        let slot = &mut reg.slots[record.slot];
        std::mem::replace(&mut slot.name, name.map(String::into_boxed_str))
    };
    drop(old);
}

pub(crate) fn set_origin(record: &Record, origin: Origin) {
    let old = {
        let mut reg = registry();
        let slot = &mut reg.slots[record.slot];
        std::mem::replace(&mut slot.origin, origin)
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
        let mut found = Vec::with_capacity(reg.live);
        for slot in reg.slots.iter().filter(|s| s.live) {
            found.push((
                slot.name.as_deref().map(str::to_owned),
                slot.origin.clone(),
                slot.arena,
                slot.record.snapshot(),
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
    registry().live
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
