//! `PyMalloc` / `PyFree`: Python objects carrying a C allocator function, as
//! in cymem. `WrapMalloc(f)` / `WrapFree(g)` make them from Cython.

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyString;

use super::errors::py_format;

use crate::allocator::{Accelerators, Allocator, FreeFn, MallocFn};

/// A C `malloc`-like function wrapped as a Python object.
/// Layout: C code reads `malloc` right after the object header (the offset is
/// checked when the C API is loaded).
#[pyclass(module = "cymem_rs.cymem", name = "PyMalloc", frozen)]
#[repr(C)]
pub struct PyMalloc {
    pub(crate) malloc: MallocFn,
    /// Set only on `Default_Malloc`: pairs with `Default_Free` to use
    /// CPython's calloc/realloc as well.
    is_default: bool,
}

/// A C `free`-like function wrapped as a Python object.
#[pyclass(module = "cymem_rs.cymem", name = "PyFree", frozen)]
#[repr(C)]
pub struct PyFree {
    pub(crate) free: FreeFn,
    is_default: bool,
}

#[pymethods]
impl PyMalloc {
    fn __repr__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyString>> {
        let function = self.malloc as *const ();
        py_format(py, format_args!("<cymem_rs.PyMalloc {function:p}>"))
    }
}

#[pymethods]
impl PyFree {
    fn __repr__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyString>> {
        let function = self.free as *const ();
        py_format(py, format_args!("<cymem_rs.PyFree {function:p}>"))
    }
}

impl PyMalloc {
    pub(crate) fn wrap(malloc: MallocFn) -> Self {
        PyMalloc {
            malloc,
            is_default: false,
        }
    }
}

impl PyFree {
    pub(crate) fn wrap(free: FreeFn) -> Self {
        PyFree {
            free,
            is_default: false,
        }
    }
}

static DEFAULT_MALLOC: PyOnceLock<Py<PyMalloc>> = PyOnceLock::new();
static DEFAULT_FREE: PyOnceLock<Py<PyFree>> = PyOnceLock::new();

/// `Default_Malloc`: CPython's `PyMem_Malloc`, so tracemalloc sees the memory.
pub(crate) fn default_malloc(py: Python<'_>) -> PyResult<&Py<PyMalloc>> {
    DEFAULT_MALLOC.get_or_try_init(py, || {
        Py::new(
            py,
            PyMalloc {
                malloc: pyo3::ffi::PyMem_Malloc,
                is_default: true,
            },
        )
    })
}

/// `Default_Free`: CPython's `PyMem_Free`.
pub(crate) fn default_free(py: Python<'_>) -> PyResult<&Py<PyFree>> {
    DEFAULT_FREE.get_or_try_init(py, || {
        Py::new(
            py,
            PyFree {
                free: pyo3::ffi::PyMem_Free,
                is_default: true,
            },
        )
    })
}

/// The allocator of `Default_Malloc`/`Default_Free` (PyMem, with its calloc
/// and realloc), made without looking the Python objects up: `Pool()` and
/// `Address()` are often called in loops.
pub(crate) fn default_allocator() -> Allocator {
    use pyo3::ffi::{PyMem_Calloc, PyMem_Free, PyMem_Malloc, PyMem_Realloc};
    static PYMEM: Accelerators = Accelerators {
        calloc: PyMem_Calloc,
        realloc: PyMem_Realloc,
    };
    // SAFETY: PyMem_Malloc and PyMem_Free are C malloc/free for CPython's
    // heap; the pools and Addresses using them call them only with the GIL
    // held (every entry point is a Python or Cython call), as CPython asks.
    let pair = unsafe { Allocator::from_raw(PyMem_Malloc, PyMem_Free) };
    // SAFETY: PyMem_Calloc and PyMem_Realloc serve the same heap, so
    // PyMem_Free releases their blocks and PyMem_Realloc accepts PyMem_Malloc's.
    unsafe { pair.with_accelerators(&PYMEM) }
}

/// Whether a malloc/free pair is `Default_Malloc`/`Default_Free` (PyMem).
pub(crate) fn is_pymem(malloc: &PyMalloc, free: &PyFree) -> bool {
    malloc.is_default && free.is_default
}

/// The core allocator for a malloc/free pair of Python objects.
pub(crate) fn allocator_for(malloc: &PyMalloc, free: &PyFree) -> Allocator {
    if is_pymem(malloc, free) {
        return default_allocator();
    }
    // SAFETY: a pair other than the defaults comes from WrapMalloc/WrapFree,
    // whose documented contract (as in cymem) is that the C functions behave
    // like malloc and free of one heap; they are called with the GIL held.
    unsafe { Allocator::from_raw(malloc.malloc, free.free) }
}
