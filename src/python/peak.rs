//! Python side of the process-wide peak: `peak()`, `reset_peak()` and the
//! `trace()` context manager. Results are plain dicts and ints built by
//! pyo3: no Python code runs inside these Rust frames.

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::registry::{self, PeakPool, Trace, TraceFigures};

fn pool_dict<'py>(py: Python<'py>, pool: &PeakPool) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    dict.set_item("name", pool.name.as_deref())?;
    dict.set_item("origin", pool.origin.as_str())?;
    dict.set_item("bytes", pool.bytes)?;
    dict.set_item("blocks", pool.blocks)?;
    dict.set_item("arena", pool.arena)?;
    dict.set_item("alive", pool.alive)?;
    Ok(dict)
}

/// The process-wide peak of bytes held by this module's pools (Python,
/// Cython and C pools of the extension), as a dict: `peak` (the most bytes
/// held at once since the start or `reset_peak()`), `current` (bytes held
/// now), `snapshot` (the total when `pools` were recorded, within a step of
/// the peak), `step` (the precision: figures are exact to within this many
/// bytes per thread) and `pools`, the pools that held bytes at the peak,
/// most bytes first, each a dict of `name`, `origin`, `bytes`, `blocks`,
/// `arena` and `alive` (dropped pools are listed too).
#[pyfunction]
pub(crate) fn peak(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    // The GIL stays held: nothing holding the registry lock waits for it.
    let report = registry::peak();
    let pools = report
        .pools
        .iter()
        .map(|p| pool_dict(py, p))
        .collect::<PyResult<Vec<_>>>()?;
    let dict = PyDict::new(py);
    dict.set_item("peak", report.peak)?;
    dict.set_item("current", report.current)?;
    dict.set_item("snapshot", report.snapshot)?;
    dict.set_item("step", report.step)?;
    dict.set_item("pools", PyList::new(py, pools)?)?;
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
/// final after it. Exact to within `peak()["step"]` bytes per thread.
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
        let trace = Trace::start().map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
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
    fn allocated(&self) -> u64 {
        self.figures().allocated
    }

    /// Bytes freed in pools (all threads) since the block started.
    #[getter]
    fn freed(&self) -> u64 {
        self.figures().freed
    }

    /// How far the bytes held by pools rose above their value at the start.
    #[getter]
    fn peak(&self) -> usize {
        self.figures().peak
    }

    fn __repr__(&self) -> String {
        let f = self.figures();
        format!(
            "PoolTrace(allocated={}, freed={}, peak={})",
            f.allocated, f.freed, f.peak
        )
    }
}

/// `with cymem_rs.trace() as t: ...`, then `t.allocated`, `t.freed`,
/// `t.peak` (see `PoolTrace`).
#[pyfunction]
pub(crate) fn trace() -> PoolTrace {
    PoolTrace::new()
}
