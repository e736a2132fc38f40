//! Allocation that reports failure instead of aborting the process.
//!
//! Rust's `Box::new`, `Vec::push` and `format!` abort when memory runs out.
//! A library inside someone else's process must fail into an error instead
//! (`MemoryError`, `CYMEM_ERR_OUT_OF_MEMORY`), so every allocation the
//! library makes for itself goes through `try_reserve` or these helpers.

use std::alloc::{alloc, Layout};
use std::fmt;
use std::ptr::NonNull;

/// An allocation of the library's own bookkeeping failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfMemory;

impl From<std::collections::TryReserveError> for OutOfMemory {
    fn from(_: std::collections::TryReserveError) -> Self {
        OutOfMemory
    }
}

/// `Box::new(value)`, or `OutOfMemory` (then `value` is dropped).
pub fn try_box<T>(value: T) -> Result<Box<T>, OutOfMemory> {
    try_box_or_back(value).map_err(|_| OutOfMemory)
}

/// `Box::new(value)`, or `value` back if there is no memory for it.
pub fn try_box_or_back<T>(value: T) -> Result<Box<T>, T> {
    let layout = Layout::new::<T>();
    if layout.size() == 0 {
        return Ok(Box::new(value));
    }
    // SAFETY: the layout has a non-zero size.
    let Some(raw) = NonNull::new(unsafe { alloc(layout) }.cast::<T>()) else {
        return Err(value);
    };
    // SAFETY: `raw` is a fresh allocation with `T`'s layout: writable, and
    // aligned for `T`.
    unsafe { raw.as_ptr().write(value) };
    // SAFETY: `raw` came from the global allocator with `T`'s layout, which
    // is what `Box<T>` owns and releases, and holds a `T` written above.
    Ok(unsafe { Box::from_raw(raw.as_ptr()) })
}

/// A copy of `text`, or `OutOfMemory`.
pub fn try_string(text: &str) -> Result<String, OutOfMemory> {
    let mut out = String::new();
    out.try_reserve_exact(text.len())?;
    out.push_str(text);
    Ok(out)
}

/// `text` as a `Box<str>`, or `OutOfMemory`. With spare capacity it is
/// copied (a fallible allocation) rather than shrunk in place (which aborts
/// when the reallocation fails).
pub fn try_boxed_str(text: String) -> Result<Box<str>, OutOfMemory> {
    if text.len() == text.capacity() {
        return Ok(text.into_boxed_str());
    }
    let exact = try_string(&text)?;
    debug_assert_eq!(exact.len(), exact.capacity());
    Ok(exact.into_boxed_str())
}

/// A `fmt::Write` into a `String` that reserves with `try_reserve`: a
/// formatting error means the memory ran out (no panic, no abort).
#[derive(Debug, Default)]
pub struct TryString(pub String);

impl fmt::Write for TryString {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.try_reserve(s.len()).map_err(|_| fmt::Error)?;
        self.0.push_str(s);
        Ok(())
    }
}

/// Formats into a new `String` of exactly the text's length (so
/// `into_boxed_str` does not reallocate), or `OutOfMemory`.
pub fn try_format(args: fmt::Arguments<'_>) -> Result<String, OutOfMemory> {
    struct Count(usize);
    impl fmt::Write for Count {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            self.0 += s.len();
            Ok(())
        }
    }
    let mut count = Count(0);
    let _ = fmt::write(&mut count, args);
    let mut out = TryString::default();
    out.0.try_reserve_exact(count.0)?;
    fmt::write(&mut out, args).map_err(|_| OutOfMemory)?;
    Ok(out.0)
}

/// A `fmt::Write` into a fixed buffer: what does not fit is cut at a
/// character boundary, and `len` counts what was written.
pub struct FixedText<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl<'a> FixedText<'a> {
    pub fn new(buf: &'a mut [u8]) -> Self {
        FixedText { buf, len: 0 }
    }

    /// Bytes written (always whole UTF-8 characters).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl fmt::Write for FixedText<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = self.buf.len() - self.len;
        let mut n = s.len().min(room);
        while !s.is_char_boundary(n) {
            n -= 1;
        }
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt::Write;

    #[test]
    fn try_format_allocates_exactly_the_text() {
        let text = try_format(format_args!("{}-{:>8}", "pool", 42)).unwrap();
        assert_eq!(text, "pool-      42");
        // So `into_boxed_str` keeps the allocation (no copy, no failure).
        assert_eq!(text.capacity(), text.len());
    }

    #[test]
    fn fixed_text_is_empty_until_written() {
        let mut buf = [0u8; 4];
        let mut text = FixedText::new(&mut buf);
        assert!(text.is_empty());
        write!(text, "x").unwrap();
        assert!(!text.is_empty());
    }

    #[test]
    fn fixed_text_cuts_at_a_character_boundary() {
        let mut buf = [0u8; 5];
        let mut text = FixedText::new(&mut buf);
        let accents = "ééé";
        write!(text, "ab{accents}").unwrap();
        assert_eq!(text.len(), 4);
        assert_eq!(&buf[..4], "abé".as_bytes());
    }

    #[test]
    fn boxes_and_strings() {
        assert_eq!(*try_box(7u64).unwrap(), 7);
        assert_eq!(*try_box(()).unwrap(), ());
        assert_eq!(try_format(format_args!("{}-{}", 1, "x")).unwrap(), "1-x");
        assert_eq!(try_string("abc").unwrap(), "abc");
    }
}

/// The allocator of this crate's unit tests: the system's, except that a
/// test can make the allocations of its own thread fail, to check that
/// running out of memory is an error and never an abort.
#[cfg(test)]
pub(crate) mod failing {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    thread_local! {
        /// Allocations counted since arming (`None`: disarmed).
        static COUNTED: Cell<Option<u64>> = const { Cell::new(None) };
        /// Allocations `first..end` (counted from 1) fail.
        static FAILING: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
    }

    struct Failing;

    fn fail_now() -> bool {
        let count = |counted: &Cell<Option<u64>>| {
            let n = counted.get()? + 1;
            counted.set(Some(n));
            Some(n)
        };
        let Ok(Some(n)) = COUNTED.try_with(count) else {
            return false;
        };
        FAILING
            .try_with(|failing| {
                let (first, end) = failing.get();
                (first..end).contains(&n)
            })
            .unwrap_or(false)
    }

    // SAFETY: every call is forwarded to the system allocator, or fails
    // (NULL) without touching anything, which `GlobalAlloc` allows.
    unsafe impl GlobalAlloc for Failing {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            if fail_now() {
                return std::ptr::null_mut();
            }
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.alloc(layout) }
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            if fail_now() {
                return std::ptr::null_mut();
            }
            // SAFETY: as in `alloc`.
            unsafe { System.alloc_zeroed(layout) }
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            if fail_now() {
                return std::ptr::null_mut();
            }
            // SAFETY: as in `alloc`.
            unsafe { System.realloc(ptr, layout, new_size) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: as in `alloc`.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    #[global_allocator]
    static ALLOCATOR: Failing = Failing;

    /// Runs `f` with this thread's allocations `first .. first + count`
    /// failing (counted from 1; `count` 0: none); `f`'s result and how many
    /// allocations it made.
    pub(crate) fn with_failures<R>(first: u64, count: u64, f: impl FnOnce() -> R) -> (R, u64) {
        FAILING.with(|failing| failing.set((first, first.saturating_add(count))));
        COUNTED.with(|counted| counted.set(Some(0)));
        let result = f();
        let made = COUNTED.with(|counted| counted.replace(None)).unwrap_or(0);
        (result, made)
    }
}
