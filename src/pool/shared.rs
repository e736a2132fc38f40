//! A pool reached through shared references: by C callers on any thread,
//! or by Python code under the GIL.

use std::cell::UnsafeCell;
use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::MutexGuard;

use super::lifetimes::{Mark, Release};
use super::Pool;
use crate::error::PoolError;
use crate::registry::{self, Record};

/// A [`Pool`] plus the discipline that serialises access to it: its own lock,
/// or (for pools used only under CPython's GIL) the caller's promise.
#[derive(Debug)]
pub struct SharedPool {
    /// The pool's record, whose lock serialises calls; `None` only for pools
    /// made by [`SharedPool::unsynchronized`]. (The lock lives in the record
    /// so that the registry can find every pool lock at `fork`.)
    lock: Option<&'static Record>,
    /// Non-zero while a call is in progress: for a locked pool, the calling
    /// thread (see `thread_marker`). A custom allocator function runs inside
    /// a call and may call back into the same pool: that call is refused
    /// instead of aliasing the pool in mid-update (or waiting for its own lock).
    holder: AtomicUsize,
    /// Dropped by `SharedPool`'s own `Drop`, or leaked after a `fork` left
    /// it half updated.
    pool: UnsafeCell<ManuallyDrop<Pool>>,
}

// SAFETY: `pool` is reached only through `with` and `run` (and `drop`, which
// has `&mut self`). For a locked pool they hold the record's lock for the
// whole access; an unlocked pool exists only through the `unsafe` constructor
// `unsynchronized`, whose maker promised that no two calls overlap
// (CPython's GIL serialises them). A call made while another is in progress
// (from a callback of it) is refused by `run`. Either way at most
// one `&mut Pool` exists at a time, whichever thread holds it.
unsafe impl Sync for SharedPool {}

impl SharedPool {
    /// A pool whose calls are serialised by its own lock. Out of memory
    /// (only a deferred pool still needs its record, which holds the lock)
    /// it aborts, as `Box::new` does: see [`SharedPool::try_locked`].
    pub fn locked(pool: Pool) -> Self {
        SharedPool::try_locked(pool)
            .unwrap_or_else(|_| std::alloc::handle_alloc_error(std::alloc::Layout::new::<Record>()))
    }

    /// [`SharedPool::locked`], or `OutOfMemory` if a deferred pool could
    /// not take its record.
    pub fn try_locked(mut pool: Pool) -> Result<Self, PoolError> {
        Ok(SharedPool {
            lock: Some(pool.registry_record()?),
            holder: AtomicUsize::new(0),
            pool: UnsafeCell::new(ManuallyDrop::new(pool)),
        })
    }

    /// A pool with no lock of its own, for callers that already serialise
    /// every access (CPython's GIL), saving two atomic operations per call.
    ///
    /// # Safety
    /// No two calls of [`SharedPool::with`] on this pool may overlap, from
    /// any threads, for as long as it lives.
    #[inline]
    pub unsafe fn unsynchronized(pool: Pool) -> Self {
        SharedPool {
            lock: None,
            holder: AtomicUsize::new(0),
            pool: UnsafeCell::new(ManuallyDrop::new(pool)),
        }
    }

    /// Whether the pool has its own lock.
    pub fn is_locked(&self) -> bool {
        self.lock.is_some()
    }

    /// Runs `f` with exclusive access to the pool.
    /// [`PoolError::Reentered`] (and `f` not run) if a call on this pool is
    /// in progress on this thread (its custom allocator called back into it);
    /// [`PoolError::Forked`] (and `f` not run) in the child of a `fork` if
    /// another thread was inside a call on this pool at the fork.
    #[inline]
    pub fn with<R>(&self, f: impl FnOnce(&mut Pool) -> R) -> Result<R, PoolError> {
        self.run(|pool| Ok(f(pool)))
    }

    /// [`SharedPool::with`] for an operation that can fail itself. (The
    /// result goes straight to the caller, which keeps a copy of the error
    /// out of every C call.)
    #[inline]
    pub fn run<T>(
        &self,
        f: impl FnOnce(&mut Pool) -> Result<T, PoolError>,
    ) -> Result<T, PoolError> {
        // The lock-free pool (Python's, under the GIL) on the fast path: no
        // guard to build, no thread-local to read.
        let _lock = match self.lock {
            // Calls never overlap except through a callback of a call in
            // progress (which may also let another thread run, e.g. Python
            // code switching threads): any holder is refused.
            None if self.holder.load(Ordering::Relaxed) != 0 => return Err(PoolError::Reentered),
            None => {
                self.holder.store(1, Ordering::Relaxed);
                None
            }
            Some(record) => Some(self.enter_locked(record)?),
        };
        let _holding = Holding(&self.holder);
        // SAFETY: no other `&mut Pool` exists: `_lock` holds the record's
        // lock until `f` returns, or (no lock) the pool came from
        // `unsynchronized`, whose maker promised calls never overlap; and no
        // call was in progress (`holder` checked). The reference does not
        // outlive this call.
        f(unsafe { &mut *self.pool.get() })
    }

