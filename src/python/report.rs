//! Python side of statistics and the live-pool report: where a Python `Pool`
//! was made (described once per creation site), the `PoolStats` and
//! `PoolInfo` named tuples, and `live_pools()` / `format_report()` (the
//! peak report's objects are in `peak.rs`).
//!
//! Nothing here runs Python code once the module is imported: the tuples are
//! filled through the C API, and origins are plain text by report time. A
//! thread that runs Python code inside a Rust frame can be ended there by
//! interpreter exit (CPython stops daemon threads that take the GIL back with
//! `pthread_exit`), and a report from a C thread must not wait for the GIL.

use std::collections::HashMap;
use std::ffi::c_int;
use std::ptr;
use std::sync::atomic::{
    AtomicBool, AtomicPtr, Ordering::Acquire, Ordering::Relaxed, Ordering::Release,
};
use std::sync::{Mutex, TryLockError};

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyList, PyString, PyType};
use rustc_hash::FxBuildHasher;

use super::errors::{exception, py_string, Operation};
use crate::fallible::{try_box_or_back, try_format, try_string, OutOfMemory};
use crate::ffi::CYMEM_ERR_OUT_OF_MEMORY;
use crate::registry::PoolStats;
use crate::registry::{self, DeferredOrigin, Origin, PoolInfo};

/// A Python creation site: its code object and where in it, with the text
/// reports show (`file:line in function`), made once when the site is first
/// seen.
struct PyOrigin {
    code: Py<PyAny>,
    /// 3.11+: the instruction's byte offset; older Pythons: the line.
    at: c_int,
    /// What reports show, shared by every pool made here (deferred ones
    /// through their stand-in record).
    site: DeferredOrigin,
}

impl PyOrigin {
    /// Kept for the life of the process (see `intern`), as is its text.
    fn new(code: Bound<'_, PyAny>, at: c_int) -> Result<Self, OutOfMemory> {
        let text: &'static str = Box::leak(describe(&code, at)?);
        Ok(PyOrigin {
            site: DeferredOrigin::new(Origin::Static(text)),
            code: code.unbind(),
            at,
        })
    }
}

/// Where a Python pool is being made.
pub(crate) enum CallerSite {
    /// A creation site kept for the life of the process.
    Interned(&'static DeferredOrigin),
    /// A site that could not be interned (out of memory), described.
    Described(Origin),
}

impl CallerSite {
    pub(crate) fn into_origin(self) -> Origin {
        match self {
            // Interned sites hold static text: copying it allocates nothing.
            CallerSite::Interned(site) => site.origin().clone(),
            CallerSite::Described(origin) => origin,
        }
    }
}

/// The site of pools made where no Python frame is known, or with origin
/// tracking off.
static SOMEWHERE_IN_PYTHON: DeferredOrigin = DeferredOrigin::new(Origin::Static("Python"));

/// `file:line in function` for an instruction of a code object (`Python` if
/// it cannot be read), or `OutOfMemory`. C-level attribute reads only (a
/// code object's fields are plain members), and the text is copied once.
fn describe(code: &Bound<'_, PyAny>, at: c_int) -> Result<Box<str>, OutOfMemory> {
    let text = match parts(code, at) {
        Ok((file, line, function)) => match (file.to_str(), function.to_str()) {
            (Ok(file), Ok(function)) => try_format(format_args!("{file}:{line} in {function}"))?,
            _ => try_string("Python")?,
        },
        Err(_) => try_string("Python")?,
    };
    // Exactly sized: boxing it does not reallocate.
    Ok(text.into_boxed_str())
}

/// The code's file name, the line, and the function name.
fn parts<'py>(
    code: &Bound<'py, PyAny>,
    at: c_int,
) -> PyResult<(Bound<'py, PyString>, c_int, Bound<'py, PyString>)> {
    let py = code.py();
    let file = code
        .getattr(intern!(py, "co_filename"))?
        .cast_into::<PyString>()?;
    let function = code
        .getattr(intern!(py, "co_name"))?
        .cast_into::<PyString>()?;
    #[cfg(Py_3_11)]
    // SAFETY: `code` is a live code object (we hold a reference) and the GIL
    // is held; `at` is an offset PyFrame_GetLasti gave for it.
    let line = unsafe { pyo3::ffi::PyCode_Addr2Line(code.as_ptr().cast(), at) };
    #[cfg(not(Py_3_11))]
    let line = at;
    Ok((file, line, function))
}

