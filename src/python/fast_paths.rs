//! Hand-filled CPython slots for the hottest object paths, each falling back
//! on pyo3's own implementation for anything but its common case:
//! - `Pool()` and `Address(number, elem_size)` called through the vectorcall
//!   protocol on the type object. Through `type.__call__` instead they would
//!   build an argument tuple, parse it (six optional arguments for `Pool`)
//!   and call `tp_init`, which costs more than making the pool itself, for
//!   the calls that matter most (a pool per object, an Address per array).
//!   Keywords, other argument types and any failure are handed to
//!   `type.__call__` unchanged, so behaviour and errors stay exactly those of
//!   the pyo3 constructors. Subclasses do not inherit the slot.
//! - `Address.__new__` for two exact ints: Cython calls `Address(1, 64)`
//!   through `type.__call__` with a constant argument tuple.
//! - The `Pool.size` getter: a plain read, without pyo3's trampoline.
//!
//! These run without pyo3's trampoline, so they create and drop no `Py<T>`
//! (pyo3 would defer such a decref) and cannot unwind into CPython.

use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering::Relaxed};
use std::sync::OnceLock;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple, PyType};

use super::address::Address;
use super::pool::Pool;

/// A type whose calls take a fast path: the type object, and its `__new__`
/// and `__init__` slots once the fast path is installed. The types are
/// immutable (see [`make_immutable`]), but a slot could still change (C code
/// may write it; CPython 3.9 has no immutable heap types): calls then go
/// through `type.__call__`. (CPython does not pass `tp_vectorcall` on to
/// subclasses; the type check does not rely on it.)
struct FastType {
    class: AtomicPtr<ffi::PyTypeObject>,
    new: AtomicUsize,
    init: AtomicUsize,
}

impl FastType {
    const fn new() -> Self {
        FastType {
            class: AtomicPtr::new(ptr::null_mut()),
            new: AtomicUsize::new(0),
            init: AtomicUsize::new(0),
        }
    }

    /// Remembers `class` as it is now. The type objects live as long as the
    /// interpreter: the module holds them.
    fn set(&self, class: &Bound<'_, PyType>) {
        let slots = class_slots(class);
        self.new
            .store(slots.tp_new.map_or(0, |f| f as usize), Relaxed);
        self.init
            .store(slots.tp_init.map_or(0, |f| f as usize), Relaxed);
        self.class.store(class.as_type_ptr(), Relaxed);
    }

    /// Whether `class` is this type.
    fn is(&self, class: *mut ffi::PyTypeObject) -> bool {
        class == self.class.load(Relaxed)
    }

    /// Whether `class` is this type, with the slots it had.
    ///
    /// # Safety
    /// `class` must be a live type object.
    unsafe fn is_unchanged(&self, class: *mut ffi::PyTypeObject) -> bool {
        // SAFETY: a live type object (the caller's contract).
        let slots = unsafe { &*class };
        self.is(class)
            && slots.tp_new.map_or(0, |f| f as usize) == self.new.load(Relaxed)
            && slots.tp_init.map_or(0, |f| f as usize) == self.init.load(Relaxed)
    }
}

static POOL_TYPE: FastType = FastType::new();
static ADDRESS_TYPE: FastType = FastType::new();

/// pyo3's `tp_new` of `Address`, which [`address_tp_new`] falls back on.
static ADDRESS_PYO3_NEW: OnceLock<ffi::newfunc> = OnceLock::new();

/// pyo3's `Pool.size` descriptor, which [`pool_size`] falls back on.
static PYO3_SIZE: OnceLock<Py<PyAny>> = OnceLock::new();

/// Fills the slots. Runs once, at module initialisation.
pub(crate) fn install(py: Python<'_>) -> PyResult<()> {
    let pool = py.get_type::<Pool>();
    let address = py.get_type::<Address>();
    set_slots(&pool, |slots| slots.tp_vectorcall = Some(pool_vectorcall));
    set_slots(&address, |slots| {
        slots.tp_vectorcall = Some(address_vectorcall);
        if let Some(pyo3_new) = slots.tp_new {
            if ADDRESS_PYO3_NEW.set(pyo3_new).is_ok() {
                slots.tp_new = Some(address_tp_new);
            }
        }
    });
    POOL_TYPE.set(&pool);
    ADDRESS_TYPE.set(&address);
    install_size_getter(py, &pool)?;
    make_immutable(&pool);
    make_immutable(&address);
    Ok(())
}

