//! Makes pool blocks visible to the tools people debug memory with.
//!
//! A heap pool's blocks are the allocator's own blocks, which valgrind,
//! AddressSanitizer and tracemalloc see anyway. An arena pool's blocks are
//! slices of big chunks, so this file describes them:
//!
//! - valgrind (memcheck): each arena is a memcheck mempool, anchored at its
//!   [`ArenaWatch`]. Every block is announced with a client request and given
//!   no-access red zones on both sides; a released block (`free`, `realloc`'s
//!   old block, `free_all`, a scope's end) becomes no-access. So an overrun, a
//!   use after free and a block left in a leaked pool are reported with the
//!   stack that allocated the block. Client requests are the magic instruction
//!   sequences of valgrind's documented protocol, written as inline asm
//!   (x86_64 and aarch64; nothing elsewhere): no valgrind headers are needed,
//!   and natively they are a few register rotations that change nothing.
//! - AddressSanitizer, in builds with `--cfg cymem_rs_asan` (see the
//!   Makefile's `check-sanitizers`): the same red zones and released blocks
//!   are poisoned, and a block is unpoisoned when it is handed out.
//!
//! Whether a checker watches is decided once per arena, when it is made:
//! natively (and under valgrind tools other than memcheck) the watch is off,
//! blocks get no red zone (arena blocks do not grow) and each hook costs one
//! branch.
//!
//! The other half, [`BlockObserver`], lets the Python binding report every
//! block to tracemalloc while the core stays free of Python.

use std::alloc::Layout;
use std::ptr::NonNull;

use bumpalo::Bump;

use super::{asan, ARENA_ALIGN};

/// Bytes of red zone before and after an arena block while a checker
/// watches (16 keeps blocks aligned like `malloc`'s).
const RED_ZONE: usize = 16;

/// Told of every block a pool hands out and takes back, with the user's
/// address and size (a debug pool's guards are not included). Installed on
/// a pool with [`super::Pool::set_observer`]; the Python binding uses it for
/// tracemalloc.
#[derive(Debug)]
pub struct BlockObserver {
    /// A block of `size` bytes at `addr` was handed out (by `alloc`, or by
    /// `realloc` as the block's new home).
    pub added: fn(addr: usize, size: usize),
    /// The block at `addr` is gone: freed, moved by `realloc`, or released
    /// with every other block (`free_all`, the pool's end).
    pub removed: fn(addr: usize),
}

/// An arena's link to the memory checker watching the process, if any.
///
/// Lives in the arena's box: its address is the arena's mempool handle for
/// valgrind, so it must not move between [`ArenaWatch::start`] and
/// [`ArenaWatch::stop`].
#[derive(Debug)]
pub(super) struct ArenaWatch {
    /// `RED_ZONE` while a checker watches, 0 otherwise.
    red_zone: usize,
    /// The arena is a mempool of valgrind's.
    valgrind: bool,
}

impl ArenaWatch {
    /// A watch that reports nothing (until [`ArenaWatch::start`]).
    pub(super) const OFF: ArenaWatch = ArenaWatch {
        red_zone: 0,
        valgrind: false,
    };

    /// Looks once whether memcheck or ASan watches, and if memcheck does,
    /// makes this arena a mempool. Call it where the watch will stay.
    pub(super) fn start(&mut self) {
        self.valgrind = valgrind::memcheck();
        if self.valgrind || asan::ENABLED {
            self.red_zone = RED_ZONE;
        }
        if self.valgrind {
            valgrind::create_mempool(self.handle(), RED_ZONE);
        }
    }

    /// Ends the mempool; call it before the arena's chunks are released.
    pub(super) fn stop(&self) {
        if self.valgrind {
            valgrind::destroy_mempool(self.handle());
        }
    }

    /// The mempool handle: this watch's address.
    fn handle(&self) -> usize {
        self as *const ArenaWatch as usize
    }

    /// Cuts a block of `bytes` (uninitialised) from `bump`, between red
    /// zones announced to the checker while one watches.
    #[inline(always)]
    pub(super) fn carve(&self, bump: &Bump<ARENA_ALIGN>, bytes: usize) -> Option<NonNull<u8>> {
        if self.red_zone != 0 {
            return self.carve_watched(bump, bytes);
        }
        let layout = Layout::from_size_align(bytes, ARENA_ALIGN).ok()?;
        bump.try_alloc_layout(layout).ok()
    }

    #[cold]
    #[inline(never)]
    fn carve_watched(&self, bump: &Bump<ARENA_ALIGN>, bytes: usize) -> Option<NonNull<u8>> {
        let span = bytes.checked_add(2 * self.red_zone)?;
        let layout = Layout::from_size_align(span, ARENA_ALIGN).ok()?;
        let base = bump.try_alloc_layout(layout).ok()?;
        Some(self.announce(base, bytes))
    }

    /// Announces a block of `bytes` at `base` plus `red_zone`, between its
    /// red zones; returns where it starts.
    #[inline(never)]
    fn announce(&self, base: NonNull<u8>, bytes: usize) -> NonNull<u8> {
        // SAFETY: the allocation at `base` spans `bytes` plus two red zones,
        // so `red_zone` bytes in is inside it. (Derived from `base`, the
        // block keeps its provenance: it is memory of the chunk.)
        let block = unsafe { base.add(self.red_zone) };
        if self.valgrind {
            // memcheck makes the block addressable (undefined until the pool
            // zeroes it) and the red zones around it no-access.
            valgrind::mempool_alloc(self.handle(), block.as_ptr() as usize, bytes);
        }
        asan::announce(base.as_ptr() as usize, self.red_zone, bytes);
        block
    }

