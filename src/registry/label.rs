//! What a pool is called in reports, and where it was made.

use std::fmt;
use std::panic::Location;
use std::sync::Arc;

use crate::fallible::{try_string, OutOfMemory, TryString};

/// Describes, at report time, where a pool was made, for origins that cost
/// more to describe than to capture. Reports call it on their own thread,
/// after releasing the registry lock; it must not wait for anything a pool
/// maker may hold (the Python binding describes its origins up front, so
/// that a report never waits for the GIL).
pub trait OriginSource: Send + Sync {
    /// A short human-readable place, e.g. `app/cache.py:42 in build`.
    fn describe(&self) -> String;

    /// Writes the description into `out`; an error from `out` (it ran out of
    /// memory) is passed on. Implement it to describe without allocating.
    fn describe_into(&self, out: &mut dyn fmt::Write) -> fmt::Result {
        out.write_str(&self.describe())
    }
}

/// Where a pool was made.
#[derive(Clone, Default)]
pub enum Origin {
    /// Not known.
    #[default]
    Unknown,
    /// A Rust caller (from `#[track_caller]`, free to capture).
    Rust(&'static Location<'static>),
    /// A fixed description, e.g. `"C"`.
    Static(&'static str),
    /// A description given at run time (e.g. a C caller's `__FILE__:__LINE__`).
    Text(Box<str>),
    /// Formatted lazily at report time.
    Source(Arc<dyn OriginSource>),
    /// Formatted lazily at report time; never freed, so handing it to a new
    /// pool costs no reference count (for creation sites used again and again).
    Interned(&'static dyn OriginSource),
}

impl Origin {
    /// The origin as text (calls the [`OriginSource`] if there is one).
    pub fn describe(&self) -> String {
        self.try_describe()
            .unwrap_or_else(|_| std::alloc::handle_alloc_error(std::alloc::Layout::new::<u8>()))
    }

    /// [`Origin::describe`], or `OutOfMemory`.
    pub fn try_describe(&self) -> Result<String, OutOfMemory> {
        let mut out = TryString::default();
        self.describe_into(&mut out).map_err(|_| OutOfMemory)?;
        Ok(out.0)
    }

    /// A copy for a report, or `OutOfMemory` (shared and static origins
    /// are copied without allocating).
    pub(crate) fn try_clone(&self) -> Result<Origin, OutOfMemory> {
        Ok(match self {
            Origin::Text(text) => Origin::Text(try_string(text)?.into_boxed_str()),
            other => other.clone(),
        })
    }

    /// Writes the origin as text into `out`.
    pub fn describe_into(&self, out: &mut dyn fmt::Write) -> fmt::Result {
        match self {
            Origin::Unknown => Ok(()),
            Origin::Rust(location) => write!(out, "{}:{}", location.file(), location.line()),
            Origin::Static(text) => out.write_str(text),
            Origin::Text(text) => out.write_str(text),
            Origin::Source(source) => source.describe_into(out),
            Origin::Interned(source) => source.describe_into(out),
        }
    }
}

impl fmt::Debug for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Source(_) | Origin::Interned(_) => f.write_str("Origin::Source(..)"),
            other => write!(f, "Origin({:?})", other.describe()),
        }
    }
}

/// What a pool is called in the report, and where it was made.
#[derive(Debug, Clone, Default)]
pub struct Label {
    pub name: Option<String>,
    pub origin: Origin,
}

impl Label {
    /// No name; the origin is the Rust caller (through `#[track_caller]`
    /// callers, the first caller that is not one).
    #[track_caller]
    pub fn here() -> Self {
        Label {
            name: None,
            origin: Origin::Rust(Location::caller()),
        }
    }
}
