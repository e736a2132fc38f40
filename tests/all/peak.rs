//! The process-wide peak of pool bytes, its attribution and traces, against
//! known allocation sequences. The figures count every pool of the process,
//! so each test runs again alone in a child process of this test binary
//! (the parent only checks that the child passed).

use std::process::Command;
use std::sync::{Arc, Barrier};
use std::thread;

use cymem_rs::registry::{peak_report, try_peak_report, TooManyTraces, PEAK_STEP};
use cymem_rs::{
    peak, reset_peak, Allocator, DeferredOrigin, Origin, PeakPool, Pool, Trace, TraceFigures,
};

const CHILD: &str = "CYMEM_RS_PEAK_ALONE";
const KIB: usize = 1024;

/// Runs `body` here if this is the child, else runs test `name` alone in a
/// child process and checks that it ran and passed.
fn alone(name: &str, body: impl FnOnce()) {
    if std::env::var_os(CHILD).is_some() {
        return body();
    }
    let exe = std::env::current_exe().expect("test binary");
    let out = Command::new(exe)
        .args([name, "--exact", "--test-threads=1"])
        .env(CHILD, "1")
        .output()
        .expect("run the test binary");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{name} alone:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn pool_named<'a>(pools: &'a [PeakPool], name: &str) -> &'a PeakPool {
    pools
        .iter()
        .find(|p| p.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("{name} not in {pools:?}"))
}

#[test]
fn the_peak_of_a_known_sequence_and_who_held_it() {
    alone("peak::the_peak_of_a_known_sequence_and_who_held_it", || {
        reset_peak();
        let base = peak().current;
        let made_at = line!() + 1;
        let mut heap = Pool::named("seq-heap");
        let mut arena = Pool::arena_labelled(cymem_rs::Label {
            name: Some("seq-arena".into()),
            ..cymem_rs::Label::here()
        });
        let blocks: Vec<_> = (0..4).map(|_| heap.alloc(1, 256 * KIB).unwrap()).collect();
        arena.alloc(1, 0).unwrap();
        arena.alloc(1, 512 * KIB).unwrap();
        for block in blocks {
            heap.free(block.as_ptr()).unwrap();
        }
        heap.alloc(1, 128 * KIB).unwrap();

        let report = peak();
        assert_eq!(report.peak, base + 1536 * KIB);
        assert_eq!(report.current, base + 640 * KIB);
        assert_eq!(report.snapshot, report.peak);
        assert_eq!(report.step, PEAK_STEP);
        let held = pool_named(&report.pools, "seq-heap");
        assert_eq!(
            (held.bytes, held.blocks, held.arena, held.alive),
            (1024 * KIB, 4, false, true)
        );
        assert!(
            held.origin.ends_with(&format!("peak.rs:{made_at}")),
            "{}",
            held.origin
        );
        let held = pool_named(&report.pools, "seq-arena");
        assert_eq!((held.bytes, held.blocks, held.arena), (512 * KIB, 2, true));
        assert_eq!(
            report.pools[0].name.as_deref(),
            Some("seq-heap"),
            "most bytes first"
        );
    });
}

#[test]
fn a_pool_dropped_after_the_peak_is_still_named() {
    alone("peak::a_pool_dropped_after_the_peak_is_still_named", || {
        reset_peak();
        let mut gone = Pool::named("dropped-after");
        gone.alloc(3, 200 * KIB).unwrap();
        drop(gone);
        // Enough pools come and go to recycle its record, were it not held.
        for i in 0..500 {
            let mut pool = Pool::named(format!("churn-{i}"));
            pool.alloc(1, 16).unwrap();
        }
        let report = peak();
        let held = pool_named(&report.pools, "dropped-after");
        assert_eq!((held.bytes, held.blocks, held.alive), (600 * KIB, 1, false));
        assert!(report
            .pools
            .iter()
            .all(|p| !p.name.as_deref().unwrap_or("").starts_with("churn")));
        // A new peak no longer needs it.
        let mut bigger = Pool::named("bigger");
        bigger.alloc(1, 700 * KIB).unwrap();
        let report = peak();
        assert_eq!(report.pools.len(), 1, "{:?}", report.pools);
        assert_eq!(report.pools[0].name.as_deref(), Some("bigger"));
    });
}

