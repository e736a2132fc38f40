//! The live-pool report as a text table, for people.
//!
//! The table is written into any `fmt::Write` without allocating, so the C
//! report fills the caller's buffer directly and, out of memory, both front
//! doors fail cleanly instead of aborting.

use std::fmt;

use super::{live_pools, try_live_pools, PoolInfo};
use crate::fallible::{OutOfMemory, TryString};

/// `1536` -> `1.5 KiB`: the total line is for people.
struct HumanBytes(usize);

impl fmt::Display for HumanBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
        let mut value = self.0 as f64;
        let mut unit = 0;
        while value >= 1024.0 && unit + 1 < UNITS.len() {
            value /= 1024.0;
            unit += 1;
        }
        if unit == 0 {
            write!(f, "{} B", self.0)
        } else {
            write!(f, "{value:.1} {}", UNITS[unit])
        }
    }
}

/// One cell of the table.
#[derive(Clone, Copy)]
enum Cell<'a> {
    Number(u64),
    Text(&'a str),
}

impl Cell<'_> {
    /// Its width in characters.
    fn width(self) -> usize {
        match self {
            Cell::Number(n) => n.checked_ilog10().map_or(1, |digits| digits as usize + 1),
            Cell::Text(text) => text.chars().count(),
        }
    }
}

impl fmt::Display for Cell<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cell::Number(n) => write!(f, "{n}"),
            Cell::Text(text) => f.write_str(text),
        }
    }
}

const HEADERS: [&str; 9] = [
    "bytes", "peak", "blocks", "allocs", "frees", "reallocs", "mode", "name", "origin",
];

/// Columns before this one hold numbers, right-aligned.
const FIRST_TEXT_COLUMN: usize = 6;

fn row(p: &PoolInfo) -> [Cell<'_>; 9] {
    let s = &p.stats;
    [
        Cell::Number(s.size as u64),
        Cell::Number(s.peak_size as u64),
        Cell::Number(s.block_count as u64),
        Cell::Number(s.total_allocs),
        Cell::Number(s.total_frees),
        Cell::Number(s.total_reallocs),
        Cell::Text(if p.arena { "arena" } else { "heap" }),
        Cell::Text(p.name.as_deref().unwrap_or("-")),
        Cell::Text(if p.origin.is_empty() { "-" } else { &p.origin }),
    ]
}

/// Writes one line: cells padded to `widths`, trailing spaces left out.
fn write_line(
    out: &mut impl fmt::Write,
    widths: &[usize; 9],
    cells: &[Cell<'_>; 9],
) -> fmt::Result {
    // Everything after the last non-blank cell would be trailing spaces.
    let last = cells
        .iter()
        .rposition(|c| !matches!(c, Cell::Text(t) if t.trim_end().is_empty()))
        .unwrap_or(0);
    for (i, cell) in cells.iter().enumerate().take(last + 1) {
        if i > 0 {
            out.write_str("  ")?;
        }
        let pad = widths[i].saturating_sub(cell.width());
        if i < FIRST_TEXT_COLUMN {
            write!(out, "{:pad$}{cell}", "")?;
        } else if i == last {
            match cell {
                Cell::Text(text) => out.write_str(text.trim_end())?,
                Cell::Number(_) => write!(out, "{cell}")?,
            }
        } else {
            write!(out, "{cell}{:pad$}", "")?;
        }
    }
    out.write_char('\n')
}

/// Writes the report as an aligned text table, for people: one row per pool
/// (as given, normally most bytes first), byte counts in full so it also
/// parses, then a total line. Columns: bytes, peak, blocks, allocs, frees,
/// reallocs, mode (heap/arena), name (`-` if none), origin. Allocates nothing.
pub fn write_table(pools: &[PoolInfo], out: &mut impl fmt::Write) -> fmt::Result {
    let headers = HEADERS.map(Cell::Text);
    let mut widths = headers.map(Cell::width);
    for pool in pools {
        for (width, cell) in widths.iter_mut().zip(row(pool)) {
            *width = (*width).max(cell.width());
        }
    }
    write_line(out, &widths, &headers)?;
    for pool in pools {
        write_line(out, &widths, &row(pool))?;
    }
    let total: usize = pools.iter().map(|p| p.stats.size).sum();
    writeln!(
        out,
        "{} live pool{}, {} in use ({total} bytes)",
        pools.len(),
        if pools.len() == 1 { "" } else { "s" },
        HumanBytes(total)
    )
}

/// [`write_table`] into a new `String`.
pub fn format_table(pools: &[PoolInfo]) -> String {
    let mut out = String::new();
    let _ = write_table(pools, &mut out);
    out
}

/// The report of every live pool as a text table ([`format_table`] of
/// [`live_pools`]).
pub fn report() -> String {
    format_table(&live_pools())
}

/// [`report`], or `OutOfMemory` if the list or the text could not be built.
pub fn try_report() -> Result<String, OutOfMemory> {
    let pools = try_live_pools()?;
    let mut out = TryString::default();
    write_table(&pools, &mut out).map_err(|_| OutOfMemory)?;
    Ok(out.0)
}
