//! FreeBSD, DragonFly, NetBSD and OpenBSD: `pipe2` and `dup3` (so no
//! close-on-exec windows), no `/proc/self/fd`. FreeBSD adds `close_range(2)`
//! (12.2+; its `CLOSE_RANGE_CLOEXEC` flag 13.1+) and a count of open
//! descriptors (`kern.proc.nfds`); NetBSD the highest open number
//! (`F_MAXFD`).
//!
//! Type-checked by CI for `x86_64-unknown-freebsd` and
//! `x86_64-unknown-netbsd`, never run there: see `docs/platforms.md`.

#[cfg(target_os = "freebsd")]
use std::io;
use std::ops::ControlFlow;
use std::os::fd::RawFd;

pub(crate) use super::atomic_cloexec::{pipe, replace_with_placeholder};
#[cfg(not(target_os = "freebsd"))]
pub(crate) use super::posix::{
    close_range, close_range_cloexec, probe_cloexec_range, probe_close_range,
};
pub(crate) use super::posix::{
    deaden, is_exec_channel, sender_pid, EXEC_CHANNEL_NAMES_SPAWNER, ROOT_PROBE_FLAGS,
};
pub(crate) use super::process::portable_environ as environ;
pub(crate) use super::signal::portable_set::async_signal_set;
use super::sweep;

/// `close_range(first, last, 0)`: close every open descriptor in
/// `first..=last` with one syscall (FreeBSD 12.2+). It clamps the range
/// to the table and never fails part way (it ignores `close` errors).
/// Async-signal-safe.
///
/// # References
/// `close_range(2)`
#[cfg(target_os = "freebsd")]
pub(crate) fn close_range(first: RawFd, last: RawFd) -> io::Result<()> {
    syscall!(close_range(first as libc::c_uint, last as libc::c_uint, 0)).map(drop)
}

/// Whether `close_range(2)` may be called, asked without closing anything:
/// `first > last` is `EINVAL` before any descriptor is looked at.
/// Async-signal-safe.
///
/// # References
/// `close_range(2)`
#[cfg(target_os = "freebsd")]
pub(crate) fn probe_close_range() -> bool {
    match close_range(1, 0) {
        Err(e) => e.raw_os_error() == Some(libc::EINVAL),
        Ok(()) => false,
    }
}

/// `close_range(first, last, CLOSE_RANGE_CLOEXEC)`: mark every open
/// descriptor in `first..=last` close-on-exec, closing nothing (FreeBSD
/// 13.1+; `EINVAL` for the unknown flag before). Async-signal-safe.
///
/// # References
/// `close_range(2)`
#[cfg(target_os = "freebsd")]
pub(crate) fn close_range_cloexec(first: libc::c_uint, last: libc::c_uint) -> io::Result<()> {
    syscall!(close_range(
        first,
        last,
        libc::CLOSE_RANGE_CLOEXEC as libc::c_int
    ))
    .map(drop)
}

/// Whether `close_range(.., CLOSE_RANGE_CLOEXEC)` works, asked without
/// touching a descriptor: the range `u32::MAX..=u32::MAX` lies above the
/// table (the kernel clamps it away and succeeds), while a kernel that
/// does not know the flag says `EINVAL`. Async-signal-safe.
///
/// # References
/// `close_range(2)`
#[cfg(target_os = "freebsd")]
pub(crate) fn probe_cloexec_range() -> bool {
    close_range_cloexec(libc::c_uint::MAX, libc::c_uint::MAX).is_ok()
}

/// Call `f` on every open descriptor number, ascending, until it breaks.
///
/// - FreeBSD: the kernel says how many are open (`sysctl`
///   `kern.proc.nfds`, where the kernel has it), and the sweep checks
///   numbers from 0 up (`fcntl(F_GETFD)`) until it has seen that many: one
///   syscall per number up to the highest open one, and `f` only on open
///   numbers.
/// - NetBSD: the kernel says which number is the highest open one
///   (`fcntl(F_MAXFD)`), and every number up to it is swept.
/// - Otherwise (those calls refused, DragonFly, OpenBSD): every number
///   below `getdtablesize()`, bounded by the kernel's per-process maximum
///   rather than by what is open.
///
/// A sweep gives `f` numbers that are not open (except FreeBSD's): `f`
/// must tolerate `EBADF`. Exact in a process with one thread (a fork
/// child) when `f` opens nothing. Async-signal-safe and allocation-free
/// when `f` is (`sysctl` with a numeric name is one system call).
///
/// # References
/// FreeBSD `sysctl(3)` (`KERN_PROC_NFDS`), NetBSD `fcntl(2)` (`F_MAXFD`),
/// `getdtablesize(2)`
pub(crate) fn for_each_open_fd(mut f: impl FnMut(RawFd) -> ControlFlow<()>) -> ControlFlow<()> {
    #[cfg(target_os = "freebsd")]
    if let Some(open) = open_count() {
        return sweep::sweep_counted(open, sweep::descriptor_ceiling(), &mut f);
    }
    #[cfg(target_os = "netbsd")]
    if let Ok(highest) = syscall!(fcntl(0, libc::F_MAXFD)) {
        return sweep::sweep(0, highest.saturating_add(1), &mut f);
    }
    sweep::sweep(0, sweep::descriptor_ceiling(), &mut f)
}

/// How many descriptors this process has open (`kern.proc.nfds`); `None`
/// where the kernel does not know the name. Async-signal-safe: `sysctl(3)`
/// with a numeric name is one system call, into a local.
///
/// # References
/// `sysctl(3)` (`KERN_PROC_NFDS`)
#[cfg(target_os = "freebsd")]
fn open_count() -> Option<usize> {
    let name = [libc::CTL_KERN, libc::KERN_PROC, libc::KERN_PROC_NFDS, 0];
    let mut count: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>();
    syscall!(sysctl(
        name.as_ptr(),
        name.len() as libc::c_uint,
        (&mut count as *mut libc::c_int).cast(),
        &mut len,
        std::ptr::null(),
        0
    ))
    .ok()?;
    if len != std::mem::size_of::<libc::c_int>() {
        return None;
    }
    usize::try_from(count).ok()
}
