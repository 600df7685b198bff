//! `pass_fd`: a descriptor placed at a chosen number in the child.
//!
//! Placing several descriptors is the classic parallel-assignment problem: a
//! source number may be another mapping's target (in the extreme, a cycle
//! such as 3 -> 4, 4 -> 3), so a naive `dup2` loop clobbers a source before
//! it is used. The usual answer is two steps: first move every source off
//! the targets, then `dup2` each into place. Here the first step runs in the
//! parent, at configuration time, on the command's own duplicates
//! ([`arrange`]), so the child is left with the second step only
//! ([`place`]): one `dup2` (or one `fcntl`) per descriptor, no scratch
//! memory, nothing to undo.
//!
//! # std's exec-error channel
//! `spawn` reports a failed `execve` to the parent through a close-on-exec
//! channel that it creates at spawn time, at the lowest free numbers: on
//! Linux an `AF_UNIX` `SOCK_SEQPACKET` socket pair (it also carries the
//! pidfd), elsewhere a pipe. `dup2` over the child's end would make a
//! missing program look like a successful spawn (std's 8-byte error report
//! would go into the passed file), and clearing its `FD_CLOEXEC` would let
//! the program inherit it (`spawn` would block until the program exits).
//! Two defences:
//!
//! - In the parent, [`arrange`] takes every free target for the command
//!   itself (its duplicate is made *at* the target; the child then only
//!   clears `FD_CLOEXEC`), and [`holds`](super::holds) keeps such a number
//!   taken while any live command targets it.
//! - In the child, [`check`] refuses (`EBUSY`) a target that holds
//!   something that looks like std's channel, before anything is moved; and
//!   it refuses (`EBADF`) a mapping whose duplicate no longer names the
//!   passed file (other code closed it behind the command's back). Anything
//!   else at a target is the child's own copy of some descriptor, and `dup2`
//!   replaces it in the child only.

use std::io;
use std::mem::ManuallyDrop;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::{holds, raw};
use crate::sys;

/// One `pass_fd` mapping: the command's close-on-exec duplicate and where
/// the child gets it.
#[derive(Debug)]
pub(super) struct Pass {
    /// Handed to [`holds::release`] on drop, never closed directly.
    source: ManuallyDrop<OwnedFd>,
    pub(super) target: RawFd,
    /// `(st_dev, st_ino)` of the passed file.
    file: (u64, u64),
    /// What held the target (if not the source) when last arranged: not
    /// std's channel, which does not exist before the spawn.
    occupant: Option<(u64, u64)>,
}

impl Pass {
    /// A mapping of `fd` to `target`: a close-on-exec duplicate at
    /// `target` when that is free (reserving it), else at the lowest free
    /// number that no target of the command takes (`is_target`, which
    /// covers `target`). [`arrange`] must run before the child reads it.
    ///
    /// Not async-signal-safe (parent only).
    ///
    /// # Errors
    /// `EBADF` when `fd` is not open; `EMFILE` at the descriptor limit.
    pub(super) fn new(
        fd: RawFd,
        target: RawFd,
        is_target: impl Fn(RawFd) -> bool,
    ) -> io::Result<Pass> {
        let file = raw::identity(fd).ok_or_else(|| io::Error::from_raw_os_error(libc::EBADF))?;
        holds::register(target);
        // From here on a failure must undo the registration: `Pass`'s drop
        // does, once it owns a duplicate.
        let source = match reserve(fd, target) {
            Some(at_target) => Ok(at_target),
            None => duplicate_avoiding(fd, &is_target),
        };
        match source {
            Ok(source) => Ok(Pass {
                source: ManuallyDrop::new(source),
                target,
                file,
                occupant: None,
            }),
            Err(e) => {
                holds::unregister(target);
                Err(e)
            }
        }
    }

    /// The duplicate's number.
    pub(super) fn source(&self) -> RawFd {
        self.source.as_raw_fd()
    }

    /// Replace the duplicate; the old one is let go of through the
    /// registry (which keeps its number if some mapping targets it).
    fn replace_source(&mut self, new: OwnedFd) {
        let old = std::mem::replace(&mut *self.source, new);
        holds::dispose(old);
    }
}

impl Drop for Pass {
    fn drop(&mut self) {
        // SAFETY: taken once, here; `self.source` is not used afterwards.
        let source = unsafe { ManuallyDrop::take(&mut self.source) };
        holds::release(self.target, source);
    }
}

/// A duplicate of `fd` at exactly `target`, if `target` (>= 3) is free.
/// Looks first, so a held target costs no failed `fcntl` (at the top of
/// the descriptor range that would be `EMFILE`).
fn reserve(fd: RawFd, target: RawFd) -> Option<OwnedFd> {
    if target <= 2 || sys::is_open(target) {
        return None;
    }
    // F_DUPFD_CLOEXEC takes the number atomically if it is still free and
    // never replaces whatever took it meanwhile; then the duplicate lands
    // elsewhere and is closed here.
    duplicate(fd, target)
        .ok()
        .filter(|dup| dup.as_raw_fd() == target)
}

