//! A shared pool across `fork`: dropped normally it releases its blocks;
//! in the child of a fork that caught another thread inside a call on it,
//! every call is refused and dropping it leaks its blocks instead of
//! touching a half-updated pool, and reports stop listing it.

use std::cell::Cell;
use std::ffi::c_void;
use std::sync::mpsc;
use std::thread;

use cymem_rs::{Allocator, Pool, PoolError, SharedPool};

thread_local! {
    /// Frees by the allocator below on this thread (each test runs on its
    /// own thread, and the child of a fork is a copy of the forking thread).
    static FREES: Cell<usize> = const { Cell::new(0) };
}

unsafe extern "C" fn counting_free(ptr: *mut c_void) {
    FREES.with(|f| f.set(f.get() + 1));
    // SAFETY: the pool passes only blocks libc's malloc returned, once each.
    unsafe { libc::free(ptr) }
}

fn frees() -> usize {
    FREES.with(Cell::get)
}

fn counting_pool() -> Pool {
    // SAFETY: libc's malloc, and a free that counts, then calls libc's free.
    Pool::with_allocator(unsafe { Allocator::from_raw(libc::malloc, counting_free) })
}

#[test]
fn dropping_a_shared_pool_releases_its_blocks() {
    let locked = SharedPool::locked(counting_pool());
    // SAFETY: this thread makes every call on the pool, one at a time.
    let unlocked = unsafe { SharedPool::unsynchronized(counting_pool()) };
    for shared in [locked, unlocked] {
        let before = frees();
        for size in [1, 64, 4096] {
            shared.run(|p| p.alloc(1, size)).unwrap();
        }
        drop(shared);
        assert_eq!(frees(), before + 3);
    }
}

/// The name of the pool another thread is using at the fork.
const BUSY: &str = "busy at fork";

/// What the child checks, as its exit status (it must not panic: it is a
/// copy of the test harness).
fn child_sees_a_forked_pool(shared: &'static SharedPool) -> i32 {
    if shared.with(|p| p.size()) != Err(PoolError::Forked) {
        return 1;
    }
    let before = frees();
    // SAFETY: `shared` was leaked from a box by the parent; in the child the
    // thread that also borrows it does not exist, so this is the last use.
    drop(unsafe { Box::from_raw(std::ptr::from_ref(shared).cast_mut()) });
    if frees() != before {
        return 2;
    }
    if cymem_rs::live_pools()
        .iter()
        .any(|info| info.name.as_deref() == Some(BUSY))
    {
        return 4;
    }
    // Other pools work in the child.
    let mut fresh = counting_pool();
    match fresh.alloc(1, 8).map(|b| fresh.free(b.as_ptr())) {
        Ok(Ok(8)) => 0,
        _ => 3,
    }
}

#[cfg(unix)]
#[test]
fn a_pool_busy_in_another_thread_at_fork_is_refused_and_leaked_in_the_child() {
    let mut pool = counting_pool();
    pool.set_name(Some(BUSY.into())).unwrap();
    let shared: &'static SharedPool = Box::leak(Box::new(SharedPool::locked(pool)));
    shared.run(|p| p.alloc(1, 64)).unwrap();
    let (entered_tx, entered_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let busy = thread::spawn(move || {
        shared.with(|p| {
            entered_tx.send(()).unwrap();
            go_rx.recv().unwrap();
            p.block_count()
        })
    });
    entered_rx.recv().unwrap();
    // SAFETY: the child runs only `child_sees_a_forked_pool` and `_exit`s.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let status = child_sees_a_forked_pool(shared);
        // SAFETY: ends the child at once, running nothing of the harness.
        unsafe { libc::_exit(status) };
    }
    go_tx.send(()).unwrap();
    assert_eq!(busy.join().unwrap(), Ok(1));
    let mut status = 0;
    // SAFETY: waits for our own child, writing its status into `status`.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "child status {status:#x} (exit 1: not refused, 2: blocks freed, 3: other pools broken, 4: still reported)"
    );
    // In the parent the registry is free again and the pool still reported
    // (the registry lock, held across the fork, was let go)...
    let listed = cymem_rs::live_pools();
    assert!(listed.iter().any(|info| info.name.as_deref() == Some(BUSY)));
    // ...and whole: dropping it releases its block.
    let before = frees();
    // SAFETY: the thread that borrowed `shared` has been joined; this is
    // the last use of the leaked box.
    drop(unsafe { Box::from_raw(std::ptr::from_ref(shared).cast_mut()) });
    assert_eq!(frees(), before + 1);
}
