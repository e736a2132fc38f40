//! Model-based checking of [`cymem_rs::Pool`], shared by the proptest suite
//! (`tests/all/model.rs`) and the cargo-fuzz target (`fuzz/fuzz_targets/pool_ops.rs`).
//!
//! Both drive the same operations through the same code:
//!
//! - [`Op::decode`] turns 8 bytes into one operation (alloc, free, realloc,
//!   free_all, drop-and-recreate, clear, mark, release_to, set_limit), including the edge cases the pool's rules
//!   talk about: 0-byte requests, 1 MiB blocks, overflowing and impossible
//!   sizes, foreign / NULL / interior / already-freed pointers, fault injection;
//! - [`Harness::apply`] runs an operation on a real `Pool` and on a reference
//!   model (a `BTreeMap` of live blocks, the open scopes and their blocks,
//!   the limit), compares the results (`Ok`/`Err`
//!   and the `PoolError`), and then checks the whole pool against the model:
//!   `size()`, `block_count()`, `block_size()`/`contains()` of every live
//!   block, `blocks()`, the contents of the blocks, and the custom
//!   allocator's books.
//!
//! The pool runs on the system allocator, on counting / dirtying /
//! fault-injecting custom allocators, or as an arena (see [`Mode`]).
//!
//! Every block is filled with a recognisable pattern (a window into a fixed
//! pseudo-random buffer chosen by the block's tag) after alloc and after
//! realloc; the whole block is verified before it is freed or moved. New
//! blocks and realloc tails must read as zeros. Any difference panics with
//! the step, the operation and the model's state.
//!
//! The custom allocators dirty what they hand out (0xAB), poison what they
//! take back (0xDD), refuse `free` of a pointer they do not own (recorded as a
//! violation instead of a double free), and can be told to fail. Their books
//! are per thread, because the test harness runs tests on parallel threads.
//!
//! `POOL_MODEL_TRACE=1` in the environment prints every operation as it runs.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::ffi::c_void;
use std::fmt;
use std::sync::OnceLock;

use cymem_rs::allocator::Accelerators;
use cymem_rs::pool::Mark;
use cymem_rs::{Allocator, Pool, PoolError};

/// The largest block the model really allocates (reallocs are clamped to it).
pub const MAX_REAL: usize = 2 << 20;
/// Requests at least this large can never be satisfied (beyond any address
/// space), so the pool must report `OutOfMemory`. Nothing between `MAX_REAL`
/// and this is ever requested: such a request could succeed or not.
pub const IMPOSSIBLE: usize = 1 << 60;
/// `isize::MAX`: larger requests are `SizeOverflow`.
pub const MAX_BLOCK: usize = isize::MAX as usize;
/// When live bytes (for an arena: bytes handed out since its last reset)
/// would exceed this, the harness frees everything first (keeps long fuzz
/// inputs under libFuzzer's RSS limit).
pub const LIVE_BUDGET: usize = 48 << 20;
/// Bytes per encoded operation.
pub const OP_BYTES: usize = 8;
/// Operations decoded from one fuzz input at most.
pub const MAX_INPUT_OPS: usize = 2048;

/// Blocks come from malloc, so C code may store doubles in them.
const MIN_ALIGN: usize = std::mem::align_of::<f64>();
/// How many recently freed addresses the model remembers (for double frees).
const DEAD_KEPT: usize = 32;
/// The costlier whole-pool comparisons run every this many steps.
const FULL_CHECK_EVERY: u64 = 8;
/// Distinct pattern windows (a prime, so shifted copies show).
const PATTERN_SHIFTS: usize = 4093;
const FOREIGN_LEN: usize = 64;
const DIRT: u8 = 0xAB;
const POISON: u8 = 0xDD;

// ---------------------------------------------------------------------------
// Operations and their byte encoding
// ---------------------------------------------------------------------------

/// Which allocator (or arena) the pool under test uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Mode {
    /// `Pool::new()`: libc calloc/realloc/free.
    System,
    /// `Allocator::from_raw` with dirtying, counting malloc/free.
    Counting,
    /// `Counting` plus calloc/realloc accelerators (the realloc dirties the tail).
    CountingAccel,
    /// `Counting` whose allocations fail when an operation says so.
    Faulty,
    /// `CountingAccel` whose allocations fail when an operation says so.
    FaultyAccel,
    /// `Pool::arena()`: bump allocation, released all at once.
    Arena,
}

impl Mode {
    pub const ALL: [Mode; 6] = [
        Mode::System,
        Mode::Counting,
        Mode::CountingAccel,
        Mode::Faulty,
        Mode::FaultyAccel,
        Mode::Arena,
    ];

    pub fn from_byte(b: u8) -> Mode {
        Mode::ALL[b as usize % Mode::ALL.len()]
    }

    /// Whether the pool's blocks come from the counting allocators below.
    fn custom(self) -> bool {
        !matches!(self, Mode::System | Mode::Arena)
    }

    fn faulty(self) -> bool {
        matches!(self, Mode::Faulty | Mode::FaultyAccel)
    }

    fn new_pool(self) -> Pool {
        match self {
            Mode::Arena => Pool::arena(),
            _ => Pool::with_allocator(self.allocator()),
        }
    }

    fn allocator(self) -> Allocator {
        match self {
            Mode::System | Mode::Arena => Allocator::system(),
            // SAFETY: the wrappers below behave like C malloc/free on top of
            // libc's, which is thread-safe.
            Mode::Counting | Mode::Faulty => unsafe {
                Allocator::from_raw(dirty_malloc, checked_free)
            },
            Mode::CountingAccel | Mode::FaultyAccel => {
                // SAFETY: as for the plain pair above.
                let pair = unsafe { Allocator::from_raw(dirty_malloc, checked_free) };
                static ACCELERATORS: Accelerators = Accelerators {
                    calloc: zeroing_calloc,
                    realloc: dirty_realloc,
                };
                // SAFETY: the calloc and realloc wrappers use the same libc
                // heap and the same books, so `checked_free` releases their
                // blocks and `dirty_realloc` accepts `dirty_malloc`'s.
                unsafe { pair.with_accelerators(&ACCELERATORS) }
            }
        }
    }
}

/// The pointer an operation passes to `free` / `realloc`. Indices are taken
/// modulo the model's lists, so every sequence of operations is meaningful.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// A live block of the pool (the n-th in address order).
    Live(u16),
    /// A recently freed (or moved-away) address; it may have been reused.
    Dead(u8),
    /// Inside (or one past) a live block, never its start.
    Interior(u16, u32),
    Null,
    /// A block of another pool, or a buffer the pool never saw.
    Foreign(u8),
    /// An arbitrary address (never dereferenced by a correct pool).
    Wild(usize),
}

/// The size a `realloc` asks for, relative to the target's current size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NewSize {
    /// `old + 1 + n`, clamped to `MAX_REAL`.
    Grow(usize),
    Same,
    /// Smaller than the block (0 stays 0).
    Shrink(usize),
    Exactly(usize),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `fault`: in the faulty modes, the allocator fails during this operation.
    Alloc {
        number: usize,
        elem_size: usize,
        fault: bool,
    },
    Free(Target),
    Realloc {
        target: Target,
        size: NewSize,
        fault: bool,
    },
    FreeAll,
    /// Drop the pool (checking mallocs == frees) and start a new one.
    Recreate,
    /// `clear()`: every block goes, open scopes stay open.
    Clear,
    /// `mark()`: a scope opens.
    Mark,
    /// `release_to` an open mark (picked by the number), or to a stale,
    /// foreign or 0 mark.
    ReleaseTo(u8),
    /// `set_limit`: none for an even number, else the live bytes plus a
    /// margin that may be negative.
    SetLimit(u32),
}

