//! Syscall wrappers that only the child setup needs.
//!
//! Kept next to their one user instead of in `src/sys.rs`, which the core
//! shares: nothing outside `src/child/` calls these. Each is one or two raw
//! syscalls through [`syscall!`]: async-signal-safe, no allocation, no lock.

use std::io;
use std::os::fd::RawFd;

use crate::sys::{self, syscall};

/// `fcntl(fd, F_DUPFD_CLOEXEC, min)`: a close-on-exec duplicate of `fd` at
/// the lowest free number `>= min`. Never replaces an open descriptor.
///
/// Fails with `EINVAL` when `min` is not below `RLIMIT_NOFILE`, `EMFILE` at
/// the limit, `EBADF` when `fd` is not open.
///
/// # References
/// `fcntl(2)` (`F_DUPFD_CLOEXEC`)
pub(super) fn dup_at_least(fd: RawFd, min: RawFd) -> io::Result<RawFd> {
    syscall!(fcntl(fd, libc::F_DUPFD_CLOEXEC, min))
}

/// The lowest number that is not open, found by asking the kernel for a
/// duplicate at the lowest free number (of stdio, or failing that an
/// `O_PATH` open of `/`) and closing it at once. `None` when nothing can be
/// opened (`EMFILE`).
///
/// # References
/// `fcntl(2)` (`F_DUPFD_CLOEXEC`), `open(2)` (`O_PATH`)
#[cfg(target_os = "linux")]
pub(super) fn lowest_free_number() -> Option<RawFd> {
    let probe = [0, 1, 2]
        .into_iter()
        .find_map(|fd| dup_at_least(fd, 0).ok())
        .or_else(|| syscall!(open(c"/".as_ptr(), libc::O_PATH | libc::O_CLOEXEC)).ok())?;
    let _ = sys::close(probe);
    Some(probe)
}

/// `dup2(source, target)`: `target` now names `source`'s open file, without
/// `FD_CLOEXEC`; whatever `target` named before is closed first (atomically).
/// `source != target` (with equal numbers `dup2` leaves the flag alone).
///
/// # References
/// `dup2(2)`
pub(super) fn dup_onto(source: RawFd, target: RawFd) -> io::Result<()> {
    debug_assert_ne!(source, target);
    syscall!(dup2(source, target)).map(drop)
}

/// The `(st_dev, st_ino)` of what `fd` names, or `None` when it is not open.
///
/// # References
/// `fstat(2)`
pub(super) fn identity(fd: RawFd) -> Option<(u64, u64)> {
    let st = sys::stat(fd)?;
    // The field types differ between targets (u32 / u64).
    #[allow(clippy::unnecessary_cast)]
    Some((st.st_dev as u64, st.st_ino as u64))
}

/// Whether `fd` is close-on-exec; `None` when it is not open.
///
/// # References
/// `fcntl(2)` (`F_GETFD`)
pub(super) fn is_cloexec(fd: RawFd) -> Option<bool> {
    let flags = syscall!(fcntl(fd, libc::F_GETFD)).ok()?;
    Some(flags & libc::FD_CLOEXEC != 0)
}

/// This process's id.
///
/// # References
/// `getpid(2)`
pub(super) fn own_pid() -> libc::pid_t {
    // SAFETY: getpid has no preconditions and cannot fail.
    unsafe { libc::getpid() }
}

/// The parent's process id.
///
/// # References
/// `getppid(2)`
pub(super) fn parent_pid() -> libc::pid_t {
    // SAFETY: getppid has no preconditions and cannot fail.
    unsafe { libc::getppid() }
}

/// An `int`-valued `SOL_SOCKET` option of `fd`; `None` for a descriptor
/// that is not a socket (`ENOTSOCK`) or not open.
///
/// # References
/// `getsockopt(2)`, `socket(7)`
#[cfg(target_os = "linux")]
pub(super) fn socket_option(fd: RawFd, option: libc::c_int) -> Option<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    syscall!(getsockopt(
        fd,
        libc::SOL_SOCKET,
        option,
        (&mut value as *mut libc::c_int).cast(),
        &mut len
    ))
    .ok()?;
    Some(value)
}

