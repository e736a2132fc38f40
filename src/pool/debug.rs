//! Debug mode of the pool: guard bytes around every block, poisoned freed
//! memory held in a bounded quarantine, and errors naming the damaged block.
//!
//! A debug pool asks its source for `size + 2 * GUARD` bytes per block and
//! hands out the address `GUARD` bytes in. The bytes before and after the
//! block hold [`GUARD_BYTE`]; a write that lands there (an overrun or an
//! underrun) is found when the block is freed, grown, checked, or released
//! with the pool. A freed block is filled with [`POISON_BYTE`] and kept (not
//! released) in a FIFO quarantine; a write through a dangling pointer changes
//! the poison and is found when the block leaves the quarantine, on
//! [`Pool::check`], or when the pool releases everything. Every block still
//! goes back to the source exactly once, whatever was found.
//!
//! This file is a child module of `pool` (declared there) so it can use the
//! pool's block-index methods (`record`, `forget`, `lookup`, `moved`) and its
//! source without widening their visibility.

use std::collections::VecDeque;
use std::ffi::{c_void, OsStr};
use std::ptr::NonNull;
use std::sync::OnceLock;

use rustc_hash::FxHashMap;

use super::error::{Corruption, PoolError};
use super::{block_bytes, no_room_for, Pool, MAX_BLOCK};
use crate::fallible::try_box;

/// Bytes of guard before and after each block: 16 keeps the block aligned
/// like `malloc`'s (and like arena blocks).
pub const GUARD: usize = 16;
/// The value of every guard byte (as MSVC's debug heap: "no man's land").
pub const GUARD_BYTE: u8 = 0xFD;
/// The value a freed block (guards included) is filled with.
pub const POISON_BYTE: u8 = 0xDD;

/// The environment variable that turns debug mode on for every pool that
/// does not choose (C constructors, Python `Pool(debug=None)`).
pub const DEBUG_ENV_VAR: &str = "CYMEM_RS_DEBUG";

/// Settings of a debug pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DebugOptions {
    /// At most this many freed blocks wait in quarantine (0: none wait; a
    /// freed block is checked and released at once).
    pub quarantine_blocks: usize,
    /// At most this many bytes (blocks plus guards) wait in quarantine.
    pub quarantine_bytes: usize,
}

impl Default for DebugOptions {
    fn default() -> Self {
        DebugOptions {
            quarantine_blocks: 1024,
            quarantine_bytes: 4 << 20,
        }
    }
}

impl DebugOptions {
    /// Default options if `CYMEM_RS_DEBUG` asks for debug mode (`1`, `true`,
    /// `yes`, `on`, any case), read once per process; `None` otherwise. Any
    /// value but those and `0`, `false`, `no`, `off` or empty leaves debug
    /// mode off and writes one warning to stderr.
    pub fn from_env() -> Option<DebugOptions> {
        static ENABLED: OnceLock<bool> = OnceLock::new();
        let enabled = *ENABLED.get_or_init(|| {
            let value = std::env::var_os(DEBUG_ENV_VAR);
            let value = value.as_deref().map_or(&[][..], OsStr::as_encoded_bytes);
            debug_flag(value).unwrap_or_else(|()| {
                warn_unknown_flag(value);
                false
            })
        });
        enabled.then(DebugOptions::default)
    }
}

/// The meaning of a `CYMEM_RS_DEBUG` value (surrounding blanks and case
/// ignored): `Err` for a value that is neither on nor off.
fn debug_flag(value: &[u8]) -> Result<bool, ()> {
    const ON: [&[u8]; 4] = [b"1", b"true", b"yes", b"on"];
    const OFF: [&[u8]; 5] = [b"", b"0", b"false", b"no", b"off"];
    let value = value.trim_ascii();
    let is = |words: &[&[u8]]| words.iter().any(|w| w.eq_ignore_ascii_case(value));
    if is(&ON) {
        Ok(true)
    } else if is(&OFF) {
        Ok(false)
    } else {
        Err(())
    }
}

