//! Benchmarks of the pool core, each workload beside raw libc doing the same
//! work in the same criterion group.
//!
//! Run with `cargo bench --bench pool` (about 1.5 minutes on 2 cores), or
//! `cargo bench --bench pool -- --test` to check that every benchmark runs.
//!
//! - `alloc_free_pair_64B`: one 64-byte zeroed alloc + free on a long-lived
//!   pool holding 1000 live blocks; the same through the C ABI (null checks
//!   and the pool's Mutex); raw `calloc` + `free` with 1000 live blocks too.
//! - `million_allocs_then_drop`: 1,000,000 zeroed allocs of 16..=512 bytes
//!   into a fresh pool, then drop it; vs calloc into a pre-allocated `Vec`
//!   and free them all. Throughput is per alloc.
//! - `pool_of_10`: new pool, 10 allocs of 16..=512 bytes, drop; vs 10
//!   callocs into an array and 10 frees.
//! - `debug_mode`: `alloc_free_pair_64B` and `pool_of_10` on a normal and
//!   on a debug pool (`Pool::new_debug`), to price debug mode.

use std::ffi::c_void;
use std::hint::black_box;
use std::ptr;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use cymem_rs::ffi::{cymem_pool_alloc, cymem_pool_destroy, cymem_pool_free, cymem_pool_new};
use cymem_rs::Pool;

/// Live blocks held by the long-lived pools (and by the libc baseline).
const LIVE_BLOCKS: usize = 1000;
/// Allocations per iteration of `million_allocs_then_drop`.
const MILLION: usize = 1_000_000;
/// Sizes for `pool_of_10`, spanning 16..=512 bytes.
const TEN_SIZES: [usize; 10] = [16, 32, 48, 64, 96, 128, 192, 256, 384, 512];

/// The i-th size of the million-alloc workload: cycles 16, 32, ..., 512.
#[inline(always)]
fn cycled_size(i: usize) -> usize {
    16 * (1 + i % 32)
}

fn alloc_free_pair_64b(c: &mut Criterion) {
    let mut group = c.benchmark_group("alloc_free_pair_64B");
    group
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(5))
        .sample_size(100)
        .throughput(Throughput::Elements(1));

    group.bench_function("cymem_rs_pool", |b| {
        let mut pool = Pool::new();
        for _ in 0..LIVE_BLOCKS {
            pool.alloc(1, 64).expect("setup alloc");
        }
        b.iter(|| {
            let p = pool.alloc(black_box(1), black_box(64)).expect("pool alloc");
            black_box(pool.free(black_box(p.as_ptr())).expect("pool free"))
        });
        assert_eq!(pool.block_count(), LIVE_BLOCKS);
    });

    group.bench_function("cymem_rs_c_abi", |b| {
        let mut handle = cymem_pool_new();
        assert!(!handle.is_null());
        for _ in 0..LIVE_BLOCKS {
            // SAFETY: `handle` is a live pool handle until `cymem_pool_destroy`.
            assert!(!unsafe { cymem_pool_alloc(handle, 1, 64) }.is_null());
        }
        b.iter(|| {
            // SAFETY: `handle` is a live pool handle until `cymem_pool_destroy`.
            let p = unsafe { cymem_pool_alloc(black_box(handle), black_box(1), black_box(64)) };
            debug_assert!(!p.is_null());
            // SAFETY: the same live handle; `p` was just returned by it.
            black_box(unsafe { cymem_pool_free(black_box(handle), black_box(p)) })
        });
        // SAFETY: `handle` is live and no longer used after this.
        unsafe { cymem_pool_destroy(&mut handle) };
    });

    group.bench_function("libc_calloc_free", |b| {
        // The same heap state as the pools: 1000 live 64-byte blocks.
        let live: Vec<*mut c_void> = (0..LIVE_BLOCKS)
            // SAFETY: plain calloc; each block is freed once below.
            .map(|_| unsafe { libc::calloc(1, 64) })
            .collect();
        assert!(live.iter().all(|p| !p.is_null()));
        b.iter(|| {
            // SAFETY: plain calloc.
            let p = unsafe { libc::calloc(black_box(1), black_box(64)) };
            debug_assert!(!p.is_null());
            // SAFETY: `p` comes from calloc and is freed exactly once.
            unsafe { libc::free(black_box(p)) };
        });
        for p in live {
            // SAFETY: each setup block is freed exactly once.
            unsafe { libc::free(p) };
        }
    });

    group.finish();
}

