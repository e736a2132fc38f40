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

/// Longest name shown in the table, in characters (`…` included).
const NAME_WIDTH: usize = 40;
/// Longest origin shown in the table, in characters (`…` included).
const ORIGIN_WIDTH: usize = 60;

/// `text` as one table cell: control characters written as `\xNN` (so a
/// name cannot break a row or send terminal escapes), and cut to `limit`
/// characters ending in `…` if longer. Reads at most `limit + 1` characters
/// of `text`, so a huge name costs no more than a short one.
fn cell(text: &str, limit: usize) -> String {
    let mut shown = String::new();
    let mut width = 0;
    // Where the text would be cut if it turns out too long: the length that
    // leaves room for `…` without splitting an escape.
    let mut cut = None;
    for ch in text.chars() {
        let piece = if ch.is_control() { 4 } else { 1 };
        if cut.is_none() && width + piece > limit - 1 {
            cut = Some(shown.len());
        }
        if width + piece > limit {
            shown.truncate(cut.unwrap_or(shown.len()));
            shown.push('…');
            return shown;
        }
        width += piece;
        if ch.is_control() {
            let _ = write!(shown, "\\x{:02x}", u32::from(ch));
        } else {
            shown.push(ch);
        }
    }
    shown
}

/// The report as an aligned text table, for people: one row per pool (as
/// given, normally most bytes first), byte counts in full so it also parses,
/// then a total line. Columns: bytes, peak, blocks, allocs, frees, reallocs,
/// mode (heap/arena), name (`-` if none), origin. Names are cut to 40
/// characters and origins to 60 (the full values
/// are in [`live_pools`]), so the table's size depends only on the number of
/// pools.
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
                name_cell(p.name.as_deref()),
                origin_cell(&p.origin),
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

/// A name cell: `-` if there is none, else cut to [`NAME_WIDTH`].
pub(super) fn name_cell(name: Option<&str>) -> String {
    name.map_or_else(|| "-".to_owned(), |name| cell(name, NAME_WIDTH))
}

/// An origin cell: `-` if unknown, else cut to [`ORIGIN_WIDTH`].
pub(super) fn origin_cell(origin: &str) -> String {
    if origin.is_empty() {
        "-".to_owned()
    } else {
        cell(origin, ORIGIN_WIDTH)
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

#[cfg(test)]
mod tests {
    use super::cell;

    #[test]
    fn short_text_is_kept() {
        assert_eq!(cell("pool", 40), "pool");
        assert_eq!(cell(&"x".repeat(40), 40), "x".repeat(40));
    }

    #[test]
    fn long_text_is_cut_with_an_ellipsis() {
        let shown = cell(&"x".repeat(1 << 20), 40);
        assert_eq!(shown, format!("{}…", "x".repeat(39)));
        assert_eq!(shown.chars().count(), 40);
    }

    #[test]
    fn control_characters_are_escaped_and_never_split() {
        assert_eq!(
            cell("a\nb\x1b\t\u{7f}\u{85}", 40),
            "a\\x0ab\\x1b\\x09\\x7f\\x85"
        );
        // 37 characters, then an escape that would cross the limit.
        let shown = cell(&format!("{}\n{}", "y".repeat(37), "z".repeat(10)), 40);
        assert_eq!(shown, format!("{}…", "y".repeat(37)));
    }
}
