//! Debug mode, from a Rust caller's side: deliberate overruns, underruns and
//! writes after free are reported with the block's size and allocation
//! number, and every block still goes back to its allocator exactly once.

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::ffi::c_void;
use std::ptr::NonNull;

use cymem_rs::{Allocator, Corruption, DebugOptions, Pool, PoolError};

/// Writes `value` at `offset` from `ptr` (may be outside the block: the
/// guards and quarantined blocks are still memory the pool owns).
fn poke(ptr: NonNull<c_void>, offset: isize, value: u8) {
    // SAFETY: the tests poke offsets -16..size+16 of a live or quarantined
    // block of a debug pool, all inside its allocation.
    let at = unsafe { ptr.as_ptr().cast::<u8>().offset(offset) };
    // SAFETY: `at` is inside that allocation, which the pool owns and the
    // test thread alone uses.
    unsafe { at.write(value) }
}

fn corruption(err: PoolError) -> (usize, usize, u64, Corruption, isize) {
    match err {
        PoolError::Corrupted {
            addr,
            size,
            alloc_number,
            kind,
            offset,
        } => (addr, size, alloc_number, kind, offset),
        other => panic!("expected a corruption error, got {other:?}"),
    }
}

// A counting allocator that also records which blocks are live, so a double
// release or a release of a foreign pointer fails the test.
thread_local! {
    static LIVE: RefCell<HashSet<usize>> = RefCell::new(HashSet::new());
    static MALLOCS: Cell<usize> = const { Cell::new(0) };
    static FREES: Cell<usize> = const { Cell::new(0) };
}

unsafe extern "C" fn counting_malloc(size: usize) -> *mut c_void {
    // SAFETY: plain libc malloc.
    let p = unsafe { libc::malloc(size) };
    if !p.is_null() {
        // Dirty, so zeroing and guard writing are the pool's doing.
        // SAFETY: a non-NULL result of `malloc(size)` is writable for `size` bytes.
        unsafe { p.cast::<u8>().write_bytes(0xAB, size) };
        MALLOCS.with(|m| m.set(m.get() + 1));
        LIVE.with(|l| assert!(l.borrow_mut().insert(p as usize)));
    }
    p
}

unsafe extern "C" fn counting_free(ptr: *mut c_void) {
    LIVE.with(|l| {
        assert!(
            l.borrow_mut().remove(&(ptr as usize)),
            "released twice or foreign: {ptr:p}"
        )
    });
    FREES.with(|f| f.set(f.get() + 1));
    // SAFETY: `ptr` was live in `LIVE` (asserted above), a block of libc's
    // malloc, and is now out of it: freed once.
    unsafe { libc::free(ptr) }
}

fn counting_debug_pool(options: DebugOptions) -> Pool {
    // SAFETY: counting_malloc/free wrap libc malloc/free.
    let allocator = unsafe { Allocator::from_raw(counting_malloc, counting_free) };
    Pool::with_allocator(allocator).with_debug(options)
}

fn counts() -> (usize, usize) {
    (MALLOCS.with(|m| m.get()), FREES.with(|f| f.get()))
}

fn small_quarantine(blocks: usize) -> DebugOptions {
    DebugOptions {
        quarantine_blocks: blocks,
        ..DebugOptions::default()
    }
}

#[test]
fn a_one_byte_overrun_is_reported_at_free_with_size_and_allocation_number() {
    for make in [Pool::new_debug, || {
        Pool::arena().with_debug(DebugOptions::default())
    }] {
        let mut pool = make();
        assert!(pool.is_debug());
        let _first = pool.alloc(1, 8).unwrap();
        let _second = pool.alloc(2, 8).unwrap();
        let third = pool.alloc(3, 8).unwrap();
        assert_eq!(pool.allocation_number(third.as_ptr()), Some(3));
        poke(third, 24, 1);
        let err = pool.free(third.as_ptr()).unwrap_err();
        let (addr, size, number, kind, offset) = corruption(err);
        assert_eq!(
            (addr, size, number, kind, offset),
            (third.as_ptr() as usize, 24, 3, Corruption::Overrun, 24)
        );
        let message = err.to_string();
        assert!(message.contains("24 bytes"), "{message}");
        assert!(message.contains("allocation #3"), "{message}");
        assert!(message.contains("past its end"), "{message}");
        // Released anyway: the block is gone and the accounting is right.
        assert!(!pool.contains(third.as_ptr()));
        assert_eq!((pool.size(), pool.block_count()), (24, 2));
        assert_eq!(pool.check(), Ok(()));
    }
}

