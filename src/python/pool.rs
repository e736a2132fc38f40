//! `cymem_rs.cymem.Pool`: the Python object that owns a core pool.

use std::ffi::c_void;
use std::sync::OnceLock;

use once_cell::race::OnceBox;
use pyo3::exceptions::{PyMemoryError, PyTypeError, PyValueError};
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyInt, PyList, PyString};
use pyo3::PyTraverseError;

use super::allocators::{
    allocator_for, default_allocator, default_free, default_malloc, is_pymem, PyFree, PyMalloc,
};
use super::errors::{error, pool_exception, py_format, py_int, py_string, Operation};
use super::report::{caller_site, stats_object, CallerSite};
use super::scope::{python_cleanup, python_cleanup_data, run_python_cleanup, Scope};
use super::tracemalloc;
use super::view::BlockView;
use crate::error::PoolError;
use crate::fallible::{try_box, try_string};
use crate::ffi::CymemPool;
use crate::pool::allocator::Allocator;
use crate::pool::{DebugOptions, Mark, Pool as CorePool};
use crate::registry::Label;
use crate::shared::SharedPool;

/// A heap pool for a Python `Pool`. Under the GIL an unnamed pool defers
/// its registry record to its first block: `Pool()` then costs no registry
/// work, and an unused pool no record. (A pool with a lock of its own keeps
/// the lock in its record, so free-threaded builds register at once.)
#[inline(always)]
fn heap_core(
    allocator: Allocator,
    name: Option<String>,
    site: CallerSite,
) -> Result<CorePool, PoolError> {
    #[cfg(not(any(Py_GIL_DISABLED, cymem_rs_force_lock)))]
    if let (None, CallerSite::Interned(site)) = (&name, &site) {
        return Ok(CorePool::deferred_under_process_lock(allocator, site));
    }
    let origin = site.into_origin();
    CorePool::try_with_allocator_labelled(allocator, Label { name, origin })
}

/// The core pool of a Python `Pool`.
#[inline(always)]
fn new_core(pool: CorePool) -> CymemPool {
    // Every call holds the GIL (see below), which all Python pools share.
    #[cfg(not(Py_GIL_DISABLED))]
    let pool = {
        let mut pool = pool;
        pool.count_under_process_lock();
        pool
    };
    #[cfg(not(any(Py_GIL_DISABLED, cymem_rs_force_lock)))]
    // SAFETY: `with` is only called by Python methods, Cython helpers and
    // object deallocation, all holding the GIL (the Cython declarations are
    // not `nogil`), and nothing inside `with` releases the GIL or calls back
    // into Python, so no two calls overlap.
    let shared = unsafe { SharedPool::unsynchronized(pool) };
    #[cfg(any(Py_GIL_DISABLED, cymem_rs_force_lock))]
    let shared = SharedPool::locked(pool);
    CymemPool(shared)
}

/// A memory pool: every block it hands out is zeroed and released when the
/// Pool is garbage collected (or by `free`).
///
/// Layout: C code calls the C ABI on `core` in place, at an offset the C
/// API table reports (so no allocation and no pointer chase per call).
#[pyclass(module = "cymem_rs.cymem", name = "Pool", frozen, subclass, weakref)]
#[repr(C)]
pub struct Pool {
    pub(crate) core: CymemPool,
    /// Made when `Pool()` is given allocator objects, or on the first
    /// `own_pyref` or `refs`: most pools never need it, and a pointer keeps
    /// every pool small. (Lock-free: `__traverse__` reads it without the
    /// interpreter.)
    parts: OnceBox<PyParts>,
}

/// The Python objects a pool may hold.
#[derive(Default)]
struct PyParts {
    /// The allocator objects given to `Pool()`; `None`: the defaults
    /// (`Default_Malloc`/`Default_Free`), so a plain `Pool()` looks nothing up.
    pymalloc: Option<Py<PyMalloc>>,
    pyfree: Option<Py<PyFree>>,
    /// Made on the first `own_pyref` or `refs`.
    refs: OnceLock<Py<PyList>>,
}

