//! `with pool.scope():` and Python cleanup callables: the Python side of a
//! pool's shorter lifetimes (the rules are the core's, in `pool/lifetimes.rs`).

use std::ffi::c_void;

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyString;

use super::pool::Pool;
use crate::fallible::try_box;
use crate::PoolError;

/// The context manager of `Pool.scope()`: entering opens a scope (its mark
/// is the value of `as`), leaving it by any path frees every block allocated
/// and runs every cleanup added inside. If a block allocated inside is still
/// viewed, leaving raises BufferError (chained to any exception in flight),
/// frees nothing and leaves the scope open: `pool.release_to(scope.mark)`
/// retries once the views are gone.
#[pyclass(module = "cymem_rs.cymem", name = "Scope")]
pub struct Scope {
    pool: Py<Pool>,
    /// The open scope's mark, while entered and not yet released.
    #[pyo3(get)]
    mark: Option<usize>,
}

impl Scope {
    pub(crate) fn new(pool: Py<Pool>) -> Self {
        Scope { pool, mark: None }
    }
}

#[pymethods]
impl Scope {
    fn __enter__(&mut self) -> PyResult<usize> {
        if self.mark.is_some() {
            return Err(PyRuntimeError::new_err("this scope is already open"));
        }
        let mark = self.pool.get().mark()?;
        self.mark = Some(mark);
        Ok(mark)
    }

    fn __exit__(
        &mut self,
        py: Python<'_>,
        _exc_type: Option<&Bound<'_, PyAny>>,
        exc: Option<&Bound<'_, PyAny>>,
        _traceback: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        if let Some(mark) = self.mark {
            if let Err(err) = self.pool.get().release_to(mark) {
                // Chained to the exception in flight, as a `raise` there
                // would be (the error is made outside that `raise`).
                if let Some(exc) = exc.filter(|exc| !exc.is_none()) {
                    err.value(py).setattr("__context__", exc)?;
                }
                return Err(err);
            }
            self.mark = None;
        }
        // Never swallows the exception in flight.
        Ok(false)
    }

    fn __traverse__(&self, visit: pyo3::gc::PyVisit<'_>) -> Result<(), pyo3::PyTraverseError> {
        visit.call(&self.pool)
    }
}

/// The cleanup a Python callable becomes: `data` is a `Box<Py<PyAny>>`
/// owned by the pool's entry and released here, after the call (boxed so
/// the pool's `__traverse__` can show it to the garbage collector). An
/// exception goes to `sys.unraisablehook`; the other cleanups still run.
///
/// # Safety
/// `data` comes from [`python_cleanup_data`] and is handed to this call once.
pub(crate) unsafe extern "C" fn run_python_cleanup(data: *mut c_void) {
    Python::attach(|py| {
        // SAFETY: `data` is a `Box<Py<PyAny>>` leaked by
        // `python_cleanup_data` and handed to this call once (`# Safety`).
        let callable = unsafe { Box::from_raw(data.cast::<Py<PyAny>>()) };
        if let Err(err) = callable.call0(py) {
            let context = PyString::new(py, "cymem_rs.Pool cleanup");
            err.write_unraisable(py, Some(context.as_any()));
        }
    });
}

/// The `data` of a cleanup entry for `callable` (see [`run_python_cleanup`]),
/// or `OutOfMemory` (the reference is released).
pub(crate) fn python_cleanup_data(callable: Py<PyAny>) -> Result<*mut c_void, PoolError> {
    let boxed = try_box(callable).map_err(|_| PoolError::OutOfMemory {
        bytes: std::mem::size_of::<Py<PyAny>>(),
    })?;
    Ok(Box::into_raw(boxed).cast())
}

/// The callable of a cleanup entry, if it is a Python one.
pub(crate) fn python_cleanup<'a>(
    func: crate::pool::CleanupFn,
    data: *mut c_void,
) -> Option<&'a Py<PyAny>> {
    // Only `run_python_cleanup` entries hold a `Box<Py<PyAny>>`.
    let python = func as *const () == run_python_cleanup as *const ();
    // SAFETY: such an entry's `data` came from `python_cleanup_data` and
    // stays alive while the entry is in the pool, which the caller's borrow
    // of the pool covers.
    python.then(|| unsafe { &*data.cast::<Py<PyAny>>() })
}