#[test]
fn an_underrun_is_reported_with_a_negative_offset() {
    let mut pool = Pool::new_debug();
    let p = pool.alloc(10, 1).unwrap();
    poke(p, -1, 0);
    let err = pool.free(p.as_ptr()).unwrap_err();
    assert_eq!(corruption(err).3, Corruption::Underrun);
    assert_eq!(corruption(err).4, -1);
    assert!(err.to_string().contains("before its start"));
    // A write further before the block reports the damaged byte nearest to it.
    let q = pool.alloc(10, 1).unwrap();
    poke(q, -7, 0);
    assert_eq!(corruption(pool.free(q.as_ptr()).unwrap_err()).4, -7);
}

#[test]
fn healthy_blocks_are_never_reported_across_churn() {
    let mut pool = counting_debug_pool(small_quarantine(8));
    let mut live: Vec<(NonNull<c_void>, usize)> = Vec::new();
    for i in 0..2000usize {
        let size = i * 7 % 300;
        let p = pool.alloc(size, 1).unwrap();
        // Fill every byte the caller owns, edge to edge.
        // SAFETY: a live block of `size` bytes.
        unsafe { p.as_ptr().cast::<u8>().write_bytes(0xFD ^ (i as u8), size) };
        live.push((p, size));
        if i % 3 == 0 {
            let (q, n) = live.swap_remove(i * 13 % live.len());
            let grown = pool.realloc(q.as_ptr(), n + 17).unwrap();
            // SAFETY: the grown block holds n + 17 bytes: n kept, 17 zeroed.
            let tail = unsafe { std::slice::from_raw_parts(grown.as_ptr().cast::<u8>(), n + 17) };
            assert!(tail[n..].iter().all(|&b| b == 0));
            live.push((grown, n + 17));
        }
        if i % 2 == 0 {
            let (q, n) = live.swap_remove(i * 31 % live.len());
            assert_eq!(pool.free(q.as_ptr()), Ok(n));
        }
        if i % 100 == 0 {
            assert_eq!(pool.check(), Ok(()));
        }
    }
    assert_eq!(pool.size(), live.iter().map(|&(_, n)| n).sum::<usize>());
    assert_eq!(pool.free_all_checked(), Ok(()));
    let (mallocs, frees) = counts();
    assert_eq!(mallocs, frees, "every block released once");
    drop(pool);
    assert_eq!(counts(), (mallocs, frees));
}

#[test]
fn a_write_after_free_is_found_by_check_and_the_block_released_once() {
    let mut pool = counting_debug_pool(DebugOptions::default());
    let keep = pool.alloc(4, 4).unwrap();
    let p = pool.alloc(5, 4).unwrap();
    pool.free(p.as_ptr()).unwrap();
    assert_eq!(counts().1, 0, "a freed block waits in quarantine");
    poke(p, 3, 42);
    let (addr, size, number, kind, offset) = corruption(pool.check().unwrap_err());
    assert_eq!(
        (addr, size, number, kind, offset),
        (p.as_ptr() as usize, 20, 2, Corruption::WriteAfterFree, 3)
    );
    assert_eq!(counts().1, 1, "released once it was reported");
    assert_eq!(pool.check(), Ok(()), "reported once");
    assert!(pool.contains(keep.as_ptr()));
    drop(pool);
    assert_eq!(counts(), (2, 2));
}

#[test]
fn quarantine_eviction_checks_the_oldest_block_and_reports_at_free() {
    let mut pool = counting_debug_pool(small_quarantine(2));
    let blocks: Vec<_> = (0..4).map(|_| pool.alloc(1, 32).unwrap()).collect();
    pool.free(blocks[0].as_ptr()).unwrap();
    pool.free(blocks[1].as_ptr()).unwrap();
    assert_eq!(counts(), (4, 0));
    poke(blocks[0], 31, 7); // write after free, still in quarantine
                            // The third free pushes block 0 out of the quarantine: its damage is the
                            // error of this call, but blocks[2] is freed all the same.
    let err = pool.free(blocks[2].as_ptr()).unwrap_err();
    let (addr, _, number, kind, offset) = corruption(err);
    assert_eq!(
        (addr, number, kind, offset),
        (
            blocks[0].as_ptr() as usize,
            1,
            Corruption::WriteAfterFree,
            31
        )
    );
    assert!(!pool.contains(blocks[2].as_ptr()));
    assert_eq!(counts(), (4, 1), "the evicted block was released");
    assert_eq!(pool.block_count(), 1);
    drop(pool);
    assert_eq!(counts(), (4, 4));
}

