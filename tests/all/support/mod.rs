//! Helpers shared by the test modules: `rules_for_pools!` (one test per kind
//! of pool and rule) and the pool model the model-based test and the fuzz
//! target compare the pool against.

#[macro_use]
mod pool_kinds;
pub mod pool_model;
