//! Which process an instance, a record or a foreground scope belongs to.
//!
//! A fork child inherits its parent's memory: its `Interrupts`, the
//! per-signal records, the armed flag. None of it is the child's. A pid
//! alone does not tell them apart for good: once the parent has exited,
//! a descendant may be handed its pid (a double fork that daemonises,
//! pid wrap-around), and would then take the inherited state for its own.
//! So the owner of an instance or a scope is its pid *and* a fork epoch,
//! which a `pthread_atfork` child handler ([`next_epoch`], registered by
//! `handler.rs` before this crate first handles a signal) bumps in every
//! child made by `fork(2)`; the same handler clears the process-wide
//! records of `policy.rs`, which are stamped with a pid only.
//!
//! Children made without the atfork handlers (std's `Command::spawn`,
//! which may use `clone3`/`vfork`, glibc's `_Fork`, a raw `clone`) keep
//! the epoch and the records. The pid still tells them apart from their
//! parent while the parent lives, which covers the time until they `exec`
//! or `_exit`: std's children always do, and other such children must.

use std::sync::atomic::{AtomicU32, Ordering};

/// Bumped in every child of `fork(2)` once the atfork handler is registered.
static EPOCH: AtomicU32 = AtomicU32::new(0);

/// `getpid(2)`. Async-signal-safe.
pub(crate) fn pid() -> libc::pid_t {
    crate::sys::getpid()
}

/// A process, as this crate tells processes apart: pid and fork epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Owner {
    pid: libc::pid_t,
    epoch: u32,
}

impl Owner {
    /// The calling process. Async-signal-safe.
    pub(crate) fn current() -> Owner {
        Owner {
            pid: pid(),
            epoch: EPOCH.load(Ordering::SeqCst),
        }
    }

    /// Whether the calling process is this owner (not a fork child that
    /// inherited its memory, nor a later process with the same pid).
    /// Async-signal-safe.
    pub(crate) fn is_current(self) -> bool {
        self == Owner::current()
    }

    /// The owner's pid. Async-signal-safe.
    pub(crate) fn pid(self) -> libc::pid_t {
        self.pid
    }
}

/// Make the calling process a new owner: every [`Owner`] stamped before
/// (inherited from the parent) stops being [`current`](Owner::current).
/// Called only in a fork child, by the `pthread_atfork` handler.
/// Async-signal-safe (one atomic add).
pub(super) fn next_epoch() {
    EPOCH.fetch_add(1, Ordering::SeqCst);
}
