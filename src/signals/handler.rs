//! What this crate registers with the process, in the order it must:
//! the `pthread_atfork` child handler, then per signal the fallback action,
//! then the instances' actions; and the check, later, that signal-hook's
//! handler is still the one the kernel calls.
//!
//! # Registration order
//! signal-hook installs one function, the same for every signal, as the
//! process-level handler, and it runs every action registered for a signal
//! in registration order. This crate's promises need the fallback action
//! ([`policy::on_delivery`]: arm, kill, default) to run before any
//! instance's action (count, wake), so that the process is armed before the
//! program can see the event. So [`register_fallback`] is the only maker of
//! a [`FallbackRegistered`], and [`register_action`], which registers an
//! instance's action, takes one: an action registered for a signal always
//! comes after the signal's fallback. The fallback stays registered for
//! good (and so does signal-hook's handler), so the proof never expires.
//! The fork reset is registered before the first fallback, so every fork
//! child made after anything was stamped forgets its parent's state.
//!
//! # Is the handler still ours?
//! This crate learns the address of signal-hook's handler the first time a
//! registration visibly installs it (the disposition changed across the
//! call), and from then on compares every signal against that one address.
//! So other code that took a signal over *before* this crate registered
//! for it (after signal-hook had installed its handler for someone else)
//! is reported too, instead of being taken for signal-hook's handler.
//! Until an install has been seen, the address found right after the
//! registration stands in for the signal.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use signal_hook::SigId;

use super::owner;
use super::policy::{self, SetupLock};
use super::signal::{Signal, COUNT};
use crate::sys;

/// Bit `sig - 1` is set once this crate has an action installed for the raw
/// signal `sig`: from then on signal-hook's handler and the fallback stay
/// installed for good. Read (async-signal-safely) by the exec path, which
/// resets those signals to their default disposition in the child before
/// `exec`.
pub(crate) static HANDLED_SIGNALS: AtomicU64 = AtomicU64::new(0);

/// `signal`'s bit in [`HANDLED_SIGNALS`].
fn handled_bit(signal: Signal) -> u64 {
    1 << (signal.as_raw() - 1)
}

/// The address of signal-hook's handler function, 0 until learned.
static HOOK_HANDLER: AtomicUsize = AtomicUsize::new(0);
/// Per signal: the handler found right after this crate registered for
/// it, 0 when unknown; used only while [`HOOK_HANDLER`] is unknown.
static FOUND: [AtomicUsize; COUNT] = [const { AtomicUsize::new(0) }; COUNT];

/// The atfork child handler is registered (inherited by fork children, like
/// the registration itself).
static FORK_RESET: AtomicBool = AtomicBool::new(false);

/// The current disposition's handler word (`SIG_DFL`, `SIG_IGN` or a
/// function address). Async-signal-safe (one `sigaction` query).
fn current_disposition(signal: Signal) -> io::Result<libc::sighandler_t> {
    sys::disposition(signal.as_raw())
}

fn is_function(handler: libc::sighandler_t) -> bool {
    handler != libc::SIG_DFL && handler != libc::SIG_IGN && handler != libc::SIG_ERR
}

/// Register, once per process tree, the `pthread_atfork` child handler
/// that gives every fork child a new owner epoch and clears the inherited
/// records (see `owner.rs`). Not async-signal-safe (`pthread_atfork` may
/// allocate).
///
/// # Errors
/// The error of `pthread_atfork` (`ENOMEM`).
fn register_fork_reset(_: &SetupLock) -> io::Result<()> {
    if FORK_RESET.load(Ordering::SeqCst) {
        return Ok(());
    }
    // `in_fork_child` only changes atomics: async-signal-safe, as a handler
    // run in a fork child of a multi-threaded process must be. It never
    // unwinds.
    sys::at_fork_in_child(in_fork_child)?;
    FORK_RESET.store(true, Ordering::SeqCst);
    Ok(())
}

/// Runs in the child of every `fork(2)`, before `fork` returns there.
extern "C" fn in_fork_child() {
    owner::next_epoch();
    policy::forget_parent();
}

/// Proof that `signal`'s fallback action is registered, for good: made only
/// by [`register_fallback`], required by [`register_action`] (see
/// [Registration order](self#registration-order)).
#[derive(Debug, Clone, Copy)]
pub(super) struct FallbackRegistered {
    signal: Signal,
}