/// The quarantine's byte limit counts each block with both 16-byte guards:
/// two freed 32-byte blocks take 2 x 64 bytes, one more than a 127-byte
/// limit, so the second free already evicts (and checks) the first.
#[test]
fn the_quarantine_byte_limit_counts_blocks_with_their_guards() {
    let options = |bytes| DebugOptions {
        quarantine_blocks: 100,
        quarantine_bytes: bytes,
    };
    let mut pool = counting_debug_pool(options(128));
    let kept: Vec<_> = (0..2).map(|_| pool.alloc(1, 32).unwrap()).collect();
    for p in &kept {
        pool.free(p.as_ptr()).unwrap();
    }
    assert_eq!(counts(), (2, 0), "exactly at the limit, both wait");
    drop(pool);

    let mut pool = counting_debug_pool(options(127));
    let blocks: Vec<_> = (0..2).map(|_| pool.alloc(1, 32).unwrap()).collect();
    pool.free(blocks[0].as_ptr()).unwrap();
    poke(blocks[0], 0, 1);
    let (addr, ..) = corruption(pool.free(blocks[1].as_ptr()).unwrap_err());
    assert_eq!(
        addr,
        blocks[0].as_ptr() as usize,
        "evicted at the second free"
    );
    assert_eq!(counts(), (4, 3), "only the first block left the quarantine");
}

/// A damaged block that `check` takes out of the quarantine gives its bytes
/// back to the byte limit: later frees evict exactly as many blocks as the
/// remaining ones need.
#[test]
fn blocks_reported_by_check_leave_the_quarantine_byte_count() {
    let mut pool = counting_debug_pool(DebugOptions {
        quarantine_blocks: 100,
        quarantine_bytes: 128,
    });
    let a = pool.alloc(1, 32).unwrap(); // 64 bytes with guards
    let b = pool.alloc(1, 32).unwrap();
    let c = pool.alloc(1, 64).unwrap(); // 96 bytes with guards
    let d = pool.alloc(1, 32).unwrap();
    pool.free(a.as_ptr()).unwrap();
    pool.free(b.as_ptr()).unwrap();
    poke(b, 5, 9);
    assert_eq!(corruption(pool.check().unwrap_err()).0, b.as_ptr() as usize);
    assert_eq!(counts(), (4, 1), "b released when reported");
    // 64 (a) + 96 (c) is over 128: a is evicted, c stays.
    pool.free(c.as_ptr()).unwrap();
    assert_eq!(counts(), (4, 2));
    // 96 (c) + 64 (d) is over 128 again: c is evicted, d stays.
    pool.free(d.as_ptr()).unwrap();
    assert_eq!(counts(), (4, 3));
    drop(pool);
    assert_eq!(counts(), (4, 4));
}

#[test]
fn a_quarantine_of_zero_releases_at_once() {
    let mut pool = counting_debug_pool(small_quarantine(0));
    let p = pool.alloc(1, 8).unwrap();
    pool.free(p.as_ptr()).unwrap();
    assert_eq!(counts(), (1, 1));
}

#[test]
fn realloc_of_a_damaged_block_is_refused_and_leaves_it_live() {
    let mut pool = counting_debug_pool(DebugOptions::default());
    let p = pool.alloc(16, 1).unwrap();
    poke(p, 0, 9);
    poke(p, 16, 1);
    let err = pool.realloc(p.as_ptr(), 64).unwrap_err();
    assert_eq!(corruption(err).3, Corruption::Overrun);
    assert!(pool.contains(p.as_ptr()));
    // SAFETY: still a live 16-byte block.
    assert_eq!(unsafe { *p.as_ptr().cast::<u8>() }, 9, "contents unchanged");
    // Reported once: the guards were re-armed, so the next grow works.
    let q = pool.realloc(p.as_ptr(), 64).unwrap();
    // SAFETY: a live 64-byte block.
    assert_eq!(unsafe { *q.as_ptr().cast::<u8>() }, 9);
    assert_eq!(
        pool.allocation_number(q.as_ptr()),
        Some(1),
        "realloc keeps the number"
    );
    // A write through the stale pointer after the move is a write after free.
    poke(p, 2, 5);
    let (addr, size, number, kind, _) = corruption(pool.check().unwrap_err());
    assert_eq!(
        (addr, size, number, kind),
        (p.as_ptr() as usize, 16, 1, Corruption::WriteAfterFree)
    );
    drop(pool);
    let (mallocs, frees) = counts();
    assert_eq!(mallocs, frees);
}

