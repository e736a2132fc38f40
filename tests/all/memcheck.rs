//! Arena pools under valgrind's memcheck, from a Rust caller's side: this
//! test binary runs itself under valgrind with a workload that uses arena
//! pools correctly (two at once, every kind of release) and then commits
//! four defects, each on a block of its own size. memcheck must report
//! exactly those four, each with its block, and nothing else.
//! (`make check-valgrind` does the same from C and Cython.)

use std::process::Command;
use std::ptr::NonNull;

use cymem_rs::{DebugOptions, Pool};

const CHILD: &str = "CYMEM_RS_MEMCHECK_WORKLOAD";

fn fill(block: NonNull<std::ffi::c_void>, len: usize, byte: u8) {
    // SAFETY: `block` is a live block of at least `len` bytes.
    unsafe { block.as_ptr().cast::<u8>().write_bytes(byte, len) }
}

fn holds(block: NonNull<std::ffi::c_void>, len: usize, byte: u8) -> bool {
    // SAFETY: `block` is a live block of at least `len` bytes.
    let bytes = unsafe { std::slice::from_raw_parts(block.as_ptr().cast::<u8>(), len) };
    bytes.iter().all(|&b| b == byte)
}

/// A read memcheck is to judge (the optimiser must not drop it).
fn peek(block: NonNull<std::ffi::c_void>, offset: usize) -> u8 {
    let at = block.as_ptr().cast::<u8>().wrapping_add(offset);
    // SAFETY: natively the byte is inside the arena's chunk, memory the pool
    // owns and nobody else writes; only memcheck holds it off limits.
    unsafe { at.read_volatile() }
}

/// Correct use of two arena pools alive at once: no report may name them.
fn correct_use() {
    let mut pools = [Pool::arena(), Pool::arena()];
    let mut live = Vec::new();
    for i in 0..300usize {
        let pool = &mut pools[i % 2];
        let len = (i * 7) % 97;
        let block = pool.alloc(1, len).unwrap();
        assert!(holds(block, len, 0), "handed out zeroed");
        fill(block, len, i as u8);
        live.push((i % 2, block, len, i as u8));
    }
    // Free every third block, grow every fifth of the rest.
    let mut kept = Vec::new();
    for (n, (p, block, len, byte)) in live.into_iter().enumerate() {
        if n % 3 == 0 {
            pools[p].free(block.as_ptr()).unwrap();
        } else if n % 5 == 0 {
            let grown = pools[p].realloc(block.as_ptr(), len + 40).unwrap();
            assert!(
                holds(grown, len, byte)
                    && holds(
                        NonNull::new(grown.as_ptr().wrapping_byte_add(len)).unwrap(),
                        40,
                        0
                    )
            );
            kept.push((p, grown, len, byte));
        } else {
            kept.push((p, block, len, byte));
        }
    }
    for &(_, block, len, byte) in &kept {
        assert!(holds(block, len, byte));
    }
    let [first, second] = &mut pools;
    first.free_all();
    // Both pools still work after one of them released everything.
    let again = first.alloc(3, 16).unwrap();
    fill(again, 48, 1);
    for &(p, block, len, byte) in &kept {
        if p == 1 {
            assert!(holds(block, len, byte));
        }
    }
    let mark = second.mark().unwrap();
    let scoped = second.alloc(1, 24).unwrap();
    fill(scoped, 24, 2);
    second.release_to(mark).unwrap();
    second.clear().unwrap();
    let after = second.alloc(1, 8).unwrap();
    fill(after, 8, 3);
    // A debug arena pool: guards inside the arena's red zones.
    let mut debug = Pool::arena().with_debug(DebugOptions::default());
    let guarded = debug.alloc(1, 32).unwrap();
    fill(guarded, 32, 4);
    debug.free(guarded.as_ptr()).unwrap();
    assert_eq!(debug.check(), Ok(()));
    debug.free_all();
}

// Three bad reads, each in a function of its own so the report's stack says
// which it is (memcheck describes a released arena block by the chunk
// around it, not by the block).
#[inline(never)]
fn read_past_the_end(pool: &mut Pool) {
    let block = pool.alloc(1, 24).unwrap();
    peek(block, 24);
}

#[inline(never)]
fn read_after_free(pool: &mut Pool) {
    let block = pool.alloc(1, 40).unwrap();
    pool.free(block.as_ptr()).unwrap();
    peek(block, 0);
}

#[inline(never)]
fn read_after_free_all(pool: &mut Pool) {
    let block = pool.alloc(1, 56).unwrap();
    pool.free_all();
    peek(block, 8);
}

fn defects() {
    let mut pool = Pool::arena();
    read_past_the_end(&mut pool);
    read_after_free(&mut pool);
    read_after_free_all(&mut Pool::arena());
    // A leaked pool: its one block is reported with its own size.
    let mut leaked = Pool::arena();
    leaked.alloc(1, 4321).unwrap();
    std::mem::forget(leaked);
}

#[test]
fn memcheck_sees_arena_blocks() {
    if std::env::var_os(CHILD).is_some() {
        correct_use();
        defects();
        return;
    }
    let exe = std::env::current_exe().expect("test binary");
    let out = Command::new("valgrind")
        .args([
            "--tool=memcheck",
            "--leak-check=full",
            "--show-leak-kinds=definite,indirect",
            // Short stacks without inlined frames: the defects are named by
            // functions that are never inlined, and this keeps the run short.
            "--num-callers=12",
            "--read-inline-info=no",
        ])
        .arg(exe)
        .args([
            "memcheck::memcheck_sees_arena_blocks",
            "--exact",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .output()
        .expect("valgrind runs (install it: apt-get install valgrind)");
    let log = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "the workload failed under valgrind:\n{stdout}\n{log}"
    );
    // The errors, before the leak summary (whose stacks name other callers).
    let errors = log.split("HEAP SUMMARY").next().unwrap_or_default();
    // Each bad read's own stack: what follows "Address" is where its
    // memory came from.
    let reports: Vec<&str> = errors
        .split("Invalid read of size 1")
        .skip(1)
        .map(|report| report.split("Address 0x").next().unwrap_or_default())
        .collect();
    let said = |what: &str| log.contains(what);
    assert!(
        said("0 bytes after a block of size 24 client-defined"),
        "the overrun was not reported against its block:\n{log}"
    );
    for defect in [
        "read_past_the_end",
        "read_after_free",
        "read_after_free_all",
    ] {
        let named = |r: &&&str| r.contains(&format!("memcheck::{defect} ("));
        assert_eq!(
            reports.iter().filter(named).count(),
            1,
            "{defect} not reported once:\n{log}"
        );
    }
    assert_eq!(reports.len(), 3, "only the three bad reads:\n{log}");
    assert!(
        said("4,321 bytes in 1 blocks are indirectly lost")
            || said("4,321 bytes in 1 blocks are definitely lost"),
        "the leaked pool's block was not reported:\n{log}"
    );
    assert!(
        said("ERROR SUMMARY: 5 errors from 5 contexts"),
        "three reads, the leaked block and its pool, nothing else:\n{log}"
    );
}
