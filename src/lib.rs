//! A signal-safe table of owned file descriptors with masked critical
//! sections.
//!
//! A program that owns file descriptors and wants all of them closed no
//! matter what (on Ctrl-C, before it execs another program, in a fork child)
//! usually keeps a global set of them. That set has three hidden
//! concurrencies, and each one is a bug:
//!
//! 1. **Threads** close their descriptors while another thread walks the set.
//! 2. **Signals**: a handler runs between `close(2)` and "remove from set",
//!    and sees a dead descriptor still registered (or, in the other order, a
//!    live one missing).
//! 3. **Destructors**: a handle dropped inside a walk's callback mutates the
//!    set being walked.
//!
//! Plus fd-number recycling (a stale entry must never close a number someone
//! else now owns), `close(2)` errors, and fork in a threaded program.
//!
//! [`FdTable`] makes each of those impossible: it is a lock-free array of
//! atomic slots indexed by fd number; every close-and-unregister runs inside a
//! [`MaskGuard`] that blocks asynchronous signals on the calling thread; walks
//! pin the slot they visit so a close from anywhere is deferred until the
//! callback returns; and [`FdTable::close_all`] retires descriptors without
//! giving their numbers back while handles still exist.
//!
//! # Quick start
//! ```
//! use fdtable::FdTable;
//! use std::fs::File;
//!
//! let table = FdTable::global();
//! let log = table.track(File::create(std::env::temp_dir().join("fdtable-doc.log"))?)?;
//! let null = table.track(File::open("/dev/null")?)?;
//!
//! let mut open = 0;
//! table.for_each(|_fd| open += 1);
//! assert!(open >= 2);
//!
//! null.close()?;                     // masked close + unregister
//! let report = table.close_all();    // e.g. on Ctrl-C: release everything now
//! assert!(report.released() >= 1);
//! drop(log);                         // the reserved number goes back to the kernel
//! # std::fs::remove_file(std::env::temp_dir().join("fdtable-doc.log"))?;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! # Map of the crate
//! - [`table`](FdTable): the slot array, `track`, `for_each`, `close_all`
//!   (`src/table.rs`; the slot state machine is `src/slot.rs`).
//! - [`Tracked`] and [`TrackError`]: the owning handle (`src/tracked.rs`).
//! - [`MaskGuard`]: the signal mask (`src/mask.rs`).
//! - [`Interrupts`], [`InterruptsBuilder`], [`Received`]: Ctrl-C (and other
//!   termination signals) as events on a pollable self-pipe, with the
//!   "second Ctrl-C kills" and "die by the signal" conventions
//!   (`src/interrupts.rs`; `examples/ctrlc_cleanup.rs` shows the whole
//!   pattern).
//! - [`CommandExt`], [`FdTable::close_all_in_child`] and
//!   [`FdTable::retire_all_in_child`]: the fork/exec child path, lock-free
//!   and allocation-free (`src/child/`).
//! - [`quarantine`]: opt-in mode that runs every asynchronous signal handler
//!   on one thread, so guards elsewhere cost no syscall (`src/quarantine.rs`).
//! - Raw syscalls live in `src/sys.rs`; atomics behind a `loom` seam in
//!   `src/sync.rs`.
//!
//! # Async-signal-safety
//! Each function's documentation says whether it may be called from a signal
//! handler or a fork child. In short: [`FdTable::contains`], [`FdTable::len`],
//! [`FdTable::is_empty`], [`FdTable::swallowed_close_errors`],
//! [`FdTable::close_all_in_child`], [`FdTable::retire_all_in_child`], the
//! [`CommandExt`] hook, [`MaskGuard`], [`Interrupts::die_by_signal`] and
//! [`Interrupts::try_recv`] may; anything that runs your code or allocates
//! may not.
//!
//! # Limitations
//! - Unix only; Linux first. Elsewhere `close_all` uses a closed pipe end as
//!   its placeholder.
//! - A descriptor closed behind the table's back (raw `close` on a tracked
//!   number) cannot be detected before its handle closes it (`EBADF`).
#![cfg(unix)]
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(missing_debug_implementations, rust_2018_idioms)]

mod child;
mod counter;
mod interrupts;
mod mask;
pub mod quarantine;
mod slot;
mod sync;
mod sys;
mod table;
mod tracked;

pub use child::CommandExt;
pub use interrupts::{Interrupts, InterruptsBuilder, Received};
pub use mask::MaskGuard;
pub use table::{CloseAllReport, FdTable};
pub use tracked::{TrackError, Tracked};

/// The README's Rust snippets, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
