//! Model-based random testing of the pool core.
//!
//! Random sequences of alloc / free / realloc / free_all / drop-and-recreate /
//! clear / mark / release_to / set_limit
//! run on a real `Pool` and on a reference model, with the system allocator,
//! with dirtying counting allocators (with and without calloc/realloc
//! accelerators), with fault-injecting ones, and as an arena
//! (`Pool::arena()`); everything is compared after every step. The operations, the model and the checks live in
//! `tests/all/support/pool_model.rs`, shared with the cargo-fuzz target
//! `fuzz/fuzz_targets/pool_ops.rs`.
//!
//! `PROPTEST_CASES=n` changes the number of sequences of `pool_matches_model`
//! (default 256, about 107,000 operations). A failure is shrunk to a minimal
//! sequence and saved in `tests/all/model.proptest-regressions`, which is replayed
//! first on later runs.

use std::cell::RefCell;
use std::io::Write;
use std::path::Path;

use crate::support::pool_model::{decode_input, run, Mode, Op, Outcome, Stats, OP_BYTES};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::strategy::{NewTree, ValueTree};
use proptest::test_runner::{Config, FileFailurePersistence, TestRunner};

const DEFAULT_CASES: u32 = 256;
/// Operations per sequence (mean 420: 256 sequences give about 107,000).
const OPS_PER_CASE: std::ops::RangeInclusive<usize> = 360..=480;

fn config(default_cases: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_cases);
    Config {
        cases,
        source_file: Some(file!()),
        // Next to this file: tests/all/model.proptest-regressions.
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..Config::default()
    }
}

/// One operation: 8 random bytes through the decoder the fuzz target uses,
/// so proptest shrinks towards all-zero bytes, i.e. the simplest operations.
fn op() -> impl Strategy<Value = Op> {
    any::<[u8; OP_BYTES]>().prop_map(Op::decode)
}

fn mode() -> impl Strategy<Value = Mode> {
    proptest::sample::select(Mode::ALL.to_vec())
}

/// Sequences of `len` operations that, unlike `proptest::collection::vec`,
/// shrink below the generated length: a failing sequence is first halved
/// while it still fails (the steps after the failing one never matter), then
/// operations are removed one by one, then simplified one by one.
#[derive(Debug)]
struct Sequence {
    len: std::ops::RangeInclusive<usize>,
}

#[derive(Clone, Copy, Debug)]
enum Shrink {
    Halve,
    Remove(usize),
    Simplify(usize),
}

struct SequenceTree {
    ops: Vec<<BoxedStrategy<Op> as Strategy>::Tree>,
    included: Vec<bool>,
    /// Operations past this are cut off.
    len: usize,
    next: Shrink,
    last: Option<Shrink>,
    /// The length before the last halving.
    halved_from: usize,
}

impl Strategy for Sequence {
    type Tree = SequenceTree;
    type Value = Vec<Op>;

    fn new_tree(&self, runner: &mut TestRunner) -> NewTree<Self> {
        let len = self.len.clone().new_tree(runner)?.current();
        let op = op().boxed();
        let ops = (0..len)
            .map(|_| op.new_tree(runner))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SequenceTree {
            included: vec![true; len],
            ops,
            len,
            next: Shrink::Halve,
            last: None,
            halved_from: len,
        })
    }
}

impl ValueTree for SequenceTree {
    type Value = Vec<Op>;

    fn current(&self) -> Vec<Op> {
        self.ops[..self.len]
            .iter()
            .zip(&self.included)
            .filter(|(_, &inc)| inc)
            .map(|(t, _)| t.current())
            .collect()
    }

