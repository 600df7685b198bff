//! The `pre_exec` hook itself: what runs in the child between `fork` and
//! `execve` (and what refuses to run under `Command::exec`).

use std::io;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::close::close_published;
use super::close_other::mark_cloexec_except;
use super::pass;
use super::raw;
use super::setup::{Setup, SetupCell};
use crate::signals::HANDLED_SIGNALS;
use crate::sys;
#[cfg(test)]
use crate::table::FdTable;

/// The `pre_exec` hook, in Go's order: block signals, reset this crate's
/// handlers, do the setup, restore the mask the new program should start
/// with. Async-signal-safe and allocation-free; runs in the child.
///
/// Except under `Command::exec`, which runs the hooks in the calling
/// process, without a fork, and returns when `execve` fails: doing the
/// setup there would close tracked descriptors under live handles,
/// overwrite descriptors and change flags and signal dispositions for
/// good. So the hook refuses, before it touches anything, when it finds
/// itself in the process that configured the command (where allocating
/// the error is fine: no fork happened).
fn run_in_child(setup: &Setup) -> io::Result<()> {
    if raw::own_pid() == setup.configured_in {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "fdtable::CommandExt: Command::exec would run the child setup in this process; \
             use spawn, or exec a command configured without CommandExt",
        ));
    }
    // A raw block, not a `MaskGuard`: the child inherits the forking
    // thread's guard depth and quarantine mode, either of which would make a
    // guard skip the syscall, and this hook must not depend on either.
    let block = crate::mask::async_signal_set();
    let old = sys::change_sigmask(libc::SIG_BLOCK, Some(&block));
    reset_handled_signals();
    let result = apply(setup);
    // The new program gets the mask the program had before quarantine (the
    // forking thread then runs with every asynchronous signal blocked), else
    // the one from before this thread's outermost `MaskGuard` (spawned under
    // a guard), else exactly the mask we found.
    let restore = crate::quarantine::mask_before_quarantine()
        .or_else(crate::mask::mask_before_guards)
        .unwrap_or(old);
    sys::set_sigmask(&restore);
    result
}

/// Put every signal this crate has ever handled back to `SIG_DFL`, where a
/// handler function is in place: the one that `execve` would reset anyway,
/// and that must not run between `fork` and `execve` (ours would write into
/// the parent's pipe). A signal the program has since set to `SIG_IGN` on
/// purpose stays ignored, as `execve` keeps it.
///
/// Async-signal-safe: one atomic load and at most 128 `sigaction(2)` calls.
fn reset_handled_signals() {
    let handled = HANDLED_SIGNALS.load(Ordering::Acquire);
    for bit in 0..64 {
        if handled & (1 << bit) != 0 {
            let sig = bit + 1;
            // EINVAL for a number the kernel does not know: nothing to undo.
            if raw::handler_function_installed(sig) {
                let _ = sys::set_default_disposition(sig);
            }
        }
    }
}

/// The setup itself, signals blocked. Placing comes first, so the close
/// steps know the passed numbers are the program's now (the tracked close
/// skips them even where the parent's table holds the same number).
fn apply(setup: &Setup) -> io::Result<()> {
    pass::check(&setup.passes)?;
    pass::place(&setup.passes)?;
    for table in &setup.tables {
        close_published(
            table,
            // 0-2 were set up by std for the new program (inherited or
            // dup2-ed from `Stdio` pipes) before this hook runs: they are not
            // the table's any more, whatever the table recorded in the parent.
            |fd| fd <= 2 || setup.not_closed.binary_search(&fd).is_ok(),
            |fd| {
                if fd > 2 && setup.keep.binary_search(&fd).is_ok() {
                    // Kept on purpose: let the new program inherit it. Only
                    // the child's copy of the descriptor loses the flag.
                    let _ = sys::set_cloexec(fd, false);
                }
            },
        );
    }
    if setup.close_other {
        mark_cloexec_except(&setup.not_closed);
    }
    Ok(())
}

/// Register the one hook that reads `cell`.
pub(super) fn install_hook(cmd: &mut Command, cell: Arc<SetupCell>) {
    let hook = move || {
        // SAFETY: std runs `pre_exec` closures only while it holds `&mut`
        // of the command that owns this one: in the fork child of a
        // `spawn`, or (`Command::exec`) in this process, where
        // `run_in_child` reads nothing but the pid.
        run_in_child(unsafe { cell.in_child() })
    };
    // SAFETY: `pre_exec` requires the closure to be async-signal-safe and
    // not to allocate or take locks. In a fork child `run_in_child` makes
    // only `getpid`, `pthread_sigmask`, `sigaction`, `fcntl`, `fstat`,
    // `getsockopt`, `getppid`, `dup2`, `open`, `getdents64`, `getrlimit`,
    // `close_range` and `close` calls, reads atomics, const thread-locals
    // and vectors built in the parent, and builds its errors from raw OS
    // codes; the tables are `'static`. (It allocates an error only in the
    // configuring process itself, under `Command::exec`: no fork there.)
    unsafe { std::os::unix::process::CommandExt::pre_exec(cmd, hook) };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// In a fork child (so the test process is untouched): install a handler
    /// for SIGUSR2, mark it handled, run the hook; the disposition must be
    /// back to SIG_DFL and the signal mask exactly what it was.
    #[test]
    fn exec_hook_resets_handled_signals_and_restores_the_mask() {
        extern "C" fn handler(_: libc::c_int) {}
        static TABLE: FdTable = FdTable::new();
        let mut setup = Setup::default();
        setup.add_table(&TABLE, &[]);

        // SAFETY: the child makes only async-signal-safe calls and `_exit`s.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            // SAFETY: all-zero `sigaction` and `sigset_t` are valid values;
            // every pointer is to a live local.
            let code = unsafe {
                let mut act: libc::sigaction = std::mem::zeroed();
                act.sa_sigaction = handler as extern "C" fn(libc::c_int) as libc::sighandler_t;
                libc::sigemptyset(&mut act.sa_mask);
                libc::sigaction(libc::SIGUSR2, &act, std::ptr::null_mut());
                HANDLED_SIGNALS.fetch_or(1 << (libc::SIGUSR2 - 1), Ordering::SeqCst);

                let mut before: libc::sigset_t = std::mem::zeroed();
                let mut block: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut block);
                libc::sigaddset(&mut block, libc::SIGWINCH);
                libc::pthread_sigmask(libc::SIG_BLOCK, &block, &mut before);
                libc::pthread_sigmask(libc::SIG_SETMASK, std::ptr::null(), &mut before);

                let _ = run_in_child(&setup);

                let mut now: libc::sigaction = std::mem::zeroed();
                libc::sigaction(libc::SIGUSR2, std::ptr::null(), &mut now);
                let mut after: libc::sigset_t = std::mem::zeroed();
                libc::pthread_sigmask(libc::SIG_SETMASK, std::ptr::null(), &mut after);
                let same_mask =
                    (1..64).all(|s| libc::sigismember(&before, s) == libc::sigismember(&after, s));
                if now.sa_sigaction != libc::SIG_DFL {
                    1
                } else if !same_mask || libc::sigismember(&after, libc::SIGWINCH) != 1 {
                    2
                } else {
                    0
                }
            };
            // SAFETY: ends the child without running the test harness.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: `pid` is our child; `status` is a valid out pointer.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(libc::WIFEXITED(status), "child died: {status:#x}");
        assert_eq!(
            libc::WEXITSTATUS(status),
            0,
            "1: handler kept, 2: mask changed"
        );
    }
}
