//! The POSIX-only fallbacks: what a platform module re-exports for each
//! call its system has no better version of (no `pipe2`, no `dup3`, no
//! `close_range`, no listing of open descriptors, no sender in
//! `siginfo_t` that the crate decodes).
//!
//! Compiled on every system, Linux included, so the unit tests below run
//! these fallbacks on CI's Linux machines: the calls are POSIX, so what
//! they test holds wherever the platform module uses them (what differs
//! per system is said on each item).

// Each platform module re-exports only the fallbacks it needs (Linux none).
#![allow(dead_code)]

use std::io;
use std::ops::ControlFlow;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use super::{fd, sweep};

/// A pipe `(read, write)` made with `pipe(2)`, then each end made
/// close-on-exec (and non-blocking when asked) with `fcntl(2)`.
///
/// Not atomic: between `pipe` and `fcntl(F_SETFD)` the ends are open
/// without `FD_CLOEXEC`, so another thread's `fork` + `exec` in that
/// window passes them to the new program (std's own pipes have the same
/// window on these systems). What leaks is the new pipe only, never a
/// tracked file: the self-pipe of an `Interrupts` (its new program could
/// write wake-ups into it, or keep it alive) or the placeholder's pipe.
/// Async-signal-safe (a few syscalls).
///
/// # References
/// `pipe(2)`, `fcntl(2)` (`F_SETFD`, `F_GETFL`, `F_SETFL`)
pub(crate) fn pipe(nonblocking: bool) -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [-1 as libc::c_int; 2];
    syscall!(pipe(fds.as_mut_ptr()))?;
    // SAFETY: `pipe` just returned both descriptors; we own them.
    let ends = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    for fd in fds {
        syscall!(fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC))?;
        if nonblocking {
            let flags = syscall!(fcntl(fd, libc::F_GETFL))?;
            syscall!(fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK))?;
        }
    }
    Ok(ends)
}

/// The placeholder as [`open_placeholder`](super::open_placeholder) made
/// it: the read end of a pipe whose write end is closed (no `O_PATH`
/// here). Reads see end-of-file, writes fail with `EBADF`.
/// Async-signal-safe (no syscall).
pub(crate) fn deaden(read: OwnedFd) -> OwnedFd {
    read
}

/// Make `fd` refer to `placeholder`'s file with `dup2(2)`, then mark it
/// close-on-exec with `fcntl(F_SETFD)`. The file `fd` referred to is
/// released at the `dup2` (atomically: the number is never free); the
/// number stays allocated.
///
/// Not atomic for close-on-exec: between the two calls `fd` names the
/// placeholder without `FD_CLOEXEC`. Another thread's `fork` + `exec` in
/// that window passes a copy of the placeholder (a dead pipe end: no data,
/// no writer) to the new program at that number. The retired file itself
/// never leaks: it was released by the `dup2`, and before it the number
/// was close-on-exec (the table sets the flag when it tracks). A fork
/// child that does not exec is unaffected. Async-signal-safe.
///
/// # References
/// `dup2(2)`, `fcntl(2)` (`F_SETFD`)
pub(crate) fn replace_with_placeholder(placeholder: RawFd, fd: RawFd) -> io::Result<()> {
    syscall!(dup2(placeholder, fd))?;
    syscall!(fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC)).map(drop)
}

/// No `close_range(2)`: fails with `ENOSYS` (callers ask
/// [`probe_close_range`] first and close one number at a time).
/// Async-signal-safe (no syscall).
pub(crate) fn close_range(_first: RawFd, _last: RawFd) -> io::Result<()> {
    Err(io::Error::from_raw_os_error(libc::ENOSYS))
}

/// No `close_range(2)`: `false`, without a syscall. Async-signal-safe.
pub(crate) fn probe_close_range() -> bool {
    false
}

/// No `close_range(.., CLOSE_RANGE_CLOEXEC)`: fails with `ENOSYS`.
/// Async-signal-safe (no syscall).
pub(crate) fn close_range_cloexec(_first: libc::c_uint, _last: libc::c_uint) -> io::Result<()> {
    Err(io::Error::from_raw_os_error(libc::ENOSYS))
}

/// No `close_range(.., CLOSE_RANGE_CLOEXEC)`: `false`, without a syscall.
/// Async-signal-safe.
pub(crate) fn probe_cloexec_range() -> bool {
    false
}

