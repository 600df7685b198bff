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
//! unpublishes it before `close(2)` (`DESIGN.md` §4.1). A fork can happen at
//! any instant, but at every instant "published" implies "open and owned by
//! the table". So the child never closes a number it does not own: not
//! stdio, not the caller's other descriptors, and not the close-on-exec pipe
//! std uses to report a failed `execve` back to the parent (closing that one
//! would make `spawn` of a missing program return `Ok`).
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
//! other threads keep running. So a child may see a number published that
//! another thread opened after the descriptor table was copied (the child
//! never had it: closing it is a harmless `EBADF`), or miss one that was
//! unpublished and closed meanwhile (it stays open in the child, with
//! `FD_CLOEXEC` unless someone cleared it). What the child can never do is
//! close a number its forking thread owns, such as std's exec-error pipe:
//! that thread is inside `fork` for the whole window and keeps the number
//! open, so no other thread can publish it.

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
