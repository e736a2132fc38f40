//! Pool blocks in `tracemalloc` snapshots.
//!
//! Blocks of the default allocator come from `PyMem_*`, which tracemalloc
//! traces already (domain 0). Blocks it cannot see, those of arena pools and
//! of pools on a `WrapMalloc`/`WrapFree` pair, are reported to it here with
//! `PyTraceMalloc_Track` / `PyTraceMalloc_Untrack` in a domain of the
//! project's own, [`DOMAIN`], through the core pool's block observer. So a
//! snapshot attributes them to the Python line that allocated them (for
//! Cython code, the line that called it), and they leave it when freed or
//! when their pool dies.
//!
//! Whether tracemalloc traces is asked once, when a pool is made: pools made
//! before `tracemalloc.start()` are not reported (and pools made while it
//! traces cost one call per block event until they die, even after
//! `tracemalloc.stop()`). A pool not reported costs its block paths one
//! branch.

use std::ffi::{c_int, c_uint};

use crate::pool::BlockObserver;

/// The tracemalloc domain of the blocks reported here
/// (`cymem_rs.TRACEMALLOC_DOMAIN`): the bytes "cyme".
pub(crate) const DOMAIN: c_uint = 0x6379_6D65;

// CPython's C API outside the limited API (the extension is built for one
// interpreter version, not abi3). pyo3's ffi does not declare them.
extern "C" {
    fn PyTraceMalloc_Track(domain: c_uint, ptr: usize, size: usize) -> c_int;
    fn PyTraceMalloc_Untrack(domain: c_uint, ptr: usize) -> c_int;
}

/// What `PyTraceMalloc_Track` answers when tracemalloc is not tracing.
const NOT_TRACING: c_int = -2;

static OBSERVER: BlockObserver = BlockObserver {
    added: track,
    removed: untrack,
};

fn track(addr: usize, size: usize) {
    // SAFETY: CPython's documentation allows calling it without holding the
    // GIL (it takes the GIL itself while tracing) and it only records the
    // address, never reading the memory; a failure (no memory for the
    // trace) only leaves the block out of snapshots.
    unsafe { PyTraceMalloc_Track(DOMAIN, addr, size) };
}

fn untrack(addr: usize) {
    // SAFETY: callable without the GIL, as `PyTraceMalloc_Track`; an
    // address without a trace (tracing restarted since) is ignored.
    unsafe { PyTraceMalloc_Untrack(DOMAIN, addr) };
}

/// The observer for a new pool: `Some` if its blocks bypass PyMem
/// (`bypasses_pymem`) and tracemalloc is tracing now.
pub(crate) fn observer(bypasses_pymem: bool) -> Option<&'static BlockObserver> {
    (bypasses_pymem && tracing()).then_some(&OBSERVER)
}

/// Whether tracemalloc is tracing: a 0-byte trace of a probe address is
/// refused with `NOT_TRACING` when it is not, and removed at once when it is.
fn tracing() -> bool {
    let probe = &OBSERVER as *const BlockObserver as usize;
    // SAFETY: as in `track`; the probe address is a static's, never a block.
    let answer = unsafe { PyTraceMalloc_Track(DOMAIN, probe, 0) };
    if answer == NOT_TRACING {
        return false;
    }
    untrack(probe);
    true
}
