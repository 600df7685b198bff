//! `close_other_fds` in the child: mark every descriptor except 0-2 and the
//! passed numbers close-on-exec, so the new program starts with those only.
//!
//! Marking instead of closing is what keeps `spawn`'s error reporting
//! working: std's exec-error channel is already close-on-exec and must stay
//! open until `execve` succeeds (the kernel closes it then) or fails (the
//! child writes the error to it).
//!
//! Linux 5.11+ and FreeBSD 13.1+: one `close_range(first, last,
//! CLOSE_RANGE_CLOEXEC)` per gap between kept numbers: a handful of
//! syscalls whatever the number of open descriptors. Where the flag or the
//! syscall is refused (`EINVAL` on Linux 5.9 and 5.10 and older FreeBSD,
//! `ENOSYS` before, `EPERM` under seccomp), and on other systems: an
//! `fcntl` on every open number, found by `sys::for_each_open_fd` (see
//! there, per system, how that walk is bounded). All allocation-free and
//! async-signal-safe.

use std::ops::ControlFlow;
use std::os::fd::RawFd;

use super::probe::Probed;
use crate::sys;

/// What this process knows about `CLOSE_RANGE_CLOEXEC` (on systems without
/// it the probe says no without a syscall).
static CLOEXEC_RANGE: Probed = Probed::new(sys::probe_cloexec_range);

/// Whether `close_range(.., CLOSE_RANGE_CLOEXEC)` may be tried: asked once
/// (a probe that marks nothing), cached. Async-signal-safe.
pub(super) fn cloexec_range_usable() -> bool {
    CLOEXEC_RANGE.usable()
}

/// Call `f(first, last)` for every maximal run of numbers `>= 3` that is not
/// in `kept` (sorted ascending), the last run ending at `c_uint::MAX`; stop
/// at the first error. Numbers 0-2 are never in a run.
fn for_each_gap<E>(
    kept: &[RawFd],
    mut f: impl FnMut(libc::c_uint, libc::c_uint) -> Result<(), E>,
) -> Result<(), E> {
    let mut next: libc::c_uint = 3;
    for &k in kept {
        let Ok(k) = libc::c_uint::try_from(k) else {
            continue;
        };
        if k < next {
            continue;
        }
        if k > next {
            f(next, k - 1)?;
        }
        match k.checked_add(1) {
            Some(n) => next = n,
            None => return Ok(()),
        }
    }
    f(next, libc::c_uint::MAX)
}

/// Mark every open descriptor close-on-exec except 0-2 and the numbers in
/// `kept` (sorted ascending). Async-signal-safe and allocation-free; never
/// fails (the last fallback cannot).
pub(super) fn mark_cloexec_except(kept: &[RawFd]) {
    if cloexec_range_usable() {
        match for_each_gap(kept, sys::close_range_cloexec) {
            Ok(()) => return,
            // Marking more than once is harmless: whatever gap was done is
            // done again below.
            Err(_) => CLOEXEC_RANGE.refuse(),
        }
    }
    let _ = sys::for_each_open_fd(|fd| {
        // EBADF for a number that is not open: it reaches no program.
        if fd > 2 && kept.binary_search(&fd).is_err() {
            let _ = sys::set_cloexec(fd, true);
        }
        ControlFlow::Continue(())
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gaps(kept: &[RawFd]) -> Vec<(libc::c_uint, libc::c_uint)> {
        let mut out = Vec::new();
        let _ = for_each_gap::<()>(kept, |a, b| {
            out.push((a, b));
            Ok(())
        });
        out
    }

    #[test]
    fn gaps_skip_stdio_and_every_kept_number() {
        let max = libc::c_uint::MAX;
        assert_eq!(gaps(&[0, 1, 2]), [(3, max)]);
        assert_eq!(gaps(&[]), [(3, max)]);
        assert_eq!(gaps(&[0, 1, 2, 3, 4]), [(5, max)]);
        assert_eq!(gaps(&[0, 1, 2, 5, 6, 9]), [(3, 4), (7, 8), (10, max)]);
        assert_eq!(gaps(&[-1, 1, 7]), [(3, 6), (8, max)]);
        assert_eq!(
            gaps(&[RawFd::MAX]),
            [(3, RawFd::MAX as u32 - 1), (1 << 31, max)]
        );
    }
}
