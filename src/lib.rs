//! cymem_rs: a memory pool for Cython and C extensions.
//!
//! Every block a [`Pool`] hands out is zeroed, tracked, and released through
//! the pool's allocator exactly once: by [`Pool::free`], or when the pool is
//! dropped. The layers, each in one place:
//!
//! - [`pool`], [`allocator`], [`error`], [`shared`]: the pure-Rust core (no Python);
//! - [`registry`]: the live pools of the process, for reports (also no Python);
//! - [`ffi`]: the C ABI, from which `include/cymem_rs.h` is generated;
//! - `python` (feature `python`): the pyo3 binding behind the `cymem_rs`
//!   Python package and its Cython declarations.

pub mod allocator;
mod arena_log;
pub mod error;
pub mod ffi;
pub mod pool;
pub mod registry;
pub mod shared;
mod table;

#[cfg(feature = "python")]
pub mod python;

pub use allocator::Allocator;
pub use error::{Corruption, PoolError};
pub use pool::{DebugOptions, Pool, PoolStats};
pub use registry::{live_pools, Label, Origin, OriginSource, PoolInfo};
pub use shared::SharedPool;
