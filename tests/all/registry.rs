//! The live-pool registry from a Rust caller's side. Tests of one binary run
//! in parallel and share the process's registry, so each looks only at pools
//! with names of its own.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;

use cymem_rs::{live_pools, Label, Origin, OriginSource, Pool, PoolInfo, SharedPool};

fn find(prefix: &str) -> Vec<PoolInfo> {
    live_pools()
        .into_iter()
        .filter(|p| p.name.as_deref().is_some_and(|n| n.starts_with(prefix)))
        .collect()
}

#[test]
fn a_named_pool_is_listed_with_its_counters_and_rust_origin() {
    let mut pool = Pool::named("reg-listed");
    let line = line!() - 1;
    pool.alloc(10, 100).unwrap();
    let [info] = find("reg-listed").try_into().unwrap();
    assert_eq!(info.stats, pool.stats());
    assert_eq!(info.stats.size, 1000);
    assert!(!info.arena);
    assert_eq!(info.origin, format!("{}:{line}", file!()));
    assert_eq!(pool.name().as_deref(), Some("reg-listed"));
}

#[test]
fn a_dropped_pool_disappears_and_its_record_is_reused_clean() {
    let mut pool = Pool::named("reg-dropped");
    pool.alloc(1, 64).unwrap();
    assert_eq!(find("reg-dropped").len(), 1);
    drop(pool);
    assert!(find("reg-dropped").is_empty());
    // Whichever record the next pool gets, it starts from zero.
    let fresh = Pool::named("reg-dropped-next");
    let [info] = find("reg-dropped-next").try_into().unwrap();
    assert_eq!(info.stats, Default::default());
    drop(fresh);
}

#[test]
fn pools_are_sorted_by_bytes_and_renaming_shows() {
    let mut pools: Vec<Pool> = (0..5)
        .map(|i| Pool::named(format!("reg-sort-{i}")))
        .collect();
    for (i, pool) in pools.iter_mut().enumerate() {
        pool.alloc(1, [300, 10, 5000, 0, 42][i]).unwrap();
    }
    let sizes: Vec<usize> = find("reg-sort-").iter().map(|p| p.stats.size).collect();
    assert_eq!(sizes, [5000, 300, 42, 10, 0]);
    pools[0].set_name(Some("reg-sort-renamed".into())).unwrap();
    let names: Vec<String> = find("reg-sort-")
        .into_iter()
        .filter_map(|p| p.name)
        .collect();
    assert!(names.contains(&"reg-sort-renamed".to_owned()));
    assert!(!names.contains(&"reg-sort-0".to_owned()));
}

/// Names with spare capacity (built by pushing) are kept whole, and arena
/// pools are listed as such.
#[test]
fn names_with_spare_capacity_and_arena_pools_are_listed() {
    let mut name = String::with_capacity(64);
    name.push_str("reg-spare-");
    name.push_str("capacity");
    let mut pool = Pool::arena();
    pool.set_name(Some(name)).unwrap();
    let made = Pool::named(String::with_capacity(40) + "reg-spare-heap");
    let listed = find("reg-spare-");
    let kinds: Vec<(Option<&str>, bool)> = listed
        .iter()
        .map(|p| (p.name.as_deref(), p.arena))
        .collect();
    assert!(
        kinds.contains(&(Some("reg-spare-capacity"), true)),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&(Some("reg-spare-heap"), false)),
        "{kinds:?}"
    );
    assert_eq!(pool.name().as_deref(), Some("reg-spare-capacity"));
    drop(made);
}

#[test]
fn moving_a_pool_keeps_its_record() {
    let mut pool = Pool::named("reg-moved");
    pool.alloc(1, 77).unwrap();
    let boxed = Box::new(pool); // the core of a Python Pool is moved like this
    let moved = *boxed;
    let [info] = find("reg-moved").try_into().unwrap();
    assert_eq!(info.stats.size, 77);
    drop(moved);
    assert!(find("reg-moved").is_empty());
}

