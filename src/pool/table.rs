//! The pool's record of its live blocks: address -> size, O(1) either way.
//!
//! Addresses are only ever used as keys here; a pointer the pool did not hand
//! out is looked up, never dereferenced.
//!
//! Layout, chosen for bookkeeping of at most 16 bytes per live block:
//! - `addrs`: one plain `usize` per slot. Block addresses are stored as they
//!   are, so leak checkers (valgrind, LeakSanitizer) scanning a live pool see
//!   its blocks as reachable.
//! - `sizes`: a parallel `u16` per slot; blocks of 64 KiB or more keep their
//!   size in a small side map instead (32 more bytes are nothing for them).
//! - Open addressing with Robin Hood linear probing (entries ordered by
//!   distance from their home slot, so searches stop early) and backward-shift
//!   deletion (no tombstones).
//! - The capacity is not a power of two: it grows by 1.25x and a slot is
//!   picked by multiply-high range reduction, so the load stays between 0.64
//!   and 0.8, i.e. 12.5 to 15.6 bytes per block.

use std::collections::HashMap;

use rustc_hash::FxBuildHasher;

use crate::fallible::try_box;

/// In `sizes`: "the size is in `large`".
const SIZE_IN_LARGE: u16 = u16::MAX;
/// An empty slot. A block's address is never 0.
const EMPTY: usize = 0;
const MIN_CAPACITY: usize = 16;

/// Live blocks of one pool, keyed by address.
///
/// Only `hot` is kept inline: an empty pool's table is 24 bytes, a pool
/// with one block at a time (or alloc/free pairs) never allocates the
/// slots, and the pool's struct stays small (every Python `Pool` holds one).
#[derive(Debug, Default)]
pub(crate) struct BlockTable {
    /// A block kept outside the slots (`addr` is `EMPTY` if none).
    hot: Hot,
    /// Boxed on the first block the slots take.
    slots: Option<Box<Slots>>,
}

/// The open-addressing slots of a [`BlockTable`].
#[derive(Debug, Default)]
struct Slots {
    /// `addrs.len()` is the capacity; `EMPTY` or a block's address.
    addrs: Vec<usize>,
    /// The size of the block in the same slot, or `SIZE_IN_LARGE`.
    sizes: Vec<u16>,
    /// Live entries in the slots (`hot` not counted).
    len: usize,
    /// The block last put in the slots by `insert`.
    last_in_slots: usize,
    /// That block was freed before the next insert: alloc/free pairs.
    pairs_seen: bool,
    /// Sizes of blocks whose slot says `SIZE_IN_LARGE`.
    /// (Boxed on first use: most pools never hold a block of 64 KiB.)
    #[allow(clippy::box_collection)]
    large: Option<Box<HashMap<usize, usize, FxBuildHasher>>>,
}

/// One block kept beside the slots; see [`BlockTable::insert`].
#[derive(Debug, Default, Clone, Copy)]
struct Hot {
    addr: usize,
    size: usize,
}

/// Progress of `rehash`'s left-to-right fill.
#[derive(Default)]
struct InOrder {
    /// The first free slot after the entries placed so far.
    next: usize,
    /// The largest home slot placed so far.
    last_home: usize,
    /// Placing reached the end of the table; the rest probe as usual.
    spilled: bool,
    /// Entries that took the general path (probing), by cause.
    probed: Probed,
}

/// Entries `rehash` placed by probing rather than left to right.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Probed {
    /// Placing reached the end of the new table: the tail wraps around.
    after_spill: usize,
    /// Equal old homes hid a different order of new homes.
    out_of_order: usize,
}

#[cfg(test)]
impl Probed {
    fn total(self) -> usize {
        self.after_spill + self.out_of_order
    }
}

/// The table could not grow (the process is out of memory).
#[derive(Debug)]
pub(crate) struct TableFull;

