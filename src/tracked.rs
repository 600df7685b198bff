//! [`Tracked`]: the owning handle to a tracked descriptor, and
//! [`TrackError`], which gives the resource back when tracking fails.

use std::fmt;
use std::io;
use std::io::{IoSlice, IoSliceMut, Read, Seek, SeekFrom, Write};
use std::mem::ManuallyDrop;
use std::ops::Deref;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::panic::{self, AssertUnwindSafe};
#[cfg(feature = "tokio")]
use std::pin::Pin;
#[cfg(feature = "tokio")]
use std::task::{Context, Poll};

use crate::table::FdTable;
use crate::trackable::Trackable;

/// An owned resource whose descriptor is registered in an [`FdTable`].
///
/// Dereferences to the resource (`File`, `UnixStream`, `OwnedFd`, ...), and
/// implements `Read`, `Write` and `Seek` wherever `T` does (so
/// `Tracked<ChildStdout>` reads), and on `&Tracked` wherever `&T` does (every
/// std file and socket type), so it is used like one. With the `tokio`
/// feature it also implements tokio's `AsyncRead` and `AsyncWrite` wherever
/// `T` does and is `Unpin` (every tokio descriptor type), so
/// `Tracked<tokio::net::TcpStream>` works with `AsyncReadExt`,
/// `AsyncWriteExt` and `tokio::io::split`. Dropping it closes the
/// descriptor and unregisters it as one masked step, exactly like
/// [`close`](Tracked::close) but with any error counted in
/// [`FdTable::swallowed_close_errors`] instead of returned.
///
/// There is deliberately no `DerefMut`: with `&mut T`, safe code could
/// `mem::replace` the resource and drop the old one, closing a number the
/// table still publishes; the next `open` would reuse it and `close_all` or
/// a fork child would then act on somebody else's file. Methods that need
/// `&mut T` are reached through the forwarded `Read`/`Write`/`Seek`, through
/// [`get_unchecked_mut`](Tracked::get_unchecked_mut) (`unsafe`: promise not to replace the
/// resource) or after [`into_inner`](Tracked::into_inner). The table trusts
/// `T`'s own methods not to close or replace the descriptor: that is part of
/// [`Trackable`]'s safety contract.
///
/// ```compile_fail
/// # use fdtable::FdTable;
/// # static TABLE: FdTable = FdTable::new();
/// let mut file = TABLE.track(std::fs::File::open("/dev/null")?)?;
/// // Does not compile: no `DerefMut`, so the tracked resource cannot be
/// // swapped out (and its number closed) behind the table's back.
/// let old = std::mem::replace(&mut *file, std::fs::File::open("/dev/zero")?);
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// # Registering a handle with an async runtime yourself
/// Do not: `tokio::io::unix::AsyncFd::new(tracked)` is safe code, but the
/// number it registers keeps `T`'s kind, which for std's types is no
/// [`Registered*`](crate::FdKind::RegisteredSocket) kind, so
/// [`close_all`](FdTable::close_all) swaps the placeholder in under the
/// registration. epoll drops the registration with the file, silently: a
/// task awaiting a tracked pipe that way never wakes, not even when the
/// writer closes, and tokio's deregistration fails later (it ignores that).
/// Track the runtime's own type instead (with the `tokio` feature:
/// `tokio::net::unix::pipe::Receiver::from_owned_fd`,
/// `tokio::net::TcpStream::from_std`, ...), or a type of your own that owns
/// the `AsyncFd` and implements [`Trackable`] with a `Registered*` kind.
///
/// # Methods of `T` with the same names
/// `Tracked`'s inherent methods ([`close`](Tracked::close),
/// [`into_inner`](Tracked::into_inner),
/// [`try_into_inner`](Tracked::try_into_inner),
/// [`get_unchecked_mut`](Tracked::get_unchecked_mut), [`table`](Tracked::table)) shadow methods
/// of `T` with the same names that `Deref` would otherwise reach: `t.close()`
/// always closes the tracked handle. To call `T`'s method of that name,
/// dereference first, `(*t).close()`, or name the type,
/// `T::close(&t)`. They stay methods (rather than associated functions such
/// as `Arc::try_unwrap`) because `close` and `into_inner` are what every
/// caller of a handle reaches for, and few descriptor types have methods of
/// those names.
///
/// # Examples
/// ```
/// use fdtable::FdTable;
/// use std::io::{Read, Write};
/// use std::os::unix::net::UnixStream;
///
/// let table = FdTable::global();
/// let (a, b) = UnixStream::pair()?;
/// let mut a = table.track(a)?;
/// let mut b = table.track(b)?;
/// a.write_all(b"ping")?;
/// let mut buf = [0; 4];
/// b.read_exact(&mut buf)?;
/// assert_eq!(&buf, b"ping");
/// b.set_nonblocking(true)?; // `&self` methods through `Deref`
/// a.close()?;
/// let stream: UnixStream = b.into_inner(); // untracked, still open
/// # drop(stream);
/// # Ok::<(), std::io::Error>(())
/// ```
#[must_use = "dropping a Tracked closes its descriptor at once"]
pub struct Tracked<'t, T: Trackable> {
    table: &'t FdTable,
    fd: RawFd,
    gen: u64,
    resource: ManuallyDrop<T>,
}

