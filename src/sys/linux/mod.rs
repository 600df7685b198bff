//! Linux and Android: `pipe2`, `dup3`, `O_PATH`, `/proc/self/fd`,
//! `close_range(2)`, `SO_PEERCRED`, and the 64-bit kernel signal mask.
//!
//! Everything here is what CI builds and runs (x86_64 glibc); Android and
//! musl follow the same kernel interfaces but are not built by CI.

use std::io;
use std::ops::ControlFlow;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

mod proc_fd;

/// The kernel's 64-signal mask inside the C library's `sigset_t`, on the
/// 64-bit Linux targets whose layout `sigset.rs` knows; the portable set
/// on the others (Android, 32-bit targets).
#[cfg(all(
    target_os = "linux",
    any(
        target_arch = "x86_64",
        target_arch = "aarch64",
        target_arch = "riscv64",
        target_arch = "loongarch64",
        target_arch = "powerpc64",
        target_arch = "s390x"
    )
))]
mod sigset;
#[cfg(not(all(
    target_os = "linux",
    any(
        target_arch = "x86_64",
        target_arch = "aarch64",
        target_arch = "riscv64",
        target_arch = "loongarch64",
        target_arch = "powerpc64",
        target_arch = "s390x"
    )
)))]
use super::signal::portable_set as sigset;
pub(crate) use sigset::async_signal_set;

pub(crate) use super::atomic_cloexec::pipe;
#[cfg(target_os = "linux")]
pub(crate) use super::atomic_cloexec::replace_with_placeholder;
pub(crate) use super::process::portable_environ as environ;
use super::{fd, sweep};

#[cfg(target_os = "linux")]
use libc::CLOSE_RANGE_CLOEXEC;
/// `CLOSE_RANGE_CLOEXEC` from the kernel's `linux/close_range.h` (the
/// `libc` crate has it for Linux only).
#[cfg(target_os = "android")]
const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;

/// Turn the read end of a pipe whose write end is closed into the dead
/// placeholder: an `O_PATH` descriptor of the same pipe, opened through
/// `/proc/self/fd/<n>` (see [`open_placeholder`](super::open_placeholder)
/// for what that buys). Keeps `read` where `/proc` cannot be opened, or
/// when what opened is not the same pipe (code that does not own our
/// number closed and reused it). Async-signal-safe.
///
/// # References
/// `open(2)` (`O_PATH`), `proc(5)` (`/proc/pid/fd`), `fstat(2)`
pub(crate) fn deaden(read: OwnedFd) -> OwnedFd {
    let path = proc_fd::ProcFdPath::new(read.as_raw_fd());
    match syscall!(open(path.as_ptr(), libc::O_PATH | libc::O_CLOEXEC)) {
        Ok(fd) => {
            // SAFETY: `open` just returned this descriptor; nothing else
            // owns it.
            let opened = unsafe { OwnedFd::from_raw_fd(fd) };
            // The same pipe, or code that does not own our read end's
            // number closed and reused it: then keep the read end.
            if same_inode(opened.as_raw_fd(), read.as_raw_fd()) {
                // `read` closes here: the pipe keeps no end open.
                opened
            } else {
                read
            }
        }
        Err(_) => read,
    }
}

/// Whether `a` and `b` name the same inode (`fstat` of both succeeds and
/// agrees). Async-signal-safe.
fn same_inode(a: RawFd, b: RawFd) -> bool {
    matches!((fd::identity(a), fd::identity(b)), (Some(x), Some(y)) if x == y)
}

/// [`replace_with_placeholder`](super::atomic_cloexec::replace_with_placeholder)
/// on Android: Bionic has `dup3` (API 21+), the `libc` crate does not bind
/// it. Async-signal-safe.
///
/// # References
/// `dup3(2)`
#[cfg(target_os = "android")]
pub(crate) fn replace_with_placeholder(placeholder: RawFd, fd: RawFd) -> io::Result<()> {
    syscall!(syscall(libc::SYS_dup3, placeholder, fd, libc::O_CLOEXEC)).map(drop)
}

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
pub(crate) fn probe_close_range() -> bool {
    match close_range(1, 0) {
        Err(e) => e.raw_os_error() == Some(libc::EINVAL),
        // No kernel accepts first > last; be conservative if one ever does.
        Ok(()) => false,
    }
}

/// `close_range(first, last, CLOSE_RANGE_CLOEXEC)`: mark every open
/// descriptor in `first..=last` close-on-exec, closing nothing (Linux 5.11+).
/// `EINVAL` on 5.9 and 5.10 (the flag is unknown), `ENOSYS` before, often
/// `EPERM` under a seccomp filter. Async-signal-safe.
///
/// # References
/// `close_range(2)`
pub(crate) fn close_range_cloexec(first: libc::c_uint, last: libc::c_uint) -> io::Result<()> {
    // The raw syscall, not the glibc wrapper: glibc only has it since 2.34.
    syscall!(syscall(
        libc::SYS_close_range,
        first,
        last,
        CLOSE_RANGE_CLOEXEC as libc::c_uint
    ))
    .map(drop)
}

