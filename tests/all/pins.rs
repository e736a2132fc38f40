//! Pinned blocks (what a live zero-copy view holds): `free` and `realloc`
//! refuse them and leave them intact, until the matching unpins.

use std::ffi::c_void;

use cymem_rs::{Pool, PoolError};

// Runs each rule on a heap pool, an arena pool and a debug pool (whose
// guarded blocks must obey pins the same way).
rules_for_pools!(
    [heap => cymem_rs::Pool::new, arena => cymem_rs::Pool::arena, debug => cymem_rs::Pool::new_debug];
    pinned_free_is_refused_and_the_block_is_untouched,
    pinned_realloc_is_refused_and_the_block_is_untouched,
    unpin_then_free_works,
    pins_nest_and_are_counted_per_block,
    unknown_pointers_cannot_be_pinned_or_unpinned,
    unpin_without_pin_is_an_error_not_an_underflow,
    other_blocks_are_unaffected_by_a_pin,
    zero_byte_blocks_can_be_pinned,
    free_all_releases_pinned_blocks_and_drops_the_pins,
);

fn fill(ptr: *mut c_void, len: usize, byte: u8) {
    // SAFETY: the tests pass a live block of at least `len` bytes.
    unsafe { ptr.cast::<u8>().write_bytes(byte, len) }
}

fn all_equal(ptr: *const c_void, len: usize, byte: u8) -> bool {
    // SAFETY: the tests pass a live block of at least `len` bytes.
    unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len) }
        .iter()
        .all(|&b| b == byte)
}

fn pinned_free_is_refused_and_the_block_is_untouched(make: fn() -> Pool) {
    let mut pool = make();
    let p = pool.alloc(64, 1).unwrap().as_ptr();
    fill(p, 64, 0xAB);
    pool.pin(p).unwrap();
    let stats = pool.stats();
    assert_eq!(
        pool.free(p),
        Err(PoolError::BlockInUse {
            addr: p as usize,
            views: 1
        })
    );
    assert_eq!(pool.stats(), stats, "a refused free changes no counter");
    assert_eq!(pool.block_size(p), Some(64));
    assert!(all_equal(p, 64, 0xAB));
    let message = pool.free(p).unwrap_err().to_string();
    assert!(message.contains(&format!("{:#x}", p as usize)), "{message}");
    assert!(message.contains("1 live view"), "{message}");
}

fn pinned_realloc_is_refused_and_the_block_is_untouched(make: fn() -> Pool) {
    let mut pool = make();
    let p = pool.alloc(8, 1).unwrap().as_ptr();
    fill(p, 8, 7);
    pool.pin(p).unwrap();
    pool.pin(p).unwrap();
    assert_eq!(
        pool.realloc(p, 4096),
        Err(PoolError::BlockInUse {
            addr: p as usize,
            views: 2
        })
    );
    assert_eq!(pool.block_size(p), Some(8));
    assert_eq!(pool.stats().total_reallocs, 0);
    assert!(all_equal(p, 8, 7));
}

fn unpin_then_free_works(make: fn() -> Pool) {
    let mut pool = make();
    let p = pool.alloc(16, 1).unwrap().as_ptr();
    pool.pin(p).unwrap();
    pool.unpin(p).unwrap();
    assert_eq!(pool.pins(p), 0);
    assert_eq!(pool.free(p), Ok(16));
    assert_eq!(pool.block_count(), 0);

    let q = pool.alloc(16, 1).unwrap().as_ptr();
    pool.pin(q).unwrap();
    pool.unpin(q).unwrap();
    let grown = pool.realloc(q, 32).unwrap();
    assert_eq!(pool.block_size(grown.as_ptr()), Some(32));
}

