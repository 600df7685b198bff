//! The fork/exec path: what runs in a child between `fork` and `execve`
//! (or instead of `execve`), without a lock or an allocation.
//!
//! After `fork(2)` in a threaded program only the forking thread exists in
//! the child. Any lock another thread held at that instant stays held for
//! good, and `malloc` may be one of them. So between `fork` and `execve` the
//! child may only make async-signal-safe calls (`signal-safety(7)`).
//! Everything users need to know about that is in the public docs of
//! [`ChildFds`], [`CommandExt`], [`FdTable::close_all_in_child`] and
//! [`FdTable::retire_all_in_child`].
//!
//! # How the parts fit
//! A [`ChildFds`] is built in the parent: each `pass_fd` duplicates its
//! descriptor at once (the first step of the two-step placement: no
//! duplicate sits on another mapping's target). [`CommandExt::child_fds`]
//! freezes it into a plan owned by one `pre_exec` closure. In the child
//! the hook proves it runs in a spawn child (std's exec-error channel), then
//! in Go's order blocks signals, resets this crate's handlers, places the
//! descriptors (the second step: one `dup2` each), closes the tracked
//! numbers in runs, marks the rest close-on-exec, restores the mask, and,
//! for socket activation, execs the program itself. Every syscall, and
//! every difference between systems, is in `src/sys/`. The file map is
//! `docs/contributing.md`.
//!
//! # Why the child can trust the table
//! The table publishes a number only after it is open and close-on-exec, and
//! unpublishes it before `close(2)` (the ordering rule in `table.rs`). A fork can happen at
//! any instant, but at every instant "published" implies "open and owned by
//! the table" in the parent's memory. So the child never closes a number it
//! does not own: not stdio, not the caller's other descriptors, and not the
//! close-on-exec socket std uses to report a failed `execve` back to the
//! parent (closing that one would make `spawn` of a missing program return
//! `Ok`). A child forked while *other* threads churn descriptors can still
//! find a published number naming a file it does not own: see the
//! fork-copy window below (users read it in [`CommandExt`]'s docs).
//!
//! # Internal details
//! Whether `close_range` (and its `CLOSE_RANGE_CLOEXEC` flag) works is asked
//! once, in the parent, when a command is given its `ChildFds` (probes that touch no
//! descriptor), and cached in atomics that children inherit. A child that is
//! then refused (`ENOSYS`, `EPERM`; a seccomp filter installed by an earlier
//! hook, say) records it in its own copy and falls back. Tests force the
//! fallbacks exactly that way, with seccomp filters in the child: the crate
//! has no switch for it.
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

mod activation;
mod child_fds;
mod close;
mod close_other;
mod fork;
mod hook;
mod pass;
mod probe;
mod proof;
mod run;
#[cfg(feature = "tokio")]
mod tokio_command;

#[cfg(doc)]
use crate::FdTable;

pub use child_fds::ChildFds;
pub use hook::CommandExt;