/// Whether `close_range(.., CLOSE_RANGE_CLOEXEC)` works here, asked without
/// touching any descriptor: the range `u32::MAX..=u32::MAX` lies above every
/// possible descriptor, so a kernel that knows the flag marks nothing and
/// succeeds, while an older one says `EINVAL` (or `ENOSYS`, or a filter
/// `EPERM`). Async-signal-safe.
///
/// # References
/// `close_range(2)`
pub(crate) fn probe_cloexec_range() -> bool {
    close_range_cloexec(libc::c_uint::MAX, libc::c_uint::MAX).is_ok()
}

/// Call `f` on every open descriptor number, ascending, until it breaks:
/// a `getdents64(2)` walk of `/proc/self/fd` into a stack buffer (bounded
/// by what is open). Where `/proc` cannot be read (not mounted, the
/// process is at `RLIMIT_NOFILE` so the directory cannot be opened, a
/// listing that makes no sense): every number below the soft
/// `RLIMIT_NOFILE` (2^20 when unlimited), open or not. A listing that
/// fails part way is replaced by the sweep from the start, so `f` may see
/// a number twice: it must be idempotent, and tolerate `EBADF`.
///
/// Async-signal-safe and allocation-free when `f` is.
///
/// # References
/// `proc(5)` (`/proc/pid/fd`), `getdents64(2)`, `getrlimit(2)`
pub(crate) fn for_each_open_fd(mut f: impl FnMut(RawFd) -> ControlFlow<()>) -> ControlFlow<()> {
    if let Ok(flow) = proc_fd::listed_in_proc(&mut f) {
        return flow;
    }
    sweep::sweep(0, sweep::sweep_limit(fd::soft_fd_limit()), &mut f)
}

/// The flags [`lowest_free_number`](super::lowest_free_number) opens `/`
/// with when stdio is closed: `O_PATH`, which needs no permission on `/`.
pub(crate) const ROOT_PROBE_FLAGS: libc::c_int = libc::O_PATH | libc::O_CLOEXEC;

/// std's exec-error channel here is an `AF_UNIX` `SOCK_SEQPACKET` socket
/// pair whose peer credentials name the process that spawned: a search can
/// tell a spawn child (it has one) from a process under `Command::exec`.
pub(crate) const EXEC_CHANNEL_NAMES_SPAWNER: bool = true;

/// Whether `fd` may be std's exec-error channel in a child of `spawner`: a
/// close-on-exec `AF_UNIX` `SOCK_SEQPACKET` socket whose pair `spawner`
/// created. `Err(errno)` when `getsockopt` itself is refused (`EPERM`,
/// `ENOSYS`, `EACCES`: a filter), not for `EBADF`/`ENOTSOCK`.
/// Async-signal-safe.
///
/// # References
/// `getsockopt(2)`, `socket(7)`, `unix(7)` (`SO_PEERCRED`)
pub(crate) fn is_exec_channel(fd: RawFd, spawner: libc::pid_t) -> Result<bool, i32> {
    match socket_type(fd) {
        Ok(Some(libc::SOCK_SEQPACKET)) => {}
        Ok(_) => return Ok(false),
        Err(errno) => return Err(errno),
    }
    Ok(socket_option(fd, libc::SO_DOMAIN) == Some(libc::AF_UNIX)
        && peer_pid(fd) == Some(spawner)
        && fd::is_cloexec(fd) == Some(true))
}

/// An `int`-valued `SOL_SOCKET` option of `fd`; `None` for a descriptor
/// that is not a socket (`ENOTSOCK`) or not open.
///
/// # References
/// `getsockopt(2)`, `socket(7)`
fn socket_option(fd: RawFd, option: libc::c_int) -> Option<libc::c_int> {
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
fn socket_type(fd: RawFd) -> Result<Option<libc::c_int>, i32> {
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
fn peer_pid(fd: RawFd) -> Option<libc::pid_t> {
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

/// The pid of the process that sent the signal `info` describes, when the
/// kernel says a process sent it: `si_code` is `SI_USER` (`kill(2)`),
/// `SI_QUEUE` (`sigqueue(3)`) or `SI_TKILL` (`tkill(2)`/`tgkill(2)`, which
/// `raise(3)` and `pthread_kill(3)` use). `None` for a signal the kernel
/// made (`SI_KERNEL`: a terminal's Ctrl-C, a hang-up), and for a sender the
/// kernel reports as pid 0 (a process outside this one's pid namespace).
///
/// Async-signal-safe (reads two fields of `info`).
///
/// # References
/// `sigaction(2)` (`SA_SIGINFO`, "The siginfo_t argument"), `kill(2)`,
/// `sigqueue(3)`, `tgkill(2)`
pub(crate) fn sender_pid(info: &libc::siginfo_t) -> Option<u32> {
    if !matches!(
        info.si_code,
        libc::SI_USER | libc::SI_QUEUE | libc::SI_TKILL
    ) {
        return None;
    }
    // SAFETY: for these three codes the kernel fills the union member that
    // starts with `si_pid` (`_kill`, or `_rt` for SI_QUEUE, which shares its
    // layout up to `si_uid`), so the field read is initialised.
    let pid = unsafe { info.si_pid() };
    u32::try_from(pid).ok().filter(|&pid| pid != 0)
}
