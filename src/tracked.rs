//! [`Tracked`]: the owning handle to a tracked descriptor, and
//! [`TrackError`], which gives the resource back when tracking fails.

use std::fmt;
use std::io;
use std::io::{IoSlice, IoSliceMut, Read, Seek, SeekFrom, Write};
use std::mem::ManuallyDrop;
use std::ops::Deref;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::panic::{self, AssertUnwindSafe};

use crate::table::FdTable;

/// An owned resource whose descriptor is registered in an [`FdTable`].
///
/// Dereferences to the resource (`File`, `UnixStream`, `OwnedFd`, ...), and
/// implements `Read`, `Write` and `Seek` wherever `&T` does (every std file
/// and socket type), so it is used like one. Dropping it closes the
/// descriptor and unregisters it as one masked step, exactly like
/// [`close`](Tracked::close) but with any error counted in
/// [`FdTable::swallowed_close_errors`] instead of returned.
///
/// There is deliberately no `DerefMut`: with `&mut T`, safe code could
/// `mem::replace` the resource and drop the old one, closing a number the
/// table still publishes; the next `open` would reuse it and `close_all` or
/// a fork child would then act on somebody else's file. Methods that need
/// `&mut T` are reached through [`get_mut`](Tracked::get_mut) (`unsafe`:
/// promise not to replace the resource) or after
/// [`into_inner`](Tracked::into_inner).
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
/// The table trusts `T`: its `AsFd` must return the descriptor that its
/// `Into<OwnedFd>` hands over, as every std type and every type following
/// std's I/O-safety rules does.
///
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
pub struct Tracked<'t, T: AsFd + Into<OwnedFd>> {
    table: &'t FdTable,
    fd: RawFd,
    gen: u64,
    resource: ManuallyDrop<T>,
}

impl<'t, T: AsFd + Into<OwnedFd>> Tracked<'t, T> {
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
    /// thread has just opened). `EBADF` means the descriptor was closed
    /// behind the table's back.
    ///
    /// If a [`FdTable::for_each`] callback is visiting this descriptor right
    /// now, the close is deferred until that callback returns and this
    /// returns `Ok(())`; an error of the deferred close is counted in
    /// [`FdTable::swallowed_close_errors`].
    ///
    /// Not async-signal-safe only because it runs the resource's
    /// `Into<OwnedFd>`; for std's types the path itself is one mask pair, two
    /// atomic operations and `close(2)`, with no allocation.
    pub fn close(self) -> io::Result<()> {
        let mut this = ManuallyDrop::new(self);
        // SAFETY: `this` is never used again and its destructor never runs,
        // so the resource is taken exactly once.
        let resource = unsafe { ManuallyDrop::take(&mut this.resource) };
        release(this.table, this.fd, this.gen, resource)
    }

    /// Unregister the descriptor without closing it and hand the resource
    /// back.
    ///
    /// Waits while a `for_each` callback on another thread is visiting this
    /// descriptor (so the number stays valid for it); does not wait for a
    /// visit by the current thread. After [`FdTable::close_all`] the resource
    /// holds the dead placeholder, on which I/O fails.
    ///
    /// Like taking a lock, this can deadlock if misused: two threads whose
    /// walk callbacks each call `into_inner` on the entry the *other* is
    /// visiting wait for each other forever. Do not call `into_inner` from
    /// a callback on entries other threads may be visiting: use
    /// [`try_into_inner`](Tracked::try_into_inner) there, or
    /// [`close`](Tracked::close), which never waits.
    ///
    /// Not async-signal-safe (may wait).
    pub fn into_inner(self) -> T {
        let mut this = ManuallyDrop::new(self);
        this.table.forget_entry(this.fd, this.gen);
        // SAFETY: as in `close`: taken once, the destructor never runs.
        unsafe { ManuallyDrop::take(&mut this.resource) }
    }

