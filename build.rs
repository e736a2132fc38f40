//! With the `python` feature, learn the target interpreter's configuration
//! (e.g. `Py_GIL_DISABLED` for free-threaded CPython). Nothing otherwise.

fn main() {
    #[cfg(feature = "python")]
    pyo3_build_config::use_pyo3_cfgs();
}