impl<'t, T: Trackable> Tracked<'t, T> {
    pub(crate) fn new(table: &'t FdTable, fd: RawFd, gen: u64, resource: T) -> Self {
        Tracked {
            table,
            fd,
            gen,
            resource: ManuallyDrop::new(resource),
        }
    }

    /// Close the descriptor and unregister it, with signals masked, and
    /// report what `close(2)` said.
    ///
    /// Whatever the result, the entry is gone and the number is never closed
    /// again: `close(2)` is not retried on `EINTR` (on Linux the descriptor
    /// is already released then, and a retry could close a number another
    /// thread has just opened).
    ///
    /// Never waits for the table when `T` keeps [`Trackable`]'s contract: if
    /// the entry is pinned right now (a [`FdTable::for_each`] callback on
    /// any thread, this one included, is visiting it, or a
    /// [`FdTable::close_all`] is releasing it), the close is deferred until
    /// the pin goes, this returns `Ok(())` at once, and an error of the
    /// deferred close is counted in [`FdTable::swallowed_close_errors`]. Only
    /// if `T` breaks the contract (its `into_owned_fd` panics, or hands back
    /// another descriptor than the one tracked) does it wait for other
    /// threads' visits of the tracked number before unregistering it.
    ///
    /// `close(2)` runs with this thread's asynchronous signals blocked (so a
    /// handler never sees the number closed but still tracked): a close that
    /// blocks in the kernel (the last close of a socket with `SO_LINGER` and
    /// unsent data, a file on NFS or FUSE) delays this thread's signals for
    /// as long as it blocks. The same holds for dropping the handle.
    ///
    /// Not async-signal-safe only because it runs the resource's
    /// `into_owned_fd`; for std's types the path itself is one mask pair, two
    /// atomic operations and `close(2)`, with no allocation.
    ///
    /// # Errors
    /// What `close(2)` reported: `EIO` (say, a delayed write error on a
    /// network file system; the descriptor is released anyway), or `EBADF`
    /// when the descriptor was closed behind the table's back. Or the error
    /// of a conversion that lost the descriptor
    /// ([`Trackable::try_into_owned_fd`]: tokio could not deregister a
    /// number that was replaced behind its back, and closed it); the entry
    /// is unregistered without a second close.
    ///
    /// # Panics
    /// Only if `T`'s [`Trackable::try_into_owned_fd`] panics (never for
    /// std's or tokio's types): the entry is unregistered without a close
    /// (what the panicking code did to the descriptor is unknown), then the
    /// panic continues.
    ///
    /// # Examples
    /// ```
    /// use fdtable::FdTable;
    /// use std::io::Write;
    /// static TABLE: FdTable = FdTable::new();
    ///
    /// let mut out = TABLE.track(std::fs::OpenOptions::new().write(true).open("/dev/null")?)?;
    /// out.write_all(b"done")?;
    /// out.close()?; // unlike a drop, reports what close(2) said
    /// assert!(TABLE.is_empty());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn close(self) -> io::Result<()> {
        let (table, fd, gen, resource) = self.dismantle();
        close_resource(table, fd, gen, resource)
    }

    /// Unregister the descriptor without closing it and hand the resource
    /// back.
    ///
    /// Waits while another thread pins the entry: a `for_each` callback
    /// visiting it, a [`FdTable::close_all`] releasing it, ... (the number
    /// must stay valid for them, and the caller may close it as soon as this
    /// returns). After [`FdTable::close_all`], the resource holds the dead
    /// placeholder, on which I/O fails, if its [`FdKind`](crate::FdKind) is
    /// one that `close_all` swaps; a `RegisteredSocket` keeps its socket,
    /// shut down, and a `RegisteredOther` is left as it was.
    ///
    /// Like taking a lock, this can deadlock if misused: two threads whose
    /// walk callbacks each call `into_inner` on the entry the *other* is
    /// visiting wait for each other forever; so does a callback that hands
    /// the handle it is visiting to another thread and waits for that
    /// thread, which calls `into_inner` (it waits for the callback's pin,
    /// the callback waits for it). From a callback, prefer
    /// [`try_into_inner`](Tracked::try_into_inner), which never waits, or
    /// [`close`](Tracked::close), which defers.
    ///
    /// Not async-signal-safe (may wait).
    ///
    /// # Panics
    /// If a walk of the calling thread is visiting this entry: called from
    /// inside the `for_each` callback that visits it (or from a walk nested
    /// in it). It would wait for a visit that cannot end before it returns.
    /// Use [`close`](Tracked::close) there (the close is deferred until the
    /// callback returns) or [`try_into_inner`](Tracked::try_into_inner)
    /// (which hands the handle back). The handle is dropped by the unwinding
    /// like any other value: its close is deferred, and the walk goes on
    /// cleaning up if the panic leaves it.
    ///
    /// # Examples
    /// ```
    /// use fdtable::FdTable;
    /// use std::fs::File;
    /// static TABLE: FdTable = FdTable::new();
    ///
    /// let tracked = TABLE.track(File::open("/dev/null")?)?;
    /// let file: File = tracked.into_inner(); // untracked, still open
    /// assert!(TABLE.is_empty());
    /// let again = TABLE.track(file)?; // and it can be tracked again
    /// # drop(again);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn into_inner(self) -> T {
        // Checked while `self` still owns everything, so the panic drops the
        // handle normally (a deferred close) instead of leaking the entry.
        if self.table.visits_here(self.fd, self.gen) > 0 {
            panic!(
                "Tracked::into_inner on fd {} inside a for_each callback that is visiting it: \
                 it would wait for its own visit; use Tracked::close (deferred until the \
                 callback returns) or Tracked::try_into_inner",
                self.fd
            );
        }
        let (table, fd, gen, resource) = self.dismantle();
        table.forget_entry(fd, gen);
        resource
    }

    /// [`into_inner`](Tracked::into_inner) that never waits and never
    /// panics: while the entry is pinned (a walk visiting it, on another
    /// thread or in the calling thread's own callback; a
    /// [`FdTable::close_all`] releasing it on another thread; ...), the
    /// handle comes back unchanged in `Err`.
    ///
    /// Not async-signal-safe (runs no user code, but hands back a resource
    /// whose drop may).
    ///
    /// # Errors
    /// `Err(self)`, with the handle still tracked and still owning the
    /// descriptor, while the entry is pinned (see above). Retry later, or
    /// [`close`](Tracked::close) it (deferred until the pin goes).
    ///
    /// # Examples
    /// ```
    /// use fdtable::FdTable;
    /// static TABLE: FdTable = FdTable::new();
    ///
    /// let file = TABLE.track(std::fs::File::open("/dev/null")?)?;
    /// let file: std::fs::File = match file.try_into_inner() {
    ///     Ok(file) => file,
    ///     Err(still_tracked) => still_tracked.into_inner(), // or retry later
    /// };
    /// # drop(file);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn try_into_inner(self) -> Result<T, Self> {
        if !self.table.try_forget_entry(self.fd, self.gen) {
            return Err(self);
        }
        Ok(self.dismantle().3)
    }

    /// Mutable access to the resource, for methods that need `&mut T`
    /// (named after [`Pin::get_unchecked_mut`](std::pin::Pin::get_unchecked_mut):
    /// safe code could otherwise swap the descriptor out from under the
    /// table). Async-signal-safe.
    ///
    /// # Safety
    /// The caller must not replace or take the resource (`mem::replace`,
    /// `mem::swap`, `Option::take` on a field holding the descriptor, ...)
    /// and must not close its descriptor: the table keeps acting on the
    /// number it registered until this handle is closed.
    pub unsafe fn get_unchecked_mut(&mut self) -> &mut T {
        &mut self.resource
    }

    /// The table this handle is registered in. Async-signal-safe.
    pub fn table(&self) -> &'t FdTable {
        self.table
    }

    /// Whether [`FdTable::close_all`] released this entry (its number now
    /// holds the dead placeholder until the handle drops).
    ///
    /// Async-signal-safe (one atomic load).
    pub(crate) fn is_retired(&self) -> bool {
        self.table.slot(self.fd).is_some_and(|slot| {
            let word = slot.load();
            word.is_handle_of(self.gen) && word.state() == crate::slot::SlotState::Retired
        })
    }

    /// The handle's parts, the resource moved out, without running `Drop`:
    /// for the ways out that settle the entry themselves.
    fn dismantle(self) -> (&'t FdTable, RawFd, u64, T) {
        let mut this = ManuallyDrop::new(self);
        // SAFETY: `this` is never used again and its destructor never runs,
        // so the resource is taken exactly once.
        let resource = unsafe { ManuallyDrop::take(&mut this.resource) };
        (this.table, this.fd, this.gen, resource)
    }
}