/// The `SO_TYPE` of `fd`: `Ok(None)` when it is not open (`EBADF`) or not
/// a socket (`ENOTSOCK`), `Err(errno)` when the call itself is refused
/// (`EPERM` or `ENOSYS` from a seccomp filter, say).
///
/// # References
/// `getsockopt(2)`, `socket(7)`
#[cfg(target_os = "linux")]
pub(super) fn socket_type(fd: RawFd) -> Result<Option<libc::c_int>, i32> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    match syscall!(getsockopt(
        fd,
        libc::SOL_SOCKET,
        libc::SO_TYPE,
        (&mut value as *mut libc::c_int).cast(),
        &mut len
    )) {
        Ok(_) => Ok(Some(value)),
        Err(e) => match e.raw_os_error() {
            Some(libc::EBADF | libc::ENOTSOCK) => Ok(None),
            Some(errno) => Err(errno),
            None => Err(libc::EIO),
        },
    }
}

/// The process id `SO_PEERCRED` reports for the `AF_UNIX` socket `fd`: for
/// one end of a `socketpair(2)`, the process that created the pair.
///
/// # References
/// `unix(7)` (`SO_PEERCRED`)
#[cfg(target_os = "linux")]
pub(super) fn peer_pid(fd: RawFd) -> Option<libc::pid_t> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    syscall!(getsockopt(
        fd,
        libc::SOL_SOCKET,
        libc::SO_PEERCRED,
        (&mut cred as *mut libc::ucred).cast(),
        &mut len
    ))
    .ok()?;
    Some(cred.pid)
}

/// Whether `fd` names a pipe or FIFO.
///
/// # References
/// `fstat(2)`, `inode(7)`
#[cfg(not(target_os = "linux"))]
pub(super) fn is_fifo(fd: RawFd) -> bool {
    sys::stat(fd).is_some_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFIFO)
}

/// `close_range(first, last, CLOSE_RANGE_CLOEXEC)`: mark every open
/// descriptor in `first..=last` close-on-exec, closing nothing (Linux 5.11+).
/// `EINVAL` on 5.9 and 5.10 (the flag is unknown), `ENOSYS` before, often
/// `EPERM` under a seccomp filter.
///
/// # References
/// `close_range(2)`
#[cfg(target_os = "linux")]
pub(super) fn close_range_cloexec(first: libc::c_uint, last: libc::c_uint) -> io::Result<()> {
    // The raw syscall, not the glibc wrapper: glibc only has it since 2.34.
    syscall!(syscall(
        libc::SYS_close_range,
        first,
        last,
        libc::CLOSE_RANGE_CLOEXEC as libc::c_uint
    ))
    .map(drop)
}

/// Whether `close_range(.., CLOSE_RANGE_CLOEXEC)` works here, asked without
/// touching any descriptor: the range `u32::MAX..=u32::MAX` lies above every
/// possible descriptor, so a kernel that knows the flag marks nothing and
/// succeeds, while an older one says `EINVAL` (or `ENOSYS`, or a filter
/// `EPERM`).
///
/// # References
/// `close_range(2)`
#[cfg(target_os = "linux")]
pub(super) fn probe_cloexec_range() -> bool {
    close_range_cloexec(libc::c_uint::MAX, libc::c_uint::MAX).is_ok()
}

/// `open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC)`.
///
/// # References
/// `open(2)`, `proc(5)`
#[cfg(target_os = "linux")]
pub(super) fn open_proc_self_fd() -> io::Result<RawFd> {
    syscall!(open(
        c"/proc/self/fd".as_ptr(),
        libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC
    ))
}

/// `getdents64(dir, buf)`: fill `buf` with `linux_dirent64` records; the
/// number of bytes used, 0 at the end of the directory. The raw syscall:
/// glibc's `readdir` allocates.
///
/// # References
/// `getdents64(2)`
#[cfg(target_os = "linux")]
pub(super) fn getdents64(dir: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    let n = syscall!(syscall(
        libc::SYS_getdents64,
        dir,
        buf.as_mut_ptr(),
        buf.len()
    ))?;
    Ok(n as usize)
}

/// Whether a handler function is installed for `sig` (neither `SIG_DFL`
/// nor `SIG_IGN`); `false` for a number that is not a signal.
///
/// # References
/// `sigaction(2)`
pub(super) fn handler_function_installed(sig: libc::c_int) -> bool {
    let mut current = std::mem::MaybeUninit::<libc::sigaction>::uninit();
    if syscall!(sigaction(sig, std::ptr::null(), current.as_mut_ptr())).is_err() {
        return false;
    }
    // SAFETY: sigaction succeeded, so it wrote the whole struct.
    let handler = unsafe { current.assume_init() }.sa_sigaction;
    handler != libc::SIG_DFL && handler != libc::SIG_IGN
}
