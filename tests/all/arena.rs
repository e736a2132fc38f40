//! An arena pool's index of its blocks, from a user's side: many more blocks
//! than one segment of the index holds, blocks spread over many chunks, and
//! frees at every boundary (first and last block of a segment, first and
//! last block of a chunk).

use std::ffi::c_void;

use cymem_rs::{Pool, PoolError};

/// Blocks an arena pool handed out, in allocation order, with their sizes.
fn fill(pool: &mut Pool, count: usize, size_of: impl Fn(usize) -> usize) -> Vec<(usize, usize)> {
    (0..count)
        .map(|i| {
            let size = size_of(i);
            (pool.alloc(1, size).unwrap().as_ptr() as usize, size)
        })
        .collect()
}

/// Every live block is found with its own size, listed once in allocation
/// order, and the counters agree.
fn check(pool: &Pool, live: &[(usize, usize)]) {
    for (k, &(addr, size)) in live.iter().enumerate() {
        assert_eq!(
            pool.block_size(addr as *const c_void),
            Some(size),
            "block {k}"
        );
    }
    assert_eq!(pool.blocks().collect::<Vec<_>>(), live);
    assert_eq!(pool.block_count(), live.len());
    assert_eq!(pool.size(), live.iter().map(|&(_, s)| s).sum::<usize>());
}

/// Frees block `k` of `live` and checks it is gone and cannot be freed again.
fn free_at(pool: &mut Pool, live: &mut Vec<(usize, usize)>, k: usize) {
    let (addr, size) = live.remove(k);
    let ptr = addr as *mut c_void;
    assert_eq!(pool.free(ptr).unwrap(), size, "block at {addr:#x}");
    assert_eq!(pool.block_size(ptr), None);
    assert!(matches!(
        pool.free(ptr),
        Err(PoolError::UnknownPointer { .. })
    ));
}

/// Where a block does not sit right below the one allocated just before
/// it: the arena moved to another chunk, above or below the last (chunks
/// are filled from the top down; a block takes its size, at least 1,
/// rounded up to 16 bytes, plus two 16-byte red zones while a memory
/// checker watches).
fn chunk_starts(blocks: &[(usize, usize)]) -> Vec<usize> {
    (1..blocks.len())
        .filter(|&k| {
            let step = blocks[k].1.max(1).next_multiple_of(16);
            let below = blocks[k - 1].0.checked_sub(blocks[k].0);
            below != Some(step) && below != Some(step + 32)
        })
        .collect()
}

/// The helper above finds a new chunk wherever malloc put it (a test of a
/// test: a chunk placed below the last one went unseen, which made the
/// packing test below fail on some heap layouts).
#[test]
fn chunk_starts_sees_new_chunks_above_and_below() {
    let packed = [(0x1_0000, 16), (0xfff0, 0), (0xffd0, 20)];
    assert!(chunk_starts(&packed).is_empty());
    let below = [(0x1_0000, 16), (0xfff0, 16), (0xbfd0, 16), (0xbfc0, 16)];
    assert_eq!(chunk_starts(&below), [2]);
    let above = [(0x1_0000, 16), (0x5_0000, 16), (0x4_fff0, 16)];
    assert_eq!(chunk_starts(&above), [1]);
    let watched = [(0x1_0000, 16), (0xffd0, 16)];
    assert!(
        chunk_starts(&watched).is_empty(),
        "two 16-byte red zones apart"
    );
}

/// Sizes that differ from block to block (so a size read from the wrong
/// entry shows), including 0-byte blocks and odd sizes.
fn varied(i: usize) -> usize {
    (i * 37) % 251
}

#[test]
fn thousands_of_blocks_are_found_and_listed_with_their_sizes() {
    let mut pool = Pool::arena();
    for count in [1, 15, 16, 17, 255, 256, 257, 512, 513, 3000] {
        let live = fill(&mut pool, count, varied);
        check(&pool, &live);
        pool.free_all();
        check(&pool, &[]);
    }
}

