//! Zero-copy views: `cymem_rs.cymem.BlockView`.
//!
//! A view hands out the block's own memory through the buffer protocol, so
//! `memoryview`, `numpy.asarray` and `numpy.frombuffer` read and write the
//! block in place. It holds a strong reference to its owner (the Pool or
//! Address), so the memory outlives every consumer; a pool block is also
//! pinned while the view lives, so `Pool.free` / `realloc` of it raise
//! BufferError instead of leaving the view dangling.

use std::ffi::{c_int, c_void, CString};
use std::os::raw::c_long;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::types::{PyList, PyString, PyTuple};
use pyo3::PyTraverseError;

use super::address::Address;
use super::buffer::{get_buffer, Export, Exporter, RawBuffer};
use super::errors::{error, pool_exception, py_format, Operation};
use super::pool::Pool;
use crate::error::PoolError;

/// The object whose memory a view shows, kept alive by the view.
enum Owner {
    /// The block is pinned in this pool for the view's life.
    Pool(Py<Pool>),
    /// An Address frees its block only when it dies: no pin needed.
    Address(Py<Address>),
}

/// A typed, shaped window on a pool block or an Address, exporting the
/// buffer protocol (C-contiguous). Made by `Pool.view` and `Address.view`.
#[pyclass(module = "cymem_rs.cymem", name = "BlockView", frozen)]
pub struct BlockView {
    owner: Owner,
    /// The first byte: a live block of `owner` for as long as the view lives.
    addr: usize,
    /// `product(shape) * itemsize`, at most the block's size.
    nbytes: usize,
    itemsize: usize,
    format: CString,
    shape: Box<[isize]>,
    strides: Box<[isize]>,
    readonly: bool,
}

/// Item format, shape and writability of a view, checked against a block.
struct Layout {
    format: CString,
    itemsize: usize,
    shape: Box<[isize]>,
    strides: Box<[isize]>,
    nbytes: usize,
}

/// The size of one item of a struct-module format holding a single item:
/// an optional byte-order prefix (`@` native, `=` `<` `>` `!` standard sizes)
/// and one code. ValueError for anything else (repeat counts, several items).
fn item_size(format: &str) -> PyResult<usize> {
    let (native, code) = match format.as_bytes() {
        [code] => (true, *code),
        [b'@', code] => (true, *code),
        [b'=' | b'<' | b'>' | b'!', code] => (false, *code),
        _ => {
            return Err(error::<PyValueError>(format_args!(
                "unsupported view format {format:?}: give one struct-module item code \
                 (b B h H i I l L q Q n N f d e ? c), optionally after @ = < > or !"
            )))
        }
    };
    let size = match code {
        b'b' | b'B' | b'c' | b'?' => 1,
        b'h' | b'H' | b'e' => 2,
        b'f' => 4,
        b'q' | b'Q' | b'd' => 8,
        b'i' | b'I' if native => std::mem::size_of::<c_int>(),
        b'i' | b'I' => 4,
        b'l' | b'L' if native => std::mem::size_of::<c_long>(),
        b'l' | b'L' => 4,
        b'n' | b'N' if native => std::mem::size_of::<isize>(),
        b'n' | b'N' => {
            return Err(error::<PyValueError>(format_args!(
                "view format {format:?}: 'n' and 'N' exist only in native mode (no prefix or @)"
            )))
        }
        _ => {
            return Err(error::<PyValueError>(format_args!(
                "unsupported view format {format:?}: unknown item code {:?}",
                code as char
            )))
        }
    };
    Ok(size)
}

/// The dimensions asked for: `None` (as many items as fit), an int, or a
/// tuple or list of ints (`()` is a single item, a 0-dimensional view).
fn requested_shape(shape: Option<&Bound<'_, PyAny>>) -> PyResult<Option<Vec<isize>>> {
    let Some(shape) = shape.filter(|s| !s.is_none()) else {
        return Ok(None);
    };
    let dims: Vec<isize> = if let Ok(n) = shape.extract::<isize>() {
        dims_of([Ok(n)], 1)?
    } else if shape.is_instance_of::<PyTuple>() || shape.is_instance_of::<PyList>() {
        let dims = shape.try_iter()?.map(|d| {
            d?.extract::<isize>().map_err(|_| {
                error::<PyTypeError>(format_args!("view shape: every dimension must be an int"))
            })
        });
        // (A hint only, so an absurd length reserves nothing absurd.)
        dims_of(dims, shape.len()?.min(64))?
    } else {
        return Err(error::<PyTypeError>(format_args!(
            "view shape must be None, an int or a tuple of ints, not {}",
            shape.get_type().name()?
        )));
    };
    // pyo3-ffi types the constant `c_int` before CPython 3.11, `usize` after.
    #[allow(clippy::unnecessary_cast)]
    let max_ndim = ffi::PyBUF_MAX_NDIM as usize;
    if dims.len() > max_ndim {
        return Err(error::<PyValueError>(format_args!(
            "view shape has {} dimensions; the buffer protocol allows at most {max_ndim}",
            dims.len(),
        )));
    }
    if let Some(d) = dims.iter().find(|&&d| d < 0) {
        return Err(error::<PyValueError>(format_args!(
            "view shape {dims:?}: dimension {d} is negative"
        )));
    }
    Ok(Some(dims))
}