impl Op {
    /// Decodes one operation from 8 bytes `[kind, fault, i, j, x (u32 LE)]`.
    /// All-zero bytes give the simplest operation (a 0-byte alloc), so
    /// shrinking towards zero simplifies a failing case.
    pub fn decode(b: [u8; OP_BYTES]) -> Op {
        let [kind, f, i, j, x0, x1, x2, x3] = b;
        let x = u32::from_le_bytes([x0, x1, x2, x3]);
        // Free has no size: its index gets 16 bits, to reach any of many blocks.
        let wide = u16::from_le_bytes([i, x3]);
        let xu = x as usize;
        let fault = f >= 0xCC; // ~20% of operations
        let alloc = |number: usize, elem_size: usize| Op::Alloc {
            number,
            elem_size,
            fault,
        };
        let realloc = |target: Target| Op::Realloc {
            target,
            size: NewSize::decode(j, x),
            fault,
        };
        match kind {
            // Small blocks: up to 16 x 256 bytes (0 bytes when number is 0).
            0..=77 => alloc(i as usize % 17, xu % 257),
            // Shorter lifetimes.
            78..=84 => match j % 7 {
                0 => Op::Clear,
                1 | 2 => Op::Mark,
                3..=5 => Op::ReleaseTo(i),
                _ => Op::SetLimit(x),
            },
            // Around powers of two, 128 B to 1 MiB: 2^k - 1, 2^k, 2^k + 1.
            251..=253 => alloc(1, (1 << (7 + xu % 14)) + j as usize % 3 - 1),
            // 0-byte requests, in every shape.
            85..=94 => match j % 5 {
                0 => alloc(0, xu),
                1 => alloc(xu, 0),
                2 => alloc(0, 0),
                3 => alloc(0, usize::MAX),
                _ => alloc(usize::MAX, 0),
            },
            // About 1 MiB.
            95..=97 => match j % 4 {
                0 => alloc(1, 1 << 20),
                1 => alloc(256, 4096),
                2 => alloc(1 << 20, 1),
                _ => alloc(1, (1 << 20) + xu % 65536),
            },
            // `number * elem_size` overflows usize or exceeds isize::MAX.
            98..=101 => match j % 7 {
                0 => alloc(usize::MAX, 2),
                1 => alloc(2, usize::MAX),
                2 => alloc(MAX_BLOCK + 1, 1),
                3 => alloc(1, MAX_BLOCK + 1),
                4 => alloc(MAX_BLOCK / 2 + 1, 2),
                5 => alloc(usize::MAX, usize::MAX),
                _ => alloc(1 << 32, 1 << 32),
            },
            // Representable but impossible: OutOfMemory.
            102..=103 => match j % 4 {
                0 => alloc(1, MAX_BLOCK),
                1 => alloc(MAX_BLOCK, 1),
                2 => alloc(1 << 31, 1 << 31),
                _ => alloc(1, IMPOSSIBLE + xu),
            },
            104..=153 => Op::Free(Target::Live(wide)),
            154..=161 => Op::Free(Target::Dead(i)),
            162..=165 => Op::Free(Target::Interior(wide, x)),
            166..=167 => Op::Free(Target::Null),
            168..=170 => Op::Free(Target::Foreign(i)),
            171..=172 => Op::Free(Target::Wild(wild_addr(i, x))),
            173..=241 => realloc(Target::Live(i.into())),
            242..=245 => realloc(Target::Dead(i)),
            246..=247 => realloc(Target::Interior(i.into(), x)),
            248 => realloc(Target::Null),
            249 => realloc(Target::Foreign(i)),
            250 => realloc(Target::Wild(wild_addr(i, x))),
            254 => Op::FreeAll,
            255 => Op::Recreate,
        }
    }
}

impl NewSize {
    fn decode(j: u8, x: u32) -> NewSize {
        let xu = x as usize;
        match j {
            0..=99 => NewSize::Grow(xu % 512),
            100..=139 => NewSize::Grow(xu % 65536),
            140..=159 => NewSize::Same,
            160..=189 => NewSize::Shrink(xu),
            190..=191 => NewSize::Exactly((1 << 20) + xu % 4096),
            // Around powers of two, 128 B to 1 MiB.
            192..=194 => NewSize::Exactly((1 << (7 + xu % 14)) + xu / 14 % 3 - 1),
            195..=209 => NewSize::Exactly(match xu % 3 {
                0 => MAX_BLOCK + 1,
                1 => usize::MAX,
                _ => MAX_BLOCK + 1 + xu,
            }),
            210..=219 => NewSize::Exactly(match xu % 3 {
                0 => MAX_BLOCK,
                1 => 1 << 62,
                _ => IMPOSSIBLE + xu,
            }),
            220..=255 => NewSize::Grow(0),
        }
    }

    fn resolve(self, old: usize) -> usize {
        match self {
            NewSize::Grow(n) => (old + 1 + n).min(MAX_REAL.max(old)),
            NewSize::Same => old,
            NewSize::Shrink(n) if old > 0 => old - 1 - n % old,
            NewSize::Shrink(_) => 0,
            NewSize::Exactly(n) => n,
        }
    }
}

fn wild_addr(i: u8, x: u32) -> usize {
    match i % 7 {
        0 => 1,
        1 => 8,
        2 => 0x1000,
        3 => 0xdead_beef,
        4 => usize::MAX,
        5 => usize::MAX - 15,
        _ => (x as usize) << 4,
    }
}

/// A fuzz input: the first byte picks the [`Mode`], then [`OP_BYTES`] per
/// operation (a short last chunk is zero-padded).
pub fn decode_input(data: &[u8]) -> (Mode, Vec<Op>) {
    let Some((&mode, rest)) = data.split_first() else {
        return (Mode::System, Vec::new());
    };
    let ops = rest
        .chunks(OP_BYTES)
        .take(MAX_INPUT_OPS)
        .map(|chunk| {
            let mut b = [0u8; OP_BYTES];
            b[..chunk.len()].copy_from_slice(chunk);
            Op::decode(b)
        })
        .collect();
    (Mode::from_byte(mode), ops)
}

/// Runs one sequence on a fresh pool and model, checking after every step;
/// panics on the first difference.
pub fn run(mode: Mode, ops: &[Op]) -> Stats {
    let mut harness = Harness::new(mode);
    for op in ops {
        harness.apply(op);
    }
    harness.finish()
}

// ---------------------------------------------------------------------------
// Statistics
// ---------------------------------------------------------------------------

