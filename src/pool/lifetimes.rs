//! Lifetimes shorter than the pool's: `clear`, scopes (`mark` /
//! `release_to`), cleanup callbacks, and a limit on live bytes.
//!
//! All of it lives in one box that a pool makes on first use, so a pool that
//! uses none of it pays one predictable branch per `alloc`, `free` and
//! `realloc`, and no memory per block.
//!
//! Scopes record the blocks allocated while they are open, in a set per open
//! scope (the innermost one takes new blocks). A block allocated before a
//! mark is in no set of a later scope, so `release_to` never touches it, even
//! when `realloc` moved it inside the scope; a block of a scope moved by
//! `realloc` keeps its scope under its new address.
//!
//! Releasing (by `clear`, `release_to` or the pool's end) runs the cleanups
//! first, newest first, while the blocks are still live. Pools shared with C
//! or Python run them outside their lock (see [`SharedPool`]), with the pool
//! marked as releasing: every call that would change it then fails with
//! [`PoolError::Releasing`] instead of deadlocking or freeing memory the
//! release is about to free.
//!
//! [`SharedPool`]: super::shared::SharedPool

use std::ffi::c_void;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use rustc_hash::FxHashSet;

use super::error::PoolError;
use super::{block_bytes, no_room_for, Pool};
use crate::fallible::try_box;

/// `void (*)(void *)`: a cleanup callback, called once with its data.
pub type CleanupFn = unsafe extern "C" fn(*mut c_void);

/// A point in a pool's life, from [`Pool::mark`]: [`Pool::release_to`] frees
/// every block allocated since (and runs the cleanups added since).
///
/// Marks are unique in the process (never 0), so a mark of another pool, or
/// one already released, is refused with [`PoolError::BadMark`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Mark(usize);

/// The next mark to hand out, for every pool of the process.
static NEXT_MARK: AtomicUsize = AtomicUsize::new(1);

impl Mark {
    /// The mark as a number (for C and Python, which pass it back).
    pub fn to_raw(self) -> usize {
        self.0
    }

    /// The mark a number stands for; a number no pool handed out is simply
    /// a mark no pool knows.
    pub fn from_raw(raw: usize) -> Mark {
        Mark(raw)
    }
}

/// One registered cleanup.
#[derive(Debug)]
pub(crate) struct Cleanup {
    func: CleanupFn,
    data: *mut c_void,
}

// SAFETY: `Pool::add_cleanup`'s callers promise that `func` may be called
// with `data` from any thread that uses the pool, which is all that sending
// the pair along with the pool allows.
unsafe impl Send for Cleanup {}

/// Cleanups taken out of a pool to be run, newest first.
#[derive(Debug, Default)]
#[must_use = "cleanups taken out of a pool must be run"]
pub(crate) struct Cleanups(Vec<Cleanup>);

impl Cleanups {
    /// Calls each cleanup once, the newest first.
    pub(crate) fn run(self) {
        for cleanup in self.0.into_iter().rev() {
            // SAFETY: `Pool::add_cleanup`'s caller promised `func` may be
            // called once with `data` when the pool releases; the entry was
            // taken out of the pool, so this is its one call.
            unsafe { (cleanup.func)(cleanup.data) };
        }
    }
}

/// What a release releases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Release {
    /// Every block and every cleanup ([`Pool::clear`]).
    Clear,
    /// The blocks and cleanups of the scopes from a mark on.
    ToMark(Mark),
    /// Only the cleanups: the pool is about to drop, which frees the blocks.
    Drop,
}

/// An open scope: the blocks allocated and cleanups added while it was the
/// innermost one.
#[derive(Debug)]
struct Scope {
    mark: Mark,
    blocks: FxHashSet<usize>,
    cleanups: Vec<Cleanup>,
}

/// A pool's scopes, cleanups and limit (boxed in the pool on first use).
#[derive(Debug, Default)]
pub(super) struct Lifetimes {
    /// Live bytes allowed (0: no limit).
    limit: usize,
    /// Open scopes, outermost first.
    scopes: Vec<Scope>,
    /// Cleanups added while no scope was open.
    cleanups: Vec<Cleanup>,
    /// The pool's cleanups are running: the pool refuses changes.
    releasing: bool,
}

