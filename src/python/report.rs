//! Python side of statistics and the live-pool report: where a Python `Pool`
//! was made (described once per creation site), the `PoolStats` and
//! `PoolInfo` named tuples, and `live_pools()` / `format_report()`.
//!
//! Nothing here runs Python code once the module is imported: the tuples are
//! filled through the C API, and origins are plain text by report time. A
//! thread that runs Python code inside a Rust frame can be ended there by
//! interpreter exit (CPython stops daemon threads that take the GIL back with
//! `pthread_exit`), and a report from a C thread must not wait for the GIL.

use std::cell::Cell;
use std::collections::HashMap;
use std::ffi::c_int;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Mutex, TryLockError};

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyString, PyType};
use rustc_hash::FxBuildHasher;

use crate::registry::PoolStats;
use crate::registry::{self, Origin, PoolInfo};

/// A Python creation site: its code object and where in it, with the text
/// reports show (`file:line in function`), made once when the site is first
/// seen.
struct PyOrigin {
    code: Py<PyAny>,
    /// 3.11+: the instruction's byte offset; older Pythons: the line.
    at: c_int,
    text: Box<str>,
}

impl PyOrigin {
    fn new(code: Bound<'_, PyAny>, at: c_int) -> Self {
        let text = describe(&code, at);
        PyOrigin {
            code: code.unbind(),
            at,
            text: text.into_boxed_str(),
        }
    }
}

/// `file:line in function` for an instruction of a code object (`Python` if
/// it cannot be read). C-level attribute reads only (a code object's fields
/// are plain members).
fn describe(code: &Bound<'_, PyAny>, at: c_int) -> String {
    try_describe(code, at).unwrap_or_else(|_| "Python".to_owned())
}

fn try_describe(code: &Bound<'_, PyAny>, at: c_int) -> PyResult<String> {
    let file: String = code.getattr("co_filename")?.extract()?;
    let function: String = code.getattr("co_name")?.extract()?;
    #[cfg(Py_3_11)]
    // SAFETY: `code` is a live code object (we hold a reference) and the GIL
    // is held; `at` is an offset PyFrame_GetLasti gave for it.
    let line = unsafe { pyo3::ffi::PyCode_Addr2Line(code.as_ptr().cast(), at) };
    #[cfg(not(Py_3_11))]
    let line = at;
    Ok(format!("{file}:{line} in {function}"))
}

