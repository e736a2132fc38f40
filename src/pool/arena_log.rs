//! The block index of an arena pool: an append-only log, no hash table.
//!
//! Arena blocks are never handed back one by one, so the index only has to
//! answer "is this a live block, and how big" for `free`, `realloc` and
//! `size`. Appending is all `alloc` does (O(1), no hashing, no rehash); the
//! lookups binary-search, which is fine for the rare `free` of an arena block.
//!
//! Layout, for at most 16 bytes of bookkeeping per block (about 12):
//! - the log, in allocation order: whole addresses (`usize`, so leak checkers
//!   scanning a live pool see its blocks) and `u32` sizes, in segments of
//!   `SEGMENT` entries (the first one grows by doubling up to that), so growing
//!   never copies the log and never over-allocates by more than one segment;
//! - freed and moved blocks stay in the log, marked `FREED` (their space is
//!   not reused before `free_all` either, which clears the log);
//! - sizes of 4 GiB - 2 or more live in a small side map keyed by log index;
//! - runs: bumpalo bumps downward inside a chunk, so the log splits into
//!   runs of strictly decreasing addresses, at most one per chunk (chunks
//!   double in size, so a handful). Each run records its address range; a
//!   lookup binary-searches the runs whose range holds the address.

use std::collections::HashMap;

use rustc_hash::FxBuildHasher;

use super::table::TableFull;

const SEGMENT_BITS: u32 = 8;
/// Entries per full segment (3 KiB of addresses and sizes: small enough that
/// the last, partly used segment stays within the 16 B/block bound).
const SEGMENT: usize = 1 << SEGMENT_BITS;
/// Capacity of the first segment's first allocation.
const FIRST_CAPACITY: usize = 16;
/// In `sizes`: the block was freed or moved.
const FREED: u32 = u32::MAX;
/// In `sizes`: the size is in `large`.
const SIZE_IN_LARGE: u32 = u32::MAX - 1;

/// Log entries from `start` (up to the next run's start) with strictly
/// decreasing addresses in `lo..=hi`.
#[derive(Debug, Default, Clone, Copy)]
struct Run {
    start: usize,
    lo: usize,
    hi: usize,
}

/// Every block an arena pool handed out since it was made or last emptied.
///
/// A segment is one allocation of `3c/2` words: `c` addresses, then their
/// `u32` sizes packed two to a word. The first segment (`first`) grows from
/// `FIRST_CAPACITY` to `SEGMENT` entries; the others (`rest`) are full size.
/// `first` and the open run are kept inline, so a small arena pool makes one
/// allocation for its index.
#[derive(Debug, Default)]
pub(crate) struct ArenaLog {
    first: Box<[usize]>,
    /// Entries `first` has room for.
    first_capacity: usize,
    rest: Vec<Box<[usize]>>,
    /// Entries in the log (live and freed).
    entries: usize,
    /// Live entries.
    live: usize,
    /// The run being appended to (meaningless while the log is empty).
    current: Run,
    /// Earlier runs, oldest first.
    closed: Vec<Run>,
    large: HashMap<usize, usize, FxBuildHasher>,
}

/// A zeroed segment for `capacity` entries, or `TableFull`.
fn new_segment(capacity: usize) -> Result<Box<[usize]>, TableFull> {
    let words = capacity + capacity / 2;
    let mut v = Vec::new();
    v.try_reserve_exact(words).map_err(|_| TableFull)?;
    v.resize(words, 0);
    Ok(v.into_boxed_slice())
}

impl ArenaLog {
    /// The segment holding entry `i`, `i`'s offset in it, and the segment's
    /// capacity (where its sizes start).
    #[inline]
    fn slot(&self, i: usize) -> (&[usize], usize, usize) {
        match i >> SEGMENT_BITS {
            0 => (&self.first, i, self.first_capacity),
            s => (&self.rest[s - 1], i & (SEGMENT - 1), SEGMENT),
        }
    }

    #[inline]
    fn addr_at(&self, i: usize) -> usize {
        let (segment, k, _) = self.slot(i);
        segment[k]
    }

