//! [`Trackable`]: what [`FdTable::track`](crate::FdTable::track) accepts, and
//! [`FdKind`]: what [`FdTable::close_all`](crate::FdTable::close_all) may do
//! to release it.
//!
//! `AsFd` and `Into<OwnedFd>` are safe traits, so safe code could implement
//! them to disagree: `as_fd` borrowing a descriptor the value does not own
//! (stderr, a `static` pipe end) while the conversion hands over another.
//! The table acts on the number `as_fd` names (it sets `FD_CLOEXEC` on it,
//! swaps a placeholder over it in `close_all`, closes it in a fork child), so
//! that would make it act on a foreign descriptor from safe code. `Trackable`
//! is `unsafe` to implement: the implementer promises they agree.

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
use std::process::{ChildStderr, ChildStdin, ChildStdout};

/// What a tracked descriptor is, as far as releasing it is concerned: the
/// hint [`FdTable::close_all`](crate::FdTable::close_all) acts on.
///
/// | kind | what `close_all` does |
/// |---|---|
/// | [`Unknown`](FdKind::Unknown) | `shutdown(SHUT_RDWR)` (fails at once on anything but a socket), then swaps a dead placeholder over the number |
/// | [`Socket`](FdKind::Socket) | the same: `shutdown`, then the swap |
/// | [`NotSocket`](FdKind::NotSocket) | only the swap: no `shutdown` call |
/// | [`RegisteredSocket`](FdKind::RegisteredSocket) | only `shutdown`: the number keeps naming the same socket |
/// | [`RegisteredOther`](FdKind::RegisteredOther) | nothing: left live and open, reported as an error |
///
/// The kind is a hint for *waking and releasing*, never for ownership, and it
/// is not part of [`Trackable`]'s safety contract. A wrong kind costs only
/// what it says: a `File` that wraps a socket (`File::from(OwnedFd)`) is
/// `NotSocket`, so `close_all` swaps it out without the `shutdown` that would
/// have woken a thread blocked in `read` on it; an unnecessary `Socket`
/// costs one failing syscall.
///
/// The `Registered*` kinds are for descriptors registered with an async
/// runtime's reactor (epoll, kqueue): the runtime requires the registered
/// number to keep naming the same open file description until it is
/// deregistered, so `close_all` must not swap it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FdKind {
    /// Not known: `close_all` probes with `shutdown(2)`, which wakes threads
    /// blocked on a socket and fails harmlessly on anything else. The kind of
    /// `OwnedFd`.
    #[default]
    Unknown,
    /// A socket: `close_all` shuts it down before swapping the placeholder in.
    Socket,
    /// Not a socket (a file, a pipe, a device): `close_all` only swaps the
    /// placeholder in. Threads blocked in `read`/`write` on it are not woken
    /// (the blocked call keeps the file alive until it returns).
    NotSocket,
    /// A socket registered with an async runtime: `close_all` shuts it down
    /// (the connection ends, the runtime's waiters wake with end-of-file or
    /// an error) and counts it as released, but the number keeps naming the
    /// same socket until its handle drops.
    ///
    /// Only for sockets whose shutdown wakes waiters that way: stream
    /// sockets and TCP listeners. On Linux a shut-down datagram socket or
    /// Unix listener polls readable for good while `recv`/`accept` keep
    /// failing with `EAGAIN`, so an edge-triggered runtime's retry loop
    /// (tokio's) spins on it: declare those `RegisteredOther`.
    ///
    /// A *listening* socket has no connection to end; on Linux `shutdown`
    /// stops it taking new ones, and what happens to those already queued
    /// depends on the family: a TCP listener stops listening (queued
    /// connections are reset, `accept` fails), while a Unix listener refuses
    /// new connections but still hands out the ones queued before the call
    /// (and, registered, spins an edge-triggered runtime: see below).
    /// Drop such a listener's handle (or cancel the task that accepts) to be
    /// sure nothing more is accepted.
    RegisteredSocket,
    /// Any other descriptor registered with an async runtime: `close_all`
    /// cannot release it without breaking the runtime's registration, so it
    /// leaves it live and open and reports it in
    /// [`CloseAllReport::errors`](crate::CloseAllReport::errors).
    RegisteredOther,
}

impl FdKind {
    /// Every kind, in encoding order (tests).
    #[cfg(test)]
    pub(crate) const ALL: [FdKind; 5] = [
        FdKind::Unknown,
        FdKind::Socket,
        FdKind::NotSocket,
        FdKind::RegisteredSocket,
        FdKind::RegisteredOther,
    ];

    /// Three bits in the slot word.
    pub(crate) const fn to_bits(self) -> u8 {
        match self {
            FdKind::Unknown => 0,
            FdKind::Socket => 1,
            FdKind::NotSocket => 2,
            FdKind::RegisteredSocket => 3,
            FdKind::RegisteredOther => 4,
        }
    }

