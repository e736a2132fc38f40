//! cymem's exceptions for the pool's errors: one mapping for Python calls and
//! for Cython calls through the C API.
//!
//! Raising never touches the Rust heap: messages are formatted into a buffer
//! on the stack and the exception is made through the C API, so when memory
//! runs out the caller gets a MemoryError (CPython keeps spare MemoryError
//! instances), never an abort.

use std::fmt::{self, Write as _};

use pyo3::exceptions::{
    PyBufferError, PyKeyError, PyMemoryError, PyRuntimeError, PyTypeError, PyValueError,
};
use pyo3::prelude::*;
use pyo3::types::{PyInt, PyString, PyType};
use pyo3::{ffi, PyErr, PyTypeInfo};

use crate::fallible::{try_format, FixedText};
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

/// Room for any message of the library (the longest, a view shape of 64
/// dimensions, is about 400 bytes); longer text is cut at a character boundary.
const MESSAGE_CAPACITY: usize = 512;

/// `message` formatted into `buf`, cut to fit.
fn format_in<'a>(buf: &'a mut [u8; MESSAGE_CAPACITY], message: fmt::Arguments<'_>) -> &'a str {
    let mut text = FixedText::new(buf);
    let _ = text.write_fmt(message);
    let len = text.len();
    // `FixedText` writes whole characters only.
    std::str::from_utf8(&buf[..len]).unwrap_or_default()
}

/// The exception `E(message)`, made without touching the Rust heap (unlike
/// `E::new_err`, which boxes its arguments): out of memory, a MemoryError.
pub(crate) fn error<E: PyTypeInfo>(message: fmt::Arguments<'_>) -> PyErr {
    let mut buf = [0u8; MESSAGE_CAPACITY];
    let text = format_in(&mut buf, message);
    Python::attach(|py| new_exception(py, E::type_object(py), text))
}

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

/// A Python `str` of `text`, or the error (MemoryError) that prevented it.
/// (pyo3's `PyString::new` panics when CPython runs out of memory.)
pub(crate) fn py_string<'py>(py: Python<'py>, text: &str) -> PyResult<Bound<'py, PyString>> {
    let len = text.len() as ffi::Py_ssize_t;
    // SAFETY: the GIL is held (`py`); the pointer and length describe
    // `text`'s UTF-8 bytes (a `str` is never longer than `isize::MAX`).
    let made = unsafe { ffi::PyUnicode_FromStringAndSize(text.as_ptr().cast(), len) };
    // SAFETY: PyUnicode_FromStringAndSize returns a new reference, or NULL
    // with an exception set, which is what `from_owned_ptr_or_err` takes.
    let made = unsafe { Bound::from_owned_ptr_or_err(py, made) }?;
    Ok(made.cast_into::<PyString>()?)
}

/// A Python `int` of `value`, or the error (MemoryError) that prevented it.
/// (pyo3's own conversion of a `usize` panics when CPython runs out of
/// memory, which reaches Python as PanicException.)
pub(crate) fn py_int(py: Python<'_>, value: usize) -> PyResult<Bound<'_, PyInt>> {
    // SAFETY: the GIL is held (`py`); PyLong_FromSize_t takes any value.
    let made = unsafe { ffi::PyLong_FromSize_t(value) };
    // SAFETY: PyLong_FromSize_t returns a new reference, or NULL with an
    // exception set, which is what `from_owned_ptr_or_err` takes.
    let made = unsafe { Bound::from_owned_ptr_or_err(py, made) }?;
    Ok(made.cast_into::<PyInt>()?)
}

/// A Python `str` of formatted text (a repr); MemoryError if the text or
/// the string cannot be allocated.
pub(crate) fn py_format<'py>(
    py: Python<'py>,
    text: fmt::Arguments<'_>,
) -> PyResult<Bound<'py, PyString>> {
    match try_format(text) {
        Ok(text) => py_string(py, &text),
        Err(_) => Err(exception(
            Operation::Alloc,
            CYMEM_ERR_OUT_OF_MEMORY,
            "out of memory: no room for the text",
        )),
    }
}

/// `kind(message)` as a raised-ready error. If making it fails (out of
/// memory), the error of that failure instead: a MemoryError.
fn new_exception(py: Python<'_>, kind: Bound<'_, PyType>, message: &str) -> PyErr {
    let made = py_string(py, message).and_then(|text| {
        let end = std::ptr::null_mut::<ffi::PyObject>();
        // SAFETY: the GIL is held (`py`); `kind` and `text` are live objects
        // and the argument list ends with NULL.
        let value = unsafe { ffi::PyObject_CallFunctionObjArgs(kind.as_ptr(), text.as_ptr(), end) };
        // SAFETY: a call returns a new reference, or NULL with an exception
        // set, which is what `from_owned_ptr_or_err` takes.
        unsafe { Bound::from_owned_ptr_or_err(py, value) }
    });
    match made {
        Ok(value) => PyErr::from_value(value),
        Err(err) => err,
    }
}

/// The Python exception type for a status code, as cymem raises it:
/// MemoryError for allocation failures (and size overflow, which C reports the
/// same way), KeyError for an unknown block in `free` but ValueError in
/// `realloc` or a realloc that does not grow. A pool's limit is MemoryError
/// too; a stale or foreign mark ValueError; calling a pool from its own
/// cleanup RuntimeError. `None`: a status with no type of its own (raised
/// as RuntimeError naming the status).
pub(crate) fn exception_type(
    py: Python<'_>,
    op: Operation,
    status: CymemStatus,
) -> Option<Bound<'_, PyType>> {
    Some(match status {
        CYMEM_ERR_OUT_OF_MEMORY | CYMEM_ERR_SIZE_OVERFLOW | CYMEM_ERR_LIMIT => {
            py.get_type::<PyMemoryError>()
        }
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
        CYMEM_ERR_BAD_MARK => py.get_type::<PyValueError>(),
        CYMEM_ERR_RELEASING => py.get_type::<PyRuntimeError>(),
        // The message names the cause: a fork while another thread used the pool.
        CYMEM_ERR_FORKED => py.get_type::<PyRuntimeError>(),
        _ => return None,
    })
}

/// The Python exception for a status code and its message (see
/// `exception_type`), made without touching the Rust heap.
pub(crate) fn exception(op: Operation, status: CymemStatus, message: &str) -> PyErr {
    Python::attach(|py| match exception_type(py, op, status) {
        Some(kind) => new_exception(py, kind, message),
        None => error::<PyRuntimeError>(format_args!("cymem_rs error {status}: {message}")),
    })
}

/// The Python exception for a pool error.
pub(crate) fn pool_exception(op: Operation, err: PoolError) -> PyErr {
    let mut buf = [0u8; MESSAGE_CAPACITY];
    exception(op, err.into(), format_in(&mut buf, format_args!("{err}")))
}
