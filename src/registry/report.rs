//! The live-pool report as a text table, for people.

use std::fmt::Write as _;

use super::{live_pools, PoolInfo};

/// `1536` -> `1.5 KiB`: the total line is for people.
pub(super) fn human_bytes(bytes: usize) -> String {
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
                text_or_dash(p.name.as_deref()),
                text_or_dash(Some(&p.origin)),
            ]
        })
        .collect();
    let mut out = aligned(&headers, &rows, 6);
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

/// A name or origin cell: `-` when there is none.
pub(super) fn text_or_dash(text: Option<&str>) -> String {
    match text {
        Some(text) if !text.is_empty() => text.to_owned(),
        _ => "-".to_owned(),
    }
}

/// `rows` under `headers` in columns two spaces apart, the first `numeric`
/// columns right-aligned, one line each (trailing spaces trimmed).
pub(super) fn aligned<const N: usize>(
    headers: &[&str; N],
    rows: &[[String; N]],
    numeric: usize,
) -> String {
    let mut widths = headers.map(str::len);
    for row in rows {
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
            if i < numeric {
                text.extend(std::iter::repeat_n(' ', pad));
                text.push_str(cell);
            } else {
                text.push_str(cell);
                text.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(headers);
    for row in rows {
        line(&row.each_ref().map(String::as_str));
    }
    out
}

/// The report of every live pool as a text table ([`format_table`] of
/// [`live_pools`]).
pub fn report() -> String {
    format_table(&live_pools())
}