impl Lifetimes {
    fn check_usable(&self) -> Result<(), PoolError> {
        if self.releasing {
            Err(PoolError::Releasing)
        } else {
            Ok(())
        }
    }

    /// `LimitExceeded` if `live - freed + requested` bytes would pass the limit.
    fn check_limit(&self, live: usize, freed: usize, requested: usize) -> Result<(), PoolError> {
        let after = (live - freed).checked_add(requested);
        if self.limit != 0 && after.is_none_or(|after| after > self.limit) {
            return Err(PoolError::LimitExceeded {
                limit: self.limit,
                live,
                requested,
            });
        }
        Ok(())
    }

    fn is_idle(&self) -> bool {
        self.limit == 0 && self.scopes.is_empty() && self.cleanups.is_empty() && !self.releasing
    }

    /// The position of `mark` among the open scopes.
    fn scope_of(&self, mark: Mark) -> Result<usize, PoolError> {
        self.scopes
            .iter()
            .rposition(|scope| scope.mark == mark)
            .ok_or(PoolError::BadMark { mark: mark.0 })
    }

    /// The open scope holding the block at `addr`.
    fn scope_holding(&mut self, addr: usize) -> Option<&mut Scope> {
        self.scopes
            .iter_mut()
            .rev()
            .find(|scope| scope.blocks.contains(&addr))
    }

    /// The cleanups of the scopes from `from` on, in the order they were
    /// added, and with `with_pool_level` the pool's own ones before them.
    /// `OutOfMemory`, taking nothing, if there is no room to list them.
    fn take_cleanups(&mut self, from: usize, with_pool_level: bool) -> Result<Cleanups, PoolError> {
        let scoped: usize = self.scopes[from..].iter().map(|s| s.cleanups.len()).sum();
        let mut taken = Vec::new();
        if with_pool_level {
            taken = std::mem::take(&mut self.cleanups);
        }
        if let Err(err) = taken.try_reserve_exact(scoped) {
            if with_pool_level {
                self.cleanups = taken;
            }
            return Err(out_of_memory(err));
        }
        for scope in &mut self.scopes[from..] {
            taken.append(&mut scope.cleanups);
        }
        Ok(Cleanups(taken))
    }
}

/// A failed `try_reserve` of the scopes' or cleanups' lists.
fn out_of_memory<T>(_: T) -> PoolError {
    PoolError::OutOfMemory {
        bytes: std::mem::size_of::<usize>(),
    }
}

impl Pool {
    /// The box, made on first use (`OutOfMemory` if it cannot be).
    fn lifetimes_mut(&mut self) -> Result<&mut Lifetimes, PoolError> {
        let lifetimes = &mut self.extras_mut()?.lifetimes;
        match lifetimes {
            Some(lt) => Ok(lt),
            None => {
                Ok(lifetimes
                    .insert(try_box(Lifetimes::default()).map_err(no_room_for::<Lifetimes>)?))
            }
        }
    }

    /// The box, if the pool has one.
    fn lifetimes_if_any(&mut self) -> Option<&mut Lifetimes> {
        self.extras.as_deref_mut()?.lifetimes.as_deref_mut()
    }

    /// The box, for the block paths that took the lifetimes branch.
    fn lifetimes_in_use(&mut self) -> &mut Lifetimes {
        self.lifetimes_if_any()
            .expect("the lifetimes branch runs with the box")
    }

    /// Drops the box when nothing in it is in use, which puts the block
    /// paths back on their fast branch.
    fn shed_lifetimes(&mut self) {
        if let Some(extras) = self.extras.as_deref_mut() {
            if extras.lifetimes.as_ref().is_some_and(|lt| lt.is_idle()) {
                extras.lifetimes = None;
            }
        }
        self.shed_extras();
    }

    /// `Releasing` while the pool runs its cleanups.
    pub(super) fn check_not_releasing(&self) -> Result<(), PoolError> {
        self.extras()
            .lifetimes
            .as_ref()
            .map_or(Ok(()), |lt| lt.check_usable())
    }

