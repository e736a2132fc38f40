//! Python side of the process-wide peak: `peak()`, `reset_peak()` and the
//! `trace()` context manager. Results are plain dicts and ints built by
//! pyo3: no Python code runs inside these Rust frames.

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyList, PyString};

use super::errors::py_string;
use super::report::{out_of_memory, py_int};
use crate::fallible::try_format;
use crate::registry::{self, PeakPool, Trace, TraceFigures};

/// A new dict, or the MemoryError that prevented it (pyo3's `PyDict::new`
/// would panic).
fn new_dict(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    // SAFETY: the GIL is held (`py`).
    let raw = unsafe { pyo3::ffi::PyDict_New() };
    // SAFETY: a new reference, or NULL with an exception set, which is what
    // `from_owned_ptr_or_err` takes.
    Ok(unsafe { Bound::from_owned_ptr_or_err(py, raw) }?.cast_into::<PyDict>()?)
}

/// `dict[key] = value`, every object made fallibly.
fn set<'py>(
    dict: &Bound<'py, PyDict>,
    key: &str,
    value: PyResult<Bound<'py, PyAny>>,
) -> PyResult<()> {
    dict.set_item(py_string(dict.py(), key)?, value?)
}

fn pool_dict<'py>(py: Python<'py>, pool: &PeakPool) -> PyResult<Bound<'py, PyDict>> {
    let dict = new_dict(py)?;
    let name = match &pool.name {
        Some(name) => py_string(py, name).map(Bound::into_any),
        None => Ok(py.None().into_bound(py)),
    };
    let flag = |value: bool| Ok(PyBool::new(py, value).to_owned().into_any());
    set(&dict, "name", name)?;
    set(
        &dict,
        "origin",
        py_string(py, &pool.origin).map(Bound::into_any),
    )?;
    set(&dict, "bytes", py_int(py, pool.bytes as u64))?;
    set(&dict, "blocks", py_int(py, pool.blocks as u64))?;
    set(&dict, "arena", flag(pool.arena))?;
    set(&dict, "alive", flag(pool.alive))?;
    Ok(dict)
}

/// The process-wide peak of bytes held by this module's pools (Python,
/// Cython and C pools of the extension), as a dict: `peak` (the most bytes
/// held at once since the start or `reset_peak()`), `current` (bytes held
/// now), `snapshot` (the total when `pools` were recorded, within a step of
/// the peak), `step` (the precision: figures are exact to within this many
/// bytes, plus as many per thread using C pools) and `pools`, the pools that held bytes at the peak,
/// most bytes first, each a dict of `name`, `origin`, `bytes`, `blocks`,
/// `arena` and `alive` (dropped pools are listed too). Runs no Python code.
#[pyfunction]
pub(crate) fn peak(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let report = registry::try_peak().map_err(out_of_memory)?;
    // SAFETY: the GIL is held (`py`).
    let pools = unsafe { pyo3::ffi::PyList_New(0) };
    // SAFETY: a new reference, or NULL with an exception set.
    let pools = unsafe { Bound::from_owned_ptr_or_err(py, pools) }?.cast_into::<PyList>()?;
    for pool in &report.pools {
        pools.append(pool_dict(py, pool)?)?;
    }
    let dict = new_dict(py)?;
    set(&dict, "peak", py_int(py, report.peak as u64))?;
    set(&dict, "current", py_int(py, report.current as u64))?;
    set(&dict, "snapshot", py_int(py, report.snapshot as u64))?;
    set(&dict, "step", py_int(py, report.step as u64))?;
    set(&dict, "pools", Ok(pools.into_any()))?;
    Ok(dict)
}

/// Starts a new process-wide peak from the bytes held now (each pool's own
/// peak, `Pool.reset_peak()`, is not touched).
#[pyfunction]
pub(crate) fn reset_peak() {
    registry::reset_peak();
}

/// Pool memory of the whole process (every thread's pools) while a `with`
/// block runs: `allocated` and `freed` bytes, and `peak`, how far the bytes
/// held rose above their value at the start. Read live inside the block,
/// final after it. Exact to within `peak()["step"]` bytes (plus a step per
/// thread using C pools).
#[pyclass(module = "cymem_rs.cymem", name = "PoolTrace")]
pub(crate) struct PoolTrace {
    running: Option<Trace>,
    done: Option<TraceFigures>,
}

impl PoolTrace {
    fn figures(&self) -> TraceFigures {
        match (&self.running, self.done) {
            (Some(trace), _) => trace.figures(),
            (None, Some(done)) => done,
            (None, None) => TraceFigures {
                allocated: 0,
                freed: 0,
                peak: 0,
            },
        }
    }
}

#[pymethods]
impl PoolTrace {
    #[new]
    fn new() -> Self {
        PoolTrace {
            running: None,
            done: None,
        }
    }

    fn __enter__(mut slf: PyRefMut<'_, Self>) -> PyResult<PyRefMut<'_, Self>> {
        if slf.running.is_some() || slf.done.is_some() {
            return Err(PyRuntimeError::new_err("a PoolTrace can be entered once"));
        }
        let trace = Trace::start()
            .map_err(|_| PyRuntimeError::new_err("too many pool-memory traces at once"))?;
        slf.running = Some(trace);
        Ok(slf)
    }

    fn __exit__(
        &mut self,
        _type: &Bound<'_, PyAny>,
        _value: &Bound<'_, PyAny>,
        _traceback: &Bound<'_, PyAny>,
    ) -> bool {
        if let Some(trace) = self.running.take() {
            self.done = Some(trace.finish());
        }
        false
    }

    /// Bytes allocated in pools (all threads) since the block started.
    #[getter]
    fn allocated<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        py_int(py, self.figures().allocated)
    }

    /// Bytes freed in pools (all threads) since the block started.
    #[getter]
    fn freed<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        py_int(py, self.figures().freed)
    }

    /// How far the bytes held by pools rose above their value at the start.
    #[getter]
    fn peak<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        py_int(py, self.figures().peak as u64)
    }

    fn __repr__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyString>> {
        let f = self.figures();
        let text = try_format(format_args!(
            "PoolTrace(allocated={}, freed={}, peak={})",
            f.allocated, f.freed, f.peak
        ))
        .map_err(out_of_memory)?;
        py_string(py, &text)
    }
}

/// `with cymem_rs.trace() as t: ...`, then `t.allocated`, `t.freed`,
/// `t.peak` (see `PoolTrace`).
#[pyfunction]
pub(crate) fn trace() -> PoolTrace {
    PoolTrace::new()
}
