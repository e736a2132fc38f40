//! With the `python` feature, learn the target interpreter's configuration
//! (e.g. `Py_GIL_DISABLED` for free-threaded CPython). Nothing otherwise.
//!
//! `CYMEM_RS_FORCE_POOL_LOCK=1` sets the cfg `cymem_rs_force_lock`: the
//! binding then gives every Python pool the lock it has on free-threaded
//! CPython, so that path is tested on an ordinary interpreter (a test build,
//! never shipped; `make test-pool-lock`).

fn main() {
    println!("cargo::rustc-check-cfg=cfg(cymem_rs_force_lock)");
    println!("cargo::rerun-if-env-changed=CYMEM_RS_FORCE_POOL_LOCK");
    if std::env::var_os("CYMEM_RS_FORCE_POOL_LOCK").is_some_and(|v| v == "1") {
        println!("cargo::rustc-cfg=cymem_rs_force_lock");
    }
    #[cfg(feature = "python")]
    pyo3_build_config::use_pyo3_cfgs();
}
