//! Bounded sweeps over descriptor numbers: what the platform walks of open
//! descriptors fall back to when the system cannot list them.
//!
//! Both are async-signal-safe and allocation-free when the callback is.

use std::ops::ControlFlow;
use std::os::fd::RawFd;

use super::fd::is_open;

/// Where a sweep without a better bound stops: the soft `RLIMIT_NOFILE`,
/// or 2^20 when it is unlimited or unknown (a descriptor at or above 2^20
/// is then not seen). At least 3. Async-signal-safe (arithmetic only).
pub(crate) fn sweep_limit(soft: Option<u64>) -> RawFd {
    soft.map_or(1 << 20, |limit| {
        RawFd::try_from(limit).unwrap_or(RawFd::MAX)
    })
    .max(3)
}

/// The kernel's ceiling on descriptor numbers for this process on the BSDs
/// and Apple systems: `getdtablesize()`, the smaller of the soft
/// `RLIMIT_NOFILE` and the kernel's per-process maximum, finite even when
/// the soft limit is unlimited; [`sweep_limit`] if it says nothing.
/// Async-signal-safe (one syscall).
///
/// # References
/// `getdtablesize(2)`
#[cfg(any(
    target_vendor = "apple",
    target_os = "freebsd",
    target_os = "dragonfly",
    target_os = "netbsd",
    target_os = "openbsd"
))]
pub(crate) fn descriptor_ceiling() -> RawFd {
    // SAFETY: no preconditions.
    let n = unsafe { libc::getdtablesize() };
    if n > 0 {
        n
    } else {
        sweep_limit(super::fd::soft_fd_limit())
    }
}

/// Call `f` on every number in `from..to`, ascending, open or not, until
/// it breaks: `f` gets candidates and must tolerate `EBADF`.
/// Async-signal-safe and allocation-free when `f` is.
pub(crate) fn sweep(
    from: RawFd,
    to: RawFd,
    f: &mut impl FnMut(RawFd) -> ControlFlow<()>,
) -> ControlFlow<()> {
    for fd in from.max(0)..to {
        f(fd)?;
    }
    ControlFlow::Continue(())
}

/// Call `f` on every open number, ascending from 0, until `open` open
/// numbers were seen (`open` is how many the system says are open), `f`
/// breaks, or `ceiling` is reached. One `fcntl(F_GETFD)` per number up to
/// the highest open one: bounded by what is open, not by a limit.
///
/// Exact in a process with one thread (a fork child) when `f` opens no
/// descriptor; with other threads opening and closing meanwhile, numbers
/// opened above the sweep may stop it early. Async-signal-safe and
/// allocation-free when `f` is.
///
/// # References
/// `fcntl(2)` (`F_GETFD`)
// FreeBSD's walk; compiled, and unit-tested, everywhere.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) fn sweep_counted(
    mut open: usize,
    ceiling: RawFd,
    f: &mut impl FnMut(RawFd) -> ControlFlow<()>,
) -> ControlFlow<()> {
    let mut fd = 0;
    while open > 0 && fd < ceiling {
        if is_open(fd) {
            open -= 1;
            f(fd)?;
        }
        fd += 1;
    }
    ControlFlow::Continue(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn the_sweep_stops_at_the_soft_limit() {
        assert_eq!(sweep_limit(Some(1024)), 1024);
        assert_eq!(sweep_limit(None), 1 << 20);
        assert_eq!(sweep_limit(Some(0)), 3);
        assert_eq!(sweep_limit(Some(u64::MAX)), RawFd::MAX);
    }

    /// The counted sweep stops right after the last open number it was
    /// told about, sees only open numbers, and never passes the ceiling.
    /// In a fork child, where no other thread opens or closes anything.
    #[test]
    fn the_counted_sweep_stops_after_the_count_or_at_the_ceiling() {
        let file = std::fs::File::open("/dev/null").unwrap();
        let n = file.as_raw_fd();
        // SAFETY: the child makes only async-signal-safe, allocation-free
        // calls and `_exit`s.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let open_up_to_n = (0..=n).filter(|&fd| is_open(fd)).count();
            let (mut last, mut calls, mut closed_seen) = (-1, 0, false);
            let _ = sweep_counted(open_up_to_n, RawFd::MAX, &mut |fd| {
                (last, calls) = (fd, calls + 1);
                closed_seen |= !is_open(fd);
                ControlFlow::Continue(())
            });
            let mut past_ceiling = false;
            let _ = sweep_counted(usize::MAX, n, &mut |fd| {
                past_ceiling |= fd >= n;
                ControlFlow::Continue(())
            });
            let code = if last != n || calls != open_up_to_n {
                1
            } else if closed_seen {
                2
            } else if past_ceiling {
                3
            } else {
                0
            };
            crate::sys::exit_now(code);
        }
        let mut status = 0;
        // SAFETY: `pid` is our child; `status` is a valid out pointer.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(libc::WIFEXITED(status), "child died: {status:#x}");
        assert_eq!(
            libc::WEXITSTATUS(status),
            0,
            "1: did not stop at the last open number, 2: a closed number, 3: past the ceiling"
        );
    }
}