/// What one operation did (counted, so a run shows what it exercised).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    AllocOk,
    AllocOkZeroBytes,
    AllocOkLarge,
    AllocSizeOverflow,
    AllocOomImpossible,
    AllocOomInjected,
    FreeOk,
    FreeOkReusedAddress,
    FreeUnknownAlreadyFreed,
    FreeUnknownInterior,
    FreeUnknownNull,
    FreeUnknownForeign,
    FreeUnknownWild,
    ReallocOk,
    ReallocOkMoved,
    ReallocOkFromZeroBytes,
    ReallocNotLargerSame,
    ReallocNotLargerSmaller,
    ReallocSizeOverflow,
    ReallocOomImpossible,
    ReallocOomInjected,
    ReallocUnknownPointer,
    FreeAll,
    Recreate,
    Clear,
    MarkOk,
    ReleaseToOk,
    ReleaseToBadMark,
    SetLimit,
    AllocLimitExceeded,
    ReallocLimitExceeded,
    /// Not an operation of the input: the harness freed everything to stay
    /// under `LIVE_BUDGET`.
    FreeAllForBudget,
}

impl Outcome {
    pub const ALL: [Outcome; 32] = [
        Outcome::AllocOk,
        Outcome::AllocOkZeroBytes,
        Outcome::AllocOkLarge,
        Outcome::AllocSizeOverflow,
        Outcome::AllocOomImpossible,
        Outcome::AllocOomInjected,
        Outcome::FreeOk,
        Outcome::FreeOkReusedAddress,
        Outcome::FreeUnknownAlreadyFreed,
        Outcome::FreeUnknownInterior,
        Outcome::FreeUnknownNull,
        Outcome::FreeUnknownForeign,
        Outcome::FreeUnknownWild,
        Outcome::ReallocOk,
        Outcome::ReallocOkMoved,
        Outcome::ReallocOkFromZeroBytes,
        Outcome::ReallocNotLargerSame,
        Outcome::ReallocNotLargerSmaller,
        Outcome::ReallocSizeOverflow,
        Outcome::ReallocOomImpossible,
        Outcome::ReallocOomInjected,
        Outcome::ReallocUnknownPointer,
        Outcome::FreeAll,
        Outcome::Recreate,
        Outcome::Clear,
        Outcome::MarkOk,
        Outcome::ReleaseToOk,
        Outcome::ReleaseToBadMark,
        Outcome::SetLimit,
        Outcome::AllocLimitExceeded,
        Outcome::ReallocLimitExceeded,
        Outcome::FreeAllForBudget,
    ];

    /// Every outcome but `FreeAllForBudget` must show up in a long random
    /// run (the suite asserts it, so a generator change cannot silently stop
    /// testing something).
    pub fn expected_in_random_runs(self) -> bool {
        self != Outcome::FreeAllForBudget
    }

    pub fn label(self) -> &'static str {
        match self {
            Outcome::AllocOk => "alloc ok",
            Outcome::AllocOkZeroBytes => "alloc ok, 0 bytes",
            Outcome::AllocOkLarge => "alloc ok, >= 1 MiB",
            Outcome::AllocSizeOverflow => "alloc SizeOverflow",
            Outcome::AllocOomImpossible => "alloc OutOfMemory (impossible size)",
            Outcome::AllocOomInjected => "alloc OutOfMemory (injected)",
            Outcome::FreeOk => "free ok",
            Outcome::FreeOkReusedAddress => "free ok (freed address reused)",
            Outcome::FreeUnknownAlreadyFreed => "free UnknownPointer (already freed)",
            Outcome::FreeUnknownInterior => "free UnknownPointer (interior)",
            Outcome::FreeUnknownNull => "free UnknownPointer (NULL)",
            Outcome::FreeUnknownForeign => "free UnknownPointer (foreign)",
            Outcome::FreeUnknownWild => "free UnknownPointer (wild)",
            Outcome::ReallocOk => "realloc ok",
            Outcome::ReallocOkMoved => "realloc ok, moved",
            Outcome::ReallocOkFromZeroBytes => "realloc ok, from 0 bytes",
            Outcome::ReallocNotLargerSame => "realloc NotLarger (same size)",
            Outcome::ReallocNotLargerSmaller => "realloc NotLarger (smaller)",
            Outcome::ReallocSizeOverflow => "realloc SizeOverflow",
            Outcome::ReallocOomImpossible => "realloc OutOfMemory (impossible size)",
            Outcome::ReallocOomInjected => "realloc OutOfMemory (injected)",
            Outcome::ReallocUnknownPointer => "realloc UnknownPointer",
            Outcome::FreeAll => "free_all",
            Outcome::Recreate => "drop and recreate",
            Outcome::Clear => "clear",
            Outcome::MarkOk => "mark",
            Outcome::ReleaseToOk => "release_to ok",
            Outcome::ReleaseToBadMark => "release_to BadMark",
            Outcome::SetLimit => "set_limit",
            Outcome::AllocLimitExceeded => "alloc LimitExceeded",
            Outcome::ReallocLimitExceeded => "realloc LimitExceeded",
            Outcome::FreeAllForBudget => "free_all (live-bytes budget)",
        }
    }
}

/// What a run exercised: operations per mode and outcome counts.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub ops: u64,
    pub cases: u64,
    pub ops_per_mode: [u64; Mode::ALL.len()],
    pub outcomes: [u64; Outcome::ALL.len()],
    /// malloc/calloc/realloc calls the custom allocators served.
    pub custom_allocations: u64,
    /// The most live blocks one pool held.
    pub max_live_blocks: usize,
}

impl Stats {
    fn hit(&mut self, outcome: Outcome) {
        self.outcomes[outcome as usize] += 1;
    }

    pub fn count(&self, outcome: Outcome) -> u64 {
        self.outcomes[outcome as usize]
    }

    pub fn merge(&mut self, other: &Stats) {
        self.ops += other.ops;
        self.cases += other.cases;
        self.custom_allocations += other.custom_allocations;
        self.max_live_blocks = self.max_live_blocks.max(other.max_live_blocks);
        for (a, b) in self.ops_per_mode.iter_mut().zip(other.ops_per_mode) {
            *a += b;
        }
        for (a, b) in self.outcomes.iter_mut().zip(other.outcomes) {
            *a += b;
        }
    }
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} operations checked in {} sequences ({} custom-allocator allocations, \
             up to {} live blocks)",
            self.ops, self.cases, self.custom_allocations, self.max_live_blocks
        )?;
        let modes: Vec<String> = Mode::ALL
            .iter()
            .zip(self.ops_per_mode)
            .map(|(m, n)| format!("{m:?} {n}"))
            .collect();
        writeln!(f, "  operations per allocator: {}", modes.join(", "))?;
        for outcome in Outcome::ALL {
            writeln!(f, "  {:<40} {}", outcome.label(), self.count(outcome))?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Block contents
// ---------------------------------------------------------------------------

fn pattern_buffer() -> &'static [u8] {
    static PATTERN: OnceLock<Vec<u8>> = OnceLock::new();
    PATTERN.get_or_init(|| {
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        (0..MAX_REAL + PATTERN_SHIFTS)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                // Never 0 (a zeroed byte must not pass for content) nor the
                // allocators' fill bytes.
                match (state >> 24) as u8 {
                    0 | DIRT | POISON => 0x5A,
                    b => b,
                }
            })
            .collect()
    })
}

/// The content a block with this tag must hold.
fn pattern(tag: usize, len: usize) -> &'static [u8] {
    let start = tag % PATTERN_SHIFTS;
    &pattern_buffer()[start..start + len]
}

