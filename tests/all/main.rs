//! The Rust integration tests, built as one binary (one link, one process
//! running them in parallel); each module is one area, so a failure reads
//! `pool::heap::...`, `registry::...`. Helpers shared between areas live in
//! `support/`.

#[macro_use]
mod support;

mod arena;
// Only in AddressSanitizer builds (`make check-sanitizers`).
#[cfg(cymem_rs_asan)]
mod asan;
mod debug;
mod deferred;
mod fork;
mod header;
mod lifetimes;
// valgrind runs this binary; not the ASan build of it.
#[cfg(not(cymem_rs_asan))]
mod memcheck;
mod model;
mod observer;
mod peak;
mod pins;
mod pool;
mod registry;
mod shared;
mod stats;
mod threads;