fn pins_nest_and_are_counted_per_block(make: fn() -> Pool) {
    let mut pool = make();
    let p = pool.alloc(1, 1).unwrap().as_ptr();
    for expected in 1..=3 {
        pool.pin(p).unwrap();
        assert_eq!(pool.pins(p), expected);
    }
    pool.unpin(p).unwrap();
    pool.unpin(p).unwrap();
    assert_eq!(pool.pins(p), 1);
    assert!(matches!(
        pool.free(p),
        Err(PoolError::BlockInUse { views: 1, .. })
    ));
    pool.unpin(p).unwrap();
    assert_eq!(pool.free(p), Ok(1));
}

fn unknown_pointers_cannot_be_pinned_or_unpinned(make: fn() -> Pool) {
    let mut pool = make();
    let local = 0u64;
    let foreign = (&raw const local).cast::<c_void>();
    let unknown = PoolError::UnknownPointer {
        addr: foreign as usize,
    };
    assert_eq!(pool.pin(foreign), Err(unknown));
    assert_eq!(pool.unpin(foreign), Err(unknown));
    assert_eq!(pool.pins(foreign), 0);
    assert!(pool.pin(std::ptr::null()).is_err());

    // A freed block is unknown too.
    let p = pool.alloc(4, 1).unwrap().as_ptr();
    pool.free(p).unwrap();
    assert!(matches!(pool.pin(p), Err(PoolError::UnknownPointer { .. })));
}

fn unpin_without_pin_is_an_error_not_an_underflow(make: fn() -> Pool) {
    let mut pool = make();
    let p = pool.alloc(4, 1).unwrap().as_ptr();
    let not_pinned = Err(PoolError::NotPinned { addr: p as usize });
    assert_eq!(pool.unpin(p), not_pinned);
    pool.pin(p).unwrap();
    pool.unpin(p).unwrap();
    assert_eq!(pool.unpin(p), not_pinned);
    assert_eq!(pool.pins(p), 0);
    // Still freeable: the failed unpins left nothing behind.
    assert_eq!(pool.free(p), Ok(4));
}

fn other_blocks_are_unaffected_by_a_pin(make: fn() -> Pool) {
    let mut pool = make();
    let pinned = pool.alloc(8, 1).unwrap().as_ptr();
    let blocks: Vec<_> = (0..100)
        .map(|_| pool.alloc(8, 1).unwrap().as_ptr())
        .collect();
    pool.pin(pinned).unwrap();
    for &b in &blocks[..50] {
        pool.free(b).unwrap();
    }
    for &b in &blocks[50..] {
        pool.realloc(b, 16).unwrap();
    }
    assert_eq!(pool.block_count(), 51);
    assert_eq!(pool.pins(pinned), 1);
}

fn zero_byte_blocks_can_be_pinned(make: fn() -> Pool) {
    let mut pool = make();
    let p = pool.alloc(0, 8).unwrap().as_ptr();
    pool.pin(p).unwrap();
    assert!(matches!(pool.free(p), Err(PoolError::BlockInUse { .. })));
    pool.unpin(p).unwrap();
    assert_eq!(pool.free(p), Ok(0));
}

fn free_all_releases_pinned_blocks_and_drops_the_pins(make: fn() -> Pool) {
    let mut pool = make();
    let p = pool.alloc(32, 1).unwrap().as_ptr();
    pool.pin(p).unwrap();
    pool.free_all();
    assert_eq!(pool.block_count(), 0);
    assert_eq!(pool.pins(p), 0);
    // New blocks (possibly at the same address) start unpinned.
    let q = pool.alloc(32, 1).unwrap().as_ptr();
    assert_eq!(pool.pins(q), 0);
    assert_eq!(pool.free(q), Ok(32));
}

#[test]
fn many_pins_come_and_go() {
    let mut pool = Pool::new();
    let blocks: Vec<_> = (0..1000)
        .map(|_| pool.alloc(4, 1).unwrap().as_ptr())
        .collect();
    for &b in &blocks {
        pool.pin(b).unwrap();
    }
    for &b in &blocks {
        assert_eq!(pool.pins(b), 1);
        pool.unpin(b).unwrap();
    }
    for &b in &blocks {
        pool.free(b).unwrap();
    }
    assert_eq!(pool.block_count(), 0);
}