fn zeros(len: usize) -> &'static [u8] {
    static ZEROS: OnceLock<Vec<u8>> = OnceLock::new();
    &ZEROS.get_or_init(|| vec![0u8; MAX_REAL])[..len]
}

/// # Safety
/// `addr` must be a live block of at least `len` bytes (for the model).
unsafe fn block<'a>(addr: usize, len: usize) -> &'a [u8] {
    if len == 0 {
        return &[];
    }
    // SAFETY: `addr` is a live block of at least `len` > 0 bytes (`# Safety`).
    unsafe { std::slice::from_raw_parts(addr as *const u8, len) }
}

/// # Safety
/// As for [`block`]; nothing else may access the block meanwhile.
unsafe fn block_mut<'a>(addr: usize, len: usize) -> &'a mut [u8] {
    if len == 0 {
        return &mut [];
    }
    // SAFETY: `addr` is a live block of at least `len` > 0 bytes that nothing
    // else accesses meanwhile (`# Safety`).
    unsafe { std::slice::from_raw_parts_mut(addr as *mut u8, len) }
}

fn first_difference(got: &[u8], want: &[u8]) -> String {
    match got.iter().zip(want).position(|(a, b)| a != b) {
        Some(i) => format!(
            "first difference at byte {i} of {}: got {:#04x}, expected {:#04x}",
            want.len(),
            got[i],
            want[i]
        ),
        None => "no difference".to_string(),
    }
}

// ---------------------------------------------------------------------------
// The custom allocators and their per-thread books
// ---------------------------------------------------------------------------

#[derive(Default)]
struct Books {
    /// Allocation calls served (malloc, calloc, realloc to a new block).
    allocations: u64,
    /// Blocks released (free, and the old block of a realloc).
    releases: u64,
    /// When set, every allocation call fails (returns NULL, touches nothing).
    fault: bool,
    injected: u64,
    /// Blocks handed out and not yet released: address -> size.
    live: HashMap<usize, usize>,
    /// Contract breaches seen by the allocator (double or foreign free...).
    violations: Vec<String>,
}

thread_local! {
    static BOOKS: RefCell<Books> = RefCell::new(Books::default());
}

fn with_books<R>(f: impl FnOnce(&mut Books) -> R) -> R {
    BOOKS.with(|b| f(&mut b.borrow_mut()))
}

/// Returns true (and counts it) if this allocation call must fail.
fn injected_failure() -> bool {
    with_books(|b| {
        if b.fault {
            b.injected += 1;
        }
        b.fault
    })
}

fn record_allocation(p: *mut c_void, size: usize, what: &str) {
    with_books(|b| {
        b.allocations += 1;
        if b.live.insert(p as usize, size).is_some() {
            b.violations
                .push(format!("{what} returned {p:p}, which was already live"));
        }
    });
}

unsafe extern "C" fn dirty_malloc(size: usize) -> *mut c_void {
    if injected_failure() {
        return std::ptr::null_mut();
    }
    // SAFETY: plain libc malloc.
    let p = unsafe { libc::malloc(size) };
    if !p.is_null() {
        // SAFETY: a non-NULL result of `malloc(size)` is writable for `size` bytes.
        unsafe { p.cast::<u8>().write_bytes(DIRT, size) };
        record_allocation(p, size, "malloc");
    }
    p
}

unsafe extern "C" fn zeroing_calloc(number: usize, elem_size: usize) -> *mut c_void {
    if injected_failure() {
        return std::ptr::null_mut();
    }
    let Some(size) = number.checked_mul(elem_size) else {
        return std::ptr::null_mut();
    };
    // SAFETY: plain libc malloc.
    let p = unsafe { libc::malloc(size) };
    if !p.is_null() {
        // SAFETY: a non-NULL result of `malloc(size)` is writable for `size` bytes.
        unsafe { p.cast::<u8>().write_bytes(0, size) };
        record_allocation(p, size, "calloc");
    }
    p
}

/// C realloc that always moves and leaves the new tail dirty.
unsafe extern "C" fn dirty_realloc(old: *mut c_void, size: usize) -> *mut c_void {
    if old.is_null() {
        // SAFETY: `dirty_malloc` has no preconditions beyond C malloc's.
        return unsafe { dirty_malloc(size) };
    }
    if injected_failure() {
        return std::ptr::null_mut();
    }
    let Some(old_size) = with_books(|b| b.live.get(&(old as usize)).copied()) else {
        with_books(|b| {
            b.violations.push(format!(
                "realloc of {old:p}, which this allocator does not own"
            ))
        });
        return std::ptr::null_mut();
    };
    // SAFETY: plain libc malloc.
    let new = unsafe { libc::malloc(size) }.cast::<u8>();
    if new.is_null() {
        return new.cast();
    }
    let kept = old_size.min(size);
    // SAFETY: `new` is writable for `size` >= `kept` bytes, `old` is a live
    // block of `old_size` >= `kept` bytes (in the books), distinct from `new`.
    unsafe { new.copy_from_nonoverlapping(old.cast::<u8>(), kept) };
    // SAFETY: `kept` <= `size`: the offset stays inside `new`.
    let tail = unsafe { new.add(kept) };
    // SAFETY: the `size - kept` bytes from `tail` are the rest of `new`.
    unsafe { tail.write_bytes(DIRT, size - kept) };
    record_allocation(new.cast(), size, "realloc");
    // SAFETY: `old` is live in the books, so `checked_free` releases it once.
    unsafe { checked_free(old) };
    new.cast()
}

unsafe extern "C" fn checked_free(p: *mut c_void) {
    let size = with_books(|b| {
        let size = b.live.remove(&(p as usize));
        match size {
            Some(_) => b.releases += 1,
            None => b.violations.push(format!(
                "free({p:p}): not a live block of this allocator (double free, foreign pointer or NULL)"
            )),
        }
        size
    });
    if let Some(size) = size {
        // SAFETY: the books held `p` as a live block of `size` bytes.
        unsafe { p.cast::<u8>().write_bytes(POISON, size) };
        // SAFETY: a live block of libc's malloc, removed from the books: freed once.
        unsafe { libc::free(p) };
    }
}

// ---------------------------------------------------------------------------
// The model and the harness
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
struct Block {
    size: usize,
    /// Selects the content pattern.
    tag: usize,
}

/// What the pool should hold.
#[derive(Debug, Default)]
struct Model {
    blocks: BTreeMap<usize, Block>,
    size: usize,
    /// Recently freed or moved-away addresses, newest last.
    dead: VecDeque<usize>,
    /// Arena mode: bytes handed out since the last reset (freed space is
    /// not reused before free_all).
    arena_used: usize,
    /// Open scopes, outermost first: each mark and the live blocks
    /// allocated while it was the innermost.
    scopes: Vec<(Mark, BTreeSet<usize>)>,
    /// Marks released, or of a dropped pool.
    stale: Vec<Mark>,
    limit: Option<usize>,
}

impl Model {
    fn nth_live(&self, i: u16) -> Option<(usize, Block)> {
        if self.blocks.is_empty() {
            return None;
        }
        let n = i as usize % self.blocks.len();
        self.blocks.iter().nth(n).map(|(&a, &b)| (a, b))
    }