    pub(crate) const fn from_bits(bits: u8) -> FdKind {
        match bits {
            1 => FdKind::Socket,
            2 => FdKind::NotSocket,
            3 => FdKind::RegisteredSocket,
            4 => FdKind::RegisteredOther,
            _ => FdKind::Unknown,
        }
    }
}

/// A resource that owns exactly one file descriptor and can give it up: what
/// [`FdTable::track`](crate::FdTable::track) accepts.
///
/// Implemented for std's descriptor types: [`File`], [`OwnedFd`],
/// [`TcpStream`](std::net::TcpStream), [`TcpListener`](std::net::TcpListener),
/// [`UdpSocket`](std::net::UdpSocket), [`UnixStream`], [`UnixListener`],
/// [`UnixDatagram`], [`ChildStdin`], [`ChildStdout`], [`ChildStderr`],
/// [`PipeReader`](std::io::PipeReader) and [`PipeWriter`](std::io::PipeWriter).
/// With the `tokio` feature, also for tokio's (see below).
/// For any other type, track an [`OwnedFd`] (every I/O-safe type converts
/// into one), or implement this trait if the type keeps its promises below.
///
/// # With the `tokio` feature
/// tokio registers its descriptors with its reactor, and the registered
/// number must keep naming the same open file description until tokio
/// deregisters it. So tokio's types have the `Registered*` kinds, and
/// [`close_all`](crate::FdTable::close_all) never swaps a placeholder over
/// them; it shuts down only the sockets on which that wakes the waiting
/// tasks:
///
/// | tokio type | [`FdKind`] | a task awaiting it when `close_all` runs |
/// |---|---|---|
/// | `net::TcpStream`, `net::UnixStream` | `RegisteredSocket`: shut down | reads end of file, writes fail (`EPIPE`) |
/// | `net::TcpListener` | `RegisteredSocket`: shut down | `accept` fails (`EINVAL`) |
/// | `net::UdpSocket`, `net::UnixDatagram`, `net::UnixListener` | `RegisteredOther`: left open, reported | stays pending: cancel it |
/// | `net::unix::pipe::{Sender, Receiver}`, `process::{ChildStdin, ChildStdout, ChildStderr}` | `RegisteredOther`: left open, reported | stays pending: cancel it |
///
/// Datagram sockets and Unix listeners are `RegisteredOther` although they
/// are sockets: on Linux a `shutdown(2)` leaves them "read closed" for epoll
/// while `recv`/`accept` keep failing with `EAGAIN`, and tokio's receive
/// loop would spin at 100 % CPU. `tokio::fs::File` is not trackable (an
/// operation in flight on the blocking pool holds its own reference to the
/// file): track a [`File`] and do its I/O in `spawn_blocking`. The guide's
/// "Async programs (tokio)" (`docs/guide.md`) gives the pattern: cancel the
/// tasks, then `close_all` as the safety net, then die by the signal.
///
/// # Safety
/// The table acts on the number [`as_fd`](AsFd::as_fd) names: it sets
/// `FD_CLOEXEC` on it, swaps a placeholder over it in
/// [`close_all`](crate::FdTable::close_all), closes it in a fork child, and
/// lends it to [`for_each`](crate::FdTable::for_each) callbacks. So an
/// implementation promises, for every value `v` of the type:
///
/// 1. `v.as_fd()` always returns the same descriptor, and `v` owns it: no
///    other value closes it, and it is not a borrowed descriptor such as
///    stdio or a `static`'s.
/// 2. [`into_owned_fd`](Trackable::into_owned_fd) returns exactly that
///    descriptor (the same number, not a duplicate), open.
/// 3. Until then, nothing reachable through `&T` or `&mut T` (the type's
///    methods and trait implementations, such as `Read`, `Write` and `Seek`,
///    which [`Tracked`](crate::Tracked) forwards) closes that descriptor,
///    replaces it (`dup2` onto it, swapping a field), or gives its ownership
///    away.
///
/// [`KIND`](Trackable::KIND) is a hint and not part of this contract.
///
/// # Examples
/// A wrapper that owns one descriptor:
/// ```
/// use fdtable::{FdKind, FdTable, Trackable};
/// use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
///
/// struct Device(OwnedFd);
///
/// impl AsFd for Device {
///     fn as_fd(&self) -> BorrowedFd<'_> {
///         self.0.as_fd()
///     }
/// }
///
/// // SAFETY: `as_fd` borrows the one descriptor `self.0` owns,
/// // `into_owned_fd` hands over that same descriptor, and no method of
/// // `Device` closes or replaces it.
/// unsafe impl Trackable for Device {
///     const KIND: FdKind = FdKind::NotSocket;
///     fn into_owned_fd(self) -> OwnedFd {
///         self.0
///     }
/// }
///
/// let dev = Device(std::fs::File::open("/dev/null")?.into());
/// let tracked = FdTable::global().track(dev)?;
/// # drop(tracked);
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// A type whose safe `AsFd` and `Into<OwnedFd>` disagree (here `as_fd`
/// names stderr, which the value does not own) is refused at compile time:
/// ```compile_fail
/// use fdtable::FdTable;
/// use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
///
/// struct Liar(OwnedFd);
///
/// impl AsFd for Liar {
///     fn as_fd(&self) -> BorrowedFd<'_> {
///         // SAFETY: stderr is open for the life of the process.
///         unsafe { BorrowedFd::borrow_raw(2) }
///     }
/// }
///
/// impl From<Liar> for OwnedFd {
///     fn from(liar: Liar) -> OwnedFd {
///         liar.0
///     }
/// }
///
/// let liar = Liar(std::fs::File::open("/dev/null")?.into());
/// // error: `Liar` cannot be tracked: it does not implement `fdtable::Trackable`
/// let tracked = FdTable::global().track(liar)?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be tracked: it does not implement `fdtable::Trackable`",
    label = "not `Trackable`",
    note = "track an `OwnedFd` (`OwnedFd::from(value)`), or implement `Trackable` (unsafe) if `as_fd` names exactly the descriptor the value owns and hands over",
    note = "tokio's descriptor types (`tokio::net::*`, `tokio::process::ChildStd*`, `tokio::net::unix::pipe::*`) are `Trackable` with fdtable's `tokio` feature; `tokio::fs::File` is not: track a `std::fs::File` and do its I/O in `spawn_blocking`"
)]
pub unsafe trait Trackable: AsFd + Sized {
    /// What [`close_all`](crate::FdTable::close_all) may do to release the
    /// descriptor; [`FdKind::Unknown`] (probe with `shutdown`) unless the
    /// type knows better.
    const KIND: FdKind = FdKind::Unknown;