/// Register, once per signal, the fallback action ([`policy::on_delivery`]),
/// after the fork reset, and learn signal-hook's handler address if this
/// registration installed it. Returns the proof that the fallback is
/// registered, which registering an instance's action takes. Not
/// async-signal-safe (signal-hook allocates and locks).
///
/// # Errors
/// The OS error of `pthread_atfork(3)` or `sigaction(2)`.
pub(super) fn register_fallback(
    setup: &SetupLock,
    signal: Signal,
) -> io::Result<FallbackRegistered> {
    let proof = FallbackRegistered { signal };
    let bit = handled_bit(signal);
    if HANDLED_SIGNALS.load(Ordering::SeqCst) & bit != 0 {
        return Ok(proof);
    }
    register_fork_reset(setup)?;
    let before = current_disposition(signal)?;
    // SAFETY: `on_delivery` loads and swaps atomics, calls `getpid` and, when
    // it acts, `die_by_default`: all async-signal-safe; it never allocates
    // and never panics (every index is a `Signal` index).
    unsafe {
        signal_hook::low_level::register(signal.as_raw(), move || policy::on_delivery(signal))
    }?;
    HANDLED_SIGNALS.fetch_or(bit, Ordering::SeqCst);
    if let Ok(after) = current_disposition(signal) {
        // A change across the registration is signal-hook installing its
        // handler (other code would have to race us within these few
        // instructions); no change means signal-hook already had the
        // signal, and `after` is its handler or a takeover: unknown.
        if after != before && is_function(after) {
            let _ = HOOK_HANDLER.compare_exchange(0, after, Ordering::SeqCst, Ordering::SeqCst);
        }
        // Only a function can be signal-hook's handler: `SIG_IGN` or
        // `SIG_DFL` here means signal-hook had the signal already and other
        // code replaced its handler since (`check_installed` refuses that).
        if is_function(after) {
            FOUND[signal.index()].store(after, Ordering::SeqCst);
        }
    }
    Ok(proof)
}

/// Register `action` for the signal of `fallback`, after that signal's
/// fallback action, so that signal-hook runs it after the fallback for
/// every delivery. Not async-signal-safe (signal-hook allocates and locks).
///
/// # Safety
/// `action` runs inside the signal handler: it may make only
/// async-signal-safe calls, and must not allocate, take a lock or panic. It
/// may change `errno`: signal-hook's handler saves and restores it around
/// every action (signal-hook-registry 1.4.8 or newer, which `Cargo.toml`
/// requires).
///
/// # Errors
/// The OS error of `sigaction(2)`, should signal-hook need to install its
/// handler (it does not after the fallback's registration, short of other
/// code resetting it).
pub(super) unsafe fn register_action<F>(
    fallback: FallbackRegistered,
    action: F,
) -> io::Result<SigId>
where
    F: Fn(&libc::siginfo_t) + Send + Sync + 'static,
{
    // SAFETY: the caller promises what `register_sigaction` asks of the
    // action. This is signal-hook's own registry
    // (`signal_hook::low_level::register` is its `register`);
    // `register_sigaction` adds the siginfo.
    unsafe { signal_hook_registry::register_sigaction(fallback.signal.as_raw(), action) }
}

/// Unregister an action [`register_action`] registered; once it returns,
/// the action no longer runs and signal-hook has dropped it. Not
/// async-signal-safe.
pub(super) fn unregister_action(id: SigId) {
    signal_hook::low_level::unregister(id);
}

