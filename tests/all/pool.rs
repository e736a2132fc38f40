//! The pool core's rules, from a Rust caller's side.

use std::cell::Cell;
use std::ffi::c_void;

use cymem_rs::{Allocator, Pool, PoolError};

// Runs each rule as a test of the heap pool and of the arena pool: both
// modes keep the same rules.
rules_for_pools!(
    [heap => cymem_rs::Pool::new, arena => cymem_rs::Pool::arena];
    alloc_returns_zeroed_distinct_blocks_and_counts_bytes,
    memory_is_zeroed_even_when_the_allocator_reuses_dirty_blocks,
    zero_byte_requests_get_unique_non_null_pointers_counted_as_zero,
    overflowing_sizes_are_refused_not_truncated,
    impossible_but_representable_size_is_out_of_memory,
    free_of_unknown_pointer_is_an_error_that_changes_nothing,
    a_block_of_another_pool_is_foreign,
    realloc_moves_contents_zeroes_the_tail_and_releases_the_old_block,
    realloc_refuses_unknown_pointers_and_sizes_that_do_not_grow,
    realloc_grows_a_zero_byte_block,
    free_finds_blocks_among_many,
    pools_can_move_between_threads,
    arena_blocks_are_aligned_like_malloc,
    sizes_around_the_packing_boundary_are_kept_exactly,
);

fn bytes<'a>(ptr: std::ptr::NonNull<c_void>, len: usize) -> &'a mut [u8] {
    // SAFETY: the tests pass a live block of at least `len` bytes, used by
    // one test thread only.
    unsafe { std::slice::from_raw_parts_mut(ptr.as_ptr().cast(), len) }
}

fn alloc_returns_zeroed_distinct_blocks_and_counts_bytes(make: fn() -> Pool) {
    let mut pool = make();
    let a = pool.alloc(10, 4).unwrap();
    let b = pool.alloc(1, 1 << 20).unwrap();
    assert_ne!(a, b);
    assert!(bytes(a, 40).iter().all(|&x| x == 0));
    assert!(bytes(b, 1 << 20).iter().all(|&x| x == 0));
    assert_eq!(pool.size(), 40 + (1 << 20));
    assert_eq!(pool.block_count(), 2);
    assert_eq!(pool.block_size(a.as_ptr()), Some(40));
    assert!(pool.contains(b.as_ptr()));
}

fn memory_is_zeroed_even_when_the_allocator_reuses_dirty_blocks(make: fn() -> Pool) {
    let mut pool = make();
    for _ in 0..100 {
        let p = pool.alloc(1, 256).unwrap();
        let block = bytes(p, 256);
        assert!(block.iter().all(|&x| x == 0));
        block.fill(0xAB);
        pool.free(p.as_ptr()).unwrap();
    }
}

fn zero_byte_requests_get_unique_non_null_pointers_counted_as_zero(make: fn() -> Pool) {
    let mut pool = make();
    let ptrs: Vec<_> = (0..50)
        .map(|i| {
            if i % 2 == 0 {
                pool.alloc(0, 8)
            } else {
                pool.alloc(8, 0)
            }
            .unwrap()
        })
        .collect();
    let mut addrs: Vec<usize> = ptrs.iter().map(|p| p.as_ptr() as usize).collect();
    addrs.sort_unstable();
    addrs.dedup();
    assert_eq!(addrs.len(), 50);
    assert_eq!(pool.size(), 0);
    assert_eq!(pool.block_count(), 50);
    assert_eq!(pool.block_size(ptrs[0].as_ptr()), Some(0));
    for p in ptrs {
        assert_eq!(pool.free(p.as_ptr()), Ok(0));
    }
    assert_eq!(pool.block_count(), 0);
}