    #[inline]
    fn size_code(&self, i: usize) -> u32 {
        let (segment, k, capacity) = self.slot(i);
        (segment[capacity + k / 2] >> ((k & 1) * 32)) as u32
    }

    #[inline]
    fn write(&mut self, i: usize, addr: Option<usize>, code: u32) {
        let k = i & (SEGMENT - 1);
        let (segment, capacity) = match i >> SEGMENT_BITS {
            0 => (&mut self.first, self.first_capacity),
            s => (&mut self.rest[s - 1], SEGMENT),
        };
        if let Some(addr) = addr {
            segment[k] = addr;
        }
        let shift = (k & 1) * 32;
        let word = &mut segment[capacity + k / 2];
        *word = (*word & !(0xFFFF_FFFF << shift)) | ((code as usize) << shift);
    }

    fn size_at(&self, i: usize) -> usize {
        match self.size_code(i) {
            SIZE_IN_LARGE => self.large[&i],
            code => code as usize,
        }
    }

    /// Makes room for entry number `entries` in the segments.
    fn reserve_entry(&mut self) -> Result<(), TableFull> {
        let i = self.entries;
        if i < SEGMENT {
            let capacity = self.first_capacity;
            if i == capacity {
                let grown = (capacity * 2).clamp(FIRST_CAPACITY, SEGMENT);
                let mut segment = new_segment(grown)?;
                segment[..capacity].copy_from_slice(&self.first[..capacity]);
                segment[grown..grown + capacity / 2].copy_from_slice(&self.first[capacity..]);
                self.first = segment;
                self.first_capacity = grown;
            }
        } else if i & (SEGMENT - 1) == 0 && self.rest.len() < i >> SEGMENT_BITS {
            self.rest.try_reserve(1).map_err(|_| TableFull)?;
            self.rest.push(new_segment(SEGMENT)?);
        }
        Ok(())
    }

    /// Makes sure a `push` of `size` bytes cannot fail for want of memory,
    /// wherever the block is.
    pub(crate) fn reserve_one(&mut self, size: usize) -> Result<(), TableFull> {
        self.reserve_entry()?;
        if self.entries > 0 {
            self.closed.try_reserve(1).map_err(|_| TableFull)?;
        }
        if size >= SIZE_IN_LARGE as usize {
            self.large.try_reserve(1).map_err(|_| TableFull)?;
        }
        Ok(())
    }

    /// Appends a fresh block. Never fails after `reserve_one`.
    #[inline(always)]
    pub(crate) fn push(&mut self, addr: usize, size: usize) -> Result<(), TableFull> {
        let i = self.entries;
        let k = i & (SEGMENT - 1);
        // The common case: the block continues the run (same chunk), its
        // segment has room, its size fits in 32 bits.
        if i > 0 && addr < self.current.lo && size < SIZE_IN_LARGE as usize {
            let room = if i < SEGMENT {
                i < self.first_capacity
            } else {
                k != 0
            };
            if room {
                let (segment, capacity) = match i >> SEGMENT_BITS {
                    0 => (&mut self.first, self.first_capacity),
                    s => (&mut self.rest[s - 1], SEGMENT),
                };
                segment[k] = addr;
                // A fresh entry's half of the size word is still zero.
                segment[capacity + k / 2] |= size << ((k & 1) * 32);
                self.current.lo = addr;
                self.entries = i + 1;
                self.live += 1;
                return Ok(());
            }
        }
        self.push_slow(addr, size)
    }

    /// `push` when a segment or run starts, or the size is big.
    #[cold]
    #[inline(never)]
    fn push_slow(&mut self, addr: usize, size: usize) -> Result<(), TableFull> {
        self.reserve_entry()?;
        let index = self.entries;
        let new_run = index > 0 && addr >= self.current.lo;
        if new_run {
            self.closed.try_reserve(1).map_err(|_| TableFull)?;
        }
        let code = match u32::try_from(size) {
            Ok(small) if small < SIZE_IN_LARGE => small,
            _ => {
                self.large.try_reserve(1).map_err(|_| TableFull)?;
                self.large.insert(index, size);
                SIZE_IN_LARGE
            }
        };
        self.write(index, Some(addr), code);
        if index > 0 && !new_run {
            self.current.lo = addr;
        } else {
            if new_run {
                self.closed.push(self.current);
            }
            self.current = Run {
                start: index,
                lo: addr,
                hi: addr,
            };
        }
        self.entries += 1;
        self.live += 1;
        Ok(())
    }