/// The slot where probing for `addr` starts, in `0..capacity`.
#[inline]
fn home(addr: usize, capacity: usize) -> usize {
    // Fibonacci hashing spreads nearby addresses over the high bits; the
    // multiply-high maps them onto any capacity without a division.
    let hash = (addr as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    ((u128::from(hash) * capacity as u128) >> 64) as usize
}

impl Slots {
    #[inline]
    fn next(&self, i: usize) -> usize {
        if i + 1 == self.addrs.len() {
            0
        } else {
            i + 1
        }
    }

    /// How far the entry in slot `i` sits from its home slot.
    #[inline]
    fn distance(&self, addr: usize, i: usize) -> usize {
        let h = home(addr, self.addrs.len());
        if i >= h {
            i - h
        } else {
            i + self.addrs.len() - h
        }
    }

    /// Where `addr` is, or where it would go: `Ok(slot)` if present,
    /// `Err(slot)` with the first slot whose entry sits closer to its home
    /// than `addr` would (or an empty one). The Robin Hood order guarantees
    /// `addr` is not further on. Needs a non-empty table.
    #[inline]
    fn probe(&self, addr: usize) -> Result<usize, usize> {
        let mut i = home(addr, self.addrs.len());
        let mut dist = 0;
        loop {
            let here = self.addrs[i];
            if here == EMPTY {
                return Err(i);
            }
            if here == addr {
                return Ok(i);
            }
            if self.distance(here, i) < dist {
                return Err(i);
            }
            i = self.next(i);
            dist += 1;
        }
    }

    /// The slot holding `addr`, if any.
    #[inline]
    fn find(&self, addr: usize) -> Option<usize> {
        if self.addrs.is_empty() || addr == EMPTY {
            return None;
        }
        self.probe(addr).ok()
    }

    /// The size of the block in slot `i`.
    #[inline]
    fn size_at(&self, i: usize) -> usize {
        match self.sizes[i] {
            SIZE_IN_LARGE => {
                self.large.as_ref().expect("big block recorded in large")[&self.addrs[i]]
            }
            size => usize::from(size),
        }
    }

    /// Makes sure a big block's size can be recorded without allocating, so
    /// a later `replace` cannot fail.
    pub(crate) fn reserve_large(&mut self) -> Result<(), TableFull> {
        let large = match &mut self.large {
            Some(large) => large,
            None => self
                .large
                .insert(try_box(HashMap::default()).map_err(|_| TableFull)?),
        };
        large.try_reserve(1).map_err(|_| TableFull)
    }

    /// Keeps the load at or below 0.8 after one more entry.
    fn grow_for_one(&mut self) -> Result<(), TableFull> {
        if (self.len + 1) * 5 > self.addrs.len() * 4 {
            let capacity = (self.addrs.len() + self.addrs.len() / 4).max(MIN_CAPACITY);
            self.rehash(capacity)?;
        }
        Ok(())
    }

    /// Moves the entries into `capacity` slots; how many of them needed a
    /// probe (few: see below).
    fn rehash(&mut self, capacity: usize) -> Result<Probed, TableFull> {
        let mut addrs = Vec::new();
        let mut sizes = Vec::new();
        addrs.try_reserve_exact(capacity).map_err(|_| TableFull)?;
        sizes.try_reserve_exact(capacity).map_err(|_| TableFull)?;
        addrs.resize(capacity, EMPTY);
        sizes.resize(capacity, 0);
        let old_addrs = std::mem::replace(&mut self.addrs, addrs);
        let old_sizes = std::mem::replace(&mut self.sizes, sizes);
        let old_capacity = old_addrs.len();
        // Robin Hood keeps the entries sorted by home slot, cyclically, and
        // the home is monotone in the hash for any capacity; so the old
        // table, read from its first non-wrapped entry, lists the entries in
        // hash order, and the new table can be filled left to right with no
        // probing. Entries at the start that wrapped around from the end
        // have the largest hashes: they come last.
        let wrapped = old_addrs
            .iter()
            .enumerate()
            .take_while(|&(i, &a)| a != EMPTY && home(a, old_capacity) > i)
            .count();
        let mut filler = InOrder::default();
        for i in (wrapped..old_capacity).chain(0..wrapped) {
            let addr = old_addrs[i];
            if addr != EMPTY {
                self.place_in_order(&mut filler, addr, old_sizes[i]);
            }
        }
        #[cfg(debug_assertions)]
        self.check_order();
        Ok(filler.probed)
    }

    /// Adds an entry during `rehash`, where entries come in hash order.
    fn place_in_order(&mut self, filler: &mut InOrder, addr: usize, size: u16) {
        let capacity = self.addrs.len();
        let h = home(addr, capacity);
        let at = h.max(filler.next);
        if filler.spilled || at >= capacity {
            // The run reached the end of the table: the few entries left
            // wrap around, and take the general path.
            filler.spilled = true;
            filler.probed.after_spill += 1;
            let at = self.probe(addr).unwrap_err();
            self.place(at, addr, size);
        } else if h < filler.last_home {
            // Equal old homes can hide a different order of new homes (rare):
            // the general path on the valid table built so far. Its shift may
            // push the last run one slot further.
            filler.probed.out_of_order += 1;
            let at = self.probe(addr).unwrap_err();
            self.place(at, addr, size);
            if self.addrs[filler.next] != EMPTY {
                filler.next += 1;
            }
        } else {
            self.addrs[at] = addr;
            self.sizes[at] = size;
            filler.next = at + 1;
            filler.last_home = h;
        }
    }

    /// Puts an entry at `i`, shifting the run from `i` up to the next empty
    /// slot one place on (each of those entries moves one further from home,
    /// which keeps the Robin Hood order).
    #[inline]
    fn place(&mut self, mut i: usize, mut addr: usize, mut size: u16) {
        loop {
            addr = std::mem::replace(&mut self.addrs[i], addr);
            size = std::mem::replace(&mut self.sizes[i], size);
            if addr == EMPTY {
                return;
            }
            i = self.next(i);
        }
    }

    /// Adds a block to the slots: `Ok(false)` if it is there already.
    fn insert_slot(&mut self, addr: usize, size: usize) -> Result<bool, TableFull> {
        let small = u16::try_from(size).ok().filter(|&s| s != SIZE_IN_LARGE);
        if small.is_none() {
            self.reserve_large()?;
        }
        self.grow_for_one()?;
        let Err(at) = self.probe(addr) else {
            return Ok(false);
        };
        if small.is_none() {
            // `reserve_large` above made the map.
            if let Some(large) = self.large.as_mut() {
                large.insert(addr, size);
            }
        }
        self.place(at, addr, small.unwrap_or(SIZE_IN_LARGE));
        self.len += 1;
        Ok(true)
    }

    fn remove_slot(&mut self, addr: usize) -> Option<usize> {
        let mut hole = self.find(addr)?;
        let size = match self.sizes[hole] {
            SIZE_IN_LARGE => self
                .large
                .as_mut()
                .and_then(|large| large.remove(&addr))
                .expect("big block recorded in large"),
            size => usize::from(size),
        };
        // Backward-shift deletion: pull the rest of the run one place back,
        // up to an empty slot or an entry already at its home.
        let mut next = self.next(hole);
        while self.addrs[next] != EMPTY && self.distance(self.addrs[next], next) > 0 {
            self.addrs[hole] = self.addrs[next];
            self.sizes[hole] = self.sizes[next];
            hole = next;
            next = self.next(next);
        }
        self.addrs[hole] = EMPTY;
        self.len -= 1;
        Some(size)
    }
}

/// The slots, made on first use; `TableFull` if there is no memory for them.
#[inline]
fn slots_of(slots: &mut Option<Box<Slots>>) -> Result<&mut Slots, TableFull> {
    match slots {
        Some(slots) => Ok(slots),
        None => Ok(slots.insert(try_box(Slots::default()).map_err(|_| TableFull)?)),
    }
}

impl BlockTable {
    /// Records a block: `Ok(false)`, changing nothing, if `addr` is already
    /// live; `Err` (changing nothing) if the table could not grow.
    ///
    /// A block goes to `hot` when that is free, else to the slots. A block
    /// freed before the next alloc (a scratch buffer, the alloc/free pair)
    /// then never touches the slots, and a burst of allocs costs one probe
    /// each, as without `hot` (always moving the newest block into `hot`
    /// would cost a second probe per alloc: measured +70 instructions).
    /// When the block just put in the slots is freed first, the next block
    /// takes `hot` from its long-lived holder, so alloc/free pairs on a pool
    /// with older blocks reach the fast path after one pair.
    #[inline(always)]
    pub(crate) fn insert(&mut self, addr: usize, size: usize) -> Result<bool, TableFull> {
        debug_assert_ne!(addr, EMPTY, "blocks are never at address 0");
        if addr == self.hot.addr {
            return Ok(false);
        }
        if self.hot.addr != EMPTY {
            let slots = slots_of(&mut self.slots)?;
            if !slots.pairs_seen {
                let added = slots.insert_slot(addr, size)?;
                if added {
                    slots.last_in_slots = addr;
                }
                return Ok(added);
            }
            let added = slots.insert_slot(self.hot.addr, self.hot.size)?;
            debug_assert!(added, "hot and slots never hold the same block");
            slots.pairs_seen = false;
            self.hot = Hot::default();
        }
        if self.find(addr).is_some() {
            return Ok(false);
        }
        self.hot = Hot { addr, size };
        Ok(true)
    }

    /// The slot holding `addr`, if any.
    #[inline]
    fn find(&self, addr: usize) -> Option<usize> {
        self.slots.as_ref()?.find(addr)
    }

    pub(crate) fn get(&self, addr: usize) -> Option<usize> {
        if addr == self.hot.addr && addr != EMPTY {
            return Some(self.hot.size);
        }
        let slots = self.slots.as_ref()?;
        slots.find(addr).map(|i| slots.size_at(i))
    }

    pub(crate) fn remove(&mut self, addr: usize) -> Option<usize> {
        if addr == self.hot.addr && addr != EMPTY {
            return Some(std::mem::take(&mut self.hot).size);
        }
        let slots = self.slots.as_deref_mut()?;
        let size = slots.remove_slot(addr)?;
        if addr == slots.last_in_slots {
            slots.pairs_seen = true;
        }
        Some(size)
    }

    /// Replaces a block's record after a successful move. Never allocates:
    /// one entry goes, one comes in the same place (hot or the slots, whose
    /// count does not change), and the pool called `reserve_large` first.
    pub(crate) fn replace(&mut self, old_addr: usize, new_addr: usize, new_size: usize) {
        if old_addr == self.hot.addr {
            self.hot = Hot {
                addr: new_addr,
                size: new_size,
            };
            return;
        }
        let slots = self
            .slots
            .as_deref_mut()
            .expect("a block not in hot is in the slots");
        slots.remove_slot(old_addr);
        let inserted = slots.insert_slot(new_addr, new_size);
        debug_assert!(
            matches!(inserted, Ok(true)),
            "the pool checked new_addr is not live"
        );
    }

    /// Makes sure a big block's size can be recorded without allocating, so
    /// a later `replace` cannot fail.
    pub(crate) fn reserve_large(&mut self) -> Result<(), TableFull> {
        slots_of(&mut self.slots)?.reserve_large()
    }

    pub(crate) fn len(&self) -> usize {
        self.slots.as_ref().map_or(0, |slots| slots.len) + usize::from(self.hot.addr != EMPTY)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        let hot = Some((self.hot.addr, self.hot.size)).filter(|&(a, _)| a != EMPTY);
        self.slots
            .iter()
            .flat_map(|slots| {
                (0..slots.addrs.len())
                    .filter(|&i| slots.addrs[i] != EMPTY)
                    .map(|i| (slots.addrs[i], slots.size_at(i)))
            })
            .chain(hot)
    }

    /// Empties the table, handing every block's address to `release` once, in address
    /// order (freeing neighbours one after another is kinder to the caches
    /// and to malloc than the table's scattered order; measured: removing the
    /// sort saves instructions but no time on 1M blocks).
    pub(crate) fn drain(&mut self, mut release: impl FnMut(usize)) {
        let hot = std::mem::take(&mut self.hot).addr;
        let Some(slots) = self.slots.take() else {
            if hot != EMPTY {
                release(hot);
            }
            return;
        };
        let mut addrs = slots.addrs;
        addrs.retain(|&a| a != EMPTY);
        if hot != EMPTY {
            // Never reallocates: the slots are at most 80% full (and, if
            // they never grew, this is a first allocation that may fail).
            if addrs.try_reserve(1).is_ok() {
                addrs.push(hot);
            } else {
                release(hot);
            }
        }
        addrs.sort_unstable();
        addrs.into_iter().for_each(release);
    }
}

#[cfg(debug_assertions)]
impl Slots {
    /// The Robin Hood order: no gap before an entry off its home, and
    /// distances never drop by more than one from slot to slot.
    fn check_order(&self) {
        let capacity = self.addrs.len();
        for i in 0..capacity {
            let addr = self.addrs[i];
            let d = if addr == EMPTY {
                0
            } else {
                self.distance(addr, i)
            };
            if d > 0 {
                let prev = if i == 0 { capacity - 1 } else { i - 1 };
                let before = self.addrs[prev];
                assert!(
                    before != EMPTY && self.distance(before, prev) + 1 >= d,
                    "Robin Hood order broken at slot {i}"
                );
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

    fn slots(table: &BlockTable) -> &Slots {
        table.slots.as_deref().expect("the slots were made")
    }

    /// `BlockTable::get` on the slots alone.
    fn lookup(slots: &Slots, addr: usize) -> Option<usize> {
        slots.find(addr).map(|i| slots.size_at(i))
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
                // Aligned heap-like addresses, a few odd and very high ones.
                let addr = match rng.next() % 50 {
                    0 => usize::MAX - (rng.next() as usize % 1000) * 16,
                    1 => 1 + (rng.next() as usize % 4_000_000) * 3,
                    _ => 0x5555_0000_0000 + (rng.next() as usize % 4_000_000) * 16,
                };
                let size = match rng.next() % 20 {
                    0 => usize::from(SIZE_IN_LARGE) + (rng.next() as usize % 3) - 1,
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
        table.drain(|addr| released.push(addr));
        assert!(released.windows(2).all(|w| w[0] < w[1]), "address order");
        let expected_addrs: Vec<_> = expected.iter().map(|&(a, _)| a).collect();
        assert_eq!(released, expected_addrs);
        assert_eq!(table.len(), 0);
        assert_eq!(table.get(expected[0].0), None);
    }

    #[test]
    fn sizes_at_the_packing_boundary_round_trip() {
        let mut table = BlockTable::default();
        let boundary = usize::from(SIZE_IN_LARGE);
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
        assert_eq!(table.get(0), None);
        // Also when `hot` is free and the block sits in the slots.
        assert!(insert(&mut table, 0x80, 8));
        assert_eq!(table.remove(0x40), Some(8));
        assert!(!insert(&mut table, 0x80, 32));
        assert_eq!((table.get(0x80), table.len()), (Some(8), 1));
    }

    /// After `reserve_large`, replacing a block in the slots by a big one
    /// allocates nothing (the pool reserves before it moves a block, and
    /// recording the move must not fail).
    #[test]
    fn a_replace_after_reserve_large_allocates_nothing() {
        use crate::fallible::failing::with_failures;
        let mut table = BlockTable::default();
        assert!(insert(&mut table, 0x40, 8));
        assert!(insert(&mut table, 0x80, 8));
        table.reserve_large().unwrap();
        let ((), made) = with_failures(1, u64::MAX, || table.replace(0x80, 0xc0, 70_000));
        assert_eq!(made, 0);
        assert_eq!((table.get(0xc0), table.get(0x80)), (Some(70_000), None));
    }

    #[test]
    fn bookkeeping_stays_within_16_bytes_per_block() {
        let mut table = BlockTable::default();
        for n in 1..=300_000usize {
            assert!(insert(&mut table, 0x7000_0000 + n * 48, 64));
            if n >= 1000 && n % 997 == 0 {
                let slots = slots(&table);
                let bytes = std::mem::size_of::<Slots>()
                    + slots.addrs.capacity() * 8
                    + slots.sizes.capacity() * 2;
                assert!(bytes <= 16 * n, "{bytes} bytes for {n} blocks");
            }
        }
    }

    /// The slots fill to exactly 80% before growing: the load bounds of the
    /// bookkeeping (12.5 to 15.6 bytes per block) are met at both ends.
    #[test]
    fn the_slots_fill_to_exactly_four_fifths_before_growing() {
        let mut table = Slots::default();
        let mut next = 0x7000_0000usize;
        let mut fill = |table: &mut Slots| {
            next += 48;
            assert!(table.insert_slot(next, 64).unwrap());
        };
        // 16 slots hold 12 (75%); the 13th entry grows them to 20.
        while table.len < 13 {
            fill(&mut table);
        }
        assert_eq!(table.addrs.len(), 20);
        // 20 slots hold 16 (exactly 80%), and the 17th grows them to 25.
        while table.len < 16 {
            fill(&mut table);
        }
        assert_eq!(table.addrs.len(), 20, "80% is not yet too full");
        fill(&mut table);
        assert_eq!(table.addrs.len(), 25);
    }

    /// Growing moves the entries in hash order with no probing but for the
    /// few that wrap around the end and ties of old homes: growth stays
    /// linear.
    #[test]
    fn growth_places_entries_in_order_without_probing() {
        let mut rng = Rng(0x9e37_79b9);
        let mut table = Slots::default();
        let mut addrs = Vec::new();
        while addrs.len() < 5000 {
            let addr = (rng.next() as usize & 0xffff_ffff_fff0) | 0x10;
            if table.insert_slot(addr, 64).unwrap() {
                addrs.push(addr);
            }
        }
        for capacity in [
            table.addrs.len() + table.addrs.len() / 4,
            3 * table.addrs.len(),
        ] {
            let probed = table.rehash(capacity).unwrap();
            // Measured: 129 and 133, all ties of old homes (which do occur).
            assert!(
                probed.total() * 30 <= addrs.len(),
                "{probed:?} of {} entries probed",
                addrs.len()
            );
            assert!(probed.out_of_order > 0, "{probed:?}");
            assert!(addrs.iter().all(|&a| lookup(&table, a) == Some(64)));
        }
    }

    /// An address whose home in a table of `capacity` slots is `slot`.
    fn homed_at(slot: usize, capacity: usize, after: usize) -> usize {
        (after / 16 + 1..)
            .map(|n| n * 16)
            .find(|&a| home(a, capacity) == slot)
            .unwrap()
    }

    /// A table whose entries all sit at distinct homes, none wrapped, grows
    /// with no probing at all: the entry in slot 0 (at home) is read first.
    #[test]
    fn growth_without_a_wrapped_tail_probes_nothing() {
        let mut table = Slots::default();
        table.rehash(MIN_CAPACITY).unwrap();
        let addrs: Vec<usize> = [0, 3, 7, 12, 15]
            .iter()
            .map(|&slot| homed_at(slot, MIN_CAPACITY, 0))
            .collect();
        for &addr in &addrs {
            assert!(table.insert_slot(addr, 8).unwrap());
        }
        assert_eq!(table.addrs[0], addrs[0], "slot 0 holds its own entry");
        assert_eq!(table.rehash(MIN_CAPACITY * 2).unwrap(), Probed::default());
        assert!(addrs.iter().all(|&a| lookup(&table, a) == Some(8)));
    }

    /// Entries that wrapped from the last slot to the first are read last,
    /// after every entry of smaller hash: growing probes none of the rest.
    #[test]
    fn growth_reads_the_wrapped_tail_last() {
        let mut table = Slots::default();
        table.rehash(MIN_CAPACITY).unwrap();
        let last = MIN_CAPACITY - 1;
        let mut addrs: Vec<usize> = [1, 4, 9]
            .iter()
            .map(|&slot| homed_at(slot, MIN_CAPACITY, 0))
            .collect();
        // Three entries homed at the last slot, now and after growing: two
        // of them wrap to 0 and 1 (pushing the entry homed at 1 to 2).
        let grown = MIN_CAPACITY * 4;
        let mut after = 0;
        for _ in 0..3 {
            after = homed_at(grown - 1, grown, after);
            assert_eq!(home(after, MIN_CAPACITY), last);
            addrs.push(after);
        }
        for &addr in &addrs {
            assert!(table.insert_slot(addr, 8).unwrap());
        }
        assert!(home(table.addrs[0], MIN_CAPACITY) == last, "slot 0 wrapped");
        // Only the two that wrap again probe.
        let probed = table.rehash(grown).unwrap();
        assert_eq!(
            probed,
            Probed {
                after_spill: 2,
                out_of_order: 0
            }
        );
        assert!(addrs.iter().all(|&a| lookup(&table, a) == Some(8)));
    }

    /// The debug check of the Robin Hood order finds an entry off its home
    /// with a gap before it.
    #[test]
    #[should_panic(expected = "Robin Hood order broken at slot")]
    fn the_order_check_finds_a_gap_before_an_entry_off_home() {
        let mut table = Slots::default();
        table.rehash(MIN_CAPACITY).unwrap();
        let addr = (1..)
            .map(|n: usize| n * 16)
            .find(|&a| home(a, MIN_CAPACITY) == 5)
            .unwrap();
        table.addrs[6] = addr;
        table.len = 1;
        table.check_order();
    }

    #[test]
    fn addresses_are_stored_whole_for_leak_checkers() {
        let mut table = BlockTable::default();
        let addr = 0x7f12_3456_7890;
        assert!(insert(&mut table, addr, 24));
        // The first block waits beside the slots, whole too.
        assert_eq!(table.hot.addr, addr);
        assert!(insert(&mut table, addr + 32, 24));
        assert!(slots(&table).addrs.contains(&(addr + 32)));
        assert_eq!(table.remove(addr), Some(24));
        assert!(insert(&mut table, addr + 64, 24));
        assert_eq!(
            table.hot.addr,
            addr + 64,
            "a free hot slot takes the next block"
        );
        // Pairs behind a long-lived hot block: after one pair, hot moves on.
        assert!(insert(&mut table, addr + 96, 8));
        assert!(slots(&table).addrs.contains(&(addr + 96)));
        assert_eq!(table.remove(addr + 96), Some(8));
        assert!(insert(&mut table, addr + 128, 8));
        assert_eq!(table.hot.addr, addr + 128);
        assert!(
            slots(&table).addrs.contains(&(addr + 64)),
            "the old hot block, whole"
        );
        assert_eq!(table.len(), 3);
    }

    /// A pool holding one block at a time (alloc/free pairs, a scratch
    /// buffer) never makes the slots.
    #[test]
    fn one_block_at_a_time_needs_no_slots() {
        let mut table = BlockTable::default();
        for n in 1..100 {
            assert!(insert(&mut table, n * 64, n));
            assert_eq!(table.get(n * 64), Some(n));
            assert_eq!(table.remove(n * 64), Some(n));
        }
        assert!(table.slots.is_none());
        assert!(insert(&mut table, 0x40, 1));
        assert!(insert(&mut table, 0x80, 2));
        assert_eq!(slots(&table).len, 1);
    }

    /// Draining hands each block over once, in address order, whether the
    /// slots were never made, are empty (made for a big block's size only),
    /// or hold blocks beside `hot`; the table is empty and usable after.
    #[test]
    fn drain_releases_every_block_once_in_order() {
        let drained = |table: &mut BlockTable| {
            let mut out = Vec::new();
            table.drain(|addr| out.push(addr));
            assert_eq!((table.len(), table.iter().count()), (0, 0));
            assert!(table.slots.is_none());
            out
        };
        let mut table = BlockTable::default();
        assert!(drained(&mut table).is_empty());
        assert!(insert(&mut table, 0x500, 8));
        assert_eq!(drained(&mut table), [0x500]);
        assert!(insert(&mut table, 0x500, 8));
        table.reserve_large().unwrap();
        assert_eq!(drained(&mut table), [0x500]);
        for addr in [0x900, 0x300, 0x700, 0x100] {
            assert!(insert(&mut table, addr, 8));
        }
        assert_eq!(drained(&mut table), [0x100, 0x300, 0x700, 0x900]);
        assert!(insert(&mut table, 0x900, 8));
        assert_eq!(table.get(0x900), Some(8));
    }

    #[test]
    fn an_empty_table_allocates_nothing() {
        let table = BlockTable::default();
        assert!(table.slots.is_none());
        assert_eq!(table.get(0x10), None);
        assert_eq!(table.len(), 0);
    }
}
