//! macOS, iOS and the other Apple systems: no `pipe2`, no `dup3`, no
//! `F_DUP2FD_CLOEXEC`, no `close_range`, no `/proc`, no real-time
//! signals. Open descriptors are listed with `proc_pidinfo` (macOS).
//!
//! Type-checked by CI for `x86_64-apple-darwin` and `aarch64-apple-darwin`,
//! never run there: see `docs/platforms.md`.

use std::ops::ControlFlow;
use std::os::fd::RawFd;

pub(crate) use super::posix::{
    close_range, close_range_cloexec, deaden, is_exec_channel, pipe, probe_cloexec_range,
    probe_close_range, replace_with_placeholder, sender_pid, EXEC_CHANNEL_NAMES_SPAWNER,
    ROOT_PROBE_FLAGS,
};
pub(crate) use super::signal::portable_set::async_signal_set;
use super::sweep;

/// Where the C library keeps the environment pointer: `_NSGetEnviron()`,
/// as std reaches it here. Async-signal-safe.
///
/// # References
/// `environ(7)`, `<crt_externs.h>`
pub(crate) fn environ() -> *mut *const *const libc::c_char {
    // SAFETY: no preconditions; returns the address of the process's
    // environment pointer.
    unsafe { libc::_NSGetEnviron().cast() }
}

/// Call `f` on every open descriptor number, ascending, until it breaks.
///
/// macOS: asks the kernel how large this process's descriptor table is
/// (`proc_pidinfo(PROC_PIDTBSDINFO)`: `pbi_nfiles`, every open number is
/// below it) and, when the table has at most 256 slots, for the list of
/// open numbers (`proc_pidinfo(PROC_PIDLISTFDS)`, into a stack buffer).
/// A larger table is swept up to its size, open or not. Bounded by the
/// table, which grows with the highest number ever open, never by the
/// soft `RLIMIT_NOFILE` (unlimited by default for many programs here).
/// If `proc_pidinfo` is refused, and on the other Apple systems: every
/// number below `getdtablesize()`. A sweep gives `f` numbers that are
/// not open: it must tolerate `EBADF`, and be idempotent (a listing
/// found malformed is replaced by the sweep).
///
/// Async-signal-safe and allocation-free when `f` is: `proc_pidinfo` is
/// a thin wrapper of the `proc_info` system call (no allocation, no
/// lock), though not on POSIX's list.
///
/// # References
/// `proc_pidinfo` (`<libproc.h>`, `PROC_PIDTBSDINFO`, `PROC_PIDLISTFDS`),
/// `getdtablesize(2)`
pub(crate) fn for_each_open_fd(mut f: impl FnMut(RawFd) -> ControlFlow<()>) -> ControlFlow<()> {
    #[cfg(target_os = "macos")]
    if let Some(slots) = proc_info::table_size() {
        if let Some(flow) = proc_info::listed(slots, &mut f) {
            return flow;
        }
        return sweep::sweep(0, slots, &mut f);
    }
    sweep::sweep(0, sweep::descriptor_ceiling(), &mut f)
}

/// `proc_pidinfo` of this process (macOS only: the `libc` crate has
/// `<libproc.h>` for macOS).
#[cfg(target_os = "macos")]
mod proc_info {
    use std::mem::size_of;
    use std::ops::ControlFlow;
    use std::os::fd::RawFd;

    use crate::sys::process::getpid;

    /// How many entries the listing's stack buffer holds (2 KiB).
    const LISTED: usize = 256;

    /// The size of this process's descriptor table (`pbi_nfiles`): every
    /// open number is below it. `None` when the kernel will not say.
    /// Async-signal-safe (one `proc_info` system call into a local).
    ///
    /// # References
    /// `proc_pidinfo` (`<libproc.h>`, `PROC_PIDTBSDINFO`)
    pub(super) fn table_size() -> Option<RawFd> {
        // SAFETY: `proc_bsdinfo` is plain integers and byte arrays:
        // all-zero is a valid value.
        let mut info: libc::proc_bsdinfo = unsafe { std::mem::zeroed() };
        let size = size_of::<libc::proc_bsdinfo>() as libc::c_int;
        // SAFETY: `info` is a writable buffer of `size` bytes.
        let got = unsafe {
            libc::proc_pidinfo(
                getpid(),
                libc::PROC_PIDTBSDINFO,
                0,
                (&mut info as *mut libc::proc_bsdinfo).cast(),
                size,
            )
        };
        if got != size {
            return None;
        }
        RawFd::try_from(info.pbi_nfiles).ok()
    }

    /// Call `f` on each open number the kernel lists, when the table has
    /// at most [`LISTED`] slots (so the list cannot have been cut short)
    /// and the list is strictly ascending. `None` (nothing called) when
    /// the list cannot be had or trusted. Async-signal-safe and
    /// allocation-free when `f` is (the list is a stack buffer).
    ///
    /// # References
    /// `proc_pidinfo` (`<libproc.h>`, `PROC_PIDLISTFDS`)
    pub(super) fn listed(
        slots: RawFd,
        f: &mut impl FnMut(RawFd) -> ControlFlow<()>,
    ) -> Option<ControlFlow<()>> {
        if usize::try_from(slots).ok()? > LISTED {
            return None;
        }
        let mut list = [libc::proc_fdinfo {
            proc_fd: 0,
            proc_fdtype: 0,
        }; LISTED];
        let size = size_of::<[libc::proc_fdinfo; LISTED]>() as libc::c_int;
        // SAFETY: `list` is a writable buffer of `size` bytes.
        let got = unsafe {
            libc::proc_pidinfo(
                getpid(),
                libc::PROC_PIDLISTFDS,
                0,
                list.as_mut_ptr().cast(),
                size,
            )
        };
        let bytes = usize::try_from(got).ok().filter(|&b| b > 0)?;
        let entries = list.get(..bytes / size_of::<libc::proc_fdinfo>())?;
        let ascending = entries.windows(2).all(|w| w[0].proc_fd < w[1].proc_fd);
        if !ascending || entries.first()?.proc_fd < 0 {
            return None;
        }
        for entry in entries {
            if let ControlFlow::Break(()) = f(entry.proc_fd) {
                return Some(ControlFlow::Break(()));
            }
        }
        Some(ControlFlow::Continue(()))
    }
}