#[test]
fn damage_is_found_when_the_pool_releases_everything() {
    let mut pool = counting_debug_pool(DebugOptions::default());
    let a = pool.alloc(1, 100).unwrap();
    let b = pool.alloc(1, 100).unwrap();
    pool.free(b.as_ptr()).unwrap();
    poke(a, 100, 0);
    let err = pool.free_all_checked().unwrap_err();
    assert_eq!(corruption(err).0, a.as_ptr() as usize);
    assert_eq!(counts(), (2, 2), "both released, the damaged one too");
    assert_eq!((pool.size(), pool.block_count()), (0, 0));
    // The pool stays usable, and numbering goes on.
    let c = pool.alloc(1, 1).unwrap();
    assert_eq!(pool.allocation_number(c.as_ptr()), Some(3));
    // `free_all` cannot return the damage: the next check reports it.
    poke(c, -16, 0);
    pool.free_all();
    assert_eq!(
        corruption(pool.check().unwrap_err()).3,
        Corruption::Underrun
    );
    assert_eq!(pool.check(), Ok(()));
}

#[test]
fn dropping_a_damaged_pool_still_releases_every_block_once() {
    let mut pool = counting_debug_pool(DebugOptions::default());
    for i in 0..50 {
        let p = pool.alloc(i + 1, 1).unwrap();
        if i % 2 == 0 {
            pool.free(p.as_ptr()).unwrap();
            poke(p, 0, 1); // writes after free, found at drop
        } else {
            poke(p, i as isize + 1, 1); // overruns, found at drop
        }
    }
    drop(pool); // reports on stderr
    assert_eq!(counts(), (50, 50));
}

#[test]
fn arena_debug_pools_catch_the_same_damage() {
    let mut pool = Pool::arena().with_debug(small_quarantine(1));
    let a = pool.alloc(3, 1).unwrap();
    let b = pool.alloc(3, 1).unwrap();
    assert_eq!(a.as_ptr() as usize % 16, 0, "aligned like malloc");
    pool.free(a.as_ptr()).unwrap();
    poke(a, 1, 1);
    let err = pool.free(b.as_ptr()).unwrap_err(); // evicts a
    assert_eq!(corruption(err).3, Corruption::WriteAfterFree);
    let c = pool.alloc(3, 1).unwrap();
    poke(c, -2, 1);
    assert_eq!(corruption(pool.check().unwrap_err()).2, 3);
    pool.free_all();
    assert_eq!(pool.check(), Ok(()));
    assert_eq!(pool.block_count(), 0);
}

#[test]
fn debug_pools_keep_the_pool_rules() {
    let mut pool = Pool::new_debug();
    // Zeroed, distinct 0-byte blocks, errors for foreign pointers.
    let zero: Vec<_> = (0..10).map(|_| pool.alloc(0, 8).unwrap()).collect();
    let distinct: HashSet<_> = zero.iter().map(|p| p.as_ptr() as usize).collect();
    assert_eq!(distinct.len(), 10);
    let p = pool.alloc(100, 1).unwrap();
    // SAFETY: `p` is a live 100-byte block of the pool.
    let block = unsafe { std::slice::from_raw_parts(p.as_ptr().cast::<u8>(), 100) };
    assert!(block.iter().all(|&b| b == 0));
    let mut on_stack = 0u8;
    let foreign = (&raw mut on_stack).cast::<c_void>();
    assert!(matches!(
        pool.free(foreign),
        Err(PoolError::UnknownPointer { .. })
    ));
    pool.free(p.as_ptr()).unwrap();
    assert!(matches!(
        pool.free(p.as_ptr()),
        Err(PoolError::UnknownPointer { .. })
    ));
    assert!(matches!(
        pool.alloc(usize::MAX, 2),
        Err(PoolError::SizeOverflow { .. })
    ));
    assert!(matches!(
        pool.alloc(isize::MAX as usize, 1),
        Err(PoolError::OutOfMemory { .. })
    ));
    assert!(matches!(
        pool.realloc(zero[0].as_ptr(), 0),
        Err(PoolError::NotLarger { .. })
    ));
    assert!(matches!(
        pool.realloc(zero[0].as_ptr(), usize::MAX),
        Err(PoolError::SizeOverflow { .. })
    ));
    assert!(matches!(
        pool.realloc(zero[0].as_ptr(), isize::MAX as usize - 8),
        Err(PoolError::OutOfMemory { .. })
    ));
    assert!(
        pool.contains(zero[0].as_ptr()),
        "refused reallocs keep the block"
    );
    let stats = pool.stats();
    assert_eq!((stats.total_allocs, stats.total_frees), (11, 1));
    assert_eq!(pool.check(), Ok(()));
}

