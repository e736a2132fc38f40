//! The buffer export shared by `Address` and `BlockView`: both hand out their
//! block's own memory through the buffer protocol, so `memoryview` and numpy
//! read and write it in place.

use std::ffi::{c_int, c_void, CStr};

use pyo3::exceptions::PyBufferError;

use super::errors::error;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::PyClass;

/// The `Py_buffer` CPython asks `__getbuffer__` to fill.
pub(crate) type RawBuffer = *mut ffi::Py_buffer;

/// What an object exports through the buffer protocol.
pub(crate) struct Export<'a> {
    pub(crate) buf: *mut c_void,
    pub(crate) nbytes: usize,
    pub(crate) itemsize: usize,
    pub(crate) readonly: bool,
    pub(crate) format: &'a CStr,
    /// `None`: one dimension of `nbytes / itemsize` items, read from the
    /// `Py_buffer` itself (so the exporter needs no storage of its own).
    pub(crate) shape_strides: Option<(&'a [isize], &'a [isize])>,
}

/// A frozen Python class whose memory can be exported.
///
/// # Safety
/// The memory `export` describes (`nbytes` bytes at `buf`, writable unless
/// `readonly`) and the slices it borrows stay valid, unchanged in place, for
/// as long as the object lives: each exported buffer holds a reference to it.
pub(crate) unsafe trait Exporter:
    PyClass<Frozen = pyo3::pyclass::boolean_struct::True> + Sync
{
    fn export(&self) -> Export<'_>;
}

/// The body of `__getbuffer__` for an [`Exporter`]: fills `view` for a
/// buffer request, or refuses it with BufferError (and `view->obj` NULL, as
/// the protocol requires).
///
/// # Safety
/// `view` is NULL or a `Py_buffer` being filled by `PyObject_GetBuffer`
/// (what CPython passes to `__getbuffer__`).
pub(crate) unsafe fn get_buffer<T: Exporter>(
    slf: Bound<'_, T>,
    view: *mut ffi::Py_buffer,
    flags: c_int,
) -> PyResult<()> {
    // SAFETY: a non-NULL `view` is a `Py_buffer` that `PyObject_GetBuffer`
    // hands to this exporter alone to fill (`# Safety`).
    let Some(v) = (unsafe { view.as_mut() }) else {
        return Err(error::<PyBufferError>(format_args!(
            "buffer request with a NULL Py_buffer"
        )));
    };
    let export = slf.get().export();
    let wants = |flag: c_int| flags & flag == flag;
    let refusal = if wants(ffi::PyBUF_WRITABLE) && export.readonly {
        Some("this view is read-only")
    } else if wants(ffi::PyBUF_F_CONTIGUOUS)
        && export
            .shape_strides
            .is_some_and(|(shape, _)| shape.iter().filter(|&&d| d > 1).count() > 1)
    {
        Some("this view is C-contiguous, not Fortran-contiguous")
    } else {
        None
    };
    if let Some(reason) = refusal {
        v.obj = std::ptr::null_mut();
        return Err(error::<PyBufferError>(format_args!("{reason}")));
    }
    // The pointers stored below stay valid while `v.obj`, a new reference
    // to the exporter, lives (the `Exporter` contract).
    v.buf = export.buf;
    v.len = export.nbytes as isize;
    v.itemsize = export.itemsize as isize;
    v.readonly = c_int::from(export.readonly);
    v.format = if wants(ffi::PyBUF_FORMAT) {
        export.format.as_ptr().cast_mut()
    } else {
        std::ptr::null_mut()
    };
    v.suboffsets = std::ptr::null_mut();
    v.internal = std::ptr::null_mut();
    match export.shape_strides {
        _ if !wants(ffi::PyBUF_ND) => {
            // A plain run of bytes: the consumer reads `len` only.
            v.ndim = 1;
            v.shape = std::ptr::null_mut();
            v.strides = std::ptr::null_mut();
        }
        Some((shape, strides)) => {
            v.ndim = shape.len() as c_int;
            // A 0-dimensional view (a scalar) has NULL shape and strides.
            let or_null = |s: &[isize]| {
                if s.is_empty() {
                    std::ptr::null_mut()
                } else {
                    s.as_ptr().cast_mut()
                }
            };
            v.shape = or_null(shape);
            v.strides = if wants(ffi::PyBUF_STRIDES) {
                or_null(strides)
            } else {
                std::ptr::null_mut()
            };
        }
        None => {
            v.ndim = 1;
            // One dimension of `len` bytes: point at fields of the view
            // itself, which lives as long as the export.
            v.shape = &raw mut v.len;
            v.strides = if wants(ffi::PyBUF_STRIDES) {
                &raw mut v.itemsize
            } else {
                std::ptr::null_mut()
            };
        }
    }
    v.obj = slf.into_any().into_ptr();
    Ok(())
}