fn overflowing_sizes_are_refused_not_truncated(make: fn() -> Pool) {
    let mut pool = make();
    for (number, elem_size) in [
        (usize::MAX, 2),
        (2, usize::MAX),
        (1 << 33, 1 << 33),
        (1, usize::MAX),
        (1, isize::MAX as usize + 1),
    ] {
        assert_eq!(
            pool.alloc(number, elem_size),
            Err(PoolError::SizeOverflow { number, elem_size })
        );
    }
    assert_eq!(pool.size(), 0);
    assert_eq!(pool.block_count(), 0);
}

fn impossible_but_representable_size_is_out_of_memory(make: fn() -> Pool) {
    let mut pool = make();
    let huge = isize::MAX as usize;
    assert_eq!(
        pool.alloc(1, huge),
        Err(PoolError::OutOfMemory { bytes: huge })
    );
    assert_eq!(pool.block_count(), 0);
}

fn free_of_unknown_pointer_is_an_error_that_changes_nothing(make: fn() -> Pool) {
    let mut pool = make();
    let p = pool.alloc(4, 4).unwrap();
    let mut local = 7u64;
    let foreign = (&mut local as *mut u64).cast::<c_void>();
    assert_eq!(
        pool.free(foreign),
        Err(PoolError::UnknownPointer {
            addr: foreign as usize
        })
    );
    assert_eq!(
        pool.free(std::ptr::null_mut()),
        Err(PoolError::UnknownPointer { addr: 0 })
    );
    // An interior pointer is not a block either.
    let interior = p.as_ptr().wrapping_byte_add(4);
    assert!(matches!(
        pool.free(interior),
        Err(PoolError::UnknownPointer { .. })
    ));
    assert_eq!(local, 7);
    assert_eq!((pool.size(), pool.block_count()), (16, 1));

    assert_eq!(pool.free(p.as_ptr()), Ok(16));
    assert_eq!(
        pool.free(p.as_ptr()),
        Err(PoolError::UnknownPointer {
            addr: p.as_ptr() as usize
        })
    );
    assert_eq!((pool.size(), pool.block_count()), (0, 0));
}

fn a_block_of_another_pool_is_foreign(make: fn() -> Pool) {
    let mut a = make();
    let mut b = make();
    let p = a.alloc(1, 8).unwrap();
    assert!(matches!(
        b.free(p.as_ptr()),
        Err(PoolError::UnknownPointer { .. })
    ));
    assert!(a.contains(p.as_ptr()));
}

fn realloc_moves_contents_zeroes_the_tail_and_releases_the_old_block(make: fn() -> Pool) {
    let mut pool = make();
    let p = pool.alloc(1, 16).unwrap();
    bytes(p, 16).copy_from_slice(&[0x5A; 16]);
    let q = pool.realloc(p.as_ptr(), 4096).unwrap();
    let grown = bytes(q, 4096);
    assert!(grown[..16].iter().all(|&x| x == 0x5A));
    assert!(grown[16..].iter().all(|&x| x == 0));
    assert_eq!((pool.size(), pool.block_count()), (4096, 1));
    assert_eq!(pool.block_size(q.as_ptr()), Some(4096));
    if q != p {
        assert!(!pool.contains(p.as_ptr()));
        assert!(pool.free(p.as_ptr()).is_err());
    }
}

fn realloc_refuses_unknown_pointers_and_sizes_that_do_not_grow(make: fn() -> Pool) {
    let mut pool = make();
    let p = pool.alloc(1, 32).unwrap();
    bytes(p, 32).fill(9);
    for smaller_or_equal in [0, 1, 31, 32] {
        assert_eq!(
            pool.realloc(p.as_ptr(), smaller_or_equal),
            Err(PoolError::NotLarger {
                addr: p.as_ptr() as usize,
                current: 32,
                requested: smaller_or_equal
            })
        );
    }
    assert!(bytes(p, 32).iter().all(|&x| x == 9), "block left intact");
    assert_eq!(pool.size(), 32);
    assert!(matches!(
        pool.realloc(std::ptr::null_mut(), 64),
        Err(PoolError::UnknownPointer { addr: 0 })
    ));
    assert!(matches!(
        pool.realloc(p.as_ptr(), usize::MAX),
        Err(PoolError::SizeOverflow { .. })
    ));
    pool.free(p.as_ptr()).unwrap();
    assert!(matches!(
        pool.realloc(p.as_ptr(), 64),
        Err(PoolError::UnknownPointer { .. })
    ));
}

