//! illumos and Solaris: `pipe2` and `dup3` (so no close-on-exec windows),
//! no `close_range`. Open descriptors are swept up to the soft
//! `RLIMIT_NOFILE`: the crate does not read `/proc/self/fd` here (its
//! records need `getdents`, which the `libc` crate does not bind).
//!
//! Type-checked by CI for `x86_64-unknown-illumos`, never run there: see
//! `docs/platforms.md`.

use std::io;
use std::ops::ControlFlow;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

pub(crate) use super::posix::{
    close_range, close_range_cloexec, deaden, is_exec_channel, probe_cloexec_range,
    probe_close_range, sender_pid, EXEC_CHANNEL_NAMES_SPAWNER, ROOT_PROBE_FLAGS,
};
pub(crate) use super::process::portable_environ as environ;
pub(crate) use super::signal::portable_set::async_signal_set;
use super::{fd, posix, sweep};

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
/// referred to is released; the number stays allocated. Async-signal-safe.
///
/// # References
/// `dup3(3C)`
pub(crate) fn replace_with_placeholder(placeholder: RawFd, fd: RawFd) -> io::Result<()> {
    syscall!(dup3(placeholder, fd, libc::O_CLOEXEC)).map(drop)
}

/// Call `f` on every number below the soft `RLIMIT_NOFILE` (2^20 when it
/// is unlimited: a descriptor above that is not seen), open or not; `f`
/// must tolerate `EBADF`. Bounded by the limit, not by what is open.
/// Async-signal-safe and allocation-free when `f` is.
///
/// # References
/// `getrlimit(2)`
pub(crate) fn for_each_open_fd(f: impl FnMut(RawFd) -> ControlFlow<()>) -> ControlFlow<()> {
    posix::for_each_fd_below(sweep::sweep_limit(fd::soft_fd_limit()), f)
}
