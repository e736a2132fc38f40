//! cymem_rs: a memory pool for Cython and C extensions.
//!
//! Every block a [`Pool`] hands out is zeroed, tracked, and released through
//! the pool's allocator exactly once: by [`Pool::free`], or when the pool is
//! dropped. The layers, each in one place:
//!
//! - [`pool`] (with its parts: the block table, the arena log, debug mode,
//!   pins, shorter lifetimes, [`allocator`], [`error`], [`shared`]): the
//!   pure-Rust core, no Python;
//! - [`registry`]: the live pools of the process and their counters, for
//!   statistics and reports (also no Python);
//! - [`ffi`]: the C ABI, from which `include/cymem_rs.h` is generated;
//! - `python` (feature `python`): the pyo3 binding behind the `cymem_rs`
//!   Python package and its Cython declarations.

pub mod fallible;
pub mod ffi;
pub mod pool;
pub mod registry;

#[cfg(feature = "python")]
pub mod python;

// The core's parts keep their short paths (`cymem_rs::allocator::Allocator`).
pub use pool::{allocator, error, shared};

pub use pool::allocator::Allocator;
pub use pool::error::{Corruption, PoolError};
pub use pool::shared::SharedPool;
pub use pool::{DebugOptions, Pool};
pub use registry::{live_pools, DeferredOrigin, Label, Origin, OriginSource, PoolInfo, PoolStats};
pub use registry::{peak, reset_peak, PeakPool, PeakReport, Trace, TraceFigures};