/// The origin made last: pools are often made in a loop or by one factory
/// line, and reusing it saves work per `Pool()`. Process-wide, not per
/// thread: interned origins are never freed, so whatever pointer a thread
/// reads is a valid origin, used only if its site matches; and reading it
/// costs no thread-local lookup (a call into the dynamic loader, from an
/// extension module).
static LAST_ORIGIN: AtomicPtr<PyOrigin> = AtomicPtr::new(ptr::null_mut());

/// At most this many creation sites are interned (kept for the life of the
/// process, with their code objects): enough for every `Pool()` line of a
/// program; beyond it (code generated at run time), each pool's origin is
/// described when the pool is made.
const MAX_INTERNED: usize = 4096;

/// Every interned creation site, by (code object, offset): each site is
/// interned once even when several alternate, and the map keeps them
/// reachable (leak checkers see them as held, not lost). Only ever
/// `try_lock`ed: a site not interned is only slower, so nobody waits here,
/// and a child of `fork` never inherits a lock it would wait for.
static INTERNED: Mutex<Option<InternedSites>> = Mutex::new(None);

/// (code object address, offset) -> its interned origin.
type InternedSites = HashMap<(usize, c_int), &'static PyOrigin, FxBuildHasher>;

/// The interned origin of a site not seen on this thread just before, or
/// `None` when the table is full or busy (on another thread) or there is no
/// memory to add the site.
fn intern(code: &Bound<'_, PyAny>, at: c_int) -> Option<&'static PyOrigin> {
    let key = (code.as_ptr() as usize, at);
    let mut interned = match INTERNED.try_lock() {
        Ok(guard) => guard,
        Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
        Err(TryLockError::WouldBlock) => return None,
    };
    let map = interned.get_or_insert_with(HashMap::default);
    if let Some(&origin) = map.get(&key) {
        return Some(origin);
    }
    if map.len() >= MAX_INTERNED || map.try_reserve(1).is_err() {
        return None;
    }
    // Interned origins hold their code object, so its address (the key) is
    // never reused by another code object.
    let origin = try_box_or_back(PyOrigin::new(code.clone(), at).ok()?).ok()?;
    let origin: &'static PyOrigin = Box::leak(origin);
    map.insert(key, origin);
    Some(origin)
}

/// Whether `Pool()` records where it was called (see `track_origins`).
static TRACK_ORIGINS: AtomicBool = AtomicBool::new(true);

/// `track_origins(enabled)`: whether pools made from now on remember the
/// Python line that made them (on by default; off saves a little time per
/// `Pool()`, and reports then show "Python"). Returns the previous setting.
#[pyfunction]
pub(crate) fn track_origins(enabled: bool) -> bool {
    TRACK_ORIGINS.swap(enabled, Relaxed)
}

/// Where the running Python code is (the innermost Python frame; Cython
/// functions have none, so for them it is their nearest Python caller).
pub(crate) fn caller_site(py: Python<'_>) -> CallerSite {
    if !TRACK_ORIGINS.load(Relaxed) {
        return CallerSite::Interned(&SOMEWHERE_IN_PYTHON);
    }
    // SAFETY: the GIL is held; the frame is borrowed and used right away.
    let frame = unsafe { pyo3::ffi::PyEval_GetFrame() };
    if frame.is_null() {
        return CallerSite::Interned(&SOMEWHERE_IN_PYTHON);
    }
    // SAFETY: `frame` is a live frame; PyFrame_GetCode returns a new reference.
    let code = unsafe { pyo3::ffi::PyFrame_GetCode(frame) };
    #[cfg(Py_3_11)]
    // SAFETY: `frame` is a live frame.
    let at = unsafe { pyo3::ffi::PyFrame_GetLasti(frame) };
    #[cfg(not(Py_3_11))]
    // SAFETY: `frame` is a live frame.
    let at = unsafe { pyo3::ffi::PyFrame_GetLineNumber(frame) };
    // SAFETY: `code` is a new, non-NULL reference (every frame has code).
    let code = unsafe { Bound::from_owned_ptr(py, code.cast()) };
    // SAFETY: non-NULL values are interned origins, which live as long as
    // the process and are never written after interning.
    // (Acquire: the origin's fields were written before it was stored.)
    let last = unsafe { LAST_ORIGIN.load(Acquire).as_ref() };
    // Same code object (an interned origin holds it, so its address is not
    // reused) and same place.
    if let Some(origin) = last.filter(|o| o.at == at && o.code.as_ptr() == code.as_ptr()) {
        return CallerSite::Interned(&origin.site);
    }
    match intern(&code, at) {
        Some(interned) => {
            LAST_ORIGIN.store(ptr::from_ref(interned).cast_mut(), Release);
            CallerSite::Interned(&interned.site)
        }
        // Out of memory, the pool's origin stays unknown.
        None => CallerSite::Described(
            describe(&code, at).map_or(Origin::Static("Python"), Origin::Text),
        ),
    }
}

fn named_tuple<'py>(
    py: Python<'py>,
    cell: &'static PyOnceLock<Py<PyType>>,
    name: &str,
    fields: &[&str],
) -> PyResult<&'py Bound<'py, PyType>> {
    // Runs Python code (collections.namedtuple) once, at module import.
    cell.get_or_try_init(py, || {
        let make = py.import("collections")?.getattr("namedtuple")?;
        let kwargs = PyDict::new(py);
        kwargs.set_item("module", "cymem_rs.cymem")?;
        make.call((name, fields.to_vec()), Some(&kwargs))?
            .cast_into::<PyType>()
            .map(Bound::unbind)
            .map_err(Into::into)
    })
    .map(|t| t.bind(py))
}