impl Pool {
    /// `Pool()`: what [`Pool::new`] makes with no arguments, without parsing
    /// any. (`Err` leaves no trace: the caller may retry through `new`.)
    /// Inlined, so the pool is built where the caller puts it, not copied.
    #[inline(always)]
    pub(crate) fn new_default(py: Python<'_>) -> Result<Self, PoolError> {
        let mut core = heap_core(default_allocator(), None, caller_site(py))?;
        if let Some(options) = DebugOptions::from_env() {
            core.try_enable_debug(options)?;
        }
        // No limit to set, and no observer: tracemalloc sees PyMem's blocks.
        Ok(Pool {
            core: new_core(core),
            parts: OnceBox::new(),
        })
    }

    /// A pool around `core`, holding the allocator objects it was given;
    /// `OutOfMemory` if they could not be stored.
    fn around(
        core: CorePool,
        pymalloc: Option<Py<PyMalloc>>,
        pyfree: Option<Py<PyFree>>,
    ) -> Result<Self, PoolError> {
        let parts = OnceBox::new();
        if pymalloc.is_some() || pyfree.is_some() {
            let made = try_box(PyParts {
                pymalloc,
                pyfree,
                refs: OnceLock::new(),
            })
            .map_err(|_| PoolError::OutOfMemory {
                bytes: std::mem::size_of::<PyParts>(),
            })?;
            let _ = parts.set(made);
        }
        Ok(Pool {
            core: new_core(core),
            parts,
        })
    }

    /// The pool's Python parts, made if need be.
    fn parts(&self) -> PyResult<&PyParts> {
        if let Some(parts) = self.parts.get() {
            return Ok(parts);
        }
        let made = try_box(PyParts::default()).map_err(|_| PyMemoryError::new_err(()))?;
        // Another thread may have set them first (free-threaded builds):
        // theirs are kept and ours dropped.
        let _ = self.parts.set(made);
        Ok(self.parts.get().expect("set just above"))
    }

    /// Runs `f` on the core pool; RuntimeError if the pool is unusable in
    /// this child of a `fork` (another thread was inside it at the fork), or
    /// if a call on it is in progress (its custom allocator called back).
    fn with_core<R>(&self, f: impl FnOnce(&mut CorePool) -> R) -> PyResult<R> {
        self.core
            .0
            .with(f)
            .map_err(|e| pool_exception(Operation::Free, e))
    }

    /// `SharedPool::with` for the hottest paths: only the lock-free path of
    /// GIL builds is inlined, the locked one (free-threaded builds) is a call.
    #[inline(always)]
    pub(crate) fn with_core_inline<R>(
        &self,
        f: impl FnOnce(&mut CorePool) -> R,
    ) -> Result<R, PoolError> {
        #[inline(never)]
        fn locked<R>(
            core: &SharedPool,
            f: impl FnOnce(&mut CorePool) -> R,
        ) -> Result<R, PoolError> {
            // A closure of its own: `with` is then a function apart from the
            // inlined one below, not one shared call LLVM would keep out of line.
            core.with(|pool| f(pool))
        }
        if self.core.0.is_locked() {
            locked(&self.core.0, f)
        } else {
            self.core.0.with(f)
        }
    }

    /// [`Pool::with_core`] for a core operation that can fail itself.
    fn run_core<T>(
        &self,
        op: Operation,
        f: impl FnOnce(&mut CorePool) -> Result<T, PoolError>,
    ) -> PyResult<T> {
        self.core.0.run(f).map_err(|e| pool_exception(op, e))
    }

