//! Instruction counts of the pool core without Python: a tiny driver run
//! under callgrind by `run.sh` (N operations minus 0, so start-up cancels).
//! Workloads: `a` alloc(1,64)+free pairs on a pool holding 1000 blocks;
//! `b`/`b_arena` 1M allocs of 16..512 B then drop; `d`/`d_arena` a pool with
//! 10 allocs of 16..160 B, dropped; `bt` wall time of `b` (best of N).

use cymem_rs::Pool;
use std::hint::black_box;
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let w = args[1].as_str();
    let n: usize = args[2].parse().unwrap();
    match w {
        "a" => {
            let mut pool = Pool::new();
            for _ in 0..1000 {
                pool.alloc(1, 64).unwrap();
            }
            for _ in 0..n {
                let p = pool.alloc(1, 64).unwrap();
                pool.free(black_box(p.as_ptr())).unwrap();
            }
        }
        "b" | "b_arena" => {
            let mut pool = if w == "b" { Pool::new() } else { Pool::arena() };
            for i in 0..n {
                black_box(pool.alloc(1, 16 * (1 + i % 32)).unwrap());
            }
            drop(pool);
        }
        "d" | "d_arena" => {
            for _ in 0..n {
                let mut pool = if w == "d" { Pool::new() } else { Pool::arena() };
                for k in 0..10 {
                    black_box(pool.alloc(1, 16 * (k + 1)).unwrap());
                }
                drop(black_box(pool));
            }
        }
        "bt" => {
            let mut best = f64::MAX;
            for _ in 0..n {
                let t = std::time::Instant::now();
                let mut pool = Pool::new();
                for i in 0..1_000_000 {
                    black_box(pool.alloc(1, 16 * (1 + i % 32)).unwrap());
                }
                drop(pool);
                best = best.min(t.elapsed().as_secs_f64());
            }
            println!("bt best {:.1} ns/alloc", best * 1e3);
        }
        _ => panic!(),
    }
}
