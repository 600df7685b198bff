//! Making an [`Interrupts`]: [`Interrupts::install`],
//! [`Interrupts::builder`] and [`InterruptsBuilder`] (which signals, which
//! conventions), whose `install` sets up everything an instance holds.

use std::fmt;
use std::io;
use std::sync::Arc;

use super::handler;
use super::interrupts::Interrupts;
use super::owner::Owner;
use super::pipe::self_pipe;
use super::policy;
use super::registration::Registration;
use super::shared::Shared;
use super::signal::Signal;
use crate::sys;

impl Interrupts {
    /// Handle SIGINT with every convention on: the same as
    /// `Interrupts::builder(Signal::Interrupt).install()`.
    ///
    /// If SIGINT was ignored when the program started, it stays ignored and
    /// [`ignored`](Interrupts::ignored) yields `Signal::Interrupt`.
    ///
    /// # Errors
    /// As [`InterruptsBuilder::install`]: at the descriptor limit an error
    /// that says each instance holds two descriptors; the OS error of
    /// `pipe2(2)`, `sigaction(2)` or `pthread_atfork(3)`; an error when
    /// SIGINT is set to `SIG_IGN` or `SIG_DFL` behind signal-hook's back
    /// (after it handled SIGINT once) or when
    /// [`MAX_INSTANCES`](Interrupts::MAX_INSTANCES) instances already handle
    /// SIGINT.
    ///
    /// Not async-signal-safe (allocates, takes a lock).
    pub fn install() -> io::Result<Interrupts> {
        Interrupts::builder(Signal::Interrupt).install()
    }

    /// A builder that handles `first` (add more with
    /// [`signal`](InterruptsBuilder::signal)), with every convention on.
    ///
    /// Async-signal-safe (no allocation).
    pub fn builder(first: Signal) -> InterruptsBuilder {
        InterruptsBuilder::new(first)
    }
}

/// Chooses the signals and conventions of an [`Interrupts`]; made by
/// [`Interrupts::builder`], which takes the first signal, so a builder
/// always has one and [`install`](InterruptsBuilder::install) cannot fail
/// for a bad choice.
///
/// ```
/// use fdtable::{Interrupts, Signal};
///
/// let interrupts = Interrupts::builder(Signal::Interrupt)
///     .signal(Signal::Terminate)
///     .second_signal_kills(false)
///     .install()?;
/// # drop(interrupts);
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// Every setter returns the builder, which does nothing until installed:
/// ```compile_fail
/// #![deny(unused_must_use)]
/// use fdtable::{Interrupts, Signal};
/// Interrupts::builder(Signal::Interrupt).second_signal_kills(false);
/// ```
#[must_use = "a builder does nothing until `install` is called"]
#[derive(Debug, Clone)]
pub struct InterruptsBuilder {
    /// [`Signal::bit`]s of the chosen signals.
    signals: u8,
    respect_ignored: bool,
    second_signal_kills: bool,
    default_after_drop: bool,
}

impl InterruptsBuilder {
    /// Handle `first`, every convention on (see [`Interrupts::builder`]).
    pub(super) fn new(first: Signal) -> InterruptsBuilder {
        InterruptsBuilder {
            signals: first.bit(),
            respect_ignored: true,
            second_signal_kills: true,
            default_after_drop: true,
        }
    }

    /// Handle `signal` too. Adding a signal twice is the same as adding it
    /// once.
    ///
    /// Async-signal-safe (no allocation), like every setter.
    pub fn signal(mut self, signal: Signal) -> Self {
        self.signals |= signal.bit();
        self
    }

    /// When `true` (the default), a signal that was ignored (`SIG_IGN`) when
    /// this crate first looked at it stays ignored: it is not handled, and
    /// [`Interrupts::ignored`] lists it. `false` handles it anyway:
    /// signal-hook's handler replaces `SIG_IGN`.
    ///
    /// One case cannot be handled, and [`install`](InterruptsBuilder::install)
    /// refuses it: a signal that signal-hook already handled in this process
    /// (for this crate or for other code: tokio's `signal`, signal-hook's
    /// `flag`) and that other code set to `SIG_IGN` (or `SIG_DFL`) since.
    /// signal-hook installs its handler for a signal only the first time
    /// anything registers for it, so nothing would put it back, and no
    /// delivery could reach the instance.
    pub fn respect_ignored(mut self, respect: bool) -> Self {
        self.respect_ignored = respect;
        self
    }

    /// When `true` (the default), this instance asks for "a second signal
    /// kills at once": the first delivery arms the process and the next one
    /// ends it by the signal's default action, even while cleanup runs.
    /// `false` turns every delivery into an event.
    ///
    /// The choice is combined with other instances' (a library's and the
    /// program's): a signal arms and kills only while **every** live
    /// `Interrupts` handling it asked for this, so one opt-out wins. See
    /// [Several instances](Interrupts#several-instances-one-process-wide-policy).
    pub fn second_signal_kills(mut self, kills: bool) -> Self {
        self.second_signal_kills = kills;
        self
    }

    /// When `true` (the default), the signal's default action (terminate)
    /// applies again once the last `Interrupts` handling it in this process
    /// is dropped, provided the signal had the default disposition before
    /// this crate first handled it. One instance that asked `false` since
    /// the signal was last unhandled wins: then a signal arriving while no
    /// `Interrupts` handles it runs only the handlers other code registered
    /// through signal-hook, if any; with none, it is lost.
    ///
    /// The default action applies even if other code handles the signal
    /// through signal-hook (tokio's `signal`, signal-hook's `flag`): a
    /// library whose short-lived instance keeps this on ends such a program
    /// at the next delivery after its drop. That program turns the default
    /// off for every instance, the library's included, with
    /// [`Interrupts::disable_default_after_drop_globally`], which wins over
    /// this setting.
    pub fn default_after_drop(mut self, restore: bool) -> Self {
        self.default_after_drop = restore;
        self
    }

