//! Lifetimes shorter than the pool's: `clear`, scopes (`mark` /
//! `release_to`), cleanup callbacks and limits, in every kind of pool.

use std::cell::RefCell;
use std::ffi::c_void;

use cymem_rs::pool::Mark;
use cymem_rs::{Allocator, DebugOptions, Pool, PoolError, SharedPool};

fn debug_arena() -> Pool {
    Pool::arena().with_debug(DebugOptions::default())
}

unsafe extern "C" fn plain_malloc(size: usize) -> *mut c_void {
    // SAFETY: C `malloc` accepts any size.
    unsafe { libc::malloc(size) }
}

unsafe extern "C" fn plain_free(ptr: *mut c_void) {
    // SAFETY: the pool passes only blocks `plain_malloc` returned, once each.
    unsafe { libc::free(ptr) }
}

/// A pool on a malloc/free pair without the calloc/realloc accelerators.
fn custom() -> Pool {
    // SAFETY: the pair wraps libc's malloc and free.
    Pool::with_allocator(unsafe { Allocator::from_raw(plain_malloc, plain_free) })
}

rules_for_pools!(
    [heap => cymem_rs::Pool::new, arena => cymem_rs::Pool::arena,
     debug => cymem_rs::Pool::new_debug, debug_arena => super::debug_arena,
     custom => super::custom];
    clear_frees_every_block_and_keeps_the_pool_usable,
    clear_refuses_pinned_blocks_and_changes_nothing,
    release_to_frees_only_the_blocks_since_the_mark,
    releasing_an_outer_mark_closes_the_inner_scopes,
    an_older_block_grown_inside_a_scope_survives_it,
    a_scoped_block_grown_inside_the_scope_is_released_at_its_new_address,
    stale_and_foreign_marks_are_refused,
    a_pinned_block_since_the_mark_refuses_the_release,
    clear_keeps_open_scopes_open,
    cleanups_run_newest_first_before_the_blocks_are_freed,
    scope_cleanups_run_at_release_to_and_pool_cleanups_at_clear,
    cleanups_left_run_when_the_pool_drops,
    the_limit_refuses_allocs_and_growth_and_changes_nothing,
    a_limit_below_the_live_bytes_refuses_until_enough_is_freed,
    a_shared_pool_runs_cleanups_outside_its_lock,
);

fn fill(ptr: *mut c_void, len: usize, byte: u8) {
    // SAFETY: the tests pass a live block of at least `len` bytes.
    unsafe { ptr.cast::<u8>().write_bytes(byte, len) }
}

fn alloc(pool: &mut Pool, bytes: usize) -> *mut c_void {
    pool.alloc(bytes, 1).unwrap().as_ptr()
}

fn clear_frees_every_block_and_keeps_the_pool_usable(make: fn() -> Pool) {
    let mut pool = make();
    let blocks: Vec<_> = (1..=5).map(|n| alloc(&mut pool, n * 10)).collect();
    pool.free(blocks[0]).unwrap();
    let before = pool.stats();
    assert_eq!(before.size, 140);
    pool.clear().unwrap();
    let after = pool.stats();
    assert_eq!((after.size, after.block_count), (0, 0));
    assert_eq!(after.total_allocs, before.total_allocs);
    assert_eq!(after.total_frees, before.total_frees + 4);
    assert_eq!(after.peak_size, 150, "the peak stays until reset_peak");
    for &p in &blocks {
        assert!(!pool.contains(p));
        assert!(pool.free(p).is_err(), "cleared blocks are gone");
    }
    let p = alloc(&mut pool, 32);
    fill(p, 32, 7);
    assert_eq!(pool.size(), 32);
    pool.reset_peak();
    assert_eq!(pool.stats().peak_size, 32);
    pool.clear().unwrap();
    pool.clear().unwrap();
    assert_eq!(pool.block_count(), 0);
}

