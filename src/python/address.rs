//! `cymem_rs.cymem.Address`: one zeroed block owned by a Python object.

use std::ffi::{c_int, c_void};
use std::ptr::NonNull;

use pyo3::prelude::*;
use pyo3::types::{PyInt, PyString};

use super::allocators::default_allocator;
use super::buffer::{get_buffer, Export, Exporter, RawBuffer};
use super::errors::{pool_exception, py_format, py_int, Operation};
use super::view::BlockView;
use crate::allocator::Allocator;
use crate::error::PoolError;
use crate::pool::block_bytes;

/// A zeroed block of `number * elem_size` bytes, freed with the object.
///
/// Layout: `ptr` must stay the first field; C reads `Address.ptr` right after
/// the object header (the offset is checked when the C API is loaded).
#[pyclass(module = "cymem_rs.cymem", name = "Address", frozen)]
#[repr(C)]
pub struct Address {
    ptr: BlockPtr,
    size: usize,
    allocator: Allocator,
}

/// Invariant: a live block of `Address::allocator`, released once in `Drop`.
#[repr(transparent)]
struct BlockPtr(NonNull<c_void>);

// SAFETY: the pointer is to plain memory owned by the Address, with no
// thread affinity; it is released only in Drop, when no other reference
// exists, so moving the owner to another thread is sound.
unsafe impl Send for BlockPtr {}
// SAFETY: shared references only read the pointer value; the memory behind
// it is reached through the buffer protocol, whose consumers synchronise
// their own writes, as with any Python buffer.
unsafe impl Sync for BlockPtr {}

#[pymethods]
impl Address {
    #[new]
    pub(crate) fn new(_py: Python<'_>, number: usize, elem_size: usize) -> PyResult<Self> {
        Address::try_new(number, elem_size).map_err(|e| pool_exception(Operation::Alloc, e))
    }

    /// The block's address as an int.
    #[getter]
    fn addr<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyInt>> {
        py_int(py, self.ptr.0.as_ptr() as usize)
    }

    /// The block's size in bytes.
    #[getter]
    fn size<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyInt>> {
        py_int(py, self.size)
    }

    fn __repr__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyString>> {
        let (addr, size) = (self.block_addr(), self.size);
        py_format(py, format_args!("<cymem_rs.Address {addr:#x} size={size}>"))
    }

    /// A typed, shaped zero-copy view of the block (see `Pool.view`); it
    /// keeps this Address alive.
    #[pyo3(signature = (format = "B", shape = None, readonly = false))]
    fn view(
        slf: &Bound<'_, Self>,
        format: &str,
        shape: Option<&Bound<'_, PyAny>>,
        readonly: bool,
    ) -> PyResult<BlockView> {
        BlockView::of_address(slf, format, shape, readonly)
    }

    /// The block as writable bytes (`memoryview(address)`), in place.
    ///
    /// # Safety
    /// Called by CPython's buffer machinery with a `Py_buffer` to fill.
    unsafe fn __getbuffer__(slf: Bound<'_, Self>, view: RawBuffer, flags: c_int) -> PyResult<()> {
        // SAFETY: CPython passes the `Py_buffer` it is filling (as
        // `get_buffer` needs); what it will point at is the Address's own
        // block, valid while the Address lives (its `Exporter` impl).
        unsafe { get_buffer(slf, view, flags) }
    }
}

impl Address {
    /// A zeroed block of `number * elem_size` bytes from the default allocator.
    pub(crate) fn try_new(number: usize, elem_size: usize) -> Result<Self, PoolError> {
        let size = block_bytes(number, elem_size)?;
        let allocator = default_allocator();
        // 0 bytes still gets its own address, as in the pool.
        let ptr = allocator
            .alloc_zeroed(size.max(1))
            .ok_or(PoolError::OutOfMemory { bytes: size })?;
        Ok(Address {
            ptr: BlockPtr(ptr.cast()),
            size,
            allocator,
        })
    }

    /// The field C reads, for the C API's offset check.
    pub(crate) fn ptr_field(&self) -> *const c_void {
        (&self.ptr as *const BlockPtr).cast()
    }

    /// The block's address, for views.
    pub(crate) fn block_addr(&self) -> usize {
        self.ptr.0.as_ptr() as usize
    }

    /// The block's size in bytes, for views.
    pub(crate) fn byte_size(&self) -> usize {
        self.size
    }
}

// SAFETY: the block is allocated when the Address is made and released only
// in its Drop, and an Address never moves or resizes it.
unsafe impl Exporter for Address {
    fn export(&self) -> Export<'_> {
        Export {
            buf: self.ptr.0.as_ptr(),
            nbytes: self.size,
            itemsize: 1,
            readonly: false,
            format: c"B",
            shape_strides: None,
        }
    }
}

impl Drop for Address {
    fn drop(&mut self) {
        // SAFETY: `ptr` is a live block of `allocator` (type invariant), and
        // Drop runs once.
        unsafe { self.allocator.release(self.ptr.0.cast()) }
    }
}
