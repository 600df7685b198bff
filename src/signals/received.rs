//! [`Received`]: what the receives report.

use std::fmt;

use super::signal::Signal;

/// One signal as the receives report it: which signal, and how many
/// deliveries since the last report for it.
///
/// `Display` gives `SIGINT (1 delivery)`, `SIGTERM (3 deliveries)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Received {
    pub(crate) signal: Signal,
    pub(crate) count: u64,
}

impl Received {
    /// The signal. Async-signal-safe.
    pub fn signal(&self) -> Signal {
        self.signal
    }

    /// Deliveries counted since the previous report for this signal; at
    /// least 1. Standard signals coalesce, so this may be smaller than the
    /// number of `kill`s sent. Async-signal-safe.
    pub fn count(&self) -> u64 {
        self.count
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
        };
        let three = Received {
            signal: Signal::Terminate,
            count: 3,
        };
        assert_eq!(one.to_string(), "SIGINT (1 delivery)");
        assert_eq!(three.to_string(), "SIGTERM (3 deliveries)");
    }
}
