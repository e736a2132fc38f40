//! Why a pool operation was refused.

use std::fmt;

/// Every way a [`Pool`](crate::Pool) operation can fail.
///
/// A failed operation leaves the pool exactly as it was: no block is lost,
/// freed twice, or half-tracked. (The one exception is a custom allocator that
/// breaks its contract, see `AllocatorReturnedLiveBlock`: the pool still never
/// frees a block twice, but the memory involved is not protected.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolError {
    /// `number * elem_size` does not fit in `usize` (or exceeds `isize::MAX`,
    /// the largest object Rust and C can address).
    SizeOverflow { number: usize, elem_size: usize },
    /// The backing allocator (or the pool's own table) could not provide memory.
    OutOfMemory { bytes: usize },
    /// The pointer was never handed out by this pool, or was already freed.
    UnknownPointer { addr: usize },
    /// `realloc` must grow a block: cymem refuses a size that is not larger.
    NotLarger {
        addr: usize,
        current: usize,
        requested: usize,
    },
    /// The backing allocator returned an address that is still a live block of
    /// this pool (a broken custom allocator). The new block is not tracked.
    AllocatorReturnedLiveBlock { addr: usize },
    /// `free` or `realloc` of a block that is pinned (by `views` live
    /// zero-copy views, or by C code through `cymem_pool_pin`): releasing or
    /// moving it would leave them pointing at dead memory. The block is untouched.
    BlockInUse { addr: usize, views: usize },
    /// `unpin` of a live block that is not pinned (more unpins than pins).
    NotPinned { addr: usize },
    /// The `requested` bytes of an `alloc` or `realloc` would take the
    /// pool's `live` bytes past its `limit`. Nothing changed.
    LimitExceeded {
        limit: usize,
        live: usize,
        requested: usize,
    },
    /// `release_to` a mark that is not open in this pool (already released,
    /// or another pool's). Nothing changed.
    BadMark { mark: usize },
    /// The pool is running its cleanups (in `clear`, `release_to` or its
    /// end): it cannot be changed or released again until they finish.
    Releasing,
    /// A call on a pool while another call on it is in progress: from a
    /// custom allocator function of that call (the pool calls nothing else),
    /// or, for a pool without a lock of its own (Python's, under the GIL),
    /// from another thread that function let run. Refused; the pool is left
    /// as it was.
    Reentered,
    /// In the child of a `fork`: another thread of the parent was inside a
    /// call on this pool when the process forked, so its state may be half
    /// updated and its lock is held by a thread the child does not have.
    /// Every call on it fails; dropping it leaks its blocks.
    Forked,
    /// Debug mode found a block's memory damaged. `addr` and `size` are the
    /// block as the user had it, `alloc_number` the n-th successful `alloc`
    /// of the pool that made it (from 1), `offset` the damaged byte nearest
    /// to the block, counted from its start (negative: before it). A block
    /// found damaged by `free` is still released; by `realloc`, it stays live
    /// and unchanged.
    Corrupted {
        addr: usize,
        size: usize,
        alloc_number: u64,
        kind: Corruption,
        offset: isize,
    },
}

/// What debug mode found wrong with a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Corruption {
    /// A byte after the end of a live block was written (a buffer overrun).
    Overrun,
    /// A byte before the start of a live block was written (an underrun).
    Underrun,
    /// A freed block (or the old copy of a grown one) was written.
    WriteAfterFree,
}

impl fmt::Display for PoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            PoolError::SizeOverflow { number, elem_size } => write!(
                f,
                "cannot allocate {number} x {elem_size} bytes: the size overflows"
            ),
            PoolError::OutOfMemory { bytes } => {
                write!(f, "out of memory: failed to allocate {bytes} bytes")
            }
            PoolError::UnknownPointer { addr } => write!(
                f,
                "pointer {addr:#x} is not a live block of this pool (foreign or already freed)"
            ),
            PoolError::NotLarger {
                addr,
                current,
                requested,
            } => write!(
                f,
                "realloc of {addr:#x} to {requested} bytes refused: the block already has \
                 {current} bytes and realloc only grows"
            ),
            PoolError::AllocatorReturnedLiveBlock { addr } => write!(
                f,
                "the custom allocator returned {addr:#x}, which is still a live block of this pool"
            ),
            PoolError::BlockInUse { addr, views } => write!(
                f,
                "block {addr:#x} is in use by {views} live view(s) or pin(s); \
                 release them before freeing or moving it"
            ),
            PoolError::Reentered => f.write_str(
                "the pool was called while one of its own calls was in progress (its \
                 custom allocator called back into it, or let another thread call it); \
                 the call was refused",
            ),
            PoolError::NotPinned { addr } => write!(
                f,
                "block {addr:#x} is not pinned: every unpin must match an earlier pin"
            ),
            PoolError::LimitExceeded {
                limit,
                live,
                requested,
            } => write!(
                f,
                "the pool's limit of {limit} bytes refuses {requested} more bytes \
                 ({live} bytes are live)"
            ),
            PoolError::BadMark { mark } => write!(
                f,
                "mark {mark} is not open in this pool (already released, or another pool's)"
            ),
            PoolError::Releasing => write!(
                f,
                "the pool is running its cleanups; it cannot be changed until they finish"
            ),
            PoolError::Forked => f.write_str(
                "the pool was in use by another thread when the process forked; \
                 it cannot be used in the child (dropping it leaks its blocks)",
            ),
            PoolError::Corrupted {
                addr,
                size,
                alloc_number,
                kind,
                offset,
            } => {
                write!(
                    f,
                    "memory corruption: block {addr:#x} of {size} bytes (allocation #{alloc_number}) "
                )?;
                match kind {
                    Corruption::Overrun => write!(
                        f,
                        "was written past its end (offset {offset}, byte {} after the block)",
                        offset + 1 - size as isize
                    ),
                    Corruption::Underrun => write!(
                        f,
                        "was written before its start (offset {offset}, byte {} before the block)",
                        -offset
                    ),
                    Corruption::WriteAfterFree => {
                        write!(f, "was written after it was freed (offset {offset})")
                    }
                }
            }
        }
    }
}

impl std::error::Error for PoolError {}
