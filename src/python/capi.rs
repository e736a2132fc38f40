//! The `_C_API` capsule: the table of C functions that the Cython declarations
//! in `cymem_rs/cymem.pxd` call, so `mem.alloc(...)` in Cython is a direct C
//! call into the core, with no Python attribute lookup or argument boxing.
//!
//! The C mirror of [`CApi`] lives in `cymem_rs/cymem.pxd`. It checks
//! `abi_version`, `table_size` and the field offsets on first use and raises
//! ImportError on any mismatch, so a stale compiled module never crashes.

use std::ffi::{c_int, c_void, CStr};
use std::ptr::NonNull;
use std::sync::OnceLock;

use pyo3::ffi::PyObject;
use pyo3::prelude::*;
use pyo3::types::PyCapsule;

use super::address::Address;
use super::allocators::{default_free, default_malloc, PyFree, PyMalloc};
use super::errors::{exception, Operation};
use super::pool::{warn_zero_alloc, Pool};
use crate::ffi::cymem_pool_check;
use crate::ffi::{
    cymem_last_error, cymem_last_error_message, cymem_pool_alloc, cymem_pool_free,
    cymem_pool_realloc, cymem_pool_reset_peak, cymem_pool_size, cymem_pool_stats, report,
    CymemFreeFn, CymemMallocFn, CymemPool, CymemStatus, CYMEM_RS_ABI_VERSION,
};
use crate::registry::PoolStats;

/// The capsule's name: `PyCapsule_Import` checks it.
const CAPSULE_NAME: &CStr = c"cymem_rs.cymem._C_API";

/// The function table. Append-only within one ABI version; any other change
/// bumps `CYMEM_RS_ABI_VERSION` (and the mirror in `cymem.pxd`).
#[repr(C)]
pub struct CApi {
    abi_version: usize,
    /// `sizeof` the table, so an older mirror can tell it is reading a newer one.
    table_size: usize,
    /// Byte offsets from the start of each object to the field C uses: the
    /// pool's `CymemPool` (passed in place to the functions below), and the
    /// fields Cython reads directly (`Address.ptr`, `PyMalloc.malloc`, ...).
    pool_core_offset: usize,
    address_ptr_offset: usize,
    pymalloc_fn_offset: usize,
    pyfree_fn_offset: usize,
    pool_alloc: unsafe extern "C" fn(*mut CymemPool, usize, usize) -> *mut c_void,
    pool_free: unsafe extern "C" fn(*mut CymemPool, *mut c_void) -> CymemStatus,
    pool_realloc: unsafe extern "C" fn(*mut CymemPool, *mut c_void, usize) -> *mut c_void,
    pool_size: unsafe extern "C" fn(*const CymemPool) -> usize,
    /// Sets the Python exception for this thread's last pool error, the way
    /// cymem raises it for the operation (0 alloc, 1 free, 2 realloc). Returns -1.
    raise_last_error: unsafe extern "C" fn(c_int) -> c_int,
    /// Emits cymem's zero-allocation warning if `WARN_ZERO_ALLOC` is set.
    /// Returns 0, or -1 with an exception set.
    warn_zero_alloc: unsafe extern "C" fn() -> c_int,
    /// `WrapMalloc` / `WrapFree`: new references, or NULL with an exception set.
    wrap_malloc: unsafe extern "C" fn(CymemMallocFn) -> *mut PyObject,
    wrap_free: unsafe extern "C" fn(CymemFreeFn) -> *mut PyObject,
    /// Debug mode's check of every block: `CYMEM_OK` or `CYMEM_ERR_CORRUPTED`.
    pool_check: unsafe extern "C" fn(*mut CymemPool) -> CymemStatus,
    /// The four pool calls above for the core inside a live Pool object (the
    /// Cython inline path): C derives the pointer from a non-None object, so
    /// these skip the NULL-handle check and its error reporting.
    core_alloc: unsafe extern "C" fn(*mut CymemPool, usize, usize) -> *mut c_void,
    core_free: unsafe extern "C" fn(*mut CymemPool, *mut c_void) -> CymemStatus,
    core_realloc: unsafe extern "C" fn(*mut CymemPool, *mut c_void, usize) -> *mut c_void,
    core_size: unsafe extern "C" fn(*const CymemPool) -> usize,
    /// `cymem_pool_stats` / `cymem_pool_reset_peak` on the pool's core.
    pool_stats: unsafe extern "C" fn(*const CymemPool, *mut PoolStats) -> CymemStatus,
    pool_reset_peak: unsafe extern "C" fn(*mut CymemPool) -> CymemStatus,
}

/// Distance from a Python object's start to one of its Rust fields.
fn offset_in_object<T>(object: *mut PyObject, field: *const T) -> usize {
    field as usize - object as usize
}