fn clear_refuses_pinned_blocks_and_changes_nothing(make: fn() -> Pool) {
    let mut pool = make();
    let a = alloc(&mut pool, 16);
    let b = alloc(&mut pool, 16);
    pool.pin(b).unwrap();
    let stats = pool.stats();
    assert_eq!(
        pool.clear(),
        Err(PoolError::BlockInUse {
            addr: b as usize,
            views: 1
        })
    );
    assert_eq!(pool.stats(), stats);
    assert!(pool.contains(a) && pool.contains(b));
    pool.unpin(b).unwrap();
    pool.clear().unwrap();
    assert_eq!(pool.block_count(), 0);
}

fn release_to_frees_only_the_blocks_since_the_mark(make: fn() -> Pool) {
    let mut pool = make();
    let before = alloc(&mut pool, 8);
    let mark = pool.mark().unwrap();
    assert_eq!(pool.scope_depth(), 1);
    let inside: Vec<_> = (0..100).map(|n| alloc(&mut pool, n)).collect();
    pool.free(inside[3]).unwrap();
    assert_eq!(pool.block_count(), 100);
    pool.release_to(mark).unwrap();
    assert_eq!(pool.scope_depth(), 0);
    assert_eq!(pool.block_count(), 1);
    assert_eq!(pool.size(), 8);
    assert!(pool.contains(before));
    assert!(inside.iter().all(|&p| !pool.contains(p)));
    let stats = pool.stats();
    assert_eq!(stats.total_frees, 100, "each block freed once");
    // Blocks after the scope are ordinary again.
    let after = alloc(&mut pool, 4);
    pool.free(after).unwrap();
    pool.free(before).unwrap();
}

fn releasing_an_outer_mark_closes_the_inner_scopes(make: fn() -> Pool) {
    let mut pool = make();
    let outer = pool.mark().unwrap();
    let a = alloc(&mut pool, 10);
    let inner = pool.mark().unwrap();
    let b = alloc(&mut pool, 20);
    let innermost = pool.mark().unwrap();
    let c = alloc(&mut pool, 30);
    assert_eq!(pool.scope_depth(), 3);
    pool.release_to(innermost).unwrap();
    assert!(pool.contains(a) && pool.contains(b) && !pool.contains(c));
    let d = alloc(&mut pool, 40);
    // `d` belongs to `inner`, the innermost open scope now.
    pool.release_to(outer).unwrap();
    assert_eq!(pool.scope_depth(), 0);
    assert_eq!(pool.block_count(), 0);
    assert!(!pool.contains(d));
    assert_eq!(
        pool.release_to(inner),
        Err(PoolError::BadMark {
            mark: inner.to_raw()
        })
    );
}

fn an_older_block_grown_inside_a_scope_survives_it(make: fn() -> Pool) {
    let mut pool = make();
    let old = alloc(&mut pool, 8);
    fill(old, 8, 0x5A);
    let mark = pool.mark().unwrap();
    let grown = pool.realloc(old, 4096).unwrap().as_ptr();
    let temp = alloc(&mut pool, 64);
    pool.release_to(mark).unwrap();
    assert!(
        pool.contains(grown),
        "a block from before the mark survives"
    );
    assert!(!pool.contains(temp));
    assert_eq!(pool.block_size(grown), Some(4096));
    // SAFETY: `grown` is live with 4096 bytes.
    let head = unsafe { std::slice::from_raw_parts(grown.cast::<u8>(), 8) };
    assert!(head.iter().all(|&b| b == 0x5A));
    pool.free(grown).unwrap();
}

fn a_scoped_block_grown_inside_the_scope_is_released_at_its_new_address(make: fn() -> Pool) {
    let mut pool = make();
    let outer = pool.mark().unwrap();
    let p = alloc(&mut pool, 8);
    let inner = pool.mark().unwrap();
    // Grown inside an inner scope, it still belongs to the outer one.
    let q = pool.realloc(p, 100_000).unwrap().as_ptr();
    pool.release_to(inner).unwrap();
    assert!(pool.contains(q));
    pool.release_to(outer).unwrap();
    assert!(!pool.contains(q));
    assert_eq!(pool.block_count(), 0);
    assert_eq!(pool.stats().total_frees, 1);
}