    /// Give up ownership of exactly the descriptor [`as_fd`](AsFd::as_fd)
    /// names, without closing it.
    ///
    /// Should not panic. If it does, the table unregisters the entry without
    /// closing anything (what the panicking code did to the descriptor is
    /// unknown; a leak is better than a double close) and the panic goes on.
    fn into_owned_fd(self) -> OwnedFd;

    /// [`into_owned_fd`](Trackable::into_owned_fd) for a conversion that can
    /// fail after it has already lost the descriptor; the one the table
    /// calls when a handle closes. The default never fails.
    ///
    /// It exists for resources registered with an async runtime: tokio's
    /// `into_std` deregisters the descriptor from the reactor first, and if
    /// that fails it closes the descriptor itself and returns the error.
    /// That can only happen after a breach of the registration contract (the
    /// number no longer names the registered file, say a raw `dup2` over
    /// it), but then the table must not close the number a second time.
    ///
    /// # Errors
    /// The descriptor is gone: closed, or left to whoever owns it now. The
    /// table then unregisters the number without closing it (it is not the
    /// table's any more) and reports the error:
    /// [`Tracked::close`](crate::Tracked::close) returns it, a drop counts it
    /// in [`FdTable::swallowed_close_errors`](crate::FdTable::swallowed_close_errors).
    /// An `Ok` must keep the promises of `into_owned_fd`.
    fn try_into_owned_fd(self) -> std::io::Result<OwnedFd> {
        Ok(self.into_owned_fd())
    }
}

macro_rules! std_trackable {
    ($($kind:ident: $($ty:ty),+;)*) => {$($(
        // SAFETY: std's descriptor types own exactly the descriptor their
        // `as_fd` borrows, hand that same descriptor over unchanged through
        // `From<T> for OwnedFd`, and none of their methods closes, replaces
        // or gives away the descriptor before then (std's I/O-safety rules).
        unsafe impl Trackable for $ty {
            const KIND: FdKind = FdKind::$kind;
            fn into_owned_fd(self) -> OwnedFd {
                self.into()
            }
        }
    )+)*};
}

std_trackable! {
    Unknown: OwnedFd;
    NotSocket: File, ChildStdin, ChildStdout, ChildStderr, std::io::PipeReader, std::io::PipeWriter;
    Socket: std::net::TcpStream, std::net::TcpListener, std::net::UdpSocket,
        UnixStream, UnixListener, UnixDatagram;
}

#[cfg(all(test, not(fdtable_loom)))]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_three_bits() {
        for kind in FdKind::ALL {
            assert!(kind.to_bits() < 8);
            assert_eq!(FdKind::from_bits(kind.to_bits()), kind);
        }
    }
}