fn million_allocs_then_drop(c: &mut Criterion) {
    let mut group = c.benchmark_group("million_allocs_then_drop");
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(10))
        .throughput(Throughput::Elements(MILLION as u64));

    group.bench_function("cymem_rs_pool", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                let mut pool = Pool::new();
                for i in 0..MILLION {
                    black_box(
                        pool.alloc(1, black_box(cycled_size(i)))
                            .expect("pool alloc"),
                    );
                }
                debug_assert_eq!(pool.block_count(), MILLION);
                drop(black_box(pool));
                total += start.elapsed();
            }
            total
        });
    });

    group.bench_function("libc_calloc_free", |b| {
        // Pre-allocated once, outside the timing: the pool's table is the
        // pool's own cost, but libc needs somewhere to keep the pointers.
        let mut ptrs: Vec<*mut c_void> = Vec::with_capacity(MILLION);
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                ptrs.clear();
                let start = Instant::now();
                for i in 0..MILLION {
                    // SAFETY: plain calloc; every block is freed once below.
                    let p = unsafe { libc::calloc(1, black_box(cycled_size(i))) };
                    debug_assert!(!p.is_null());
                    ptrs.push(black_box(p));
                }
                for &p in &ptrs {
                    // SAFETY: each pointer came from calloc above, freed once.
                    unsafe { libc::free(p) };
                }
                total += start.elapsed();
                black_box(&mut ptrs);
            }
            total
        });
    });

    group.finish();
}

fn pool_of_10(c: &mut Criterion) {
    let mut group = c.benchmark_group("pool_of_10");
    group
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(5))
        .sample_size(100)
        .throughput(Throughput::Elements(TEN_SIZES.len() as u64));

    group.bench_function("cymem_rs_pool", |b| {
        b.iter(|| {
            let mut pool = Pool::new();
            for &size in &TEN_SIZES {
                black_box(pool.alloc(1, black_box(size)).expect("pool alloc"));
            }
            drop(black_box(pool));
        });
    });

    group.bench_function("libc_calloc_free", |b| {
        b.iter(|| {
            let mut ptrs = [ptr::null_mut::<c_void>(); TEN_SIZES.len()];
            for (slot, &size) in ptrs.iter_mut().zip(&TEN_SIZES) {
                // SAFETY: plain calloc; freed once below.
                *slot = unsafe { libc::calloc(1, black_box(size)) };
                debug_assert!(!slot.is_null());
            }
            for &p in black_box(&ptrs) {
                // SAFETY: each pointer came from calloc above, freed once.
                unsafe { libc::free(p) };
            }
        });
    });

    group.finish();
}

/// Debug mode's cost: the same workloads on a normal and a debug pool (guard
/// bytes written and checked, freed blocks poisoned and quarantined, checked
/// again when they leave the quarantine or the pool drops).
fn debug_mode(c: &mut Criterion) {
    let mut group = c.benchmark_group("debug_mode");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(1));
    for (name, make) in [
        ("normal", Pool::new as fn() -> Pool),
        ("debug", Pool::new_debug),
    ] {
        group.bench_function(format!("pair_64B/{name}"), |b| {
            let mut pool = make();
            for _ in 0..LIVE_BLOCKS {
                pool.alloc(1, 64).expect("setup alloc");
            }
            b.iter(|| {
                let p = pool.alloc(black_box(1), black_box(64)).expect("pool alloc");
                black_box(pool.free(black_box(p.as_ptr())).expect("pool free"))
            });
        });
        group.bench_function(format!("pool_of_10/{name}"), |b| {
            b.iter(|| {
                let mut pool = make();
                for &size in &TEN_SIZES {
                    black_box(pool.alloc(1, black_box(size)).expect("pool alloc"));
                }
                drop(black_box(pool));
            });
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    alloc_free_pair_64b,
    million_allocs_then_drop,
    pool_of_10,
    debug_mode
);
criterion_main!(benches);
