//! A pool reached through shared references: by C callers on any thread,
//! or by Python code under the GIL.

use std::cell::UnsafeCell;
use std::sync::{Mutex, PoisonError};

use super::Pool;

/// A [`Pool`] plus the discipline that serialises access to it: its own lock,
/// or (for pools used only under CPython's GIL) the caller's promise.
#[derive(Debug)]
pub struct SharedPool {
    /// `None` only for pools made by [`SharedPool::unsynchronized`].
    lock: Option<Mutex<()>>,
    pool: UnsafeCell<Pool>,
}

// SAFETY: `pool` is reached only through `with`. For a locked pool `with`
// holds `lock` for the whole access; an unlocked pool exists only through the
// `unsafe` constructor `unsynchronized`, whose maker promised that no two
// `with` calls overlap (CPython's GIL serialises them). Either way at most
// one `&mut Pool` exists at a time, whichever thread holds it.
unsafe impl Sync for SharedPool {}

impl SharedPool {
    /// A pool whose calls are serialised by its own lock.
    pub fn locked(pool: Pool) -> Self {
        SharedPool {
            lock: Some(Mutex::new(())),
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
            pool: UnsafeCell::new(pool),
        }
    }

    /// Whether the pool has its own lock.
    pub fn is_locked(&self) -> bool {
        self.lock.is_some()
    }

    /// Runs `f` with exclusive access to the pool. `f` must not call back
    /// into the same pool (with the lock that would deadlock).
    pub fn with<R>(&self, f: impl FnOnce(&mut Pool) -> R) -> R {
        // Pool methods never panic while holding the lock, so a poisoned lock
        // still guards a consistent pool.
        let _guard = self
            .lock
            .as_ref()
            .map(|lock| lock.lock().unwrap_or_else(PoisonError::into_inner));
        // SAFETY: no other `&mut Pool` exists: `_guard` holds `lock` until
        // `f` returns, or (no lock) the pool came from `unsynchronized`,
        // whose maker promised calls of `with` never overlap. The reference
        // does not outlive this call.
        f(unsafe { &mut *self.pool.get() })
    }
}