fn realloc_grows_a_zero_byte_block(make: fn() -> Pool) {
    let mut pool = make();
    let p = pool.alloc(0, 0).unwrap();
    let q = pool.realloc(p.as_ptr(), 1).unwrap();
    assert_eq!(bytes(q, 1), &[0]);
    let r = pool.realloc(q.as_ptr(), 100).unwrap();
    assert!(bytes(r, 100).iter().all(|&x| x == 0));
    assert_eq!((pool.size(), pool.block_count()), (100, 1));
}

fn free_finds_blocks_among_many(make: fn() -> Pool) {
    let mut pool = make();
    let ptrs: Vec<_> = (0..20_000)
        .map(|i| pool.alloc(1, 16 + i % 64).unwrap())
        .collect();
    let expected: usize = (0..20_000).map(|i| 16 + i % 64).sum();
    assert_eq!(pool.size(), expected);
    assert_eq!(pool.blocks().count(), 20_000);
    assert_eq!(pool.blocks().map(|(_, size)| size).sum::<usize>(), expected);
    for p in ptrs.iter().step_by(2) {
        pool.free(p.as_ptr()).unwrap();
    }
    assert_eq!(pool.block_count(), 10_000);
    pool.free_all();
    assert_eq!((pool.size(), pool.block_count()), (0, 0));
    // Still usable after free_all.
    assert!(pool.alloc(1, 8).is_ok());
}

// A counting allocator. Counters are per thread: each test runs on its own thread.
thread_local! {
    static MALLOCS: Cell<usize> = const { Cell::new(0) };
    static FREES: Cell<usize> = const { Cell::new(0) };
    /// Fail the n-th malloc call from now (0 = never).
    static FAIL_AT: Cell<usize> = const { Cell::new(0) };
}

unsafe extern "C" fn counting_malloc(size: usize) -> *mut c_void {
    let n = MALLOCS.with(|m| {
        m.set(m.get() + 1);
        m.get()
    });
    if FAIL_AT.with(|f| f.get()) == n {
        MALLOCS.with(|m| m.set(m.get() - 1));
        return std::ptr::null_mut();
    }
    // Dirty memory, so the pool's zeroing is what makes blocks zero.
    // SAFETY: plain libc malloc.
    let p = unsafe { libc::malloc(size) };
    if !p.is_null() {
        // SAFETY: a non-NULL result of `malloc(size)` is writable for `size` bytes.
        unsafe { p.cast::<u8>().write_bytes(0xCD, size) };
    }
    p
}

unsafe extern "C" fn counting_free(ptr: *mut c_void) {
    FREES.with(|f| f.set(f.get() + 1));
    // SAFETY: the pool passes only blocks `counting_malloc` returned, once each.
    unsafe { libc::free(ptr) }
}

fn counting_pool() -> Pool {
    MALLOCS.with(|m| m.set(0));
    FREES.with(|f| f.set(0));
    FAIL_AT.with(|f| f.set(0));
    // SAFETY: counting_malloc/free wrap libc malloc/free.
    Pool::with_allocator(unsafe { Allocator::from_raw(counting_malloc, counting_free) })
}

fn counts() -> (usize, usize) {
    (MALLOCS.with(|m| m.get()), FREES.with(|f| f.get()))
}