struct Described(&'static str);

impl OriginSource for Described {
    fn describe(&self) -> String {
        self.0.to_owned()
    }
}

#[test]
fn origins_are_described_at_report_time() {
    let label = Label {
        name: Some("reg-origin-hook".into()),
        origin: Origin::Source(Arc::new(Described("made in a test"))),
    };
    let arena = Pool::arena_labelled(label);
    let [info] = find("reg-origin-hook").try_into().unwrap();
    assert_eq!(info.origin, "made in a test");
    assert!(info.arena);
    drop(arena);
}

#[test]
fn the_table_lists_a_pool_with_aligned_columns() {
    let mut pool = Pool::named("reg-table");
    pool.alloc(3, 1000).unwrap();
    let table = cymem_rs::registry::report();
    let mut lines = table.lines();
    let header = lines.next().unwrap();
    assert!(header.starts_with("bytes") || header.trim_start().starts_with("bytes"));
    let name_col = header.find("name").unwrap();
    let row = table.lines().find(|l| l.contains("reg-table")).unwrap();
    assert_eq!(
        row.find("reg-table"),
        Some(name_col),
        "name column aligned:\n{table}"
    );
    let numbers: Vec<&str> = row.split_whitespace().take(6).collect();
    assert_eq!(numbers, ["3000", "3000", "1", "1", "0", "0"]);
    assert!(table.lines().last().unwrap().contains("live pool"));
}

/// Locked pools made, used and dropped on several threads while others
/// report: every report is consistent and no dropped pool shows up.
#[test]
fn reports_race_safely_with_creation_and_drop_of_locked_pools() {
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..3)
        .map(|t| {
            thread::spawn(move || {
                for round in 0..400 {
                    let pool = SharedPool::locked(Pool::named(format!("reg-race-{t}")));
                    pool.with(|p| {
                        for i in 1..=8 {
                            p.alloc(i, 16).unwrap();
                        }
                        if round % 2 == 0 {
                            p.free_all();
                        }
                    })
                    .unwrap();
                    drop(pool);
                }
            })
        })
        .collect();
    let reporter = {
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            let mut seen = 0;
            while !stop.load(Ordering::Relaxed) {
                for info in find("reg-race-") {
                    let s = info.stats;
                    assert!(s.size <= 36 * 16 && s.peak_size <= 36 * 16, "{s:?}");
                    assert!(
                        s.block_count <= 8 && s.total_frees <= s.total_allocs,
                        "{s:?}"
                    );
                    seen += 1;
                }
                let _ = cymem_rs::registry::report();
            }
            seen
        })
    };
    for worker in workers {
        worker.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    reporter.join().unwrap();
    assert!(
        find("reg-race-").is_empty(),
        "every dropped pool left the registry"
    );
}

#[test]
fn a_changed_origin_is_what_reports_show() {
    let mut pool = Pool::named("reg-origin");
    pool.set_origin(Origin::Static("made by the loader"))
        .unwrap();
    let [info] = find("reg-origin").try_into().unwrap();
    assert_eq!(info.origin, "made by the loader");
    let report = cymem_rs::registry::try_report().unwrap();
    let row = report.lines().find(|l| l.contains("reg-origin")).unwrap();
    assert!(row.ends_with(" made by the loader"), "{report}");
    // The same text as the origin describes itself.
    assert_eq!(Origin::Static("made by the loader").describe(), info.origin);
    assert_eq!(Origin::Text("cymem.c:12".into()).describe(), "cymem.c:12");
    assert_eq!(
        format!("{:?}", Origin::Text("cymem.c:12".into())),
        r#"Origin("cymem.c:12")"#
    );
}

/// The mode column is exactly as wide as its widest cell (a limit makes
/// it wider), so the columns after it line up; no line ends in blanks.
#[test]
fn a_pool_with_a_limit_keeps_the_table_aligned() {
    let info = |name: &str, arena, limit| PoolInfo {
        name: Some(name.into()),
        origin: String::new(),
        arena,
        stats: Default::default(),
        limit,
    };
    let table = cymem_rs::registry::format_table(&[
        info("first", false, None),
        info("second", true, Some(1_000_000)),
    ]);
    let lines: Vec<&str> = table.lines().collect();
    // No wider than that cell: two spaces, then the next column.
    assert!(lines[2].contains("arena,limit=1000000  second"), "{table}");
    // Whole lines without trailing blanks (the short origins are padded
    // only up to their last character).
    // Numbers to the right of their column, text to the left.
    assert!(lines[0].starts_with("bytes  peak"), "{table}");
    assert!(lines[1].starts_with("    0     0"), "{table}");
    assert!(lines[1].contains("  heap                 first"), "{table}");
    assert!(lines[0].ends_with("name    origin"), "{table}");
    assert!(lines[1].ends_with("first   -"), "{table}");
    assert!(lines[2].ends_with("second  -"), "{table}");
    let column = |line: &str, word: &str| line.find(word).unwrap();
    let at = column(lines[0], "name");
    assert_eq!(column(lines[1], "first"), at, "{table}");
    assert_eq!(column(lines[2], "second"), at, "{table}");
}

/// Pools made on other threads while a report is being built (they are
/// published without the registry lock) never push a pool that was alive
/// all along out of it.
#[test]
fn a_pool_alive_throughout_a_report_is_in_it() {
    // Kept after many others, so it sits late in the registry's order,
    // where a report cut short would lose it; the others' records go back
    // to be taken by the threads below.
    let before: Vec<Pool> = (0..1000).map(|_| Pool::new()).collect();
    let _kept = Pool::named("reg-throughout");
    drop(before);
    let stop = Arc::new(AtomicBool::new(false));
    let churn: Vec<_> = (0..2)
        .map(|_| {
            let stop = Arc::clone(&stop);
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let pools: Vec<Pool> = (0..64).map(|_| Pool::new()).collect();
                    drop(pools);
                }
            })
        })
        .collect();
    let missed = (0..2000)
        .filter(|_| find("reg-throughout").is_empty())
        .count();
    stop.store(true, Ordering::Relaxed);
    churn.into_iter().for_each(|t| t.join().unwrap());
    assert_eq!(missed, 0, "missing from {missed} of 2000 reports");
}