#[test]
fn frees_at_every_segment_boundary_leave_the_neighbours_intact() {
    let mut pool = Pool::arena();
    let mut live = fill(&mut pool, 1100, varied);
    // Log indices where the first segment grows (16, 32, .., 256) or a
    // full segment starts (256, 512, 768, 1024), and their neighbours:
    // highest first, so `live`'s indices still match the log's.
    let mut edges: Vec<usize> = [16, 32, 64, 128, 256, 512, 768, 1024]
        .iter()
        .flat_map(|&b| [b - 1, b, b + 1])
        .chain([0, 1099])
        .collect();
    edges.sort_unstable();
    edges.dedup();
    for &k in edges.iter().rev() {
        free_at(&mut pool, &mut live, k);
    }
    check(&pool, &live);
    // Blocks allocated after the frees are indexed too.
    live.extend(fill(&mut pool, 300, |i| varied(i + 7)));
    check(&pool, &live);
}

#[test]
fn frees_at_every_chunk_boundary_leave_the_neighbours_intact() {
    let mut pool = Pool::arena();
    // Blocks of a few KiB fill bumpalo's doubling chunks quickly; an
    // occasional 1 MiB block takes a chunk of its own.
    let mut live = fill(&mut pool, 4000, |i| {
        if i % 1500 == 700 {
            1 << 20
        } else {
            1000 + varied(i)
        }
    });
    let starts = chunk_starts(&live);
    assert!(starts.len() >= 4, "{} chunks", starts.len() + 1);
    check(&pool, &live);
    // The first and last block of every chunk, newest first.
    let mut edges: Vec<usize> = starts.iter().flat_map(|&s| [s - 1, s]).collect();
    edges.extend([0, live.len() - 1]);
    edges.sort_unstable();
    edges.dedup();
    for &k in edges.iter().rev() {
        free_at(&mut pool, &mut live, k);
    }
    check(&pool, &live);
}

#[test]
fn a_realloc_at_a_chunk_boundary_moves_the_block_and_keeps_the_rest() {
    let mut pool = Pool::arena();
    let mut live = fill(&mut pool, 2000, |i| 500 + varied(i));
    let starts = chunk_starts(&live);
    assert!(!starts.is_empty());
    for &k in starts.iter().rev() {
        for j in [k, k - 1] {
            let (addr, size) = live.remove(j);
            let moved = pool.realloc(addr as *mut c_void, size + 1).unwrap();
            live.push((moved.as_ptr() as usize, size + 1));
            assert_eq!(pool.block_size(addr as *const c_void), None);
        }
    }
    for &(addr, size) in &live {
        assert_eq!(pool.block_size(addr as *const c_void), Some(size));
    }
    assert_eq!(pool.block_count(), live.len());
}

/// Addresses between blocks, just past a chunk's blocks or beyond them all,
/// are not blocks, wherever they fall among the chunks.
#[test]
fn addresses_around_the_blocks_are_not_blocks() {
    let mut pool = Pool::arena();
    let live = fill(&mut pool, 3000, |_| 48);
    let lowest = live.iter().map(|&(a, _)| a).min().unwrap();
    let highest = live.iter().map(|&(a, _)| a).max().unwrap();
    for probe in [lowest - 16, lowest + 8, highest + 8, highest + 64, 1] {
        assert_eq!(pool.block_size(probe as *const c_void), None, "{probe:#x}");
        assert!(!pool.contains(probe as *const c_void));
    }
    for &(addr, _) in &live {
        assert_eq!(pool.block_size((addr + 8) as *const c_void), None);
    }
    assert_eq!(pool.block_count(), live.len());
}

/// With no memory checker watching, an arena packs its blocks: 16-byte
/// blocks sit 16 bytes apart (red zones are only for valgrind and ASan),
/// and a chunk holds as many blocks as its bytes allow.
#[test]
#[cfg(not(cymem_rs_asan))]
fn natively_arena_blocks_are_packed_without_red_zones() {
    let mut pool = Pool::arena();
    let blocks = fill(&mut pool, 1000, |_| 16);
    let starts = chunk_starts(&blocks);
    let mut packed = 0;
    for k in 1..blocks.len() {
        let (a, b) = (blocks[k - 1].0, blocks[k].0);
        if !starts.contains(&k) {
            assert_eq!(a.abs_diff(b), 16, "blocks {a:#x} and {b:#x}");
            packed += 1;
        }
    }
    assert!(packed >= 990, "{packed} of 999 neighbours share a chunk");
}
