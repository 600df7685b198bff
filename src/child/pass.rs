//! `pass_fd`: a descriptor placed at a chosen number in the child.
//!
//! Placing several descriptors is the classic parallel-assignment problem: a
//! source number may be another mapping's target (in the extreme, a cycle
//! such as 3 -> 4, 4 -> 3), so a naive `dup2` loop clobbers a source before
//! it is used. The usual answer is two steps: first move every source off
//! the targets, then `dup2` each into place. Here the first step is done in
//! the parent, as each mapping is added ([`Passes::add`]): every source is
//! the value's own duplicate, made at a number that no target takes (or at
//! its own target), and a duplicate that a new target lands on is moved
//! first. The child is left with the second step only ([`place`]): one
//! `dup2` (or one `fcntl`) per descriptor, no scratch memory, nothing to
//! undo.
//!
//! Configuration work is `O(log n)` per mapping (two ordered maps) plus a
//! constant number of syscalls: 1 000 mappings are a few thousand syscalls,
//! not the million comparisons of a list scan per mapping.
//!
//! # std's exec-error channel
//! `spawn` reports a failed `execve` to the parent through a close-on-exec
//! channel that it creates at spawn time, at the lowest free numbers: on
//! Linux an `AF_UNIX` `SOCK_SEQPACKET` socket pair, elsewhere a pipe. `dup2`
//! over the child's end would make a missing program look like a successful
//! spawn (std's 8-byte error report would go into the passed file). Two
//! defences: a target that is free when it is configured is reserved (the
//! duplicate is made *at* it), so the channel cannot land there; and the
//! child refuses (`EBUSY`) a target that may hold the channel anyway (its
//! occupant at configuration time was closed before the spawn): something
//! that looks like the channel (see `proof.rs`) and is neither the passed
//! file nor what sat there at configuration time.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use super::proof;
use crate::sys;
use crate::table::FdTable;
use crate::trackable::{FdKind, Trackable};
use crate::tracked::Tracked;

/// A `ChildFds`'s duplicate of a passed descriptor. Tracked in
/// [`FdTable::global`] so that `close_all` there (the Ctrl-C path) releases
/// it with the program's other descriptors.
#[derive(Debug)]
pub(super) struct Duplicate(OwnedFd);

impl AsFd for Duplicate {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

// SAFETY: `as_fd` borrows the one descriptor `self.0` owns, `into_owned_fd`
// hands over that same descriptor, and nothing reachable through `&Duplicate`
// closes or replaces it.
unsafe impl Trackable for Duplicate {
    /// Only the swap in `close_all`, never `shutdown(2)`: the duplicate
    /// shares its socket with the caller's own descriptor, which must not be
    /// shut down because a configuration was released.
    const KIND: FdKind = FdKind::NotSocket;

    fn into_owned_fd(self) -> OwnedFd {
        self.0
    }
}

/// One `pass_fd` mapping: the value's close-on-exec duplicate and where the
/// child gets it.
pub(super) struct Pass {
    duplicate: Tracked<'static, Duplicate>,
    /// The child's number.
    pub(super) target: RawFd,
    /// The number the caller passed (for messages).
    given: RawFd,
    /// `(st_dev, st_ino)` of the passed file.
    file: (u64, u64),
    /// What held `target` when the command was configured, if not the
    /// duplicate (not std's channel, which does not exist before the spawn).
    pub(super) occupant: Option<(u64, u64)>,
}

impl Pass {
    /// The duplicate's number.
    pub(super) fn source(&self) -> RawFd {
        self.duplicate.as_raw_fd()
    }
}

impl fmt::Debug for Pass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "fd {} (duplicate {}) -> child fd {}",
            self.given,
            self.source(),
            self.target
        )
    }
}

/// The mappings of one `ChildFds`, arranged as they are added: no source is
/// 0-2 or another mapping's target, and a target that was free when it was
/// added holds its own source.
#[derive(Debug, Default)]
pub(super) struct Passes {
    /// By target.
    by_target: BTreeMap<RawFd, Pass>,
    /// Source number -> target of the mapping that owns it.
    by_source: BTreeMap<RawFd, RawFd>,
}

impl Passes {
    /// The mappings, sorted by target.
    pub(super) fn into_sorted(self) -> Vec<Pass> {
        self.by_target.into_values().collect()
    }

    /// Reserve, now, every target that was busy when it was added and is
    /// free by now (its occupant closed since): the duplicate moves onto
    /// it, so std's exec-error channel cannot land there at the spawn.
    /// Called when the value is handed to a command, the last moment the
    /// parent sees before the spawn. Best effort: a number taken again in
    /// between stays as it was.
    ///
    /// Not async-signal-safe (parent only).
    pub(super) fn reserve_free_targets(&mut self) {
        let waiting: Vec<RawFd> = self
            .by_target
            .values()
            .filter(|p| p.source() != p.target && p.target > 2)
            .map(|p| p.target)
            .collect();
        for target in waiting {
            let Some(pass) = self.by_target.get_mut(&target) else {
                continue;
            };
            let Ok(new) = sys::dup_at_least(pass.source(), target) else {
                continue;
            };
            // SAFETY: F_DUPFD_CLOEXEC just created `new`; nothing else owns it.
            let dup = unsafe { OwnedFd::from_raw_fd(new) };
            if new != target {
                continue; // busy: `dup` closes here
            }
            let Ok(moved) = FdTable::global().track_cloexec(Duplicate(dup)) else {
                continue;
            };
            let old = std::mem::replace(&mut pass.duplicate, moved);
            self.by_source.remove(&old.as_raw_fd());
            self.by_source.insert(target, target);
            let _ = old.close();
        }
    }