    fn refs_list(&self, py: Python<'_>) -> PyResult<&Py<PyList>> {
        let refs = &self.parts()?.refs;
        if let Some(list) = refs.get() {
            return Ok(list);
        }
        // Making the list can start a garbage collection whose callbacks or
        // finalizers call back into this pool and make a list first (inside
        // `get_or_init` that would deadlock): the first list set is kept.
        let list = PyList::empty(py).unbind();
        let _ = refs.set(list);
        Ok(refs.get().expect("set just above"))
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
    /// `Pool(pymalloc=Default_Malloc, pyfree=Default_Free, *, arena=False, name=None, debug=None, limit=None)`.
    /// With `arena=True` blocks are bump-allocated and released together when
    /// the pool dies (the space of freed blocks is not reused before then).
    /// `name` labels the pool in `cymem_rs.report()`. `debug=True` turns on
    /// debug mode (guard bytes, poisoned freed blocks); `None` follows the
    /// environment variable `CYMEM_RS_DEBUG`. Both flags take the truth value
    /// of any object, as Python's own flags do. `limit` caps the bytes in
    /// live blocks (see the `limit` property).
    #[new]
    #[pyo3(
        signature = (pymalloc = None, pyfree = None, *, arena = None, name = None, debug = None, limit = None),
        text_signature = "(pymalloc=None, pyfree=None, *, arena=False, name=None, debug=None, limit=None)"
    )]
    pub(crate) fn new(
        py: Python<'_>,
        pymalloc: Option<Py<PyMalloc>>,
        pyfree: Option<Py<PyFree>>,
        arena: Option<&Bound<'_, PyAny>>,
        name: Option<&str>,
        debug: Option<&Bound<'_, PyAny>>,
        limit: Option<usize>,
    ) -> PyResult<Self> {
        // Truth values run Python code (`__bool__`): take them before anything else.
        let arena = arena.map_or(Ok(false), Bound::is_truthy)?;
        let debug = debug.map(Bound::is_truthy).transpose()?;
        if arena && (pymalloc.is_some() || pyfree.is_some()) {
            return Err(error::<PyValueError>(format_args!(
                "an arena pool takes its chunks from the system allocator; \
                 it cannot use pymalloc/pyfree"
            )));
        }
        let (allocator, pymem) = match (&pymalloc, &pyfree) {
            (None, None) => (default_allocator(), true),
            (m, f) => {
                let m = m.as_ref().map_or_else(|| default_malloc(py), Ok)?;
                let f = f.as_ref().map_or_else(|| default_free(py), Ok)?;
                (allocator_for(m.get(), f.get()), is_pymem(m.get(), f.get()))
            }
        };
        let name = name.map(owned_name).transpose()?;
        let site = caller_site(py);
        let alloc_error = |err| pool_exception(Operation::Alloc, err);
        let mut core = if arena {
            let origin = site.into_origin();
            CorePool::try_arena_labelled(Label { name, origin })
        } else {
            heap_core(allocator, name, site)
        }
        .map_err(alloc_error)?;
        if let Some(options) = debug_options(debug) {
            core.try_enable_debug(options).map_err(alloc_error)?;
        }
        core.set_limit(limit).map_err(alloc_error)?;
        // tracemalloc sees PyMem's blocks already.
        core.set_observer(tracemalloc::observer(arena || !pymem))
            .map_err(alloc_error)?;
        Pool::around(core, pymalloc, pyfree).map_err(alloc_error)
    }

    /// Bytes in live blocks.
    /// Bytes in live blocks.
    #[getter]
    fn size<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyInt>> {
        py_int(py, self.with_core(|pool| pool.size())?)
    }

    /// Whether blocks are bump-allocated (`Pool(arena=True)`).
    #[getter]
    fn arena(&self) -> PyResult<bool> {
        self.with_core(|pool| pool.is_arena())
    }

    /// Number of live blocks.
    #[getter]
    fn block_count<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyInt>> {
        py_int(py, self.with_core(|pool| pool.block_count())?)
    }

    /// A snapshot of the live blocks: {address: size}.
    #[getter]
    fn addresses<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let blocks = self.run_core(Operation::Alloc, |pool| {
            let mut blocks = Vec::new();
            blocks
                .try_reserve_exact(pool.block_count())
                .map_err(|_| PoolError::OutOfMemory {
                    bytes: pool.block_count() * std::mem::size_of::<(usize, usize)>(),
                })?;
            blocks.extend(pool.blocks());
            Ok(blocks)
        })?;
        let dict = PyDict::new(py);
        for (addr, size) in blocks {
            dict.set_item(addr, size)?;
        }
        Ok(dict)
    }

    /// Objects kept alive by this pool (see `own_pyref`).
    #[getter]
    fn refs(&self, py: Python<'_>) -> PyResult<Py<PyList>> {
        Ok(self.refs_list(py)?.clone_ref(py))
    }

    #[getter]
    fn pymalloc(&self, py: Python<'_>) -> PyResult<Py<PyMalloc>> {
        match self.parts.get().and_then(|parts| parts.pymalloc.as_ref()) {
            Some(m) => Ok(m.clone_ref(py)),
            None => Ok(default_malloc(py)?.clone_ref(py)),
        }
    }

    #[getter]
    fn pyfree(&self, py: Python<'_>) -> PyResult<Py<PyFree>> {
        match self.parts.get().and_then(|parts| parts.pyfree.as_ref()) {
            Some(f) => Ok(f.clone_ref(py)),
            None => Ok(default_free(py)?.clone_ref(py)),
        }
    }

    /// Keeps `obj` alive as long as the pool.
    fn own_pyref(&self, py: Python<'_>, obj: Py<PyAny>) -> PyResult<()> {
        self.refs_list(py)?.bind(py).append(obj)
    }

    /// Allocates a zeroed block of `number * elem_size` bytes; returns its address.
    fn alloc<'py>(
        &self,
        py: Python<'py>,
        number: usize,
        elem_size: usize,
    ) -> PyResult<Bound<'py, PyInt>> {
        if number == 0 || elem_size == 0 {
            warn_zero_alloc(py)?;
        }
        let block = self.run_core(Operation::Alloc, |pool| pool.alloc(number, elem_size))?;
        py_int(py, block.as_ptr() as usize).inspect_err(|_| {
            // The caller never learns the address: the block goes back now.
            let _ = self.run_core(Operation::Free, |pool| pool.free(block.as_ptr()));
        })
    }

    /// Releases the block at `addr` (KeyError if the pool does not hold it).
    fn free(&self, addr: usize) -> PyResult<()> {
        self.run_core(Operation::Free, |pool| pool.free(addr as *mut c_void))
            .map(drop)
    }

    /// Grows the block at `addr` to `new_size` bytes; returns its new address.
    /// (Should the int of the new address not fit in memory, MemoryError is
    /// raised with the block moved; it is listed in `addresses`.)
    fn realloc<'py>(
        &self,
        py: Python<'py>,
        addr: usize,
        new_size: usize,
    ) -> PyResult<Bound<'py, PyInt>> {
        let block = self.run_core(Operation::Realloc, |pool| {
            pool.realloc(addr as *mut c_void, new_size)
        })?;
        py_int(py, block.as_ptr() as usize)
    }

    /// A zero-copy view of the live block at `addr` through the buffer
    /// protocol (`memoryview`, `numpy.asarray`), with a struct-module item
    /// `format` and a `shape` (default: as many items as fit). The view keeps
    /// the pool alive and pins the block: `free` / `realloc` of it raise
    /// BufferError until the view (and every buffer taken from it) is gone.
    #[pyo3(signature = (addr, format = "B", shape = None, readonly = false))]
    fn view(
        slf: &Bound<'_, Self>,
        addr: usize,
        format: &str,
        shape: Option<&Bound<'_, PyAny>>,
        readonly: bool,
    ) -> PyResult<BlockView> {
        BlockView::of_pool(slf, addr, format, shape, readonly)
    }

    /// The pool's counters now: a `PoolStats` named tuple (size, peak_size,
    /// block_count, total_allocs, total_frees, total_reallocs).
    #[getter]
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let stats = self.with_core(|pool| pool.stats())?;
        stats_object(py, &stats)
    }

    /// The most bytes live at once since the pool was made or `reset_peak()`.
    #[getter]
    fn peak_size<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyInt>> {
        py_int(py, self.with_core(|pool| pool.stats().peak_size)?)
    }

    /// Starts a new high-water mark from the bytes live now.
    fn reset_peak(&self) -> PyResult<()> {
        self.with_core(|pool| pool.reset_peak())
    }

    /// The pool's name in `cymem_rs.report()` (None if unnamed); settable.
    #[getter]
    fn name<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyString>>> {
        self.with_core(|pool| pool.with_name(|name| name.map(|n| py_string(py, n)).transpose()))?
    }

    #[setter]
    fn set_name(&self, name: Option<&str>) -> PyResult<()> {
        let name = name.map(owned_name).transpose()?;
        self.with_core(|pool| pool.set_name(name))?
            .map_err(|err| pool_exception(Operation::Alloc, err))
    }

    fn __repr__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyString>> {
        let (size, blocks, arena) =
            self.with_core(|pool| (pool.size(), pool.block_count(), pool.is_arena()))?;
        let kind = if arena { "arena " } else { "" };
        py_format(
            py,
            format_args!("<cymem_rs.Pool {kind}size={size} blocks={blocks}>"),
        )
    }

    /// Cython looks up a vtable on extern types that declare cdef methods;
    /// the methods themselves are inline C in `cymem.pxd`, so the table is
    /// empty. The capsule is unnamed, as Cython expects.
    #[classattr]
    fn __pyx_vtable__(py: Python<'_>) -> PyResult<Py<PyAny>> {
        static EMPTY_VTABLE: usize = 0;
        let pointer = (&raw const EMPTY_VTABLE).cast_mut().cast::<c_void>();
        // SAFETY: the GIL is held (`py`); the pointer is non-NULL and to a
        // static that outlives the capsule; no name, no destructor.
        let capsule = unsafe { pyo3::ffi::PyCapsule_New(pointer, std::ptr::null(), None) };
        // SAFETY: PyCapsule_New returns a new reference, or NULL with an
        // exception set, which is what `from_owned_ptr_or_err` takes.
        unsafe { Bound::from_owned_ptr_or_err(py, capsule) }.map(Bound::unbind)
    }

    /// Whether the pool is in debug mode (`Pool(debug=True)` or `CYMEM_RS_DEBUG=1`).
    #[getter]
    fn debug(&self) -> PyResult<bool> {
        self.with_core(|pool| pool.is_debug())
    }

    /// Debug mode: checks every live block's guard bytes and every freed
    /// block still in quarantine; raises MemoryCorruptionError for the first
    /// damage found. Does nothing for a pool not in debug mode.
    fn check(&self) -> PyResult<()> {
        self.run_core(Operation::Check, |pool| pool.check())
    }

    /// Frees every block and runs every cleanup (newest first, before the
    /// blocks go), then forgets the cleanups; the pool stays usable. `size`
    /// and `block_count` drop to 0, the totals go on, the peak stays until
    /// `reset_peak()`. BufferError, changing nothing, while a block is viewed.
    pub(crate) fn clear(&self) -> PyResult<()> {
        self.core
            .0
            .clear()
            .map_err(|e| pool_exception(Operation::Lifetime, e))
    }

    /// Opens a scope and returns its mark: `release_to(mark)` frees every
    /// block allocated and runs every cleanup added from now on. Scopes nest.
    /// (`with pool.scope():` does both.)
    pub(crate) fn mark(&self) -> PyResult<usize> {
        self.run_core(Operation::Lifetime, |pool| pool.mark())
            .map(Mark::to_raw)
    }

    /// Closes the scope of `mark` and the ones opened after it: runs their
    /// cleanups, then frees their blocks. Blocks allocated before the mark
    /// stay, even if `realloc` moved them since. ValueError for a mark that
    /// is not open in this pool; BufferError, changing nothing, if a block
    /// allocated since the mark is viewed.
    pub(crate) fn release_to(&self, mark: usize) -> PyResult<()> {
        self.core
            .0
            .release_to(Mark::from_raw(mark))
            .map_err(|e| pool_exception(Operation::Lifetime, e))
    }

    /// A context manager: `with pool.scope():` frees, on every way out, the
    /// blocks allocated inside (see `Scope`).
    fn scope(slf: &Bound<'_, Self>) -> Scope {
        Scope::new(slf.clone().unbind())
    }

    /// Calls `callback()` once: when the pool is cleared or dies, or (added
    /// inside a scope) when the scope is released; newest first, before the
    /// blocks are freed. An exception goes to `sys.unraisablehook` and the
    /// other cleanups still run; a cleanup that changes its pool gets
    /// RuntimeError. The pool holds a reference to `callback` until then.
    fn add_cleanup(&self, callback: Bound<'_, PyAny>) -> PyResult<()> {
        if !callback.is_callable() {
            return Err(PyTypeError::new_err("add_cleanup needs a callable"));
        }
        let data = python_cleanup_data(callback.unbind())
            .map_err(|e| pool_exception(Operation::Lifetime, e))?;
        // SAFETY: `run_python_cleanup` takes the data `python_cleanup_data`
        // made, for one call; it attaches to the interpreter itself and does
        // not unwind (errors go to `sys.unraisablehook`).
        let added = self
            .core
            .0
            .run(|pool| unsafe { pool.add_cleanup(run_python_cleanup, data) });
        added.map_err(|e| {
            // SAFETY: the pool refused the entry, so the box made by
            // `python_cleanup_data` above is still ours, released here once.
            drop(unsafe { Box::from_raw(data.cast::<Py<PyAny>>()) });
            pool_exception(Operation::Lifetime, e)
        })
    }

    /// The most bytes the live blocks may hold (None: no limit); settable.
    /// An alloc or realloc that would pass it raises MemoryError naming the
    /// limit and changes nothing. `None` or 0 removes it.
    #[getter]
    fn limit(&self) -> PyResult<Option<usize>> {
        self.with_core(|pool| pool.limit())
    }

    #[setter(limit)]
    fn set_limit_property(&self, limit: Option<usize>) -> PyResult<()> {
        self.run_core(Operation::Lifetime, |pool| pool.set_limit(limit))
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Some(parts) = self.parts.get() {
            if let Some(refs) = parts.refs.get() {
                visit.call(refs)?;
            }
            if let Some(m) = &parts.pymalloc {
                visit.call(m)?;
            }
            if let Some(f) = &parts.pyfree {
                visit.call(f)?;
            }
        }
        // The callables of Python cleanups: a cleanup that refers back to
        // its pool (a bound method of the pool's owner) is a cycle the
        // collector must see. (Skipped while a release runs them, or in a
        // child of `fork` that cannot use the pool.)
        let visited = self.core.0.with(|pool| {
            pool.cleanups()
                .filter_map(|(func, data)| python_cleanup(func, data))
                .try_for_each(|callable| visit.call(callable))
        });
        visited.unwrap_or(Ok(()))
    }

    /// The collector found the pool in unreachable garbage. Its cleanups
    /// normally ran already, in [`finalize_pool`], before anything of the
    /// cycle was cleared; this runs any left (a pool its own cleanup
    /// resurrected is not finalized twice), which drops their references.
    fn __clear__(&self) {
        self.core.0.run_cleanups();
    }
}