#[test]
fn reset_starts_over_from_the_bytes_held_now() {
    alone("peak::reset_starts_over_from_the_bytes_held_now", || {
        let mut pool = Pool::named("reset");
        let a = pool.alloc(1, 2048 * KIB).unwrap();
        pool.alloc(1, 1024 * KIB).unwrap();
        pool.free(a.as_ptr()).unwrap();
        assert!(peak().peak >= 3072 * KIB);
        reset_peak();
        let report = peak();
        assert_eq!(report.peak, report.current);
        assert_eq!(report.current, 1024 * KIB);
        assert_eq!(pool_named(&report.pools, "reset").bytes, 1024 * KIB);
        // The pool's own peak is its own business.
        assert_eq!(pool.stats().peak_size, 3072 * KIB);
        // Growth by less than a step raises the peak but keeps the snapshot.
        pool.alloc(1, 10 * KIB).unwrap();
        let report = peak();
        assert_eq!(report.peak, 1034 * KIB);
        assert_eq!(report.snapshot, 1024 * KIB);
    });
}

#[test]
fn threads_holding_at_once_make_one_peak() {
    alone("peak::threads_holding_at_once_make_one_peak", || {
        const THREADS: usize = 4;
        reset_peak();
        let base = peak().current;
        let trace = Trace::start().unwrap();
        let all_hold = Arc::new(Barrier::new(THREADS));
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let all_hold = Arc::clone(&all_hold);
                thread::spawn(move || {
                    let mut pool = Pool::named(format!("thread-{t}"));
                    for _ in 0..8 {
                        pool.alloc(1, 128 * KIB).unwrap();
                    }
                    all_hold.wait();
                    pool.free_all();
                })
            })
            .collect();
        for worker in workers {
            worker.join().unwrap();
        }
        let figures = trace.finish();
        let total = THREADS * 1024 * KIB;
        assert_eq!(
            figures,
            TraceFigures {
                allocated: total as u64,
                freed: total as u64,
                peak: total
            }
        );
        let report = peak();
        assert_eq!(report.peak, base + total);
        assert_eq!(report.current, base);
        for t in 0..THREADS {
            let held = pool_named(&report.pools, &format!("thread-{t}"));
            assert_eq!(
                (held.bytes, held.blocks, held.alive),
                (1024 * KIB, 8, false)
            );
        }
    });
}

#[test]
fn small_blocks_are_counted_within_one_step() {
    alone("peak::small_blocks_are_counted_within_one_step", || {
        let trace = Trace::start().unwrap();
        let mut pool = Pool::new();
        let blocks: Vec<_> = (0..1000).map(|_| pool.alloc(1, 100).unwrap()).collect();
        for block in blocks {
            pool.free(block.as_ptr()).unwrap();
        }
        let figures = trace.finish();
        // Allocated and freed are flushed when the trace ends: exact.
        assert_eq!((figures.allocated, figures.freed), (100_000, 100_000));
        // The peak is seen at flushes: short by less than a step.
        assert!(
            figures.peak <= 100_000 && figures.peak > 100_000 - PEAK_STEP,
            "{figures:?}"
        );
        // A realloc counts its growth.
        let trace = Trace::start().unwrap();
        let block = pool.alloc(1, 100 * KIB).unwrap();
        pool.realloc(block.as_ptr(), 300 * KIB).unwrap();
        let figures = trace.finish();
        assert_eq!(
            (figures.allocated, figures.freed, figures.peak),
            (300 * KIB as u64, 0, 300 * KIB)
        );
    });
}

#[test]
fn traces_nest_and_their_slots_run_out() {
    alone("peak::traces_nest_and_their_slots_run_out", || {
        let mut pool = Pool::new();
        let outer = Trace::start().unwrap();
        let big = pool.alloc(1, 1024 * KIB).unwrap();
        pool.free(big.as_ptr()).unwrap();
        // Two traces run: a transient peak raises both.
        let inner = Trace::start().unwrap();
        let brief = pool.alloc(1, 256 * KIB).unwrap();
        pool.free(brief.as_ptr()).unwrap();
        assert_eq!(inner.finish().peak, 256 * KIB);
        // The inner trace's slot is free again, and only its slot.
        drop(Trace::start().unwrap());
        assert_eq!(outer.finish().peak, 1024 * KIB);

        let mut running: Vec<Trace> = (0..64).map(|_| Trace::start().unwrap()).collect();
        assert_eq!(Trace::start().unwrap_err(), TooManyTraces);
        assert_eq!(
            TooManyTraces.to_string(),
            "more than 64 pool-memory traces at once"
        );
        running.pop();
        assert!(Trace::start().is_ok());
    });
}