    /// [`into_inner`](Tracked::into_inner) that never waits: if a walk on
    /// another thread is visiting this entry right now, the handle comes back
    /// unchanged in `Err`. Use it from `for_each` callbacks, where waiting
    /// could deadlock with another thread's walk.
    ///
    /// Not async-signal-safe (runs no user code, but hands back a resource
    /// whose drop may).
    ///
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
        let mut this = ManuallyDrop::new(self);
        // SAFETY: as in `close`: taken once, the destructor never runs.
        Ok(unsafe { ManuallyDrop::take(&mut this.resource) })
    }

    /// Mutable access to the resource, for methods that need `&mut T`.
    /// Async-signal-safe.
    ///
    /// # Safety
    /// The caller must not replace or take the resource (`mem::replace`,
    /// `mem::swap`, `Option::take` on a field holding the descriptor, ...)
    /// and must not close its descriptor: the table keeps acting on the
    /// number it registered until this handle is closed.
    pub unsafe fn get_mut(&mut self) -> &mut T {
        &mut self.resource
    }

    /// The table this handle is registered in. Async-signal-safe.
    pub fn table(&self) -> &'t FdTable {
        self.table
    }
}

impl<T: AsFd + Into<OwnedFd>> Drop for Tracked<'_, T> {
    fn drop(&mut self) {
        // SAFETY: `drop` runs once and `resource` is not touched afterwards.
        let resource = unsafe { ManuallyDrop::take(&mut self.resource) };
        if release(self.table, self.fd, self.gen, resource).is_err() {
            self.table.count_swallowed();
        }
    }
}

impl<T: AsFd + Into<OwnedFd>> Deref for Tracked<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.resource
    }
}

macro_rules! forward_io {
    ($($ty:ty),*) => {$(
        impl<T: AsFd + Into<OwnedFd>> Read for $ty
        where
            for<'r> &'r T: Read,
        {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                (&*self.resource).read(buf)
            }
            fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
                (&*self.resource).read_vectored(bufs)
            }
        }

        impl<T: AsFd + Into<OwnedFd>> Write for $ty
        where
            for<'r> &'r T: Write,
        {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                (&*self.resource).write(buf)
            }
            fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
                (&*self.resource).write_vectored(bufs)
            }
            fn flush(&mut self) -> io::Result<()> {
                (&*self.resource).flush()
            }
        }

        impl<T: AsFd + Into<OwnedFd>> Seek for $ty
        where
            for<'r> &'r T: Seek,
        {
            fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
                (&*self.resource).seek(pos)
            }
        }
    )*};
}

forward_io!(Tracked<'_, T>, &Tracked<'_, T>);

impl<T: AsFd + Into<OwnedFd>> AsFd for Tracked<'_, T> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.resource.as_fd()
    }
}

impl<T: AsFd + Into<OwnedFd>> AsRawFd for Tracked<'_, T> {
    fn as_raw_fd(&self) -> RawFd {
        self.fd
    }
}

impl<T: AsFd + Into<OwnedFd> + fmt::Debug> fmt::Debug for Tracked<'_, T> {
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
/// the resource. Use [`into_inner`](TrackError::into_inner) to keep it.
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
///         eprintln!("not tracked: {err}");
///         let file: File = err.into_inner(); // still open, still yours
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

    /// Why tracking failed: `AlreadyExists`, or the OS error (`EBADF` for a
    /// number that is not open, `ENOMEM`). Async-signal-safe.
    pub fn error(&self) -> &io::Error {
        &self.error
    }

    /// The resource, unchanged and still open. Async-signal-safe (a move).
    pub fn into_inner(self) -> T {
        self.resource
    }

    /// Both halves. Async-signal-safe (a move).
    pub fn into_parts(self) -> (T, io::Error) {
        (self.resource, self.error)
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
        err.error
    }
}

/// Turn the resource into its descriptor and close it through the table. If
/// the conversion panics, the entry is unregistered (without a close: what
/// the panicking conversion did to the descriptor is unknown, and a leak is
/// better than closing a number twice) before the panic continues.
fn release<T: AsFd + Into<OwnedFd>>(
    table: &FdTable,
    fd: RawFd,
    gen: u64,
    resource: T,
) -> io::Result<()> {
    match panic::catch_unwind(AssertUnwindSafe(|| resource.into())) {
        Ok(owned) => table.close_entry(fd, gen, owned),
        Err(payload) => {
            table.forget_entry(fd, gen);
            panic::resume_unwind(payload)
        }
    }
}
