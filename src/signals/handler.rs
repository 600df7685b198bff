//! The process's handler for each signal: registering this crate's
//! fallback action with signal-hook once per signal, and checking later
//! that signal-hook's handler is still the one the kernel calls.
//!
//! signal-hook installs one function, the same for every signal, as the
//! process-level handler. This crate learns its address the first time a
//! registration visibly installs it (the disposition changed across the
//! call), and from then on compares every signal against that one address.
//! So other code that took a signal over *before* this crate registered
//! for it (after signal-hook had installed its handler for someone else)
//! is reported too, instead of being taken for signal-hook's handler.
//! Until an install has been seen, the address found right after the
//! registration stands in for the signal.

use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use super::interrupts::Interrupts;
use super::policy;
use super::signal::{Signal, COUNT};

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

/// The current disposition's handler word (`SIG_DFL`, `SIG_IGN` or a
/// function address). Async-signal-safe (one `sigaction` query).
pub(crate) fn current_disposition(signal: Signal) -> io::Result<libc::sighandler_t> {
    crate::sys::disposition(signal.as_raw())
}

fn is_function(handler: libc::sighandler_t) -> bool {
    handler != libc::SIG_DFL && handler != libc::SIG_IGN && handler != libc::SIG_ERR
}

/// Register, once per signal, the fallback action (see `policy`), and
/// learn signal-hook's handler address if this registration installed it.
/// Call with the setup lock held.
pub(crate) fn ensure_fallback(signal: Signal) -> io::Result<()> {
    let bit = handled_bit(signal);
    if HANDLED_SIGNALS.load(Ordering::SeqCst) & bit != 0 {
        return Ok(());
    }
    super::owner::register_fork_reset()?;
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
    Ok(())
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
/// handler (see [`Interrupts::check_handlers`]).
/// Async-signal-safe on success; the error allocates.
pub(crate) fn check_handler(signal: Signal) -> io::Result<()> {
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
/// reach the instance. Call with the setup lock held.
pub(crate) fn check_installed(signal: Signal) -> io::Result<()> {
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
pub(crate) fn check_reachable(signal: Signal) -> io::Result<()> {
    match reach(signal)? {
        Reach::No(what) => Err(dead(signal, what)),
        Reach::Yes | Reach::Maybe(_) => Ok(()),
    }
}

impl Interrupts {
    /// Check that signal-hook's handler is still the process's handler for
    /// every signal this instance handles (see
    /// [Other code that installs a handler later](Interrupts#other-code-that-installs-a-handler-later)).
    ///
    /// Stricter than the blocking receives, which fail only when a signal
    /// certainly cannot arrive (`SIG_IGN`, `SIG_DFL`): this reports any
    /// replacement, including a handler that still calls signal-hook's
    /// after its own work (crash reporters and language runtimes chain like
    /// that), since this crate cannot tell whether it does.
    ///
    /// # Errors
    /// An error of kind [`Other`](io::ErrorKind::Other) whose message names
    /// the first signal whose handler was replaced: by `SIG_IGN` or
    /// `SIG_DFL` (`signal(SIGINT, SIG_IGN)`; no delivery can reach this
    /// instance any more), or by another function (a raw `sigaction`, the
    /// `ctrlc` crate; deliveries "may no longer reach" it).
    ///
    /// # Examples
    /// ```
    /// use fdtable::{Interrupts, Signal};
    ///
    /// let interrupts = Interrupts::builder(Signal::Alarm).install()?;
    /// interrupts.check_handlers()?;
    /// // Other code takes SIGALRM over behind signal-hook's back:
    /// // SAFETY: SIG_IGN is a valid disposition for SIGALRM.
    /// let old = unsafe { libc::signal(libc::SIGALRM, libc::SIG_IGN) };
    /// let error = interrupts.check_handlers().unwrap_err();
    /// assert!(error.to_string().starts_with("SIGALRM"));
    /// // SAFETY: puts signal-hook's handler back.
    /// unsafe { libc::signal(libc::SIGALRM, old) };
    /// interrupts.check_handlers()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// Async-signal-safe when it succeeds (one `sigaction` query per
    /// signal); the error allocates.
    pub fn check_handlers(&self) -> io::Result<()> {
        self.signals().try_for_each(check_handler)
    }
}