impl<T: Trackable> Drop for Tracked<'_, T> {
    /// Close the descriptor and unregister it, as [`Tracked::close`] does,
    /// counting an error in [`FdTable::swallowed_close_errors`] instead of
    /// returning it.
    ///
    /// # Panics
    /// Only if `T`'s [`Trackable::try_into_owned_fd`] panics (never for
    /// std's or tokio's types): the entry is unregistered without a close,
    /// then the panic continues. (Dropped while another panic unwinds, the
    /// handle then aborts the process, as any destructor that panics during
    /// unwinding does.)
    fn drop(&mut self) {
        // SAFETY: `drop` runs once and `resource` is not touched afterwards.
        let resource = unsafe { ManuallyDrop::take(&mut self.resource) };
        if close_resource(self.table, self.fd, self.gen, resource).is_err() {
            self.table.count_swallowed();
        }
    }
}

impl<T: Trackable> Deref for Tracked<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.resource
    }
}

// `Tracked<T>` forwards to `T`'s impls through `&mut T` (safe: the
// `Trackable` contract covers `T`'s methods), `&Tracked<T>` to `&T`'s.
macro_rules! forward_io {
    ($({$($gen:tt)*} $ty:ty, $via:ident, [$($target:tt)*];)*) => {$(
        impl<$($gen)*> Read for $ty
        where
            $($target)*: Read,
        {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                $via!(self).read(buf)
            }
            fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
                $via!(self).read_vectored(bufs)
            }
            fn read_to_end(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
                $via!(self).read_to_end(buf)
            }
            fn read_to_string(&mut self, buf: &mut String) -> io::Result<usize> {
                $via!(self).read_to_string(buf)
            }
            fn read_exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
                $via!(self).read_exact(buf)
            }
        }

        impl<$($gen)*> Write for $ty
        where
            $($target)*: Write,
        {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                $via!(self).write(buf)
            }
            fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
                $via!(self).write_vectored(bufs)
            }
            fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
                $via!(self).write_all(buf)
            }
            fn flush(&mut self) -> io::Result<()> {
                $via!(self).flush()
            }
        }

        impl<$($gen)*> Seek for $ty
        where
            $($target)*: Seek,
        {
            fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
                $via!(self).seek(pos)
            }
            fn stream_position(&mut self) -> io::Result<u64> {
                $via!(self).stream_position()
            }
        }
    )*};
}

