//! The Rust integration tests, built as one binary (one link, one process
//! running them in parallel); each module is one area, so a failure reads
//! `pool::heap::...`, `registry::...`. Helpers shared between areas live in
//! `support/`.

#[macro_use]
mod support;

mod debug;
mod header;
mod lifetimes;
mod model;
mod pins;
mod pool;
mod registry;
mod stats;
mod threads;
