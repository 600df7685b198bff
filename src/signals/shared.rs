//! [`Shared`]: what one instance shares with its handler actions and its
//! close handles, and the action itself ([`Shared::on_signal`]), the second
//! thing a delivery runs, after the fallback's decision (`policy.rs`).

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use super::owner::Owner;
use super::pipe::WakeEnd;
use super::signal::{Signal, COUNT};
use crate::sys;

/// Everything an instance's handler action and its close handles reach.
/// Shared with signal-hook's registry, which drops its references only
/// after no handler can be running them, and with every
/// [`CloseHandle`](crate::CloseHandle), which may outlive the instance.
pub(super) struct Shared {
    /// The process that installed the actions; others (fork children, a
    /// later process with the same pid) ignore deliveries.
    pub(super) installer: Owner,
    /// Non-blocking, close-on-exec write end of the self-pipe; closed by the
    /// instance's drop, even while close handles live.
    pub(super) write: WakeEnd,
    /// Deliveries not yet reported, per [`Signal::index`].
    pub(super) counts: [AtomicU64; COUNT],
    /// Per [`Signal::index`]: the pid that sent the latest delivery, 0 when
    /// the kernel named no process (see
    /// [`Received::sender_pid`](crate::Received::sender_pid)). One word, so
    /// a reader sees one delivery's sender, never half of two.
    pub(super) senders: [AtomicU32; COUNT],
    /// Set by [`CloseHandle::close`](crate::CloseHandle::close): the
    /// receives report nothing more.
    pub(super) closed: AtomicBool,
}

impl Shared {
    /// A fresh record for an instance of `installer` writing to `write`.
    /// Async-signal-safe (no allocation: the caller puts it in an `Arc`).
    pub(super) fn new(installer: Owner, write: OwnedFd) -> Shared {
        Shared {
            installer,
            write: WakeEnd::new(write),
            counts: [const { AtomicU64::new(0) }; COUNT],
            senders: [const { AtomicU32::new(0) }; COUNT],
            closed: AtomicBool::new(false),
        }
    }

    /// The instance's handler action. Async-signal-safe: `getpid`, two
    /// atomic stores or adds, one `write`. The arm/kill decision was made
    /// just before, by the signal's fallback action (`policy::on_delivery`);
    /// what the reader does with the count and the byte is
    /// `Interrupts::try_recv`'s (`receive.rs`).
    pub(super) fn on_signal(&self, signal: Signal, info: &libc::siginfo_t) {
        if !self.installer.is_current() {
            return; // a fork child: not our event
        }
        // No errno save here: signal-hook-registry's handler saves and
        // restores errno around every action (>= 1.4.8, pinned in Cargo.toml).
        // The sender before the count: a reader that takes this count then
        // reads this sender or a later delivery's, never an earlier one.
        let sender = sys::sender_pid(info).unwrap_or(0);
        self.senders[signal.index()].store(sender, Ordering::SeqCst);
        // Count before writing, so a reader that drains the byte is sure to
        // see the count; a full pipe (EAGAIN) then loses nothing.
        self.counts[signal.index()].fetch_add(1, Ordering::SeqCst);
        self.write.wake();
    }

    /// Whether a [`CloseHandle`](crate::CloseHandle) closed the instance.
    /// Async-signal-safe.
    pub(super) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }
}
