//! Closing runs of published numbers in a child: `close_range(2)` where the
//! kernel allows it (Linux 5.9+, FreeBSD 12.2+), `close(2)` one number at a
//! time otherwise.

use std::os::fd::RawFd;

use super::probe::Probed;
use crate::sys;
use crate::table::FdTable;

/// What this process knows about `close_range(2)` (on systems without it
/// the probe says no without a syscall).
static CLOSE_RANGE: Probed = Probed::new(sys::probe_close_range);

/// Whether `close_range(2)` may be tried. Asks the kernel once (a probe that
/// closes nothing) and caches the answer. Async-signal-safe.
pub(super) fn close_range_usable() -> bool {
    CLOSE_RANGE.usable()
}

/// Close the numbers `first..=last`, all held by the table; return how many
/// that is (`last - first + 1`). One `close_range(2)` when there is more than
/// one number and the kernel allows it, else `close(2)` on each, never
/// retried (on Linux the number is released even when `close` reports
/// `EINTR` or `EIO`). Async-signal-safe.
fn close_run(first: RawFd, last: RawFd) -> usize {
    debug_assert!(first <= last);
    let count = (last - first) as usize + 1;
    if first < last && close_range_usable() {
        match sys::close_range(first, last) {
            // With flags == 0 the kernel closes all of the range or nothing.
            Ok(()) => return count,
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOSYS | libc::EPERM)) => {
                CLOSE_RANGE.refuse();
            }
            // Nothing was closed; `close(2)` below does the work.
            Err(_) => {}
        }
    }
    for fd in first..=last {
        // EBADF only for a number published after the kernel copied the
        // descriptor table at fork (see the module's internal details).
        let _ = sys::close(fd);
    }
    count
}

/// Walk the published numbers (atomic loads only, ascending), skip those for
/// which `keep` says so, and close the rest, coalescing consecutive numbers
/// into one run. Returns how many were closed. Async-signal-safe when `keep`
/// is.
pub(super) fn close_published(table: &FdTable, mut keep: impl FnMut(RawFd) -> bool) -> usize {
    let mut closed = 0;
    let mut run: Option<(RawFd, RawFd)> = None;
    table.for_each_published(|fd| {
        if keep(fd) {
            if let Some((first, last)) = run.take() {
                closed += close_run(first, last);
            }
            return;
        }
        run = match run {
            Some((first, last)) if last + 1 == fd => Some((first, fd)),
            Some((first, last)) => {
                closed += close_run(first, last);
                Some((fd, fd))
            }
            None => Some((fd, fd)),
        };
    });
    if let Some((first, last)) = run {
        closed += close_run(first, last);
    }
    closed
}
