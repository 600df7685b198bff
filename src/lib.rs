//! A signal-safe table of owned file descriptors.
//!
//! A program that owns file descriptors wants all of them closed no matter
//! what: on Ctrl-C, before it runs another program, in a fork child. The
//! obvious global set of descriptors has three hidden concurrencies, each a
//! bug: threads close descriptors while another walks the set; a signal
//! handler runs between `close(2)` and "remove from set"; a handle dropped
//! inside a walk changes the set being walked. Plus the kernel recycles
//! numbers, `close(2)` can fail, and a fork child of a threaded program may
//! take no lock and allocate nothing. This crate makes each of those
//! impossible by construction.
//!
//! # What to use
//! - **Owning descriptors:** [`FdTable::global`] (or a `static` of your
//!   own, [`FdTable::new`] is `const`) and [`FdTable::track`], which takes
//!   any [`Trackable`] (std's `File`, sockets, pipes, child stdio; tokio's
//!   with the `tokio` feature) and gives back a [`Tracked`] handle:
//!   `Deref`, `Read`/`Write`, closed on drop. On shutdown,
//!   [`FdTable::seal`] then [`FdTable::close_all`]: every descriptor any
//!   thread tracked is released at once, even under threads still using
//!   it, and the [`CloseAllReport`] says exactly what was.
//! - **Ctrl-C:** [`Interrupts::install`] turns SIGINT (or, through
//!   [`Interrupts::builder`], SIGTERM and others: [`Signal`]) into events
//!   on a pipe: [`try_recv`](Interrupts::try_recv),
//!   [`recv`](Interrupts::recv), [`wait_readable`](Interrupts::wait_readable)
//!   (this descriptor, or a signal), then [`Interrupts::die_by_signal`] so
//!   the shell sees the real cause. A second Ctrl-C kills a stuck cleanup.
//!   With the `tokio` feature, `AsyncInterrupts` awaits the same events.
//! - **Spawning programs:** a [`ChildFds`] says what a program gets
//!   (descriptors at chosen numbers, none of a table's, nothing else, or
//!   systemd-style socket activation), handed over with
//!   [`CommandExt::child_fds`]; [`CommandExt::close_tracked_fds`] keeps a
//!   table's descriptors out of a spawn at no cost. In a child you fork
//!   yourself: [`FdTable::close_all_in_child`],
//!   [`FdTable::retire_all_in_child`].
//! - **Masking signals yourself:** [`MaskGuard`].
//!
//! # Example
//! A handle kept in a struct lives as long as the table, here the global
//! one: `Tracked<'static, File>`.
//! ```
//! use fdtable::{FdTable, Tracked};
//! use std::fs::File;
//! use std::io::Write;
//!
//! struct Logger {
//!     file: Tracked<'static, File>,
//! }
//!
//! let path = std::env::temp_dir().join(format!("fdtable-doc-{}.log", std::process::id()));
//! let table = FdTable::global();
//! let mut logger = Logger { file: table.track(File::create(&path)?)? };
//! writeln!(logger.file, "started")?;          // through the handle
//!
//! // On Ctrl-C, say: nothing tracked after this escapes, everything now released.
//! table.seal();
//! let report = table.close_all();
//! assert!(report.released() >= 1);
//! assert!(writeln!(logger.file, "too late").is_err()); // the file is gone
//! drop(logger);                                  // the number goes back to the kernel
//! # std::fs::remove_file(&path)?;
//! # Ok::<(), std::io::Error>(())
//! ```
//! The README has three complete programs (a Ctrl-C cleanup CLI, a tokio
//! server, a socket-activation supervisor); `docs/guide.md` walks through
//! the API and its conventions.
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
