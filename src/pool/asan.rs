//! AddressSanitizer's manual poisoning of arena blocks (see `instrument.rs`),
//! in builds with `--cfg cymem_rs_asan`: the runtime's functions exist only
//! there, and elsewhere every function here is a no-op. Tested by
//! `tests/all/asan.rs` under `make check-sanitizers`; cargo-mutants' build
//! has no ASan, so `.cargo/mutants.toml` leaves this file out.

#[cfg(cymem_rs_asan)]
mod runtime {
    use std::ffi::c_void;

    extern "C" {
        fn __asan_poison_memory_region(addr: *const c_void, size: usize);
        fn __asan_unpoison_memory_region(addr: *const c_void, size: usize);
    }

    /// Marks `len` bytes at `addr` (inside an arena chunk) unusable.
    pub(super) fn poison(addr: usize, len: usize) {
        // SAFETY: the runtime only changes its shadow bytes for the range;
        // callers pass ranges inside an arena chunk, which is application
        // memory ASan shadows, and nothing of the program's is written.
        unsafe { __asan_poison_memory_region(addr as *const c_void, len) }
    }

    /// Marks `len` bytes at `addr` (inside an arena chunk) usable again.
    pub(super) fn unpoison(addr: usize, len: usize) {
        // SAFETY: as in `poison`: only the shadow of an arena chunk's range
        // changes.
        unsafe { __asan_unpoison_memory_region(addr as *const c_void, len) }
    }
}

/// Whether ASan watches (arena blocks then get red zones).
pub(super) const ENABLED: bool = cfg!(cymem_rs_asan);

/// A block of `bytes` handed out `red_zone` bytes into its span at `start`:
/// usable, between two unusable red zones.
#[cfg_attr(not(cymem_rs_asan), allow(unused_variables))]
pub(super) fn announce(start: usize, red_zone: usize, bytes: usize) {
    #[cfg(cymem_rs_asan)]
    {
        let block = start + red_zone;
        runtime::poison(start, red_zone);
        runtime::unpoison(block, bytes);
        runtime::poison(block + bytes, red_zone);
    }
}

/// The block of `bytes` at `block` is released: unusable.
#[cfg_attr(not(cymem_rs_asan), allow(unused_variables))]
pub(super) fn retire(block: usize, bytes: usize) {
    #[cfg(cymem_rs_asan)]
    runtime::poison(block, bytes);
}

/// Every block of `live` (`(address, bytes)`, each handed out `offset`
/// bytes into its span) is released at once: unusable.
#[cfg_attr(not(cymem_rs_asan), allow(unused_variables))]
pub(super) fn all_released(live: impl Iterator<Item = (usize, usize)>, offset: usize) {
    #[cfg(cymem_rs_asan)]
    live.for_each(|(block, bytes)| match offset {
        // A 0-byte block is backed by 1 byte.
        0 => runtime::poison(block, bytes.max(1)),
        _ => runtime::poison(block - offset, bytes + 2 * offset),
    });
}
