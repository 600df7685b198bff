//! Ctrl-C as an event: [`Interrupts`] turns SIGINT (and chosen others) into
//! bytes on a self-pipe that the program reads in its own loop.
//!
//! The promises, with examples, are on the public items; what follows is
//! for readers of the code (the file map is `docs/contributing.md`).
//!
//! # How a signal travels
//! The kernel delivers SIGINT to signal-hook's handler, the process's
//! handler for every signal this crate handles. It runs the actions
//! registered for SIGINT, in registration order; `handler.rs` registers
//! them, and the order is in its types: an instance's action can only be
//! registered with the proof that registering the signal's *fallback
//! action* returns.
//!
//! So the fallback runs first. It is `policy::on_delivery`, which decides
//! everything that concerns the whole process from one atomic snapshot of
//! the signal's record in `policy.rs`: no instance of this process handles
//! the signal (then the default action, or nothing), a foreground scope is
//! open (nothing), or every instance wants "second signal kills" (then
//! arm, or die if armed already).
//!
//! Then each instance's action, `Shared::on_signal` in `shared.rs`: it
//! ignores the delivery in a fork child, stores the sender's pid, adds one
//! to the signal's count and writes one byte to the self-pipe
//! (`WakeEnd::wake`, `pipe.rs`).
//!
//! The program sees the pipe readable. `Interrupts::recv` (`receive.rs`)
//! wakes from `poll(2)` and calls `try_recv`, which drains the pipe, takes
//! the count of the first handled signal that has one (swapping it for
//! zero) and returns it with its sender as a [`Received`] (`received.rs`),
//! writing a byte back if another signal is still counted.
//!
//! # Layers
//! No file imports a file that imports it back: the `mod` declarations
//! below are grouped by layer, lowest first, and a file imports only files
//! of earlier groups (`scripts/module_layers.py` checks it and prints the
//! graph). The `Interrupts` type sits in the middle: the files under it
//! build what an instance holds, the files over it add to it (making one,
//! receiving, the foreground scope, tokio). Install and drop run under one
//! lock, which the functions that need it take as a `&policy::SetupLock`.
//!
//! # Internal details (not promised)
//! signal-hook never uninstalls its process-level handler, so the bit for
//! a signal in [`HANDLED_SIGNALS`] stays set once the fallback is
//! registered, and the exec hook resets the signal to `SIG_DFL` in a child
//! before `exec` (which is what `exec` itself does to a caught signal). A
//! fork child that does not exec keeps the handler: the fallback gives it
//! the default action, or its own `Interrupts` their events.

// One group per layer, lowest first: a file imports only files of earlier
// groups.
mod owner;
mod pipe;
mod signal;

mod policy;
mod received;
mod shared;

mod close;
mod handler;

mod registration;

mod interrupts;

// Each adds to `Interrupts`; `async_recv` uses `receive`'s receives.
mod builder;
mod foreground;
mod receive;

#[cfg(feature = "tokio")]
mod async_recv;

#[cfg(feature = "tokio")]
pub use async_recv::AsyncInterrupts;
pub use builder::InterruptsBuilder;
pub use close::CloseHandle;
pub use foreground::ForegroundChild;
pub(crate) use handler::HANDLED_SIGNALS;
pub use interrupts::Interrupts;
pub use receive::WaitOutcome;
pub use received::Received;
pub use signal::{Signal, UnsupportedSignal};