fn stale_and_foreign_marks_are_refused(make: fn() -> Pool) {
    let mut pool = make();
    let mut other = make();
    let foreign = other.mark().unwrap();
    let p = alloc(&mut pool, 8);
    assert_eq!(
        pool.release_to(foreign),
        Err(PoolError::BadMark {
            mark: foreign.to_raw()
        })
    );
    let mark = pool.mark().unwrap();
    let q = alloc(&mut pool, 8);
    assert!(pool.release_to(foreign).is_err());
    assert!(pool.release_to(Mark::from_raw(0)).is_err());
    assert!(pool.contains(q), "a refused release changes nothing");
    pool.release_to(mark).unwrap();
    let message = pool.release_to(mark).unwrap_err().to_string();
    assert!(message.contains("not open in this pool"), "{message}");
    assert!(pool.contains(p));
    other.release_to(foreign).unwrap();
}

fn a_pinned_block_since_the_mark_refuses_the_release(make: fn() -> Pool) {
    let mut pool = make();
    let old = alloc(&mut pool, 8);
    pool.pin(old).unwrap();
    let mark = pool.mark().unwrap();
    let a = alloc(&mut pool, 8);
    let b = alloc(&mut pool, 8);
    pool.pin(b).unwrap();
    let stats = pool.stats();
    assert_eq!(
        pool.release_to(mark),
        Err(PoolError::BlockInUse {
            addr: b as usize,
            views: 1
        })
    );
    assert_eq!(pool.stats(), stats, "nothing released");
    assert!(pool.contains(a) && pool.contains(b));
    assert_eq!(pool.scope_depth(), 1, "the scope stays open");
    pool.unpin(b).unwrap();
    // A pinned block from before the mark does not stop it.
    pool.release_to(mark).unwrap();
    assert!(pool.contains(old) && !pool.contains(a));
    pool.unpin(old).unwrap();
}

fn clear_keeps_open_scopes_open(make: fn() -> Pool) {
    let mut pool = make();
    let mark = pool.mark().unwrap();
    alloc(&mut pool, 8);
    pool.clear().unwrap();
    assert_eq!(pool.scope_depth(), 1);
    let p = alloc(&mut pool, 8);
    pool.release_to(mark).unwrap();
    assert!(!pool.contains(p));
    assert_eq!(pool.stats().total_frees, 2);
}

thread_local! {
    /// What the cleanups of the running test saw: (id, first byte read).
    static RAN: RefCell<Vec<(usize, u8)>> = const { RefCell::new(Vec::new()) };
}

/// A cleanup's data: its id, and a block it reads (may be NULL).
struct Note {
    id: usize,
    block: *const u8,
}

unsafe extern "C" fn run_note(data: *mut c_void) {
    // SAFETY: `data` is a `Box<Note>` leaked by `add_note`, run once.
    let note = unsafe { Box::from_raw(data.cast::<Note>()) };
    let seen = if note.block.is_null() {
        0
    } else {
        // SAFETY: cleanups run before the blocks are freed; the tests pass
        // a block that is live when the cleanup is added.
        unsafe { *note.block }
    };
    RAN.with(|ran| ran.borrow_mut().push((note.id, seen)));
}

fn add_note(pool: &mut Pool, id: usize, block: *const c_void) {
    let note = Box::into_raw(Box::new(Note {
        id,
        block: block.cast(),
    }));
    // SAFETY: `run_note` takes back the box once and reads `block`, which
    // the pool keeps live until after its cleanups.
    unsafe { pool.add_cleanup(run_note, note.cast()) }.unwrap();
}

fn ran() -> Vec<(usize, u8)> {
    RAN.with(|ran| std::mem::take(&mut *ran.borrow_mut()))
}

fn cleanups_run_newest_first_before_the_blocks_are_freed(make: fn() -> Pool) {
    ran();
    let mut pool = make();
    let p = alloc(&mut pool, 16);
    fill(p, 16, 0xC3);
    add_note(&mut pool, 1, p);
    add_note(&mut pool, 2, std::ptr::null());
    add_note(&mut pool, 3, p);
    pool.clear().unwrap();
    assert_eq!(ran(), [(3, 0xC3), (2, 0), (1, 0xC3)]);
    pool.clear().unwrap();
    assert_eq!(ran(), [], "clear forgets the cleanups it ran");
}

