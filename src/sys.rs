//! Thin syscall wrappers: one place where `-1` becomes an `io::Error`.
//!
//! Every function here is async-signal-safe unless its doc says otherwise: each
//! is one or two raw syscalls, no allocation, no lock. Errors come from `errno`
//! through [`std::io::Error::last_os_error`], which reads `errno` and allocates
//! nothing.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Call a libc function and turn a `-1` return into `Err(last_os_error)`.
macro_rules! syscall {
    ($fn:ident ( $($arg:expr),* $(,)? )) => {{
        // SAFETY: each call site passes arguments that are valid for the
        // syscall (plain integers, or pointers to live locals); the macro
        // only adds the `-1` check.
        let res = unsafe { libc::$fn($($arg),*) };
        if res == -1 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(res)
        }
    }};
}
pub(crate) use syscall;

/// `close(2)` once, never retried.
///
/// On Linux the descriptor is released even when `close` reports `EINTR` or
/// `EIO`; retrying would close a number the kernel may already have handed to
/// another thread. The error is reported so explicit closers can see it.
///
/// # References
/// `close(2)`
pub(crate) fn close(fd: RawFd) -> io::Result<()> {
    syscall!(close(fd)).map(drop)
}

/// Set (`on`) or clear `FD_CLOEXEC` on `fd`, issuing `F_SETFD` only when the
/// flag is not already as wanted. The flag belongs to the descriptor, not the
/// open file description: clearing it in a fork child leaves the parent's
/// copy close-on-exec.
///
/// Fails with the OS error (`EBADF`) when `fd` is not open. Async-signal-safe.
///
/// # References
/// `fcntl(2)` (`F_GETFD`, `F_SETFD`)
pub(crate) fn set_cloexec(fd: RawFd, on: bool) -> io::Result<()> {
    let flags = syscall!(fcntl(fd, libc::F_GETFD))?;
    let wanted = if on {
        flags | libc::FD_CLOEXEC
    } else {
        flags & !libc::FD_CLOEXEC
    };
    if wanted != flags {
        syscall!(fcntl(fd, libc::F_SETFD, wanted))?;
    }
    Ok(())
}

/// Whether `fd` is an open descriptor (`fcntl(F_GETFD)` succeeds).
#[cfg(test)]
pub(crate) fn is_open(fd: RawFd) -> bool {
    syscall!(fcntl(fd, libc::F_GETFD)).is_ok()
}

/// Open a dead placeholder: a close-on-exec descriptor that resolves no path
/// and does no I/O, numbered 3 or above.
///
/// Linux: an `O_PATH` descriptor of `/dev/null`. `read`/`write` (and
/// `fchmod`, `ioctl`, ...) fail with `EBADF`; path lookups through it
/// (`openat`, `mkdirat`, `unlinkat`, `fchdir`) fail with `ENOTDIR`, since it
/// is not a directory; `fstat` describes `/dev/null`. Reopening it through
/// `/proc/self/fd` gives `/dev/null`, which is harmless. Elsewhere: the read
/// end of a pipe whose write end is closed (reads see end-of-file, writes
/// fail with `EBADF`, lookups `ENOTDIR`).
///
/// A number below 3 is moved up (`F_DUPFD_CLOEXEC`): a process started with
/// stdio closed must not find the placeholder as its stdin, nor lose the
/// number 0-2 that a later `open` was meant to get.
///
/// Async-signal-safe (a few syscalls, no allocation).
///
/// # References
/// `open(2)` (`O_PATH`), `pipe(2)`, `fcntl(2)` (`F_DUPFD_CLOEXEC`)
pub(crate) fn open_placeholder() -> io::Result<OwnedFd> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let fd = {
        let fd = syscall!(open(c"/dev/null".as_ptr(), libc::O_PATH | libc::O_CLOEXEC))?;
        // SAFETY: `open` just returned this descriptor; nothing else owns it.
        unsafe { OwnedFd::from_raw_fd(fd) }
    };
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let fd = {
        let mut fds = [-1 as libc::c_int; 2];
        syscall!(pipe(fds.as_mut_ptr()))?;
        // SAFETY: `pipe` just returned both descriptors; we own them.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        drop(write);
        set_cloexec(fds[0], true)?;
        read
    };
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    let moved = syscall!(fcntl(
        fd.as_raw_fd(),
        libc::F_DUPFD_CLOEXEC,
        3 as libc::c_int
    ))?;
    // SAFETY: `fcntl` just returned this new descriptor; the low one closes
    // when `fd` drops.
    Ok(unsafe { OwnedFd::from_raw_fd(moved) })
}

