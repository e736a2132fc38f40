//! The peak report: the process's high-water mark of pool bytes, the bytes
//! held now, and which pools held the bytes at the peak (from the records'
//! snapshot fields; see `peak.rs`).

use std::fmt;
use std::sync::atomic::Ordering::Acquire;

use super::label::Origin;
use super::peak::{self, PEAK_STEP};
use super::registry;
use super::report::{write_rows, Cell, HumanBytes};
use crate::fallible::{try_string, OutOfMemory, TryString};

/// One pool that held bytes at the peak snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeakPool {
    pub name: Option<String>,
    /// Where the pool was made (empty if unknown).
    pub origin: String,
    pub arena: bool,
    /// Bytes and live blocks the pool held at the snapshot.
    pub bytes: usize,
    pub blocks: usize,
    /// Whether the pool is still alive.
    pub alive: bool,
}

/// The process-wide peak of pool bytes (see [`peak`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeakReport {
    /// The most bytes pools held at once since the start or the last
    /// [`reset_peak`](super::reset_peak), exact to within `step` bytes per
    /// thread (never below `current`).
    pub peak: usize,
    /// Bytes pools hold now (exact: the sum of the live pools' sizes).
    pub current: usize,
    /// The total when the pools below were recorded: within one snapshot
    /// step ([`super::peak::snapshot_step`]) of `peak`.
    pub snapshot: usize,
    /// [`PEAK_STEP`]: the precision per thread.
    pub step: usize,
    /// The pools that held bytes at the snapshot, most bytes first; dropped
    /// pools included (`alive` false).
    pub pools: Vec<PeakPool>,
}

/// The process-wide peak of bytes held by pools (this library's pools: the
/// C library and the Python extension each have their own), and which pools
/// held them. Reads records only: no pool is touched or kept alive.
pub fn peak() -> PeakReport {
    try_peak()
        .unwrap_or_else(|_| std::alloc::handle_alloc_error(std::alloc::Layout::new::<PeakPool>()))
}

/// [`peak`], or `OutOfMemory` if the list could not be built.
///
/// Origins are described after the registry lock is released (see
/// [`super::live_pools`]).
pub fn try_peak() -> Result<PeakReport, OutOfMemory> {
    peak::flush_this_thread();
    type Found = (usize, Option<String>, Origin, bool, usize, usize, bool);
    let mut found: Vec<Found> = Vec::new();
    let (current, peak, snapshot) = {
        let reg = registry();
        let epoch = peak::epoch();
        let held = || {
            reg.records
                .iter()
                .filter_map(move |r| r.at_peak(epoch).map(|at| (r, at)))
        };
        found.try_reserve_exact(held().count())?;
        for (index, (record, (bytes, blocks))) in held().enumerate().take(found.capacity()) {
            // SAFETY: `reg` holds the registry lock. A live record's label
            // is read under it (the second case of `Record::meta`'s
            // protocol); a dead one belongs to the current snapshot, so
            // `Registry::recycle` (which needs this lock) keeps it off the
            // free lists and nobody writes its label (the third case).
            let meta = unsafe { &*record.meta.get() };
            let name = meta.name.as_deref().map(try_string).transpose()?;
            let origin = meta.origin.try_clone()?;
            let alive = record.live.load(Acquire);
            found.push((index, name, origin, record.is_arena(), bytes, blocks, alive));
        }
        let current: usize = reg
            .records
            .iter()
            .filter(|r| r.live.load(Acquire))
            .map(|r| r.size())
            .sum();
        (current, peak::peak(), peak::snapped())
    };
    // Not `sort_by`: a stable sort allocates scratch space. The registry
    // order breaks ties instead.
    found.sort_unstable_by(|a, b| {
        b.4.cmp(&a.4)
            .then_with(|| a.1.cmp(&b.1))
            .then(a.0.cmp(&b.0))
    });
    let mut pools = Vec::new();
    pools.try_reserve_exact(found.len())?;
    for (_, name, origin, arena, bytes, blocks, alive) in found {
        pools.push(PeakPool {
            name,
            origin: origin.try_describe()?,
            arena,
            bytes,
            blocks,
            alive,
        });
    }
    Ok(PeakReport {
        peak: peak.max(current),
        current,
        snapshot,
        step: PEAK_STEP,
        pools,
    })
}

const HEADERS: [&str; 6] = ["bytes", "blocks", "mode", "state", "name", "origin"];

fn row(p: &PeakPool) -> [Cell<'_>; 6] {
    [
        Cell::Number(p.bytes as u64),
        Cell::Number(p.blocks as u64),
        Cell::Mode {
            arena: p.arena,
            limit: None,
        },
        Cell::Plain(if p.alive { "live" } else { "dropped" }),
        Cell::name(p.name.as_deref()),
        Cell::origin(&p.origin),
    ]
}

/// Writes the peak report as text for people: a heading line with the peak
/// and the bytes held now, then one row per pool that held bytes at the
/// peak (bytes, blocks, mode, state, name, origin; names and origins cut as
/// in the live-pool report), then a total line. Allocates nothing.
pub fn write_peak(report: &PeakReport, out: &mut impl fmt::Write) -> fmt::Result {
    writeln!(
        out,
        "peak {} ({} bytes, within {} bytes per thread), now {} ({} bytes)",
        HumanBytes(report.peak),
        report.peak,
        report.step,
        HumanBytes(report.current),
        report.current
    )?;
    write_rows(out, HEADERS, 2, &report.pools, row)?;
    let held: usize = report.pools.iter().map(|p| p.bytes).sum();
    let n = report.pools.len();
    writeln!(
        out,
        "{n} pool{} held {} ({held} bytes) when the total was {} bytes",
        if n == 1 { "" } else { "s" },
        HumanBytes(held),
        report.snapshot
    )
}

/// [`write_peak`] into a new `String`.
pub fn format_peak(report: &PeakReport) -> String {
    let mut out = String::new();
    let _ = write_peak(report, &mut out);
    out
}

/// [`format_peak`] of [`peak`].
pub fn peak_report() -> String {
    format_peak(&peak())
}

/// [`peak_report`], or `OutOfMemory` if the list or the text could not be
/// built.
pub fn try_peak_report() -> Result<String, OutOfMemory> {
    let report = try_peak()?;
    let mut out = TryString::default();
    write_peak(&report, &mut out).map_err(|_| OutOfMemory)?;
    Ok(out.0)
}
