//! Running out of memory, swept over a workload: allocation n of the test's
//! thread fails (once, or from n on), for every n, in every kind of pool.
//! Each run must end in errors only (never an abort), with every pool
//! consistent, able to free everything and to allocate again afterwards.

use std::ffi::c_void;

use super::{DebugOptions, Pool};
use crate::allocator::Allocator;
use crate::error::PoolError;
use crate::fallible::failing::with_failures;
use crate::registry::{self, DeferredOrigin, Label, Origin};

#[derive(Clone, Copy, Debug)]
enum Kind {
    Heap,
    Arena,
    Debug,
    DebugArena,
    /// libc malloc/free, called directly (not through Rust's allocator).
    Custom,
}

const KINDS: [Kind; 5] = [
    Kind::Heap,
    Kind::Arena,
    Kind::Debug,
    Kind::DebugArena,
    Kind::Custom,
];

fn make(kind: Kind) -> Result<Pool, PoolError> {
    let label = Label::default;
    let mut pool = match kind {
        Kind::Heap | Kind::Debug => Pool::try_with_allocator_labelled(Allocator::system(), label()),
        Kind::Arena | Kind::DebugArena => Pool::try_arena_labelled(label()),
        // SAFETY: libc's malloc and free are a matching pair, thread-safe.
        Kind::Custom => Pool::try_with_allocator_labelled(
            unsafe { Allocator::from_raw(libc::malloc, libc::free) },
            label(),
        ),
    }?;
    if matches!(kind, Kind::Debug | Kind::DebugArena) {
        pool.try_enable_debug(DebugOptions {
            quarantine_blocks: 2,
            ..DebugOptions::default()
        })?;
    }
    Ok(pool)
}

/// Errors a run may see: out of memory only (the workload makes no other
/// mistake but the deliberate unknown pointer).
fn out_of_memory(result: Result<impl Sized, PoolError>) -> bool {
    matches!(result, Err(PoolError::OutOfMemory { .. }))
}

/// Every operation once per pool; `kept` (preallocated) receives the pools
/// that survive. Allocates nothing itself. The number of unexpected errors.
fn workload(kind: Kind, kept: &mut Vec<Pool>, name: &mut Option<String>) -> usize {
    let mut unexpected = 0;
    let mut check = |ok: bool| unexpected += usize::from(!ok);
    for round in 0..3 {
        let mut pool = match make(kind) {
            Ok(pool) => pool,
            Err(err) => {
                check(out_of_memory(Err::<(), _>(err)));
                continue;
            }
        };
        let mut blocks = [std::ptr::null_mut::<c_void>(); 5];
        for (slot, size) in blocks.iter_mut().zip([16, 600, 70_000, 0, 100]) {
            match pool.alloc(1, size) {
                Ok(block) => *slot = block.as_ptr(),
                Err(err) => check(out_of_memory(Err::<(), _>(err))),
            }
        }
        if !blocks[0].is_null() {
            match pool.realloc(blocks[0], 5000) {
                Ok(grown) => blocks[0] = grown.as_ptr(),
                Err(err) => check(out_of_memory(Err::<(), _>(err))),
            }
            match pool.pin(blocks[0]) {
                Ok(()) => check(pool.unpin(blocks[0]).is_ok()),
                Err(err) => check(out_of_memory(Err::<(), _>(err))),
            }
            check(pool.free(blocks[0]).is_ok());
        }
        check(matches!(
            pool.free(12345 as *mut c_void),
            Err(PoolError::UnknownPointer { .. })
        ));
        if round == 1 {
            check(pool.set_name(name.take()).is_ok());
            check(pool.set_origin(Origin::Static("sweep")).is_ok());
        }
        check(pool.check().is_ok());
        let listed = registry::try_live_pools();
        check(
            listed.is_ok()
                || out_of_memory(listed.map_err(|_| PoolError::OutOfMemory { bytes: 0 })),
        );
        let _ = registry::try_report();
        if round == 2 {
            // Dropping a pool with blocks never needs memory.
            drop(pool);
        } else {
            kept.push(pool);
        }
    }
    unexpected
}

/// The pool agrees with itself, frees everything, then allocates again.
fn check_consistent(pool: &mut Pool) {
    let blocks: Vec<(usize, usize)> = pool.blocks().collect();
    assert_eq!(pool.size(), blocks.iter().map(|b| b.1).sum::<usize>());
    assert_eq!(pool.block_count(), blocks.len());
    let stats = pool.stats();
    assert_eq!((stats.size, stats.block_count), (pool.size(), blocks.len()));
    for (addr, _) in blocks {
        pool.free(addr as *mut c_void).unwrap();
    }
    assert_eq!((pool.size(), pool.block_count()), (0, 0));
    pool.check().unwrap();
    let block = pool.alloc(1, 64).unwrap();
    pool.free(block.as_ptr()).unwrap();
}

#[test]
fn every_allocation_failure_is_an_error() {
    // Takes records from the shared list while tests of it run.
    let _alone = registry::free_list_to_myself();
    for kind in KINDS {
        let run = |first: u64, count: u64| {
            let mut kept = Vec::with_capacity(8);
            let mut name = Some(String::from("swept"));
            let (unexpected, made) =
                with_failures(first, count, || workload(kind, &mut kept, &mut name));
            assert_eq!(unexpected, 0, "{kind:?}: failing {first} (x{count})");
            for pool in &mut kept {
                check_consistent(pool);
            }
            made
        };
        let total = run(0, 0);
        assert!(total > 10, "{kind:?}: {total} allocations");
        for first in 1..=total {
            run(first, 1);
            run(first, u64::MAX);
        }
    }
}

