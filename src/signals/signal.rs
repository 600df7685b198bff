//! [`Signal`]: the signals [`Interrupts`](crate::Interrupts) accepts, typed.

use std::fmt;
use std::io;
use std::iter::FusedIterator;

use libc::c_int;

/// A signal that [`Interrupts`](crate::Interrupts) can turn into events.
///
/// Only signals whose default action ends the process are listed, so that
/// "restore the default and re-raise" ([`Interrupts::die_by_signal`]) always
/// ends it. Convert from a raw number with `Signal::try_from(libc::SIGINT)`,
/// back with [`as_raw`](Signal::as_raw); `Display` prints the name
/// (`SIGINT`).
///
/// The enum is `#[non_exhaustive]`: more signals may be added.
///
/// # Examples
/// ```
/// use fdtable::Signal;
///
/// assert_eq!(Signal::Interrupt.to_string(), "SIGINT");
/// assert_eq!(Signal::try_from(libc::SIGTERM)?, Signal::Terminate);
/// assert!(Signal::try_from(libc::SIGCHLD).is_err()); // its default is "ignore"
/// # Ok::<(), fdtable::UnsupportedSignal>(())
/// ```
///
/// [`Interrupts::die_by_signal`]: crate::Interrupts::die_by_signal
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Signal {
    /// `SIGINT`: Ctrl-C at a terminal.
    Interrupt,
    /// `SIGTERM`: the polite "please stop" of `kill`, service managers and
    /// container runtimes.
    Terminate,
    /// `SIGHUP`: the controlling terminal went away.
    Hangup,
    /// `SIGQUIT`: Ctrl-\ at a terminal. Its default action ends the process
    /// **and dumps core** (where core dumps are enabled), so
    /// [`die_by_signal`](crate::Interrupts::die_by_signal)`(Signal::Quit)`
    /// may leave a core file.
    Quit,
    /// `SIGUSR1`: user-defined.
    User1,
    /// `SIGUSR2`: user-defined.
    User2,
    /// `SIGALRM`: a timer set with `alarm(2)` or `setitimer(2)` expired.
    Alarm,
}

/// How many signals [`Signal`] has; per-signal tables are this long.
pub(crate) const COUNT: usize = 7;

impl Signal {
    /// Every signal, in declaration order (the order of [`Signal::index`]).
    pub(crate) const ALL: [Signal; COUNT] = [
        Signal::Interrupt,
        Signal::Terminate,
        Signal::Hangup,
        Signal::Quit,
        Signal::User1,
        Signal::User2,
        Signal::Alarm,
    ];

    /// The raw signal number (`libc::SIGINT`, ...). Async-signal-safe.
    #[must_use]
    pub const fn as_raw(self) -> c_int {
        match self {
            Signal::Interrupt => libc::SIGINT,
            Signal::Terminate => libc::SIGTERM,
            Signal::Hangup => libc::SIGHUP,
            Signal::Quit => libc::SIGQUIT,
            Signal::User1 => libc::SIGUSR1,
            Signal::User2 => libc::SIGUSR2,
            Signal::Alarm => libc::SIGALRM,
        }
    }

    /// The conventional name: `"SIGINT"`, `"SIGTERM"`, ... Async-signal-safe.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Signal::Interrupt => "SIGINT",
            Signal::Terminate => "SIGTERM",
            Signal::Hangup => "SIGHUP",
            Signal::Quit => "SIGQUIT",
            Signal::User1 => "SIGUSR1",
            Signal::User2 => "SIGUSR2",
            Signal::Alarm => "SIGALRM",
        }
    }

    /// Position in [`Signal::ALL`]: the index of per-signal tables.
    pub(crate) const fn index(self) -> usize {
        self as usize
    }

    /// Bit `index` in an 8-bit set of signals.
    pub(crate) const fn bit(self) -> u8 {
        1 << self.index()
    }

    /// The signals of the 8-bit set `bits` (of [`Signal::bit`]s), in the
    /// order of [`Signal::ALL`]; other bits are left out. Async-signal-safe.
    pub(crate) const fn in_set(bits: u8) -> InSet {
        InSet {
            bits: bits & ((1 << COUNT) - 1),
        }
    }
}

