//! The visits this thread's `for_each` frames have in progress: a list
//! linked through the frames themselves, read to tell this thread's pins
//! from other threads'.
//!
//! `into_inner` must not wait for a visit of its own thread (it would wait
//! for itself), `try_into_inner` and a fork child must know which pins are
//! whose: a slot's pin count alone does not say. One node per visit lives
//! in the `for_each` frame that pinned the slot: no allocation, no
//! destructor, readable from a signal handler or a fork child.

use std::cell::Cell;
use std::os::fd::RawFd;
use std::ptr;

/// Which table a visit is of: its address, compared and never followed (so
/// this module needs nothing of the table's).
pub(crate) type TableId = *const ();

/// One visit in progress: `table`'s entry `fd` of generation `gen`.
pub(crate) struct PinNode {
    table: TableId,
    fd: RawFd,
    gen: u64,
    prev: *const PinNode,
}

impl PinNode {
    /// A node to [`link`] next: it remembers the current head.
    pub(crate) fn new(table: TableId, fd: RawFd, gen: u64) -> PinNode {
        PinNode {
            table,
            fd,
            gen,
            prev: PINS_HELD.with(Cell::get),
        }
    }
}

#[cfg(not(fdtable_loom))]
thread_local! {
    static PINS_HELD: Cell<*const PinNode> = const { Cell::new(ptr::null()) };
}

// loom runs every model thread as a coroutine on one OS thread, so a std
// thread-local would be shared by all of them (and a list linked through
// their stacks would dangle): use loom's per-model-thread storage instead.
#[cfg(fdtable_loom)]
loom::thread_local! {
    static PINS_HELD: Cell<*const PinNode> = Cell::new(ptr::null());
}

/// Make `node`, made by [`PinNode::new`] with no link or unlink since, the
/// head of this thread's list.
///
/// # Safety
/// `node` must stay alive, unmoved, until [`unlink`] removes it, and nodes
/// must be unlinked in the reverse order of linking (as nested stack frames
/// are).
pub(crate) unsafe fn link(node: &PinNode) {
    debug_assert!(ptr::eq(node.prev, PINS_HELD.with(Cell::get)));
    PINS_HELD.with(|head| head.set(node));
}

/// Remove `node`, the head of this thread's list.
///
/// # Safety
/// `node` must be alive and the current head (linked last, not yet
/// unlinked).
pub(crate) unsafe fn unlink(node: *const PinNode) {
    // SAFETY: guaranteed by the caller.
    let prev = unsafe { (*node).prev };
    PINS_HELD.with(|head| head.set(prev));
}

/// How many pins on `(table, fd, gen)` the current thread's walks hold: the
/// visits of `fd` in progress in this thread's `for_each` frames.
/// Async-signal-safe (reads a `const` thread-local and stack memory); in a
/// fork child it reads the forking thread's list, which the child inherits.
pub(crate) fn pins_held_here(table: TableId, fd: RawFd, gen: u64) -> u64 {
    let mut count = 0;
    let mut node = PINS_HELD.with(Cell::get);
    while !node.is_null() {
        // SAFETY: every node in the list lives in a `for_each` frame that is
        // still on this thread's stack; it unlinks itself before it dies.
        let n = unsafe { &*node };
        if ptr::eq(n.table, table) && n.fd == fd && n.gen == gen {
            count += 1;
        }
        node = n.prev;
    }
    count
}
