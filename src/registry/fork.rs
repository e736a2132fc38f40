//! What `fork` does to the registry and to pools' locks.
//!
//! The child of `fork` has one thread, a copy of the one that forked, and
//! every lock exactly as it was: a lock another thread held stays held for
//! ever. So around `fork` (`pthread_atfork`):
//! - the forking thread takes the registry lock first (prepare), so no other
//!   thread is inside it at the fork, and releases it in both processes
//!   (no holder of the registry lock waits for anything but memory);
//! - the child then looks at every record's pool lock: one still held was
//!   held by a thread the child does not have, in the middle of a call on
//!   that pool. The record is marked, and every later call on the pool fails
//!   with [`PoolError::Forked`](crate::error::PoolError::Forked) instead of
//!   waiting; dropping the pool leaks its blocks instead of touching them.
//!   The other pools work in the child as in the parent.
//!
//! Pool locks are not taken around the fork: one stuck in a slow allocator
//! would delay the fork, and a pool in the middle of a call cannot be made
//! consistent anyway.
//!
//! Windows has no `fork`: the handlers are never installed there.
#![cfg_attr(not(unix), allow(dead_code))]

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::MutexGuard;

use super::{lock_registry, Registry};

/// Whether the handlers are installed.
static INSTALLED: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// The registry lock, held by the forking thread from prepare until
    /// the fork is done (the handlers run on that thread, in both processes).
    static HELD: Cell<Option<MutexGuard<'static, Registry>>> = const { Cell::new(None) };
}

/// Installs the fork handlers once per process. Called before the registry
/// lock is first taken, so they are in place before any lock can be held.
/// (A flag, not a `Once`: a `Once` another thread was running at the fork
/// would make the child wait for ever.)
#[inline]
pub(super) fn install_handlers() {
    if INSTALLED.load(Relaxed) || INSTALLED.swap(true, Relaxed) {
        return;
    }
    #[cfg(unix)]
    // SAFETY: the three handlers are `extern "C"` functions that live as long
    // as the program (this library is never unloaded while pools exist) and
    // may run on any thread; pthread_atfork only records them.
    unsafe {
        libc::pthread_atfork(Some(prepare), Some(parent), Some(child));
    }
}

extern "C" fn prepare() {
    // During thread teardown the slot is gone: the fork then goes ahead
    // without the lock (as before the handlers existed).
    let _ = HELD.try_with(|held| held.set(Some(lock_registry())));
}

extern "C" fn parent() {
    let _ = HELD.try_with(|held| drop(held.take()));
}

extern "C" fn child() {
    let _ = HELD.try_with(|held| {
        if let Some(registry) = held.take() {
            for record in &registry.records {
                record.mark_if_locked_at_fork();
            }
            // Unlocking in the child is allowed: this thread took the lock.
            drop(registry);
        }
    });
}

#[cfg(test)]
#[cfg(unix)]
mod tests {
    use std::sync::mpsc;
    use std::thread;
    use std::time::{Duration, Instant};

    use crate::error::PoolError;
    use crate::pool::Pool;
    use crate::shared::SharedPool;

    /// Waits for a child process for at most ten seconds; its exit code, or
    /// `None` (after killing it) if it hung.
    fn wait_child(pid: libc::pid_t) -> Option<i32> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut status = 0;
        while Instant::now() < deadline {
            // SAFETY: `pid` is our child; `status` is a valid out-pointer.
            if unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } == pid {
                return Some(libc::WEXITSTATUS(status));
            }
            thread::sleep(Duration::from_millis(2));
        }
        // SAFETY: `pid` is our child, not yet reaped, so the signal reaches it.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        // SAFETY: `pid` is our child; `status` is a valid out-pointer.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        None
    }

    #[test]
    fn a_pool_locked_at_fork_fails_in_the_child_and_the_rest_works() {
        let locked = SharedPool::locked(Pool::named("locked at fork"));
        let other = SharedPool::locked(Pool::named("free at fork"));
        let (entered, wait_entered) = mpsc::channel();
        let (release, wait_release) = mpsc::channel::<()>();
        let locked_ref = &locked;
        thread::scope(|scope| {
            scope.spawn(move || {
                locked_ref
                    .with(|_| {
                        entered.send(()).unwrap();
                        wait_release.recv().unwrap();
                    })
                    .unwrap();
            });
            wait_entered.recv().unwrap();
            // SAFETY: the child only calls the library (whose locks the fork
            // handlers cover), malloc (fork-safe in glibc) and `_exit`.
            let pid = unsafe { libc::fork() };
            if pid == 0 {
                let refused = locked.with(|_| ()) == Err(PoolError::Forked);
                let works = other.run(|p| p.alloc(1, 8)).is_ok()
                    && SharedPool::locked(Pool::new())
                        .run(|p| p.alloc(2, 8))
                        .is_ok()
                    && super::super::live_count() >= 2;
                let code = if !refused {
                    2
                } else if !works {
                    3
                } else {
                    0
                };
                // SAFETY: ends the child without running the parent's
                // destructors or test harness.
                unsafe { libc::_exit(code) };
            }
            let code = wait_child(pid);
            release.send(()).unwrap();
            assert_eq!(code, Some(0), "child: 2 = not refused, 3 = others broken");
        });
        // The parent's pools are untouched by the fork.
        assert!(locked.run(|p| p.alloc(1, 8)).is_ok());
    }
}
