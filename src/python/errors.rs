//! cymem's exceptions for the pool's errors: one mapping for Python calls and
//! for Cython calls through the C API.

use pyo3::exceptions::{
    PyBufferError, PyKeyError, PyMemoryError, PyRuntimeError, PyTypeError, PyValueError,
};
use pyo3::prelude::*;
use pyo3::types::PyType;

use crate::ffi::{CYMEM_ERR_CORRUPTED, CYMEM_ERR_FORKED};

pyo3::create_exception!(
    cymem_rs.cymem,
    MemoryCorruptionError,
    PyRuntimeError,
    "Debug mode found a block's memory damaged: written past its end, before \
     its start, or after it was freed. The message names the block's address, \
     size and allocation number."
);

use crate::error::PoolError;
use crate::ffi::{
    CymemStatus, CYMEM_ERR_BAD_ALLOCATOR, CYMEM_ERR_BLOCK_IN_USE, CYMEM_ERR_NOT_LARGER,
    CYMEM_ERR_NOT_PINNED, CYMEM_ERR_NULL_ARGUMENT, CYMEM_ERR_OUT_OF_MEMORY,
    CYMEM_ERR_SIZE_OVERFLOW, CYMEM_ERR_UNKNOWN_POINTER,
};

/// Which pool operation failed: cymem raises KeyError for an unknown block in
/// `free` but ValueError in `realloc`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Operation {
    Alloc,
    Free,
    Realloc,
    /// Debug mode's `check`.
    Check,
}

/// The Python exception type for a status code, as cymem raises it:
/// MemoryError for allocation failures (and size overflow, which C reports the
/// same way), KeyError for an unknown block in `free` but ValueError in
/// `realloc` or a realloc that does not grow. `None`: a status with no type
/// of its own (raised as RuntimeError naming the status).
pub(crate) fn exception_type(
    py: Python<'_>,
    op: Operation,
    status: CymemStatus,
) -> Option<Bound<'_, PyType>> {
    Some(match status {
        CYMEM_ERR_OUT_OF_MEMORY | CYMEM_ERR_SIZE_OVERFLOW => py.get_type::<PyMemoryError>(),
        CYMEM_ERR_UNKNOWN_POINTER if op == Operation::Realloc => py.get_type::<PyValueError>(),
        CYMEM_ERR_UNKNOWN_POINTER => py.get_type::<PyKeyError>(),
        CYMEM_ERR_NOT_LARGER => py.get_type::<PyValueError>(),
        CYMEM_ERR_NULL_ARGUMENT => py.get_type::<PyTypeError>(),
        CYMEM_ERR_BAD_ALLOCATOR => py.get_type::<PyRuntimeError>(),
        // Freeing or moving a block under a live view: the buffer protocol's
        // own error for an object whose buffers are still exported.
        CYMEM_ERR_BLOCK_IN_USE => py.get_type::<PyBufferError>(),
        CYMEM_ERR_NOT_PINNED => py.get_type::<PyValueError>(),
        CYMEM_ERR_CORRUPTED => py.get_type::<MemoryCorruptionError>(),
        // The message names the cause: a fork while another thread used the pool.
        CYMEM_ERR_FORKED => py.get_type::<PyRuntimeError>(),
        _ => return None,
    })
}

/// The Python exception for a status code and its message (see `exception_type`).
pub(crate) fn exception(op: Operation, status: CymemStatus, message: String) -> PyErr {
    Python::attach(|py| match exception_type(py, op, status) {
        Some(ty) => PyErr::from_type(ty, message),
        None => PyRuntimeError::new_err(format!("cymem_rs error {status}: {message}")),
    })
}

/// The Python exception for a pool error.
pub(crate) fn pool_exception(op: Operation, err: PoolError) -> PyErr {
    exception(op, err.into(), err.to_string())
}