/// Whether signal-hook's handler can still call this crate's actions for
/// `signal`.
enum Reach {
    /// signal-hook's handler is installed (or this crate never registered).
    Yes,
    /// Another function replaced it: signals reach us only if it chains.
    Maybe(libc::sighandler_t),
    /// `SIG_DFL` or `SIG_IGN`: nothing reaches us.
    No(&'static str),
}

/// Compare the installed handler with signal-hook's. Async-signal-safe
/// (one `sigaction` query).
fn reach(signal: Signal) -> io::Result<Reach> {
    let expected = match HOOK_HANDLER.load(Ordering::SeqCst) {
        0 => FOUND[signal.index()].load(Ordering::SeqCst),
        known => known,
    };
    let registered = HANDLED_SIGNALS.load(Ordering::SeqCst) & handled_bit(signal) != 0;
    if !registered {
        return Ok(Reach::Yes); // never registered in this process tree
    }
    // SIG_DFL and SIG_IGN first: once this crate registered, neither can
    // be signal-hook's handler, whatever was found at registration.
    Ok(match current_disposition(signal)? {
        libc::SIG_DFL => Reach::No("reset to SIG_DFL"),
        libc::SIG_IGN => Reach::No("set to SIG_IGN"),
        _ if expected == 0 => Reach::Yes, // no function known to compare with
        now if now == expected => Reach::Yes,
        other => Reach::Maybe(other),
    })
}

fn dead(signal: Signal, what: &str) -> io::Error {
    io::Error::other(format!(
        "{signal}: the signal-hook handler Interrupts relies on was {what} by other code, \
         so no {signal} can reach Interrupts"
    ))
}

/// `Err` naming `signal` if any other disposition replaced signal-hook's
/// handler (see [`Interrupts::check_handlers`](crate::Interrupts::check_handlers)).
/// Async-signal-safe on success; the error allocates.
pub(super) fn check_handler(signal: Signal) -> io::Result<()> {
    match reach(signal)? {
        Reach::Yes => Ok(()),
        Reach::No(what) => Err(dead(signal, what)),
        Reach::Maybe(other) => Err(io::Error::other(format!(
            "{signal}: the signal-hook handler Interrupts relies on was replaced by other \
             code (the handler at {other:#x}; a raw sigaction, e.g. the ctrlc crate): \
             {signal} may no longer reach Interrupts (it still does if that handler calls \
             the one it replaced)"
        ))),
    }
}

/// `Err` naming `signal` when, right after `install` registered an action
/// for it, the disposition is `SIG_IGN` or `SIG_DFL`: signal-hook had the
/// signal already (for this crate or for other code), other code set it
/// since, and signal-hook installs its handler only when a signal's first
/// action is registered, so nothing will put it back and no delivery can
/// reach the instance.
pub(super) fn check_installed(_: &SetupLock, signal: Signal) -> io::Result<()> {
    let now = current_disposition(signal)?;
    if is_function(now) {
        return Ok(());
    }
    let what = if now == libc::SIG_IGN {
        "SIG_IGN"
    } else {
        "SIG_DFL"
    };
    Err(io::Error::other(format!(
        "Interrupts::install: {signal} is set to {what}, not to signal-hook's handler: \
         signal-hook handled {signal} in this process before and installs its handler only \
         for a signal's first registration, and other code set {what} since, so no \
         {signal} could reach this Interrupts (restore the handler that code replaced; \
         sigaction(2) returns it)"
    )))
}

/// `Err` naming `signal` only if no delivery of it can reach this crate's
/// actions any more (`SIG_DFL`, `SIG_IGN`): what the blocking receives
/// check, so that a replacement that chains to signal-hook's handler does
/// not break them. Async-signal-safe on success; the error allocates.
pub(super) fn check_reachable(signal: Signal) -> io::Result<()> {
    match reach(signal)? {
        Reach::No(what) => Err(dead(signal, what)),
        Reach::Yes | Reach::Maybe(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU8;

    /// The order the proof stands for, observed: an action registered with
    /// it runs after the fallback has decided, so it finds the process
    /// already armed by the very delivery it is running for (as every
    /// instance's action does, before its wake-up byte).
    #[test]
    fn an_action_registered_with_the_proof_runs_after_the_fallback_decided() {
        // 0: not run; 1: ran and found the process armed; 2: not armed.
        static SAW: AtomicU8 = AtomicU8::new(0);
        let interrupts = crate::Interrupts::builder(Signal::Hangup)
            .respect_ignored(false) // `nohup` ignores SIGHUP
            .install()
            .unwrap(); // "second signal kills": a delivery arms
        let id = {
            let setup = policy::lock_setup();
            let proof = register_fallback(&setup, Signal::Hangup).unwrap();
            let probe = |_: &libc::siginfo_t| {
                SAW.store(if policy::is_armed() { 1 } else { 2 }, Ordering::SeqCst);
            };
            // SAFETY: the probe loads and stores atomics and calls `getpid`:
            // async-signal-safe, no allocation, no lock, no panic.
            unsafe { register_action(proof, probe) }.unwrap()
        };
        assert!(!policy::is_armed());
        sys::raise(libc::SIGHUP);
        // Disarm at once: a second SIGHUP would end this test binary.
        policy::disarm();
        unregister_action(id);
        assert_eq!(
            SAW.load(Ordering::SeqCst),
            1,
            "the action ran before the fallback armed"
        );
        assert_eq!(interrupts.try_recv().map(|r| r.count()), Some(1));
    }
}