/// A snapshot is taken when the total rises one step above the last one
/// (exactly one step is enough), and past 64 steps when it rises by 1/64.
#[test]
fn snapshots_are_taken_a_step_apart() {
    alone("peak::snapshots_are_taken_a_step_apart", || {
        reset_peak();
        let base = peak().snapshot;
        assert!(base < PEAK_STEP, "no pools hold memory yet: {base}");
        // Pools holding no bytes at a snapshot are not listed.
        let _idle = Pool::named("step-idle");
        let mut zero = Pool::named("step-zero");
        zero.alloc(0, 8).unwrap();
        // Allocations only (nothing freed) are counted too.
        let mut exact = Pool::named("step-exact");
        exact.alloc(1, PEAK_STEP).unwrap();
        let report = peak();
        assert_eq!(report.peak, base + PEAK_STEP);
        assert_eq!(report.snapshot, base + PEAK_STEP, "a rise of one step");
        assert_eq!(pool_named(&report.pools, "step-exact").bytes, PEAK_STEP);
        assert_eq!(report.pools.len(), 1, "{:?}", report.pools);
        let mut big = Pool::named("step-big");
        big.alloc(1, 128 * PEAK_STEP).unwrap();
        let snapped = base + 129 * PEAK_STEP;
        assert_eq!(peak().snapshot, snapped);
        // Two steps are less than 1/64 of 129 steps: no snapshot.
        let mut small = Pool::named("step-small");
        small.alloc(1, 2 * PEAK_STEP).unwrap();
        let report = peak();
        assert_eq!(
            (report.peak, report.snapshot),
            (snapped + 2 * PEAK_STEP, snapped)
        );
        assert!(report
            .pools
            .iter()
            .all(|p| p.name.as_deref() != Some("step-small")));
        // Past 1/64 of it: a snapshot that names the pool.
        small.alloc(1, PEAK_STEP).unwrap();
        let report = peak();
        assert_eq!(report.snapshot, snapped + 3 * PEAK_STEP);
        assert_eq!(pool_named(&report.pools, "step-small").bytes, 3 * PEAK_STEP);
    });
}

/// A thread that frees blocks another thread allocated can flush first:
/// the total dips below zero for a while. Growth counted meanwhile is not
/// a peak (the total is not read as a huge unsigned number).
#[test]
fn frees_counted_before_their_allocations_make_no_peak() {
    alone(
        "peak::frees_counted_before_their_allocations_make_no_peak",
        || {
            reset_peak();
            let base = peak().current;
            let mut pool = Pool::named("dip");
            // Below one step: stays in this thread's pending counts.
            let block = pool.alloc(1, 60 * KIB).unwrap().as_ptr() as usize;
            let pool = thread::spawn(move || {
                pool.free(block as *mut std::ffi::c_void).unwrap();
                cymem_rs::registry::flush_this_thread();
                // The total is 60 KiB below the truth now; 10 KiB more of it.
                pool.alloc(1, 10 * KIB).unwrap();
                cymem_rs::registry::flush_this_thread();
                pool
            })
            .join()
            .unwrap();
            let report = peak();
            assert_eq!(report.current, base + 10 * KIB);
            assert!(report.peak < base + 100 * KIB, "{}", report.peak);
            drop(pool);
        },
    );
}

#[test]
fn the_peak_report_is_a_table() {
    alone("peak::the_peak_report_is_a_table", || {
        reset_peak();
        let mut pool = Pool::named("in-the-table");
        pool.alloc(1, 1024 * KIB).unwrap();
        let text = peak_report();
        // The fallible form (the Python door's) writes the same table.
        assert_eq!(try_peak_report().unwrap(), text);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with(
                "peak 1.0 MiB (1048576 bytes, within 65536 bytes per thread), now 1.0 MiB"
            ),
            "{text}"
        );
        assert_eq!(
            lines[1].split_whitespace().collect::<Vec<_>>(),
            ["bytes", "blocks", "mode", "state", "name", "origin"]
        );
        let row: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(row[..5], ["1048576", "1", "heap", "live", "in-the-table"]);
        assert!(
            lines[3].starts_with("1 pool held 1.0 MiB (1048576 bytes)"),
            "{text}"
        );
    });
}