#[test]
fn custom_allocator_releases_every_block_exactly_once() {
    let mut pool = counting_pool();
    let mut live = Vec::new();
    for i in 0..100 {
        let p = pool.alloc(i, 3).unwrap();
        assert!(bytes(p, i * 3).iter().all(|&x| x == 0));
        live.push(p);
    }
    for p in live.drain(..50) {
        pool.free(p.as_ptr()).unwrap();
    }
    let grown = pool.realloc(live[0].as_ptr(), 10_000).unwrap();
    assert!(bytes(grown, 10_000)[150..].iter().all(|&x| x == 0));
    let (mallocs, frees) = counts();
    assert_eq!((mallocs, frees), (101, 51));
    drop(pool);
    let (mallocs, frees) = counts();
    assert_eq!(mallocs, frees, "every block freed once when the pool drops");
}

/// A heap pool says so and hands back the allocator it was given: blocks
/// taken through that allocator come from (and are counted by) the same pair.
#[test]
fn a_heap_pool_reports_its_allocator_and_is_not_an_arena() {
    let pool = counting_pool();
    assert!(!pool.is_arena());
    let allocator = pool.allocator().expect("a heap pool has an allocator");
    let block = allocator.alloc_zeroed(24).expect("24 bytes");
    assert_eq!(counts(), (1, 0), "the pool's own counting pair served it");
    // SAFETY: `block` came from this allocator's `malloc`, released once.
    unsafe { (allocator.free_fn())(block.as_ptr().cast()) };
    assert_eq!(counts(), (1, 1));
    assert!(!Pool::new().is_arena() && Pool::new().allocator().is_some());
}

#[test]
fn allocator_failure_is_out_of_memory_and_leaves_the_pool_consistent() {
    let mut pool = counting_pool();
    let p = pool.alloc(1, 64).unwrap();
    bytes(p, 64).fill(1);
    FAIL_AT.with(|f| f.set(2));
    assert_eq!(
        pool.alloc(1, 128),
        Err(PoolError::OutOfMemory { bytes: 128 })
    );
    assert_eq!((pool.size(), pool.block_count()), (64, 1));

    FAIL_AT.with(|f| f.set(2));
    assert_eq!(
        pool.realloc(p.as_ptr(), 1000),
        Err(PoolError::OutOfMemory { bytes: 1000 })
    );
    assert!(bytes(p, 64).iter().all(|&x| x == 1), "old block intact");
    assert_eq!(pool.block_size(p.as_ptr()), Some(64));
    FAIL_AT.with(|f| f.set(0));
    drop(pool);
    let (mallocs, frees) = counts();
    assert_eq!(mallocs, frees);
}

// An allocator that hands out the same static buffer every time: broken.
static mut ONE_BLOCK: [u8; 64] = [0; 64];
unsafe extern "C" fn same_block_malloc(_: usize) -> *mut c_void {
    (&raw mut ONE_BLOCK).cast()
}
unsafe extern "C" fn ignore_free(_: *mut c_void) {}

#[test]
fn an_allocator_returning_a_live_block_twice_is_reported_not_tracked_twice() {
    // SAFETY: the pair breaks `from_raw`'s contract on purpose (the same block
    // twice) for the pool to detect; memory stays sound: the buffer is a
    // static larger than the test's 8-byte blocks, and `ignore_free` never
    // releases it.
    let allocator = unsafe { Allocator::from_raw(same_block_malloc, ignore_free) };
    let mut pool = Pool::with_allocator(allocator);
    let first = pool.alloc(1, 8).unwrap();
    assert!(matches!(
        pool.alloc(1, 8),
        Err(PoolError::AllocatorReturnedLiveBlock { .. })
    ));
    assert_eq!((pool.size(), pool.block_count()), (8, 1));
    pool.free(first.as_ptr()).unwrap();
    assert_eq!(pool.block_count(), 0);
}

#[test]
fn errors_explain_themselves() {
    let msg = PoolError::NotLarger {
        addr: 0x10,
        current: 8,
        requested: 4,
    }
    .to_string();
    assert!(msg.contains("8 bytes") && msg.contains("4 bytes"), "{msg}");
    assert!(PoolError::UnknownPointer { addr: 0xabc }
        .to_string()
        .contains("0xabc"));
    assert!(PoolError::SizeOverflow {
        number: 3,
        elem_size: 5
    }
    .to_string()
    .contains("3 x 5"));
}

