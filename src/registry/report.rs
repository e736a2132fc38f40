//! The live-pool report as a text table, for people.
//!
//! The table is written into any `fmt::Write` without allocating, so the C
//! report fills the caller's buffer directly and, out of memory, both front
//! doors fail cleanly instead of aborting.

use std::fmt::{self, Write as _};

use super::{live_pools, try_live_pools, PoolInfo};
use crate::fallible::{OutOfMemory, TryString};

/// `1536` -> `1.5 KiB`: the total line is for people.
pub(super) struct HumanBytes(pub(super) usize);

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

/// Longest name shown in the table, in characters (`…` included).
const NAME_WIDTH: usize = 40;
/// Longest origin shown in the table, in characters (`…` included).
const ORIGIN_WIDTH: usize = 60;

/// A name or origin as one table cell: control characters written as
/// `\xNN` (so a name cannot break a row or send terminal escapes), and cut
/// to `limit` characters ending in `…` if longer. Reads at most `limit + 1`
/// characters of `text`, so a huge name costs no more than a short one.
#[derive(Clone, Copy)]
pub(super) struct Shown<'a> {
    text: &'a str,
    limit: usize,
}

impl Shown<'_> {
    /// How many bytes of `text` are shown, their width in characters, and
    /// whether `…` follows them.
    fn layout(self) -> (usize, usize, bool) {
        let mut width = 0;
        // Where the text would be cut if it turns out too long: the length
        // that leaves room for `…` without splitting an escape.
        let mut cut = None;
        for (at, ch) in self.text.char_indices() {
            let piece = if ch.is_control() { 4 } else { 1 };
            if cut.is_none() && width + piece > self.limit - 1 {
                cut = Some((at, width));
            }
            if width + piece > self.limit {
                let (end, width) = cut.unwrap_or((at, width));
                return (end, width + 1, true);
            }
            width += piece;
        }
        (self.text.len(), width, false)
    }
}

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (end, _, cut) = self.layout();
        for ch in self.text[..end].chars() {
            if ch.is_control() {
                write!(f, "\\x{:02x}", u32::from(ch))?;
            } else {
                f.write_char(ch)?;
            }
        }
        if cut {
            f.write_char('…')?;
        }
        Ok(())
    }
}

/// One cell of the table.
#[derive(Clone, Copy)]
pub(super) enum Cell<'a> {
    Number(u64),
    /// Shown as it is (headers, `-`).
    Plain(&'a str),
    Shown(Shown<'a>),
    /// `heap` or `arena`, then `,limit=N` for a pool with a limit.
    Mode {
        arena: bool,
        limit: Option<usize>,
    },
}

/// The width of `n` in decimal digits.
fn digits(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |digits| digits as usize + 1)
}

fn mode_name(arena: bool) -> &'static str {
    if arena {
        "arena"
    } else {
        "heap"
    }
}

impl<'a> Cell<'a> {
    /// A pool's name, cut to [`NAME_WIDTH`]; `-` if it has none.
    pub(super) fn name(name: Option<&'a str>) -> Self {
        name.map_or(Cell::Plain("-"), |text| {
            Cell::Shown(Shown {
                text,
                limit: NAME_WIDTH,
            })
        })
    }

    /// A pool's origin, cut to [`ORIGIN_WIDTH`]; `-` if unknown.
    pub(super) fn origin(origin: &'a str) -> Self {
        match origin {
            "" => Cell::Plain("-"),
            text => Cell::Shown(Shown {
                text,
                limit: ORIGIN_WIDTH,
            }),
        }
    }
}

impl Cell<'_> {
    /// Its width in characters.
    fn width(self) -> usize {
        match self {
            Cell::Number(n) => digits(n),
            Cell::Plain(text) => text.chars().count(),
            Cell::Shown(shown) => shown.layout().1,
            Cell::Mode { arena, limit } => {
                mode_name(arena).len() + limit.map_or(0, |n| ",limit=".len() + digits(n as u64))
            }
        }
    }
}

impl fmt::Display for Cell<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cell::Number(n) => write!(f, "{n}"),
            Cell::Plain(text) => f.write_str(text),
            Cell::Shown(shown) => write!(f, "{shown}"),
            Cell::Mode { arena, limit } => {
                f.write_str(mode_name(*arena))?;
                match limit {
                    Some(limit) => write!(f, ",limit={limit}"),
                    None => Ok(()),
                }
            }
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
        Cell::Mode {
            arena: p.arena,
            limit: p.limit,
        },
        Cell::name(p.name.as_deref()),
        Cell::origin(&p.origin),
    ]
}

/// Counts a line's bytes and where its last non-blank character ends.
#[derive(Default)]
struct Measure {
    len: usize,
    end: usize,
}

