//! Proof that the hook runs in a child that `spawn` created, and not in a
//! process that called `Command::exec`.
//!
//! std runs `pre_exec` hooks in two places: in the fork child of `spawn`
//! (`status`, `output`), and in the calling process itself under
//! [`exec`](std::os::unix::process::CommandExt::exec), which does not fork
//! and returns when `execve` fails. The child setup closes and replaces
//! descriptors: in a running program that would close numbers under live
//! handles. So the hook acts only with proof that it is in a spawn child.
//!
//! The proof is std's exec-error channel, the one thing `spawn` has and
//! `exec` has not: right before it forks, `spawn` creates a close-on-exec
//! channel and the child keeps one end until `execve`. On Linux that is an
//! `AF_UNIX` `SOCK_SEQPACKET` socket pair, and `SO_PEERCRED` on either end
//! names the process that created the pair: our parent, the spawner. So a
//! spawn child has a close-on-exec `SOCK_SEQPACKET` socket whose peer
//! credentials name its parent; a process that calls `exec` has none unless
//! it inherited one (see the limits below).
//!
//! The search cannot tell std's channel from another such socket pair made
//! by the parent (one the parent holds itself), so it names no number: the
//! target check in `pass.rs` asks [`may_be_channel`] of each target
//! instead, and refuses any that may be it.
//!
//! Elsewhere the channel is a pipe, which names nobody: the proof there is
//! only that the process is not the one that configured the command (its
//! pid was recorded then). A fork child of it that calls `exec` on its copy
//! of the command is not told apart.
//!
//! Limits of the Linux proof, both needing a `SOCK_SEQPACKET` socket pair
//! made by the parent and held across a fork: a process that calls `exec`
//! while it holds such a pair of its parent's (a parent that uses them
//! itself, or the channel of a `spawn` that was running in the parent when
//! it forked) is taken for a spawn child. Numbers the crate's tables hold
//! (the value's own duplicates among them) are never taken for the channel.

use std::ops::ControlFlow;
use std::os::fd::RawFd;

use crate::sys;

/// Where the hook finds itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Proof {
    /// In a spawn child (Linux: a descriptor that may be std's exec-error
    /// channel is open; elsewhere: not the configuring process).
    Spawned,
    /// Under `Command::exec` (Linux: no exec-error channel of our parent's).
    Exec,
    /// The kernel would not say (`getsockopt` refused, by a seccomp filter
    /// installed by an earlier hook, say): this errno.
    Unknown(i32),
}

/// How many numbers above the lowest free one the quick look checks.
const NEAR_THE_HOLE: RawFd = 64;

/// Look for the proof, in a process that is not the one that configured
/// the command (the caller checked the pid). `published` says which numbers
/// the crate's tables hold: never the channel (std creates it at spawn, at
/// numbers nothing owned a moment before), so they are skipped without a
/// syscall.
///
/// Where the channel names nobody (a pipe: every system but Linux, see
/// `sys::EXEC_CHANNEL_NAMES_SPAWNER`), there is nothing to look for:
/// [`Proof::Spawned`] at once.
///
/// Where to look first: `spawn` makes the pair at the two lowest free
/// numbers and the child closes the first (the parent's end) before the
/// hooks run, so the lowest free number in the child is at or below that
/// one, and the channel is just above it. So the quick look asks the
/// kernel for the lowest free number (one `F_DUPFD`, closed at once) and
/// checks the few numbers above it; only when that finds nothing (under
/// `exec`, or a parent whose other threads closed many numbers in that
/// instant) does it walk every open descriptor.
///
/// Async-signal-safe, allocation-free: `getppid`, `fcntl`, `close`, one
/// `getsockopt` per number looked at; the walk of `sys::for_each_open_fd`
/// at worst.
pub(super) fn look(published: impl Fn(RawFd) -> bool) -> Proof {
    if !sys::EXEC_CHANNEL_NAMES_SPAWNER {
        return Proof::Spawned;
    }
    let parent = sys::getppid();
    if let Some(hole) = sys::lowest_free_number() {
        for fd in hole.saturating_add(1)..hole.saturating_add(1 + NEAR_THE_HOLE) {
            if published(fd) {
                continue;
            }
            match sys::is_exec_channel(fd, parent) {
                Ok(false) => {}
                Ok(true) => return Proof::Spawned,
                Err(errno) => return Proof::Unknown(errno),
            }
        }
    }
    let mut found = Proof::Exec;
    let _ = sys::for_each_open_fd(|fd| {
        if published(fd) {
            return ControlFlow::Continue(());
        }
        match sys::is_exec_channel(fd, parent) {
            Ok(false) => ControlFlow::Continue(()),
            Ok(true) => {
                found = Proof::Spawned;
                ControlFlow::Break(())
            }
            Err(errno) => {
                found = Proof::Unknown(errno);
                ControlFlow::Break(())
            }
        }
    });
    found
}

/// Whether `fd` may be std's exec-error channel in this spawn child: on
/// Linux a close-on-exec `AF_UNIX` `SOCK_SEQPACKET` socket whose pair our
/// parent created; elsewhere a close-on-exec pipe. A socket pair or pipe of
/// the same kind that the parent made for itself looks the same; a number
/// the kernel will not describe is taken for it.
///
/// Async-signal-safe, allocation-free.
pub(super) fn may_be_channel(fd: RawFd) -> bool {
    sys::is_exec_channel(fd, sys::getppid()).unwrap_or(true)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// A process with no socket pair of its parent's is no spawn child; one
    /// holding such a pair is taken for one (the documented limit), unless
    /// a table holds the pair's numbers.
    #[test]
    fn a_seqpacket_pair_of_the_parent_is_the_proof_and_its_number_is_found() {
        // SAFETY: the child makes only async-signal-safe calls and `_exit`s.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let code = (|| {
                // Here (a fork child of the test) our parent made no pair.
                if look(|_| false) != Proof::Exec {
                    return 1;
                }
                0
            })();
            // SAFETY: ends the child without running the harness.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: our child; valid out pointer.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert_eq!(libc::WEXITSTATUS(status), 0, "status {status:#x}");

        let mut pair = [-1; 2];
        // SAFETY: valid out array of two ints.
        let made = unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
                0,
                pair.as_mut_ptr(),
            )
        };
        assert_eq!(made, 0);
        // SAFETY: as above.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let code = if look(|_| false) != Proof::Spawned {
                1
            } else if look(|fd| fd == pair[0]) != Proof::Spawned || !may_be_channel(pair[1]) {
                2
            } else if look(|fd| pair.contains(&fd)) != Proof::Exec {
                3
            } else {
                0
            };
            // SAFETY: ends the child without running the harness.
            unsafe { libc::_exit(code) };
        }
        // SAFETY: our child; valid out pointer.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        for fd in pair {
            sys::close(fd).unwrap();
        }
        assert_eq!(libc::WEXITSTATUS(status), 0, "status {status:#x}");
    }
}