    fn simplify(&mut self) -> bool {
        loop {
            match self.next {
                Shrink::Halve if self.len > 1 => {
                    self.halved_from = self.len;
                    self.len /= 2;
                    self.last = Some(Shrink::Halve);
                    return true;
                }
                Shrink::Halve => self.next = Shrink::Remove(0),
                Shrink::Remove(i) if i >= self.len => self.next = Shrink::Simplify(0),
                Shrink::Remove(i) => {
                    self.next = Shrink::Remove(i + 1);
                    if self.included[i] {
                        self.included[i] = false;
                        self.last = Some(Shrink::Remove(i));
                        return true;
                    }
                }
                Shrink::Simplify(i) if i >= self.len => return false,
                Shrink::Simplify(i) => {
                    if self.included[i] && self.ops[i].simplify() {
                        self.last = Some(Shrink::Simplify(i));
                        return true;
                    }
                    self.next = Shrink::Simplify(i + 1);
                }
            }
        }
    }

    fn complicate(&mut self) -> bool {
        match self.last.take() {
            None => false,
            Some(Shrink::Halve) => {
                // Passed: keep the longer prefix and start removing.
                self.len = self.halved_from;
                self.next = Shrink::Remove(0);
                true
            }
            Some(Shrink::Remove(i)) => {
                self.included[i] = true;
                true
            }
            Some(Shrink::Simplify(i)) if self.ops[i].complicate() => {
                self.last = Some(Shrink::Simplify(i));
                true
            }
            Some(Shrink::Simplify(_)) => false,
        }
    }
}

/// Runs `cases` through `runner`, adding up what they exercised.
fn run_cases<S: Strategy>(
    name: &str,
    config: Config,
    strategy: S,
    body: impl Fn(S::Value) -> Stats,
) -> Stats {
    let totals = RefCell::new(Stats::default());
    let started = std::time::Instant::now();
    let mut runner = TestRunner::new(config);
    let result = runner.run(&strategy, |value| {
        totals.borrow_mut().merge(&body(value));
        Ok(())
    });
    if let Err(e) = result {
        panic!("{name}: {e}");
    }
    let totals = totals.into_inner();
    let elapsed = started.elapsed();
    // One line even when libtest captures output (the table with --nocapture).
    let _ = writeln!(
        std::io::stderr(),
        "{name}: {} operations checked in {} sequences, {elapsed:.1?}",
        totals.ops,
        totals.cases
    );
    eprintln!("{name}: {totals}");
    totals
}

#[test]
fn pool_matches_model() {
    let config = config(DEFAULT_CASES);
    let default_run = config.cases == DEFAULT_CASES;
    let stats = run_cases(
        "pool_matches_model",
        config,
        (mode(), Sequence { len: OPS_PER_CASE }),
        |(mode, ops)| run(mode, &ops),
    );
    if default_run {
        assert!(
            stats.ops >= 100_000,
            "only {} operations checked; the suite promises at least 100,000",
            stats.ops
        );
        let missing: Vec<&str> = Outcome::ALL
            .into_iter()
            .filter(|&o| o.expected_in_random_runs() && stats.count(o) == 0)
            .map(Outcome::label)
            .collect();
        assert!(
            missing.is_empty(),
            "the generator never reached: {missing:?}"
        );
        assert!(stats.ops_per_mode.iter().all(|&n| n > 0), "every mode ran");
        assert!(stats.custom_allocations > 0);
    }
}

/// Raw bytes through the fuzz target's input decoder (mode byte + 8 bytes
/// per operation), so `cargo test` covers the fuzz entry point too.
#[test]
fn fuzz_input_decoder_matches_model() {
    run_cases(
        "fuzz_input_decoder_matches_model",
        config(48),
        vec(any::<u8>(), 0..4000),
        |bytes| {
            let (mode, ops) = decode_input(&bytes);
            run(mode, &ops)
        },
    );
}

/// The committed seed corpus of the fuzz target replays cleanly.
#[test]
fn fuzz_seed_corpus_replays() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/pool_ops");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("corpus entry").path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no seeds in {}", dir.display());
    let mut totals = Stats::default();
    for file in &files {
        let bytes = std::fs::read(file).expect("read seed");
        let (mode, ops) = decode_input(&bytes);
        totals.merge(&run(mode, &ops));
    }
    let _ = writeln!(
        std::io::stderr(),
        "fuzz_seed_corpus_replays: {} operations checked in {} seeds",
        totals.ops,
        files.len()
    );
}