/// Makes a type immutable, as Cython's `cdef class` types (cymem's among
/// them) are: assigning its attributes raises `TypeError`, and CPython 3.10+
/// then specialises calls of it in the interpreter loop (`Pool()` written in
/// Python goes straight to the vectorcall slot, not through the generic
/// call path). Done last: the slots and the `size` getter are in place.
fn make_immutable(class: &Bound<'_, PyType>) {
    #[cfg(all(Py_3_10, not(Py_GIL_DISABLED)))]
    set_slots(class, |slots| {
        slots.tp_flags |= ffi::Py_TPFLAGS_IMMUTABLETYPE
    });
    #[cfg(all(Py_3_10, Py_GIL_DISABLED))]
    set_slots(class, |slots| {
        slots
            .tp_flags
            .fetch_or(ffi::Py_TPFLAGS_IMMUTABLETYPE, Relaxed);
    });
    // SAFETY: a live type object whose flags may have changed: CPython drops
    // what it cached of it.
    unsafe { ffi::PyType_Modified(class.as_type_ptr()) };
}

/// A type object's slots, to read.
fn class_slots<'a>(class: &'a Bound<'_, PyType>) -> &'a ffi::PyTypeObject {
    // SAFETY: the type object is alive while `class` is.
    unsafe { &*class.as_type_ptr() }
}

/// Changes slots of a type object.
fn set_slots(class: &Bound<'_, PyType>, change: impl FnOnce(&mut ffi::PyTypeObject)) {
    // SAFETY: the type object is alive (`class` holds it) and this runs at
    // module initialisation, before any instance exists, holding the GIL:
    // nothing reads the slots while they change.
    change(unsafe { &mut *class.as_type_ptr() });
}

/// `Pool(...)`: the default pool made here when there are no arguments.
unsafe extern "C" fn pool_vectorcall(
    callable: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargsf: usize,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    let call = Vectorcall {
        callable,
        args,
        nargsf,
        kwnames,
    };
    // SAFETY: CPython's vectorcall arguments, passed on as they came.
    unsafe {
        call.fast_or_type_call(&POOL_TYPE, 0, |py, _| {
            let made = guarded(|| {
                let pool = Pool::new_default(py).ok()?;
                Some(Bound::new(py, pool))
            })?;
            Some(into_result(py, made))
        })
    }
}

/// `Address(number, elem_size)` with two exact ints: the block allocated here.
unsafe extern "C" fn address_vectorcall(
    callable: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargsf: usize,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    let call = Vectorcall {
        callable,
        args,
        nargsf,
        kwnames,
    };
    let fast = |py: Python<'_>, pair: &[*mut ffi::PyObject]| {
        // SAFETY: the call's two live arguments.
        unsafe { new_address(py, pair[0], pair[1]) }
    };
    // SAFETY: CPython's vectorcall arguments, passed on as they came.
    unsafe { call.fast_or_type_call(&ADDRESS_TYPE, 2, fast) }
}

/// The arguments of a vectorcall of a type object.
struct Vectorcall {
    callable: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargsf: usize,
    kwnames: *mut ffi::PyObject,
}

