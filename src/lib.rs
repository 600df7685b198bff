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
//! assert_eq!(report.released(), 1);  // `log`: exactly what it released
//! drop(log);                         // the reserved number goes back to the kernel
//! # std::fs::remove_file(std::env::temp_dir().join("fdtable-doc.log"))?;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! # Map of the crate
//! - [`table`](FdTable): the slot array, `track`, `for_each`
//!   (`src/table.rs`; the slot state machine is `src/slot.rs`, the chunk
//!   geometry `src/chunks.rs`, pins and what waits for them
//!   `src/pins.rs`, the walks' per-thread visit list `src/visits.rs`, the
//!   striped live count behind `len` `src/counter.rs`);
//!   `close_all` and its [`CloseAllReport`]
//!   (`src/retire.rs`) with the process-wide dead placeholder
//!   (`src/placeholder.rs`).
//! - [`Trackable`] and [`FdKind`]: what `track` accepts (std's descriptor
//!   types, or your own by an `unsafe impl`) and what `close_all` may do to
//!   it (`src/trackable.rs`).
//! - [`Tracked`] and [`TrackError`]: the owning handle (`src/tracked.rs`).
//! - [`MaskGuard`]: the signal mask (`src/mask.rs`).
//! - [`Interrupts`], [`InterruptsBuilder`], [`Received`], [`Signal`] (and
//!   [`UnsupportedSignal`], the error for any other number),
//!   [`WaitOutcome`], [`ForegroundChild`], [`CloseHandle`]: Ctrl-C (and
//!   other termination signals) as events on a pollable self-pipe, with one
//!   process-wide "second Ctrl-C kills" policy, "die by the signal", a wait
//!   for "this descriptor or an interrupt", a scope that leaves Ctrl-C to an
//!   interactive child, and a handle that releases a thread blocked in a
//!   receive (`src/signals/`, whose `mod.rs` maps its files;
//!   `examples/ctrlc_cleanup.rs`,
//!   `examples/read_lines.rs` and `examples/foreground_child.rs` show the
//!   patterns).
//! - With the `tokio` feature: `AsyncInterrupts`, the receives as futures
//!   (`src/signals/async_recv.rs`); [`Trackable`] for tokio's descriptor
//!   types, each with the [`FdKind`] that keeps tokio's registration intact
//!   (`src/tokio_types.rs`); `AsyncRead`/`AsyncWrite` on [`Tracked`]
//!   (`src/tracked.rs`); [`CommandExt`] on `tokio::process::Command`
//!   (`src/child/tokio_command.rs`). See the README's "Async (tokio)" for the
//!   pattern; `examples/async_cleanup.rs` shows it.
//! - [`ChildFds`] and [`CommandExt`], [`FdTable::close_all_in_child`] and
//!   [`FdTable::retire_all_in_child`]: the fork/exec child path, lock-free
//!   and allocation-free (`src/child/`, whose `mod.rs` maps its files: the
//!   value `child_fds.rs`, the hook `run.rs` and its spawn proof
//!   `proof.rs`, `pass_fd` placement `pass.rs`, ...).
//! - [`quarantine`]: opt-in mode that runs every asynchronous signal handler
//!   on one thread, so guards elsewhere cost one cheap syscall instead of a
//!   pair (`src/quarantine.rs`).
//! - Every raw syscall, and every difference between operating systems,
//!   lives in `src/sys/` (whose `mod.rs` maps its files: one module per
//!   platform family, `linux/`, `apple.rs`, `bsd.rs`, `solarish.rs`,
//!   `other.rs`, chosen at compile time, plus the calls every Unix shares);
//!   what holds on which system is in `docs/platforms.md`. The slot state
//!   machine's atomics, which `--cfg fdtable_loom` swaps for loom's
//!   model-checked ones, are in `src/sync.rs`.
//!
//! # Async-signal-safety
//! Each function's documentation says whether it may be called from a signal
//! handler or a fork child. In short: [`FdTable::contains`], [`FdTable::len`],
//! [`FdTable::is_empty`], [`FdTable::seal`], [`FdTable::is_sealed`],
//! [`FdTable::swallowed_close_errors`],
//! [`FdTable::close_all_in_child`], [`FdTable::retire_all_in_child`], the
//! [`CommandExt`] hook, [`MaskGuard`], [`Interrupts::die_by_signal`],
//! [`Interrupts::try_recv`], [`Interrupts::is_armed`], [`Interrupts::disarm`],
//! [`Interrupts::disable_default_after_drop_globally`],
//! [`Interrupts::is_closed`], [`CloseHandle::close`],
//! [`CloseHandle::is_closed`], [`Received`]'s accessors, dropping a
//! [`ForegroundChild`] and, with the `tokio` feature,
//! `AsyncInterrupts::try_recv` and `AsyncInterrupts::get_ref` may; anything
//! that runs your code, blocks, allocates or awaits may not.
//!
//! # Limitations
//! - Unix only; Linux first: CI builds and runs everything on Linux, and
//!   only type-checks macOS, FreeBSD, NetBSD and illumos. What holds where
//!   (and which fallback each system takes) is in `docs/platforms.md`; in
//!   short: elsewhere (and on Linux without a usable `/proc`) `close_all`
//!   uses a pipe's read end, write end closed, as its placeholder (reads
//!   through a retired handle see end-of-file); on Apple systems (no
//!   `pipe2`, no `dup3`) the self-pipe and the swap each have a short
//!   close-on-exec window against another thread's `fork` + `exec`;
//!   [`Received::sender_pid`] is `None` off Linux and Android.
//! - `close_all` cannot release a tracked number at or above a lowered soft
//!   `RLIMIT_NOFILE` (`dup3` refuses it); it reports it by number and limit.
//! - A descriptor closed behind the table's back (raw `close` on a tracked
//!   number) cannot be detected before its handle closes it (`EBADF`).
//! - The first `track` (or the first [`ChildFds::pass_fd`], whose
//!   duplicate is tracked) opens one descriptor
//!   that stays open for the life of the process: the dead placeholder
//!   `close_all` swaps in (see [`FdTable`]'s Resources).
//! - [`Tracked::into_inner`] panics when called from the `for_each` callback
//!   that is visiting its entry (it would wait for itself);
//!   [`Tracked::try_into_inner`] and [`Tracked::close`] are the ways out
//!   there.
//!
//! # Minimum supported Rust version
//! The library builds with Rust 1.87 or newer (`rust-version` in
//! `Cargo.toml`; std's `PipeReader`/`PipeWriter` need it). Raising it is
//! not a breaking change before 1.0, and is said in the changelog. The
//! crate's own tests, examples and benches need 1.88 (a dev-dependency,
//! proptest 1.12, does).
#![cfg(unix)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(missing_debug_implementations, rust_2018_idioms)]