/// A close-on-exec duplicate of `fd` at the lowest free number >= 3 that is
/// no target (`is_target` says which are). A free target it lands on is
/// skipped, so this takes at most one more try per target.
fn duplicate_avoiding(fd: RawFd, is_target: impl Fn(RawFd) -> bool) -> io::Result<OwnedFd> {
    let mut min = 3;
    loop {
        let dup = duplicate(fd, min)?;
        let at = dup.as_raw_fd();
        if !is_target(at) {
            return Ok(dup);
        }
        // A free target: not ours to sit on. Look above it.
        min = at
            .checked_add(1)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EMFILE))?;
    }
}

/// The first step, in the parent: afterwards no source is another mapping's
/// target, no source is 0-2, every free target >= 3 holds its own source,
/// and the occupant of every other target is recorded. Called after every
/// change to `passes`. On error the caller drops the mapping it just added,
/// which leaves the others as arranged as before (each step below only
/// replaces a source by a duplicate at a safer number).
///
/// Not async-signal-safe (parent only).
///
/// # Errors
/// `EMFILE` when a source must move and no number is free.
pub(super) fn arrange(passes: &mut [Pass]) -> io::Result<()> {
    let targets: Vec<RawFd> = passes.iter().map(|p| p.target).collect();
    let is_target = |fd: RawFd| targets.contains(&fd);
    for i in 0..passes.len() {
        let source = passes[i].source();
        let on_other_target = passes
            .iter()
            .enumerate()
            .any(|(j, p)| j != i && p.target == source);
        if source <= 2 || on_other_target {
            let moved = duplicate_avoiding(source, is_target)?;
            passes[i].replace_source(moved);
        }
    }
    for pass in passes.iter_mut() {
        if pass.source() != pass.target {
            if let Some(at_target) = reserve(pass.source(), pass.target) {
                pass.replace_source(at_target);
            }
        }
        pass.occupant = if pass.source() == pass.target {
            None
        } else {
            raw::identity(pass.target)
        };
    }
    Ok(())
}

/// A close-on-exec duplicate of `fd` at the lowest free number `>= min`.
fn duplicate(fd: RawFd, min: RawFd) -> io::Result<OwnedFd> {
    let new = raw::dup_at_least(fd, min)?;
    // SAFETY: F_DUPFD_CLOEXEC just created `new`; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// The errno with which the child refuses a target that holds what looks
/// like std's exec-error channel: `ErrorKind::ResourceBusy` in the
/// parent's `spawn` error.
const TARGET_BUSY: i32 = libc::EBUSY;

/// The errno with which the child refuses a mapping whose duplicate no
/// longer names the passed file (closed by other code since configuration).
const SOURCE_GONE: i32 = libc::EBADF;

/// Whether `fd` looks like the channel through which std reports a failed
/// `execve` from this (fork) child to its parent: close-on-exec and, on
/// Linux, an `AF_UNIX` `SOCK_SEQPACKET` socket whose peer credentials name
/// our parent (the process that made the pair); elsewhere, a pipe.
/// Conservative: a socket pair or pipe of the same kinds that the parent
/// opened itself also looks like it.
///
/// Async-signal-safe, allocation-free.
fn looks_like_exec_error_channel(fd: RawFd) -> bool {
    if raw::is_cloexec(fd) != Some(true) {
        return false;
    }
    #[cfg(target_os = "linux")]
    {
        raw::socket_option(fd, libc::SO_DOMAIN) == Some(libc::AF_UNIX)
            && raw::socket_option(fd, libc::SO_TYPE) == Some(libc::SOCK_SEQPACKET)
            && raw::peer_pid(fd) == Some(raw::parent_pid())
    }
    #[cfg(not(target_os = "linux"))]
    {
        raw::is_fifo(fd)
    }
}

/// In the child, before anything is moved: every duplicate still names its
/// file, and no target holds std's exec-error channel (unless it is what
/// the parent saw there, or the passed file itself).
///
/// Async-signal-safe, allocation-free.
pub(super) fn check(passes: &[Pass]) -> io::Result<()> {
    for pass in passes {
        let source = pass.source();
        if raw::identity(source) != Some(pass.file) {
            return Err(io::Error::from_raw_os_error(SOURCE_GONE));
        }
        if source == pass.target {
            continue; // our duplicate, checked just above
        }
        // `arrange` guarantees this; a violation would clobber a source.
        if passes.iter().any(|p| p.target == source) {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        if looks_like_exec_error_channel(pass.target) {
            let now = raw::identity(pass.target);
            if now != Some(pass.file) && now != pass.occupant {
                return Err(io::Error::from_raw_os_error(TARGET_BUSY));
            }
        }
    }
    Ok(())
}

/// The second step, in the child: each source onto its target, without
/// `FD_CLOEXEC`. Async-signal-safe, allocation-free; `check` ran first.
pub(super) fn place(passes: &[Pass]) -> io::Result<()> {
    for pass in passes {
        let source = pass.source();
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
