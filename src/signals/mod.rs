//! Ctrl-C as an event: [`Interrupts`] turns SIGINT (and chosen others) into
//! bytes on a self-pipe that the program reads in its own loop.
//!
//! The promises, with examples, are on the public items; this module map and
//! its notes are for readers of the code.
//!
//! - `signal.rs`: [`Signal`], the typed signal numbers.
//! - `policy.rs`: the process-wide per-signal records (pid-stamped live
//!   counts, opt-outs), the armed flag, the foreground scope depth, and the
//!   per-signal fallback action that makes every arm/kill/default decision
//!   of a delivery before the instances' actions run.
//! - `handler.rs`: registering the fallback with signal-hook, and checking
//!   that signal-hook's handler is still the one the kernel calls
//!   ([`Interrupts::check_handlers`]).
//! - `owner.rs`: which process a thing belongs to (pid and fork epoch), and
//!   the `pthread_atfork` child handler that makes fork children forget
//!   their parent's state.
//! - `builder.rs`: [`InterruptsBuilder`] and `install`.
//! - `interrupts.rs`: one instance: its pipe, counts, actions, `try_recv`.
//! - `received.rs`: [`Received`], what the receives report.
//! - `close.rs`: [`CloseHandle`], which ends an instance's receives, and
//!   the error they return then.
//! - `wait.rs`: the blocking receives and `wait_readable`.
//! - `async_recv.rs`: [`AsyncInterrupts`], the receives as futures on a
//!   tokio runtime (feature `tokio`).
//! - `foreground.rs`: [`ForegroundChild`].
//! - `pipe.rs`: the self-pipe, its write end shared with close handles
//!   (closed by the instance's drop, never written to after), and an
//!   `errno` guard.
//!
//! # Internal details (not promised)
//! The handler is signal-hook's (`signal_hook::low_level::register`), which
//! runs every action registered for a signal in registration order. Per
//! signal, this crate registers one permanent fallback action the first
//! time it handles the signal, then one action per `Interrupts`. signal-hook
//! never uninstalls its process-level handler, so the bit for the signal in
//! [`HANDLED_SIGNALS`] stays set from then on, and the exec hook resets the
//! signal to `SIG_DFL` in a child before `exec` (which is what `exec` itself
//! does to a caught signal). A fork child that does not exec keeps the
//! handler: the fallback gives it the default action, or its own
//! `Interrupts` their events.

#[cfg(feature = "tokio")]
mod async_recv;
mod builder;
mod close;
mod foreground;
mod handler;
mod interrupts;
mod owner;
mod pipe;
mod policy;
mod received;
mod signal;
mod wait;

#[cfg(feature = "tokio")]
pub use async_recv::AsyncInterrupts;
pub use builder::InterruptsBuilder;
pub use close::CloseHandle;
pub use foreground::ForegroundChild;
pub(crate) use handler::HANDLED_SIGNALS;
pub use interrupts::Interrupts;
pub use received::Received;
pub use signal::{Signal, UnsupportedSignal};
pub use wait::WaitOutcome;