macro_rules! owned_resource {
    ($this:expr) => {
        &mut *$this.resource
    };
}

macro_rules! shared_resource {
    ($this:expr) => {
        &mut &*$this.resource
    };
}

forward_io! {
    {T: Trackable} Tracked<'_, T>, owned_resource, [T];
    {T: Trackable} &Tracked<'_, T>, shared_resource, [for<'x> &'x T];
}

// tokio's `AsyncRead`/`AsyncWrite`, forwarded to `T`'s through `&mut T`
// like `Read`/`Write` above. `T: Unpin` (every tokio descriptor type is):
// `Tracked` moves the resource out when it closes, so it cannot promise
// structural pinning.
#[cfg(feature = "tokio")]
impl<T: Trackable + Unpin> Tracked<'_, T> {
    /// `T` is `Unpin`, so a pinned handle may lend its resource pinned.
    fn pinned_resource(self: Pin<&mut Self>) -> Pin<&mut T> {
        Pin::new(&mut *Pin::get_mut(self).resource)
    }
}

#[cfg(feature = "tokio")]
impl<T: Trackable + tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Tracked<'_, T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.pinned_resource().poll_read(cx, buf)
    }
}

#[cfg(feature = "tokio")]
impl<T: Trackable + tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Tracked<'_, T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.pinned_resource().poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.pinned_resource().poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.resource.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.pinned_resource().poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.pinned_resource().poll_shutdown(cx)
    }
}

