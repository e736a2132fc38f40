//! The pyo3 binding: the `cymem_rs.cymem` extension module. A thin shell over
//! the C ABI in [`crate::ffi`]; Cython code reaches the same functions through
//! the `_C_API` capsule (see `capi.rs` and `cymem_rs/cymem.pxd`).

mod address;
mod allocators;
mod buffer;
mod capi;
mod errors;
mod fast_paths;
mod peak;
mod pool;
mod report;
mod scope;
mod tracemalloc;
mod view;

use pyo3::prelude::*;

pub use address::Address;
pub use allocators::{PyFree, PyMalloc};
pub use pool::Pool;
pub use view::BlockView;

// Free-threaded CPython may run this module without the GIL: every Python
// pool then has a lock of its own (see `pool.rs`), and the registry and the
// capsule table are thread-safe in any build.
#[pymodule(gil_used = false)]
#[pyo3(name = "cymem")]
fn cymem_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<Pool>()?;
    pool::install_finalizer(py);
    m.add_class::<Address>()?;
    m.add_class::<PyMalloc>()?;
    m.add_class::<PyFree>()?;
    m.add_class::<BlockView>()?;
    fast_paths::install(py)?;
    m.add_class::<scope::Scope>()?;
    m.add(
        "Default_Malloc",
        allocators::default_malloc(py)?.clone_ref(py),
    )?;
    m.add("Default_Free", allocators::default_free(py)?.clone_ref(py))?;
    m.add("WARN_ZERO_ALLOC", false)?;
    m.add("ABI_VERSION", crate::ffi::CYMEM_RS_ABI_VERSION)?;
    m.add("TRACEMALLOC_DOMAIN", tracemalloc::DOMAIN)?;
    m.add("_C_API", capi::capsule(py)?)?;
    m.add("_C_API_VERSION", capi::CAPSULE_VERSION)?;
    // Whether each pool has a lock of its own (free-threaded builds, and the
    // test build that forces it), so tests know which path they exercise.
    m.add(
        "_POOL_LOCK",
        cfg!(any(Py_GIL_DISABLED, cymem_rs_force_lock)),
    )?;
    m.add(
        "MemoryCorruptionError",
        py.get_type::<errors::MemoryCorruptionError>(),
    )?;
    m.add("PoolStats", report::pool_stats_type(py)?)?;
    m.add("PoolInfo", report::pool_info_type(py)?)?;
    m.add_function(wrap_pyfunction!(report::live_pools, m)?)?;
    m.add_function(wrap_pyfunction!(report::format_report, m)?)?;
    m.add_function(wrap_pyfunction!(report::track_origins, m)?)?;
    m.add_class::<peak::PoolTrace>()?;
    m.add_function(wrap_pyfunction!(peak::peak, m)?)?;
    m.add_function(wrap_pyfunction!(peak::reset_peak, m)?)?;
    m.add_function(wrap_pyfunction!(peak::trace, m)?)?;
    Ok(())
}