/// `format` as a C string; MemoryError if it cannot be allocated.
fn c_format(format: &str) -> PyResult<CString> {
    let mut bytes = Vec::new();
    bytes
        .try_reserve_exact(format.len() + 1)
        .map_err(|_| out_of_memory(1))?;
    bytes.extend_from_slice(format.as_bytes());
    // With room for the NUL, `CString::new` does not reallocate.
    CString::new(bytes).map_err(|_| error::<PyValueError>(format_args!("bad format")))
}

/// The dimensions in a vector of exactly their number (so boxing it does
/// not reallocate); MemoryError if it cannot be allocated.
fn dims_of(
    dims: impl IntoIterator<Item = PyResult<isize>>,
    expected: usize,
) -> PyResult<Vec<isize>> {
    let mut out = Vec::new();
    for dim in dims {
        out.try_reserve_exact(expected.max(out.len() + 1) - out.len())
            .map_err(|_| out_of_memory(expected))?;
        out.push(dim?);
    }
    Ok(out)
}

/// MemoryError for a view's bookkeeping of `dims` dimensions.
fn out_of_memory(dims: usize) -> PyErr {
    let bytes = dims.saturating_mul(std::mem::size_of::<isize>());
    pool_exception(Operation::Alloc, PoolError::OutOfMemory { bytes })
}

/// A view's item format and dimensions as asked for, converted from their
/// Python objects but not yet checked against a block: converting runs
/// Python code (`__index__` of the dimensions), which may change the pool,
/// so the block is read only afterwards (see `Request::fit`).
struct Request {
    format: CString,
    itemsize: usize,
    /// `None`: as many items as fit.
    dims: Option<Vec<isize>>,
}

impl Request {
    fn new(format: &str, shape: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        let itemsize = item_size(format)?;
        Ok(Request {
            // No NUL inside: `item_size` accepted only the characters above.
            format: c_format(format)?,
            itemsize,
            dims: requested_shape(shape)?,
        })
    }

    /// The layout over a block of `block_size` bytes, or ValueError if it
    /// does not fit. Runs no Python code.
    fn fit(self, block_size: usize) -> PyResult<Layout> {
        let Request {
            format,
            itemsize,
            dims,
        } = self;
        let shape: Vec<isize> = match dims {
            // Fits: a block's size is at most isize::MAX.
            None => dims_of([Ok((block_size / itemsize) as isize)], 1)?,
            Some(dims) => dims,
        };
        let too_big = || {
            error::<PyValueError>(format_args!(
                "view shape {shape:?} of {format:?} items ({itemsize} bytes each) does not \
                 fit in the block's {block_size} bytes"
            ))
        };
        let nbytes = shape
            .iter()
            .try_fold(itemsize, |acc, &d| acc.checked_mul(d as usize))
            .filter(|&n| n <= block_size)
            .ok_or_else(too_big)?;
        // C order: the last index moves fastest. A 0 dimension counts as 1,
        // as numpy does, so with one the other dimensions could still be
        // huge: refuse strides that overflow.
        let mut strides = dims_of(shape.iter().map(|_| Ok(0)), shape.len())?;
        let mut step = itemsize as isize;
        for (stride, &dim) in strides.iter_mut().zip(&shape).rev() {
            *stride = step;
            step = step.checked_mul(dim.max(1)).ok_or_else(too_big)?;
        }
        Ok(Layout {
            format,
            itemsize,
            shape: shape.into_boxed_slice(),
            strides: strides.into_boxed_slice(),
            nbytes,
        })
    }
}

impl BlockView {
    /// A view of the pool block at `addr`, pinned until the view dies.
    /// KeyError if `addr` is not a live block of the pool.
    pub(crate) fn of_pool(
        pool: &Bound<'_, Pool>,
        addr: usize,
        format: &str,
        shape: Option<&Bound<'_, PyAny>>,
        readonly: bool,
    ) -> PyResult<Self> {
        // Every Python conversion first: it may free or replace the block.
        let request = Request::new(format, shape)?;
        // Then the block as it is now, checked and pinned in one step.
        let layout = pool.get().core.0.with(|p| {
            let ptr = addr as *const c_void;
            let block_size = p
                .block_size(ptr)
                .ok_or(PoolError::UnknownPointer { addr })
                .map_err(|e| pool_exception(Operation::Free, e))?;
            let layout = request.fit(block_size)?;
            p.pin(ptr).map_err(|e| pool_exception(Operation::Free, e))?;
            Ok::<_, PyErr>(layout)
        });
        let layout = layout.map_err(|e| pool_exception(Operation::Free, e))??;
        // From here the view's Drop undoes the pin, whatever happens next.
        Ok(BlockView::new(
            Owner::Pool(pool.clone().unbind()),
            addr,
            layout,
            readonly,
        ))
    }