impl Vectorcall {
    /// `fast(py, positional arguments)` if this is a call of exactly `class`
    /// with `arity` positional arguments and no keywords, and it made the
    /// object (or raised); else the call as `type.__call__` makes it.
    ///
    /// # Safety
    /// The fields must be as CPython passed them to a type's vectorcall.
    unsafe fn fast_or_type_call(
        &self,
        class: &FastType,
        arity: isize,
        fast: impl FnOnce(Python<'_>, &[*mut ffi::PyObject]) -> Option<*mut ffi::PyObject>,
    ) -> *mut ffi::PyObject {
        // SAFETY: CPython calls a type's vectorcall attached to the interpreter.
        let py = unsafe { Python::assume_attached() };
        // SAFETY: `callable` is a live type object (CPython calls a type's
        // vectorcall with the type), `kwnames` as CPython passed it.
        if unsafe { class.is_unchanged(self.callable.cast()) }
            // SAFETY: as above.
            && unsafe { positional_only(self.nargsf, self.kwnames) } == Some(arity)
        {
            let positional = if arity == 0 {
                &[][..]
            } else {
                // SAFETY: CPython passes `nargs` (here `arity`) live arguments.
                unsafe { std::slice::from_raw_parts(self.args, arity as usize) }
            };
            if let Some(made) = fast(py, positional) {
                return made;
            }
        }
        // SAFETY: the arguments are the caller's, passed on as they came.
        unsafe { call_type(py, self.callable, self.args, self.nargsf, self.kwnames) }
    }
}

/// `Address.__new__` as `type.__call__` calls it (Cython calls `Address(1,
/// 64)` so, with a constant argument tuple): two exact ints made here.
unsafe extern "C" fn address_tp_new(
    subtype: *mut ffi::PyTypeObject,
    args: *mut ffi::PyObject,
    kwds: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython calls `tp_new` attached to the interpreter.
    let py = unsafe { Python::assume_attached() };
    // SAFETY: CPython passes `tp_new` a live tuple and NULL or a live dict.
    if ADDRESS_TYPE.is(subtype) && unsafe { no_keywords(kwds) } {
        // SAFETY: a live tuple, as above.
        if unsafe { ffi::PyTuple_GET_SIZE(args) } == 2 {
            // SAFETY: a live tuple of 2 items.
            let number = unsafe { ffi::PyTuple_GET_ITEM(args, 0) };
            // SAFETY: as above.
            let elem_size = unsafe { ffi::PyTuple_GET_ITEM(args, 1) };
            // SAFETY: both are live items of the argument tuple.
            if let Some(made) = unsafe { new_address(py, number, elem_size) } {
                return made;
            }
        }
    }
    let pyo3_new = ADDRESS_PYO3_NEW
        .get()
        .expect("set before the slot is replaced");
    // SAFETY: pyo3's own slot, called as CPython called this one.
    unsafe { pyo3_new(subtype, args, kwds) }
}

/// Whether a `tp_new` call has no keyword arguments.
///
/// # Safety
/// `kwds` must be NULL or a live dict.
unsafe fn no_keywords(kwds: *mut ffi::PyObject) -> bool {
    // SAFETY: a live dict if not NULL (the caller's contract).
    kwds.is_null() || unsafe { ffi::PyDict_Size(kwds) } == 0
}

/// A borrowed object, `None` for NULL.
///
/// # Safety
/// `object` must be NULL or live for `'a`.
unsafe fn borrowed<'a, 'py>(
    py: Python<'py>,
    object: *mut ffi::PyObject,
) -> Option<Borrowed<'a, 'py, PyAny>> {
    // SAFETY: the caller's contract.
    unsafe { Borrowed::from_ptr_or_opt(py, object) }
}

/// A new Address (or NULL with an exception set) if both arguments are exact
/// ints and the block could be allocated; `None`, nothing raised, otherwise.
///
/// # Safety
/// Both arguments must be live objects.
unsafe fn new_address(
    py: Python<'_>,
    number: *mut ffi::PyObject,
    elem_size: *mut ffi::PyObject,
) -> Option<*mut ffi::PyObject> {
    // SAFETY: live (the caller's contract).
    let number = unsafe { exact_size_t(py, number) }?;
    // SAFETY: live (the caller's contract).
    let elem_size = unsafe { exact_size_t(py, elem_size) }?;
    let made = guarded(|| {
        let address = Address::try_new(number, elem_size).ok()?;
        Some(Bound::new(py, address))
    })?;
    Some(into_result(py, made))
}

/// The number of positional arguments if there are no keyword arguments.
///
/// # Safety
/// `kwnames` must be NULL or a live tuple, as in a vectorcall.
unsafe fn positional_only(nargsf: usize, kwnames: *mut ffi::PyObject) -> Option<isize> {
    // SAFETY: a non-NULL `kwnames` is a tuple (the vectorcall protocol).
    let keywords = !kwnames.is_null() && unsafe { ffi::PyTuple_GET_SIZE(kwnames) } != 0;
    (!keywords).then(|| nargs(nargsf))
}

/// The number of positional arguments of a vectorcall.
fn nargs(nargsf: usize) -> isize {
    // The flag bit masked off (`PyVectorcall_NARGS`, an inline function).
    (nargsf & !ffi::PY_VECTORCALL_ARGUMENTS_OFFSET) as isize
}

/// An exact `int` as a `size_t`; `None` (no exception left set) for anything
/// else, which the pyo3 constructor then reports in its own words.
///
/// # Safety
/// `object` must be live.
unsafe fn exact_size_t(py: Python<'_>, object: *mut ffi::PyObject) -> Option<usize> {
    // SAFETY: live (the caller's contract).
    if unsafe { ffi::PyLong_CheckExact(object) } == 0 {
        return None;
    }
    // SAFETY: an exact int; a value out of range sets OverflowError.
    let value = unsafe { ffi::PyLong_AsSize_t(object) };
    if value == usize::MAX && PyErr::occurred(py) {
        // SAFETY: attached; the slow path raises its own error.
        unsafe { ffi::PyErr_Clear() };
        return None;
    }
    Some(value)
}

/// Runs a fast path; `None` (the slow path takes over) if it declined or
/// panicked: a panic cannot cross into CPython, and the slow path reports
/// whatever went wrong through pyo3.
fn guarded<T>(fast: impl FnOnce() -> Option<T>) -> Option<T> {
    catch_unwind(AssertUnwindSafe(fast)).ok().flatten()
}

/// A new object's reference, or NULL with its exception set.
fn into_result<T>(py: Python<'_>, made: PyResult<Bound<'_, T>>) -> *mut ffi::PyObject {
    match made {
        Ok(object) => object.into_ptr(),
        Err(err) => {
            // The error of a failed object allocation, fetched from CPython:
            // restoring it hands its references back without dropping any.
            err.restore(py);
            ptr::null_mut()
        }
    }
}

/// The call as `type.__call__` makes it (`__new__`, then `__init__`), with
/// an argument tuple and keyword dict built from the vectorcall arguments.
///
/// # Safety
/// The arguments must be those of a vectorcall of `callable`, a type object.
unsafe fn call_type(
    py: Python<'_>,
    callable: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargsf: usize,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: `kwnames` is NULL or a tuple (the vectorcall protocol).
    let kwnames = unsafe { borrowed(py, kwnames) };
    let kwnames = kwnames.map(|names| names.cast::<PyTuple>());
    let (positional, keywords) = match kwnames {
        Some(Ok(ref names)) => (nargs(nargsf), names.len()),
        _ => (nargs(nargsf), 0),
    };
    let values = if args.is_null() {
        &[][..]
    } else {
        // SAFETY: the vectorcall protocol: `nargs` positional arguments, then
        // one value per keyword name, all live for the call.
        unsafe { std::slice::from_raw_parts(args, positional as usize + keywords) }
    };
    // SAFETY: each value is live for the call (as above).
    let value = |i: usize| unsafe { Borrowed::from_ptr(py, values[i]) };
    let made = (|| {
        let tuple = PyTuple::new(py, (0..positional as usize).map(value))?;
        let kwargs = match kwnames {
            Some(Ok(names)) if keywords > 0 => {
                let dict = PyDict::new(py);
                for (j, name) in names.iter().enumerate() {
                    dict.set_item(name, value(positional as usize + j))?;
                }
                Some(dict)
            }
            _ => None,
        };
        Ok::<_, PyErr>((tuple, kwargs))
    })();
    let (tuple, kwargs) = match made {
        Ok(made) => made,
        Err(err) => {
            err.restore(py);
            return ptr::null_mut();
        }
    };
    let kwargs = kwargs.as_ref().map_or(ptr::null_mut(), |d| d.as_ptr());
    // SAFETY: `callable` is live (the caller's contract).
    let metatype = unsafe { ffi::Py_TYPE(callable) };
    // SAFETY: the type of a live object is a live type object, whose
    // `tp_call` (here `type.__call__`) is what calling the object runs.
    let type_call = unsafe { (*metatype).tp_call };
    match type_call {
        // SAFETY: called as CPython calls it: a callable, a tuple, NULL or a dict.
        Some(type_call) => unsafe { type_call(callable, tuple.as_ptr(), kwargs) },
        None => {
            PyErr::new::<pyo3::exceptions::PyTypeError, _>("type is not callable").restore(py);
            ptr::null_mut()
        }
    }
}

/// `getset_descriptor` definitions must outlive their type: a static.
struct GetSetDef(ffi::PyGetSetDef);

// SAFETY: the definition is never written after it is built; its pointers are
// to static strings and functions.
unsafe impl Sync for GetSetDef {}

static SIZE_GETTER: GetSetDef = GetSetDef(ffi::PyGetSetDef {
    name: c"size".as_ptr(),
    get: Some(pool_size),
    set: None,
    doc: c"Bytes in live blocks.".as_ptr(),
    closure: ptr::null_mut(),
});

/// Replaces pyo3's `Pool.size` descriptor with one whose getter reads the
/// pool directly.
fn install_size_getter(py: Python<'_>, pool: &Bound<'_, PyType>) -> PyResult<()> {
    let pyo3_size = pool.getattr("size")?;
    if PYO3_SIZE.set(pyo3_size.unbind()).is_err() {
        return Ok(()); // Done already (the module was initialised before).
    }
    // CPython never writes the definition; the pointer is `*mut` for
    // history's sake.
    let definition = (&raw const SIZE_GETTER.0).cast_mut();
    // SAFETY: the type is alive and the definition static, as CPython asks
    // of a getset descriptor's definition.
    let descriptor = unsafe { ffi::PyDescr_NewGetSet(pool.as_type_ptr(), definition) };
    // SAFETY: a new reference, or NULL with an exception set.
    let descriptor = unsafe { Bound::from_owned_ptr_or_err(py, descriptor) }?;
    pool.setattr("size", descriptor)
}

/// `Pool.size`: the bytes in live blocks. CPython checked that `object` is a
/// Pool (the descriptor's type) before calling.
unsafe extern "C" fn pool_size(
    object: *mut ffi::PyObject,
    _closure: *mut c_void,
) -> *mut ffi::PyObject {
    // SAFETY: CPython calls getters attached to the interpreter.
    let py = unsafe { Python::assume_attached() };
    // SAFETY: `object` is a live instance of Pool or a subclass (the
    // descriptor checked), borrowed for this call.
    let Some(object) = (unsafe { borrowed(py, object) }) else {
        return ptr::null_mut(); // Never: CPython passes the object.
    };
    // SAFETY: a Pool, as above.
    let pool = unsafe { object.cast_unchecked::<Pool>() };
    match pool.get().with_core_inline(|core| core.size()) {
        // SAFETY: attached.
        Ok(size) => unsafe { ffi::PyLong_FromSize_t(size) },
        // Unusable (after a fork) or reentered: pyo3's getter raises the error.
        Err(_) => pyo3_size(object),
    }
}

/// `Pool.size` through pyo3's getter.
#[cold]
fn pyo3_size(object: Borrowed<'_, '_, PyAny>) -> *mut ffi::PyObject {
    let py = object.py();
    let descriptor = PYO3_SIZE
        .get()
        .expect("set before the getter is installed")
        .bind(py);
    match descriptor.call_method1("__get__", (object, object.get_type())) {
        Ok(size) => size.into_ptr(),
        Err(err) => {
            err.restore(py);
            ptr::null_mut()
        }
    }
}