static POOL_STATS: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static POOL_INFO: PyOnceLock<Py<PyType>> = PyOnceLock::new();

fn stats_fields() -> impl Iterator<Item = &'static str> {
    PoolStats::FIELDS.iter().map(|(name, _)| *name)
}

/// `PoolStats(size, peak_size, block_count, total_allocs, total_frees, total_reallocs)`.
pub(crate) fn pool_stats_type(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    // Made at import: later calls allocate nothing.
    if let Some(made) = POOL_STATS.get(py) {
        return Ok(made.bind(py));
    }
    let fields: Vec<&str> = stats_fields().collect();
    named_tuple(py, &POOL_STATS, "PoolStats", &fields)
}

/// `PoolInfo(name, size, ..., total_reallocs, arena, origin, limit)`.
pub(crate) fn pool_info_type(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    if let Some(made) = POOL_INFO.get(py) {
        return Ok(made.bind(py));
    }
    let fields: Vec<&str> = std::iter::once("name")
        .chain(stats_fields())
        .chain(["arena", "origin", "limit"])
        .collect();
    named_tuple(py, &POOL_INFO, "PoolInfo", &fields)
}

/// An instance of the named tuple `kind` holding the `len` `values`, made
/// the way `tuple.__new__` makes one of a subclass, without running the
/// class's Python-level `__new__`.
fn fill<'py>(
    kind: &Bound<'py, PyType>,
    len: usize,
    values: impl Iterator<Item = PyResult<Bound<'py, PyAny>>>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = kind.py();
    let len = len as pyo3::ffi::Py_ssize_t;
    // SAFETY: `kind` is a live type object (a namedtuple class, a subclass of
    // tuple with the default allocator) and the GIL is held.
    let raw = unsafe { pyo3::ffi::PyType_GenericAlloc(kind.as_type_ptr(), len) };
    // SAFETY: `raw` is a new reference or NULL with an exception set, as
    // PyType_GenericAlloc returns, and the GIL is held.
    let tuple = unsafe { Bound::from_owned_ptr_or_err(py, raw) }?;
    for (i, value) in values.take(len as usize).enumerate() {
        let value = value?;
        // SAFETY: `tuple` is a new tuple-subclass object with `len` empty
        // slots, referenced only here (PyTuple_SetItem requires that), and
        // `i < len`; SetItem takes over the reference `into_ptr` hands it.
        if unsafe { pyo3::ffi::PyTuple_SetItem(tuple.as_ptr(), i as _, value.into_ptr()) } < 0 {
            return Err(PyErr::fetch(py));
        }
    }
    Ok(tuple)
}

