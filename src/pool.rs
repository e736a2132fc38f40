//! The pool: hands out zeroed blocks, remembers each one, frees each exactly once.

use std::ffi::c_void;
use std::ptr::NonNull;

use crate::allocator::Allocator;
use crate::error::PoolError;
use crate::table::BlockTable;

/// The largest block C and Rust can address (`isize::MAX` bytes).
const MAX_BLOCK: usize = isize::MAX as usize;

/// The byte size of `number` elements of `elem_size` bytes, refused when it
/// overflows or exceeds the largest addressable object (never truncated).
pub fn block_bytes(number: usize, elem_size: usize) -> Result<usize, PoolError> {
    number
        .checked_mul(elem_size)
        .filter(|&b| b <= MAX_BLOCK)
        .ok_or(PoolError::SizeOverflow { number, elem_size })
}

/// A memory pool in cymem's sense: every block it hands out is released
/// through its allocator's `free` exactly once, either by [`Pool::free`] or
/// when the pool is dropped.
///
/// All methods are safe: a pointer passed in is only looked up in the pool's
/// table, never read or written unless the pool handed it out and it is live.
/// Using the returned memory is up to the caller (it is raw memory that dies
/// with the pool).
#[derive(Debug)]
pub struct Pool {
    table: BlockTable,
    allocator: Allocator,
    /// Bytes in live blocks (0-byte blocks count as 0).
    size: usize,
}

impl Default for Pool {
    fn default() -> Self {
        Pool::new()
    }
}

impl Pool {
    /// A pool on the system allocator.
    pub fn new() -> Self {
        Pool::with_allocator(Allocator::system())
    }

    /// A pool whose blocks come from (and return to) `allocator`.
    pub fn with_allocator(allocator: Allocator) -> Self {
        Pool {
            table: BlockTable::default(),
            allocator,
            size: 0,
        }
    }

    /// The allocator this pool uses.
    pub fn allocator(&self) -> &Allocator {
        &self.allocator
    }

    /// Bytes in live blocks.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Number of live blocks (0-byte blocks included).
    pub fn block_count(&self) -> usize {
        self.table.len()
    }

    /// The size of a live block, or `None` if `ptr` is not one of this pool's.
    pub fn block_size(&self, ptr: *const c_void) -> Option<usize> {
        self.table.get(ptr as usize)
    }

    /// Whether `ptr` is a live block of this pool.
    pub fn contains(&self, ptr: *const c_void) -> bool {
        self.block_size(ptr).is_some()
    }

    /// Every live block as `(address, size)`, in no particular order.
    pub fn blocks(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.table.iter()
    }

    /// A zeroed block of `number * elem_size` bytes.
    ///
    /// A 0-byte request still returns a unique non-NULL pointer (counted as 0
    /// bytes): Cython code relies on it, as it did with cymem.
    pub fn alloc(&mut self, number: usize, elem_size: usize) -> Result<NonNull<c_void>, PoolError> {
        let bytes = block_bytes(number, elem_size)?;
        // A 0-byte block is backed by 1 byte so it has an address of its own.
        let block = self
            .allocator
            .alloc_zeroed(bytes.max(1))
            .ok_or(PoolError::OutOfMemory { bytes })?;
        let addr = block.as_ptr() as usize;
        match self.table.insert(addr, bytes) {
            Ok(true) => {
                self.size += bytes;
                Ok(block.cast())
            }
            // A broken custom allocator handed out a live block again. Tracking
            // it twice would mean a double free later; leave it untracked.
            Ok(false) => Err(PoolError::AllocatorReturnedLiveBlock { addr }),
            Err(_) => {
                // SAFETY: the block is ours, fresh, and tracked nowhere.
                unsafe { self.allocator.release(block) };
                Err(PoolError::OutOfMemory { bytes })
            }
        }
    }

    /// Releases a live block. Fails, touching no memory, if `ptr` is not one
    /// (a foreign pointer, NULL, or a block already freed). Returns its size.
    pub fn free(&mut self, ptr: *mut c_void) -> Result<usize, PoolError> {
        let addr = ptr as usize;
        let bytes = self
            .table
            .remove(addr)
            .ok_or(PoolError::UnknownPointer { addr })?;
        self.size -= bytes;
        // SAFETY: `addr` was in the table, so it is a live non-NULL block of
        // `self.allocator`; removing it from the table makes this its only release.
        unsafe { self.allocator.release(NonNull::new_unchecked(ptr.cast())) };
        Ok(bytes)
    }

    /// Grows a live block to `new_size` bytes: the contents move, the new tail
    /// is zeroed, and the old block is released. The returned pointer replaces
    /// `ptr`. cymem's rule: `new_size` must be larger than the block.
    ///
    /// On error the block is left exactly as it was.
    pub fn realloc(
        &mut self,
        ptr: *mut c_void,
        new_size: usize,
    ) -> Result<NonNull<c_void>, PoolError> {
        let addr = ptr as usize;
        let old = self
            .table
            .get(addr)
            .ok_or(PoolError::UnknownPointer { addr })?;
        if new_size <= old {
            return Err(PoolError::NotLarger {
                addr,
                current: old,
                requested: new_size,
            });
        }
        if new_size > MAX_BLOCK {
            return Err(PoolError::SizeOverflow {
                number: 1,
                elem_size: new_size,
            });
        }
        // Recording the moved block must not fail once the move happened.
        self.table
            .reserve_large()
            .map_err(|_| PoolError::OutOfMemory { bytes: new_size })?;
        // A 0-byte block is backed by 1 zeroed byte; `new_size` >= 1 covers it.
        let backed = old.max(1);
        // SAFETY: `addr` is a live block of our allocator holding `backed` bytes.
        let grown = unsafe {
            self.allocator
                .grow_zeroed(NonNull::new_unchecked(ptr.cast()), backed, new_size)
        }
        .ok_or(PoolError::OutOfMemory { bytes: new_size })?;
        let new_addr = grown.as_ptr() as usize;
        if new_addr != addr && self.table.get(new_addr).is_some() {
            // Broken custom allocator: the old block is gone, and the "new" one
            // is someone else's live block. Forget the old record only.
            self.table.remove(addr);
            self.size -= old;
            return Err(PoolError::AllocatorReturnedLiveBlock { addr: new_addr });
        }
        self.table.replace(addr, new_addr, new_size);
        self.size = self.size - old + new_size;
        Ok(grown.cast())
    }

    /// Releases every live block now; the pool stays usable.
    pub fn free_all(&mut self) {
        let allocator = self.allocator;
        self.table.drain(|addr, _| {
            // SAFETY: every table entry is a live non-NULL block of `allocator`;
            // `drain` removes each as it goes, so each is released once.
            unsafe { allocator.release(NonNull::new_unchecked(addr as *mut u8)) }
        });
        self.size = 0;
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.free_all();
    }
}
