//! The pool's record of its live blocks: address -> size, O(1) either way.
//!
//! Addresses are only ever used as keys here; a pointer the pool did not hand
//! out is looked up, never dereferenced.
//!
//! Layout, chosen for bookkeeping of at most 16 bytes per live block: one
//! `u64` slot per entry, packing the address (47 bits, the x86-64 and AArch64
//! user address space) with the size (17 bits). Open addressing with Robin
//! Hood linear probing (entries ordered by distance from their home slot, so
//! searches stop early) and backward-shift deletion (no tombstones). The capacity is not a
//! power of two: it grows by 1.5x and slots are picked by multiply-high range
//! reduction, so the load stays between 0.53 and 0.8, i.e. 10 to 15 bytes per
//! block. Blocks of 128 KiB or more, and addresses above 2^47, go to a small
//! side map; for such blocks 32 extra bytes are nothing.

use std::collections::HashMap;

use rustc_hash::FxBuildHasher;

const SIZE_BITS: u32 = 17;
/// In a slot's size field: "the size is in `large`".
const SIZE_IN_LARGE: u64 = (1 << SIZE_BITS) - 1;
/// Addresses at or above this do not fit a slot.
const ADDR_LIMIT: usize = 1 << (64 - SIZE_BITS);
/// An empty slot. No entry is 0: a block's address is never 0.
const EMPTY: u64 = 0;
const MIN_CAPACITY: usize = 16;

/// Live blocks of one pool, keyed by address.
#[derive(Debug, Default)]
pub(crate) struct BlockTable {
    /// `len(slots)` is the capacity; `EMPTY` or `addr << SIZE_BITS | size`.
    slots: Vec<u64>,
    /// Entries in `slots`.
    in_slots: usize,
    /// Entries only in `large` (address at or above `ADDR_LIMIT`).
    high: usize,
    /// Sizes too big for a slot (their slot says `SIZE_IN_LARGE`), and whole
    /// entries whose address does not fit a slot.
    large: HashMap<usize, usize, FxBuildHasher>,
}

/// The table could not grow (the process is out of memory).
#[derive(Debug)]
pub(crate) struct TableFull;

#[inline]
fn pack(addr: usize, size: usize) -> u64 {
    let size_field = if (size as u64) < SIZE_IN_LARGE {
        size as u64
    } else {
        SIZE_IN_LARGE
    };
    ((addr as u64) << SIZE_BITS) | size_field
}

#[inline]
fn slot_addr(slot: u64) -> usize {
    (slot >> SIZE_BITS) as usize
}