#[test]
fn pools_not_in_debug_mode_report_nothing() {
    let mut pool = Pool::new();
    assert!(!pool.is_debug());
    let p = pool.alloc(1, 8).unwrap();
    assert_eq!(pool.allocation_number(p.as_ptr()), None);
    assert_eq!(pool.check(), Ok(()));
    assert_eq!(pool.free_all_checked(), Ok(()));
}

#[test]
#[should_panic(expected = "without blocks")]
fn debug_mode_cannot_be_turned_on_over_live_blocks() {
    let mut pool = Pool::new();
    pool.alloc(1, 1).unwrap();
    let _ = pool.with_debug(DebugOptions::default());
}

#[test]
fn new_options_on_a_debug_pool_keep_its_quarantine_and_numbers() {
    let mut pool = counting_debug_pool(DebugOptions::default());
    let p = pool.alloc(1, 8).unwrap();
    pool.free(p.as_ptr()).unwrap();
    let mut pool = pool.with_debug(small_quarantine(0));
    assert_eq!(pool.debug_options(), Some(small_quarantine(0)));
    assert_eq!(counts(), (1, 0), "still quarantined");
    let q = pool.alloc(1, 8).unwrap();
    assert_eq!(pool.allocation_number(q.as_ptr()), Some(2));
    pool.free(q.as_ptr()).unwrap(); // the quarantine shrinks to its new limit
    assert_eq!(counts(), (2, 2));
}

/// `DebugOptions::from_env` reads `CYMEM_RS_DEBUG` once per process, so each
/// value is tried in a child process of this test binary, which checks the
/// answer; the parent checks the child's warning on stderr (`None`: none).
#[test]
fn debug_mode_from_the_environment() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    use std::process::Command;

    const CHILD: &str = "CYMEM_RS_DEBUG_ENV_EXPECT";
    if let Some(expect) = std::env::var_os(CHILD) {
        let on = expect == "on";
        let found = DebugOptions::from_env();
        assert_eq!(found, on.then(DebugOptions::default));
        assert_eq!(DebugOptions::from_env(), found, "read once");
        return;
    }
    let long = "x".repeat(100);
    let split_char = format!("a{}", "\u{e9}".repeat(40));
    let cases: [(&[u8], bool, Option<String>); 9] = [
        (b"yes", true, None),
        (b" ON ", true, None),
        (b"", false, None),
        (b"off", false, None),
        (
            b"enable",
            false,
            Some(r#"="enable": debug mode stays off"#.into()),
        ),
        (
            long.as_bytes(),
            false,
            Some(format!("={:?}...:", "x".repeat(60))),
        ),
        // Cut at 60 bytes would split a character: the text ends before it.
        (
            split_char.as_bytes(),
            false,
            Some(format!("={:?}...:", &split_char[..59])),
        ),
        (b"ab\xffcd", false, Some(r#"="ab"...:"#.into())),
        (b"\xffab", false, Some("=\"(not UTF-8)\":".into())),
    ];
    let exe = std::env::current_exe().expect("test binary");
    for (value, on, warning) in cases {
        let out = Command::new(&exe)
            .args([
                "debug::debug_mode_from_the_environment",
                "--exact",
                "--nocapture",
            ])
            .env(CHILD, if on { "on" } else { "off" })
            .env("CYMEM_RS_DEBUG", OsStr::from_bytes(value))
            .output()
            .expect("run the test binary");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "{value:?}:\n{stdout}\n{stderr}"
        );
        let warned: Vec<_> = stderr
            .lines()
            .filter(|l| l.starts_with("cymem_rs: ignoring CYMEM_RS_DEBUG"))
            .collect();
        match warning {
            None => assert!(warned.is_empty(), "{value:?}: {warned:?}"),
            Some(text) => assert!(
                warned.len() == 1 && warned[0].contains(&text),
                "{value:?}: {warned:?} lacks {text}"
            ),
        }
    }
}
