//! A pool reached through shared references: by C callers on any thread,
//! or by Python code under the GIL.

use std::cell::UnsafeCell;
use std::mem::ManuallyDrop;
use std::sync::MutexGuard;

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
    /// Dropped by `SharedPool`'s own `Drop`, or leaked after a `fork` left
    /// it half updated.
    pool: UnsafeCell<ManuallyDrop<Pool>>,
}

// SAFETY: every access to `pool` goes through `with`, which holds the record's
// lock, or, for unsynchronized pools, is serialised by the creator's contract.
unsafe impl Sync for SharedPool {}

impl SharedPool {
    /// A pool whose calls are serialised by its own lock.
    pub fn locked(pool: Pool) -> Self {
        SharedPool {
            lock: Some(pool.registry_record()),
            pool: UnsafeCell::new(ManuallyDrop::new(pool)),
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
            pool: UnsafeCell::new(ManuallyDrop::new(pool)),
        }
    }

    /// Whether the pool has its own lock.
    pub fn is_locked(&self) -> bool {
        self.lock.is_some()
    }

    /// Runs `f` with exclusive access to the pool. `f` must not call back
    /// into the same pool (with the lock that would deadlock).
    /// [`PoolError::Forked`] (and `f` not run) in the child of a `fork` if
    /// another thread was inside a call on this pool at the fork.
    #[inline]
    pub fn with<R>(&self, f: impl FnOnce(&mut Pool) -> R) -> Result<R, PoolError> {
        let _guard = self.exclusive()?;
        // SAFETY: exclusive, either through the guard or by the contract of
        // `unsynchronized`; the reference does not outlive this call.
        Ok(f(unsafe { &mut *self.pool.get() }))
    }

    /// [`SharedPool::with`] for an operation that can fail itself. (Its own
    /// body, not `with(f)?`: the result then goes straight to the caller,
    /// which keeps a copy of the error out of every C call.)
    #[inline]
    pub fn run<T>(
        &self,
        f: impl FnOnce(&mut Pool) -> Result<T, PoolError>,
    ) -> Result<T, PoolError> {
        let _guard = self.exclusive()?;
        // SAFETY: as in `with`.
        f(unsafe { &mut *self.pool.get() })
    }

    /// The lock guard that makes access exclusive (`None`: the caller's
    /// contract does, see `unsynchronized`).
    #[inline]
    fn exclusive(&self) -> Result<Option<MutexGuard<'static, ()>>, PoolError> {
        match self.lock {
            Some(record) => record.lock_pool().map(Some),
            None => Ok(None),
        }
    }
}

impl Drop for SharedPool {
    fn drop(&mut self) {
        match self.lock {
            // Another thread of the parent was changing the pool when the
            // process forked: its blocks and table are left as they are.
            Some(record) if record.is_forked() => registry::abandon(record),
            // SAFETY: dropped once, here, and `self.pool` is not used again.
            _ => unsafe { ManuallyDrop::drop(self.pool.get_mut()) },
        }
    }
}
