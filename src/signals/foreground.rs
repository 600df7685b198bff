//! [`ForegroundChild`]: Ctrl-C belongs to the interactive child the program
//! waits for.

use std::fmt;
use std::io;
use std::marker::PhantomData;

use super::handler;
use super::interrupts::Interrupts;
use super::owner::Owner;
use super::policy;
use super::signal::Signal;

/// While alive, SIGINT and SIGQUIT are counted by the `Interrupts` that
/// handle them but neither arm nor kill this process, nor apply the default
/// action; made by [`Interrupts::foreground_child`].
///
/// Scopes nest (the outermost one's drop ends the effect), and a scope ends
/// on drop, including during a panic's unwinding. The state is the
/// process's, not the thread's, so the scope may be dropped on any thread
/// (it is `Send` and `Sync`, and may be held across an `.await`).
///
/// A scope that is never dropped (`mem::forget`, a reference cycle) lasts
/// only as long as the process's `Interrupts`: when the last one is dropped
/// every scope still open ends, so the default action comes back as
/// [documented](Interrupts#drop) and a later instance arms and kills again.
///
/// A scope that is dropped at once covers nothing:
/// ```compile_fail
/// #![deny(unused_must_use)]
/// fn main() -> std::io::Result<()> {
///     let interrupts = fdtable::Interrupts::install()?;
///     interrupts.foreground_child()?; // dropped here: the scope is over
///     Ok(())
/// }
/// ```
#[must_use = "the scope ends when the ForegroundChild is dropped"]
pub struct ForegroundChild<'a> {
    _interrupts: PhantomData<&'a Interrupts>,
    owner: Owner,
}

impl Interrupts {
    /// Let an interactive child in the foreground have Ctrl-C: until the
    /// returned scope drops, SIGINT and SIGQUIT are counted (by the
    /// instances that handle them; read them afterwards with the receives)
    /// but neither arm nor kill this process, as `system(3)` ignores them
    /// while it waits. The child (an editor, a pager, a REPL, in the
    /// terminal's foreground process group, which receives the terminal's
    /// Ctrl-C like this process does) handles them as it likes.
    ///
    /// SIGQUIT (Ctrl-\) is covered even if no `Interrupts` handles it:
    /// this call then installs signal-hook's handler for it (for good, with
    /// the fallback action that applies its default action outside a scope).
    /// A signal ignored at startup stays ignored and is left alone. Other
    /// signals (SIGTERM, ...) keep their usual policy.
    ///
    /// Open the scope *before* spawning the child, keep it until the child
    /// was waited for.
    ///
    /// # Errors
    /// The OS error of `sigaction(2)` if the handler for SIGINT or SIGQUIT
    /// cannot be installed, or of `pthread_atfork(3)` (`ENOMEM`) if the
    /// fork-child reset cannot be registered (the first time this crate
    /// handles a signal); then no scope is open.
    ///
    /// # Examples
    /// ```
    /// use fdtable::Interrupts;
    /// use std::process::Command;
    ///
    /// let interrupts = Interrupts::install()?;
    /// let status = {
    ///     let _child_has_ctrl_c = interrupts.foreground_child()?;
    ///     Command::new("true").status()? // `$EDITOR`, `less`, `python3`...
    /// };
    /// assert!(status.success());
    /// while let Some(received) = interrupts.try_recv() {
    ///     println!("while the child ran: {received}");
    /// }
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// Not async-signal-safe (may install a handler); dropping the scope
    /// is.
    pub fn foreground_child(&self) -> io::Result<ForegroundChild<'_>> {
        let owner = Owner::current();
        {
            let setup = policy::lock_setup();
            for signal in [Signal::Interrupt, Signal::Quit] {
                let handled = self.signals().any(|s| s == signal);
                if !policy::ignored_at_start(&setup, signal)? || handled {
                    // The fallback alone: it is what leaves the signal
                    // alone while the scope is open.
                    handler::register_fallback(&setup, signal)?;
                }
            }
        }
        policy::foreground_enter(owner.pid());
        Ok(ForegroundChild {
            _interrupts: PhantomData,
            owner,
        })
    }
}

impl Drop for ForegroundChild<'_> {
    fn drop(&mut self) {
        // A scope inherited by a fork child is not the child's: it changes
        // nothing there.
        policy::foreground_leave(self.owner);
    }
}

impl fmt::Debug for ForegroundChild<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ForegroundChild")
            .field("pid", &self.owner.pid())
            .finish()
    }
}
