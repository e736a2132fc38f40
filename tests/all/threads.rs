//! Many threads hammering one shared pool: the C ABI's (and free-threaded
//! Python's) situation. Run under AddressSanitizer by `make check-sanitizers`.

use std::ffi::c_void;
use std::sync::Arc;

use cymem_rs::{Pool, SharedPool};

const THREADS: usize = 8;
const ROUNDS: usize = 20_000;

fn hammer(make: fn() -> Pool) {
    let shared = Arc::new(SharedPool::locked(make()));
    let kept = shared.run(|pool| pool.alloc(10, 10)).unwrap().as_ptr() as usize;
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let shared = Arc::clone(&shared);
            std::thread::spawn(move || {
                let mut mine = Vec::new();
                for i in 0..ROUNDS {
                    let size = 1 + (i * 7 + t) % 300;
                    let p = shared.run(|pool| pool.alloc(1, size)).unwrap();
                    // SAFETY: a live block of `size` bytes owned by this thread.
                    unsafe { p.as_ptr().cast::<u8>().write_bytes(t as u8, size) };
                    let p = if i % 5 == 0 {
                        shared
                            .run(|pool| pool.realloc(p.as_ptr(), size + 64))
                            .unwrap()
                    } else {
                        p
                    };
                    if i % 3 == 0 {
                        mine.push(p.as_ptr() as usize);
                    } else {
                        shared.run(|pool| pool.free(p.as_ptr())).unwrap();
                    }
                    // A foreign pointer is refused while others allocate. (A
                    // just-freed address may already be another thread's
                    // block again, so it is not a safe probe.)
                    let mut local = 0u8;
                    let foreign = (&mut local as *mut u8).cast::<c_void>();
                    assert!(shared.run(|pool| pool.free(foreign)).is_err());
                }
                mine
            })
        })
        .collect();
    let mut survivors = 0;
    for worker in workers {
        let mine = worker.join().expect("no panic, no deadlock");
        survivors += mine.len();
        for addr in mine {
            shared.run(|pool| pool.free(addr as *mut c_void)).unwrap();
        }
    }
    assert_eq!(survivors, THREADS * ROUNDS.div_ceil(3));
    shared
        .with(|pool| {
            assert_eq!(pool.block_count(), 1);
            assert_eq!(pool.size(), 100);
            pool.free(kept as *mut c_void).unwrap();
            assert_eq!((pool.block_count(), pool.size()), (0, 0));
        })
        .unwrap();
}

#[test]
fn heap_pool_under_eight_threads() {
    hammer(Pool::new);
}

#[test]
fn arena_pool_under_eight_threads() {
    hammer(Pool::arena);
}

#[test]
fn locked_pools_say_so() {
    assert!(SharedPool::locked(Pool::new()).is_locked());
}