impl fmt::Write for Measure {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if let Some((at, ch)) = s.char_indices().rfind(|(_, ch)| !ch.is_whitespace()) {
            self.end = self.len + at + ch.len_utf8();
        }
        self.len += s.len();
        Ok(())
    }
}

/// Passes on the first `left` bytes written to it (a character boundary).
struct Prefix<'a, W> {
    out: &'a mut W,
    left: usize,
}

impl<W: fmt::Write> fmt::Write for Prefix<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let n = s.len().min(self.left);
        self.left -= n;
        self.out.write_str(&s[..n])
    }
}

/// Writes the cells of a line, padded to `widths`; the first `numbers`
/// right-aligned.
fn write_cells<const N: usize>(
    out: &mut impl fmt::Write,
    widths: &[usize; N],
    cells: &[Cell<'_>; N],
    numbers: usize,
) -> fmt::Result {
    for (i, cell) in cells.iter().enumerate() {
        if i > 0 {
            out.write_str("  ")?;
        }
        let pad = widths[i].saturating_sub(cell.width());
        if i < numbers {
            write!(out, "{:pad$}{cell}", "")?;
        } else {
            write!(out, "{cell}{:pad$}", "")?;
        }
    }
    Ok(())
}

/// Writes one line without its trailing blanks: measured first, then
/// written up to its last non-blank character.
fn write_line<const N: usize>(
    out: &mut impl fmt::Write,
    widths: &[usize; N],
    cells: &[Cell<'_>; N],
    numbers: usize,
) -> fmt::Result {
    let mut measure = Measure::default();
    write_cells(&mut measure, widths, cells, numbers)?;
    let mut prefix = Prefix {
        out: &mut *out,
        left: measure.end,
    };
    write_cells(&mut prefix, widths, cells, numbers)?;
    out.write_char('\n')
}

/// Writes `headers`, then one aligned line per item (`row` gives its
/// cells; the first `numbers` columns are right-aligned). Allocates nothing.
pub(super) fn write_rows<'a, T, const N: usize>(
    out: &mut impl fmt::Write,
    headers: [&str; N],
    numbers: usize,
    items: &'a [T],
    row: impl Fn(&'a T) -> [Cell<'a>; N],
) -> fmt::Result {
    let headers = headers.map(Cell::Plain);
    let mut widths = headers.map(Cell::width);
    for item in items {
        for (width, cell) in widths.iter_mut().zip(row(item)) {
            *width = (*width).max(cell.width());
        }
    }
    write_line(out, &widths, &headers, numbers)?;
    for item in items {
        write_line(out, &widths, &row(item), numbers)?;
    }
    Ok(())
}

/// Writes the report as an aligned text table, for people: one row per pool
/// (as given, normally most bytes first), byte counts in full so it also
/// parses, then a total line. Columns: bytes, peak, blocks, allocs, frees,
/// reallocs, mode (heap/arena, then `,limit=N` for a pool with a limit), name (`-` if none), origin. Names are cut to
/// 40 characters and origins to 60 (the full values are in [`live_pools`]),
/// so the table's size depends only on the number of pools. Allocates
/// nothing.
pub fn write_table(pools: &[PoolInfo], out: &mut impl fmt::Write) -> fmt::Result {
    write_rows(out, HEADERS, FIRST_TEXT_COLUMN, pools, row)?;
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

#[cfg(test)]
mod tests {
    use super::{HumanBytes, Shown};

    /// Whole bytes up to 1023, then one decimal in the largest unit that
    /// keeps the number at 1 or more, up to PiB.
    #[test]
    fn byte_totals_read_in_the_largest_fitting_unit() {
        for (bytes, shown) in [
            (0, "0 B"),
            (1023, "1023 B"),
            (1024, "1.0 KiB"),
            (1536, "1.5 KiB"),
            ((1 << 20) - 1, "1024.0 KiB"),
            (1 << 20, "1.0 MiB"),
            (5 << 30, "5.0 GiB"),
            (1 << 40, "1.0 TiB"),
            (1 << 50, "1.0 PiB"),
            (1 << 60, "1024.0 PiB"),
        ] {
            assert_eq!(HumanBytes(bytes).to_string(), shown, "{bytes}");
        }
    }

    fn cell(text: &str, limit: usize) -> String {
        Shown { text, limit }.to_string()
    }

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

    #[test]
    fn widths_match_what_is_written() {
        for text in [
            "pool",
            "a\nb",
            &"x".repeat(100),
            &format!("{}\n{}", "y".repeat(37), "z"),
        ] {
            let shown = Shown { text, limit: 40 };
            assert_eq!(
                shown.layout().1,
                shown.to_string().chars().count(),
                "{text:?}"
            );
        }
    }
}
