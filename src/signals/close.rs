//! [`CloseHandle`]: ends an instance's receives from anywhere (another
//! thread, a signal handler), and the error they then return.

use std::fmt;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::pipe::ErrnoGuard;
use super::shared::Shared;

/// Ends the receives of one [`Interrupts`](crate::Interrupts) (made by
/// [`Interrupts::close_handle`](crate::Interrupts::close_handle)): after
/// [`close`](CloseHandle::close), a thread blocked in
/// [`recv`](crate::Interrupts::recv),
/// [`recv_timeout`](crate::Interrupts::recv_timeout) or
/// [`wait_readable`](crate::Interrupts::wait_readable) on that instance (or
/// a task in `AsyncInterrupts::recv`) returns at once with an error of kind
/// [`BrokenPipe`](io::ErrorKind::BrokenPipe), later calls return that error
/// without waiting, and [`try_recv`](crate::Interrupts::try_recv) returns
/// `None`.
///
/// This is how a program that ends normally releases a thread that waits
/// for Ctrl-C, as signal-hook's `Handle::close` does for its iterator.
/// `close` only ends the receives: until the instance is dropped, its
/// signals stay handled as before (counted, arming, a second signal
/// killing), and the instance drops as usual, closing its descriptors.
///
/// The handle is cheap to clone, `Send` and `Sync`, and may outlive its
/// instance: it shares a small allocation with it, never its descriptors,
/// and closing after the instance was dropped does nothing.
///
/// # Examples
/// A thread that waits for Ctrl-C, released when the work ends first:
/// ```
/// use fdtable::Interrupts;
/// use std::io::ErrorKind;
///
/// let interrupts = Interrupts::install()?;
/// let close = interrupts.close_handle();
/// let watcher = std::thread::spawn(move || match interrupts.recv() {
///     Ok(received) => println!("stopping after {received}"),
///     Err(e) if e.kind() == ErrorKind::BrokenPipe => println!("closed: the work is done"),
///     Err(e) => eprintln!("{e}"),
/// });
/// // ... the work ends normally ...
/// close.close();
/// watcher.join().unwrap();
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// From a signal handler (`close` is async-signal-safe): SIGUSR2 ends the
/// receives of an instance that waits for SIGTERM.
/// ```
/// use fdtable::{Interrupts, Signal};
///
/// let interrupts = Interrupts::builder(Signal::Terminate).install()?;
/// let close = interrupts.close_handle();
/// // SAFETY: the action only calls `CloseHandle::close`, which is
/// // async-signal-safe; the handle is dropped on unregister, outside it.
/// let id = unsafe { signal_hook::low_level::register(libc::SIGUSR2, move || close.close()) }?;
/// // SAFETY: raise has no preconditions; SIGUSR2 has the action above.
/// unsafe { libc::raise(libc::SIGUSR2) };
/// assert!(interrupts.is_closed());
/// assert!(interrupts.recv().is_err()); // at once
/// signal_hook::low_level::unregister(id);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct CloseHandle {
    shared: Arc<Shared>,
}

impl CloseHandle {
    /// A handle on the instance that shares `shared`. Async-signal-safe.
    pub(super) fn new(shared: Arc<Shared>) -> CloseHandle {
        CloseHandle { shared }
    }

    /// End the instance's receives, for good (see [`CloseHandle`]). Calling
    /// it again, from any clone, or after the instance was dropped, does
    /// nothing more.
    ///
    /// It sets a flag, then writes one wake-up byte into the instance's
    /// self-pipe, so a receive blocked in `poll(2)` wakes up; the pipe then
    /// stays readable (like a pipe at end of file), so a program that polls
    /// [`Interrupts::as_fd`](std::os::fd::AsFd::as_fd) in its own loop wakes
    /// up too, finds [`try_recv`](crate::Interrupts::try_recv) returning
    /// `None`, and should check
    /// [`Interrupts::is_closed`](crate::Interrupts::is_closed). In a fork
    /// child, for an instance inherited from the parent, it sets the child's
    /// flag only: the pipe is the parent's.
    ///
    /// Async-signal-safe (atomics, `getpid`, one non-blocking `write`), and
    /// leaves `errno` as it found it. Dropping a handle is not (it may free
    /// memory): keep the one a signal handler uses alive.
    pub fn close(&self) {
        let _errno = ErrnoGuard::save();
        self.shared.closed.store(true, Ordering::SeqCst);
        if self.shared.installer.is_current() {
            // Does nothing once the instance is dropped: its write end is
            // closed then, and the number may name another file.
            self.shared.write.wake();
        }
    }

    /// Whether [`close`](CloseHandle::close) was called, on this handle or
    /// any other of the same instance. Async-signal-safe.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.shared.is_closed()
    }
}

impl fmt::Debug for CloseHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CloseHandle")
            .field("installer_pid", &self.shared.installer.pid())
            .field("closed", &self.is_closed())
            .finish()
    }
}

/// The error of a receive on a closed instance: kind
/// [`BrokenPipe`](io::ErrorKind::BrokenPipe), naming the operation `op`.
pub(super) fn closed_error(op: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::BrokenPipe,
        format!(
            "{op}: this Interrupts was closed by its CloseHandle, so it reports no more \
             signals (its signals stay handled until it is dropped)"
        ),
    )
}