fn pools_can_move_between_threads(make: fn() -> Pool) {
    let mut pool = make();
    let p = pool.alloc(1, 64).unwrap().as_ptr() as usize;
    let pool = std::thread::spawn(move || {
        assert_eq!(pool.free(p as *mut c_void), Ok(64));
        pool
    })
    .join()
    .unwrap();
    assert_eq!(pool.block_count(), 0);
}

fn arena_blocks_are_aligned_like_malloc(make: fn() -> Pool) {
    let mut pool = make();
    for size in [1, 3, 7, 16, 33, 100, 4097] {
        let p = pool.alloc(1, size).unwrap();
        assert_eq!(p.as_ptr() as usize % 16, 0, "size {size}");
    }
}

/// The index keeps small sizes packed and big ones aside (the heap table
/// switches at 64 KiB): sizes on both sides of the switch are reported,
/// listed, freed and grown across it exactly, among many small blocks.
fn sizes_around_the_packing_boundary_are_kept_exactly(make: fn() -> Pool) {
    let mut pool = make();
    let mut live = Vec::new();
    for (k, size) in (65_530..65_540).chain([0, 1, 1 << 17]).enumerate() {
        live.push((pool.alloc(1, size).unwrap(), size));
        for filler in 0..k {
            live.push((pool.alloc(1, 8 + filler).unwrap(), 8 + filler));
        }
    }
    let check = |pool: &Pool, live: &[(std::ptr::NonNull<c_void>, usize)]| {
        for &(p, size) in live {
            assert_eq!(pool.block_size(p.as_ptr()), Some(size));
        }
        let mut listed: Vec<_> = pool.blocks().collect();
        let mut expected: Vec<_> = live
            .iter()
            .map(|&(p, s)| (p.as_ptr() as usize, s))
            .collect();
        listed.sort_unstable();
        expected.sort_unstable();
        assert_eq!(listed, expected);
        assert_eq!(pool.size(), live.iter().map(|&(_, s)| s).sum::<usize>());
    };
    check(&pool, &live);
    // Grow each boundary block by one byte, across the switch and beyond.
    for entry in live
        .iter_mut()
        .filter(|(_, s)| (65_530..65_540).contains(s))
    {
        let grown = pool.realloc(entry.0.as_ptr(), entry.1 + 1).unwrap();
        *entry = (grown, entry.1 + 1);
    }
    check(&pool, &live);
    // Free every other block, big and small, each reporting its own size.
    for (p, size) in live.iter().skip(1).step_by(2) {
        assert_eq!(pool.free(p.as_ptr()).unwrap(), *size);
    }
    let kept: Vec<_> = live.iter().step_by(2).copied().collect();
    check(&pool, &kept);
}

#[test]
fn arena_free_and_realloc_keep_their_meaning() {
    let mut pool = Pool::arena();
    assert!(pool.is_arena() && pool.allocator().is_none());
    let a = pool.alloc(4, 8).unwrap();
    bytes(a, 32).fill(3);
    let b = pool.realloc(a.as_ptr(), 64).unwrap();
    assert_ne!(a, b, "arena blocks move on realloc");
    assert!(bytes(b, 64)[..32].iter().all(|&x| x == 3));
    assert!(bytes(b, 64)[32..].iter().all(|&x| x == 0));
    assert!(matches!(
        pool.free(a.as_ptr()),
        Err(PoolError::UnknownPointer { .. })
    ));
    assert_eq!((pool.size(), pool.block_count()), (64, 1));
    pool.free(b.as_ptr()).unwrap();
    assert_eq!((pool.size(), pool.block_count()), (0, 0));
    for _ in 0..10_000 {
        bytes(pool.alloc(1, 100).unwrap(), 100).fill(0xEE);
    }
    pool.free_all();
    assert_eq!((pool.size(), pool.block_count()), (0, 0));
    // The reset arena reuses its dirty chunks; blocks are zeroed anyway.
    for _ in 0..100 {
        let again = pool.alloc(1, 100).unwrap();
        assert!(bytes(again, 100).iter().all(|&x| x == 0));
    }
}

