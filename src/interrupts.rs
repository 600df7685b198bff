//! Ctrl-C as an event: [`Interrupts`] turns SIGINT (and chosen others) into
//! bytes on a self-pipe that the program reads in its own loop.

use std::sync::atomic::AtomicU64;

/// Bit `n` is set while this crate has a handler installed for signal `n`.
/// Read (async-signal-safely) by the exec path, which resets those signals to
/// their default disposition in the child before `exec`.
pub(crate) static HANDLED_SIGNALS: AtomicU64 = AtomicU64::new(0);

/// SIGINT (and chosen others) delivered as self-pipe events.
#[derive(Debug)]
pub struct Interrupts {
    _private: (),
}