/// The slot where probing for `addr` starts, in `0..capacity`.
#[inline]
fn home(addr: usize, capacity: usize) -> usize {
    // Fibonacci hashing spreads nearby addresses over the high bits; the
    // multiply-high maps them onto any capacity without a division.
    let hash = (addr as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    ((u128::from(hash) * capacity as u128) >> 64) as usize
}

impl BlockTable {
    #[inline]
    fn next(&self, i: usize) -> usize {
        if i + 1 == self.slots.len() {
            0
        } else {
            i + 1
        }
    }

    /// How far the entry in slot `i` sits from its home slot.
    #[inline]
    fn distance(&self, slot: u64, i: usize) -> usize {
        let h = home(slot_addr(slot), self.slots.len());
        if i >= h {
            i - h
        } else {
            i + self.slots.len() - h
        }
    }

    /// Where `addr` is, or where it would go: `Ok(slot)` if present,
    /// `Err(slot)` with the first slot whose entry sits closer to its home
    /// than `addr` would (or an empty one). The Robin Hood order guarantees
    /// `addr` is not further on. Needs a non-empty `slots`.
    #[inline]
    fn probe(&self, addr: usize) -> Result<usize, usize> {
        let mut i = home(addr, self.slots.len());
        let mut dist = 0;
        loop {
            let slot = self.slots[i];
            if slot == EMPTY {
                return Err(i);
            }
            if slot_addr(slot) == addr {
                return Ok(i);
            }
            if self.distance(slot, i) < dist {
                return Err(i);
            }
            i = self.next(i);
            dist += 1;
        }
    }

    /// The slot holding `addr`, if any. `addr` must be below `ADDR_LIMIT`.
    #[inline]
    fn find(&self, addr: usize) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        self.probe(addr).ok()
    }

    /// The size stored for a slot (looking in `large` for big blocks).
    #[inline]
    fn size_of(&self, slot: u64) -> usize {
        match slot & SIZE_IN_LARGE {
            SIZE_IN_LARGE => self.large[&slot_addr(slot)],
            size => size as usize,
        }
    }

    /// Makes sure a big block's size (or a high address) can be recorded
    /// without allocating, so a later `replace` cannot fail.
    pub(crate) fn reserve_large(&mut self) -> Result<(), TableFull> {
        self.large.try_reserve(1).map_err(|_| TableFull)
    }

    /// Keeps the load at or below 0.8 after one more entry.
    fn grow_for_one(&mut self) -> Result<(), TableFull> {
        if (self.in_slots + 1) * 5 > self.slots.len() * 4 {
            let capacity = (self.slots.len() + self.slots.len() / 2).max(MIN_CAPACITY);
            self.rehash(capacity)?;
        }
        Ok(())
    }

    fn rehash(&mut self, capacity: usize) -> Result<(), TableFull> {
        let mut slots = Vec::new();
        slots.try_reserve_exact(capacity).map_err(|_| TableFull)?;
        slots.resize(capacity, EMPTY);
        let old = std::mem::replace(&mut self.slots, slots);
        for slot in old.into_iter().filter(|&s| s != EMPTY) {
            let at = self.probe(slot_addr(slot)).unwrap_err();
            self.place(at, slot);
        }
        Ok(())
    }

    /// Puts `slot` at `i`, shifting the run from `i` up to the next empty
    /// slot one place on (each of those entries moves one further from home,
    /// which keeps the Robin Hood order).
    #[inline]
    fn place(&mut self, mut i: usize, mut slot: u64) {
        loop {
            slot = std::mem::replace(&mut self.slots[i], slot);
            if slot == EMPTY {
                return;
            }
            i = self.next(i);
        }
    }

    /// Records a block: `Ok(false)`, changing nothing, if `addr` is already
    /// live; `Err` if the table could not grow.
    pub(crate) fn insert(&mut self, addr: usize, size: usize) -> Result<bool, TableFull> {
        let packed = pack(addr, size);
        if addr >= ADDR_LIMIT || packed & SIZE_IN_LARGE == SIZE_IN_LARGE {
            self.reserve_large()?;
        }
        if addr >= ADDR_LIMIT {
            return Ok(match self.large.entry(addr) {
                std::collections::hash_map::Entry::Occupied(_) => false,
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(size);
                    self.high += 1;
                    true
                }
            });
        }
        self.grow_for_one()?;
        let Err(at) = self.probe(addr) else {
            return Ok(false);
        };
        if packed & SIZE_IN_LARGE == SIZE_IN_LARGE {
            self.large.insert(addr, size);
        }
        self.place(at, packed);
        self.in_slots += 1;
        Ok(true)
    }

    pub(crate) fn get(&self, addr: usize) -> Option<usize> {
        if addr >= ADDR_LIMIT {
            return self.large.get(&addr).copied();
        }
        self.find(addr).map(|i| self.size_of(self.slots[i]))
    }

    pub(crate) fn remove(&mut self, addr: usize) -> Option<usize> {
        if addr >= ADDR_LIMIT {
            let size = self.large.remove(&addr)?;
            self.high -= 1;
            return Some(size);
        }
        let mut hole = self.find(addr)?;
        let slot = self.slots[hole];
        let size = match slot & SIZE_IN_LARGE {
            SIZE_IN_LARGE => self
                .large
                .remove(&addr)
                .expect("big block recorded in large"),
            size => size as usize,
        };
        // Backward-shift deletion: pull the rest of the run one place back,
        // up to an empty slot or an entry already at its home.
        let mut next = self.next(hole);
        while self.slots[next] != EMPTY && self.distance(self.slots[next], next) > 0 {
            self.slots[hole] = self.slots[next];
            hole = next;
            next = self.next(next);
        }
        self.slots[hole] = EMPTY;
        self.in_slots -= 1;
        Some(size)
    }

    /// Replaces a block's record after a successful move. Never allocates:
    /// one entry goes, one comes, and the pool called `reserve_large` first.
    pub(crate) fn replace(&mut self, old_addr: usize, new_addr: usize, new_size: usize) {
        self.remove(old_addr);
        let inserted = self.insert(new_addr, new_size);
        debug_assert!(
            matches!(inserted, Ok(true)),
            "the pool checked new_addr is not live"
        );
    }

    pub(crate) fn len(&self) -> usize {
        self.in_slots + self.high
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        let in_slots = self
            .slots
            .iter()
            .filter(|&&s| s != EMPTY)
            .map(|&s| (slot_addr(s), self.size_of(s)));
        let high = self
            .large
            .iter()
            .filter(|(&a, _)| a >= ADDR_LIMIT)
            .map(|(&a, &s)| (a, s));
        in_slots.chain(high)
    }

    /// Empties the table, handing every block to `release` once, in address
    /// order (freeing neighbours one after another is kinder to the caches
    /// and to malloc than the table's scattered order).
    pub(crate) fn drain(&mut self, mut release: impl FnMut(usize, usize)) {
        let mut slots = std::mem::take(&mut self.slots);
        let large = std::mem::take(&mut self.large);
        self.in_slots = 0;
        self.high = 0;
        slots.retain(|&s| s != EMPTY);
        // Entries sort by address: it is in the high bits.
        slots.sort_unstable();
        for slot in slots {
            let addr = slot_addr(slot);
            let size = match slot & SIZE_IN_LARGE {
                SIZE_IN_LARGE => large[&addr],
                size => size as usize,
            };
            release(addr, size);
        }
        for (addr, size) in large {
            if addr >= ADDR_LIMIT {
                release(addr, size);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// xorshift: deterministic addresses without a dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    fn insert(table: &mut BlockTable, addr: usize, size: usize) -> bool {
        table.insert(addr, size).unwrap()
    }

    #[test]
    fn matches_a_hash_map_under_random_churn() {
        let mut rng = Rng(0x1234_5678);
        let mut table = BlockTable::default();
        let mut model = HashMap::new();
        let mut live: Vec<usize> = Vec::new();
        for step in 0..200_000 {
            let grow = live.len() < 50 || rng.next() % 3 != 0;
            if grow {
                // Aligned heap-like addresses, a few huge sizes, a few high addresses.
                let addr = match rng.next() % 50 {
                    0 => ADDR_LIMIT + (rng.next() as usize % 1000) * 16,
                    _ => 0x5555_0000_0000 + (rng.next() as usize % 4_000_000) * 16,
                };
                let size = match rng.next() % 20 {
                    0 => (SIZE_IN_LARGE as usize) + (rng.next() as usize % 3),
                    1 => 1 << 30,
                    _ => rng.next() as usize % 600,
                };
                let fresh = !model.contains_key(&addr);
                assert_eq!(insert(&mut table, addr, size), fresh, "step {step}");
                if fresh {
                    model.insert(addr, size);
                    live.push(addr);
                }
            } else {
                let addr = live.swap_remove(rng.next() as usize % live.len());
                assert_eq!(table.remove(addr), model.remove(&addr), "step {step}");
                assert_eq!(table.remove(addr), None);
            }
            if step % 10_000 == 0 {
                assert_eq!(table.len(), model.len());
                for (&addr, &size) in &model {
                    assert_eq!(table.get(addr), Some(size));
                }
            }
        }
        let mut listed: Vec<_> = table.iter().collect();
        listed.sort_unstable();
        let mut expected: Vec<_> = model.iter().map(|(&a, &s)| (a, s)).collect();
        expected.sort_unstable();
        assert_eq!(listed, expected);

        let mut released = Vec::new();
        table.drain(|addr, size| released.push((addr, size)));
        assert!(released[..released.len() - table_high_count(&expected)]
            .windows(2)
            .all(|w| w[0].0 < w[1].0));
        released.sort_unstable();
        assert_eq!(released, expected);
        assert_eq!(table.len(), 0);
        assert_eq!(table.get(expected[0].0), None);
    }

    fn table_high_count(entries: &[(usize, usize)]) -> usize {
        entries.iter().filter(|(a, _)| *a >= ADDR_LIMIT).count()
    }

    #[test]
    fn sizes_at_the_packing_boundary_round_trip() {
        let mut table = BlockTable::default();
        let boundary = SIZE_IN_LARGE as usize;
        for (i, size) in [0, 1, boundary - 1, boundary, boundary + 1, usize::MAX / 2]
            .into_iter()
            .enumerate()
        {
            let addr = 0x1000 + i * 16;
            assert!(insert(&mut table, addr, size));
            assert_eq!(table.get(addr), Some(size));
        }
        assert_eq!(table.len(), 6);
        assert_eq!(table.remove(0x1000 + 3 * 16), Some(boundary));
        assert_eq!(table.get(0x1000 + 3 * 16), None);
        assert_eq!(table.len(), 5);
    }

    #[test]
    fn duplicate_addresses_are_refused() {
        let mut table = BlockTable::default();
        assert!(insert(&mut table, 0x40, 8));
        assert!(!insert(&mut table, 0x40, 16));
        assert_eq!(table.get(0x40), Some(8));
        assert!(insert(&mut table, ADDR_LIMIT, 8));
        assert!(!insert(&mut table, ADDR_LIMIT, 8));
    }

    #[test]
    fn bookkeeping_stays_within_16_bytes_per_block() {
        let mut table = BlockTable::default();
        for n in 1..=300_000usize {
            assert!(insert(&mut table, 0x7000_0000 + n * 48, 64));
            if n >= 1000 && n % 997 == 0 {
                let bytes = table.slots.capacity() * 8;
                assert!(bytes <= 16 * n, "{bytes} bytes for {n} blocks");
            }
        }
    }

    #[test]
    fn an_empty_table_allocates_nothing() {
        let table = BlockTable::default();
        assert_eq!(table.slots.capacity(), 0);
        assert_eq!(table.get(0x10), None);
        assert_eq!(table.len(), 0);
    }
}
