//! The `pre_exec` hook itself: what runs in the child between `fork` and
//! `execve`, reading only a [`Plan`] that the parent froze when the command
//! was configured.

use std::io;
use std::os::fd::RawFd;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::activation::Exec;
use super::close::close_published;
use super::close_other::mark_cloexec_except;
use super::pass::{self, Pass};
use super::proof::{self, Proof};
use crate::signals::HANDLED_SIGNALS;
use crate::sys;
use crate::table::FdTable;

/// Everything one hook does, frozen in the parent: the child only reads it.
/// Owned by the hook closure, so by the command: dropped (its duplicates
/// released) with it.
#[derive(Debug)]
pub(super) struct Plan {
    /// `pass_fd` mappings, sorted by target.
    pub(super) passes: Vec<Pass>,
    /// Their targets, sorted: the tracked close and `close_other_fds` leave
    /// them (and 0-2) as they are.
    pub(super) targets: Vec<RawFd>,
    /// Tables whose numbers the child closes.
    pub(super) tables: Vec<&'static FdTable>,
    /// `close_other_fds` was asked for.
    pub(super) close_other: bool,
    /// The process that configured the command: the hook refuses there
    /// (`Command::exec`, no fork).
    pub(super) configured_in: libc::pid_t,
    /// A `ChildFds`'s hook (one per command), not the mask-only hook of a
    /// `close_tracked_fds` under a guard.
    pub(super) is_child_fds: bool,
    /// With `listen_fd`: the hook execs the program itself (`None` inside
    /// when the command could not be captured: a NUL byte, which std
    /// refuses before any hook runs).
    pub(super) exec: Option<Option<Exec>>,
}

impl Plan {
    /// The hook `CommandExt::close_tracked_fds` installs under a
    /// `MaskGuard`: only the mask (and this crate's
    /// handlers) for the new program; descriptors are left to `FD_CLOEXEC`.
    pub(super) fn mask_only() -> Plan {
        Plan {
            passes: Vec::new(),
            targets: Vec::new(),
            tables: Vec::new(),
            close_other: false,
            configured_in: sys::getpid(),
            is_child_fds: false,
            exec: None,
        }
    }

    /// Whether a table of the crate's that the child sees holds `fd`.
    fn published(&self, fd: RawFd) -> bool {
        FdTable::global().contains(fd) || self.tables.iter().any(|t| t.contains(fd))
    }

    fn kept(&self, fd: RawFd) -> bool {
        self.targets.binary_search(&fd).is_ok()
    }
}

/// How many `ChildFds` hooks ran in this process. Written only in spawn
/// children (after the proof), so it is 0 in every process that configures
/// commands, and a second `child_fds` on one command finds 1.
static CHILD_FDS_APPLIED: AtomicUsize = AtomicUsize::new(0);

/// The errno of a second `ChildFds` hook on one command.
pub(super) const SECOND_CHILD_FDS: i32 = libc::EEXIST;

/// The errno of the refusal under `Command::exec` outside the configuring
/// process (where no message may be allocated): `ErrorKind::Unsupported`.
pub(super) const EXEC_REFUSED: i32 = libc::ENOSYS;

/// The hook. Async-signal-safe and allocation-free in a spawn child.
///
/// In Go's order: make sure this is a spawn child, block signals, reset this
/// crate's handlers, do the setup, restore the mask the new program should
/// start with.
fn run(plan: &mut Plan) -> io::Result<()> {
    if sys::getpid() == plan.configured_in {
        // No fork happened: allocating the message is fine here.
        return Err(exec_refused());
    }
    // Read-only: a duplicate released or closed behind the value's back is
    // reported as such (a number closed behind our back may even hold the
    // channel now, and the proof skips the numbers the tables hold).
    pass::check_sources(&plan.passes)?;
    match proof::look(|fd| plan.published(fd)) {
        Proof::Spawned => {}
        Proof::Exec => return Err(io::Error::from_raw_os_error(EXEC_REFUSED)),
        Proof::Unknown(errno) => return Err(io::Error::from_raw_os_error(errno)),
    }
    if plan.is_child_fds && CHILD_FDS_APPLIED.fetch_add(1, Ordering::Relaxed) > 0 {
        return Err(io::Error::from_raw_os_error(SECOND_CHILD_FDS));
    }
    // A raw block, not a `MaskGuard`: the child inherits the forking
    // thread's guard depth, which would make a guard skip the syscall, and
    // this hook must not depend on it.
    let block = crate::mask::async_signal_set();
    let old = sys::change_sigmask(libc::SIG_BLOCK, Some(&block));
    reset_handled_signals();
    let result = apply(plan);
    // The new program gets the mask from before this thread's outermost
    // `MaskGuard` (spawned under a guard), else exactly the mask we found.
    let restore = crate::mask::mask_before_guards().unwrap_or(old);
    sys::set_sigmask(&restore);
    result?;
    match &mut plan.exec {
        None => Ok(()),
        // Socket activation: exec here, with `LISTEN_PID` (returns only on
        // failure, which std reports to the parent as ever).
        Some(Some(exec)) => Err(exec.exec()),
        Some(None) => Err(io::Error::from_raw_os_error(libc::EINVAL)),
    }
}

