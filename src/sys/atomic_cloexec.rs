//! The two calls of the systems that make descriptors close-on-exec
//! atomically (Linux, the BSDs, illumos): `pipe2` for the self-pipe and the
//! placeholder's pipe, `dup3` for the swap over a retired number. No window
//! in which another thread's `fork` + `exec` could inherit what they make.
//! The platform modules re-export them (Android's `dup3`, which the `libc`
//! crate does not bind, stays in `linux/`).

use std::io;
#[cfg(not(target_os = "android"))]
use std::os::fd::RawFd;
use std::os::fd::{FromRawFd, OwnedFd};

/// A pipe `(read, write)`, both ends close-on-exec from the start (no
/// window in which a fork elsewhere could inherit them), non-blocking when
/// asked. Async-signal-safe.
///
/// # References
/// `pipe2(2)`
pub(crate) fn pipe(nonblocking: bool) -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [-1 as libc::c_int; 2];
    let flags = if nonblocking {
        libc::O_CLOEXEC | libc::O_NONBLOCK
    } else {
        libc::O_CLOEXEC
    };
    syscall!(pipe2(fds.as_mut_ptr(), flags))?;
    // SAFETY: `pipe2` just returned both descriptors; we own them.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Atomically make `fd` refer to `placeholder`'s file, close-on-exec: no
/// instant in which `fd` is open without `FD_CLOEXEC`. The file `fd`
/// referred to is released; the number stays allocated. Fails with `EBADF`
/// for an `fd` at or above the soft `RLIMIT_NOFILE`. Async-signal-safe.
///
/// # References
/// `dup3(2)`
#[cfg(not(target_os = "android"))]
pub(crate) fn replace_with_placeholder(placeholder: RawFd, fd: RawFd) -> io::Result<()> {
    syscall!(dup3(placeholder, fd, libc::O_CLOEXEC)).map(drop)
}
