//! Arena pools under AddressSanitizer (`make check-sanitizers` builds with
//! `--cfg cymem_rs_asan`, which makes the pool poison arena red zones and
//! released blocks): an overrun past an arena block and a read after `free`,
//! `clear` or a scope's end are reported by ASan. Each bug runs in a child process (this test binary
//! again, running one of the ignored `bugs::` tests), which ASan must stop
//! with its report.

use std::process::Command;

/// Set in the child: which bug to commit.
const BUG_VAR: &str = "CYMEM_RS_ASAN_BUG";

/// Runs the ignored test `bugs::<bug>` in a child process; its stderr.
fn child_stderr(bug: &str) -> String {
    let out = Command::new(std::env::current_exe().expect("the test binary"))
        .args(["--exact", &format!("asan::bugs::{bug}"), "--ignored"])
        .args(["--nocapture", "--test-threads=1"])
        .env(BUG_VAR, bug)
        .output()
        .expect("the child runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "ASan let the {bug} pass:\n{stderr}");
    stderr
}

#[test]
fn an_overrun_past_an_arena_block_is_caught() {
    let report = child_stderr("overrun");
    assert!(
        report.contains("ERROR: AddressSanitizer: use-after-poison"),
        "{report}"
    );
    assert!(report.contains("READ of size 1"), "{report}");
    assert!(report.contains("asan::bugs::overrun"), "{report}");
}

#[test]
fn a_read_after_free_of_an_arena_block_is_caught() {
    let report = child_stderr("use_after_free");
    assert!(
        report.contains("ERROR: AddressSanitizer: use-after-poison"),
        "{report}"
    );
    assert!(report.contains("asan::bugs::use_after_free"), "{report}");
}

#[test]
fn a_read_after_clear_and_after_a_scope_is_caught() {
    for bug in ["read_after_clear", "read_after_scope"] {
        let report = child_stderr(bug);
        assert!(
            report.contains("ERROR: AddressSanitizer: use-after-poison"),
            "{report}"
        );
        assert!(report.contains(&format!("asan::bugs::{bug}")), "{report}");
    }
}

/// The deliberate bugs; each does nothing unless its parent test asked.
mod bugs {
    use cymem_rs::Pool;

    use super::BUG_VAR;

    const BLOCK: usize = 24;

    fn asked(bug: &str) -> bool {
        std::env::var(BUG_VAR).is_ok_and(|v| v == bug)
    }

    /// Three neighbouring blocks, the middle one returned.
    fn middle_block(pool: &mut Pool) -> *mut u8 {
        let blocks: Vec<*mut u8> = (0..3)
            .map(|_| pool.alloc(1, BLOCK).unwrap().as_ptr().cast())
            .collect();
        blocks[1]
    }

    #[test]
    #[ignore = "a deliberate bug, run by the parent test under ASan"]
    fn overrun() {
        if !asked("overrun") {
            return;
        }
        let mut pool = Pool::arena();
        let block = middle_block(&mut pool);
        let past = block.wrapping_add(BLOCK);
        // SAFETY: none: one byte past the block, the bug ASan must report.
        // (It lies in the red zone inside the arena's chunk, so the read
        // itself touches allocated memory.)
        let byte = unsafe { past.read_volatile() };
        println!("read {byte} past the block");
    }

    #[test]
    #[ignore = "a deliberate bug, run by the parent test under ASan"]
    fn use_after_free() {
        if !asked("use_after_free") {
            return;
        }
        let mut pool = Pool::arena();
        let block = middle_block(&mut pool);
        pool.free(block.cast()).unwrap();
        // SAFETY: none: the block was freed, the bug ASan must report. (An
        // arena keeps the space of a freed block until the pool ends, so
        // the read itself touches allocated memory.)
        let byte = unsafe { block.read_volatile() };
        println!("read {byte} after free");
    }

    #[test]
    #[ignore = "a deliberate bug, run by the parent test under ASan"]
    fn read_after_clear() {
        if !asked("read_after_clear") {
            return;
        }
        let mut pool = Pool::arena();
        let block = middle_block(&mut pool);
        pool.clear().unwrap();
        // SAFETY: none: `clear` released the block, the bug ASan must
        // report. (The arena keeps its last chunk, so the read itself
        // touches allocated memory.)
        let byte = unsafe { block.read_volatile() };
        println!("read {byte} after clear");
    }

    #[test]
    #[ignore = "a deliberate bug, run by the parent test under ASan"]
    fn read_after_scope() {
        if !asked("read_after_scope") {
            return;
        }
        let mut pool = Pool::arena();
        let mark = pool.mark().unwrap();
        let block = middle_block(&mut pool);
        pool.release_to(mark).unwrap();
        // SAFETY: none: the scope's end released the block, the bug ASan
        // must report. (The arena keeps the space until the pool ends.)
        let byte = unsafe { block.read_volatile() };
        println!("read {byte} after the scope");
    }
}