/// A Python int, or the MemoryError that prevented it (pyo3's conversion
/// would panic).
pub(crate) fn py_int(py: Python<'_>, value: u64) -> PyResult<Bound<'_, PyAny>> {
    // SAFETY: the GIL is held (`py`).
    let raw = unsafe { pyo3::ffi::PyLong_FromUnsignedLongLong(value) };
    // SAFETY: a new reference, or NULL with an exception set, which is what
    // `from_owned_ptr_or_err` takes.
    unsafe { Bound::from_owned_ptr_or_err(py, raw) }
}

fn stats_values<'py>(
    py: Python<'py>,
    s: &PoolStats,
) -> impl Iterator<Item = PyResult<Bound<'py, PyAny>>> + 'py {
    let s = *s;
    PoolStats::FIELDS
        .iter()
        .map(move |(_, value)| py_int(py, value(&s)))
}

pub(crate) fn stats_object<'py>(py: Python<'py>, s: &PoolStats) -> PyResult<Bound<'py, PyAny>> {
    let len = PoolStats::FIELDS.len();
    fill(pool_stats_type(py)?, len, stats_values(py, s))
}

fn info_object<'py>(py: Python<'py>, p: &PoolInfo) -> PyResult<Bound<'py, PyAny>> {
    let name = match &p.name {
        Some(name) => py_string(py, name).map(Bound::into_any),
        None => Ok(py.None().into_bound(py)),
    };
    let arena = pyo3::types::PyBool::new(py, p.arena).to_owned().into_any();
    let values = std::iter::once(name)
        .chain(stats_values(py, &p.stats))
        .chain([Ok(arena)])
        .chain(std::iter::once_with(|| {
            py_string(py, &p.origin).map(Bound::into_any)
        }))
        .chain(std::iter::once_with(|| match p.limit {
            Some(limit) => py_int(py, limit as u64),
            None => Ok(py.None().into_bound(py)),
        }));
    fill(pool_info_type(py)?, PoolStats::FIELDS.len() + 4, values)
}

/// The pools alive now (Python, Cython and C pools of this module), most
/// bytes first, as `PoolInfo` named tuples. Holds no reference to any pool.
/// An unnamed `Pool()` is listed from its first block (or name, or limit) on.
#[pyfunction]
pub(crate) fn live_pools(py: Python<'_>) -> PyResult<Bound<'_, PyList>> {
    let pools = registry::try_live_pools().map_err(out_of_memory)?;
    // SAFETY: the GIL is held (`py`). (pyo3's `PyList::empty` would panic
    // where this returns NULL.)
    let list = unsafe { pyo3::ffi::PyList_New(0) };
    // SAFETY: PyList_New returns a new reference, or NULL with an exception
    // set, which is what `from_owned_ptr_or_err` takes.
    let list = unsafe { Bound::from_owned_ptr_or_err(py, list) }?.cast_into::<PyList>()?;
    for pool in &pools {
        list.append(info_object(py, pool)?)?;
    }
    Ok(list)
}

/// The live-pool report as an aligned text table (the same text as the C
/// function `cymem_report`): bytes, peak, blocks, allocs, frees, reallocs,
/// mode, name, origin; most bytes first; then a total line. With
/// `peak=True`, the peak report instead (as `cymem_peak_report`).
#[pyfunction]
#[pyo3(signature = (*, peak = false))]
pub(crate) fn format_report(py: Python<'_>, peak: bool) -> PyResult<Bound<'_, PyString>> {
    let text = if peak {
        registry::try_peak_report()
    } else {
        registry::try_report()
    };
    py_string(py, &text.map_err(out_of_memory)?)
}

/// MemoryError for a list or report that could not be built.
pub(crate) fn out_of_memory(_: OutOfMemory) -> PyErr {
    exception(
        Operation::Alloc,
        CYMEM_ERR_OUT_OF_MEMORY,
        "out of memory: the list of live pools could not be built",
    )
}
