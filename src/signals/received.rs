//! [`Received`]: what the receives report.

use std::fmt;

use super::signal::Signal;

/// One signal as the receives report it: which signal, how many
/// deliveries since the last report for it, and who sent the latest one.
///
/// `Display` gives `SIGINT (1 delivery)`, `SIGTERM (3 deliveries)`.
///
/// # Examples
/// ```
/// use fdtable::{Interrupts, Signal};
///
/// let interrupts = Interrupts::builder(Signal::User1)
///     .second_signal_kills(false)
///     .install()?;
/// // SAFETY: raise has no preconditions; SIGUSR1 is handled.
/// unsafe { libc::raise(libc::SIGUSR1) };
/// let got = interrupts.try_recv().expect("raise delivers before it returns");
/// assert_eq!((got.signal(), got.count()), (Signal::User1, 1));
/// # #[cfg(target_os = "linux")]
/// assert_eq!(got.sender_pid(), Some(std::process::id())); // we sent it
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Received {
    pub(crate) signal: Signal,
    pub(crate) count: u64,
    /// The latest delivery's sender, `None` when the kernel named none.
    pub(crate) sender: Option<u32>,
}

impl Received {
    /// The signal. Async-signal-safe.
    #[must_use]
    pub fn signal(&self) -> Signal {
        self.signal
    }

    /// Deliveries counted since the previous report for this signal; at
    /// least 1. Standard signals coalesce, so this may be smaller than the
    /// number of `kill`s sent. Async-signal-safe.
    #[must_use]
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The pid of the process that sent the latest of the deliveries this
    /// report counts, as the kernel reports it (`si_pid` of the handler's
    /// `siginfo_t`, when its `si_code` says a process sent the signal:
    /// `kill(2)`, `sigqueue(3)`, or `tgkill(2)` as `raise(3)` uses, which
    /// gives this process's own pid).
    ///
    /// `None` when the kernel sent it itself: a terminal's Ctrl-C (the
    /// terminal driver, `SI_KERNEL`), a hang-up, `alarm(2)`'s timer; when the
    /// sender is outside this process's pid namespace (the kernel reports
    /// pid 0); and on systems other than Linux and Android, always: their
    /// `si_code` values for a process's `kill` (`SI_USER`, `SI_QUEUE`)
    /// differ between systems and the `libc` crate does not define them
    /// there, so the crate does not decode them (macOS, the BSDs, illumos;
    /// see `docs/platforms.md`).
    ///
    /// When deliveries coalesce into one report (several senders, a
    /// [`count`](Received::count) above 1), it names the latest delivery
    /// the handler had recorded when the report was taken; earlier senders
    /// are not kept. A delivery that arrives while the report is being taken
    /// may be the one named here and be counted in the next report (which
    /// then names it, or a later one, too).
    ///
    /// A pid names a process only while that process lives (or is a zombie
    /// its parent has not reaped): log it, do not signal it back blindly.
    ///
    /// Async-signal-safe.
    #[must_use]
    pub fn sender_pid(&self) -> Option<u32> {
        self.sender
    }
}

impl fmt::Display for Received {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = if self.count == 1 { "y" } else { "ies" };
        write!(f, "{} ({} deliver{s})", self.signal, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn received_displays_the_signal_name_and_the_count() {
        let one = Received {
            signal: Signal::Interrupt,
            count: 1,
            sender: None,
        };
        let three = Received {
            signal: Signal::Terminate,
            count: 3,
            sender: Some(1),
        };
        assert_eq!(one.to_string(), "SIGINT (1 delivery)");
        assert_eq!(three.to_string(), "SIGTERM (3 deliveries)");
    }
}
