//! `cymem_rs.cymem.Address`: one zeroed block owned by a Python object.

use std::ffi::c_void;
use std::ptr::NonNull;
use std::sync::OnceLock;

use pyo3::prelude::*;

use super::allocators::{allocator_for, default_free, default_malloc};
use super::errors::{pool_exception, Operation};
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

// SAFETY: the block is plain memory owned by the Address; the pointer itself
// is only released in Drop, when no other reference exists.
unsafe impl Send for BlockPtr {}
unsafe impl Sync for BlockPtr {}

#[pymethods]
impl Address {
    #[new]
    pub(crate) fn new(py: Python<'_>, number: usize, elem_size: usize) -> PyResult<Self> {
        let alloc_err = |e: PoolError| pool_exception(Operation::Alloc, e);
        let size = block_bytes(number, elem_size).map_err(alloc_err)?;
        let allocator = default_allocator(py)?;
        // 0 bytes still gets its own address, as in the pool.
        let ptr = allocator
            .alloc_zeroed(size.max(1))
            .ok_or(PoolError::OutOfMemory { bytes: size })
            .map_err(alloc_err)?;
        Ok(Address {
            ptr: BlockPtr(ptr.cast()),
            size,
            allocator,
        })
    }

    /// The block's address as an int.
    #[getter]
    fn addr(&self) -> usize {
        self.ptr.0.as_ptr() as usize
    }

    /// The block's size in bytes.
    #[getter]
    fn size(&self) -> usize {
        self.size
    }

    fn __repr__(&self) -> String {
        format!("<cymem_rs.Address {:#x} size={}>", self.addr(), self.size)
    }
}

/// The allocator of every Address (`Default_Malloc`/`Default_Free`), built
/// once: `Address(n, size)` is often called in loops.
fn default_allocator(py: Python<'_>) -> PyResult<Allocator> {
    static CACHED: OnceLock<Allocator> = OnceLock::new();
    if let Some(allocator) = CACHED.get() {
        return Ok(*allocator);
    }
    let allocator = allocator_for(default_malloc(py)?.get(), default_free(py)?.get());
    Ok(*CACHED.get_or_init(|| allocator))
}

impl Address {
    /// The field C reads, for the C API's offset check.
    pub(crate) fn ptr_field(&self) -> *const c_void {
        (&self.ptr as *const BlockPtr).cast()
    }
}

impl Drop for Address {
    fn drop(&mut self) {
        // SAFETY: `ptr` is a live block of `allocator` (type invariant), and
        // Drop runs once.
        unsafe { self.allocator.release(self.ptr.0.cast()) }
    }
}
