//! The fork/exec path: closing tracked descriptors in a child without a lock
//! or an allocation.
//!
//! After `fork(2)` in a threaded program only the forking thread exists in
//! the child. Any lock another thread held at that instant stays held for
//! good, and `malloc` may be one of them. So between `fork` and `execve` the
//! child may only make async-signal-safe calls (`signal-safety(7)`). This
//! module is the part of the crate that runs there:
//!
//! - [`FdTable::close_all_in_child`] closes every number the table holds,
//!   reading the slot array with plain atomic loads and coalescing runs of
//!   consecutive numbers into one `close_range(2)` call.
//! - [`CommandExt`] installs that as a `pre_exec` hook on
//!   [`std::process::Command`], in Go's order: block signals, put the signals
//!   this crate handles back to their default disposition, close, restore the
//!   mask. The new program never starts with signals blocked by us nor with
//!   our handlers.
//! - [`FdTable::retire_all_in_child`] is for children that do *not* exec
//!   (prefork workers, daemons): it releases the files but keeps the numbers
//!   reserved, so the handles the child inherited stay safe to drop.
//!
//! # Why the child can trust the table
//! The table publishes a number only after it is open and close-on-exec, and
//! unpublishes it before `close(2)` (the ordering rule in `table.rs`). So in
//! the parent, at every instant, "published" implies "open and owned by the
//! table", and a child never closes a number its forking thread owns: not
//! stdio, not the caller's other descriptors, and not the close-on-exec pipe
//! std uses to report a failed `execve` back to the parent (closing that one
//! would make `spawn` of a missing program return `Ok`). A child forked
//! while *other* threads churn descriptors can still find a published number
//! naming a file it does not own: see the internal details below.
//!
//! # Examples
//! ```
//! use fdtable::{CommandExt, FdTable};
//! use std::process::Command;
//!
//! static TABLE: FdTable = FdTable::new();
//! let secret = TABLE.track(std::fs::File::open("/dev/null")?)?;
//!
//! let status = Command::new("true").close_tracked_fds(&TABLE).status()?;
//! assert!(status.success());
//! # drop(secret);
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! # Limitations
//! - `close_range(2)` is used on Linux only; other systems close one number
//!   at a time.
//! - The hook skips descriptors 0-2 (see [`CommandExt`]); call
//!   [`FdTable::close_all_in_child`] yourself for a child that must not keep
//!   tracked stdio.
//!
//! # Internal details
//! Whether `close_range` works is asked once, in the parent, when a hook is
//! installed (a probe that cannot close anything), and cached in an atomic
//! that children inherit. A child that is then refused (`ENOSYS`, `EPERM`)
//! records it in its own copy and falls back to `close(2)`.
//!
//! `fork(2)` does not copy a threaded process atomically: Linux copies the
//! descriptor table first and the memory afterwards, page by page, while the
//! other threads keep running. So the child's copy of the table can disagree
//! with its descriptor table, in two ways:
//!
//! - A number published in the child's memory may name another file in the
//!   child's descriptor table. Between the two copies another thread may
//!   close an untracked number `N` (the child keeps the old file at `N`) and
//!   a third open a new file at `N` and track it (the child's memory shows
//!   `N` published). The child then closes, or retires, that old, foreign
//!   file at `N`: in the child only, the parent is not affected, but it is
//!   not the table's file. (If nothing was open at `N` when the descriptor
//!   table was copied, the close is a harmless `EBADF`.)
//! - An entry unpublished and closed in that window stays open in the child,
//!   untracked, close-on-exec unless someone cleared the flag.
//!
//! What the child can promise: it never touches a number its forking thread
//! owns, such as std's exec-error pipe (that thread is inside `fork` for the
//! whole window, so no other thread can reuse its numbers), nor a descriptor
//! that was open before the fork began and stayed open through it. The
//! placeholder `retire_all_in_child` swaps in is opened long before any fork
//! (by the first `track`) and checked in the child before use, so it cannot
//! itself be one of those numbers.
//!
//! Narrowing the window further was considered and left out: a lock that
//! `track` takes and a `pthread_atfork` handler holds across `fork` (Go's
//! `ForkLock`) costs every `track` and does not cover a raw `fork` syscall;
//! recording each file's `(st_dev, st_ino)` at `track` time to compare in
//! the child costs an `fstat` per `track`, 16 more bytes per slot and an
//! `fstat` per number in the child (no more `close_range` runs); checking
//! `FD_CLOEXEC` in the child (every published number has it) catches only
//! foreign files without the flag, which std never creates.

mod close;
mod fork;
mod hook;

use std::sync::atomic::Ordering;

use crate::signals::HANDLED_SIGNALS;
use crate::sys;

#[doc(hidden)]
pub use close::force_close_fallback;
pub use hook::CommandExt;

/// Put every signal this crate has a handler for back to `SIG_DFL`, in a
/// child about to `exec` (which would do the same to a caught signal). Not
/// for a child that goes on running: signal-hook's registry would still
/// believe its handler installed, and never run an action registered later.
/// Async-signal-safe: one atomic load and at most 64 `sigaction(2)` calls.
pub(crate) fn reset_handled_signals() {
    let handled = HANDLED_SIGNALS.load(Ordering::Acquire);
    for bit in 0..64 {
        if handled & (1 << bit) != 0 {
            // EINVAL for a number the kernel does not know: nothing to undo.
            let _ = sys::set_default_disposition(bit + 1);
        }
    }
}