    /// The `LimitExceeded` of a request for `requested` bytes that frees
    /// `freed` (a realloc's old block), if the limit refuses it.
    fn refused(&self, freed: usize, requested: usize) -> Option<PoolError> {
        let limit = self.limit?;
        let after = (self.size - freed).checked_add(requested);
        after
            .is_none_or(|after| after > limit)
            .then_some(PoolError::LimitExceeded {
                limit,
                live: self.size,
                requested,
            })
    }

    /// A block left the pool: it leaves its scope too.
    fn unscope(&mut self, addr: usize) -> bool {
        self.scopes
            .iter_mut()
            .any(|(_, blocks)| blocks.remove(&addr))
    }

    fn bury(&mut self, addr: usize) {
        if self.dead.len() == DEAD_KEPT {
            self.dead.pop_front();
        }
        self.dead.push_back(addr);
    }
}

/// A pool under test, its model, and the foreign memory it must never touch.
pub struct Harness {
    mode: Mode,
    pool: Option<Pool>,
    model: Model,
    next_tag: usize,
    /// Allocator books at the current pool's creation: (allocations, releases).
    books_at_start: (u64, u64),
    /// A second pool; its block is foreign to `pool`.
    other: Pool,
    other_block: usize,
    /// A mark of `other`: foreign to `pool`.
    other_mark: Mark,
    /// A buffer the pool never saw.
    foreign: Box<[u8; FOREIGN_LEN]>,
    step: u64,
    op: Option<Op>,
    stats: Stats,
}

impl Drop for Harness {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // A check failed or the pool itself panicked: the pool may be
            // inconsistent, and dropping it could panic again (an abort) or
            // free garbage. Leak it, and say where the run stopped.
            std::mem::forget(self.pool.take());
            let _ = BOOKS.try_with(|b| b.try_borrow_mut().map(|mut b| b.fault = false));
            eprintln!(
                "pool model: stopped at step {} ({:?} allocator), operation {:?}",
                self.step, self.mode, self.op
            );
        }
    }
}

/// `POOL_MODEL_TRACE=1` in the environment prints every operation as it runs.
fn tracing() -> bool {
    static TRACE: OnceLock<bool> = OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("POOL_MODEL_TRACE").is_some_and(|v| v != "0"))
}

/// What a [`Target`] turned out to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PtrKind {
    Live,
    AlreadyFreed,
    Interior,
    Null,
    Foreign,
    Wild,
}

const OTHER_TAG: usize = 17;
const FOREIGN_TAG: usize = 29;

impl Harness {
    pub fn new(mode: Mode) -> Harness {
        if tracing() {
            eprintln!("pool model: new sequence, {mode:?} allocator");
        }
        with_books(|b| *b = Books::default());
        let mut other = Pool::new();
        let other_block = other.alloc(1, FOREIGN_LEN).expect("other pool").as_ptr() as usize;
        let other_mark = other.mark().expect("other pool");
        // SAFETY: a live 64-byte block of `other`.
        unsafe { block_mut(other_block, FOREIGN_LEN) }
            .copy_from_slice(pattern(OTHER_TAG, FOREIGN_LEN));
        let mut foreign = Box::new([0u8; FOREIGN_LEN]);
        foreign.copy_from_slice(pattern(FOREIGN_TAG, FOREIGN_LEN));
        let mut harness = Harness {
            mode,
            pool: Some(mode.new_pool()),
            model: Model::default(),
            next_tag: 1000,
            books_at_start: (0, 0),
            other,
            other_block,
            other_mark,
            foreign,
            step: 0,
            op: None,
            stats: Stats::default(),
        };
        harness.stats.cases = 1;
        harness.check();
        harness
    }

    fn pool(&mut self) -> &mut Pool {
        self.pool
            .as_mut()
            .expect("a pool exists between operations")
    }

    #[track_caller]
    fn fail(&self, msg: impl fmt::Display) -> ! {
        panic!(
            "pool/model mismatch at step {} ({:?} allocator), operation {:?}:\n  {}\n  model: {} live blocks, {} bytes",
            self.step,
            self.mode,
            self.op,
            msg,
            self.model.blocks.len(),
            self.model.size
        )
    }

    /// Applies one operation to pool and model, then checks everything.
    pub fn apply(&mut self, op: &Op) {
        self.step += 1;
        self.op = Some(*op);
        if tracing() {
            eprintln!("pool model: step {}: {op:?}", self.step);
        }
        self.stats.ops += 1;
        self.stats.ops_per_mode[self.mode as usize] += 1;
        match *op {
            Op::Alloc {
                number,
                elem_size,
                fault,
            } => self.alloc(number, elem_size, fault),
            Op::Free(target) => self.free(target),
            Op::Realloc {
                target,
                size,
                fault,
            } => self.realloc(target, size, fault),
            Op::FreeAll => {
                self.stats.hit(Outcome::FreeAll);
                self.free_all();
            }
            Op::Recreate => {
                self.stats.hit(Outcome::Recreate);
                self.recreate();
            }
            Op::Clear => self.clear(),
            Op::Mark => self.mark(),
            Op::ReleaseTo(i) => self.release_to(i),
            Op::SetLimit(x) => self.set_limit(x),
        }
        self.check();
    }

    /// Checks every block's contents, drops the pool (the custom allocator
    /// must have released everything it handed out) and returns the stats.
    pub fn finish(mut self) -> Stats {
        self.op = None;
        self.verify_all_contents();
        self.drop_pool();
        self.stats.custom_allocations = with_books(|b| b.allocations);
        std::mem::take(&mut self.stats)
    }

    fn resolve(&self, target: Target) -> (usize, PtrKind) {
        match target {
            Target::Live(i) => match self.model.nth_live(i) {
                Some((addr, _)) => (addr, PtrKind::Live),
                None => (0, PtrKind::Null),
            },
            Target::Dead(i) => match self.model.dead.len() {
                0 => (0, PtrKind::Null),
                n => (self.model.dead[i as usize % n], PtrKind::AlreadyFreed),
            },
            Target::Interior(i, off) => match self.model.nth_live(i) {
                Some((addr, b)) => (addr + 1 + off as usize % b.size.max(1), PtrKind::Interior),
                None => (0, PtrKind::Null),
            },
            Target::Null => (0, PtrKind::Null),
            Target::Foreign(i) => match i % 3 {
                0 => (self.other_block, PtrKind::Foreign),
                1 => (self.other_block + 8, PtrKind::Foreign),
                _ => (self.foreign.as_ptr() as usize, PtrKind::Foreign),
            },
            Target::Wild(addr) => (addr, PtrKind::Wild),
        }
    }

    /// Runs `f` with the allocator failing if this operation injects a fault.
    fn faulting<R>(&mut self, fault: bool, f: impl FnOnce(&mut Pool) -> R) -> R {
        let armed = fault && self.mode.faulty();
        with_books(|b| b.fault = armed);
        let r = f(self.pool());
        with_books(|b| b.fault = false);
        r
    }

