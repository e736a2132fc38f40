//! The `_C_API` capsule: the table of C functions that the Cython declarations
//! in `cymem_rs/cymem.pxd` call, so `mem.alloc(...)` in Cython is a direct C
//! call into the core, with no Python attribute lookup or argument boxing.
//!
//! The C mirror of [`CApi`] lives in `cymem_rs/cymem.pxd`. It checks
//! `capsule_version`, `table_size` and the field offsets on first use and
//! raises ImportError on any mismatch, so a stale compiled module never
//! crashes.

use std::ffi::{c_int, c_void, CStr};
use std::ptr::NonNull;
use std::sync::OnceLock;

use pyo3::ffi::PyObject;
use pyo3::prelude::*;
use pyo3::types::PyCapsule;

use super::address::Address;
use super::allocators::{default_free, default_malloc, PyFree, PyMalloc};
use super::errors::{exception_type, Operation};
use super::pool::{warn_zero_alloc, Pool};
use crate::error::PoolError;
use crate::ffi::{
    block_or_null, cymem_last_error, cymem_last_error_message, cymem_pool_add_cleanup,
    cymem_pool_check, cymem_pool_clear, cymem_pool_limit, cymem_pool_mark, cymem_pool_release_to,
    cymem_pool_reset_peak, cymem_pool_set_limit, cymem_pool_stats, report, status, CymemCleanupFn,
    CymemFreeFn, CymemMallocFn, CymemPool, CymemStatus,
};
use crate::registry::PoolStats;

/// The capsule's name: `PyCapsule_Import` checks it.
const CAPSULE_NAME: &CStr = c"cymem_rs.cymem._C_API";

/// Version of the capsule table (`CYMEM_RS_CAPSULE_VERSION` in `cymem.pxd`),
/// separate from the C ABI's `CYMEM_RS_ABI_VERSION`. Entries are appended
/// within one version (`table_size` tells an older mirror it reads a newer
/// table); any other change bumps it.
pub(crate) const CAPSULE_VERSION: usize = 2;

/// The operation a Cython helper reports to `raise_last_error`, which picks
/// cymem's exception for it (the same names are `#define`d in `cymem.pxd`).
pub(crate) const CYMEM_RS_OP_ALLOC: c_int = 0;
pub(crate) const CYMEM_RS_OP_FREE: c_int = 1;
pub(crate) const CYMEM_RS_OP_REALLOC: c_int = 2;
pub(crate) const CYMEM_RS_OP_CHECK: c_int = 3;
pub(crate) const CYMEM_RS_OP_LIFETIME: c_int = 4;

/// The function table, mirrored by `CymemRsCAPI` in `cymem.pxd`.
#[repr(C)]
pub struct CApi {
    capsule_version: usize,
    /// `sizeof` the table, so an older mirror can tell it is reading a newer one.
    table_size: usize,
    /// Byte offsets from the start of each object to the field C uses: the
    /// pool's `CymemPool` (passed in place to the functions below), and the
    /// fields Cython reads directly (`Address.ptr`, `PyMalloc.malloc`, ...).
    pool_core_offset: usize,
    address_ptr_offset: usize,
    pymalloc_fn_offset: usize,
    pyfree_fn_offset: usize,
    /// Sets the Python exception for this thread's last pool error, the way
    /// cymem raises it for the operation (a `CYMEM_RS_OP_*` code). Returns -1.
    raise_last_error: unsafe extern "C" fn(c_int) -> c_int,
    /// Emits cymem's zero-allocation warning if `WARN_ZERO_ALLOC` is set.
    /// Returns 0, or -1 with an exception set.
    warn_zero_alloc: unsafe extern "C" fn() -> c_int,
    /// `WrapMalloc` / `WrapFree`: new references, or NULL with an exception set.
    wrap_malloc: unsafe extern "C" fn(CymemMallocFn) -> *mut PyObject,
    wrap_free: unsafe extern "C" fn(CymemFreeFn) -> *mut PyObject,
    /// Debug mode's check of every block: `CYMEM_OK` or `CYMEM_ERR_CORRUPTED`.
    pool_check: unsafe extern "C" fn(*mut CymemPool) -> CymemStatus,
    /// The pool calls for the core inside a live Pool object (the Cython
    /// inline path): C derives the pointer from a non-None object, so these
    /// skip the NULL-handle check and its error reporting.
    core_alloc: unsafe extern "C" fn(*mut CymemPool, usize, usize) -> *mut c_void,
    core_free: unsafe extern "C" fn(*mut CymemPool, *mut c_void) -> CymemStatus,
    core_realloc: unsafe extern "C" fn(*mut CymemPool, *mut c_void, usize) -> *mut c_void,
    core_size: unsafe extern "C" fn(*const CymemPool) -> usize,
    /// `cymem_pool_stats` / `cymem_pool_reset_peak` on the pool's core.
    pool_stats: unsafe extern "C" fn(*const CymemPool, *mut PoolStats) -> CymemStatus,
    pool_reset_peak: unsafe extern "C" fn(*mut CymemPool) -> CymemStatus,
    /// `cymem_pool_clear`, `_mark`, `_release_to`, `_add_cleanup`,
    /// `_set_limit` and `_limit` on the pool's core. (Appended: version 2
    /// mirrors that predate them check `table_size` and read only the head.)
    pool_clear: unsafe extern "C" fn(*mut CymemPool) -> CymemStatus,
    pool_mark: unsafe extern "C" fn(*mut CymemPool) -> usize,
    pool_release_to: unsafe extern "C" fn(*mut CymemPool, usize) -> CymemStatus,
    pool_add_cleanup:
        unsafe extern "C" fn(*mut CymemPool, CymemCleanupFn, *mut c_void) -> CymemStatus,
    pool_set_limit: unsafe extern "C" fn(*mut CymemPool, usize) -> CymemStatus,
    pool_limit: unsafe extern "C" fn(*const CymemPool) -> usize,
}