/// Whether `fd` is still a placeholder made by [`open_placeholder`]: on
/// Linux an `O_PATH` descriptor of the character device 1:3 (`/dev/null`),
/// elsewhere the read end of a pipe. A number that some other code closed
/// and reopened fails the check (unless it reopened exactly that, which is
/// as dead).
///
/// Async-signal-safe (`fstat`, `fcntl`).
///
/// # References
/// `fstat(2)`, `fcntl(2)` (`F_GETFL`), `null(4)`
pub(crate) fn is_dead_placeholder(fd: RawFd) -> bool {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    if syscall!(fstat(fd, st.as_mut_ptr())).is_err() {
        return false;
    }
    // SAFETY: `fstat` succeeded, so it initialised `st`.
    let st = unsafe { st.assume_init() };
    let Ok(flags) = syscall!(fcntl(fd, libc::F_GETFL)) else {
        return false;
    };
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        st.st_mode & libc::S_IFMT == libc::S_IFCHR
            && libc::major(st.st_rdev) == 1
            && libc::minor(st.st_rdev) == 3
            && flags & libc::O_PATH != 0
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        st.st_mode & libc::S_IFMT == libc::S_IFIFO && flags & libc::O_ACCMODE == libc::O_RDONLY
    }
}

/// Atomically make `fd` refer to `placeholder`'s file, close-on-exec.
///
/// The file `fd` referred to is released (its last reference dropped by the
/// kernel); the number `fd` stays allocated.
///
/// # References
/// `dup3(2)` on Linux; `dup2(2)` + `fcntl(2)` elsewhere.
pub(crate) fn replace_with_placeholder(placeholder: RawFd, fd: RawFd) -> io::Result<()> {
    #[cfg(any(
        target_os = "linux",
        target_os = "android",
        target_os = "freebsd",
        target_os = "netbsd",
        target_os = "openbsd"
    ))]
    {
        syscall!(dup3(placeholder, fd, libc::O_CLOEXEC)).map(drop)
    }
    #[cfg(not(any(
        target_os = "linux",
        target_os = "android",
        target_os = "freebsd",
        target_os = "netbsd",
        target_os = "openbsd"
    )))]
    {
        syscall!(dup2(placeholder, fd))?;
        syscall!(fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC)).map(drop)
    }
}

/// `shutdown(SHUT_RDWR)`, so threads blocked in `read`/`accept` on the
/// socket wake up. On anything but a socket it fails at once (`ENOTSOCK`)
/// and changes nothing, so it doubles as the probe for descriptors of
/// unknown kind; `ENOTCONN` means there was no connection to end.
///
/// # References
/// `shutdown(2)`
pub(crate) fn shutdown(fd: RawFd) -> io::Result<()> {
    syscall!(shutdown(fd, libc::SHUT_RDWR)).map(drop)
}

// ---------------------------------------------------------------------------
// Helpers for the fork/exec child path (`src/child/`). Each is one or two raw
// syscalls: async-signal-safe, no allocation, no lock.

/// `close_range(first, last, 0)`: close every open descriptor in
/// `first..=last` with one syscall (Linux 5.9+). Numbers in the range that
/// are not open are skipped by the kernel; with `flags == 0` the call either
/// closes the whole range or fails before closing anything.
///
/// Async-signal-safe. Fails with `ENOSYS` on kernels before 5.9 and often
/// `EPERM` under a seccomp filter that does not know the syscall.
///
/// # References
/// `close_range(2)`
#[cfg(target_os = "linux")]
pub(crate) fn close_range(first: RawFd, last: RawFd) -> io::Result<()> {
    // The raw syscall, not the glibc wrapper: glibc only has it since 2.34.
    // The kernel takes the bounds as `unsigned int`.
    syscall!(syscall(
        libc::SYS_close_range,
        first as libc::c_uint,
        last as libc::c_uint,
        0 as libc::c_uint
    ))
    .map(drop)
}

/// Whether the kernel offers `close_range(2)` at all, asked without closing
/// anything: `first > last` is rejected with `EINVAL` by a kernel that has the
/// syscall, before it looks at any descriptor, while an old kernel says
/// `ENOSYS` and a seccomp filter usually `EPERM`.
///
/// Async-signal-safe.
///
/// # References
/// `close_range(2)`
#[cfg(target_os = "linux")]
pub(crate) fn close_range_supported() -> bool {
    match close_range(1, 0) {
        Err(e) => e.raw_os_error() == Some(libc::EINVAL),
        // No kernel accepts first > last; be conservative if one ever does.
        Ok(()) => false,
    }
}

/// Put signal `sig` back to its default disposition (`SIG_DFL`), with an
/// empty handler mask and no flags.
///
/// Async-signal-safe. Fails with `EINVAL` for `SIGKILL`, `SIGSTOP` and numbers
/// that are not signals.
///
/// # References
/// `sigaction(2)`, `signal(7)`
pub(crate) fn set_default_disposition(sig: libc::c_int) -> io::Result<()> {
    // SAFETY: `sigaction` is plain old data; all-zero is a valid value
    // (handler `SIG_DFL` == 0, no flags), and the mask is set just below.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = libc::SIG_DFL;
    // SAFETY: `sa_mask` is a valid, writable `sigset_t` inside `action`.
    unsafe { libc::sigemptyset(&mut action.sa_mask) };
    syscall!(sigaction(sig, &action, std::ptr::null_mut())).map(drop)
}