/// Says on stderr (the environment is read before any Python code could be
/// told) that a `CYMEM_RS_DEBUG` value means nothing, and which ones do.
fn warn_unknown_flag(value: &[u8]) {
    const SHOWN: usize = 60;
    let mut cut = value.len().min(SHOWN);
    let text = loop {
        match std::str::from_utf8(&value[..cut]) {
            Ok(text) => break text,
            Err(err) if err.valid_up_to() > 0 || err.error_len().is_none() => {
                cut = err.valid_up_to()
            }
            Err(_) => break "(not UTF-8)",
        }
    };
    let more = if cut < value.len() { "..." } else { "" };
    eprintln!(
        "cymem_rs: ignoring {DEBUG_ENV_VAR}={text:?}{more}: debug mode stays off \
         (accepted: 1, true, yes, on to turn it on; 0, false, no, off or empty \
         to leave it off; any case)"
    );
}

/// A freed block waiting in quarantine.
#[derive(Debug, Clone, Copy)]
struct Freed {
    /// The address the user had (the source's block starts `GUARD` earlier).
    addr: usize,
    size: usize,
    number: u64,
}

impl Freed {
    fn span(&self) -> usize {
        self.size + 2 * GUARD
    }
}

/// The debug layer's bookkeeping, owned by a debug pool.
#[derive(Debug)]
pub(super) struct DebugState {
    options: DebugOptions,
    /// Allocation numbers handed out so far.
    allocations: u64,
    /// Live block address -> its allocation number (1-based).
    numbers: FxHashMap<usize, u64>,
    quarantine: VecDeque<Freed>,
    quarantine_bytes: usize,
    /// Damage found where it could not be returned (a quarantine eviction
    /// during `realloc`, or `free_all`): the next `check`, `free` or
    /// `free_all_checked` reports it.
    pending: Option<PoolError>,
}

impl DebugState {
    fn new(options: DebugOptions) -> Self {
        DebugState {
            options,
            allocations: 0,
            numbers: FxHashMap::default(),
            quarantine: VecDeque::new(),
            quarantine_bytes: 0,
            pending: None,
        }
    }

    fn keep_first(&mut self, err: Option<PoolError>) {
        if self.pending.is_none() {
            self.pending = err;
        }
    }
}

/// The first byte of `span` bytes at `start` that is not `expected`.
///
/// # Safety
/// `start..start + span` is readable.
unsafe fn first_mismatch(start: usize, span: usize, expected: u8) -> Option<usize> {
    // SAFETY: the `# Safety` section requires the `span` bytes at `start` to
    // be readable; they are initialised (guards and poison are written when
    // the block is made or freed) and only read here.
    let bytes = unsafe { std::slice::from_raw_parts(start as *const u8, span) };
    bytes.iter().position(|&b| b != expected)
}

/// The damage to a live block's guards: which side, and the offset from
/// the block's start of the damaged byte nearest to the block.
///
/// # Safety
/// `addr - GUARD .. addr + size + GUARD` is one readable allocation.
unsafe fn inspect_live(addr: usize, size: usize) -> Option<(Corruption, isize)> {
    // SAFETY: the back guard, `addr + size .. addr + size + GUARD`, is the
    // tail of the readable allocation the `# Safety` section describes.
    if let Some(i) = unsafe { first_mismatch(addr + size, GUARD, GUARD_BYTE) } {
        return Some((Corruption::Overrun, (size + i) as isize));
    }
    // SAFETY: the front guard, `addr - GUARD .. addr`, is the head of that
    // same allocation; it is scanned from the block backwards.
    let front = unsafe { std::slice::from_raw_parts((addr - GUARD) as *const u8, GUARD) };
    let i = front.iter().rev().position(|&b| b != GUARD_BYTE)?;
    Some((Corruption::Underrun, -(i as isize) - 1))
}

/// Writes the guards of a block of `size` bytes at `addr`.
///
/// # Safety
/// `addr - GUARD .. addr + size + GUARD` is one writable allocation.
unsafe fn arm(addr: usize, size: usize) {
    // SAFETY: the front guard, `addr - GUARD .. addr`, is the head of the
    // writable allocation the `# Safety` section describes.
    unsafe { ((addr - GUARD) as *mut u8).write_bytes(GUARD_BYTE, GUARD) };
    // SAFETY: the back guard, `addr + size .. addr + size + GUARD`, is its tail.
    unsafe { ((addr + size) as *mut u8).write_bytes(GUARD_BYTE, GUARD) };
}

