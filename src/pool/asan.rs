//! AddressSanitizer's manual poisoning of arena blocks (see `instrument.rs`),
//! in builds with `--cfg cymem_rs_asan`, where the runtime's functions exist.
//! Elsewhere the two calls into the runtime do nothing, except in this
//! crate's unit tests, where they are recorded so the ranges can be checked
//! without ASan (`tests/all/asan.rs` checks the real thing under
//! `make check-sanitizers`).

/// Whether ASan watches (arena blocks then get red zones).
pub(super) const ENABLED: bool = cfg!(cymem_rs_asan);

/// A block of `bytes` handed out `red_zone` bytes into its span at `start`:
/// usable, between two unusable red zones.
pub(super) fn announce(start: usize, red_zone: usize, bytes: usize) {
    let block = start + red_zone;
    poison(start, red_zone);
    unpoison(block, bytes);
    poison(block + bytes, red_zone);
}

/// The block of `bytes` at `block` is released: unusable.
pub(super) fn retire(block: usize, bytes: usize) {
    poison(block, bytes);
}

/// Every block of `live` (`(address, bytes)`, each handed out `offset`
/// bytes into its span) is released at once: unusable.
pub(super) fn all_released(live: impl Iterator<Item = (usize, usize)>, offset: usize) {
    live.for_each(|(block, bytes)| match offset {
        // A 0-byte block is backed by 1 byte.
        0 => poison(block, bytes.max(1)),
        _ => poison(block - offset, bytes + 2 * offset),
    });
}

#[cfg(cymem_rs_asan)]
extern "C" {
    fn __asan_poison_memory_region(addr: *const std::ffi::c_void, size: usize);
    fn __asan_unpoison_memory_region(addr: *const std::ffi::c_void, size: usize);
}

/// Marks `len` bytes at `addr` (inside an arena chunk) unusable.
#[cfg_attr(not(any(cymem_rs_asan, test)), allow(unused_variables))]
fn poison(addr: usize, len: usize) {
    // SAFETY: the runtime only changes its shadow bytes for the range;
    // callers pass ranges inside an arena chunk, which is application
    // memory ASan shadows, and nothing of the program's is written.
    #[cfg(cymem_rs_asan)]
    unsafe {
        __asan_poison_memory_region(addr as *const std::ffi::c_void, len)
    }
    #[cfg(all(test, not(cymem_rs_asan)))]
    tests::record(addr, len, true);
}

/// Marks `len` bytes at `addr` (inside an arena chunk) usable again.
#[cfg_attr(not(any(cymem_rs_asan, test)), allow(unused_variables))]
fn unpoison(addr: usize, len: usize) {
    // SAFETY: as in `poison`: only the shadow of an arena chunk's range
    // changes.
    #[cfg(cymem_rs_asan)]
    unsafe {
        __asan_unpoison_memory_region(addr as *const std::ffi::c_void, len)
    }
    #[cfg(all(test, not(cymem_rs_asan)))]
    tests::record(addr, len, false);
}

#[cfg(all(test, not(cymem_rs_asan)))]
mod tests {
    use std::cell::RefCell;

    thread_local! {
        /// The runtime calls made: (address, length, poisoned).
        static CALLS: RefCell<Vec<(usize, usize, bool)>> = const { RefCell::new(Vec::new()) };
    }

    pub(super) fn record(addr: usize, len: usize, poisoned: bool) {
        CALLS.with(|calls| calls.borrow_mut().push((addr, len, poisoned)));
    }

    fn calls(f: impl FnOnce()) -> Vec<(usize, usize, bool)> {
        CALLS.with(|calls| calls.borrow_mut().clear());
        f();
        CALLS.with(|calls| calls.take())
    }

    #[test]
    fn a_block_is_usable_between_two_unusable_red_zones() {
        let found = calls(|| super::announce(0x1000, 16, 24));
        assert_eq!(
            found,
            [(0x1000, 16, true), (0x1010, 24, false), (0x1028, 16, true)]
        );
    }

    #[test]
    fn released_blocks_become_unusable() {
        assert_eq!(calls(|| super::retire(0x2010, 40)), [(0x2010, 40, true)]);
        // Plain blocks: the block itself, a 0-byte one backed by 1 byte.
        let plain = calls(|| super::all_released([(0x3000, 8), (0x3010, 0)].into_iter(), 0));
        assert_eq!(plain, [(0x3000, 8, true), (0x3010, 1, true)]);
        // Debug blocks, handed out 16 bytes in: the span with its guards.
        let guarded = calls(|| super::all_released([(0x4010, 8)].into_iter(), 16));
        assert_eq!(guarded, [(0x4000, 40, true)]);
    }
}