/// Every number below `ceiling`, open or not (see
/// [`sweep`](super::sweep::sweep)): for systems that cannot list their
/// open descriptors. Async-signal-safe and allocation-free when `f` is.
pub(crate) fn for_each_fd_below(
    ceiling: RawFd,
    mut f: impl FnMut(RawFd) -> ControlFlow<()>,
) -> ControlFlow<()> {
    sweep::sweep(0, ceiling, &mut f)
}

/// The flags `lowest_free_number` opens `/` with when stdio is closed.
pub(crate) const ROOT_PROBE_FLAGS: libc::c_int = libc::O_RDONLY | libc::O_CLOEXEC;

/// std's exec-error channel here is a pipe, which names nobody: a search
/// cannot prove a spawn child, so the hook's proof is only "not the
/// process that configured the command".
pub(crate) const EXEC_CHANNEL_NAMES_SPAWNER: bool = false;

/// Whether `fd` may be std's exec-error channel: a close-on-exec pipe. A
/// pipe of the same kind that the parent made for itself looks the same.
/// Never `Err`. Async-signal-safe.
///
/// # References
/// `fcntl(2)` (`F_GETFD`), `fstat(2)`
pub(crate) fn is_exec_channel(fd: RawFd, _spawner: libc::pid_t) -> Result<bool, i32> {
    Ok(fd::is_cloexec(fd) == Some(true) && fd::is_fifo(fd))
}

/// No sender: `siginfo_t`'s `si_code` values (`SI_USER`, `SI_QUEUE`)
/// differ between these systems and the `libc` crate does not define them
/// for them, so the crate does not decode them. Always `None`.
/// Async-signal-safe.
pub(crate) fn sender_pid(_info: &libc::siginfo_t) -> Option<u32> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    /// The fallback pipe's ends are close-on-exec (and non-blocking when
    /// asked), and a read of the empty non-blocking end says `EAGAIN`.
    #[test]
    fn the_fallback_pipe_is_close_on_exec_and_non_blocking_when_asked() {
        for nonblocking in [false, true] {
            let (read, write) = pipe(nonblocking).unwrap();
            for end in [&read, &write] {
                assert_eq!(fd::is_cloexec(end.as_raw_fd()), Some(true));
                let flags = syscall!(fcntl(end.as_raw_fd(), libc::F_GETFL)).unwrap();
                assert_eq!(flags & libc::O_NONBLOCK != 0, nonblocking);
            }
            if nonblocking {
                let err = fd::read(read.as_raw_fd(), &mut [0; 4]).unwrap_err();
                assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
            }
        }
    }

    /// The two-step swap releases the file and leaves the number
    /// close-on-exec, naming the placeholder.
    #[test]
    fn the_fallback_swap_leaves_the_number_close_on_exec_on_the_placeholder() {
        let placeholder = fd::open_placeholder().unwrap();
        let (read, write) = pipe(false).unwrap();
        fd::set_cloexec(read.as_raw_fd(), false).unwrap();
        replace_with_placeholder(placeholder.as_raw_fd(), read.as_raw_fd()).unwrap();
        assert_eq!(fd::is_cloexec(read.as_raw_fd()), Some(true));
        assert_eq!(
            fd::identity(read.as_raw_fd()),
            fd::identity(placeholder.as_raw_fd())
        );
        // The pipe's read end is gone: its writer sees no reader (EPIPE:
        // Rust's runtime ignores SIGPIPE).
        let err = fd::write(write.as_raw_fd(), b"x").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EPIPE));
    }

    /// A close-on-exec pipe may be the channel; the same pipe without the
    /// flag, or a socket, may not.
    #[test]
    fn the_fallback_channel_check_wants_a_close_on_exec_pipe() {
        let (read, _write) = pipe(false).unwrap();
        assert_eq!(is_exec_channel(read.as_raw_fd(), 0), Ok(true));
        fd::set_cloexec(read.as_raw_fd(), false).unwrap();
        assert_eq!(is_exec_channel(read.as_raw_fd(), 0), Ok(false));
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        assert_eq!(is_exec_channel(a.as_raw_fd(), 0), Ok(false));
    }

    #[test]
    fn without_close_range_the_probes_say_no_and_the_calls_fail_with_enosys() {
        assert!(!probe_close_range() && !probe_cloexec_range());
        let enosys = Some(libc::ENOSYS);
        assert_eq!(close_range(3, 4).unwrap_err().raw_os_error(), enosys);
        assert_eq!(
            close_range_cloexec(3, 4).unwrap_err().raw_os_error(),
            enosys
        );
    }
}
