//! Pins: blocks that must not be freed or moved while something (a live
//! zero-copy view, or C code sharing a block) holds them.

use std::collections::HashMap;
use std::ffi::c_void;

use rustc_hash::FxBuildHasher;

use super::error::PoolError;
use super::Pool;
use crate::fallible::try_box;

/// Pin counts of the blocks that must not be freed or moved (live zero-copy
/// views, or C code sharing a block). Empty for almost every pool, so the
/// `free` / `realloc` check is one predictable branch, and the map is only
/// allocated (and the pool only one pointer bigger) while something is pinned.
// A boxed map on purpose: one word in every pool instead of four.
#[allow(clippy::box_collection)]
#[derive(Debug, Default)]
pub(super) struct Pins(Option<Box<HashMap<usize, usize, FxBuildHasher>>>);

impl Pins {
    /// No pins: what a pool without extras reads.
    pub(super) const NONE: Pins = Pins(None);

    /// `BlockInUse` if `addr` is pinned.
    #[inline]
    pub(super) fn check_unpinned(&self, addr: usize) -> Result<(), PoolError> {
        match &self.0 {
            None => Ok(()),
            Some(map) => Self::check_slow(map, addr),
        }
    }

    #[cold]
    fn check_slow(
        map: &HashMap<usize, usize, FxBuildHasher>,
        addr: usize,
    ) -> Result<(), PoolError> {
        match map.get(&addr) {
            Some(&views) => Err(PoolError::BlockInUse { addr, views }),
            None => Ok(()),
        }
    }

    /// `BlockInUse` for a pinned block that `released` says an operation
    /// would release.
    pub(super) fn check_none(&self, released: impl Fn(usize) -> bool) -> Result<(), PoolError> {
        let pinned = self.0.as_deref().into_iter().flatten();
        match pinned.into_iter().find(|&(&addr, _)| released(addr)) {
            Some((&addr, &views)) => Err(PoolError::BlockInUse { addr, views }),
            None => Ok(()),
        }
    }

    pub(super) fn count(&self, addr: usize) -> usize {
        self.0
            .as_ref()
            .and_then(|map| map.get(&addr).copied())
            .unwrap_or(0)
    }

    pub(super) fn clear(&mut self) {
        self.0 = None;
    }

    /// No block pinned (and no map).
    pub(super) fn is_empty(&self) -> bool {
        self.0.is_none()
    }
}

impl Pool {
    /// Pins a live block: until a matching [`Pool::unpin`], `free` and
    /// `realloc` of it fail with [`PoolError::BlockInUse`] and leave it as it
    /// is. Pins nest (a count per block). `UnknownPointer` if `ptr` is not a
    /// live block of this pool.
    pub fn pin(&mut self, ptr: *const c_void) -> Result<(), PoolError> {
        let addr = ptr as usize;
        // A release in progress would free the block under the new pin.
        self.check_not_releasing()?;
        if self.lookup(addr).is_none() {
            return Err(PoolError::UnknownPointer { addr });
        }
        let out_of_memory = PoolError::OutOfMemory {
            bytes: std::mem::size_of::<(usize, usize)>(),
        };
        let pins = &mut self.extras_mut()?.pins;
        let map = match &mut pins.0 {
            Some(map) => map,
            None => pins
                .0
                .insert(try_box(HashMap::default()).map_err(|_| out_of_memory)?),
        };
        map.try_reserve(1).map_err(|_| out_of_memory)?;
        // A count cannot overflow: each pin stands for a live object or a
        // caller's pending unpin, far fewer than `usize::MAX`.
        *map.entry(addr).or_insert(0) += 1;
        Ok(())
    }

    /// Undoes one [`Pool::pin`]. `UnknownPointer` if `ptr` is not a live
    /// block, `NotPinned` if it has no pins left (never an underflow).
    pub fn unpin(&mut self, ptr: *const c_void) -> Result<(), PoolError> {
        let addr = ptr as usize;
        if self.lookup(addr).is_none() {
            return Err(PoolError::UnknownPointer { addr });
        }
        let Some(pins) = self.extras.as_deref_mut().map(|extras| &mut extras.pins) else {
            return Err(PoolError::NotPinned { addr });
        };
        let Some(map) = pins.0.as_deref_mut() else {
            return Err(PoolError::NotPinned { addr });
        };
        match map.get_mut(&addr) {
            None => Err(PoolError::NotPinned { addr }),
            Some(1) => {
                map.remove(&addr);
                if map.is_empty() {
                    // Back to the unpinned fast path, memory given back.
                    pins.clear();
                    self.shed_extras();
                }
                Ok(())
            }
            Some(count) => {
                *count -= 1;
                Ok(())
            }
        }
    }

    /// How many pins a block holds (0 for an unpinned or unknown pointer).
    pub fn pins(&self, ptr: *const c_void) -> usize {
        self.extras().pins.count(ptr as usize)
    }
}