/// Where the first byte of a quarantined block changed since it was poisoned.
///
/// # Safety
/// The block's whole span is one readable allocation.
unsafe fn inspect_freed(block: &Freed) -> Option<isize> {
    // SAFETY: the span starts `GUARD` bytes before the user address and is
    // the one readable allocation the `# Safety` section requires.
    let i = unsafe { first_mismatch(block.addr - GUARD, block.span(), POISON_BYTE) }?;
    Some(i as isize - GUARD as isize)
}

fn corrupted(addr: usize, size: usize, number: u64, found: (Corruption, isize)) -> PoolError {
    PoolError::Corrupted {
        addr,
        size,
        alloc_number: number,
        kind: found.0,
        offset: found.1,
    }
}

impl Pool {
    /// A debug pool on the system allocator (see [`Pool::with_debug`]).
    #[track_caller]
    pub fn new_debug() -> Self {
        Pool::new().with_debug(DebugOptions::default())
    }

    /// Turns on debug mode: guard bytes around every block (checked at
    /// `free`, `realloc`, [`Pool::check`] and when the pool releases
    /// everything), poisoned freed blocks kept in a bounded quarantine to
    /// catch writes after free, and allocation numbers that name each block
    /// in [`PoolError::Corrupted`]. Works with every source (heap, custom
    /// allocator, arena). Each block costs `2 * GUARD` more bytes.
    ///
    /// On a debug pool, only changes the options (taking effect at the
    /// next free).
    ///
    /// # Panics
    /// If the pool already holds blocks (they have no guards): call it on a
    /// fresh pool, as in `Pool::arena().with_debug(DebugOptions::default())`.
    pub fn with_debug(mut self, options: DebugOptions) -> Self {
        self.enable_debug(options);
        self
    }

    /// [`Pool::with_debug`] in place (no move of the pool). Out of memory it
    /// aborts, as `Box::new` does: see [`Pool::try_enable_debug`].
    ///
    /// # Panics
    /// As [`Pool::with_debug`].
    pub fn enable_debug(&mut self, options: DebugOptions) {
        if let Err(err) = self.try_enable_debug(options) {
            let layout = std::alloc::Layout::new::<DebugState>();
            debug_assert!(matches!(err, PoolError::OutOfMemory { .. }));
            std::alloc::handle_alloc_error(layout);
        }
    }

    /// [`Pool::enable_debug`], or `OutOfMemory` (the pool unchanged).
    ///
    /// # Panics
    /// As [`Pool::with_debug`].
    pub fn try_enable_debug(&mut self, options: DebugOptions) -> Result<(), PoolError> {
        assert!(
            self.block_count() == 0,
            "Pool::with_debug needs a pool without blocks"
        );
        let debug = &mut self.extras_mut()?.debug;
        match debug.as_deref_mut() {
            // Already a debug pool: its quarantine and numbering go on.
            Some(state) => state.options = options,
            None => {
                let state = try_box(DebugState::new(options)).map_err(no_room_for::<DebugState>)?;
                *debug = Some(state);
            }
        }
        Ok(())
    }

    /// Whether this pool is in debug mode.
    #[inline(always)]
    pub fn is_debug(&self) -> bool {
        // One test of the extras pointer when there are none (block paths).
        self.extras
            .as_deref()
            .is_some_and(|extras| extras.debug.is_some())
    }

    /// The options of a debug pool.
    pub fn debug_options(&self) -> Option<DebugOptions> {
        self.extras().debug.as_ref().map(|state| state.options)
    }

    /// A live block's allocation number (the n-th successful `alloc` of this
    /// pool, from 1; `realloc` keeps it). `None` for other pointers and for
    /// pools not in debug mode.
    pub fn allocation_number(&self, ptr: *const c_void) -> Option<u64> {
        self.extras()
            .debug
            .as_ref()?
            .numbers
            .get(&(ptr as usize))
            .copied()
    }

