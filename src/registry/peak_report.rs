//! The peak report: the process's high-water mark of pool bytes, the bytes
//! held now, and which pools held the bytes at the peak (from the records'
//! snapshot fields; see `peak.rs`).

use std::fmt::Write as _;
use std::sync::atomic::Ordering::Acquire;

use super::label::Origin;
use super::peak::{self, PEAK_STEP};
use super::registry;
use super::report::{aligned, human_bytes, name_cell, origin_cell};

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
///
/// Origins are described after the registry lock is released (see
/// [`super::live_pools`]).
pub fn peak() -> PeakReport {
    peak::flush_this_thread();
    type Found = (Option<String>, Origin, bool, usize, usize, bool);
    let (found, current, peak, snapshot) = {
        let reg = registry();
        let epoch = peak::epoch();
        let mut found: Vec<Found> = Vec::new();
        let mut current = 0usize;
        for record in reg.records.iter() {
            let alive = record.live.load(Acquire);
            if alive {
                current += record.size();
            }
            let Some((bytes, blocks)) = record.at_peak(epoch) else {
                continue;
            };
            // SAFETY: `reg` holds the registry lock. A live record's label
            // is read under it (the second case of `Record::meta`'s
            // protocol); a dead one belongs to the current snapshot, so
            // `Registry::recycle` (which needs this lock) keeps it off the
            // free lists and nobody writes its label (the third case).
            let meta = unsafe { &*record.meta.get() };
            found.push((
                meta.name.as_deref().map(str::to_owned),
                meta.origin.clone(),
                meta.arena,
                bytes,
                blocks,
                alive,
            ));
        }
        (found, current, peak::peak(), peak::snapped())
    };
    let mut pools: Vec<PeakPool> = found
        .into_iter()
        .map(|(name, origin, arena, bytes, blocks, alive)| PeakPool {
            name,
            origin: origin.describe(),
            arena,
            bytes,
            blocks,
            alive,
        })
        .collect();
    pools.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.name.cmp(&b.name)));
    PeakReport {
        peak: peak.max(current),
        current,
        snapshot,
        step: PEAK_STEP,
        pools,
    }
}

/// The peak report as text for people: a heading line with the peak and
/// the bytes held now, then one row per pool that held bytes at the peak
/// (bytes, blocks, mode, state, name, origin), then a total line.
pub fn format_peak(report: &PeakReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "peak {} ({} bytes, within {} bytes per thread), now {} ({} bytes)",
        human_bytes(report.peak),
        report.peak,
        report.step,
        human_bytes(report.current),
        report.current
    );
    let headers = ["bytes", "blocks", "mode", "state", "name", "origin"];
    let rows: Vec<[String; 6]> = report
        .pools
        .iter()
        .map(|p| {
            [
                p.bytes.to_string(),
                p.blocks.to_string(),
                if p.arena { "arena" } else { "heap" }.to_owned(),
                if p.alive { "live" } else { "dropped" }.to_owned(),
                name_cell(p.name.as_deref()),
                origin_cell(&p.origin),
            ]
        })
        .collect();
    out.push_str(&aligned(&headers, &rows, 2));
    let held: usize = report.pools.iter().map(|p| p.bytes).sum();
    let _ = writeln!(
        out,
        "{} pool{} held {} ({held} bytes) when the total was {} bytes",
        report.pools.len(),
        if report.pools.len() == 1 { "" } else { "s" },
        human_bytes(held),
        report.snapshot
    );
    out
}

/// [`format_peak`] of [`peak`].
pub fn peak_report() -> String {
    format_peak(&peak())
}