    /// A view of an Address's block.
    pub(crate) fn of_address(
        address: &Bound<'_, Address>,
        format: &str,
        shape: Option<&Bound<'_, PyAny>>,
        readonly: bool,
    ) -> PyResult<Self> {
        let request = Request::new(format, shape)?;
        // An Address's block is fixed for its life (which the caller holds).
        let a = address.get();
        let layout = request.fit(a.byte_size())?;
        Ok(BlockView::new(
            Owner::Address(address.clone().unbind()),
            a.block_addr(),
            layout,
            readonly,
        ))
    }

    fn new(owner: Owner, addr: usize, layout: Layout, readonly: bool) -> Self {
        BlockView {
            owner,
            addr,
            nbytes: layout.nbytes,
            itemsize: layout.itemsize,
            format: layout.format,
            shape: layout.shape,
            strides: layout.strides,
            readonly,
        }
    }
}

#[pymethods]
impl BlockView {
    /// The Pool or Address whose memory this is (kept alive by the view).
    #[getter]
    fn obj(&self, py: Python<'_>) -> Py<PyAny> {
        match &self.owner {
            Owner::Pool(pool) => pool.clone_ref(py).into_any(),
            Owner::Address(address) => address.clone_ref(py).into_any(),
        }
    }

    /// The address of the first byte.
    #[getter]
    fn addr(&self) -> usize {
        self.addr
    }

    /// Bytes covered by the view: `product(shape) * itemsize`.
    #[getter]
    fn nbytes(&self) -> usize {
        self.nbytes
    }

    #[getter]
    fn format(&self) -> &str {
        // Built from a `&str` in `Request::new`.
        self.format.to_str().unwrap_or("B")
    }

    #[getter]
    fn itemsize(&self) -> usize {
        self.itemsize
    }

    #[getter]
    fn ndim(&self) -> usize {
        self.shape.len()
    }

    #[getter]
    fn shape<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, self.shape.iter())
    }

    #[getter]
    fn strides<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, self.strides.iter())
    }

    #[getter]
    fn readonly(&self) -> bool {
        self.readonly
    }

    /// # Safety
    /// Called by CPython's buffer machinery with a `Py_buffer` to fill.
    unsafe fn __getbuffer__(slf: Bound<'_, Self>, view: RawBuffer, flags: c_int) -> PyResult<()> {
        // SAFETY: CPython passes the `Py_buffer` it is filling (as
        // `get_buffer` needs); what it will point at is the viewed block,
        // kept alive and in place by this view (its `Exporter` impl).
        unsafe { get_buffer(slf, view, flags) }
    }

    fn __repr__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyString>> {
        let owner = match &self.owner {
            Owner::Pool(_) => "Pool",
            Owner::Address(_) => "Address",
        };
        let shape = self.shape(py)?.repr()?;
        py_format(
            py,
            format_args!(
                "<cymem_rs.BlockView of {owner} block {:#x} format={:?} shape={shape}{}>",
                self.addr,
                self.format(),
                if self.readonly { " readonly" } else { "" }
            ),
        )
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        // Lets the collector break cycles such as `pool.own_pyref(view)`.
        match &self.owner {
            Owner::Pool(pool) => visit.call(pool),
            Owner::Address(address) => visit.call(address),
        }
    }
}

// SAFETY: the block stays live, in place, while this view lives: the view
// holds a strong reference to its owner, a pool block is pinned (so neither
// `free` nor `realloc` moves or releases it) and an Address frees its block
// only when it dies. The format, shape and strides are fields of this frozen
// object, never changed after it is made.
unsafe impl Exporter for BlockView {
    fn export(&self) -> Export<'_> {
        Export {
            buf: self.addr as *mut c_void,
            nbytes: self.nbytes,
            itemsize: self.itemsize,
            readonly: self.readonly,
            format: &self.format,
            shape_strides: Some((&self.shape, &self.strides)),
        }
    }
}

impl Drop for BlockView {
    fn drop(&mut self) {
        if let Owner::Pool(pool) = &self.owner {
            // Runs in tp_dealloc, attached to the interpreter (pyo3 defers
            // the last decref of a Py<BlockView> dropped elsewhere), so the
            // pool is accessed under the same discipline as every call.
            // The pin is ours; only a Rust-side `free_all` could have
            // dropped it, and then there is nothing left to undo. A view
            // dropped by a custom allocator function of its own pool, while
            // the pool is in mid-call, is refused: the block stays pinned
            // (not freeable, never dangling) until the pool dies.
            let _ = pool
                .get()
                .core
                .0
                .with(|p| p.unpin(self.addr as *const c_void));
        }
    }
}
