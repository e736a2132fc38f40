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

// SAFETY: `pool` is reached only through `with` and `run` (and `drop`, which
// has `&mut self`). For a locked pool they hold the record's lock for the
// whole access; an unlocked pool exists only through the `unsafe` constructor
// `unsynchronized`, whose maker promised that no two calls overlap
// (CPython's GIL serialises them). Either way at most
// one `&mut Pool` exists at a time, whichever thread holds it.
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
        // SAFETY: no other `&mut Pool` exists: `_guard` holds the record's
        // lock until `f` returns, or (no lock) the pool came from
        // `unsynchronized`, whose maker promised calls never overlap. The
        // reference does not outlive this call.
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
        // SAFETY: no other `&mut Pool` exists, for the reasons given in `with`
        // (the same guard, or the same promise); it does not outlive this call.
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
            // SAFETY: the pool is dropped only here, once (`drop` runs once),
            // and `self.pool` is never read after it.
            _ => unsafe { ManuallyDrop::drop(self.pool.get_mut()) },
        }
    }
}