fn scope_cleanups_run_at_release_to_and_pool_cleanups_at_clear(make: fn() -> Pool) {
    ran();
    let mut pool = make();
    add_note(&mut pool, 1, std::ptr::null());
    let outer = pool.mark().unwrap();
    add_note(&mut pool, 2, std::ptr::null());
    let inner = pool.mark().unwrap();
    let p = alloc(&mut pool, 4);
    fill(p, 4, 9);
    add_note(&mut pool, 3, p);
    pool.release_to(inner).unwrap();
    assert_eq!(ran(), [(3, 9)]);
    add_note(&mut pool, 4, std::ptr::null());
    pool.release_to(outer).unwrap();
    assert_eq!(ran(), [(4, 0), (2, 0)]);
    pool.clear().unwrap();
    assert_eq!(ran(), [(1, 0)]);
}

fn cleanups_left_run_when_the_pool_drops(make: fn() -> Pool) {
    ran();
    let mut pool = make();
    let p = alloc(&mut pool, 4);
    fill(p, 4, 0x11);
    add_note(&mut pool, 1, p);
    pool.mark().unwrap();
    add_note(&mut pool, 2, p);
    drop(pool);
    assert_eq!(ran(), [(2, 0x11), (1, 0x11)]);
}

fn the_limit_refuses_allocs_and_growth_and_changes_nothing(make: fn() -> Pool) {
    let mut pool = make();
    assert_eq!(pool.limit(), None);
    pool.set_limit(Some(100)).unwrap();
    assert_eq!(pool.limit(), Some(100));
    let a = alloc(&mut pool, 60);
    fill(a, 60, 0x77);
    let stats = pool.stats();
    let refused = pool.alloc(41, 1).unwrap_err();
    assert_eq!(
        refused,
        PoolError::LimitExceeded {
            limit: 100,
            live: 60,
            requested: 41
        }
    );
    assert!(
        refused.to_string().contains("limit of 100 bytes"),
        "{refused}"
    );
    // Growth past the limit in the middle of a realloc: the block is intact.
    assert!(matches!(
        pool.realloc(a, 101),
        Err(PoolError::LimitExceeded { limit: 100, .. })
    ));
    assert!(pool.alloc(usize::MAX / 2, 1).is_err());
    assert_eq!(pool.stats(), stats, "refusals change nothing");
    assert_eq!(pool.block_size(a), Some(60));
    // SAFETY: `a` is live with 60 bytes.
    assert!(unsafe { std::slice::from_raw_parts(a.cast::<u8>(), 60) }
        .iter()
        .all(|&b| b == 0x77));
    let a = pool.realloc(a, 100).unwrap().as_ptr();
    assert_eq!(pool.size(), 100, "exactly the limit is allowed");
    assert!(pool.alloc(0, 1).is_ok(), "0-byte blocks fit any limit");
    pool.free(a).unwrap();
    alloc(&mut pool, 100);
    pool.set_limit(None).unwrap();
    alloc(&mut pool, 1000);
    pool.set_limit(Some(0)).unwrap();
    assert_eq!(pool.limit(), None, "0 means no limit");
}

fn a_limit_below_the_live_bytes_refuses_until_enough_is_freed(make: fn() -> Pool) {
    let mut pool = make();
    let a = alloc(&mut pool, 50);
    let b = alloc(&mut pool, 50);
    pool.set_limit(Some(60)).unwrap();
    assert!(pool.alloc(1, 1).is_err());
    // A realloc that does not grow is refused for that, not for the limit.
    assert!(matches!(
        pool.realloc(a, 50),
        Err(PoolError::NotLarger {
            current: 50,
            requested: 50,
            ..
        })
    ));
    pool.free(a).unwrap();
    assert!(pool.alloc(10, 1).is_ok());
    assert!(pool.alloc(1, 1).is_err());
    pool.free(b).unwrap();
}

thread_local! {
    /// What a cleanup got when it called back into its pool.
    static REENTRY: RefCell<Vec<Result<(), PoolError>>> = const { RefCell::new(Vec::new()) };
}