    /// Live bytes (or, for an arena, bytes handed out since the last reset)
    /// would exceed the budget: free everything first.
    fn make_room(&mut self, more_live: usize, new_block: usize) {
        let arena_full =
            self.mode == Mode::Arena && self.model.arena_used + new_block > LIVE_BUDGET;
        if self.model.size + more_live > LIVE_BUDGET || arena_full {
            self.stats.hit(Outcome::FreeAllForBudget);
            self.free_all();
            self.check();
        }
    }

    fn check_error(&self, what: &str, got: PoolError, want: PoolError) {
        // The SizeOverflow of a realloc has no documented fields: compare the kind.
        let same = match (got, want) {
            (PoolError::SizeOverflow { .. }, PoolError::SizeOverflow { number: 0, .. }) => true,
            _ => got == want,
        };
        if !same {
            self.fail(format_args!(
                "{what}: got Err({got:?}), expected Err({want:?})"
            ));
        }
    }

    fn check_new_address(&self, what: &str, addr: usize, moved_from: Option<usize>) {
        if addr % MIN_ALIGN != 0 {
            self.fail(format_args!(
                "{what} returned {addr:#x}, not aligned to {MIN_ALIGN}"
            ));
        }
        if Some(addr) != moved_from && self.model.blocks.contains_key(&addr) {
            self.fail(format_args!(
                "{what} returned {addr:#x}, which is already a live block"
            ));
        }
        if addr == self.other_block || addr == self.foreign.as_ptr() as usize {
            self.fail(format_args!("{what} returned foreign memory {addr:#x}"));
        }
    }

    fn new_tag(&mut self) -> usize {
        self.next_tag += 1;
        self.next_tag
    }

    fn write_pattern(&self, addr: usize, b: Block) {
        // SAFETY: `addr` is a live block of `b.size` bytes (model).
        unsafe { block_mut(addr, b.size) }.copy_from_slice(pattern(b.tag, b.size));
    }

    fn verify_content(&self, addr: usize, b: Block, when: &str) {
        // SAFETY: `addr` is a live block of `b.size` bytes (model).
        let got = unsafe { block(addr, b.size) };
        let want = pattern(b.tag, b.size);
        if got != want {
            self.fail(format_args!(
                "block {addr:#x} ({} bytes) lost its contents {when}: {}",
                b.size,
                first_difference(got, want)
            ));
        }
    }

    fn verify_all_contents(&self) {
        for (&addr, &b) in &self.model.blocks {
            self.verify_content(addr, b, "(full check)");
        }
    }

    fn verify_zeroed(&self, addr: usize, from: usize, to: usize, what: &str) {
        // SAFETY: `addr` is a live block of at least `to` bytes (model).
        let got = &unsafe { block(addr, to) }[from..];
        if got != zeros(to - from) {
            self.fail(format_args!(
                "{what}: bytes {from}..{to} of {addr:#x} are not zero: {}",
                first_difference(got, zeros(to - from))
            ));
        }
    }

    fn alloc(&mut self, number: usize, elem_size: usize, fault: bool) {
        let want = match number.checked_mul(elem_size) {
            Some(bytes) if bytes <= MAX_BLOCK => {
                if let Some(refused) = self.model.refused(0, bytes) {
                    Err(refused)
                } else if bytes >= IMPOSSIBLE {
                    Err(PoolError::OutOfMemory { bytes })
                } else {
                    assert!(bytes <= MAX_REAL, "generator bug: {bytes} bytes");
                    self.make_room(bytes, bytes);
                    if fault && self.mode.faulty() {
                        Err(PoolError::OutOfMemory { bytes })
                    } else {
                        Ok(bytes)
                    }
                }
            }
            _ => Err(PoolError::SizeOverflow { number, elem_size }),
        };
        let got = self.faulting(fault, |pool| pool.alloc(number, elem_size));
        match (got, want) {
            (Ok(ptr), Ok(bytes)) => {
                let addr = ptr.as_ptr() as usize;
                self.check_new_address("alloc", addr, None);
                self.verify_zeroed(addr, 0, bytes, "a new block");
                let b = Block {
                    size: bytes,
                    tag: self.new_tag(),
                };
                self.write_pattern(addr, b);
                self.model.blocks.insert(addr, b);
                self.model.size += bytes;
                self.model.arena_used += bytes.max(1);
                if let Some((_, blocks)) = self.model.scopes.last_mut() {
                    blocks.insert(addr);
                }
                self.stats.hit(match bytes {
                    0 => Outcome::AllocOkZeroBytes,
                    b if b >= 1 << 20 => Outcome::AllocOkLarge,
                    _ => Outcome::AllocOk,
                });
            }
            (Err(got), Err(want)) => {
                self.check_error("alloc", got, want);
                self.stats.hit(match want {
                    PoolError::SizeOverflow { .. } => Outcome::AllocSizeOverflow,
                    PoolError::LimitExceeded { .. } => Outcome::AllocLimitExceeded,
                    PoolError::OutOfMemory { bytes } if bytes >= IMPOSSIBLE => {
                        Outcome::AllocOomImpossible
                    }
                    _ => Outcome::AllocOomInjected,
                });
            }
            (got, want) => self.fail(format_args!(
                "alloc({number}, {elem_size}): got {got:?}, expected {want:?}"
            )),
        }
    }

    fn free(&mut self, target: Target) {
        let (addr, kind) = self.resolve(target);
        let live = self.model.blocks.get(&addr).copied();
        if let Some(b) = live {
            self.verify_content(addr, b, "before free");
        }
        let got = self.pool().free(addr as *mut c_void);
        match (got, live) {
            (Ok(size), Some(b)) => {
                if size != b.size {
                    self.fail(format_args!(
                        "free({addr:#x}) returned {size}, expected the block's size {}",
                        b.size
                    ));
                }
                self.model.blocks.remove(&addr);
                self.model.size -= b.size;
                self.model.unscope(addr);
                self.model.bury(addr);
                self.stats.hit(if kind == PtrKind::Live {
                    Outcome::FreeOk
                } else {
                    Outcome::FreeOkReusedAddress
                });
            }
            (Err(got), None) => {
                self.check_error("free", got, PoolError::UnknownPointer { addr });
                self.stats.hit(match kind {
                    PtrKind::AlreadyFreed => Outcome::FreeUnknownAlreadyFreed,
                    PtrKind::Interior => Outcome::FreeUnknownInterior,
                    PtrKind::Null => Outcome::FreeUnknownNull,
                    PtrKind::Foreign => Outcome::FreeUnknownForeign,
                    PtrKind::Wild | PtrKind::Live => Outcome::FreeUnknownWild,
                });
            }
            (got, _) => self.fail(format_args!(
                "free({addr:#x}) [{kind:?}]: got {got:?}, expected {}",
                match live {
                    Some(b) => format!("Ok({})", b.size),
                    None => format!("Err({:?})", PoolError::UnknownPointer { addr }),
                }
            )),
        }
    }