    /// Checks every live block's guards and every quarantined block's
    /// poison, reporting the first damage found (or damage found earlier
    /// where it could not be reported). A damaged live block gets fresh
    /// guards and stays live; a damaged quarantined block is released. So
    /// each damage is reported once. Always `Ok` for a pool not in debug mode.
    pub fn check(&mut self) -> Result<(), PoolError> {
        if !self.is_debug() {
            return Ok(());
        }
        if let Some(err) = self.state().pending.take() {
            return Err(err);
        }
        let damaged = self.blocks().find_map(|(addr, size)| {
            // SAFETY: every block in the index of a debug pool was made by
            // `debug_alloc`/`debug_realloc`, which allocate its size plus both
            // guards, and stays allocated while it is in the index.
            unsafe { inspect_live(addr, size) }.map(|found| (addr, size, found))
        });
        if let Some((addr, size, found)) = damaged {
            let number = self.allocation_number(addr as *const c_void).unwrap_or(0);
            // SAFETY: `addr` is still in the index, so its allocation with
            // both guards is live and writable; re-armed so this damage is
            // reported once.
            unsafe { arm(addr, size) };
            return Err(corrupted(addr, size, number, found));
        }
        let state = self.state();
        let damaged = state.quarantine.iter().enumerate().find_map(|(i, block)| {
            // SAFETY: a quarantined block's span is still allocated: blocks
            // are released only after they leave the quarantine.
            unsafe { inspect_freed(block) }.map(|offset| (i, *block, offset))
        });
        let Some((i, block, offset)) = damaged else {
            return Ok(());
        };
        state.quarantine.remove(i);
        state.quarantine_bytes -= block.span();
        // SAFETY: `block` came from `debug_alloc`/`debug_realloc` and was just
        // removed from the quarantine, its only record, so nothing else
        // releases it.
        unsafe { self.release_span(block.addr, block.size) };
        Err(corrupted(
            block.addr,
            block.size,
            block.number,
            (Corruption::WriteAfterFree, offset),
        ))
    }

    /// Releases every block as [`Pool::free_all`] does, and reports the
    /// first damage found among them (and in the quarantine). Every block is
    /// released, damaged or not. Always `Ok` for a pool not in debug mode.
    pub fn free_all_checked(&mut self) -> Result<(), PoolError> {
        if !self.is_debug() {
            self.free_all();
            return Ok(());
        }
        self.debug_release_everything()
    }

    fn state(&mut self) -> &mut DebugState {
        self.extras
            .as_deref_mut()
            .and_then(|extras| extras.debug.as_deref_mut())
            .expect("a debug pool")
    }

    /// Gives the source's block behind the user address `addr` (of `size`
    /// bytes) back.
    ///
    /// # Safety
    /// `addr` was handed out by this debug pool and is released once.
    unsafe fn release_span(&self, addr: usize, size: usize) {
        // `addr` was handed out `GUARD` bytes into a block of the source.
        let base = (addr - GUARD) as *mut u8;
        // SAFETY: `base` is the start of an allocation (so not NULL).
        let base = unsafe { NonNull::new_unchecked(base) };
        // SAFETY: `base` is a live block of this pool's source, and the
        // `# Safety` section promises it is released this once.
        unsafe { self.release(base, size + 2 * GUARD) }
    }

    #[cold]
    #[inline(never)]
    pub(super) fn debug_alloc(
        &mut self,
        number: usize,
        elem_size: usize,
    ) -> Result<NonNull<c_void>, PoolError> {
        let bytes = block_bytes(number, elem_size)?;
        let span = bytes
            .checked_add(2 * GUARD)
            .filter(|&s| s <= MAX_BLOCK)
            .ok_or(PoolError::OutOfMemory { bytes })?;
        // Room for the block's number first: recording it cannot fail later.
        self.state()
            .numbers
            .try_reserve(1)
            .map_err(|_| PoolError::OutOfMemory { bytes })?;
        let base = self
            .new_block(span)
            .ok_or(PoolError::OutOfMemory { bytes })?;
        let addr = base.as_ptr() as usize + GUARD;
        // SAFETY: `new_block` returned `span` = `bytes + 2 * GUARD` writable
        // bytes at `base` = `addr - GUARD`.
        unsafe { arm(addr, bytes) };
        match self.record(addr, bytes) {
            Ok(true) => {
                let state = self.state();
                state.allocations += 1;
                let number = state.allocations;
                state.numbers.insert(addr, number);
                // SAFETY: `addr` is `GUARD` bytes past the non-NULL `base`.
                Ok(unsafe { NonNull::new_unchecked(addr as *mut c_void) })
            }
            // A broken custom allocator: as in `alloc`, leave it untracked.
            Ok(false) => Err(PoolError::AllocatorReturnedLiveBlock { addr }),
            Err(_) => {
                // SAFETY: `base` came from `new_block` just now and was not
                // recorded, so this is its only release.
                unsafe { self.release(base, span) };
                Err(PoolError::OutOfMemory { bytes })
            }
        }
    }

