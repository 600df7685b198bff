//! The self-pipe: creation, the handler's wake-up write, the reader's drain,
//! and an `errno` guard for readers that promise to leave it alone.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use libc::c_int;

use crate::sys::syscall;

/// Create the self-pipe `(read, write)`: both ends close-on-exec and
/// non-blocking. Not async-signal-safe on Apple targets only in that it
/// makes several calls; it never allocates.
pub(crate) fn self_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [-1 as c_int; 2];
    #[cfg(not(any(target_os = "macos", target_os = "ios")))]
    syscall!(pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK))?;
    #[cfg(any(target_os = "macos", target_os = "ios"))]
    syscall!(pipe(fds.as_mut_ptr()))?;
    // SAFETY: the call just returned two fresh descriptors that we own.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    #[cfg(any(target_os = "macos", target_os = "ios"))]
    for fd in [fds[0], fds[1]] {
        syscall!(fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC))?;
        let flags = syscall!(fcntl(fd, libc::F_GETFL))?;
        syscall!(fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK))?;
    }
    Ok((read, write))
}

/// Write one wake-up byte, ignoring a full pipe. Async-signal-safe.
pub(crate) fn wake(fd: RawFd) {
    // SAFETY: writes one byte from a static buffer to a descriptor the
    // caller owns; it is non-blocking, so this never waits. EAGAIN (pipe
    // full) is fine: the reader is already due to wake, and counts are kept
    // in atomics.
    unsafe {
        libc::write(fd, b"!".as_ptr().cast(), 1);
    }
}

/// Read and discard every pending wake-up byte of the non-blocking `fd`.
/// Async-signal-safe; changes `errno` (see [`ErrnoGuard`]).
pub(crate) fn drain(fd: RawFd) {
    let mut buf = [0u8; 256];
    // 4096 reads of 256 bytes empty even a 1 MiB pipe; the bound keeps a
    // signal storm from holding us here forever.
    for _ in 0..4096 {
        // SAFETY: reads into a local buffer of the given length from a
        // non-blocking descriptor the caller owns.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n > 0 {
            // A pipe's read returns what it holds, up to the length asked
            // for: a short read emptied it. Stopping here saves the second
            // `read` (the one that fails with EAGAIN) on every receive; a
            // byte written since is a new wake-up, as it would be after
            // EAGAIN.
            if (n as usize) < buf.len() {
                break;
            }
            continue;
        }
        if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
            continue;
        }
        break; // EAGAIN: empty; 0 cannot happen while the writer is held
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
