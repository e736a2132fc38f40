//! The pool's record of its live blocks: address -> size, O(1) either way.
//!
//! Addresses are only ever used as keys here; a pointer the pool did not hand
//! out is looked up, never dereferenced.

use std::collections::HashMap;

use rustc_hash::FxBuildHasher;

/// Live blocks of one pool, keyed by address.
#[derive(Debug, Default)]
pub(crate) struct BlockTable {
    sizes: HashMap<usize, usize, FxBuildHasher>,
}

/// The table could not grow (the process is out of memory).
#[derive(Debug)]
pub(crate) struct TableFull;

impl BlockTable {
    /// Makes room for one more block, so the following `insert` cannot fail.
    pub(crate) fn reserve_one(&mut self) -> Result<(), TableFull> {
        self.sizes.try_reserve(1).map_err(|_| TableFull)
    }

    /// Records a block. Returns `false`, changing nothing, if `addr` is
    /// already live.
    pub(crate) fn insert(&mut self, addr: usize, size: usize) -> bool {
        match self.sizes.entry(addr) {
            std::collections::hash_map::Entry::Occupied(_) => false,
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(size);
                true
            }
        }
    }

    pub(crate) fn get(&self, addr: usize) -> Option<usize> {
        self.sizes.get(&addr).copied()
    }

    pub(crate) fn remove(&mut self, addr: usize) -> Option<usize> {
        self.sizes.remove(&addr)
    }

    /// Replaces a block's record after a successful move. The pool reserved
    /// room before moving, so this never allocates.
    pub(crate) fn replace(&mut self, old_addr: usize, new_addr: usize, new_size: usize) {
        self.sizes.remove(&old_addr);
        self.sizes.insert(new_addr, new_size);
    }

    pub(crate) fn len(&self) -> usize {
        self.sizes.len()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.sizes.iter().map(|(&addr, &size)| (addr, size))
    }

    /// Empties the table, handing every block to `release` once.
    pub(crate) fn drain(&mut self, mut release: impl FnMut(usize, usize)) {
        for (addr, size) in self.sizes.drain() {
            release(addr, size);
        }
    }
}