    /// How many mappings there are.
    pub(super) fn len(&self) -> usize {
        self.by_target.len()
    }

    /// Add the mapping `fd -> target`; on error nothing changed.
    ///
    /// Not async-signal-safe (parent only: allocates, tracks).
    ///
    /// # Errors
    /// Each names `pass_fd`, the descriptor and the child number:
    /// `InvalidInput` for a negative target, one not below the soft
    /// `RLIMIT_NOFILE`, one that another mapping targets already, or an `fd`
    /// that is not open; the OS error's kind when no duplicate can be made
    /// (`EMFILE`) or tracked ([`FdTable::global`] sealed, say).
    pub(super) fn add(&mut self, fd: BorrowedFd<'_>, target: RawFd) -> io::Result<()> {
        self.add_as("pass_fd", fd, target)
    }

    /// [`add`](Passes::add), with `op` naming the public call in errors.
    pub(super) fn add_as(
        &mut self,
        op: &'static str,
        fd: BorrowedFd<'_>,
        target: RawFd,
    ) -> io::Result<()> {
        let given = fd.as_raw_fd();
        let refuse = |why: String| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{op}(fd {given}, child_fd {target}): {why}"),
            )
        };
        if target < 0 {
            return Err(refuse("child_fd is negative".into()));
        }
        if let Some(other) = self.by_target.get(&target) {
            return Err(refuse(format!(
                "child_fd {target} is already the target of fd {} in this ChildFds",
                other.given
            )));
        }
        let Some(file) = sys::identity(given) else {
            return Err(refuse(format!("fd {given} is not an open descriptor")));
        };
        // A duplicate of ours on the new target moves off it first, so the
        // new duplicate can take (reserve) the number.
        if let Some(&owner) = self.by_source.get(&target) {
            self.move_source(owner, target)
                .map_err(|e| context(op, e, given, target))?;
        }
        let duplicate = match self.duplicate(given, target, target) {
            Ok(duplicate) => duplicate,
            Err(Refused::AboveLimit) => {
                let limit = sys::soft_fd_limit().map_or("?".into(), |l| l.to_string());
                return Err(refuse(format!(
                    "child_fd is not below the soft RLIMIT_NOFILE ({limit}), so the child \
                     could not have it"
                )));
            }
            Err(Refused::Os(e)) => return Err(context(op, e, given, target)),
        };
        // Made by F_DUPFD_CLOEXEC: open and close-on-exec already.
        let duplicate = FdTable::global()
            .track_cloexec(Duplicate(duplicate))
            .map_err(|e| context(op, e.into_error(), given, target))?;
        self.by_source.insert(duplicate.as_raw_fd(), target);
        self.by_target.insert(
            target,
            Pass {
                duplicate,
                target,
                given,
                file,
                occupant: None,
            },
        );
        Ok(())
    }

    /// Whether `n` is a target, counting `pending` (one being added).
    fn is_target(&self, n: RawFd, pending: RawFd) -> bool {
        n == pending || self.by_target.contains_key(&n)
    }

    /// A close-on-exec duplicate of `fd` at `want` if that is free (and >=
    /// 3), else at the lowest free number >= 3 that no target takes. A free
    /// target it lands on (one that was busy when it was added) is skipped,
    /// so this takes at most one more try per such target.
    ///
    /// The first try, at `want`, doubles as the check that `want` is below
    /// the soft `RLIMIT_NOFILE` (`EINVAL` above it): no `getrlimit` per call.
    fn duplicate(&self, fd: RawFd, want: RawFd, pending: RawFd) -> Result<OwnedFd, Refused> {
        let mut min = want.max(3);
        let mut from_the_bottom = min == 3;
        loop {
            let new = match sys::dup_at_least(fd, min) {
                Ok(new) => new,
                Err(e) if min == want && e.raw_os_error() == Some(libc::EINVAL) => {
                    return Err(Refused::AboveLimit)
                }
                // Nothing free at or above `min` (`EMFILE`), or `min` not
                // below the limit (`EINVAL`): lower numbers may be free.
                Err(e)
                    if !from_the_bottom
                        && matches!(e.raw_os_error(), Some(libc::EMFILE | libc::EINVAL)) =>
                {
                    min = 3;
                    from_the_bottom = true;
                    continue;
                }
                Err(e) => return Err(Refused::Os(e)),
            };
            // SAFETY: F_DUPFD_CLOEXEC just created `new`; nothing else owns it.
            let dup = unsafe { OwnedFd::from_raw_fd(new) };
            if new == want || !self.is_target(new, pending) {
                return Ok(dup);
            }
            // A free target: not ours to sit on. Look above it.
            min = new
                .checked_add(1)
                .ok_or_else(|| Refused::Os(io::Error::from_raw_os_error(libc::EMFILE)))?;
        }
    }

    /// Move the source of the mapping that targets `owner` off `number`
    /// (where a new mapping's target is): a new duplicate elsewhere, then
    /// the old one is closed (through the table: it is tracked).
    fn move_source(&mut self, owner: RawFd, number: RawFd) -> io::Result<()> {
        let Some(source) = self.by_target.get(&owner).map(Pass::source) else {
            return Ok(());
        };
        let moved = match self.duplicate(source, 3, number) {
            Ok(moved) => moved,
            Err(Refused::Os(e)) => return Err(e),
            // `want` 3 is below any limit.
            Err(Refused::AboveLimit) => return Err(io::Error::from_raw_os_error(libc::EINVAL)),
        };
        let moved = FdTable::global()
            .track_cloexec(Duplicate(moved))
            .map_err(|e| e.into_error())?;
        let new_source = moved.as_raw_fd();
        if let Some(pass) = self.by_target.get_mut(&owner) {
            let old = std::mem::replace(&mut pass.duplicate, moved);
            self.by_source.remove(&source);
            self.by_source.insert(new_source, owner);
            // A close error concerns the old duplicate only; the mapping is
            // whole either way.
            let _ = old.close();
        }
        Ok(())
    }
}

