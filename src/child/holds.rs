//! `pass_fd` target numbers held for every command that targets them.
//!
//! A target that is free at configuration time is reserved: the command's
//! duplicate is made *at* that number, so std's exec-error socket, which
//! `spawn` creates at the lowest free numbers, cannot land there. Several
//! commands may target the same number (a batch or a pipeline built up
//! front, each passing a jobserver pipe at 3, say); only the first finds it
//! free, the others find it held by the first one's duplicate. If that
//! command were dropped first and its duplicate closed, the number would
//! be free again at the others' spawns.
//!
//! So this registry counts, per number, the live mappings that target it,
//! and a duplicate of a mapping that is let go of (its command dropped, or
//! moved by `arrange`) is not closed while some live mapping targets its
//! number: the dead placeholder is `dup3`-ed over it (the passed file is
//! released at once, the number stays taken) and the registry keeps it
//! until the last mapping that targets the number is gone.
//!
//! Parent only (a mutex and a vector); nothing here runs in a child.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::{Mutex, MutexGuard};

use crate::{placeholder, sys};

/// One number that live mappings target.
#[derive(Debug)]
struct Hold {
    number: RawFd,
    /// How many live mappings (of any command) target it.
    mappings: usize,
    /// The placeholder kept at `number` for them, if a duplicate that sat
    /// there was let go of.
    kept: Option<OwnedFd>,
}

static HOLDS: Mutex<Vec<Hold>> = Mutex::new(Vec::new());

fn holds() -> MutexGuard<'static, Vec<Hold>> {
    HOLDS.lock().unwrap_or_else(|p| p.into_inner())
}

/// One more live mapping targets `number`. Call it before looking at the
/// number, so a duplicate let go of meanwhile keeps it.
///
/// Not async-signal-safe (parent only).
pub(super) fn register(number: RawFd) {
    let mut holds = holds();
    match holds.iter_mut().find(|h| h.number == number) {
        Some(hold) => hold.mappings += 1,
        None => holds.push(Hold {
            number,
            mappings: 1,
            kept: None,
        }),
    }
}

/// A live mapping that targets `number` is gone, and with it `source`, its
/// duplicate (which may sit at `number` itself): `source` is let go of as
/// [`dispose`] does, and a number no mapping targets any more is freed.
///
/// Not async-signal-safe (parent only).
pub(super) fn release(number: RawFd, source: OwnedFd) {
    let mut holds = holds();
    if let Some(hold) = holds.iter_mut().find(|h| h.number == number) {
        hold.mappings = hold.mappings.saturating_sub(1);
    }
    dispose_locked(&mut holds, source);
    // Closed under the lock: a mapping registered right after must find
    // the number either still held or already free, never freed later.
    holds.retain(|h| h.mappings > 0);
}

/// [`register`] undone, for a mapping that never got a duplicate.
///
/// Not async-signal-safe (parent only).
pub(super) fn unregister(number: RawFd) {
    let mut holds = holds();
    if let Some(hold) = holds.iter_mut().find(|h| h.number == number) {
        hold.mappings = hold.mappings.saturating_sub(1);
    }
    holds.retain(|h| h.mappings > 0);
}

/// Let go of `fd`, a mapping's duplicate: closed, unless a live mapping
/// targets its number; then the placeholder takes its place.
///
/// Not async-signal-safe (parent only).
pub(super) fn dispose(fd: OwnedFd) {
    dispose_locked(&mut holds(), fd);
}

fn dispose_locked(holds: &mut [Hold], fd: OwnedFd) {
    let number = fd.as_raw_fd();
    let Some(hold) = holds
        .iter_mut()
        .find(|h| h.number == number && h.mappings > 0 && h.kept.is_none())
    else {
        return; // `fd` closes here
    };
    // Without a placeholder (none can be opened) the number is freed: a
    // later spawn may then refuse with `EBUSY`, never pass the wrong file.
    let Ok(placeholder) = placeholder::checked() else {
        return;
    };
    if sys::replace_with_placeholder(placeholder, number).is_ok() {
        hold.kept = Some(fd);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::FromRawFd;

    fn dup_at(n: RawFd) -> OwnedFd {
        let null = std::fs::File::open("/dev/null").unwrap();
        // SAFETY: F_DUPFD_CLOEXEC makes a descriptor we own.
        let fd = unsafe { libc::fcntl(null.as_raw_fd(), libc::F_DUPFD_CLOEXEC, n) };
        assert_eq!(fd, n, "{n} is busy");
        // SAFETY: just created.
        unsafe { OwnedFd::from_raw_fd(fd) }
    }

    /// A duplicate let go of while another mapping targets its number
    /// leaves the placeholder there until that mapping is gone too.
    #[test]
    fn a_number_stays_held_until_its_last_mapping_is_released() {
        placeholder::ensure().unwrap();
        let n = 3900;
        register(n);
        register(n);
        release(n, dup_at(n));
        assert_eq!(
            sys::placeholder_tag(n),
            sys::placeholder_tag(placeholder::current()),
            "the number was freed, or holds something else than the placeholder"
        );
        release(n, dup_at(3901));
        assert!(!sys::is_open(n), "the placeholder outlived its mappings");
        assert!(!sys::is_open(3901));
        // A number nobody targets is simply closed.
        dispose(dup_at(n));
        assert!(!sys::is_open(n));
    }
}