    /// Whether the pool is running its cleanups.
    pub fn is_releasing(&self) -> bool {
        self.extras()
            .lifetimes
            .as_ref()
            .is_some_and(|lt| lt.releasing)
    }

    /// The most bytes the pool's live blocks may hold (`None`: no limit).
    pub fn limit(&self) -> Option<usize> {
        self.extras()
            .lifetimes
            .as_ref()
            .map(|lt| lt.limit)
            .filter(|&limit| limit != 0)
    }

    /// Limits the bytes in live blocks (`None` or `Some(0)`: no limit). An
    /// `alloc` or `realloc` that would pass it fails with
    /// [`PoolError::LimitExceeded`] and changes nothing. A limit below the
    /// live bytes refuses every allocation until enough is freed.
    /// `OutOfMemory` (nothing changed) if no memory is left for the
    /// bookkeeping of limits, scopes and cleanups, made on first use.
    pub fn set_limit(&mut self, limit: Option<usize>) -> Result<(), PoolError> {
        let limit = limit.unwrap_or(0);
        // A limit shows in reports: a deferred pool registers first.
        let record = if limit != 0 {
            self.registered()?
        } else {
            self.stats
        };
        if limit != 0 || self.extras().lifetimes.is_some() {
            self.lifetimes_mut()?.limit = limit;
        }
        self.shed_lifetimes();
        record.set_limit(limit);
        Ok(())
    }

    /// Opens a scope: [`Pool::release_to`] with the returned mark frees every
    /// block allocated from now on and runs every cleanup added from now on.
    /// Scopes nest.
    pub fn mark(&mut self) -> Result<Mark, PoolError> {
        self.check_not_releasing()?;
        let lt = self.lifetimes_mut()?;
        lt.scopes.try_reserve(1).map_err(out_of_memory)?;
        let mark = Mark(NEXT_MARK.fetch_add(1, Relaxed));
        lt.scopes.push(Scope {
            mark,
            blocks: FxHashSet::default(),
            cleanups: Vec::new(),
        });
        Ok(mark)
    }

    /// Open scopes (marks not yet released).
    pub fn scope_depth(&self) -> usize {
        self.extras()
            .lifetimes
            .as_ref()
            .map_or(0, |lt| lt.scopes.len())
    }

    /// Closes the scope of `mark` and those opened after it: runs their
    /// cleanups (newest first), then frees their blocks. Blocks allocated
    /// before the mark stay, even if `realloc` moved them since.
    ///
    /// Fails, changing nothing, with `BadMark` if `mark` is not open in
    /// this pool (released already, or another pool's), and with
    /// `BlockInUse` if a block allocated since the mark is pinned. In debug
    /// mode, damage found among the freed blocks is returned after all of
    /// them are freed.
    pub fn release_to(&mut self, mark: Mark) -> Result<(), PoolError> {
        self.release_now(Release::ToMark(mark))
    }

    /// Frees every live block and runs every cleanup (newest first, before
    /// the blocks are freed), then forgets the cleanups; the pool stays
    /// usable and open scopes stay open. `size` and `block_count` drop to 0,
    /// the totals go on counting, and the peak stays until `reset_peak`. An
    /// arena keeps its largest chunk for the blocks to come.
    ///
    /// Fails with `BlockInUse`, changing nothing, while a block is pinned.
    /// In debug mode, damage found among the blocks is returned after all of
    /// them are freed.
    pub fn clear(&mut self) -> Result<(), PoolError> {
        self.release_now(Release::Clear)
    }

    /// `begin_release`, the cleanups, `finish_release`, all under `&mut`
    /// (`SharedPool` runs the cleanups between two lock holds instead).
    fn release_now(&mut self, target: Release) -> Result<(), PoolError> {
        match self.begin_release(target)? {
            Some(cleanups) => {
                cleanups.run();
                self.finish_release(target)
            }
            None => Ok(()),
        }
    }