    /// The log index of `addr` in the run from `start` to `end`, if there.
    fn search(&self, run: &Run, end: usize, addr: usize) -> Option<usize> {
        if addr < run.lo || addr > run.hi {
            return None;
        }
        // Addresses decrease along the run: find the first <= addr.
        let (mut lo, mut hi) = (run.start, end);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.addr_at(mid) > addr {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        (lo < end && self.addr_at(lo) == addr).then_some(lo)
    }

    /// The log index of the live block at `addr`.
    fn find(&self, addr: usize) -> Option<usize> {
        if self.entries == 0 {
            return None;
        }
        // Newest run first: recent blocks are the likeliest to be freed.
        let mut end = self.entries;
        let mut found = self.search(&self.current, end, addr);
        end = self.current.start;
        for run in self.closed.iter().rev() {
            if found.is_some() {
                break;
            }
            found = self.search(run, end, addr);
            end = run.start;
        }
        // Addresses are unique in the log (space is never reused before the
        // log is cleared), so the first match is the only candidate.
        found.filter(|&i| self.size_code(i) != FREED)
    }

    /// The size of the live block at `addr`.
    pub(crate) fn get(&self, addr: usize) -> Option<usize> {
        self.find(addr).map(|i| self.size_at(i))
    }

    /// Marks the live block at `addr` freed; its size.
    pub(crate) fn remove(&mut self, addr: usize) -> Option<usize> {
        let i = self.find(addr)?;
        let size = match self.size_code(i) {
            SIZE_IN_LARGE => self.large.remove(&i).expect("big block recorded in large"),
            code => code as usize,
        };
        self.write(i, None, FREED);
        self.live -= 1;
        Some(size)
    }

    /// Live blocks.
    pub(crate) fn len(&self) -> usize {
        self.live
    }

    /// Every live block as `(address, size)`, in allocation order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        (0..self.entries)
            .filter(|&i| self.size_code(i) != FREED)
            .map(|i| (self.addr_at(i), self.size_at(i)))
    }

    /// Forgets every block (the arena released their space).
    pub(crate) fn clear(&mut self) {
        *self = ArenaLog::default();
    }