/// Why [`Passes::duplicate`] made none.
enum Refused {
    /// The wanted number is not below the soft `RLIMIT_NOFILE`.
    AboveLimit,
    /// The OS error (`EMFILE`, `EBADF`).
    Os(io::Error),
}

/// `error`, with what `op` was asked to do in front of it.
fn context(op: &str, error: io::Error, given: RawFd, target: RawFd) -> io::Error {
    io::Error::new(
        error.kind(),
        format!("{op}(fd {given}, child_fd {target}): {error}"),
    )
}

/// Record, for every target that does not hold its own duplicate, what
/// holds it now (the last moment before the spawn the parent sees).
///
/// Not async-signal-safe (parent only).
pub(super) fn record_occupants(passes: &mut [Pass]) {
    for pass in passes {
        pass.occupant = if pass.source() == pass.target {
            None
        } else {
            sys::identity(pass.target)
        };
    }
}

/// Why the child refuses a mapping: the errno that `spawn` returns.
pub(super) mod refusal {
    /// The duplicate was released by `FdTable::global().close_all()`.
    pub(in super::super) const RELEASED: i32 = libc::ECANCELED;
    /// The duplicate no longer names the passed file: other code closed or
    /// replaced its number (an I/O-safety bug there).
    pub(in super::super) const DUPLICATE_GONE: i32 = libc::EBADF;
    /// std's exec-error channel sits at a target.
    pub(in super::super) const CHANNEL_AT_TARGET: i32 = libc::EBUSY;
}

/// In the child, before anything is moved: every duplicate is still ours
/// and names its file. Read-only, so it may run before the hook knows it is
/// in a spawn child.
///
/// Async-signal-safe, allocation-free.
pub(super) fn check_sources(passes: &[Pass]) -> io::Result<()> {
    for pass in passes {
        if pass.duplicate.is_retired() {
            return Err(io::Error::from_raw_os_error(refusal::RELEASED));
        }
        if sys::identity(pass.source()) != Some(pass.file) {
            return Err(io::Error::from_raw_os_error(refusal::DUPLICATE_GONE));
        }
    }
    Ok(())
}

/// In the child, after [`check_sources`]: no target holds what may be
/// std's exec-error channel, unless it is the passed file itself or what
/// held the target when the command was configured (the channel did not
/// exist then).
///
/// Async-signal-safe, allocation-free.
pub(super) fn check_targets(passes: &[Pass]) -> io::Result<()> {
    for pass in passes {
        if pass.source() == pass.target {
            continue; // our own duplicate, checked by `check_sources`
        }
        if proof::may_be_channel(pass.target) {
            let now = sys::identity(pass.target);
            if now != Some(pass.file) && now != pass.occupant {
                return Err(io::Error::from_raw_os_error(refusal::CHANNEL_AT_TARGET));
            }
        }
    }
    Ok(())
}

/// The second step, in the child: each source onto its target, without
/// `FD_CLOEXEC`. Async-signal-safe, allocation-free; the checks ran first.
pub(super) fn place(passes: &[Pass]) -> io::Result<()> {
    for pass in passes {
        let source = pass.source();
        if source == pass.target {
            // Only the child's copy loses the flag; the parent's duplicate
            // stays close-on-exec.
            sys::set_cloexec(source, false)?;
        } else {
            sys::dup_onto(source, pass.target)?;
        }
    }
    Ok(())
}