fn build_table(py: Python<'_>) -> PyResult<CApi> {
    // Measure where pyo3 placed the fields, on real objects: pyo3 does not
    // promise a layout, so C is told rather than assuming.
    let pool = Bound::new(py, Pool::new(py, None, None, false, None, None)?)?;
    let address = Bound::new(py, Address::new(py, 1, 1)?)?;
    let malloc = default_malloc(py)?.bind(py);
    let free = default_free(py)?.bind(py);
    Ok(CApi {
        abi_version: CYMEM_RS_ABI_VERSION as usize,
        table_size: std::mem::size_of::<CApi>(),
        pool_core_offset: offset_in_object(pool.as_ptr(), &pool.get().core),
        address_ptr_offset: offset_in_object(address.as_ptr(), address.get().ptr_field()),
        pymalloc_fn_offset: offset_in_object(malloc.as_ptr(), &malloc.get().malloc),
        pyfree_fn_offset: offset_in_object(free.as_ptr(), &free.get().free),
        pool_alloc: cymem_pool_alloc,
        pool_free: cymem_pool_free,
        pool_realloc: cymem_pool_realloc,
        pool_size: cymem_pool_size,
        raise_last_error,
        warn_zero_alloc: capi_warn_zero_alloc,
        wrap_malloc,
        wrap_free,
        pool_check: cymem_pool_check,
        core_alloc,
        core_free,
        core_realloc,
        core_size,
        pool_stats: cymem_pool_stats,
        pool_reset_peak: cymem_pool_reset_peak,
    })
}

static TABLE: OnceLock<CApi> = OnceLock::new();

/// The `_C_API` capsule. The table lives in a static: compiled Cython modules
/// keep its address for the life of the process.
pub(crate) fn capsule(py: Python<'_>) -> PyResult<Bound<'_, PyCapsule>> {
    if TABLE.get().is_none() {
        let table = build_table(py)?;
        let _ = TABLE.set(table);
    }
    let table: &'static CApi = TABLE.get().expect("set above");
    // SAFETY: the pointer is to a static that is never freed.
    unsafe { PyCapsule::new_with_pointer(py, NonNull::from(table).cast(), CAPSULE_NAME) }
}

unsafe extern "C" fn raise_last_error(op: c_int) -> c_int {
    // SAFETY: called by the Cython helpers, which hold the GIL (or are attached
    // to the interpreter on free-threaded builds).
    let py = unsafe { Python::assume_attached() };
    let op = match op {
        0 => Operation::Alloc,
        1 => Operation::Free,
        _ => Operation::Realloc,
    };
    // SAFETY: the message is a NUL-terminated string owned by this thread.
    let message = unsafe { CStr::from_ptr(cymem_last_error_message()) };
    // Our messages are UTF-8, so this borrows (no allocation).
    exception(op, cymem_last_error(), &message.to_string_lossy()).restore(py);
    -1
}

unsafe extern "C" fn capi_warn_zero_alloc() -> c_int {
    // SAFETY: as in `raise_last_error`.
    let py = unsafe { Python::assume_attached() };
    match warn_zero_alloc(py) {
        Ok(()) => 0,
        Err(err) => {
            err.restore(py);
            -1
        }
    }
}

/// Wraps a non-NULL C function in a new Python object, or raises TypeError.
fn wrap_function<F, T: pyo3::PyClass + Into<pyo3::PyClassInitializer<T>>>(
    function: Option<F>,
    what: &str,
    wrap: impl FnOnce(F) -> T,
) -> *mut PyObject {
    // SAFETY: as in `raise_last_error`.
    let py = unsafe { Python::assume_attached() };
    let made = match function {
        Some(f) => Py::new(py, wrap(f)),
        None => Err(pyo3::exceptions::PyTypeError::new_err(format!(
            "{what}: the function pointer is NULL"
        ))),
    };
    match made {
        Ok(object) => object.into_ptr(),
        Err(err) => {
            err.restore(py);
            std::ptr::null_mut()
        }
    }
}

unsafe extern "C" fn wrap_malloc(malloc: CymemMallocFn) -> *mut PyObject {
    wrap_function(malloc, "WrapMalloc", PyMalloc::wrap)
}

unsafe extern "C" fn wrap_free(free: CymemFreeFn) -> *mut PyObject {
    wrap_function(free, "WrapFree", PyFree::wrap)
}

/// The core inside a Pool object.
///
/// # Safety
/// `core` is the address of the `core` field of a live Pool object, which
/// the caller holds a reference to for the whole call.
unsafe fn core_ref<'a>(core: *const CymemPool) -> &'a CymemPool {
    // SAFETY: caller's contract: a valid, shared CymemPool.
    unsafe { &*core }
}

unsafe extern "C" fn core_alloc(
    core: *mut CymemPool,
    number: usize,
    elem_size: usize,
) -> *mut c_void {
    // SAFETY: see `core_ref`; the Cython caller passes its Pool's core.
    match unsafe { core_ref(core) }
        .0
        .with(|p| p.alloc(number, elem_size))
    {
        Ok(block) => block.as_ptr(),
        Err(err) => {
            report(err);
            std::ptr::null_mut()
        }
    }
}

unsafe extern "C" fn core_free(core: *mut CymemPool, ptr: *mut c_void) -> CymemStatus {
    // SAFETY: as in `core_alloc`.
    match unsafe { core_ref(core) }.0.with(|p| p.free(ptr)) {
        Ok(_) => crate::ffi::CYMEM_OK,
        Err(err) => report(err),
    }
}

unsafe extern "C" fn core_realloc(
    core: *mut CymemPool,
    ptr: *mut c_void,
    new_size: usize,
) -> *mut c_void {
    // SAFETY: as in `core_alloc`.
    match unsafe { core_ref(core) }
        .0
        .with(|p| p.realloc(ptr, new_size))
    {
        Ok(block) => block.as_ptr(),
        Err(err) => {
            report(err);
            std::ptr::null_mut()
        }
    }
}

unsafe extern "C" fn core_size(core: *const CymemPool) -> usize {
    // SAFETY: as in `core_alloc`.
    unsafe { core_ref(core) }.0.with(|p| p.size())
}
