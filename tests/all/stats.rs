//! A pool's statistics from a Rust caller's side: every operation moves the
//! counters, in heap and arena mode, and failed operations move none.

use std::ffi::c_void;

use cymem_rs::{Pool, PoolError, PoolStats};

rules_for_pools!(
    [heap => cymem_rs::Pool::new, arena => cymem_rs::Pool::arena];
    a_new_pool_counts_nothing,
    alloc_free_and_realloc_move_the_counters,
    failed_operations_change_no_counter,
    free_all_counts_every_live_block_as_freed,
    reset_peak_starts_from_the_bytes_in_use,
    zero_byte_blocks_count_as_blocks_of_no_bytes,
);

fn a_new_pool_counts_nothing(new: fn() -> Pool) {
    assert_eq!(new().stats(), PoolStats::default());
}

fn alloc_free_and_realloc_move_the_counters(new: fn() -> Pool) {
    let mut pool = new();
    let a = pool.alloc(10, 10).unwrap();
    let b = pool.alloc(1, 300).unwrap();
    assert_eq!(
        pool.stats(),
        PoolStats {
            size: 400,
            peak_size: 400,
            block_count: 2,
            total_allocs: 2,
            total_frees: 0,
            total_reallocs: 0,
        }
    );
    pool.free(b.as_ptr()).unwrap();
    let a = pool.realloc(a.as_ptr(), 1000).unwrap();
    let s = pool.stats();
    assert_eq!((s.size, s.peak_size, s.block_count), (1000, 1000, 1));
    assert_eq!((s.total_allocs, s.total_frees, s.total_reallocs), (2, 1, 1));
    pool.free(a.as_ptr()).unwrap();
    let s = pool.stats();
    assert_eq!((s.size, s.peak_size, s.block_count), (0, 1000, 0));
    assert_eq!((s.total_allocs, s.total_frees, s.total_reallocs), (2, 2, 1));
    assert_eq!(pool.size(), s.size);
}

fn failed_operations_change_no_counter(new: fn() -> Pool) {
    let mut pool = new();
    let block = pool.alloc(4, 4).unwrap();
    let before = pool.stats();
    let mut local = 0u8;
    let foreign = (&raw mut local).cast::<c_void>();
    assert!(matches!(
        pool.free(foreign),
        Err(PoolError::UnknownPointer { .. })
    ));
    assert!(matches!(
        pool.realloc(foreign, 64),
        Err(PoolError::UnknownPointer { .. })
    ));
    assert!(matches!(
        pool.realloc(block.as_ptr(), 8),
        Err(PoolError::NotLarger { .. })
    ));
    assert!(matches!(
        pool.alloc(usize::MAX, 2),
        Err(PoolError::SizeOverflow { .. })
    ));
    assert!(matches!(
        pool.realloc(block.as_ptr(), usize::MAX),
        Err(PoolError::SizeOverflow { .. })
    ));
    assert_eq!(pool.stats(), before);
    pool.free(block.as_ptr()).unwrap();
    assert!(pool.free(block.as_ptr()).is_err(), "double free refused");
    assert_eq!(pool.stats().total_frees, 1);
}

fn free_all_counts_every_live_block_as_freed(new: fn() -> Pool) {
    let mut pool = new();
    for i in 1..=50 {
        pool.alloc(i, 8).unwrap();
    }
    let bytes: usize = (1..=50).map(|i| i * 8).sum();
    assert_eq!(pool.stats().size, bytes);
    pool.free_all();
    let s = pool.stats();
    assert_eq!((s.size, s.peak_size, s.block_count), (0, bytes, 0));
    assert_eq!((s.total_allocs, s.total_frees), (50, 50));
    // Still usable, still counting.
    pool.alloc(1, 1).unwrap();
    assert_eq!(pool.stats().total_allocs, 51);
}

fn reset_peak_starts_from_the_bytes_in_use(new: fn() -> Pool) {
    let mut pool = new();
    let big = pool.alloc(1, 1 << 20).unwrap();
    let small = pool.alloc(1, 100).unwrap();
    pool.free(big.as_ptr()).unwrap();
    assert_eq!(pool.stats().peak_size, (1 << 20) + 100);
    pool.reset_peak();
    assert_eq!(pool.stats().peak_size, 100);
    // A phase: the new peak is this phase's high-water mark.
    let phase = pool.alloc(1, 5000).unwrap();
    pool.free(phase.as_ptr()).unwrap();
    assert_eq!(pool.stats().peak_size, 5100);
    assert_eq!(pool.stats().size, 100);
    pool.free(small.as_ptr()).unwrap();
}

fn zero_byte_blocks_count_as_blocks_of_no_bytes(new: fn() -> Pool) {
    let mut pool = new();
    for _ in 0..3 {
        pool.alloc(0, 8).unwrap();
    }
    let s = pool.stats();
    assert_eq!((s.size, s.block_count, s.total_allocs), (0, 3, 3));
}

/// A pool's debug output shows its counters.
#[test]
fn debug_output_shows_the_counters() {
    let mut pool = Pool::new();
    pool.alloc(1, 123).unwrap();
    let shown = format!("{pool:?}");
    assert!(shown.contains("size: 123"), "{shown}");
    assert!(shown.contains("total_allocs: 1"), "{shown}");
}