    fn realloc(&mut self, target: Target, size: NewSize, fault: bool) {
        let (addr, kind) = self.resolve(target);
        let live = self.model.blocks.get(&addr).copied();
        let new_size = size.resolve(live.map_or(0, |b| b.size));
        let want = match live {
            None => Err(PoolError::UnknownPointer { addr }),
            Some(b) if new_size <= b.size => Err(PoolError::NotLarger {
                addr,
                current: b.size,
                requested: new_size,
            }),
            Some(b) if self.model.refused(b.size, new_size).is_some() => {
                Err(self.model.refused(b.size, new_size).expect("just seen"))
            }
            // Fields not compared (number 0 marks that).
            Some(_) if new_size > MAX_BLOCK => Err(PoolError::SizeOverflow {
                number: 0,
                elem_size: new_size,
            }),
            Some(_) if new_size >= IMPOSSIBLE => Err(PoolError::OutOfMemory { bytes: new_size }),
            Some(b) => {
                assert!(new_size <= MAX_REAL, "generator bug: {new_size} bytes");
                self.make_room(new_size - b.size, new_size);
                if !self.model.blocks.contains_key(&addr) {
                    // make_room freed it: nothing left to realloc.
                    Err(PoolError::UnknownPointer { addr })
                } else if fault && self.mode.faulty() {
                    Err(PoolError::OutOfMemory { bytes: new_size })
                } else {
                    Ok(b)
                }
            }
        };
        if let Some(b) = self.model.blocks.get(&addr).copied() {
            self.verify_content(addr, b, "before realloc");
        }
        let got = self.faulting(fault, |pool| pool.realloc(addr as *mut c_void, new_size));
        match (got, want) {
            (Ok(ptr), Ok(old)) => {
                let new_addr = ptr.as_ptr() as usize;
                self.check_new_address("realloc", new_addr, Some(addr));
                // SAFETY: the pool says `new_addr` is a live block of `new_size` bytes.
                let kept = unsafe { block(new_addr, old.size) };
                let want = pattern(old.tag, old.size);
                if kept != want {
                    self.fail(format_args!(
                        "realloc({addr:#x}, {new_size}) to {new_addr:#x} did not keep the \
                         first {} bytes: {}",
                        old.size,
                        first_difference(kept, want)
                    ));
                }
                self.verify_zeroed(new_addr, old.size, new_size, "the realloc tail");
                self.model.blocks.remove(&addr);
                // A block keeps its scope under its new address.
                let scopes = self.model.scopes.iter_mut();
                if let Some((_, blocks)) = scopes.into_iter().find(|(_, b)| b.contains(&addr)) {
                    blocks.remove(&addr);
                    blocks.insert(new_addr);
                }
                if new_addr != addr {
                    self.model.bury(addr);
                }
                let b = Block {
                    size: new_size,
                    tag: self.new_tag(),
                };
                self.write_pattern(new_addr, b);
                self.model.blocks.insert(new_addr, b);
                self.model.size += new_size - old.size;
                self.model.arena_used += new_size;
                self.stats.hit(Outcome::ReallocOk);
                if new_addr != addr {
                    self.stats.hit(Outcome::ReallocOkMoved);
                }
                if old.size == 0 {
                    self.stats.hit(Outcome::ReallocOkFromZeroBytes);
                }
            }
            (Err(got), Err(want)) => {
                self.check_error(&format!("realloc({addr:#x}, {new_size})"), got, want);
                if let Some(b) = self.model.blocks.get(&addr).copied() {
                    self.verify_content(addr, b, "after a failed realloc");
                }
                self.stats.hit(match want {
                    PoolError::UnknownPointer { .. } => Outcome::ReallocUnknownPointer,
                    PoolError::NotLarger {
                        current, requested, ..
                    } if current == requested => Outcome::ReallocNotLargerSame,
                    PoolError::NotLarger { .. } => Outcome::ReallocNotLargerSmaller,
                    PoolError::SizeOverflow { .. } => Outcome::ReallocSizeOverflow,
                    PoolError::LimitExceeded { .. } => Outcome::ReallocLimitExceeded,
                    PoolError::OutOfMemory { bytes } if bytes >= IMPOSSIBLE => {
                        Outcome::ReallocOomImpossible
                    }
                    _ => Outcome::ReallocOomInjected,
                });
            }
            (got, want) => self.fail(format_args!(
                "realloc({addr:#x} [{kind:?}], {new_size}): got {got:?}, expected {}",
                match want {
                    Ok(_) => "Ok(a grown block)".to_string(),
                    Err(e) => format!("Err({e:?})"),
                }
            )),
        }
    }

    fn free_all(&mut self) {
        self.release_everything("free_all", |pool| {
            pool.free_all();
            Ok(())
        });
    }

    /// `clear()`: as `free_all`, and open scopes stay open.
    fn clear(&mut self) {
        self.stats.hit(Outcome::Clear);
        self.release_everything("clear", Pool::clear);
    }

    /// Runs `release` (`free_all` or `clear`), which must release every
    /// block once, and empties the model; open scopes stay open.
    fn release_everything(
        &mut self,
        what: &str,
        release: impl FnOnce(&mut Pool) -> Result<(), PoolError>,
    ) {
        self.verify_all_contents();
        let releases = with_books(|b| b.releases);
        if let Err(err) = release(self.pool()) {
            self.fail(format_args!("{what} failed: {err:?}"));
        }
        self.check_released(what, releases, self.model.blocks.len());
        let addrs: Vec<usize> = self.model.blocks.keys().copied().collect();
        for addr in addrs {
            self.model.bury(addr);
        }
        self.model.blocks.clear();
        self.model.size = 0;
        self.model.arena_used = 0;
        for (_, blocks) in &mut self.model.scopes {
            blocks.clear();
        }
    }

    /// The custom allocator released `expected` blocks since `releases`.
    fn check_released(&self, what: &str, releases: u64, expected: usize) {
        if self.mode.custom() {
            let released = with_books(|b| b.releases) - releases;
            if released != expected as u64 {
                self.fail(format_args!(
                    "{what} released {released} blocks, expected {expected}"
                ));
            }
        }
    }

    fn mark(&mut self) {
        match self.pool().mark() {
            Ok(mark) => {
                if self.model.scopes.iter().any(|(m, _)| *m == mark)
                    || self.model.stale.contains(&mark)
                {
                    self.fail(format_args!("mark() returned {mark:?} again"));
                }
                self.model.scopes.push((mark, BTreeSet::new()));
                self.stats.hit(Outcome::MarkOk);
            }
            Err(err) => self.fail(format_args!("mark() failed: {err:?}")),
        }
    }

    fn release_to(&mut self, i: u8) {
        let open = self.model.scopes.len();
        let n = usize::from(i);
        let (mark, from) = match n % 8 {
            0 if !self.model.stale.is_empty() => {
                (self.model.stale[n / 8 % self.model.stale.len()], None)
            }
            1 => (self.other_mark, None),
            2 => (Mark::from_raw(0), None),
            _ if open > 0 => (self.model.scopes[n % open].0, Some(n % open)),
            _ => (self.other_mark, None),
        };
        let released: Vec<usize> = match from {
            Some(from) => self.model.scopes[from..]
                .iter()
                .flat_map(|(_, blocks)| blocks.iter().copied())
                .collect(),
            None => Vec::new(),
        };
        for &addr in &released {
            let b = self.model.blocks[&addr];
            self.verify_content(addr, b, "before release_to");
        }
        let releases = with_books(|b| b.releases);
        let got = self.pool().release_to(mark);
        match (got, from) {
            (Ok(()), Some(from)) => {
                self.check_released("release_to", releases, released.len());
                for addr in released {
                    let b = self
                        .model
                        .blocks
                        .remove(&addr)
                        .expect("scoped blocks are live");
                    self.model.size -= b.size;
                    self.model.bury(addr);
                }
                let closed = self.model.scopes.split_off(from);
                self.model.stale.extend(closed.into_iter().map(|(m, _)| m));
                self.stats.hit(Outcome::ReleaseToOk);
            }
            (Err(got), None) => {
                let want = PoolError::BadMark {
                    mark: mark.to_raw(),
                };
                self.check_error("release_to", got, want);
                self.stats.hit(Outcome::ReleaseToBadMark);
            }
            (got, _) => self.fail(format_args!(
                "release_to({mark:?}): got {got:?}, expected {}",
                if from.is_some() { "Ok" } else { "BadMark" }
            )),
        }
    }

