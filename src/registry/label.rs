//! What a pool is called in reports, and where it was made.

use std::fmt;
use std::panic::Location;
use std::sync::Arc;

/// Describes, at report time, where a pool was made, for origins that cost
/// more to describe than to capture. Reports call it on their own thread,
/// after releasing the registry lock; it must not wait for anything a pool
/// maker may hold (the Python binding describes its origins up front, so
/// that a report never waits for the GIL).
pub trait OriginSource: Send + Sync {
    /// A short human-readable place, e.g. `app/cache.py:42 in build`.
    fn describe(&self) -> String;
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
    Text(Arc<str>),
    /// Formatted lazily at report time.
    Source(Arc<dyn OriginSource>),
    /// Formatted lazily at report time; never freed, so handing it to a new
    /// pool costs no reference count (for creation sites used again and again).
    Interned(&'static dyn OriginSource),
}

impl Origin {
    /// The origin as text (calls the [`OriginSource`] if there is one).
    pub fn describe(&self) -> String {
        match self {
            Origin::Unknown => String::new(),
            Origin::Rust(location) => format!("{}:{}", location.file(), location.line()),
            Origin::Static(text) => (*text).to_owned(),
            Origin::Text(text) => text.to_string(),
            Origin::Source(source) => source.describe(),
            Origin::Interned(source) => source.describe(),
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