/// The arena's index is a log split into runs, one per bumpalo chunk: every
/// block stays findable across many chunks (small and huge ones, realloc
/// moves in between), and interior pointers are refused, touching nothing.
#[test]
fn arena_lookups_span_many_chunks_and_refuse_interior_pointers() {
    let mut pool = Pool::arena();
    let mut live = Vec::new();
    for i in 0..60_000usize {
        // Some blocks bigger than a chunk force fresh chunks out of order.
        let size = if i % 5000 == 4999 {
            1 << 20
        } else {
            16 + i % 300
        };
        let p = pool.alloc(1, size).unwrap();
        live.push((p, size));
        if i % 7 == 0 {
            let (old, old_size) = live.swap_remove(live.len() / 2);
            let moved = pool.realloc(old.as_ptr(), old_size + 40).unwrap();
            live.push((moved, old_size + 40));
            assert_eq!(pool.block_size(old.as_ptr()), None, "moved away");
        }
    }
    assert_eq!(pool.block_count(), live.len());
    for &(p, size) in &live {
        assert_eq!(pool.block_size(p.as_ptr()), Some(size));
        let inside = p.as_ptr().cast::<u8>().wrapping_add(8).cast::<c_void>();
        assert!(matches!(
            pool.free(inside),
            Err(PoolError::UnknownPointer { .. })
        ));
    }
    assert_eq!(
        pool.block_count(),
        live.len(),
        "refused frees changed nothing"
    );
    for (k, &(p, size)) in live.iter().enumerate().filter(|(k, _)| k % 2 == 0) {
        assert_eq!(pool.free(p.as_ptr()).unwrap(), size, "block {k}");
        assert!(pool.free(p.as_ptr()).is_err(), "double free of block {k}");
    }
    let rest: usize = live.iter().skip(1).step_by(2).map(|&(_, s)| s).sum();
    assert_eq!(pool.size(), rest);
    assert_eq!(pool.blocks().map(|(_, s)| s).sum::<usize>(), rest);
}

/// A realistic build: rows of records, each grown by realloc, some freed.
fn build_rows(pool: &mut Pool) -> Result<(), PoolError> {
    let rows = pool.alloc(20, 8)?;
    bytes(rows, 160).fill(1);
    for i in 0..20 {
        let mut row = pool.alloc(4, 8)?;
        for shift in 0..3 {
            row = pool.realloc(row.as_ptr(), 64 << shift)?;
        }
        if i % 3 == 0 {
            pool.free(row.as_ptr())?;
        }
    }
    Ok(())
}

#[test]
fn every_allocation_failure_point_leaves_a_consistent_pool_and_no_leak() {
    let mut pool = counting_pool();
    build_rows(&mut pool).unwrap();
    drop(pool);
    let (calls, _) = counts();
    assert!(calls >= 80, "the workload makes {calls} allocator calls");
    for k in 1..=calls {
        let mut pool = counting_pool();
        FAIL_AT.with(|f| f.set(k));
        let result = build_rows(&mut pool);
        assert!(
            matches!(result, Err(PoolError::OutOfMemory { .. })),
            "failure at call {k}: {result:?}"
        );
        // The pool's own accounting agrees with its blocks.
        let listed: usize = pool.blocks().map(|(_, size)| size).sum();
        assert_eq!(listed, pool.size(), "call {k}");
        assert_eq!(pool.blocks().count(), pool.block_count(), "call {k}");
        let (mallocs, frees) = counts();
        assert_eq!(mallocs - frees, pool.block_count(), "call {k}: live blocks");
        drop(pool);
        let (mallocs, frees) = counts();
        assert_eq!(mallocs, frees, "call {k}: every block freed once");
    }
}