impl<T: Trackable> AsFd for Tracked<'_, T> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.resource.as_fd()
    }
}

impl<T: Trackable> AsRawFd for Tracked<'_, T> {
    fn as_raw_fd(&self) -> RawFd {
        self.fd
    }
}

impl<T: Trackable + fmt::Debug> fmt::Debug for Tracked<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tracked")
            .field("fd", &self.fd)
            .field("generation", &self.gen)
            .field("resource", &*self.resource)
            .finish()
    }
}

/// Why [`FdTable::track`] refused a resource, with the resource given back
/// unharmed (nothing was closed).
///
/// Converts into `io::Error` so `?` works; that conversion drops (closes)
/// the resource. Use [`into_inner`](TrackError::into_inner) or
/// [`into_parts`](TrackError::into_parts) to keep it.
///
/// ```
/// use fdtable::FdTable;
/// use std::fs::File;
/// static TABLE: FdTable = FdTable::new();
///
/// let file = File::open("/dev/null")?;
/// match TABLE.track(file) {
///     Ok(tracked) => drop(tracked),
///     Err(err) => {
///         let (error, file) = err.into_parts(); // `file`: still open, still yours
///         eprintln!("not tracked: {error}");
///         drop(file);
///     }
/// }
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct TrackError<T> {
    resource: T,
    error: io::Error,
}

impl<T> TrackError<T> {
    pub(crate) fn new(resource: T, error: io::Error) -> Self {
        TrackError { resource, error }
    }

    /// Why tracking failed (see [`FdTable::track`]'s `# Errors`).
    /// Async-signal-safe.
    pub fn error(&self) -> &io::Error {
        &self.error
    }

    /// The resource, unchanged and still open. Async-signal-safe (a move).
    pub fn into_inner(self) -> T {
        self.resource
    }

    /// The error, dropping (and so closing) the resource: what `?` does.
    pub fn into_error(self) -> io::Error {
        self.error
    }

    /// Both halves, in the order of std's
    /// [`IntoInnerError::into_parts`](std::io::IntoInnerError::into_parts):
    /// the error, then the resource. Async-signal-safe (a move).
    pub fn into_parts(self) -> (io::Error, T) {
        (self.error, self.resource)
    }
}

impl<T> fmt::Debug for TrackError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrackError")
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

impl<T> fmt::Display for TrackError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot track descriptor: {}", self.error)
    }
}

impl<T> std::error::Error for TrackError<T> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.error.source()
    }
}

impl<T> From<TrackError<T>> for io::Error {
    fn from(err: TrackError<T>) -> io::Error {
        err.into_error()
    }
}

/// The error `track` gives on a sealed table: `Other` (not an OS error;
/// std never produces that kind, so it tells this refusal apart from the
/// other track errors), naming the number and the seal.
pub(crate) fn sealed(fd: RawFd) -> io::Error {
    io::Error::other(format!(
        "fd {fd} was not tracked: the table is sealed (FdTable::seal) and accepts no new entries"
    ))
}

/// The error `track` gives for a number that is not an open descriptor:
/// `InvalidInput`, naming the number, with the OS error (`EBADF`) as its
/// source.
pub(crate) fn not_open(fd: RawFd, os: io::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, NotOpen { fd, os })
}

#[derive(Debug)]
struct NotOpen {
    fd: RawFd,
    os: io::Error,
}

impl fmt::Display for NotOpen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "fd {} is not an open descriptor ({})", self.fd, self.os)
    }
}

impl std::error::Error for NotOpen {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.os)
    }
}

/// Turn the resource into its descriptor and close it through the table. If
/// the conversion panics, the entry is unregistered (without a close: what
/// the panicking conversion did to the descriptor is unknown, and a leak is
/// better than closing a number twice) before the panic continues; that
/// path neither panics again nor waits for a visit of this thread. A
/// conversion that fails having lost the descriptor
/// ([`Trackable::try_into_owned_fd`]) takes the same path without the panic.
fn close_resource<T: Trackable>(
    table: &FdTable,
    fd: RawFd,
    gen: u64,
    resource: T,
) -> io::Result<()> {
    match panic::catch_unwind(AssertUnwindSafe(|| resource.try_into_owned_fd())) {
        Ok(Ok(owned)) => table.close_entry(fd, gen, owned),
        Ok(Err(lost)) => {
            table.forget_entry_leniently(fd, gen);
            Err(lost)
        }
        Err(payload) => {
            table.forget_entry_leniently(fd, gen);
            panic::resume_unwind(payload)
        }
    }
}
