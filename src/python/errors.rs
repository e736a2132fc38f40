//! cymem's exceptions for the pool's errors: one mapping for Python calls and
//! for Cython calls through the C API.

use pyo3::exceptions::{
    PyBufferError, PyKeyError, PyMemoryError, PyRuntimeError, PyTypeError, PyValueError,
};
use pyo3::PyErr;

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
    CymemStatus, CYMEM_ERR_BAD_ALLOCATOR, CYMEM_ERR_BAD_MARK, CYMEM_ERR_BLOCK_IN_USE,
    CYMEM_ERR_LIMIT, CYMEM_ERR_NOT_LARGER, CYMEM_ERR_NOT_PINNED, CYMEM_ERR_NULL_ARGUMENT,
    CYMEM_ERR_OUT_OF_MEMORY, CYMEM_ERR_RELEASING, CYMEM_ERR_SIZE_OVERFLOW,
    CYMEM_ERR_UNKNOWN_POINTER,
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
    /// `clear`, `mark`, `release_to`, `add_cleanup`, and the limit.
    Lifetime,
}

/// The Python exception for a status code and its message, as cymem raises it:
/// MemoryError for allocation failures (and size overflow, which C reports the
/// same way), KeyError for an unknown block in `free`, ValueError for an
/// unknown block in `realloc` or a realloc that does not grow. A pool's limit
/// is MemoryError too; a stale or foreign mark ValueError; calling a pool
/// from its own cleanup RuntimeError.
pub(crate) fn exception(op: Operation, status: CymemStatus, message: String) -> PyErr {
    match status {
        CYMEM_ERR_OUT_OF_MEMORY | CYMEM_ERR_SIZE_OVERFLOW | CYMEM_ERR_LIMIT => {
            PyMemoryError::new_err(message)
        }
        CYMEM_ERR_UNKNOWN_POINTER if op == Operation::Realloc => PyValueError::new_err(message),
        CYMEM_ERR_UNKNOWN_POINTER => PyKeyError::new_err(message),
        CYMEM_ERR_NOT_LARGER => PyValueError::new_err(message),
        CYMEM_ERR_NULL_ARGUMENT => PyTypeError::new_err(message),
        CYMEM_ERR_BAD_ALLOCATOR => PyRuntimeError::new_err(message),
        // Freeing or moving a block under a live view: the buffer protocol's
        // own error for an object whose buffers are still exported.
        CYMEM_ERR_BLOCK_IN_USE => PyBufferError::new_err(message),
        CYMEM_ERR_NOT_PINNED => PyValueError::new_err(message),
        CYMEM_ERR_CORRUPTED => MemoryCorruptionError::new_err(message),
        CYMEM_ERR_BAD_MARK => PyValueError::new_err(message),
        CYMEM_ERR_RELEASING => PyRuntimeError::new_err(message),
        // The message names the cause: a fork while another thread used the pool.
        CYMEM_ERR_FORKED => PyRuntimeError::new_err(message),
        _ => PyRuntimeError::new_err(format!("cymem_rs error {status}: {message}")),
    }
}

/// The Python exception for a pool error.
pub(crate) fn pool_exception(op: Operation, err: PoolError) -> PyErr {
    exception(op, err.into(), err.to_string())
}
