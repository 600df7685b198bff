//! The self-pipe: creation, the write end that wakes the reader
//! ([`WakeEnd`]), the reader's drain, and an `errno` guard for readers that
//! promise to leave it alone.

use std::io;
use std::os::fd::{IntoRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::sys;

/// Create the self-pipe `(read, write)`: both ends close-on-exec and
/// non-blocking (atomically with `pipe2` where the system has it; on Apple
/// systems `pipe` then `fcntl`, see `sys::pipe`). Async-signal-safe; never
/// allocates.
pub(crate) fn self_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    sys::pipe(true)
}

/// Write one wake-up byte, ignoring a full pipe. Async-signal-safe.
pub(crate) fn wake(fd: RawFd) {
    // Non-blocking, so this never waits. EAGAIN (pipe full) is fine: the
    // reader is already due to wake, and counts are kept in atomics.
    let _ = sys::write(fd, b"!");
}

/// The self-pipe's write end, shared by an instance, its handler actions and
/// its [`CloseHandle`](crate::CloseHandle)s, and closed by the instance's
/// drop ([`close`](WakeEnd::close)) rather than by the last reference.
///
/// A close handle may outlive its instance. It must then neither keep the
/// instance's descriptor open (a handle kept for the life of the program
/// would hold it for good) nor write to the number once it is closed: the
/// kernel may have handed that number to another file, which would get a
/// stray `!` (I/O safety). So every write goes through
/// [`wake`](WakeEnd::wake), which announces itself in `state` first and
/// writes only while the end is not closing; `close` marks it closing, waits
/// for the writes in flight (each is one non-blocking `write`), and only
/// then closes the number. Sequentially consistent operations on the one
/// word make the two sides agree: either the write sees the mark and skips,
/// or `close` sees the write in flight and waits for it.
pub(crate) struct WakeEnd {
    /// Valid until `close` has seen no write in flight; never used after.
    fd: RawFd,
    /// [`CLOSING`], plus the number of [`wake`](WakeEnd::wake)s in flight.
    state: AtomicU32,
}

/// [`WakeEnd::state`]'s bit: closing or closed, no new write may start.
const CLOSING: u32 = 1 << 31;

impl WakeEnd {
    /// Own `write`, the self-pipe's non-blocking write end.
    pub(crate) fn new(write: OwnedFd) -> WakeEnd {
        WakeEnd {
            fd: write.into_raw_fd(),
            state: AtomicU32::new(0),
        }
    }

    /// Write one wake-up byte, unless the end is closed; a full pipe is
    /// fine (see [`wake`]). Returns whether the end was still open.
    ///
    /// Async-signal-safe (two atomic additions and one `write`); changes
    /// `errno` (see [`ErrnoGuard`]).
    pub(crate) fn wake(&self) -> bool {
        let open = self.state.fetch_add(1, Ordering::SeqCst) & CLOSING == 0;
        if open {
            wake(self.fd);
        }
        self.state.fetch_sub(1, Ordering::SeqCst);
        open
    }

    /// The number, for the one caller that needs it while the instance is
    /// alive (a fork child's detach in `async_recv.rs`): it names the write
    /// end only until [`close`](WakeEnd::close). Async-signal-safe.
    #[cfg(feature = "tokio")]
    pub(crate) fn as_raw_fd(&self) -> RawFd {
        self.fd
    }

    /// Close the write end once: no write starts afterwards, and the ones
    /// in flight finish first. Later calls do nothing.
    ///
    /// Not async-signal-safe: it waits (yielding) for writes in flight, so
    /// a handler that interrupted one of them on the calling thread would
    /// wait for itself.
    pub(crate) fn close(&self) {
        if self.state.fetch_or(CLOSING, Ordering::SeqCst) & CLOSING != 0 {
            return;
        }
        while self.state.load(Ordering::SeqCst) & !CLOSING != 0 {
            std::thread::yield_now();
        }
        // Nothing can be done about an error: the number is released anyway
        // (see `sys::close`), and no write uses it from here on.
        let _ = sys::close(self.fd);
    }
}

impl Drop for WakeEnd {
    fn drop(&mut self) {
        // Done already by the instance's drop; this keeps the descriptor
        // from leaking should a `WakeEnd` ever be dropped another way.
        self.close();
    }
}

/// Read and discard every pending wake-up byte of the non-blocking `fd`.
/// Async-signal-safe; changes `errno` (see [`ErrnoGuard`]).
pub(crate) fn drain(fd: RawFd) {
    let mut buf = [0u8; 256];
    // 4096 reads of 256 bytes empty even a 1 MiB pipe; the bound keeps a
    // signal storm from holding us here forever.
    for _ in 0..4096 {
        match sys::read(fd, &mut buf) {
            // A pipe's read returns what it holds, up to the length asked
            // for: a short read emptied it. Stopping here saves the second
            // `read` (the one that fails with EAGAIN) on every receive; a
            // byte written since is a new wake-up, as it would be after
            // EAGAIN.
            Ok(n) if n > 0 => {
                if n < buf.len() {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            _ => break, // EAGAIN: empty; 0 cannot happen while the writer is held
        }
    }
}

/// Saves `errno` and puts it back on drop, so a function called from a
/// signal handler does not clobber the `errno` of the code it interrupted.
/// Async-signal-safe.
pub(crate) struct ErrnoGuard(i32);

impl ErrnoGuard {
    pub(crate) fn save() -> ErrnoGuard {
        ErrnoGuard(nix::errno::Errno::last_raw())
    }
}

impl Drop for ErrnoGuard {
    fn drop(&mut self) {
        nix::errno::Errno::set_raw(self.0);
    }
}