    #[cold]
    #[inline(never)]
    pub(super) fn debug_free(&mut self, ptr: *mut c_void) -> Result<usize, PoolError> {
        let addr = ptr as usize;
        let size = self
            .lookup(addr)
            .ok_or(PoolError::UnknownPointer { addr })?;
        // SAFETY: `lookup` found `addr` in the index: a live block of this
        // debug pool, allocated with both guards.
        let damage = unsafe { inspect_live(addr, size) };
        self.forget(addr);
        let number = self.state().numbers.remove(&addr).unwrap_or(0);
        if let Some(found) = damage {
            // Released at once: it is out of the index, so never again.
            // SAFETY: `addr` was handed out by this pool and `forget` just
            // removed it from the index, so nothing else releases it.
            unsafe { self.release_span(addr, size) };
            return Err(corrupted(addr, size, number, found));
        }
        let evicted = self.quarantine(Freed { addr, size, number });
        let state = self.state();
        match evicted.or_else(|| state.pending.take()) {
            Some(err) => Err(err),
            None => Ok(size),
        }
    }

    #[cold]
    #[inline(never)]
    pub(super) fn debug_realloc(
        &mut self,
        ptr: *mut c_void,
        old: usize,
        new_size: usize,
    ) -> Result<NonNull<c_void>, PoolError> {
        // `Pool::realloc` checked the block is live, of `old` bytes, and may
        // grow to `new_size`.
        let addr = ptr as usize;
        // As in `debug_alloc`: no room for the guards is out of memory.
        let span = new_size
            .checked_add(2 * GUARD)
            .filter(|&s| s <= MAX_BLOCK)
            .ok_or(PoolError::OutOfMemory { bytes: new_size })?;
        let number = self.state().numbers.get(&addr).copied().unwrap_or(0);
        // SAFETY: `Pool::realloc` found `addr` in the index with `old` bytes:
        // a live block of this debug pool, allocated with both guards.
        if let Some(found) = unsafe { inspect_live(addr, old) } {
            // The block stays live and as it was, with its guards re-armed
            // so this damage is reported once.
            // SAFETY: the same live allocation, writable.
            unsafe { arm(addr, old) };
            return Err(corrupted(addr, old, number, found));
        }
        self.reserve_move(new_size)
            .map_err(|_| PoolError::OutOfMemory { bytes: new_size })?;
        self.state()
            .numbers
            .try_reserve(1)
            .map_err(|_| PoolError::OutOfMemory { bytes: new_size })?;
        let base = self
            .new_block(span)
            .ok_or(PoolError::OutOfMemory { bytes: new_size })?;
        let new_addr = base.as_ptr() as usize + GUARD;
        if self.lookup(new_addr).is_some() {
            // A broken custom allocator returned a live block: touch nothing.
            return Err(PoolError::AllocatorReturnedLiveBlock { addr: new_addr });
        }
        // SAFETY: `new_block` returned `span` = `new_size + 2 * GUARD` writable
        // bytes at `base` = `new_addr - GUARD`.
        unsafe { arm(new_addr, new_size) };
        // SAFETY: the new block holds `new_size` >= `old` bytes; the old one is
        // live with `old` bytes; they are distinct allocations (the new
        // address is not in the index), so they do not overlap.
        unsafe { (new_addr as *mut u8).copy_from_nonoverlapping(addr as *const u8, old) };
        self.moved(addr, old, new_addr, new_size);
        let state = self.state();
        state.numbers.remove(&addr);
        state.numbers.insert(new_addr, number);
        // The old block goes to quarantine: writes through the stale pointer
        // are caught too. Damage found by eviction is reported later.
        let evicted = self.quarantine(Freed {
            addr,
            size: old,
            number,
        });
        self.state().keep_first(evicted);
        // SAFETY: `new_addr` is `GUARD` bytes past the non-NULL `base`.
        Ok(unsafe { NonNull::new_unchecked(new_addr as *mut c_void) })
    }