    /// Bytes this index holds (for the bookkeeping test).
    #[cfg(test)]
    fn heap_bytes(&self) -> usize {
        let words: usize = self.first.len() + self.rest.iter().map(|s| s.len()).sum::<usize>();
        words * 8
            + self.rest.capacity() * std::mem::size_of::<Box<[usize]>>()
            + self.closed.capacity() * std::mem::size_of::<Run>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Chunks laid out like bumpalo's: each chunk is filled downward, and a
    /// chunk can sit above or below the previous one.
    fn chunked_addresses(chunks: &[(usize, usize)], step: usize) -> Vec<usize> {
        let mut out = Vec::new();
        for &(top, count) in chunks {
            for k in 0..count {
                out.push(top - k * step);
            }
        }
        out
    }

    #[test]
    fn lookups_across_many_chunks_in_any_address_order() {
        // Chunks above, below and interleaved with each other.
        let chunks = [
            (0x10_0000, 100),
            (0x90_0000, 5000),
            (0x08_0000, 300),
            (0x50_0000, 9000),
            (0x20_0000, 1),
        ];
        let addrs = chunked_addresses(&chunks, 32);
        let mut log = ArenaLog::default();
        for (k, &a) in addrs.iter().enumerate() {
            log.push(a, k % 600).unwrap();
        }
        assert_eq!(log.len(), addrs.len());
        // A new run starts only where a chunk starts above the last address
        // (3 here); the second run spans the first one's range, so lookups
        // must try every run whose range holds the address.
        assert_eq!(log.closed.len() + 1, 3);
        for (k, &a) in addrs.iter().enumerate() {
            assert_eq!(log.get(a), Some(k % 600), "block {k}");
            // Interior and neighbouring addresses are not blocks.
            assert_eq!(log.get(a + 16), None);
            assert_eq!(log.get(a - 1), None);
        }
        assert_eq!(log.get(0), None);
        assert_eq!(log.get(usize::MAX), None);
        // Free every third block, then check all of them again.
        for (k, &a) in addrs.iter().enumerate().filter(|(k, _)| k % 3 == 0) {
            assert_eq!(log.remove(a), Some(k % 600));
            assert_eq!(log.remove(a), None, "a freed block is gone");
        }
        for (k, &a) in addrs.iter().enumerate() {
            let expected = (k % 3 != 0).then_some(k % 600);
            assert_eq!(log.get(a), expected, "block {k}");
        }
        let listed: Vec<_> = log.iter().collect();
        let expected: Vec<_> = addrs
            .iter()
            .enumerate()
            .filter(|(k, _)| k % 3 != 0)
            .map(|(k, &a)| (a, k % 600))
            .collect();
        assert_eq!(listed, expected);
        assert_eq!(log.len(), expected.len());
        log.clear();
        assert_eq!(log.len(), 0);
        assert_eq!(log.get(addrs[1]), None);
    }

    #[test]
    fn big_sizes_round_trip() {
        let mut log = ArenaLog::default();
        let sizes = [
            0,
            1,
            SIZE_IN_LARGE as usize - 1,
            SIZE_IN_LARGE as usize,
            FREED as usize,
            usize::MAX / 2,
        ];
        for (k, &s) in sizes.iter().enumerate() {
            log.push(0x1000_0000 - k * 16, s).unwrap();
        }
        for (k, &s) in sizes.iter().enumerate() {
            assert_eq!(log.get(0x1000_0000 - k * 16), Some(s));
        }
        assert_eq!(log.remove(0x1000_0000 - 4 * 16), Some(FREED as usize));
        assert_eq!(log.get(0x1000_0000 - 4 * 16), None);
        assert_eq!(log.large.len(), 2, "the freed big size left the side map");
    }

    /// Also when every block arrives the way a realloc's does: room
    /// reserved first, then pushed.
    #[test]
    fn bookkeeping_stays_within_16_bytes_per_block() {
        for reserved_first in [false, true] {
            let mut log = ArenaLog::default();
            for n in 1..=300_000usize {
                if reserved_first {
                    log.reserve_one(64).unwrap();
                }
                log.push(0x7000_0000_0000 - n * 48, 64).unwrap();
                if n >= 1000 && n % 997 == 0 {
                    let bytes = log.heap_bytes();
                    assert!(bytes <= 16 * n, "{bytes} bytes for {n} blocks");
                }
            }
            assert_eq!(log.closed.len(), 0);
        }
    }

    #[test]
    fn addresses_are_stored_whole_for_leak_checkers() {
        let mut log = ArenaLog::default();
        log.push(0x7f12_3456_7890, 24).unwrap();
        assert!(log.first.contains(&0x7f12_3456_7890));
    }

    /// After `reserve_one`, pushing a block of 4 GiB or more (its size goes
    /// to the side map) allocates nothing: an arena pool reserves before it
    /// carves the block, so recording it cannot fail afterwards.
    #[test]
    fn a_huge_block_is_recorded_without_allocating_after_reserve_one() {
        use crate::fallible::failing::with_failures;
        let huge = SIZE_IN_LARGE as usize + 1;
        let mut log = ArenaLog::default();
        for (k, size) in [(0, huge), (1, 16), (2, huge), (3, 32), (4, huge), (5, huge)] {
            log.reserve_one(size).unwrap();
            let addr = 0x9000_0000 - k * 0x1000;
            let (pushed, _) = with_failures(1, u64::MAX, || log.push(addr, size));
            assert!(pushed.is_ok(), "block {k} of {size} bytes");
            assert_eq!(log.get(addr), Some(size));
        }
    }
}