mod child;
mod chunks;
mod counter;
mod mask;
mod pins;
mod placeholder;
pub mod quarantine;
mod retire;
mod signals;
mod slot;
mod sync;
mod sys;
mod table;
#[cfg(feature = "tokio")]
mod tokio_types;
mod trackable;
mod tracked;
mod visits;

pub use child::{ChildFds, CommandExt};
pub use mask::MaskGuard;
pub use retire::CloseAllReport;
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub use signals::AsyncInterrupts;
pub use signals::{
    CloseHandle, ForegroundChild, Interrupts, InterruptsBuilder, Received, Signal,
    UnsupportedSignal, WaitOutcome,
};
pub use table::FdTable;
pub use trackable::{FdKind, Trackable};
pub use tracked::{TrackError, Tracked};

// What the docs promise about threads, checked at compile time.
const _: () = {
    const fn send_sync<T: Send + Sync + ?Sized>() {}
    send_sync::<FdTable>();
    send_sync::<Tracked<'static, std::fs::File>>();
    send_sync::<CloseAllReport>();
    send_sync::<Interrupts>();
    send_sync::<ForegroundChild<'static>>();
    send_sync::<ChildFds>();
    send_sync::<CloseHandle>();
    #[cfg(feature = "tokio")]
    send_sync::<AsyncInterrupts>();
    #[cfg(feature = "tokio")]
    send_sync::<Tracked<'static, tokio::net::TcpStream>>();
};

/// The README's Rust snippets, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