    /// [`Pool::clear`], with the cleanups run outside the lock: one that
    /// reaches the pool gets [`PoolError::Releasing`] (no deadlock).
    pub fn clear(&self) -> Result<(), PoolError> {
        self.release(Release::Clear)
    }

    /// [`Pool::release_to`], with the cleanups run outside the lock.
    pub fn release_to(&self, mark: Mark) -> Result<(), PoolError> {
        self.release(Release::ToMark(mark))
    }

    /// Runs the pool's cleanups, outside the lock, before the pool drops
    /// (whose own drop would run them holding it).
    pub fn run_cleanups(&self) {
        // Fails only while a release runs, which cannot overlap a drop, or
        // in the child of a fork that left the pool unusable.
        let _ = self.release(Release::Drop);
    }

    fn release(&self, target: Release) -> Result<(), PoolError> {
        match self.run(|pool| pool.begin_release(target))? {
            Some(cleanups) => {
                cleanups.run();
                self.run(|pool| pool.finish_release(target))
            }
            None => Ok(()),
        }
    }

    /// Takes the record's lock for this thread and marks it as the holder
    /// (cleared by `Holding` before the lock is released). Refused if this
    /// thread is already inside a call, which would wait for its own lock.
    fn enter_locked(&self, record: &'static Record) -> Result<MutexGuard<'static, ()>, PoolError> {
        let me = thread_marker();
        // Only this thread ever stores `me`, and it clears it before leaving
        // the call, so reading `me` means it is inside one.
        if self.holder.load(Ordering::Relaxed) == me {
            return Err(PoolError::Reentered);
        }
        let guard = record.lock_pool()?;
        self.holder.store(me, Ordering::Relaxed);
        Ok(guard)
    }
}

/// A number unique to the calling thread among live threads, never 0: the
/// address of a thread-local.
fn thread_marker() -> usize {
    thread_local! {
        static MARKER: u8 = const { 0 };
    }
    MARKER.with(|marker| std::ptr::from_ref(marker) as usize)
}

/// Clears `SharedPool::holder` when a call ends, even by unwinding (declared
/// after the lock guard, so dropped first: while the lock is still held).
struct Holding<'a>(&'a AtomicUsize);

impl Drop for Holding<'_> {
    fn drop(&mut self) {
        self.0.store(0, Ordering::Relaxed);
    }
}

impl Drop for SharedPool {
    fn drop(&mut self) {
        match self.lock {
            // Another thread of the parent was changing the pool when the
            // process forked: its blocks and table are left as they are.
            Some(record) if record.is_forked() => registry::abandon(record),
            // SAFETY: the pool is dropped only here, once (`drop` runs once),
            // and `self.pool` is never read after it.
            _ => unsafe { ManuallyDrop::drop(self.pool.get_mut()) },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::ffi::c_void;

    use super::*;
    use crate::allocator::Allocator;

    thread_local! {
        /// The pool the allocator below calls back into, and what it got.
        static TARGET: Cell<*const SharedPool> = const { Cell::new(std::ptr::null()) };
        static INNER: Cell<Option<Result<usize, PoolError>>> = const { Cell::new(None) };
    }

    unsafe extern "C" fn reentrant_malloc(n: usize) -> *mut c_void {
        let target = TARGET.with(|t| t.replace(std::ptr::null()));
        if !target.is_null() {
            // SAFETY: the test keeps the pool alive while it allocates.
            let inner = unsafe { &*target }.with(|p| p.size());
            INNER.with(|i| i.set(Some(inner)));
        }
        // SAFETY: plain libc malloc.
        unsafe { libc::malloc(n) }
    }

    fn refuses_reentry(shared: SharedPool) {
        TARGET.with(|t| t.set(&shared));
        let block = shared.run(|p| p.alloc(1, 64));
        assert!(block.is_ok());
        assert_eq!(INNER.with(Cell::take), Some(Err(PoolError::Reentered)));
        // Usable again afterwards, and nothing half-done.
        assert_eq!(shared.with(|p| (p.block_count(), p.size())), Ok((1, 64)));
    }

    fn reentrant_pool() -> Pool {
        // SAFETY: malloc/free of libc, with a detour that allocates nothing.
        Pool::with_allocator(unsafe { Allocator::from_raw(reentrant_malloc, libc::free) })
    }

    #[test]
    fn a_call_from_the_pools_own_allocator_is_refused_when_locked() {
        refuses_reentry(SharedPool::locked(reentrant_pool()));
    }

    #[test]
    fn a_call_from_the_pools_own_allocator_is_refused_when_unsynchronized() {
        // SAFETY: one thread only.
        refuses_reentry(unsafe { SharedPool::unsynchronized(reentrant_pool()) });
    }
}
