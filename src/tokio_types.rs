//! [`Trackable`] for tokio's descriptor types (feature `tokio`).
//!
//! tokio registers each of these descriptors with its reactor (epoll on
//! Linux) and requires the number to keep naming the same open file
//! description until it is deregistered. So none of them may ever have a
//! placeholder swapped over it: their kinds are the `Registered*` ones, and
//! [`FdTable::close_all`](crate::FdTable::close_all) acts on them only where
//! that wakes the tasks awaiting them with end-of-file or an error.
//!
//! | type | kind | a task awaiting it after `close_all` |
//! |---|---|---|
//! | `net::TcpStream`, `net::UnixStream` | `RegisteredSocket` | reads end of file (a Unix stream first hands out what was already queued), writes fail (`EPIPE`) |
//! | `net::TcpListener` | `RegisteredSocket` | `accept` fails (`EINVAL`), at every call: an accept loop that retries on errors must stop on it |
//! | `net::UdpSocket`, `net::UnixDatagram`, `net::UnixListener` | `RegisteredOther` | stays pending: cancel it |
//! | `process::ChildStdin`/`ChildStdout`/`ChildStderr`, `net::unix::pipe::Sender`/`Receiver` | `RegisteredOther` | stays pending: cancel it |
//!
//! Datagram sockets and Unix listeners are `RegisteredOther` although they
//! are sockets: on Linux, `shutdown(2)` makes them report readable and
//! "read closed" to epoll for good while a non-blocking `recv`/`accept` on
//! them keeps failing with `EAGAIN`, and tokio's receive loop then retries
//! without end: the awaiting task spins at 100% CPU and never returns
//! (seen with tokio 1.54 on Linux 6.18: `tests/async_close_all.rs` hangs
//! when `UdpSocket` is made `RegisteredSocket`).
//! Pipes cannot be released without a swap at all. Those entries are left
//! open and reported in [`CloseAllReport::errors`](crate::CloseAllReport::errors),
//! so the program cancels the tasks that await them and drops the handles.
//!
//! Track these types, not a std value you register yourself with
//! `AsyncFd::new(tracked)`: that registration keeps the std type's kind, so
//! `close_all` swaps the placeholder in under it (see
//! [`Tracked`](crate::Tracked#registering-a-handle-with-an-async-runtime-yourself)).
//!
//! `tokio::fs::File` is deliberately not `Trackable`: while one of its
//! operations runs on tokio's blocking pool, that operation holds its own
//! reference to the `std::fs::File` inside, so dropping the handle does not
//! close the descriptor (the pool thread closes it later, outside the
//! table), and no synchronous `into_owned_fd` can take ownership of it
//! (only the async `into_std` waits for the operation). Track a
//! `std::fs::File` instead and do its I/O in `tokio::task::spawn_blocking`
//! (`&Tracked<File>` is `Read`, `Write` and `Seek`; share it with an `Arc`),
//! or convert with `tokio::fs::File::into_std().await` first.
//!
//! ```compile_fail
//! # async fn f() -> std::io::Result<()> {
//! let file = tokio::fs::File::open("/dev/null").await?;
//! // error: `tokio::fs::File` cannot be tracked: it does not implement
//! // `fdtable::Trackable` (the note says what to do instead)
//! let tracked = fdtable::FdTable::global().track(file)?;
//! # Ok(())
//! # }
//! ```
//!
//! # Releasing: when deregistration fails
//! Closing a tracked tokio value deregisters it (`into_std`,
//! `into_nonblocking_fd`, `into_owned_fd`) and then closes the number through
//! the table. tokio's deregistration fails only when the number no longer
//! names the registered file description: after someone broke the
//! registration contract (a raw `dup2` or `close` on the number). tokio then
//! closes the number itself and returns the error. Here that error comes out
//! of [`Trackable::try_into_owned_fd`], and the table unregisters the
//! number without closing it a second time: [`Tracked::close`](crate::Tracked::close)
//! returns the error, a drop counts it in
//! [`FdTable::swallowed_close_errors`](crate::FdTable::swallowed_close_errors).
//! [`Trackable::into_owned_fd`] called directly panics in that case (its
//! signature has no room for the error).

use std::io;
use std::os::fd::OwnedFd;

use tokio::net::unix::pipe;
use tokio::net::{TcpListener, TcpStream, UdpSocket, UnixDatagram, UnixListener, UnixStream};
use tokio::process::{ChildStderr, ChildStdin, ChildStdout};

use crate::trackable::{FdKind, Trackable};

/// The descriptor a failed conversion lost, for the one caller that cannot
/// return the error.
#[cold]
#[track_caller]
fn lost(type_name: &str, error: io::Error) -> ! {
    panic!(
        "{type_name}: tokio could not deregister the descriptor and closed it ({error}); \
         the number no longer named the registered file (closed or replaced behind its back)"
    )
}

macro_rules! tokio_trackable {
    ($($kind:ident: $($ty:ty => $convert:ident),+;)*) => {$($(
        // SAFETY: tokio's descriptor types own exactly the descriptor their
        // `as_fd` borrows (the one registered with the reactor, fixed for the
        // value's life). None of their methods reachable through `&T` or
        // `&mut T` (I/O, readiness, `poll_shutdown`, which only shuts a
        // socket's write side down) closes, replaces or gives it away. The
        // conversion deregisters it and hands over that same number, open;
        // if deregistering fails, tokio has closed it and the conversion
        // returns the error (`try_into_owned_fd`) or panics
        // (`into_owned_fd`) instead of handing anything over.
        unsafe impl Trackable for $ty {
            const KIND: FdKind = FdKind::$kind;

            /// # Panics
            /// If tokio cannot deregister the descriptor (see
            /// [`try_into_owned_fd`](Trackable::try_into_owned_fd)).
            fn into_owned_fd(self) -> OwnedFd {
                match Trackable::try_into_owned_fd(self) {
                    Ok(fd) => fd,
                    Err(error) => lost(stringify!($ty), error),
                }
            }

            fn try_into_owned_fd(self) -> io::Result<OwnedFd> {
                self.$convert().map(OwnedFd::from)
            }
        }
    )+)*};
}

tokio_trackable! {
    RegisteredSocket: TcpStream => into_std, TcpListener => into_std, UnixStream => into_std;
    RegisteredOther: UdpSocket => into_std, UnixDatagram => into_std, UnixListener => into_std,
        ChildStdin => into_owned_fd, ChildStdout => into_owned_fd, ChildStderr => into_owned_fd,
        pipe::Sender => into_nonblocking_fd, pipe::Receiver => into_nonblocking_fd;
}
