//! A pool reached through shared references: by C callers on any thread,
//! or by Python code under the GIL.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::error::PoolError;
use super::Pool;

/// A [`Pool`] plus the discipline that serialises access to it: its own lock,
/// or (for pools used only under CPython's GIL) the caller's promise.
#[derive(Debug)]
pub struct SharedPool {
    /// `None` only for pools made by [`SharedPool::unsynchronized`].
    lock: Option<Mutex<()>>,
    /// Non-zero while a call is in progress: for a locked pool, the calling
    /// thread (see `thread_marker`). A custom allocator function runs inside
    /// a call and may call back into the same pool: that call is refused
    /// instead of aliasing the pool in mid-update (or deadlocking on its lock).
    holder: AtomicUsize,
    pool: UnsafeCell<Pool>,
}

/// A number unique to the calling thread among live threads, never 0: the
/// address of a thread-local.
fn thread_marker() -> usize {
    thread_local! {
        static MARKER: u8 = const { 0 };
    }
    MARKER.with(|marker| std::ptr::from_ref(marker) as usize)
}

/// Clears `SharedPool::holder` when a `with` call ends, even by unwinding.
struct Holding<'a>(&'a AtomicUsize);

impl Drop for Holding<'_> {
    fn drop(&mut self) {
        self.0.store(0, Ordering::Relaxed);
    }
}

// SAFETY: `pool` is reached only through `with`/`try_with` (or `get_mut`,
// which needs `&mut self`). For a locked pool they hold `lock` for the whole
// access; an unlocked pool exists only through the `unsafe` constructor
// `unsynchronized`, whose maker promised that no two calls overlap (CPython's
// GIL serialises them), and a call made while another is in progress (from a
// callback of it) is refused by `enter`. Either way at most one `&mut Pool`
// exists at a time, whichever thread holds it.
unsafe impl Sync for SharedPool {}

impl SharedPool {
    /// A pool whose calls are serialised by its own lock.
    pub fn locked(pool: Pool) -> Self {
        SharedPool {
            lock: Some(Mutex::new(())),
            holder: AtomicUsize::new(0),
            pool: UnsafeCell::new(pool),
        }
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
            pool: UnsafeCell::new(pool),
        }
    }

    /// Whether the pool has its own lock.
    pub fn is_locked(&self) -> bool {
        self.lock.is_some()
    }

    /// Marks a call on the pool as in progress (taking the lock if it has
    /// one) until the returned guard drops. `PoolError::Reentered` if this
    /// thread is already inside a call on it (its custom allocator called
    /// back into it).
    #[inline]
    fn enter(&self) -> Result<Entered<'_>, PoolError> {
        let (lock, me) = match &self.lock {
            // No lock: calls never overlap except through a callback of a
            // call in progress (which may also let another thread run, e.g.
            // Python code switching threads): any holder is refused.
            None => {
                if self.holder.load(Ordering::Relaxed) != 0 {
                    return Err(PoolError::Reentered);
                }
                (None, 1)
            }
            Some(lock) => {
                let me = thread_marker();
                // Only this thread ever stores `me`, and it clears it before
                // leaving the call, so reading `me` means it is inside one.
                if self.holder.load(Ordering::Relaxed) == me {
                    return Err(PoolError::Reentered);
                }
                // Pool methods never panic while holding the lock, so a
                // poisoned lock still guards a consistent pool.
                (
                    Some(lock.lock().unwrap_or_else(PoisonError::into_inner)),
                    me,
                )
            }
        };
        self.holder.store(me, Ordering::Relaxed);
        Ok(Entered {
            _holding: Holding(&self.holder),
            _lock: lock,
        })
    }

    /// Runs `f` with exclusive access to the pool.
    /// `PoolError::Reentered` if this thread is already inside a call on
    /// this pool (its custom allocator called back into it).
    #[inline]
    pub fn with<R>(&self, f: impl FnOnce(&mut Pool) -> R) -> Result<R, PoolError> {
        let _entered = self.enter()?;
        // SAFETY: exclusive, either through the lock or by the contract of
        // `unsynchronized`, and not re-entered (`enter` checked); the
        // reference does not outlive the guard.
        Ok(f(unsafe { &mut *self.pool.get() }))
    }

    /// [`SharedPool::with`] for an operation that can fail itself.
    #[inline]
    pub fn try_with<R>(
        &self,
        f: impl FnOnce(&mut Pool) -> Result<R, PoolError>,
    ) -> Result<R, PoolError> {
        let _entered = self.enter()?;
        // SAFETY: as in `with`.
        f(unsafe { &mut *self.pool.get() })
    }

    /// The pool, through exclusive ownership of the whole (no call can be
    /// running: e.g. while it is being dropped).
    pub fn get_mut(&mut self) -> &mut Pool {
        self.pool.get_mut()
    }
}

/// A call in progress on a [`SharedPool`]. Fields drop in order: the holder
/// is cleared while the lock is still held.
struct Entered<'a> {
    _holding: Holding<'a>,
    _lock: Option<MutexGuard<'a, ()>>,
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
        let block = shared.try_with(|p| p.alloc(1, 64));
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
