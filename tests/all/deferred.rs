//! Deferred pools (`Pool::deferred_under_process_lock`, what Python's
//! `Pool()` makes): no registry record until the pool first needs one, and
//! from then on the same pool as any other. Tests share the registry, so
//! each finds its pools by an origin of its own.

use std::ffi::c_void;
use std::thread;

use cymem_rs::{
    live_pools, Allocator, DeferredOrigin, Origin, Pool, PoolInfo, PoolStats, SharedPool,
};

/// A deferred pool made at a creation site of its own.
macro_rules! deferred {
    ($origin:literal) => {{
        static SITE: DeferredOrigin = DeferredOrigin::new(Origin::Static($origin));
        Pool::deferred_under_process_lock(Allocator::system(), &SITE)
    }};
}

fn listed(origin: &str) -> Vec<PoolInfo> {
    live_pools()
        .into_iter()
        .filter(|p| p.origin == origin)
        .collect()
}

#[test]
fn an_unused_pool_is_unlisted_and_empty_until_its_first_block() {
    let mut pool = deferred!("deferred-first-block");
    // Every read, and the calls that change nothing, leave it unregistered.
    assert_eq!(pool.stats(), PoolStats::default());
    assert_eq!((pool.size(), pool.block_count()), (0, 0));
    assert_eq!(pool.blocks().count(), 0);
    assert_eq!(pool.name(), None);
    assert!(!pool.contains(8 as *const c_void));
    assert!(pool.free(8 as *mut c_void).is_err());
    pool.free_all();
    pool.reset_peak();
    pool.set_limit(None).unwrap();
    pool.count_under_process_lock();
    pool.check().unwrap();
    assert!(listed("deferred-first-block").is_empty());

    let block = pool.alloc(3, 100).unwrap();
    let [info] = listed("deferred-first-block").try_into().unwrap();
    assert_eq!((info.name, info.arena, info.limit), (None, false, None));
    assert_eq!(info.stats, pool.stats());
    assert_eq!((info.stats.size, info.stats.total_allocs), (300, 1));
    pool.free(block.as_ptr()).unwrap();
    // Registered for good: an empty pool stays listed.
    assert_eq!(listed("deferred-first-block").len(), 1);
    drop(pool);
    assert!(listed("deferred-first-block").is_empty());
}

#[test]
fn an_unused_pool_that_drops_leaves_no_trace() {
    let pools: Vec<Pool> = (0..1000).map(|_| deferred!("deferred-unused")).collect();
    assert!(listed("deferred-unused").is_empty());
    drop(pools);
    // The registry still hands out clean records.
    let mut pool = deferred!("deferred-unused-after");
    pool.alloc(1, 8).unwrap();
    let [info] = listed("deferred-unused-after").try_into().unwrap();
    assert_eq!((info.stats.size, info.stats.block_count), (8, 1));
}

#[test]
fn a_name_or_a_limit_registers_it() {
    let mut named = deferred!("deferred-named");
    named.set_name(Some("deferred-named-pool".into())).unwrap();
    let [info] = listed("deferred-named").try_into().unwrap();
    assert_eq!(info.name.as_deref(), Some("deferred-named-pool"));
    assert_eq!(named.name().as_deref(), Some("deferred-named-pool"));

    let mut limited = deferred!("deferred-limited");
    limited.set_limit(Some(100)).unwrap();
    let [info] = listed("deferred-limited").try_into().unwrap();
    assert_eq!(info.limit, Some(100));
    assert!(limited.alloc(1, 101).is_err());
}

#[test]
fn the_origin_set_before_registering_is_the_one_reported() {
    let mut pool = deferred!("deferred-origin-before");
    pool.set_origin(Origin::Static("deferred-origin-after"))
        .unwrap();
    pool.alloc(1, 16).unwrap();
    assert!(listed("deferred-origin-before").is_empty());
    assert_eq!(listed("deferred-origin-after").len(), 1);
    // And after registering, through the record.
    pool.set_origin(Origin::Static("deferred-origin-last"))
        .unwrap();
    assert_eq!(listed("deferred-origin-last").len(), 1);
}

#[test]
fn debug_mode_and_arena_free_blocks_register_at_the_first_block() {
    let mut pool = deferred!("deferred-debug");
    pool.enable_debug(Default::default());
    assert!(listed("deferred-debug").is_empty());
    let block = pool.alloc(1, 40).unwrap();
    assert_eq!(listed("deferred-debug")[0].stats.size, 40);
    pool.free(block.as_ptr()).unwrap();
    pool.check().unwrap();
}

#[test]
fn sharing_it_through_a_lock_registers_it() {
    let shared = SharedPool::try_locked(deferred!("deferred-locked")).unwrap();
    assert!(shared.is_locked());
    assert_eq!(listed("deferred-locked").len(), 1);
    let other = SharedPool::locked(deferred!("deferred-locked-other"));
    assert_eq!(listed("deferred-locked-other").len(), 1);
    thread::scope(|scope| {
        for pool in [&shared, &other] {
            scope.spawn(move || pool.with(|p| p.alloc(1, 8).map(|_| ())).unwrap().unwrap());
        }
    });
    assert_eq!(listed("deferred-locked-other")[0].stats.size, 8);
}

#[test]
fn pools_made_at_one_site_share_nothing_but_their_origin() {
    static SITE: DeferredOrigin = DeferredOrigin::new(Origin::Static("deferred-shared-site"));
    let made = || Pool::deferred_under_process_lock(Allocator::system(), &SITE);
    let (mut a, mut b, mut unused) = (made(), made(), made());
    a.alloc(1, 10).unwrap();
    b.alloc(2, 10).unwrap();
    // The unused one still reads zeros: the site's counters never move.
    unused.reset_peak();
    unused.free_all();
    assert_eq!(unused.stats(), PoolStats::default());
    let sizes: Vec<usize> = listed("deferred-shared-site")
        .iter()
        .map(|p| p.stats.size)
        .collect();
    assert_eq!(sizes, [20, 10]);
    drop(a);
    assert_eq!(listed("deferred-shared-site").len(), 1);
    assert_eq!(
        format!("{SITE:?}"),
        r#"DeferredOrigin(Origin("deferred-shared-site"))"#
    );
}