/// Makes [`finalize_pool`] the `tp_finalize` of the Pool type (pyo3 has no
/// `__del__`). The collector calls every unreachable object's finalizer
/// before it clears any of them (PEP 442), so a Python cleanup that uses its
/// pool's owner still finds it whole; run from `tp_clear` or `Drop` instead,
/// it could meet a function whose globals and closure were already cleared.
pub(crate) fn install_finalizer(py: Python<'_>) {
    let pool_type = py.get_type::<Pool>();
    // SAFETY: the type object is alive (`pool_type` holds it) and this runs
    // once, at module initialisation, before any Pool exists, holding the
    // GIL: nothing reads the slot while it is written. CPython 3.8+ calls
    // `tp_finalize` without a type flag.
    unsafe { (*pool_type.as_type_ptr()).tp_finalize = Some(finalize_pool) };
}

/// A dying Pool's `tp_finalize`: runs its cleanups while every object they
/// may use is intact. Keeps any exception already set, as CPython's own
/// finalizers do.
unsafe extern "C" fn finalize_pool(object: *mut pyo3::ffi::PyObject) {
    // While the interpreter shuts down pyo3 refuses to attach from a bare C
    // callback: the cleanups then run when the pool is deallocated, as they
    // would without a finalizer.
    // SAFETY: reads the runtime's state; the collector calls this holding
    // the GIL.
    if unsafe { pyo3::ffi::Py_IsInitialized() } == 0 {
        return;
    }
    Python::attach(|py| {
        let pending = PyErr::take(py);
        // SAFETY: CPython calls `tp_finalize` with a live object of a type
        // that has this slot: a Pool or a subclass of it.
        let object = unsafe { Bound::from_borrowed_ptr(py, object) };
        if let Ok(pool) = object.cast::<Pool>() {
            pool.get().core.0.run_cleanups();
        }
        if let Some(pending) = pending {
            pending.restore(py);
        }
    });
}