    /// The block of `bytes` at `block` (from `carve`) is released; its
    /// space stays with the arena and must not be touched again.
    #[inline(always)]
    pub(super) fn block_released(&self, block: NonNull<u8>, bytes: usize) {
        if self.red_zone != 0 {
            self.retire(block.as_ptr() as usize, bytes);
        }
    }

    #[cold]
    #[inline(never)]
    fn retire(&self, block: usize, bytes: usize) {
        if self.valgrind {
            valgrind::mempool_free(self.handle(), block);
        }
        asan::retire(block, bytes);
    }

    /// Every block of the arena is released at once (`free_all`, `clear`):
    /// `live`, as `(address, bytes)`, are those not released one by one,
    /// each handed out `offset` bytes into its span (a debug pool's guard).
    pub(super) fn all_released(&self, live: impl Iterator<Item = (usize, usize)>, offset: usize) {
        if self.red_zone == 0 {
            return;
        }
        if self.valgrind {
            // Destroying the mempool makes every block no-access at once.
            self.stop();
            valgrind::create_mempool(self.handle(), self.red_zone);
        } else {
            asan::all_released(live, offset);
        }
    }
}

/// valgrind's client requests (only memcheck's mempool ones are used).
mod valgrind {
    use std::sync::OnceLock;

    const RUNNING_ON_VALGRIND: usize = 0x1001;
    /// memcheck's own request (its tool base, 'M' 'C', plus 4).
    const CHECK_MEM_IS_ADDRESSABLE: usize = 0x4D43_0004;
    const CREATE_MEMPOOL: usize = 0x1303;
    const DESTROY_MEMPOOL: usize = 0x1304;
    const MEMPOOL_ALLOC: usize = 0x1305;
    const MEMPOOL_FREE: usize = 0x1306;

    /// Whether the process runs under valgrind's memcheck. Other tools
    /// (callgrind, massif, ...) check no memory: arenas stay native for them.
    pub(super) fn memcheck() -> bool {
        if request(0, [RUNNING_ON_VALGRIND, 0, 0, 0, 0, 0]) == 0 {
            return false;
        }
        // Only memcheck answers its own requests (with 0 here, the probe
        // being addressable); other tools give back the default. Asked once
        // per process: the tool does not change, and DHAT warns of requests
        // it does not know.
        static MEMCHECK: OnceLock<bool> = OnceLock::new();
        *MEMCHECK.get_or_init(|| {
            let probe = 0u8;
            let addr = &probe as *const u8 as usize;
            request(usize::MAX, [CHECK_MEM_IS_ADDRESSABLE, addr, 1, 0, 0, 0]) != usize::MAX
        })
    }

    /// Registers the pool `handle`; its blocks get `red_zone` bytes of
    /// no-access red zone on each side, and start undefined.
    pub(super) fn create_mempool(handle: usize, red_zone: usize) {
        request(0, [CREATE_MEMPOOL, handle, red_zone, 0, 0, 0]);
    }

    pub(super) fn destroy_mempool(handle: usize) {
        request(0, [DESTROY_MEMPOOL, handle, 0, 0, 0, 0]);
    }

    pub(super) fn mempool_alloc(handle: usize, addr: usize, bytes: usize) {
        request(0, [MEMPOOL_ALLOC, handle, addr, bytes, 0, 0]);
    }

    pub(super) fn mempool_free(handle: usize, addr: usize) {
        request(0, [MEMPOOL_FREE, handle, addr, 0, 0, 0]);
    }

    /// Issues a client request (a code and five arguments): valgrind's
    /// answer, or `default` when not running under valgrind (and on targets
    /// other than x86_64 and aarch64, which valgrind is not supported on
    /// here).
    #[inline(always)]
    fn request(default: usize, args: [usize; 6]) -> usize {
        let mut result = default;
        // SAFETY: natively this sequence changes nothing: the four rotations
        // of rdi add up to 128 bits (rdi comes back as it was, declared
        // clobbered anyway) and `xchg rbx, rbx` swaps rbx with itself.
        // Under valgrind the core recognises it, reads the six words at rax
        // (`args`, alive for the asm) and writes its answer to rdx. No stack
        // is used.
        #[cfg(target_arch = "x86_64")]
        unsafe {
            std::arch::asm!(
                "rol rdi, 3",
                "rol rdi, 13",
                "rol rdi, 61",
                "rol rdi, 51",
                "xchg rbx, rbx",
                in("rax") args.as_ptr(),
                inout("rdx") result,
                out("rdi") _,
                options(nostack),
            );
        }
        // SAFETY: as on x86_64: natively the rotations of x12 add up to 128
        // bits (x12 comes back as it was, declared clobbered anyway) and
        // `orr x10, x10, x10` leaves x10 as it is. Under valgrind the core
        // reads the six words at x4 (`args`, alive for the asm) and writes
        // its answer to x3. No stack is used.
        #[cfg(target_arch = "aarch64")]
        unsafe {
            std::arch::asm!(
                "ror x12, x12, #3",
                "ror x12, x12, #13",
                "ror x12, x12, #51",
                "ror x12, x12, #61",
                "orr x10, x10, x10",
                in("x4") args.as_ptr(),
                inout("x3") result,
                out("x12") _,
                options(nostack),
            );
        }
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        let _ = args;
        result
    }
}
