//! `pass_fd`: a descriptor placed at a chosen number in the child.
//!
//! Placing several descriptors is the classic parallel-assignment problem: a
//! source number may be another mapping's target (in the extreme, a cycle
//! such as 3 -> 4, 4 -> 3), so a naive `dup2` loop clobbers a source before
//! it is used. The usual answer is two steps: first move every source above
//! the highest target, then `dup2` each into place. Here the first step runs
//! in the parent, at configuration time, on the command's own duplicates
//! ([`arrange`]), so the child is left with the second step only
//! ([`place`]): one `dup2` (or one `fcntl`) per descriptor, no scratch
//! memory, nothing to undo.
//!
//! The parent also keeps std's exec-error socket off the targets. std creates
//! it at `spawn` time at the lowest free numbers; a target that is free then
//! could receive it, and `dup2` over it would make a failed `execve` look
//! like a successful spawn. So [`arrange`] takes every free target for the
//! command itself (its duplicate is made *at* the target; the child then
//! only clears `FD_CLOEXEC`), and for a target another descriptor holds it
//! records that descriptor's `(st_dev, st_ino)`: the child refuses with
//! `EBUSY` ([`check`]) if the number names anything else by then.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::raw;
use crate::sys;

/// What the child may find at a target, as the parent last saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Expect {
    /// 0-2: std has made them the new program's stdio; always replaced.
    Stdio,
    /// The command's own duplicate sits at the target: nothing to move.
    Reserved,
    /// Another descriptor held the number: replace it only if it still
    /// names this `(st_dev, st_ino)` (or the number is free).
    Held((u64, u64)),
    /// The number was free but could not be reserved (another thread kept
    /// taking it): refuse if anything is open there.
    Free,
}

/// One `pass_fd` mapping: the command's close-on-exec duplicate and where
/// the child gets it.
#[derive(Debug)]
pub(super) struct Pass {
    pub(super) source: OwnedFd,
    pub(super) target: RawFd,
    pub(super) expect: Expect,
}

/// How often [`arrange`] retries a target that changes hands under it.
const RESERVE_TRIES: usize = 4;

/// The first step, in the parent: afterwards no source is another mapping's
/// target, no source is 0-2, every free target >= 3 holds its own source,
/// and every other target's occupant is recorded. Called after every change
/// to `passes`. On error the caller drops the mapping it just added, which
/// leaves the others as arranged as before (each step below only replaces a
/// source by a duplicate at a safer number).
///
/// Not async-signal-safe (parent only), but allocates nothing.
pub(super) fn arrange(passes: &mut [Pass]) -> io::Result<()> {
    let Some(highest) = passes.iter().map(|p| p.target).max() else {
        return Ok(());
    };
    let is_target_of_other = |passes: &[Pass], i: usize, fd: RawFd| {
        passes
            .iter()
            .enumerate()
            .any(|(j, p)| j != i && p.target == fd)
    };
    // Move sources off other mappings' targets (and off 0-2), above them all.
    for i in 0..passes.len() {
        let fd = passes[i].source.as_raw_fd();
        if fd <= 2 || is_target_of_other(passes, i, fd) {
            let above = highest.saturating_add(1).max(3);
            passes[i].source = duplicate(fd, above)?;
        }
    }
    // Reserve free targets; record the occupant of the others.
    for pass in passes.iter_mut() {
        pass.expect = expect_at(pass)?;
    }
    Ok(())
}

/// Decide what the child may find at `pass.target`, taking the number for
/// the command when it is free.
fn expect_at(pass: &mut Pass) -> io::Result<Expect> {
    let target = pass.target;
    if target <= 2 {
        return Ok(Expect::Stdio);
    }
    for _ in 0..RESERVE_TRIES {
        if pass.source.as_raw_fd() == target {
            return Ok(Expect::Reserved);
        }
        if let Some(id) = raw::identity(target) {
            return Ok(Expect::Held(id));
        }
        // Free a moment ago: F_DUPFD_CLOEXEC takes it atomically if it
        // still is, and never replaces whatever took it instead.
        let dup = duplicate(pass.source.as_raw_fd(), target)?;
        if dup.as_raw_fd() == target {
            pass.source = dup;
        }
        // Otherwise `dup` (above the target) is closed here; look again.
    }
    if pass.source.as_raw_fd() == target {
        return Ok(Expect::Reserved);
    }
    Ok(Expect::Free)
}

/// A close-on-exec duplicate of `fd` at the lowest free number `>= min`.
pub(super) fn duplicate(fd: RawFd, min: RawFd) -> io::Result<OwnedFd> {
    let new = raw::dup_at_least(fd, min)?;
    // SAFETY: F_DUPFD_CLOEXEC just created `new`; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// The errno with which the child refuses a target that changed hands:
/// `ErrorKind::ResourceBusy` in the parent's `spawn` error.
pub(super) const TARGET_CHANGED: i32 = libc::EBUSY;

/// In the child, before anything is moved: every target still holds what
/// the parent recorded, or nothing. Async-signal-safe, allocation-free.
pub(super) fn check(passes: &[Pass]) -> io::Result<()> {
    for pass in passes {
        let ok = match pass.expect {
            Expect::Stdio | Expect::Reserved => true,
            Expect::Held(id) => raw::identity(pass.target).is_none_or(|now| now == id),
            Expect::Free => !raw::is_open(pass.target),
        };
        if !ok {
            return Err(io::Error::from_raw_os_error(TARGET_CHANGED));
        }
        // `arrange` guarantees this; a violation would clobber a source.
        let source = pass.source.as_raw_fd();
        if source != pass.target && passes.iter().any(|p| p.target == source) {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
    }
    Ok(())
}

/// The second step, in the child: each source onto its target, without
/// `FD_CLOEXEC`. Async-signal-safe, allocation-free; `check` ran first.
pub(super) fn place(passes: &[Pass]) -> io::Result<()> {
    for pass in passes {
        let source = pass.source.as_raw_fd();
        if source == pass.target {
            // Only the child's copy loses the flag; the parent's duplicate
            // stays close-on-exec.
            sys::set_cloexec(source, false)?;
        } else {
            raw::dup_onto(source, pass.target)?;
        }
    }
    Ok(())
}