/// The refusal under `Command::exec` in the configuring process, saying
/// what std has already done to it by then.
#[cold]
fn exec_refused() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "fdtable: Command::exec of a command with a child setup (child_fds, or \
         close_tracked_fds under a MaskGuard) is refused: it runs the \
         setup in this running process, without a fork, where it would close and replace \
         descriptors under their owners. Nothing of fdtable's changed, but std had already \
         applied the command's stdio (dup2 onto 0-2), groups, user and group ids, working \
         directory and process group to this process, and reset SIGPIPE to its default. Use \
         spawn, or exec a command without a child setup",
    )
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
            if sys::handler_function_installed(sig) {
                let _ = sys::set_default_disposition(sig);
            }
        }
    }
}

/// The setup itself, signals blocked. Placing comes first, so the close
/// steps know the passed numbers are the program's now (the tracked close
/// skips them even where the parent's table holds the same number).
fn apply(plan: &Plan) -> io::Result<()> {
    pass::check_targets(&plan.passes)?;
    pass::place(&plan.passes)?;
    for table in &plan.tables {
        // 0-2 were set up by std for the new program (inherited or dup2-ed
        // from `Stdio` pipes) before this hook runs: they are not the
        // table's any more, whatever the table recorded in the parent.
        close_published(table, |fd| fd <= 2 || plan.kept(fd));
    }
    if plan.close_other {
        mark_cloexec_except(&plan.targets);
    }
    Ok(())
}

/// Register the one hook that carries out `plan`.
pub(super) fn install(cmd: &mut Command, plan: Plan) {
    let mut plan = plan;
    let hook = move || run(&mut plan);
    // SAFETY: `pre_exec` requires the closure to be async-signal-safe and
    // not to allocate or take locks. In a spawn child `run` makes only
    // `getpid`, `getppid`, `open`, `getdents64`, `getsockopt`, `fcntl`,
    // `fstat`, `getrlimit`, `pthread_sigmask`, `sigaction`, `dup2`,
    // `close_range`, `close` and (socket activation) `execvp` calls, reads
    // atomics, const thread-locals and the plan built in the parent (and
    // writes digits into it), and builds its errors from raw OS codes; the
    // tables are `'static`. It allocates an error only where the
    // proof shows that no fork happened (`Command::exec` in the configuring
    // process).
    unsafe { std::os::unix::process::CommandExt::pre_exec(cmd, hook) };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// In a fork child (so the test process is untouched): install a handler
    /// for SIGUSR2, mark it handled, run the setup; the disposition must be
    /// back to SIG_DFL and the signal mask exactly what it was.
    #[test]
    fn the_hook_resets_handled_signals_and_restores_the_mask() {
        extern "C" fn handler(_: libc::c_int) {}
        static TABLE: FdTable = FdTable::new();
        let mut plan = Plan::mask_only();
        plan.tables.push(&TABLE);
        // The parent's pid: the hook runs in a child of this process.
        plan.configured_in = sys::getpid();

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

                // The proof is not asked for here (no spawn made this
                // child): the steps after it are.
                let old =
                    sys::change_sigmask(libc::SIG_BLOCK, Some(&crate::mask::async_signal_set()));
                reset_handled_signals();
                let applied = apply(&plan);
                sys::set_sigmask(&old);

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
                } else if applied.is_err() {
                    3
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
            "1: handler kept, 2: mask changed, 3: setup failed"
        );
    }

    /// Run in this process (as `Command::exec` would): refused before
    /// anything, with a message that says what std did already.
    #[test]
    fn the_hook_refuses_in_the_configuring_process() {
        let mut plan = Plan::mask_only();
        let err = run(&mut plan).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::Unsupported);
        let text = err.to_string();
        for fact in [
            "Command::exec",
            "stdio",
            "working directory",
            "SIGPIPE",
            "spawn",
        ] {
            assert!(text.contains(fact), "{fact:?} missing: {text}");
        }
        assert_eq!(CHILD_FDS_APPLIED.load(Ordering::Relaxed), 0);
    }
}
