//! The process-wide dead placeholder that retiring swaps over a descriptor.
//!
//! [`FdTable::close_all`](crate::FdTable::close_all) and
//! [`FdTable::retire_all_in_child`](crate::FdTable::retire_all_in_child)
//! release a file while keeping its number reserved by `dup3`-ing a dead
//! descriptor over it (see [`sys::open_placeholder`]). Both are most needed
//! exactly when the process may be out of descriptors (a Ctrl-C at
//! `EMFILE`), so the placeholder is opened once, by the first `track` of any
//! table, before anything could need it, and kept for the life of the
//! process: one descriptor, close-on-exec, never closed.
//!
//! Before each use it is checked (one `fstat`, one `fcntl`): code that closes
//! numbers it does not own, or a fork that copied the descriptor table before
//! another thread opened the placeholder, could leave the recorded number
//! naming some other file, and swapping *that* over tracked numbers would give
//! retired handles a live file. A placeholder that fails the check is
//! replaced by a fresh one (the stale number is not ours to close).
//!
//! Process-wide and not part of the slot state machine, so it uses core's
//! atomics directly, not the `fdtable_loom` seam.

use core::sync::atomic::{AtomicI32, Ordering};
use std::io;
use std::os::fd::{IntoRawFd, RawFd};

use crate::sys;

/// The placeholder's number, or -1 before the first `track`.
static PLACEHOLDER: AtomicI32 = AtomicI32::new(-1);

/// Make sure the placeholder exists: the path behind `track`. One atomic load
/// once it does.
///
/// # Errors
/// The OS error of `open(2)` (`EMFILE`, `ENFILE`, ...) the first time.
pub(crate) fn ensure() -> io::Result<()> {
    if PLACEHOLDER.load(Ordering::Acquire) >= 0 {
        return Ok(());
    }
    install(-1).map(drop)
}

/// The placeholder's number, checked to still be the dead placeholder;
/// replaced by a fresh one if it is not (or was never opened).
///
/// Async-signal-safe: atomics, `fstat`, `fcntl`, and `open` only when a
/// replacement is needed; no allocation.
///
/// # Errors
/// The OS error of `open(2)` when a replacement is needed and cannot be
/// opened.
pub(crate) fn checked() -> io::Result<RawFd> {
    let fd = PLACEHOLDER.load(Ordering::Acquire);
    if fd >= 0 && sys::is_dead_placeholder(fd) {
        return Ok(fd);
    }
    install(fd)
}

/// Open a placeholder and record it in place of `stale` (-1: none yet). If
/// another thread recorded one first, use that and close ours.
fn install(stale: RawFd) -> io::Result<RawFd> {
    let fresh = sys::open_placeholder()?;
    let fresh_fd = std::os::fd::AsRawFd::as_raw_fd(&fresh);
    match PLACEHOLDER.compare_exchange(stale, fresh_fd, Ordering::AcqRel, Ordering::Acquire) {
        // Kept for the life of the process: its number is never closed.
        Ok(_) => Ok(fresh.into_raw_fd()),
        // `fresh` is closed on return; the winner's is as good as ours. (A
        // stale number that is not ours is never closed here.)
        Err(winner) => Ok(winner),
    }
}

/// The recorded number without any check, for tests.
#[cfg(all(test, not(fdtable_loom)))]
pub(crate) fn current() -> RawFd {
    PLACEHOLDER.load(Ordering::Acquire)
}

#[cfg(all(test, not(fdtable_loom)))]
mod tests {
    use super::*;

    #[test]
    fn the_placeholder_is_opened_once_and_survives_checks() {
        ensure().unwrap();
        let fd = current();
        assert!(fd > 2, "the placeholder must not take a stdio number");
        assert!(sys::is_dead_placeholder(fd));
        ensure().unwrap();
        assert_eq!(checked().unwrap(), fd);
        assert_eq!(current(), fd);
    }
}