unsafe extern "C" fn touch_the_pool(data: *mut c_void) {
    // SAFETY: the test passes its `SharedPool`, alive for the whole test.
    let shared = unsafe { &*data.cast::<SharedPool>() };
    let results = [
        shared.run(|p| p.alloc(1, 1).map(drop)),
        shared.run(|p| p.mark().map(drop)),
        shared.clear(),
        shared.run(|p| {
            let block = p.blocks().next().map(|(addr, _)| addr as *mut c_void);
            p.free(block.unwrap_or(std::ptr::null_mut())).map(drop)
        }),
        // What the pool says of itself meanwhile.
        match shared.with(|p| p.is_releasing()) {
            Ok(true) => Err(PoolError::Releasing),
            other => other.map(drop),
        },
    ];
    REENTRY.with(|r| r.borrow_mut().extend(results));
}

fn a_shared_pool_runs_cleanups_outside_its_lock(make: fn() -> Pool) {
    REENTRY.with(|r| r.borrow_mut().clear());
    let shared = SharedPool::locked(make());
    let data = (&raw const shared).cast_mut().cast::<c_void>();
    shared
        .with(|p| {
            p.alloc(8, 1).unwrap();
            // SAFETY: `touch_the_pool` only uses the SharedPool, which outlives
            // the pool's cleanups (they run by `clear` below, in this test).
            unsafe { p.add_cleanup(touch_the_pool, data) }.unwrap();
        })
        .unwrap();
    shared.clear().unwrap();
    let seen = REENTRY.with(|r| std::mem::take(&mut *r.borrow_mut()));
    assert_eq!(seen, vec![Err(PoolError::Releasing); 5]);
    shared
        .with(|p| {
            assert_eq!(p.block_count(), 0);
            assert!(!p.is_releasing());
            p.alloc(8, 1).unwrap();
        })
        .unwrap();
}

#[test]
fn the_live_pool_report_shows_the_limit() {
    let mut pool = Pool::named("limited-for-the-report");
    pool.set_limit(Some(4096)).unwrap();
    let info = cymem_rs::live_pools()
        .into_iter()
        .find(|p| p.name.as_deref() == Some("limited-for-the-report"))
        .expect("listed");
    assert_eq!(info.limit, Some(4096));
    let report = cymem_rs::registry::report();
    let line = report
        .lines()
        .find(|l| l.contains("limited-for-the-report"))
        .expect("a line for the pool");
    assert!(line.contains("heap,limit=4096"), "{line}");
    pool.set_limit(None).unwrap();
    let report = cymem_rs::registry::report();
    let line = report
        .lines()
        .find(|l| l.contains("limited-for-the-report"))
        .expect("a line for the pool");
    assert!(!line.contains("limit="), "{line}");
}

unsafe extern "C" fn do_nothing(_: *mut c_void) {}

/// `cleanups()` lists what waits to run, the pool's own first, then each
/// open scope's, oldest first; a closed scope's leave the list.
#[test]
fn the_waiting_cleanups_are_listed_in_order() {
    let mut pool = Pool::new();
    let listed = |pool: &Pool| {
        pool.cleanups()
            .map(|(_, data)| data as usize)
            .collect::<Vec<_>>()
    };
    assert!(listed(&pool).is_empty());
    // SAFETY: `do_nothing` reads nothing; the data are plain numbers.
    unsafe { pool.add_cleanup(do_nothing, 1 as *mut c_void) }.unwrap();
    let mark = pool.mark().unwrap();
    // SAFETY: as above.
    unsafe { pool.add_cleanup(do_nothing, 2 as *mut c_void) }.unwrap();
    // SAFETY: as above.
    unsafe { pool.add_cleanup(do_nothing, 3 as *mut c_void) }.unwrap();
    assert_eq!(listed(&pool), [1, 2, 3]);
    assert!(pool
        .cleanups()
        .all(|(func, _)| std::ptr::fn_addr_eq(func, do_nothing as cymem_rs::pool::CleanupFn)));
    pool.release_to(mark).unwrap();
    assert_eq!(listed(&pool), [1]);
    pool.clear().unwrap();
    assert!(listed(&pool).is_empty());
}