#[test]
fn many_pools_made_and_dropped_while_memory_runs_out() {
    // Takes records from the shared list while tests of it run.
    let _alone = registry::free_list_to_myself();
    // Beyond a chunk of records and a thread's batches: the registry grows,
    // and handing records back must never allocate.
    let mut pools = Vec::with_capacity(400);
    // (Other tests may hand records back meanwhile, so how many pools each
    // run makes is not known: what counts is that none aborts.)
    for first in [1, 2, 3, 4, 6, 9] {
        let ((), _) = with_failures(first, u64::MAX, || {
            while pools.len() < pools.capacity() {
                match Pool::try_with_allocator_labelled(Allocator::system(), Label::default()) {
                    Ok(pool) => pools.push(pool),
                    Err(_) => break,
                }
            }
            pools.clear();
        });
    }
    // Memory is back: the registry hands out records again.
    for _ in 0..pools.capacity() {
        pools.push(Pool::new());
    }
}

/// An arena realloc whose moved block is the first entry past the index's
/// room (where its first segment grows, where a new segment starts, where
/// a block in a fresh chunk starts a new run) either succeeds or fails with
/// `OutOfMemory`, whichever allocation fails, and leaves every block
/// findable: the index's room is made before the move.
#[test]
fn arena_realloc_at_the_index_growth_points_fails_cleanly() {
    // A 1 MiB block takes a chunk of its own, mapped above the small ones.
    for (before, grown) in [(15, 40), (16, 40), (255, 40), (256, 40), (3, 1 << 20)] {
        let run = |first: u64, count: u64| {
            let mut pool = Pool::arena();
            let blocks: Vec<_> = (0..before)
                .map(|_| pool.alloc(1, 32).unwrap().as_ptr())
                .collect();
            let (result, made) = with_failures(first, count, || pool.realloc(blocks[0], grown));
            match result {
                Ok(moved) => {
                    assert_eq!(pool.block_size(moved.as_ptr()), Some(grown));
                    assert_eq!(pool.block_size(blocks[0]), None);
                }
                Err(err) => {
                    assert!(out_of_memory(Err::<(), _>(err)), "{before}: {err:?}");
                    assert_eq!(pool.block_size(blocks[0]), Some(32));
                }
            }
            for &block in &blocks[1..] {
                assert_eq!(pool.block_size(block), Some(32), "{before} blocks");
            }
            check_consistent(&mut pool);
            made
        };
        let total = run(0, 0);
        for first in 1..=total {
            run(first, 1);
        }
    }
}

/// A deferred pool takes its record at its first block: when no record can
/// be had, that alloc fails with `OutOfMemory`, the block is given back,
/// and the pool stays deferred with its origin until memory is back.
#[test]
fn a_deferred_pool_that_cannot_register_fails_its_first_alloc_cleanly() {
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
    static LIVE: AtomicUsize = AtomicUsize::new(0);
    unsafe extern "C" fn counted_malloc(size: usize) -> *mut c_void {
        LIVE.fetch_add(1, Relaxed);
        // SAFETY: plain libc malloc; freed by `counted_free`.
        unsafe { libc::malloc(size) }
    }
    unsafe extern "C" fn counted_free(block: *mut c_void) {
        LIVE.fetch_sub(1, Relaxed);
        // SAFETY: `block` came from `counted_malloc`.
        unsafe { libc::free(block) }
    }
    // It takes every free record: tests that need one wait.
    let _alone = registry::free_list_to_myself();
    // SAFETY: a matching, thread-safe pair (libc's, counted).
    let allocator = unsafe { Allocator::from_raw(counted_malloc, counted_free) };
    // More pools than the records other tests may have left free, so the
    // registry has to grow while Rust allocations fail.
    static SITE: DeferredOrigin = DeferredOrigin::new(Origin::Static("oom-deferred"));
    let mut pools: Vec<Pool> = (0..20_000)
        .map(|_| Pool::deferred_under_process_lock(allocator, &SITE))
        .collect();
    let (failed, _) = with_failures(1, u64::MAX, || {
        let mut failed = 0;
        for pool in &mut pools {
            match pool.alloc(1, 16) {
                Ok(_) => {}
                Err(err) => {
                    assert!(out_of_memory(Err::<(), _>(err)), "{err:?}");
                    assert_eq!(pool.stats(), Default::default());
                    failed += 1;
                }
            }
        }
        failed
    });
    assert!(failed > 0, "the registry never had to grow");
    // Every pool holds one counted block, or none if its alloc failed.
    assert_eq!(LIVE.load(Relaxed), pools.len() - failed);
    for pool in &mut pools {
        if pool.block_count() == 0 {
            pool.alloc(1, 16).unwrap();
        }
    }
    let listed = registry::live_pools()
        .into_iter()
        .filter(|p| p.origin == "oom-deferred")
        .count();
    assert_eq!(listed, pools.len());
    drop(pools);
    assert_eq!(LIVE.load(Relaxed), 0);
}