#[test]
fn a_threads_counts_are_added_when_it_exits() {
    alone("peak::a_threads_counts_are_added_when_it_exits", || {
        let trace = Trace::start().unwrap();
        // Less than a step: the counts stay with the thread until it exits.
        let pool = thread::spawn(|| {
            let mut pool = Pool::new();
            pool.alloc(1, 10 * KIB).unwrap();
            pool
        })
        .join()
        .unwrap();
        let figures = trace.finish();
        assert_eq!(
            (figures.allocated, figures.freed, figures.peak),
            (10 * KIB as u64, 0, 10 * KIB)
        );
        // A pool dropped by another thread's exit-time destructors counts too.
        let trace = Trace::start().unwrap();
        thread::spawn(move || {
            thread_local! {
                static KEEP: std::cell::RefCell<Option<Pool>> = const { std::cell::RefCell::new(None) };
            }
            KEEP.with(|keep| *keep.borrow_mut() = Some(pool));
        })
        .join()
        .unwrap();
        assert_eq!(trace.finish().freed, 10 * KIB as u64);
        assert_eq!(peak().current, 0);
    });
}

#[test]
fn declared_pools_count_at_once_from_any_thread() {
    alone("peak::declared_pools_count_at_once_from_any_thread", || {
        use std::sync::mpsc;
        use std::sync::Mutex;
        // The process-wide lock the declared pools share (the GIL's part).
        static LOCK: Mutex<()> = Mutex::new(());
        // Declared after it was made, or made deferred (which declares it).
        fn declared() -> Pool {
            let mut pool = Pool::named("declared");
            pool.count_under_process_lock();
            pool
        }
        fn deferred() -> Pool {
            static SITE: DeferredOrigin = DeferredOrigin::new(Origin::Static("declared"));
            Pool::deferred_under_process_lock(Allocator::system(), &SITE)
        }
        for make in [declared, deferred] {
            let trace = Trace::start().unwrap();
            let (filled, wait_filled) = mpsc::channel();
            let (done, wait_done) = mpsc::channel::<()>();
            // A thread that stays alive holding less than a step: a declared
            // pool's counts are not this thread's, so they are not held back.
            let worker = thread::spawn(move || {
                let _held = LOCK.lock().unwrap();
                let mut pool = make();
                for _ in 0..10 {
                    pool.alloc(1, KIB).unwrap();
                }
                drop(_held);
                filled.send(()).unwrap();
                wait_done.recv().unwrap();
                let _held = LOCK.lock().unwrap();
                drop(pool);
            });
            wait_filled.recv().unwrap();
            let guard = LOCK.lock().unwrap();
            let figures = trace.figures();
            assert_eq!(
                (figures.allocated, figures.peak),
                (10 * KIB as u64, 10 * KIB)
            );
            let report = peak();
            assert_eq!(report.current, 10 * KIB);
            assert_eq!(report.peak, 10 * KIB);
            drop(guard);
            done.send(()).unwrap();
            worker.join().unwrap();
        }
        // An undeclared pool on a live thread is held back within the step.
        let trace = Trace::start().unwrap();
        let (filled, wait_filled) = mpsc::channel();
        let (done, wait_done) = mpsc::channel::<()>();
        let worker = thread::spawn(move || {
            let mut pool = Pool::new();
            pool.alloc(1, 10 * KIB).unwrap();
            filled.send(()).unwrap();
            wait_done.recv().unwrap();
        });
        wait_filled.recv().unwrap();
        assert_eq!(trace.figures().allocated, 0);
        done.send(()).unwrap();
        worker.join().unwrap();
        assert_eq!(trace.finish().freed, 10 * KIB as u64);
    });
}

#[test]
fn a_declared_pools_transient_peak_and_growth_count() {
    alone(
        "peak::a_declared_pools_transient_peak_and_growth_count",
        || {
            reset_peak();
            let base = peak().current;
            let trace = Trace::start().unwrap();
            let mut pool = Pool::named("declared-transient");
            pool.count_under_process_lock();
            // A block of a step or more counts at once, so a peak it makes and
            // undoes before anyone looks is still seen.
            let big = pool.alloc(1, 1024 * KIB).unwrap();
            pool.free(big.as_ptr()).unwrap();
            assert_eq!(peak().peak, base + 1024 * KIB);
            // A realloc counts its growth only.
            let block = pool.alloc(1, 100 * KIB).unwrap();
            pool.realloc(block.as_ptr(), 300 * KIB).unwrap();
            let figures = trace.finish();
            assert_eq!(figures.allocated, (1024 + 300) as u64 * KIB as u64);
            assert_eq!(figures.freed, 1024 * KIB as u64);
            assert_eq!(peak().current, base + 300 * KIB);
        },
    );
}