/// Distance from a Python object's start to one of its Rust fields.
fn offset_in_object<T>(object: *mut PyObject, field: *const T) -> usize {
    field as usize - object as usize
}

fn build_table(py: Python<'_>) -> PyResult<CApi> {
    // Measure where pyo3 placed the fields, on real objects: pyo3 does not
    // promise a layout, so C is told rather than assuming.
    let pool = Bound::new(py, Pool::new(py, None, None, None, None, None, None)?)?;
    let address = Bound::new(py, Address::new(py, 1, 1)?)?;
    let malloc = default_malloc(py)?.bind(py);
    let free = default_free(py)?.bind(py);
    Ok(CApi {
        capsule_version: CAPSULE_VERSION,
        table_size: std::mem::size_of::<CApi>(),
        pool_core_offset: offset_in_object(pool.as_ptr(), &pool.get().core),
        address_ptr_offset: offset_in_object(address.as_ptr(), address.get().ptr_field()),
        pymalloc_fn_offset: offset_in_object(malloc.as_ptr(), &malloc.get().malloc),
        pyfree_fn_offset: offset_in_object(free.as_ptr(), &free.get().free),
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
        pool_clear: cymem_pool_clear,
        pool_mark: cymem_pool_mark,
        pool_release_to: cymem_pool_release_to,
        pool_add_cleanup: cymem_pool_add_cleanup,
        pool_set_limit: cymem_pool_set_limit,
        pool_limit: cymem_pool_limit,
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
    // SAFETY: the pointer is to a static that is never freed, so it outlives
    // the capsule; no destructor is given.
    unsafe { PyCapsule::new_with_pointer(py, NonNull::from(table).cast(), CAPSULE_NAME) }
}

/// The interpreter token for a call from the Cython helpers in `cymem.pxd`.
///
/// # Safety
/// The calling thread is attached to the interpreter (holds the GIL).
unsafe fn cython_caller<'py>() -> Python<'py> {
    // SAFETY: the thread is attached to the interpreter (`# Safety`), which
    // is what `assume_attached` requires.
    unsafe { Python::assume_attached() }
}

/// The C entry points below are called by Cython code holding the GIL but
/// not through pyo3, so their `Python` token is not counted by pyo3: a `Py`
/// dropped under it is queued until the next counted call into the module
/// (millions of caught errors would pile up). They set exceptions with the C
/// API and hold only `Bound` references, which are released at once.
///
/// # Safety
/// Called from a thread attached to the interpreter.
unsafe extern "C" fn raise_last_error(op: c_int) -> c_int {
    // SAFETY: the Cython helpers call this from code that holds the GIL
    // (their declarations are not `nogil`), as its `# Safety` section says.
    let py = unsafe { cython_caller() };
    let op = match op {
        CYMEM_RS_OP_ALLOC => Operation::Alloc,
        CYMEM_RS_OP_FREE => Operation::Free,
        CYMEM_RS_OP_REALLOC => Operation::Realloc,
        CYMEM_RS_OP_CHECK => Operation::Check,
        CYMEM_RS_OP_LIFETIME => Operation::Lifetime,
        // A code this build does not know: the mapping shared by every
        // operation but free and realloc.
        _ => Operation::Check,
    };
    let status = cymem_last_error();
    // The message stays in this thread's error slot: no copy is made.
    let message = cymem_last_error_message();
    match exception_type(py, op, status) {
        // SAFETY: `ty` is a live exception type; `message` is a NUL-terminated
        // string in this thread's storage until the next failing call, and
        // CPython copies it before any other call can fail.
        Some(ty) => unsafe { pyo3::ffi::PyErr_SetString(ty.as_ptr(), message) },
        None => {
            // SAFETY: CPython's exception type statics are initialised before
            // any extension module can be imported, and never change.
            let runtime_error = unsafe { pyo3::ffi::PyExc_RuntimeError };
            // SAFETY: as above; the format's `%d` and `%s` take a C int (the
            // status) and that NUL-terminated string.
            unsafe {
                pyo3::ffi::PyErr_Format(
                    runtime_error,
                    c"cymem_rs error %d: %s".as_ptr(),
                    status,
                    message,
                )
            };
        }
    }
    -1
}

/// # Safety
/// Called from a thread attached to the interpreter.
unsafe extern "C" fn capi_warn_zero_alloc() -> c_int {
    // SAFETY: the Cython allocation helper calls this holding the GIL.
    let py = unsafe { cython_caller() };
    match warn_zero_alloc(py) {
        Ok(()) => 0,
        // Raised by Python code (the warnings machinery): restoring it drops no `Py`.
        Err(err) => {
            err.restore(py);
            -1
        }
    }
}

/// Wraps a non-NULL C function in a new Python object, or raises TypeError.
///
/// # Safety
/// Called from a thread attached to the interpreter.
unsafe fn wrap_function<F, T: pyo3::PyClass + Into<pyo3::PyClassInitializer<T>>>(
    function: Option<F>,
    null_message: &CStr,
    wrap: impl FnOnce(F) -> T,
) -> *mut PyObject {
    // SAFETY: the thread holds the GIL (`# Safety`): `WrapMalloc` and
    // `WrapFree` are called from GIL-holding Cython code.
    let py = unsafe { cython_caller() };
    let Some(f) = function else {
        // SAFETY: CPython's exception type statics are initialised before any
        // extension module can be imported, and never change.
        let type_error = unsafe { pyo3::ffi::PyExc_TypeError };
        // SAFETY: the GIL is held (`# Safety`); a live exception type and a
        // NUL-terminated message, which CPython copies.
        unsafe { pyo3::ffi::PyErr_SetString(type_error, null_message.as_ptr()) };
        return std::ptr::null_mut();
    };
    match Py::new(py, wrap(f)) {
        Ok(object) => object.into_ptr(),
        // Made from the exception CPython raised: restoring it drops no `Py`.
        Err(err) => {
            err.restore(py);
            std::ptr::null_mut()
        }
    }
}

const MALLOC_IS_NULL: &CStr = c"WrapMalloc: the function pointer is NULL";
const FREE_IS_NULL: &CStr = c"WrapFree: the function pointer is NULL";

/// # Safety
/// Called from a thread attached to the interpreter.
unsafe extern "C" fn wrap_malloc(malloc: CymemMallocFn) -> *mut PyObject {
    // SAFETY: `WrapMalloc` in `cymem.pxd` calls this holding the GIL.
    unsafe { wrap_function(malloc, MALLOC_IS_NULL, PyMalloc::wrap) }
}

/// # Safety
/// Called from a thread attached to the interpreter.
unsafe extern "C" fn wrap_free(free: CymemFreeFn) -> *mut PyObject {
    // SAFETY: `WrapFree` in `cymem.pxd` calls this holding the GIL.
    unsafe { wrap_function(free, FREE_IS_NULL, PyFree::wrap) }
}

/// Runs `op` on the core inside a Pool object (`PoolError::Reentered` if
/// the call comes from inside one of the pool's own calls).
///
/// # Safety
/// `core` is the address of the `core` field of a live Pool object, which
/// the caller holds a reference to for the whole call.
unsafe fn with_core<R>(
    core: *const CymemPool,
    op: impl FnOnce(&mut crate::Pool) -> Result<R, PoolError>,
) -> Result<R, PoolError> {
    // SAFETY: `core` points to the `core` field of a Pool object kept alive
    // by the caller (`# Safety`): an initialised `CymemPool` that is only
    // ever shared (`run` serialises access), valid for this call.
    unsafe { &*core }.0.run(op)
}

/// # Safety
/// `core` is the `core` field of a live Pool object (see `with_core`).
unsafe extern "C" fn core_alloc(
    core: *mut CymemPool,
    number: usize,
    elem_size: usize,
) -> *mut c_void {
    // SAFETY: the Cython helper passes `CYMEM_RS_CORE(pool)` for a non-None
    // Pool it holds a reference to: the `core` field at the offset this
    // table reports.
    block_or_null(unsafe { with_core(core, |p| p.alloc(number, elem_size)) })
}

/// # Safety
/// `core` is the `core` field of a live Pool object (see `with_core`).
unsafe extern "C" fn core_free(core: *mut CymemPool, ptr: *mut c_void) -> CymemStatus {
    // SAFETY: the Cython helper passes the core of a Pool it holds; `ptr` is
    // looked up in the pool's table before any memory is touched.
    status(unsafe { with_core(core, |p| p.free(ptr)) })
}

/// # Safety
/// `core` is the `core` field of a live Pool object (see `with_core`).
unsafe extern "C" fn core_realloc(
    core: *mut CymemPool,
    ptr: *mut c_void,
    new_size: usize,
) -> *mut c_void {
    // SAFETY: the Cython helper passes the core of a Pool it holds; `ptr` is
    // looked up in the pool's table before any memory is touched.
    block_or_null(unsafe { with_core(core, |p| p.realloc(ptr, new_size)) })
}

/// `usize::MAX` (never a pool's size) with the error recorded if refused.
///
/// # Safety
/// `core` is the `core` field of a live Pool object (see `with_core`).
unsafe extern "C" fn core_size(core: *const CymemPool) -> usize {
    // SAFETY: the Cython helper passes the core of a Pool it holds.
    unsafe { with_core(core, |p| Ok(p.size())) }.unwrap_or_else(|err| {
        report(err);
        usize::MAX
    })
}
