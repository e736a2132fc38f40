//! The block observer (what the Python binding reports to tracemalloc
//! through): told of every block handed out and taken back, by every kind
//! of pool, whichever way the block goes.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::ffi::c_void;

use cymem_rs::pool::BlockObserver;
use cymem_rs::{DebugOptions, Pool};

thread_local! {
    /// What the observer was told is live: address -> size.
    static SEEN: RefCell<BTreeMap<usize, usize>> = const { RefCell::new(BTreeMap::new()) };
}

fn added(addr: usize, size: usize) {
    let before = SEEN.with(|seen| seen.borrow_mut().insert(addr, size));
    assert_eq!(before, None, "block {addr:#x} reported twice");
}

fn removed(addr: usize) {
    let before = SEEN.with(|seen| seen.borrow_mut().remove(&addr));
    assert!(before.is_some(), "block {addr:#x} removed but never added");
}

static OBSERVER: BlockObserver = BlockObserver { added, removed };

fn seen() -> BTreeMap<usize, usize> {
    SEEN.with(|seen| seen.borrow().clone())
}

fn assert_seen_is_live(pool: &Pool) {
    assert_eq!(seen(), pool.blocks().collect::<BTreeMap<_, _>>());
}

fn debug_heap() -> Pool {
    Pool::new().with_debug(DebugOptions::default())
}

fn debug_arena() -> Pool {
    Pool::arena().with_debug(DebugOptions::default())
}

fn every_block_event_is_reported(make: fn() -> Pool) {
    SEEN.with(|seen| seen.borrow_mut().clear());
    let mut pool = make();
    pool.set_observer(Some(&OBSERVER)).unwrap();
    let blocks: Vec<*mut c_void> = (1..=20)
        .map(|n| pool.alloc(n, 8).unwrap().as_ptr())
        .collect();
    let empty = pool.alloc(0, 8).unwrap().as_ptr();
    assert_eq!(seen().len(), 21);
    assert_eq!(seen()[&(empty as usize)], 0, "a 0-byte block is 0 bytes");
    assert_seen_is_live(&pool);
    for &p in blocks.iter().step_by(3) {
        pool.free(p).unwrap();
    }
    assert_seen_is_live(&pool);
    let grown = pool.realloc(blocks[1], 4096).unwrap().as_ptr();
    assert_eq!(seen().get(&(grown as usize)), Some(&4096));
    assert_seen_is_live(&pool);
    // Refused operations report nothing.
    assert!(pool.free(blocks[0]).is_err());
    assert!(pool.realloc(grown, 16).is_err());
    assert_seen_is_live(&pool);
    pool.free_all();
    assert!(seen().is_empty(), "free_all took every block back");
    // A scope's end and `clear` take their blocks back too.
    let kept = pool.alloc(1, 32).unwrap().as_ptr();
    let mark = pool.mark().unwrap();
    for n in 1..=4 {
        pool.alloc(n, 10).unwrap();
    }
    assert_eq!(seen().len(), 5);
    pool.release_to(mark).unwrap();
    assert_eq!(seen().keys().copied().collect::<Vec<_>>(), [kept as usize]);
    pool.clear().unwrap();
    assert!(seen().is_empty(), "clear took every block back");
    for n in 1..=5 {
        pool.alloc(n, 100).unwrap();
    }
    assert_eq!(seen().len(), 5);
    drop(pool);
    assert!(seen().is_empty(), "the pool's end took every block back");
}

fn blocks_before_the_observer_are_not_reported(make: fn() -> Pool) {
    SEEN.with(|seen| seen.borrow_mut().clear());
    let mut pool = make();
    let early = pool.alloc(1, 64).unwrap().as_ptr();
    pool.set_observer(Some(&OBSERVER)).unwrap();
    let late = pool.alloc(1, 64).unwrap().as_ptr();
    assert_eq!(seen().keys().copied().collect::<Vec<_>>(), [late as usize]);
    pool.free(late).unwrap();
    assert!(seen().is_empty());
    pool.set_observer(None).unwrap();
    pool.alloc(1, 8).unwrap();
    pool.free(early).unwrap();
    assert!(seen().is_empty(), "a removed observer hears nothing");
}

rules_for_pools!(
    [
        heap => cymem_rs::Pool::new,
        arena => cymem_rs::Pool::arena,
        debug_heap => super::debug_heap,
        debug_arena => super::debug_arena,
    ];
    every_block_event_is_reported,
    blocks_before_the_observer_are_not_reported,
);
