//! The process-wide dead placeholder that retiring swaps over a descriptor.
//!
//! [`FdTable::close_all`](crate::FdTable::close_all) and
//! [`FdTable::retire_all_in_child`](crate::FdTable::retire_all_in_child)
//! release a file while keeping its number reserved by `dup3`-ing a dead
//! descriptor over it (see [`sys::open_placeholder`]: on Linux an `O_PATH`
//! descriptor of a private pipe whose ends are closed). Both are most needed
//! exactly when the process may be out of descriptors (a Ctrl-C at
//! `EMFILE`), so the placeholder is opened once, by the first `track` of any
//! table, before anything could need it, and kept for the life of the
//! process: one descriptor, close-on-exec, never closed.
//!
//! Before each use it is checked against the identity it had when it was
//! opened (one `fstat`, one `fcntl`): code that closes numbers it does not
//! own, or a fork that copied the descriptor table before another thread
//! opened the placeholder, could leave the recorded number naming some
//! other file, and swapping *that* over tracked numbers would give retired
//! handles a live file. A placeholder that fails the check is replaced by a
//! fresh one (the stale number is not ours to close), once per detected
//! loss: the fresh one's identity is what later checks compare with. A fresh
//! one that cannot even be examined (`fstat` refused) is kept unchecked
//! rather than reopened on every call.
//!
//! Process-wide and not part of the slot state machine, so it uses core's
//! atomics directly, not the `fdtable_loom` seam.

use core::sync::atomic::{AtomicU64, Ordering};
use std::io;
use std::os::fd::{AsRawFd, IntoRawFd, RawFd};

use crate::sys;

/// The placeholder's number (low 32 bits) and its identity tag
/// ([`sys::placeholder_tag`], high 32 bits; 0: kept unchecked), in one word
/// so that both change together. [`NONE`] before the first `track`.
static PLACEHOLDER: AtomicU64 = AtomicU64::new(NONE);

/// No placeholder yet: number -1, tag 0.
const NONE: u64 = u32::MAX as u64;

fn pack(fd: RawFd, tag: u32) -> u64 {
    (u64::from(tag) << 32) | u64::from(fd as u32)
}

fn unpack(word: u64) -> (RawFd, u32) {
    (word as u32 as RawFd, (word >> 32) as u32)
}

/// Make sure the placeholder exists: the path behind `track`. One atomic load
/// once it does.
///
/// # Errors
/// The OS error of `pipe(2)` (`EMFILE`, `ENFILE`, ...) the first time.
pub(crate) fn ensure() -> io::Result<()> {
    let word = PLACEHOLDER.load(Ordering::Acquire);
    if unpack(word).0 >= 0 {
        return Ok(());
    }
    install(word).map(drop)
}

/// The placeholder's number, checked to still be the dead placeholder;
/// replaced by a fresh one if it is not (or was never opened).
///
/// Async-signal-safe: atomics, `fstat`, `fcntl`, and the few syscalls of
/// [`sys::open_placeholder`] when a replacement is needed; no allocation.
///
/// # Errors
/// The OS error of `pipe(2)` when a replacement is needed and cannot be
/// opened (`EMFILE`).
pub(crate) fn checked() -> io::Result<RawFd> {
    let word = PLACEHOLDER.load(Ordering::Acquire);
    let (fd, tag) = unpack(word);
    if fd >= 0 && (tag == 0 || sys::is_placeholder(fd, tag)) {
        return Ok(fd);
    }
    install(word)
}

/// Open a placeholder and record it in place of `stale` (the word read
/// before). If another thread recorded one first, use that and close ours.
fn install(stale: u64) -> io::Result<RawFd> {
    let fresh = sys::open_placeholder()?;
    // Examined once, right away; if even that fails, kept unchecked (tag 0)
    // rather than replaced again on every call.
    let tag = sys::placeholder_tag(fresh.as_raw_fd()).unwrap_or(0);
    let word = pack(fresh.as_raw_fd(), tag);
    match PLACEHOLDER.compare_exchange(stale, word, Ordering::AcqRel, Ordering::Acquire) {
        // Kept for the life of the process: its number is never closed.
        Ok(_) => Ok(fresh.into_raw_fd()),
        // `fresh` is closed on return; the winner's is as good as ours. (A
        // stale number that is not ours is never closed here.)
        Err(winner) => Ok(unpack(winner).0),
    }
}

/// The error `track` gives when the placeholder cannot be opened: the OS
/// error's kind, a message that names the placeholder, and the OS error as
/// its [`source`](std::error::Error::source).
pub(crate) fn unavailable(os: io::Error) -> io::Error {
    io::Error::new(os.kind(), Unavailable(os))
}

#[derive(Debug)]
struct Unavailable(io::Error);

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "cannot open the dead placeholder descriptor that close_all swaps over released \
             numbers (opened once, by the first track in this process): {}",
            self.0
        )
    }
}

impl std::error::Error for Unavailable {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

/// The recorded number without any check, for tests.
#[cfg(all(test, not(fdtable_loom)))]
pub(crate) fn current() -> RawFd {
    unpack(PLACEHOLDER.load(Ordering::Acquire)).0
}

#[cfg(all(test, not(fdtable_loom)))]
mod tests {
    use super::*;

    #[test]
    fn the_placeholder_is_opened_once_and_survives_checks() {
        ensure().unwrap();
        let fd = current();
        assert!(fd > 2, "the placeholder must not take a stdio number");
        let tag = unpack(PLACEHOLDER.load(Ordering::Acquire)).1;
        assert_ne!(tag, 0, "a fresh placeholder can be examined");
        assert!(sys::is_placeholder(fd, tag));
        ensure().unwrap();
        assert_eq!(checked().unwrap(), fd);
        assert_eq!(current(), fd);
    }

    #[test]
    fn the_record_packs_the_number_and_the_tag() {
        assert_eq!(unpack(NONE), (-1, 0));
        for (fd, tag) in [(3, 1), (1 << 20, u32::MAX), (i32::MAX, 7)] {
            assert_eq!(unpack(pack(fd, tag)), (fd, tag));
        }
    }
}