    fn set_limit(&mut self, x: u32) {
        self.stats.hit(Outcome::SetLimit);
        let limit = (x % 2 == 1).then(|| {
            let margin = (x >> 1) as usize % 65536;
            (self.model.size + margin).saturating_sub(1024).max(1)
        });
        if let Err(err) = self.pool().set_limit(limit) {
            self.fail(format_args!("set_limit({limit:?}) failed: {err:?}"));
        }
        self.model.limit = limit;
    }

    fn drop_pool(&mut self) {
        drop(self.pool.take());
        if self.mode.custom() {
            let (allocations, releases, live) =
                with_books(|b| (b.allocations, b.releases, b.live.len()));
            let (a0, r0) = self.books_at_start;
            if allocations - a0 != releases - r0 || live != 0 {
                self.fail(format_args!(
                    "after the pool was dropped: {} allocations, {} releases, {live} blocks \
                     still live in the allocator",
                    allocations - a0,
                    releases - r0
                ));
            }
            self.check_allocator_violations();
        }
    }

    fn recreate(&mut self) {
        self.verify_all_contents();
        self.drop_pool();
        let addrs: Vec<usize> = self.model.blocks.keys().copied().collect();
        for addr in addrs {
            self.model.bury(addr);
        }
        self.model.blocks.clear();
        self.model.size = 0;
        self.model.arena_used = 0;
        let closed = std::mem::take(&mut self.model.scopes);
        self.model.stale.extend(closed.into_iter().map(|(m, _)| m));
        self.model.limit = None;
        self.books_at_start = with_books(|b| (b.allocations, b.releases));
        self.pool = Some(self.mode.new_pool());
    }

    fn check_allocator_violations(&self) {
        let violations = with_books(|b| std::mem::take(&mut b.violations));
        if !violations.is_empty() {
            self.fail(format_args!(
                "the allocator saw contract breaches: {violations:?}"
            ));
        }
    }

    /// The pool against the model, after every step: `size()`,
    /// `block_count()`, `block_size()` and `contains()` of every live block,
    /// both ends of every block's contents (they are verified in full before
    /// every free or move), recently freed addresses, foreign memory, and the
    /// custom allocator's books. Every `FULL_CHECK_EVERY` steps (and after
    /// free_all / recreate) also `blocks()` against the model and every live
    /// block against the allocator's books.
    fn check(&mut self) {
        let full = self.step % FULL_CHECK_EVERY == 0
            || matches!(self.op, Some(Op::FreeAll | Op::Recreate) | None);
        self.stats.max_live_blocks = self.stats.max_live_blocks.max(self.model.blocks.len());
        let pool = self
            .pool
            .as_ref()
            .expect("a pool exists between operations");
        if pool.size() != self.model.size {
            self.fail(format_args!(
                "size() is {}, expected {}",
                pool.size(),
                self.model.size
            ));
        }
        if pool.scope_depth() != self.model.scopes.len() || pool.limit() != self.model.limit {
            self.fail(format_args!(
                "scope_depth() is {}, limit() {:?}; expected {} and {:?}",
                pool.scope_depth(),
                pool.limit(),
                self.model.scopes.len(),
                self.model.limit
            ));
        }
        if pool.block_count() != self.model.blocks.len() {
            self.fail(format_args!(
                "block_count() is {}, expected {}",
                pool.block_count(),
                self.model.blocks.len()
            ));
        }
        for (&addr, &b) in &self.model.blocks {
            let got = pool.block_size(addr as *const c_void);
            if got != Some(b.size) || !pool.contains(addr as *const c_void) {
                self.fail(format_args!(
                    "block_size({addr:#x}) is {got:?}, expected Some({})",
                    b.size
                ));
            }
            // SAFETY: a live block of `b.size` bytes (model).
            let got = unsafe { block(addr, b.size) };
            let want = pattern(b.tag, b.size);
            let ends = b.size.min(16);
            if got[..ends] != want[..ends] || got[b.size - ends..] != want[b.size - ends..] {
                self.fail(format_args!(
                    "block {addr:#x} ({} bytes) was overwritten: {}",
                    b.size,
                    first_difference(got, want)
                ));
            }
        }
        let mut listed = 0;
        for (addr, size) in pool.blocks().filter(|_| full) {
            listed += 1;
            match self.model.blocks.get(&addr) {
                Some(b) if b.size == size => {}
                other => self.fail(format_args!(
                    "blocks() lists ({addr:#x}, {size}); the model has {other:?}"
                )),
            }
        }
        if full && listed != self.model.blocks.len() {
            self.fail(format_args!(
                "blocks() lists {listed} blocks, expected {}",
                self.model.blocks.len()
            ));
        }
        let recent = if full { DEAD_KEPT } else { 4 };
        let probes = self.model.dead.iter().rev().take(recent).copied().chain([
            0,
            self.other_block,
            self.foreign.as_ptr() as usize,
        ]);
        for addr in probes {
            if !self.model.blocks.contains_key(&addr) {
                let got = pool.block_size(addr as *const c_void);
                if got.is_some() || pool.contains(addr as *const c_void) {
                    self.fail(format_args!(
                        "block_size({addr:#x}) is {got:?} for a pointer that is not live"
                    ));
                }
            }
        }
        // Memory the pool does not own is never touched.
        if self.foreign[..] != *pattern(FOREIGN_TAG, FOREIGN_LEN)
            // SAFETY: a live 64-byte block of `other`.
            || unsafe { block(self.other_block, FOREIGN_LEN) } != pattern(OTHER_TAG, FOREIGN_LEN)
            || self.other.block_count() != 1
            || self.other.size() != FOREIGN_LEN
        {
            self.fail("memory the pool does not own was modified");
        }
        if self.mode.custom() {
            self.check_allocator_violations();
            let live = with_books(|b| {
                if b.live.len() != self.model.blocks.len() {
                    return Err(format!(
                        "the allocator has {} live blocks, the pool should hold {}",
                        b.live.len(),
                        self.model.blocks.len()
                    ));
                }
                for (&addr, blk) in self.model.blocks.iter().filter(|_| full) {
                    match b.live.get(&addr) {
                        Some(&backing) if backing >= blk.size.max(1) => {}
                        other => {
                            return Err(format!(
                            "block {addr:#x} of {} bytes is backed by {other:?} in the allocator",
                            blk.size
                        ))
                        }
                    }
                }
                Ok(())
            });
            if let Err(msg) = live {
                self.fail(msg);
            }
        }
    }
}