    /// Registers a cleanup: `func(data)` is called once, when the pool is
    /// cleared or dropped, or (if added inside a scope) when that scope is
    /// released; newest first, before the blocks are freed.
    ///
    /// # Safety
    /// `func` may be called once with `data`, on any thread that uses the
    /// pool, at any of those moments. It must not unwind. If it reaches the
    /// pool, only through a [`SharedPool`](super::shared::SharedPool) (which
    /// runs it outside its lock), where changes fail with `Releasing`.
    pub unsafe fn add_cleanup(
        &mut self,
        func: CleanupFn,
        data: *mut c_void,
    ) -> Result<(), PoolError> {
        self.check_not_releasing()?;
        let lt = self.lifetimes_mut()?;
        let list = match lt.scopes.last_mut() {
            Some(scope) => &mut scope.cleanups,
            None => &mut lt.cleanups,
        };
        list.try_reserve(1).map_err(out_of_memory)?;
        list.push(Cleanup { func, data });
        Ok(())
    }

    /// The cleanups waiting to run, as `(func, data)`, oldest first (the
    /// Python binding shows its callables to the garbage collector).
    pub fn cleanups(&self) -> impl Iterator<Item = (CleanupFn, *mut c_void)> + '_ {
        let lt = self.extras().lifetimes.as_deref();
        let pool_level = lt.into_iter().flat_map(|lt| &lt.cleanups);
        let scoped = lt
            .into_iter()
            .flat_map(|lt| &lt.scopes)
            .flat_map(|scope| &scope.cleanups);
        pool_level
            .chain(scoped)
            .map(|cleanup| (cleanup.func, cleanup.data))
    }

    /// The first half of a release: checks it may happen and takes out the
    /// cleanups to run. With no cleanups it does the whole release and
    /// returns `None`; otherwise the pool is left releasing until
    /// [`Pool::finish_release`], which the caller runs after the cleanups.
    pub(crate) fn begin_release(&mut self, target: Release) -> Result<Option<Cleanups>, PoolError> {
        self.check_not_releasing()?;
        // The first scope released, and whether the pool's own cleanups go.
        let (from, whole_pool) = match target {
            Release::ToMark(mark) => {
                let extras = self.extras();
                let lt = extras
                    .lifetimes
                    .as_deref()
                    .ok_or(PoolError::BadMark { mark: mark.0 })?;
                let from = lt.scope_of(mark)?;
                let released = &lt.scopes[from..];
                extras
                    .pins
                    .check_none(|addr| released.iter().any(|s| s.blocks.contains(&addr)))?;
                (from, false)
            }
            Release::Clear => {
                self.extras().pins.check_none(|_| true)?;
                (0, true)
            }
            Release::Drop => (0, true),
        };
        let Some(lt) = self.lifetimes_if_any() else {
            return self.finish_release(target).map(|()| None);
        };
        let cleanups = lt.take_cleanups(from, whole_pool)?;
        if cleanups.0.is_empty() {
            return self.finish_release(target).map(|()| None);
        }
        lt.releasing = true;
        Ok(Some(cleanups))
    }

    /// The second half of a release: frees the blocks.
    pub(crate) fn finish_release(&mut self, target: Release) -> Result<(), PoolError> {
        if let Some(lt) = self.lifetimes_if_any() {
            lt.releasing = false;
        }
        let result = match target {
            Release::Clear => self.free_all_checked(),
            Release::ToMark(mark) => self.free_scopes_from(mark),
            Release::Drop => Ok(()),
        };
        self.shed_lifetimes();
        result
    }

    /// Closes the scope of `mark` and the inner ones, freeing their blocks.
    fn free_scopes_from(&mut self, mark: Mark) -> Result<(), PoolError> {
        let Some(lt) = self.lifetimes_if_any() else {
            return Err(PoolError::BadMark { mark: mark.0 });
        };
        let from = lt.scope_of(mark)?;
        let mut first_damage = None;
        // Innermost first; popped one by one, so nothing is allocated.
        while let Some(scope) = self.lifetimes_in_use().scopes.pop() {
            for addr in scope.blocks {
                // Only debug mode's damage reports can fail here: every
                // address in a scope is a live, unpinned block (checked at
                // the start).
                if let Err(err) = self.free_block(addr as *mut c_void) {
                    first_damage.get_or_insert(err);
                }
            }
            if self.scope_depth() == from {
                break;
            }
        }
        first_damage.map_or(Ok(()), Err)
    }

    /// Every block leaves the scopes (`free_all` released them).
    pub(super) fn forget_scoped_blocks(&mut self) {
        if let Some(lt) = self.lifetimes_if_any() {
            lt.scopes.iter_mut().for_each(|scope| scope.blocks.clear());
        }
    }

    /// Runs the cleanups left when the pool drops, newest first: the open
    /// scopes' from the innermost, then the pool's own (all added before
    /// the outermost open scope opened). One list at a time, so nothing is
    /// allocated.
    pub(super) fn run_cleanups_at_drop(&mut self) {
        if let Some(lt) = self.lifetimes_if_any() {
            for scope in lt.scopes.iter_mut().rev() {
                Cleanups(std::mem::take(&mut scope.cleanups)).run();
            }
            Cleanups(std::mem::take(&mut lt.cleanups)).run();
        }
    }

    /// `alloc` of a pool with a limit, scopes or cleanups.
    #[cold]
    #[inline(never)]
    pub(super) fn alloc_with_lifetimes(
        &mut self,
        number: usize,
        elem_size: usize,
    ) -> Result<std::ptr::NonNull<c_void>, PoolError> {
        let bytes = block_bytes(number, elem_size)?;
        let live = self.size();
        let lt = self.lifetimes_in_use();
        lt.check_usable()?;
        lt.check_limit(live, 0, bytes)?;
        if let Some(scope) = lt.scopes.last_mut() {
            scope.blocks.try_reserve(1).map_err(out_of_memory)?;
        }
        let block = self.alloc_block(number, elem_size)?;
        let lt = self.lifetimes_in_use();
        if let Some(scope) = lt.scopes.last_mut() {
            scope.blocks.insert(block.as_ptr() as usize);
        }
        Ok(block)
    }

    /// `free` of a pool with a limit, scopes or cleanups.
    #[cold]
    #[inline(never)]
    pub(super) fn free_with_lifetimes(&mut self, ptr: *mut c_void) -> Result<usize, PoolError> {
        self.check_not_releasing()?;
        let result = self.free_block(ptr);
        self.leave_scope_if_gone(ptr as usize);
        result
    }

    /// `realloc` of a pool with a limit, scopes or cleanups.
    #[cold]
    #[inline(never)]
    pub(super) fn realloc_with_lifetimes(
        &mut self,
        ptr: *mut c_void,
        new_size: usize,
    ) -> Result<std::ptr::NonNull<c_void>, PoolError> {
        let addr = ptr as usize;
        let old = self.lookup(addr);
        let live = self.size();
        let lt = self.lifetimes_in_use();
        lt.check_usable()?;
        if let Some(old) = old.filter(|&old| new_size > old) {
            lt.check_limit(live, old, new_size)?;
        }
        if let Some(scope) = lt.scope_holding(addr) {
            scope.blocks.try_reserve(1).map_err(out_of_memory)?;
        }
        let grown = self.realloc_block(ptr, new_size);
        match grown {
            Ok(block) => {
                let new_addr = block.as_ptr() as usize;
                let lt = self.lifetimes_in_use();
                if let Some(scope) = lt.scope_holding(addr) {
                    scope.blocks.remove(&addr);
                    // Never allocates: reserved above.
                    scope.blocks.insert(new_addr);
                }
            }
            Err(_) => self.leave_scope_if_gone(addr),
        }
        grown
    }

    /// Takes `addr` out of its scope if it is no longer a live block (a
    /// failed call may still have released it: debug damage, a broken
    /// custom allocator).
    fn leave_scope_if_gone(&mut self, addr: usize) {
        if self.scope_depth() == 0 || self.lookup(addr).is_some() {
            return;
        }
        if let Some(scope) = self
            .lifetimes_if_any()
            .and_then(|lt| lt.scope_holding(addr))
        {
            scope.blocks.remove(&addr);
        }
    }
}
