//! Fuzz target: decodes the input into pool operations (first byte: the
//! allocator mode; then 8 bytes per operation) and runs them on a real `Pool`
//! and on the reference model, checking after every step. The operations, the
//! model and the checks are those of `tests/all/model.rs`
//! (`tests/all/support/pool_model.rs`); any difference panics, i.e. a crash.
//!
//! Run: see fuzz/README.md.

#![no_main]

use std::ffi::c_char;

use libfuzzer_sys::fuzz_target;

// The fuzz target uses a subset of the module (no statistics).
#[allow(dead_code)]
#[path = "../../tests/all/support/pool_model.rs"]
mod pool_model;

fuzz_target!(|data: &[u8]| {
    let (mode, ops) = pool_model::decode_input(data);
    pool_model::run(mode, &ops);
});

/// The model asks for impossible sizes (isize::MAX bytes, 2^62 bytes...) and
/// expects `OutOfMemory`: AddressSanitizer must return NULL for them, as libc
/// does, instead of aborting. (ASAN_OPTIONS in the environment still wins.)
#[no_mangle]
pub extern "C" fn __asan_default_options() -> *const c_char {
    c"allocator_may_return_null=1".as_ptr()
}
