//! `cymem_rs.cymem.Pool`: the Python object that owns a core pool.

use std::ffi::c_void;
use std::ptr::NonNull;

use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use pyo3::PyTraverseError;

use super::allocators::{allocator_for, default_free, default_malloc, PyFree, PyMalloc};
use super::errors::{pool_exception, Operation};
use crate::ffi::{cymem_pool_destroy, into_handle, CymemPool};
use crate::pool::Pool as CorePool;

/// The C ABI handle of a Python pool.
///
/// Invariant: made by `into_handle`, never NULL, destroyed exactly once (in
/// `Drop`). C code copies the pointer (through the `_C_API` capsule) only
/// while it holds a reference to the Python object, so it never outlives it.
#[repr(transparent)]
pub(crate) struct Handle(NonNull<CymemPool>);

// SAFETY: `CymemPool` serialises access with its own lock, so the handle may
// be shared and sent between threads like `&CymemPool`.
unsafe impl Send for Handle {}
unsafe impl Sync for Handle {}

impl Handle {
    pub(crate) fn get(&self) -> &CymemPool {
        // SAFETY: valid from creation until `Drop` (type invariant).
        unsafe { self.0.as_ref() }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        let mut raw = self.0.as_ptr();
        // SAFETY: the handle is live and this is its only release; no other
        // thread can use it, as the owning Python object is being destroyed.
        unsafe { cymem_pool_destroy(&mut raw) };
    }
}

/// A memory pool: every block it hands out is zeroed and released when the
/// Pool is garbage collected (or by `free`).
///
/// Layout: `handle` must stay the first field; C reads it right after the
/// object header (the offset is checked when the C API is loaded).
#[pyclass(module = "cymem_rs.cymem", name = "Pool", frozen, subclass, weakref)]
#[repr(C)]
pub struct Pool {
    pub(crate) handle: Handle,
    pymalloc: Py<PyMalloc>,
    pyfree: Py<PyFree>,
    refs: Py<PyList>,
}

impl Pool {
    fn with_core<R>(&self, f: impl FnOnce(&mut CorePool) -> R) -> R {
        f(&mut self.handle.get().lock())
    }
}

/// Warns "Allocating zero bytes" when the module flag `WARN_ZERO_ALLOC` is set,
/// as cymem does. Only called for 0-byte requests.
pub(crate) fn warn_zero_alloc(py: Python<'_>) -> PyResult<()> {
    let module = py.import("cymem_rs.cymem")?;
    if module.getattr("WARN_ZERO_ALLOC")?.is_truthy()? {
        let warnings = py.import("warnings")?;
        warnings.call_method1("warn", ("Allocating zero bytes",))?;
    }
    Ok(())
}

#[pymethods]
impl Pool {
    #[new]
    #[pyo3(signature = (pymalloc = None, pyfree = None))]
    pub(crate) fn new(
        py: Python<'_>,
        pymalloc: Option<Py<PyMalloc>>,
        pyfree: Option<Py<PyFree>>,
    ) -> PyResult<Self> {
        let pymalloc = match pymalloc {
            Some(m) => m,
            None => default_malloc(py)?.clone_ref(py),
        };
        let pyfree = match pyfree {
            Some(f) => f,
            None => default_free(py)?.clone_ref(py),
        };
        let allocator = allocator_for(pymalloc.get(), pyfree.get());
        let raw = into_handle(CorePool::with_allocator(allocator));
        Ok(Pool {
            // `into_handle` returns a fresh, non-NULL box pointer.
            handle: Handle(NonNull::new(raw).expect("into_handle never returns NULL")),
            pymalloc,
            pyfree,
            refs: PyList::empty(py).unbind(),
        })
    }

    /// Bytes in live blocks.
    #[getter]
    fn size(&self) -> usize {
        self.with_core(|pool| pool.size())
    }

    /// Number of live blocks.
    #[getter]
    fn block_count(&self) -> usize {
        self.with_core(|pool| pool.block_count())
    }

    /// A snapshot of the live blocks: {address: size}.
    #[getter]
    fn addresses<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let blocks: Vec<(usize, usize)> = self.with_core(|pool| pool.blocks().collect());
        let dict = PyDict::new(py);
        for (addr, size) in blocks {
            dict.set_item(addr, size)?;
        }
        Ok(dict)
    }

    /// Objects kept alive by this pool (see `own_pyref`).
    #[getter]
    fn refs(&self, py: Python<'_>) -> Py<PyList> {
        self.refs.clone_ref(py)
    }

    #[getter]
    fn pymalloc(&self, py: Python<'_>) -> Py<PyMalloc> {
        self.pymalloc.clone_ref(py)
    }

    #[getter]
    fn pyfree(&self, py: Python<'_>) -> Py<PyFree> {
        self.pyfree.clone_ref(py)
    }

    /// Keeps `obj` alive as long as the pool.
    fn own_pyref(&self, py: Python<'_>, obj: Py<PyAny>) -> PyResult<()> {
        self.refs.bind(py).append(obj)
    }

    /// Allocates a zeroed block of `number * elem_size` bytes; returns its address.
    fn alloc(&self, py: Python<'_>, number: usize, elem_size: usize) -> PyResult<usize> {
        if number == 0 || elem_size == 0 {
            warn_zero_alloc(py)?;
        }
        self.with_core(|pool| pool.alloc(number, elem_size))
            .map(|p| p.as_ptr() as usize)
            .map_err(|e| pool_exception(Operation::Alloc, e))
    }

    /// Releases the block at `addr` (KeyError if the pool does not hold it).
    fn free(&self, addr: usize) -> PyResult<()> {
        self.with_core(|pool| pool.free(addr as *mut c_void))
            .map(drop)
            .map_err(|e| pool_exception(Operation::Free, e))
    }

    /// Grows the block at `addr` to `new_size` bytes; returns its new address.
    fn realloc(&self, addr: usize, new_size: usize) -> PyResult<usize> {
        self.with_core(|pool| pool.realloc(addr as *mut c_void, new_size))
            .map(|p| p.as_ptr() as usize)
            .map_err(|e| pool_exception(Operation::Realloc, e))
    }

    fn __repr__(&self) -> String {
        let (size, blocks) = self.with_core(|pool| (pool.size(), pool.block_count()));
        format!("<cymem_rs.Pool size={size} blocks={blocks}>")
    }

    /// Cython looks up a vtable on extern types that declare cdef methods;
    /// the methods themselves are inline C in `cymem.pxd`, so the table is
    /// empty. The capsule is unnamed, as Cython expects.
    #[classattr]
    fn __pyx_vtable__(py: Python<'_>) -> PyResult<Py<PyAny>> {
        static EMPTY_VTABLE: usize = 0;
        let pointer = (&raw const EMPTY_VTABLE).cast_mut().cast::<c_void>();
        // SAFETY: a non-NULL pointer to a static, no name, no destructor;
        // PyCapsule_New returns a new reference or NULL with an exception set.
        unsafe {
            Bound::from_owned_ptr_or_err(
                py,
                pyo3::ffi::PyCapsule_New(pointer, std::ptr::null(), None),
            )
        }
        .map(Bound::unbind)
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.refs)?;
        visit.call(&self.pymalloc)?;
        visit.call(&self.pyfree)?;
        Ok(())
    }
}
