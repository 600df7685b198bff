//! [`CommandExt`]: the `pre_exec` hook for [`std::process::Command`].

use std::os::fd::RawFd;
use std::process::Command;
#[cfg(test)]
use std::sync::atomic::Ordering;

use super::close::{close_published, close_range_usable};
use super::reset_handled_signals;
#[cfg(test)]
use crate::signals::HANDLED_SIGNALS;
use crate::sys;
use crate::table::FdTable;
#[cfg(doc)]
use crate::MaskGuard;

/// The `pre_exec` hook: Go's order. Async-signal-safe; runs in the child.
fn exec_child_hook(table: &FdTable, keep_sorted: &[RawFd]) {
    // A raw block, not a `MaskGuard`: the child inherits the forking
    // thread's guard depth and quarantine mode, either of which would make a
    // guard skip the syscall, and this hook must not depend on either.
    let block = crate::mask::async_signal_set();
    let mut old = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: initialised set in, out-pointer to a local; async-signal-safe.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &block, old.as_mut_ptr()) };
    // SAFETY: written by the call above.
    let old = unsafe { old.assume_init() };
    reset_handled_signals();
    close_published(
        table,
        // 0-2 were set up by std for the new program (inherited or dup2-ed
        // from `Stdio` pipes) before this hook runs: they are not the
        // table's any more, whatever the table recorded in the parent.
        |fd| fd <= 2 || keep_sorted.binary_search(&fd).is_ok(),
        |fd| {
            if fd > 2 {
                // Kept on purpose: let the new program inherit it. Only the
                // child's copy of the descriptor loses the flag.
                let _ = sys::set_cloexec(fd, false);
            }
        },
    );
    // In quarantine mode the forking thread runs with every asynchronous
    // signal blocked; the new program gets the mask the process had before
    // quarantine instead. Otherwise exactly the mask we found.
    let restore = crate::quarantine::mask_before_quarantine().unwrap_or(old);
    // SAFETY: an initialised set; pthread_sigmask is async-signal-safe.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &restore, std::ptr::null_mut()) };
}

/// Close this crate's tracked descriptors in processes spawned by
/// [`std::process::Command`].
///
/// Every tracked descriptor already has `FD_CLOEXEC` (set by
/// [`FdTable::track`]), so `execve` closes it. The hook is for the rest:
/// descriptors whose flag was cleared after tracking, the window between
/// `fork` and `execve`, and handlers this crate installed. It runs in the
/// child, in Go's order:
///
/// 1. block asynchronous signals (one `pthread_sigmask`, the set a
///    [`MaskGuard`] blocks);
/// 2. put every signal this crate handles (e.g. SIGINT for
///    [`Interrupts`](crate::Interrupts)) back to `SIG_DFL`;
/// 3. close every number the table holds, as
///    [`FdTable::close_all_in_child`] does, except 0-2 and the kept ones;
/// 4. restore the mask that was in force before step 1.
///
/// So the program never starts with signals blocked by us nor with our
/// handlers. The hook makes only async-signal-safe calls and allocates
/// nothing; the keep list is copied (and sorted) when the hook is installed,
/// in the parent.
///
/// Descriptors 0-2 are never closed by the hook: std has already made them
/// the new program's stdio (inherited, or `dup2`-ed from the `Stdio` you
/// chose) by the time `pre_exec` hooks run, so those numbers no longer belong
/// to the table in the child.
///
/// Install the hook once per `Command`; each call adds another `pre_exec`
/// hook. Implemented for [`Command`] only (sealed).
///
/// # Examples
/// ```
/// use fdtable::{CommandExt, FdTable};
/// use std::os::fd::AsRawFd;
/// use std::process::Command;
///
/// static TABLE: FdTable = FdTable::new();
/// let private = TABLE.track(std::fs::File::open("/dev/null")?)?;
/// let shared = TABLE.track(std::fs::File::open("/dev/null")?)?;
///
/// // The child sees neither: both are closed before `execve`.
/// let out = Command::new("ls").arg("/proc/self/fd").close_tracked_fds(&TABLE).output()?;
/// assert!(out.status.success());
///
/// // The child inherits `shared` (its close-on-exec flag is cleared in the
/// // child only), not `private`.
/// let out = Command::new("ls")
///     .arg("/proc/self/fd")
///     .close_tracked_fds_except(&TABLE, &[shared.as_raw_fd()])
///     .output()?;
/// let listed = String::from_utf8_lossy(&out.stdout).into_owned();
/// assert!(listed.lines().any(|l| l == shared.as_raw_fd().to_string()));
/// # drop((private, shared));
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// # References
/// `fork(2)`, `execve(2)` ("file descriptors marked close-on-exec are
/// closed"), `signal-safety(7)`, `close_range(2)`, and
/// [`std::os::unix::process::CommandExt::pre_exec`].
pub trait CommandExt: sealed::Sealed {
    /// Close every descriptor tracked by `table` in the child before it
    /// execs, and put this crate's signal handlers back to their defaults
    /// (see the trait docs for the exact order).
    ///
    /// Not async-signal-safe itself (it boxes the hook; call it in the
    /// parent); the hook it installs is, and allocates nothing.
    fn close_tracked_fds(&mut self, table: &'static FdTable) -> &mut Self;

    /// Like [`close_tracked_fds`](CommandExt::close_tracked_fds), but the
    /// tracked numbers in `keep` stay open in the child *and are inherited by
    /// the new program*: their `FD_CLOEXEC` flag is cleared in the child's
    /// copy of the descriptor table only. Numbers in `keep` that the table
    /// does not hold when the child runs are left exactly as they are.
    ///
    /// `keep` is copied when this is called. Not async-signal-safe itself;
    /// the hook it installs is.
    fn close_tracked_fds_except(&mut self, table: &'static FdTable, keep: &[RawFd]) -> &mut Self;
}

impl CommandExt for Command {
    fn close_tracked_fds(&mut self, table: &'static FdTable) -> &mut Self {
        self.close_tracked_fds_except(table, &[])
    }

    fn close_tracked_fds_except(&mut self, table: &'static FdTable, keep: &[RawFd]) -> &mut Self {
        let mut keep: Box<[RawFd]> = keep.into();
        keep.sort_unstable();
        // Ask about close_range(2) here, in the parent, so every child
        // inherits the answer instead of probing on its own.
        let _ = close_range_usable();
        let hook = move || {
            exec_child_hook(table, &keep);
            Ok(())
        };
        // SAFETY: `pre_exec` requires the closure to be async-signal-safe
        // and not to allocate or take locks. `exec_child_hook` makes only
        // `pthread_sigmask`, `sigaction`, `fcntl`, `close_range` and `close`
        // calls, reads atomics and a boxed slice allocated here in the
        // parent, and `table` is `'static`, so it outlives the child.
        unsafe { std::os::unix::process::CommandExt::pre_exec(self, hook) }
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for std::process::Command {}
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

                exec_child_hook(&TABLE, &[]);

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