/// A pool name given from Python, copied; MemoryError if it cannot be.
fn owned_name(name: &str) -> PyResult<String> {
    try_string(name).map_err(|_| {
        pool_exception(
            Operation::Alloc,
            PoolError::OutOfMemory { bytes: name.len() },
        )
    })
}

/// Debug mode as asked (`None`: as `CYMEM_RS_DEBUG` says).
fn debug_options(debug: Option<bool>) -> Option<DebugOptions> {
    match debug {
        Some(true) => Some(DebugOptions::default()),
        Some(false) => None,
        None => DebugOptions::from_env(),
    }
}

impl Drop for Pool {
    /// A debug pool checks its blocks as it releases them. Deallocation cannot
    /// raise, so damage is reported as an unraisable MemoryCorruptionError
    /// (`sys.unraisablehook`; printed to stderr by default).
    fn drop(&mut self) {
        // Most pools die with no cleanup to run and not in debug mode: one
        // look tells. A pool unusable after a `fork` is left alone (and leaked).
        let Ok((cleanups, debug)) =
            self.with_core_inline(|pool| (pool.cleanups().next().is_some(), pool.is_debug()))
        else {
            return;
        };
        if cleanups {
            // Outside the pool's lock, while the blocks are still live.
            self.core.0.run_cleanups();
        }
        if !debug {
            return;
        }
        if let Err(err) = self.core.0.run(|pool| pool.free_all_checked()) {
            Python::attach(|py| {
                // The last reference may be dropped by C code with an
                // exception pending (Cython's inline calls): keep it.
                let pending = PyErr::take(py);
                let context = py_string(py, "cymem_rs.Pool being deallocated").ok();
                pool_exception(Operation::Free, err)
                    .write_unraisable(py, context.as_ref().map(|c| c.as_any()));
                if let Some(pending) = pending {
                    pending.restore(py);
                }
            });
        }
    }
}