/// The iterator of [`Signal::in_set`]: what `Interrupts::signals` and
/// `Interrupts::ignored` return. Its length is known, and it never panics
/// (every bit left names a signal).
#[derive(Debug, Clone)]
pub(crate) struct InSet {
    /// The signals not yet yielded, as [`Signal::bit`]s.
    bits: u8,
}

impl Iterator for InSet {
    type Item = Signal;

    fn next(&mut self) -> Option<Signal> {
        let index = self.bits.trailing_zeros() as usize;
        let signal = *Signal::ALL.get(index)?; // None once no bit is left
        self.bits &= self.bits - 1; // the lowest bit, now yielded
        Some(signal)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.bits.count_ones() as usize;
        (left, Some(left))
    }
}

impl ExactSizeIterator for InSet {}

impl FusedIterator for InSet {}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl TryFrom<c_int> for Signal {
    type Error = UnsupportedSignal;

    /// The [`Signal`] for a raw number, or [`UnsupportedSignal`] for a
    /// number that is not one of them (not a signal, or a signal whose
    /// default action does not end the process, such as `SIGCHLD` or
    /// `SIGTSTP`). Async-signal-safe.
    fn try_from(raw: c_int) -> Result<Signal, UnsupportedSignal> {
        Signal::ALL
            .into_iter()
            .find(|s| s.as_raw() == raw)
            .ok_or(UnsupportedSignal(raw))
    }
}

impl From<Signal> for c_int {
    fn from(signal: Signal) -> c_int {
        signal.as_raw()
    }
}

/// A raw signal number that is not a [`Signal`]; the error of
/// `Signal::try_from`. Converts into an [`io::Error`] of kind
/// `InvalidInput`, so `?` works in functions returning `io::Result`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UnsupportedSignal(c_int);

impl UnsupportedSignal {
    /// The number that was refused, as [`Signal::as_raw`] gives a
    /// supported one. Async-signal-safe.
    #[must_use]
    pub const fn as_raw(self) -> c_int {
        self.0
    }
}

impl fmt::Display for UnsupportedSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "signal {} is not supported by Interrupts (only SIGINT, SIGTERM, SIGHUP, \
             SIGQUIT, SIGUSR1, SIGUSR2 and SIGALRM: signals whose default action ends \
             the process)",
            self.0
        )
    }
}

impl std::error::Error for UnsupportedSignal {}

impl From<UnsupportedSignal> for io::Error {
    fn from(error: UnsupportedSignal) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidInput, error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_signal_round_trips_through_its_raw_number_and_has_its_name() {
        for (i, signal) in Signal::ALL.into_iter().enumerate() {
            assert_eq!(signal.index(), i);
            assert_eq!(Signal::try_from(signal.as_raw()), Ok(signal));
            assert_eq!(signal.to_string(), signal.name());
            assert!(signal.name().starts_with("SIG"));
        }
        assert_eq!(Signal::Quit.as_raw(), libc::SIGQUIT);
    }

    #[test]
    fn a_set_yields_its_signals_in_order_and_knows_how_many_are_left() {
        let set = Signal::Terminate.bit() | Signal::Alarm.bit() | Signal::Interrupt.bit();
        let mut signals = Signal::in_set(set);
        assert_eq!(signals.len(), 3);
        assert_eq!(signals.next(), Some(Signal::Interrupt));
        assert_eq!(signals.len(), 2);
        assert_eq!(
            signals.collect::<Vec<_>>(),
            [Signal::Terminate, Signal::Alarm]
        );
        assert_eq!(Signal::in_set(0).next(), None);
        // Bits that name no signal are left out, never a panic.
        let all = Signal::in_set(u8::MAX);
        assert_eq!(all.len(), COUNT);
        assert!(all.eq(Signal::ALL));
    }

    #[test]
    fn numbers_that_do_not_end_the_process_are_refused_with_invalid_input() {
        for raw in [
            0,
            -1,
            libc::SIGCHLD,
            libc::SIGTSTP,
            libc::SIGKILL,
            65,
            c_int::MAX,
        ] {
            let error = Signal::try_from(raw).unwrap_err();
            assert_eq!(error.as_raw(), raw);
            assert_eq!(io::Error::from(error).kind(), io::ErrorKind::InvalidInput);
        }
    }
}