    /// Create the pipe and register the handler actions.
    ///
    /// Each instance holds two descriptors (its self-pipe) until it is
    /// dropped; see [Resources](Interrupts#resources).
    ///
    /// # Errors
    /// - At the descriptor limit, the `EMFILE` (or `ENFILE`) of `pipe2(2)`
    ///   (`pipe(2)` on Apple systems),
    ///   with that kind and as the error's source, in a message that names
    ///   `Interrupts::install`, the soft `RLIMIT_NOFILE` and the two
    ///   descriptors each instance costs.
    /// - The OS error of `pipe2(2)` otherwise, of `sigaction(2)` or of
    ///   `pthread_atfork(3)`.
    /// - An error of kind [`Other`](io::ErrorKind::Other) when
    ///   [`MAX_INSTANCES`](Interrupts::MAX_INSTANCES) instances already
    ///   handle one of the signals (out of reach at common descriptor
    ///   limits), or when a signal to handle is set to `SIG_IGN` or
    ///   `SIG_DFL` and signal-hook will not put its handler back (see
    ///   [`respect_ignored`](InterruptsBuilder::respect_ignored)): the
    ///   message names the signal and its disposition.
    ///
    /// On failure this instance's actions are unregistered again, its
    /// descriptors are closed and it counts nowhere; what the first install
    /// of a signal sets up for good (signal-hook's handler and this crate's
    /// fallback action, see [Drop](Interrupts#drop)) stays, and gives the
    /// signal the disposition it had before.
    ///
    /// Not async-signal-safe (allocates, takes a lock).
    pub fn install(self) -> io::Result<Interrupts> {
        let setup = policy::lock_setup();
        let installer = Owner::current();
        let (mut handled, mut ignored) = (0u8, 0u8);
        for signal in Signal::in_set(self.signals) {
            let ignored_at_start = policy::ignored_at_start(&setup, signal)?;
            if self.respect_ignored && ignored_at_start {
                ignored |= signal.bit();
            } else {
                handled |= signal.bit();
            }
        }
        let (read, write) = self_pipe().map_err(pipe_failed)?;
        let mut interrupts = Interrupts {
            shared: Arc::new(Shared::new(installer, write)),
            read,
            handled,
            ignored,
            registration: Registration::new(installer, self.second_signal_kills),
        };
        let registered = Signal::in_set(handled).try_for_each(|signal| {
            let shared = &interrupts.shared;
            let registration = &mut interrupts.registration;
            registration.add(&setup, signal, shared, self.default_after_drop)?;
            // Registered, so signal-hook's handler is installed, unless
            // signal-hook had the signal already and other code has set it
            // to SIG_IGN or SIG_DFL since: then nothing puts it back.
            handler::check_installed(&setup, signal)
        });
        if let Err(error) = registered {
            // Undo what is registered; the drop that follows finds nothing
            // left to do but close the pipe (and so never takes the lock we
            // hold).
            interrupts.registration.withdraw(&setup);
            return Err(error);
        }
        interrupts.registration.count_instance(&setup);
        Ok(interrupts)
    }
}

/// `install`'s error for a failed `pipe2(2)`: at the descriptor limit, a
/// message that says what an instance costs; other errors as they are.
#[cold]
fn pipe_failed(os: io::Error) -> io::Error {
    match os.raw_os_error() {
        Some(libc::EMFILE | libc::ENFILE) => io::Error::new(
            os.kind(),
            NoDescriptors {
                limit: sys::soft_fd_limit(),
                os,
            },
        ),
        _ => os,
    }
}

/// See [`pipe_failed`].
#[derive(Debug)]
struct NoDescriptors {
    /// The soft `RLIMIT_NOFILE`, `None` when unlimited or unknown.
    limit: Option<u64>,
    os: io::Error,
}

impl fmt::Display for NoDescriptors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let NoDescriptors { limit, os } = self;
        write!(
            f,
            "Interrupts::install: pipe2(2) found no free descriptor for the self-pipe ({os}): \
             each Interrupts holds two descriptors until it is dropped, "
        )?;
        if os.raw_os_error() == Some(libc::ENFILE) {
            f.write_str("and the system-wide limit on open files is reached")?;
        } else {
            match limit {
                Some(limit) => write!(
                    f,
                    "and this process is at its soft RLIMIT_NOFILE of {limit} descriptors \
                     (room for at most {} instances)",
                    limit / 2
                )?,
                None => f.write_str("and this process is at its descriptor limit")?,
            }
        }
        write!(
            f,
            "; drop instances no longer needed or share one (Interrupts::MAX_INSTANCES, \
             {}, is out of reach at common limits)",
            Interrupts::MAX_INSTANCES
        )
    }
}

impl std::error::Error for NoDescriptors {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.os)
    }
}

#[cfg(test)]
mod tests {
    use super::super::HANDLED_SIGNALS;
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn handled_signals_bit_is_set_once_a_handler_is_installed() {
        let interrupts = Interrupts::builder(Signal::Alarm)
            .respect_ignored(false)
            .second_signal_kills(false)
            .install()
            .unwrap();
        let mask = HANDLED_SIGNALS.load(Ordering::SeqCst);
        assert_ne!(mask & (1 << (libc::SIGALRM - 1)), 0);
        drop(interrupts);
        // signal-hook's handler stays installed, so the exec path must still
        // reset the signal in a child.
        let mask = HANDLED_SIGNALS.load(Ordering::SeqCst);
        assert_ne!(mask & (1 << (libc::SIGALRM - 1)), 0);
    }
}
