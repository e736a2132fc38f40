//! Python side of statistics and the live-pool report: where a Python `Pool`
//! was made (captured cheaply, formatted at report time), the `PoolStats` and
//! `PoolInfo` named tuples, and `live_pools()` / `format_report()`.

use std::cell::Cell;
use std::collections::HashMap;
use std::ffi::c_int;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyType};
use rustc_hash::FxBuildHasher;

use crate::registry::PoolStats;
use crate::registry::{self, Origin, OriginSource, PoolInfo};

/// The Python code that made a pool: its code object and where in it, turned
/// into `file:line in function` only when a report asks.
struct PyOrigin {
    code: Py<PyAny>,
    /// 3.11+: the instruction's byte offset (the line is computed at report
    /// time: `PyFrame_GetLineNumber` walks the line table, too slow for
    /// `Pool()`). Older Pythons: the line itself.
    at: c_int,
}

impl OriginSource for PyOrigin {
    fn describe(&self) -> String {
        // SAFETY: a plain query, callable from any thread at any time.
        if unsafe { pyo3::ffi::Py_IsInitialized() } == 0 {
            return "Python".to_owned();
        }
        Python::attach(|py| self.format(py)).unwrap_or_else(|_| "Python".to_owned())
    }
}

impl PyOrigin {
    fn format(&self, py: Python<'_>) -> PyResult<String> {
        let code = self.code.bind(py);
        let file: String = code.getattr("co_filename")?.extract()?;
        let function: String = code.getattr("co_name")?.extract()?;
        #[cfg(Py_3_11)]
        // SAFETY: `code` is a live code object (we hold a reference) and the
        // GIL is held; `at` is an offset PyFrame_GetLasti gave for it.
        let line = unsafe { pyo3::ffi::PyCode_Addr2Line(code.as_ptr().cast(), self.at) };
        #[cfg(not(Py_3_11))]
        let line = self.at;
        Ok(format!("{file}:{line} in {function}"))
    }
}

thread_local! {
    /// The origin this thread made last: pools are often made in a loop or
    /// by one factory line, and reusing it saves work per `Pool()`.
    static LAST_ORIGIN: Cell<Option<&'static PyOrigin>> = const { Cell::new(None) };
}

/// At most this many creation sites are interned (kept for the life of the
/// process, with their code objects): enough for every `Pool()` line of a
/// program; beyond it (code generated at run time), origins are refcounted.
const MAX_INTERNED: usize = 4096;

/// Every interned creation site, by (code object, offset): each site is
/// interned once even when several alternate, and the map keeps them
/// reachable (leak checkers see them as held, not lost).
static INTERNED: Mutex<Option<InternedSites>> = Mutex::new(None);

/// (code object address, offset) -> its interned origin.
type InternedSites = HashMap<(usize, c_int), &'static PyOrigin, FxBuildHasher>;

/// The interned origin of a site not seen on this thread just before, or the
/// origin itself when the table is full.
fn intern(code: Bound<'_, PyAny>, at: c_int) -> Result<&'static PyOrigin, PyOrigin> {
    let key = (code.as_ptr() as usize, at);
    let mut interned = INTERNED.lock().unwrap_or_else(PoisonError::into_inner);
    let map = interned.get_or_insert_with(HashMap::default);
    if let Some(&origin) = map.get(&key) {
        return Ok(origin);
    }
    let origin = PyOrigin {
        code: code.unbind(),
        at,
    };
    if map.len() >= MAX_INTERNED {
        return Err(origin);
    }
    // Interned origins hold their code object, so its address (the key) is
    // never reused by another code object.
    let origin: &'static PyOrigin = Box::leak(Box::new(origin));
    map.insert(key, origin);
    Ok(origin)
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
        return Origin::Interned(origin);
    }
    match intern(code, at) {
        Ok(interned) => {
            let _ = LAST_ORIGIN.try_with(|last| last.set(Some(interned)));
            Origin::Interned(interned)
        }
        Err(origin) => Origin::Source(Arc::new(origin)),
    }
}

fn named_tuple<'py>(
    py: Python<'py>,
    cell: &'static PyOnceLock<Py<PyType>>,
    name: &str,
    fields: &[&str],
) -> PyResult<&'py Bound<'py, PyType>> {
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

const STATS_FIELDS: [&str; 6] = [
    "size",
    "peak_size",
    "block_count",
    "total_allocs",
    "total_frees",
    "total_reallocs",
];

/// `PoolStats(size, peak_size, block_count, total_allocs, total_frees, total_reallocs)`.
pub(crate) fn pool_stats_type(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    named_tuple(py, &POOL_STATS, "PoolStats", &STATS_FIELDS)
}

/// `PoolInfo(name, size, ..., total_reallocs, arena, origin)`.
pub(crate) fn pool_info_type(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    let mut fields = vec!["name"];
    fields.extend(STATS_FIELDS);
    fields.extend(["arena", "origin"]);
    named_tuple(py, &POOL_INFO, "PoolInfo", &fields)
}

fn stats_values(s: &PoolStats) -> (usize, usize, usize, u64, u64, u64) {
    (
        s.size,
        s.peak_size,
        s.block_count,
        s.total_allocs,
        s.total_frees,
        s.total_reallocs,
    )
}

pub(crate) fn stats_object<'py>(py: Python<'py>, s: &PoolStats) -> PyResult<Bound<'py, PyAny>> {
    pool_stats_type(py)?.call1(stats_values(s))
}

fn info_object<'py>(py: Python<'py>, p: &PoolInfo) -> PyResult<Bound<'py, PyAny>> {
    let s = &p.stats;
    let values = (
        p.name.as_deref(),
        s.size,
        s.peak_size,
        s.block_count,
        s.total_allocs,
        s.total_frees,
        s.total_reallocs,
        p.arena,
        p.origin.as_str(),
    );
    pool_info_type(py)?.call1(values)
}

/// The pools alive now (Python, Cython and C pools of this module), most
/// bytes first, as `PoolInfo` named tuples. Holds no reference to any pool.
#[pyfunction]
pub(crate) fn live_pools(py: Python<'_>) -> PyResult<Vec<Bound<'_, PyAny>>> {
    // The GIL stays held: nothing holding the registry lock waits for it.
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