thread_local! {
    /// The origin this thread made last: pools are often made in a loop or
    /// by one factory line, and reusing it saves work per `Pool()`.
    static LAST_ORIGIN: Cell<Option<&'static PyOrigin>> = const { Cell::new(None) };
}

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
/// `None` when the table is full or busy (on another thread).
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
    if map.len() >= MAX_INTERNED {
        return None;
    }
    // Interned origins hold their code object, so its address (the key) is
    // never reused by another code object.
    let origin: &'static PyOrigin = Box::leak(Box::new(PyOrigin::new(code.clone(), at)));
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
pub(crate) fn caller_origin(py: Python<'_>) -> Origin {
    if !TRACK_ORIGINS.load(Relaxed) {
        return Origin::Static("Python");
    }
    // SAFETY: the GIL is held; the frame is borrowed and used right away.
    let frame = unsafe { pyo3::ffi::PyEval_GetFrame() };
    if frame.is_null() {
        return Origin::Static("Python");
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
    let last = LAST_ORIGIN.try_with(Cell::get).ok().flatten();
    // Same code object (an interned origin holds it, so its address is not
    // reused) and same place.
    if let Some(origin) = last.filter(|o| o.at == at && o.code.as_ptr() == code.as_ptr()) {
        return Origin::Static(&origin.text);
    }
    match intern(&code, at) {
        Some(interned) => {
            let _ = LAST_ORIGIN.try_with(|last| last.set(Some(interned)));
            Origin::Static(&interned.text)
        }
        None => Origin::Text(describe(&code, at).into()),
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
    let fields: Vec<&str> = stats_fields().collect();
    named_tuple(py, &POOL_STATS, "PoolStats", &fields)
}

/// `PoolInfo(name, size, ..., total_reallocs, arena, origin)`.
pub(crate) fn pool_info_type(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    let fields: Vec<&str> = std::iter::once("name")
        .chain(stats_fields())
        .chain(["arena", "origin"])
        .collect();
    named_tuple(py, &POOL_INFO, "PoolInfo", &fields)
}

/// An instance of the named tuple `kind` holding `values`, made the way
/// `tuple.__new__` makes one of a subclass, without running the class's
/// Python-level `__new__`.
fn fill<'py>(
    kind: &Bound<'py, PyType>,
    values: Vec<Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = kind.py();
    let len = values.len() as pyo3::ffi::Py_ssize_t;
    // SAFETY: `kind` is a live type object (a namedtuple class, a subclass of
    // tuple with the default allocator) and the GIL is held.
    let raw = unsafe { pyo3::ffi::PyType_GenericAlloc(kind.as_type_ptr(), len) };
    // SAFETY: `raw` is a new reference or NULL with an exception set, as
    // PyType_GenericAlloc returns, and the GIL is held.
    let tuple = unsafe { Bound::from_owned_ptr_or_err(py, raw) }?;
    for (i, value) in values.into_iter().enumerate() {
        // SAFETY: `tuple` is a new tuple-subclass object with `len` empty
        // slots, referenced only here (PyTuple_SetItem requires that), and
        // `i < len`; SetItem takes over the reference `into_ptr` hands it.
        if unsafe { pyo3::ffi::PyTuple_SetItem(tuple.as_ptr(), i as _, value.into_ptr()) } < 0 {
            return Err(PyErr::fetch(py));
        }
    }
    Ok(tuple)
}

fn stats_values<'py>(
    py: Python<'py>,
    s: &PoolStats,
) -> impl Iterator<Item = Bound<'py, PyAny>> + 'py {
    let s = *s;
    PoolStats::FIELDS.iter().map(move |(_, value)| {
        value(&s)
            .into_pyobject(py)
            .map_or_else(|e| match e {}, Bound::into_any)
    })
}

pub(crate) fn stats_object<'py>(py: Python<'py>, s: &PoolStats) -> PyResult<Bound<'py, PyAny>> {
    fill(pool_stats_type(py)?, stats_values(py, s).collect())
}

fn info_object<'py>(py: Python<'py>, p: &PoolInfo) -> PyResult<Bound<'py, PyAny>> {
    let name = match &p.name {
        Some(name) => PyString::new(py, name).into_any(),
        None => py.None().into_bound(py),
    };
    let values = std::iter::once(name)
        .chain(stats_values(py, &p.stats))
        .chain([
            pyo3::types::PyBool::new(py, p.arena).to_owned().into_any(),
            PyString::new(py, &p.origin).into_any(),
        ])
        .collect();
    fill(pool_info_type(py)?, values)
}

/// The pools alive now (Python, Cython and C pools of this module), most
/// bytes first, as `PoolInfo` named tuples. Holds no reference to any pool.
#[pyfunction]
pub(crate) fn live_pools(py: Python<'_>) -> PyResult<Vec<Bound<'_, PyAny>>> {
    let pools = registry::live_pools();
    pools.iter().map(|p| info_object(py, p)).collect()
}

/// The live-pool report as an aligned text table (the same text as the C
/// function `cymem_report`): bytes, peak, blocks, allocs, frees, reallocs,
/// mode, name, origin; most bytes first; then a total line. With
/// `peak=True`, the peak report instead (as `cymem_peak_report`).
#[pyfunction]
#[pyo3(signature = (*, peak = false))]
pub(crate) fn format_report(peak: bool) -> String {
    if peak {
        registry::peak_report()
    } else {
        registry::report()
    }
}