    /// Poisons a block that just left the index and queues it; evicts the
    /// oldest blocks over the limits. The first damage found among evicted
    /// blocks (each released anyway). With no memory for the queue, the
    /// block is released at once, as with a quarantine of 0 blocks.
    fn quarantine(&mut self, block: Freed) -> Option<PoolError> {
        // SAFETY: callers pass a block they just removed from the index; its
        // span is still allocated (it is released only when it leaves the
        // quarantine) and nothing else refers to it.
        unsafe { ((block.addr - GUARD) as *mut u8).write_bytes(POISON_BYTE, block.span()) };
        let state = self.state();
        if state.quarantine.try_reserve(1).is_err() {
            return self.release_freed(block);
        }
        state.quarantine.push_back(block);
        state.quarantine_bytes += block.span();
        let mut first = None;
        loop {
            let state = self.state();
            let over = state.quarantine.len() > state.options.quarantine_blocks
                || state.quarantine_bytes > state.options.quarantine_bytes;
            let Some(oldest) = over.then(|| state.quarantine.pop_front()).flatten() else {
                break;
            };
            state.quarantine_bytes -= oldest.span();
            let damage = self.release_freed(oldest);
            first = first.or(damage);
        }
        first
    }

    /// Checks a block that left the quarantine, then releases it.
    fn release_freed(&mut self, block: Freed) -> Option<PoolError> {
        // SAFETY: callers pass a block just popped from the quarantine, whose
        // span is allocated until the release below.
        let damage = unsafe { inspect_freed(&block) };
        // SAFETY: the quarantine was the block's only record and it left it,
        // so this is its one release.
        unsafe { self.release_span(block.addr, block.size) };
        damage.map(|offset| {
            corrupted(
                block.addr,
                block.size,
                block.number,
                (Corruption::WriteAfterFree, offset),
            )
        })
    }

    /// `free_all` of a debug pool: damage found is kept for the next check.
    pub(super) fn debug_free_all(&mut self) {
        if let Err(err) = self.debug_release_everything() {
            self.state().keep_first(Some(err));
        }
    }

    /// `free_all` of a debug pool: checks and releases every live and
    /// quarantined block once; the first damage found.
    ///
    /// Allocates nothing (it runs when a pool drops, maybe out of memory):
    /// one read-only pass finds the first damage, then the index is emptied.
    #[cold]
    #[inline(never)]
    pub(super) fn debug_release_everything(&mut self) -> Result<(), PoolError> {
        let mut first = self.state().pending.take();
        if first.is_none() {
            first = self.blocks().find_map(|(addr, size)| {
                // SAFETY: `addr` comes from the index of this debug pool: a
                // live block allocated with both guards.
                let found = unsafe { inspect_live(addr, size) }?;
                let number = self.allocation_number(addr as *const c_void).unwrap_or(0);
                Some(corrupted(addr, size, number, found))
            });
        }
        self.state().numbers.clear();
        while let Some(block) = self.state().quarantine.pop_front() {
            let damage = self.release_freed(block);
            first = first.or(damage);
        }
        self.state().quarantine_bytes = 0;
        self.release_all(GUARD);
        first.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::debug_flag;

    #[test]
    fn debug_flag_values() {
        for on in ["1", "true", "TRUE", "Yes", "on", " On\n"] {
            assert_eq!(debug_flag(on.as_bytes()), Ok(true), "{on:?}");
        }
        for off in ["", "  ", "0", "false", "False", "NO", "off"] {
            assert_eq!(debug_flag(off.as_bytes()), Ok(false), "{off:?}");
        }
        for bad in ["2", "enable", "y", "tru", "1 1", "\u{e9}", "o\u{308}n"] {
            assert_eq!(debug_flag(bad.as_bytes()), Err(()), "{bad:?}");
        }
        assert_eq!(debug_flag(b"\xff"), Err(()));
    }
}
