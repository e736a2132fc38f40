//! The shared pool (the form C callers and the Python binding use): its
//! lifetimes work through it as they do on a plain pool, locked or not.

use std::ffi::c_void;
use std::sync::atomic::{AtomicUsize, Ordering};

use cymem_rs::{Pool, SharedPool};

/// Both kinds of shared pool: locked, and unsynchronized (each test makes
/// every call from its own thread, one at a time).
fn both() -> [SharedPool; 2] {
    // SAFETY: the caller's test makes every call on this thread, in turn.
    let unlocked = unsafe { SharedPool::unsynchronized(Pool::new()) };
    [SharedPool::locked(Pool::new()), unlocked]
}

#[test]
fn a_shared_pool_says_whether_it_has_a_lock() {
    let [locked, unlocked] = both();
    assert!(locked.is_locked());
    assert!(!unlocked.is_locked());
}

#[test]
fn release_to_through_a_shared_pool_frees_the_scope_only() {
    for shared in both() {
        let older = shared.run(|p| p.alloc(1, 32)).unwrap().as_ptr();
        let mark = shared.run(|p| p.mark()).unwrap();
        let inner = shared.run(|p| p.alloc(1, 64)).unwrap().as_ptr();
        shared.release_to(mark).unwrap();
        assert_eq!(shared.with(|p| p.block_size(inner)).unwrap(), None);
        assert_eq!(shared.with(|p| p.block_size(older)).unwrap(), Some(32));
        assert_eq!(shared.with(|p| p.block_count()).unwrap(), 1);
    }
}

unsafe extern "C" fn count_call(data: *mut c_void) {
    // SAFETY: `data` is the `&'static AtomicUsize` the test registered.
    unsafe { &*data.cast::<AtomicUsize>() }.fetch_add(1, Ordering::Relaxed);
}

#[test]
fn run_cleanups_runs_them_once_before_the_pool_drops() {
    for shared in both() {
        static RAN: AtomicUsize = AtomicUsize::new(0);
        RAN.store(0, Ordering::Relaxed);
        let block = shared.run(|p| p.alloc(1, 16)).unwrap().as_ptr();
        let data = std::ptr::from_ref(&RAN).cast_mut().cast::<c_void>();
        // SAFETY: `count_call` only bumps the static counter `data` points at.
        shared
            .run(|p| unsafe { p.add_cleanup(count_call, data) })
            .unwrap();
        shared.run_cleanups();
        assert_eq!(RAN.load(Ordering::Relaxed), 1);
        // The blocks stay until the pool drops; the cleanup does not run again.
        assert_eq!(shared.with(|p| p.block_size(block)).unwrap(), Some(16));
        drop(shared);
        assert_eq!(RAN.load(Ordering::Relaxed), 1);
    }
}