/// Hand-written sequences for the rules, independent of the generator's odds.
#[test]
fn directed_sequences() {
    use crate::support::pool_model::{NewSize, Target};
    let alloc = |number, elem_size| Op::Alloc {
        number,
        elem_size,
        fault: false,
    };
    let grow = |n| Op::Realloc {
        target: Target::Live(0),
        size: NewSize::Grow(n),
        fault: false,
    };
    let script = [
        alloc(0, 8),
        alloc(8, 0),
        grow(0), // 0-byte block grows to 1 byte
        alloc(4, 10),
        Op::Free(Target::Interior(1, 3)),
        Op::Free(Target::Live(0)),
        Op::Free(Target::Dead(0)), // double free
        Op::Free(Target::Null),
        Op::Free(Target::Foreign(0)),
        Op::Free(Target::Foreign(2)),
        Op::Free(Target::Wild(usize::MAX)),
        alloc(usize::MAX, 2),
        alloc(isize::MAX as usize + 1, 1),
        alloc(1, isize::MAX as usize),
        alloc(1, 1 << 20),
        Op::Realloc {
            target: Target::Live(0),
            size: NewSize::Same,
            fault: false,
        },
        Op::Realloc {
            target: Target::Live(0),
            size: NewSize::Shrink(0),
            fault: false,
        },
        Op::Realloc {
            target: Target::Live(0),
            size: NewSize::Exactly(usize::MAX),
            fault: false,
        },
        Op::Realloc {
            target: Target::Dead(0),
            size: NewSize::Grow(10),
            fault: false,
        },
        grow(100_000),
        Op::Realloc {
            target: Target::Live(1),
            size: NewSize::Grow(5),
            fault: true, // fails in the faulty modes only
        },
        Op::Alloc {
            number: 3,
            elem_size: 3,
            fault: true,
        },
        // Scopes, limits and clear.
        Op::Mark,
        alloc(1, 8),
        grow(10), // the oldest block, grown inside the scope: survives it
        Op::Mark,
        alloc(2, 2),
        Op::ReleaseTo(3),           // the inner mark
        Op::ReleaseTo(0),           // stale now
        Op::ReleaseTo(1),           // another pool's
        Op::ReleaseTo(2),           // 0
        Op::SetLimit(2 * 1024 + 1), // the live bytes: nothing more fits
        alloc(1, 1),
        grow(1),
        alloc(0, 1),
        Op::SetLimit(0),
        Op::Mark,
        Op::Clear,
        alloc(1, 1),
        Op::ReleaseTo(4),
        Op::FreeAll,
        alloc(2, 2),
        Op::Recreate,
        alloc(1, 1),
    ];
    for mode in Mode::ALL {
        let stats = run(mode, &script);
        assert_eq!(stats.ops, script.len() as u64);
    }
}

/// Many live blocks at once: the pool's table grows through several resizes,
/// then empties in a scattered order (removals at high load), with reallocs,
/// double frees and large blocks mixed in.
#[test]
fn many_live_blocks() {
    use crate::support::pool_model::{NewSize, Target};
    let mut state = 0x2545_F491_4F6C_DD1D_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut script = Vec::new();
    for i in 0..900_usize {
        let elem_size = match i % 97 {
            0 => 200_000, // larger than most, recorded apart in some tables
            n => n * 3 % 257,
        };
        script.push(Op::Alloc {
            number: 1,
            elem_size,
            fault: false,
        });
        if i % 9 == 0 {
            script.push(Op::Realloc {
                target: Target::Live(next() as u16),
                size: NewSize::Grow(next() as usize % 300),
                fault: false,
            });
        }
    }
    for i in 0..900 {
        script.push(Op::Free(Target::Live(next() as u16)));
        if i % 25 == 0 {
            script.push(Op::Free(Target::Dead(next() as u8)));
        }
    }
    for mode in [Mode::System, Mode::Counting, Mode::FaultyAccel, Mode::Arena] {
        let stats = run(mode, &script);
        assert!(stats.max_live_blocks >= 900, "{stats}");
    }
}
