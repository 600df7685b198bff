//! [`CommandExt`]: child setup for [`std::process::Command`] in one
//! `pre_exec` hook, or none at all when none is needed.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::process::Command;
#[cfg(test)]
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::close::{close_published, close_range_usable};
use super::close_other::{cloexec_range_usable, mark_cloexec_except};
use super::pass;
use super::reset_handled_signals;
use super::setup::{self, Setup, SetupCell};
use crate::mask::MaskGuard;
#[cfg(test)]
use crate::signals::HANDLED_SIGNALS;
use crate::sys;
use crate::table::FdTable;

/// The `pre_exec` hook, in Go's order: block signals, reset this crate's
/// handlers, do the setup, restore the mask the new program should start
/// with. Async-signal-safe and allocation-free; runs in the child.
fn run_in_child(setup: &Setup) -> io::Result<()> {
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
    let result = apply(setup);
    // The new program gets the mask the program had before quarantine (the
    // forking thread then runs with every asynchronous signal blocked), else
    // the one from before this thread's outermost `MaskGuard` (spawned under
    // a guard), else exactly the mask we found.
    let restore = crate::quarantine::mask_before_quarantine()
        .or_else(crate::mask::mask_before_guards)
        .unwrap_or(old);
    // SAFETY: an initialised set; pthread_sigmask is async-signal-safe.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &restore, std::ptr::null_mut()) };
    result
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
        mark_cloexec_except(&setup.kept_open);
    }
    Ok(())
}

/// Register the one hook that reads `cell`.
fn install_hook(cmd: &mut Command, cell: Arc<SetupCell>) {
    let hook = move || {
        // SAFETY: std runs `pre_exec` closures only in the fork child of a
        // `spawn` of the command that owns this one.
        run_in_child(unsafe { cell.in_child() })
    };
    // SAFETY: `pre_exec` requires the closure to be async-signal-safe and
    // not to allocate or take locks. `run_in_child` makes only
    // `pthread_sigmask`, `sigaction`, `fcntl`, `fstat`, `dup2`, `open`,
    // `getdents64`, `getrlimit`, `close_range` and `close` calls, reads
    // atomics, const thread-locals and vectors built in the parent, and
    // builds its errors from raw OS codes; the tables are `'static`.
    unsafe { std::os::unix::process::CommandExt::pre_exec(cmd, hook) };
}

/// The hook-free `close_tracked_fds`: make sure every descriptor the table
/// holds is close-on-exec now (`F_SETFD` only where the flag is missing), so
/// `execve` closes them without a hook. The walk pins each entry, so the
/// number cannot be closed and reused by someone else under the `fcntl`.
fn reassert_cloexec(table: &FdTable) {
    table.for_each(|fd| {
        // EBADF only for a descriptor closed behind the table's back.
        let _ = sys::set_cloexec(fd.as_raw_fd(), true);
    });
}

/// Child setup for [`std::process::Command`]: close this crate's tracked
/// descriptors, pass chosen descriptors at fixed numbers, inherit nothing
/// else; with no fork when none is needed.
///
/// std has a trait of the same name
/// ([`std::os::unix::process::CommandExt`]); import this one without its
/// name to use both:
///
/// ```
/// use std::os::unix::process::CommandExt; // std's: pre_exec, uid, exec, ...
/// use fdtable::CommandExt as _;           // ours: close_tracked_fds, pass_fd, ...
/// ```
///
/// Implemented for [`Command`] and, with the `tokio` feature, for
/// `tokio::process::Command` (which spawns through the std `Command` inside
/// it, so everything below applies to it unchanged); sealed. Every method
/// may be called in any order and more than once; all of them on one
/// command are carried out together, by at most one `pre_exec` hook.
///
/// # Examples
/// A program gets a socket at descriptor 3 (as systemd's socket activation
/// does) and nothing else of ours, whatever its parent has open:
/// ```
/// use fdtable::{CommandExt, FdTable};
/// use std::os::fd::AsFd;
/// use std::process::Command;
///
/// static TABLE: FdTable = FdTable::new();
/// let listener = TABLE.track(std::net::TcpListener::bind("127.0.0.1:0")?)?;
/// let secret = TABLE.track(std::fs::File::open("/dev/null")?)?;
///
/// let out = Command::new("ls")
///     .arg("/proc/self/fd")
///     .pass_fd(listener.as_fd(), 3)?
///     .close_other_fds()
///     .close_tracked_fds(&TABLE)
///     .output()?;
/// // 0-2, the socket at 3, and the directory `ls` itself opened.
/// let listed = String::from_utf8_lossy(&out.stdout).into_owned();
/// assert_eq!(listed.lines().take(4).collect::<Vec<_>>(), ["0", "1", "2", "3"]);
/// # drop(secret);
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// Without a hook (no fork), tracked descriptors still never reach the child:
/// ```
/// use fdtable::{CommandExt, FdTable};
/// use std::process::Command;
///
/// static TABLE: FdTable = FdTable::new();
/// let private = TABLE.track(std::fs::File::open("/dev/null")?)?;
/// let status = Command::new("true").close_tracked_fds(&TABLE).status()?;
/// assert!(status.success());
/// # drop(private);
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// # When a hook is installed, and what it costs
/// Any `pre_exec` hook makes std create the child with `fork(2)` instead of
/// `posix_spawn(3)` (which is `clone(CLONE_VM | CLONE_VFORK)` in glibc), and
/// `fork` copies the parent's page tables: cheap for a small program, about
/// 50 ms per spawn instead of under 1 ms for a parent with 1 GiB resident
/// (see the README's Performance section). So a hook is installed only when
/// the spawn needs something only a hook can do:
/// - [`pass_fd`](CommandExt::pass_fd) or
///   [`close_other_fds`](CommandExt::close_other_fds) (always);
/// - [`close_tracked_fds_except`](CommandExt::close_tracked_fds_except) with
///   a non-empty keep list (the kept descriptors lose `FD_CLOEXEC` in the
///   child only);
/// - [`close_tracked_fds`](CommandExt::close_tracked_fds) while quarantine
///   mode is on or a [`MaskGuard`] is alive on the calling thread (the
///   program must not start with the signals they block), or on a command
///   that already has the hook.
///
/// Otherwise `close_tracked_fds` installs nothing: tracked descriptors are
/// close-on-exec already ([`FdTable::track`] sets the flag), so `execve`
/// closes them. To cover one whose flag was cleared behind the table's back,
/// the call sets `FD_CLOEXEC` again on every descriptor the table holds: one
/// `fcntl(F_GETFD)` each, and only where a flag is missing a walk that pins
/// each entry (so no number is recycled under it) and `F_SETFD`. What that cannot
/// cover: a flag cleared *after* the call, and the window described below.
/// A hook installed later on the same command (say by `pass_fd`) does not
/// close that table's descriptors in the child: they are close-on-exec as of
/// the earlier call.
///
/// # What runs in the child
/// The hook runs between `fork` and `execve`, where only async-signal-safe
/// calls are allowed: it takes no lock and allocates nothing (everything it
/// reads was prepared in the parent at configuration time). In Go's order:
///
/// 1. block asynchronous signals (one `pthread_sigmask`, the set a
///    [`MaskGuard`] blocks);
/// 2. put every signal this crate handles (e.g. SIGINT for
///    [`Interrupts`](crate::Interrupts)) back to `SIG_DFL`;
/// 3. place the [`pass_fd`](CommandExt::pass_fd) descriptors: one `dup2`
///    each, or, for a duplicate already sitting at its number, clearing its
///    `FD_CLOEXEC` (the parent's copy keeps the flag);
/// 4. close every number each table given to `close_tracked_fds(_except)`
///    holds, as [`FdTable::close_all_in_child`] does (runs of numbers with
///    one `close_range(2)`), except 0-2, the passed numbers and the kept
///    ones;
/// 5. with [`close_other_fds`](CommandExt::close_other_fds), mark every
///    other descriptor close-on-exec;
/// 6. restore a mask: the one from before quarantine mode when it is on,
///    else the one from before this thread's outermost [`MaskGuard`] when
///    the command is spawned under a guard, else exactly the mask found in
///    step 1.
///
/// So the new program never starts with signals blocked by this crate nor
/// with its handlers. Which spawns that covers: any spawn of a command that
/// has the hook. A plain `Command` spawned under a `MaskGuard`, or a
/// hook-free `close_tracked_fds` configured with no guard alive and spawned
/// under one, starts its program with the guard's signals blocked (std's
/// children inherit the mask): do not spawn under a guard.
///
/// Descriptors 0-2 are never closed by the hook: std has already made them
/// the new program's stdio (inherited, or `dup2`-ed from the `Stdio` you
/// chose) by the time `pre_exec` hooks run, so those numbers no longer belong
/// to the table in the child. A tracked number that is also a passed
/// number's target is not closed either: it is the passed descriptor there.
///
/// # Hook order
/// std runs `pre_exec` hooks in the order they were registered, after it has
/// set up stdio. This crate's hook is registered by the first call on the
/// command that needs it. A hook of your own that `dup2`s descriptors onto
/// fixed numbers must run *after* ours, or the tracked close (step 4) closes
/// what it placed on a tracked number and `close_other_fds` (step 5) marks it
/// close-on-exec: register it after the last call of this trait. Better,
/// use [`pass_fd`](CommandExt::pass_fd), which places descriptors inside the
/// hook, collision-safe; then no order question arises. A hook of yours
/// that only needs to run before ours (a seccomp filter, `setrlimit`) can be
/// registered first.
///
/// # The fork-copy window
/// `fork(2)` does not copy a threaded process atomically: Linux copies the
/// descriptor table first and the memory afterwards, while the other threads
/// keep running. A child may see a number published that another thread
/// opened and tracked after the descriptor table was copied (the child never
/// had that descriptor: it closes whatever it has at that number, which can
/// only be a descriptor that another thread closed in the same instant), or
/// miss one that was unpublished and closed meanwhile (it stays open in the
/// child, with `FD_CLOEXEC` unless someone cleared it, so `execve` closes
/// it). What the child never closes is a number its forking thread holds,
/// such as std's exec-error socket, the passed descriptors, or stdio.
///
/// # References
/// `fork(2)`, `execve(2)` ("file descriptors marked close-on-exec are
/// closed"), `signal-safety(7)`, `close_range(2)`, `dup2(2)`, `posix_spawn(3)`,
/// and [`std::os::unix::process::CommandExt::pre_exec`].
pub trait CommandExt: sealed::Sealed {
    /// No descriptor tracked by `table` reaches the new program, and this
    /// crate's signal handlers are not inherited.
    ///
    /// Installs no hook unless one is needed (see the trait docs for exactly
    /// when); then the hook closes the table's numbers in the child.
    /// Without one, it sets `FD_CLOEXEC` again on every tracked descriptor
    /// that lost it, now.
    ///
    /// Not async-signal-safe itself (it may allocate; call it in the
    /// parent); the hook is, and allocates nothing.
    ///
    /// # Examples
    /// ```
    /// use fdtable::{CommandExt, FdTable};
    /// use std::os::fd::AsRawFd;
    /// use std::process::Command;
    ///
    /// static TABLE: FdTable = FdTable::new();
    /// let log = TABLE.track(std::fs::File::open("/dev/null")?)?;
    /// let fd = log.as_raw_fd();
    /// // Made inheritable behind the table's back, as a careless `fcntl` might.
    /// // SAFETY: F_SETFD on a descriptor we own.
    /// assert_eq!(unsafe { libc::fcntl(fd, libc::F_SETFD, 0) }, 0);
    ///
    /// let check = format!("test ! -e /proc/self/fd/{fd}");
    /// let status = Command::new("sh")
    ///     .args(["-c", &check])
    ///     .close_tracked_fds(&TABLE)
    ///     .status()?;
    /// assert!(status.success(), "the shell inherited descriptor {fd}");
    /// # drop(log);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    fn close_tracked_fds(&mut self, table: &'static FdTable) -> &mut Self;

    /// Like [`close_tracked_fds`](CommandExt::close_tracked_fds), but the
    /// tracked numbers in `keep` stay open in the child *and are inherited by
    /// the new program*: their `FD_CLOEXEC` flag is cleared in the child's
    /// copy of the descriptor table only. Numbers in `keep` that the table
    /// does not hold when the child runs are left exactly as they are.
    /// Several calls add up: a number kept by one is kept.
    ///
    /// A non-empty `keep` needs the hook (so the spawn forks). To hand a
    /// descriptor to a program, [`pass_fd`](CommandExt::pass_fd) is usually
    /// what you want: it also chooses the child's number.
    ///
    /// `keep` is copied. Not async-signal-safe itself; the hook is.
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
    /// let out = Command::new("ls")
    ///     .arg("/proc/self/fd")
    ///     .close_tracked_fds_except(&TABLE, &[shared.as_raw_fd()])
    ///     .output()?;
    /// let listed = String::from_utf8_lossy(&out.stdout).into_owned();
    /// assert!(listed.lines().any(|l| l == shared.as_raw_fd().to_string()));
    /// # drop((private, shared));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    fn close_tracked_fds_except(&mut self, table: &'static FdTable, keep: &[RawFd]) -> &mut Self;

    /// The new program gets a descriptor for `fd`'s open file at number
    /// `child_fd`, not close-on-exec, whatever number `fd` has here.
    ///
    /// `fd` is duplicated now (close-on-exec; the command owns the duplicate
    /// until it is dropped), so `fd` itself may be closed right after this
    /// call. When `child_fd` is free here, the duplicate is made *at*
    /// `child_fd`, which keeps the number reserved: std's exec-error socket,
    /// created at `spawn` at the lowest free numbers, can then never land
    /// there. In the child, all mappings are placed together, collision-safe
    /// (a descriptor at another mapping's number, cycles such as 3 -> 4 and
    /// 4 -> 3), with no allocation.
    ///
    /// `child_fd` 0-2 replaces that stdio stream after std set it up from
    /// [`Command::stdin`]/[`stdout`](Command::stdout)/[`stderr`](Command::stderr):
    /// the `Stdio` you chose for that stream is opened and then overwritten,
    /// so with `Stdio::piped()` there your end of the pipe sees end-of-file.
    /// Leave that stream at its default (or `Stdio::null()`).
    ///
    /// Installs the hook. Not async-signal-safe (parent only).
    ///
    /// # Errors
    /// At configuration time, changing nothing:
    /// - `InvalidInput` when `child_fd` is negative, not below the soft
    ///   `RLIMIT_NOFILE`, or already the target of another `pass_fd` on this
    ///   command;
    /// - the OS error when `fd` cannot be duplicated (`EMFILE` at the
    ///   descriptor limit).
    ///
    /// At `spawn`: `ResourceBusy` (`EBUSY`) when `child_fd` was held by
    /// another descriptor at the last `pass_fd` call and names a different
    /// file by the time of the spawn (closed and reused meanwhile, perhaps by
    /// std's exec-error socket, which must not be overwritten). Keep that
    /// descriptor open until the spawn, or pass to a number that is free.
    ///
    /// # Examples
    /// ```
    /// use fdtable::CommandExt;
    /// use std::io::Read;
    /// use std::os::fd::AsFd;
    /// use std::process::{Command, Stdio};
    ///
    /// // A pipe end at descriptor 5 of the child; the shell writes into it.
    /// let (mut reader, writer) = std::io::pipe()?;
    /// let mut child = Command::new("sh")
    ///     .args(["-c", "echo hello >&5"])
    ///     .pass_fd(writer.as_fd(), 5)?
    ///     .stdout(Stdio::null())
    ///     .spawn()?;
    /// drop(writer);
    /// child.wait()?;
    /// let mut got = String::new();
    /// reader.read_to_string(&mut got)?;
    /// assert_eq!(got, "hello\n");
    ///
    /// // The same child number twice is refused.
    /// let mut cmd = Command::new("true");
    /// cmd.pass_fd(reader.as_fd(), 7)?;
    /// let err = cmd.pass_fd(reader.as_fd(), 7).unwrap_err();
    /// assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    fn pass_fd(&mut self, fd: BorrowedFd<'_>, child_fd: RawFd) -> io::Result<&mut Self>;

    /// The new program starts with descriptors 0-2 and the
    /// [`pass_fd`](CommandExt::pass_fd) ones only (and the numbers kept by
    /// [`close_tracked_fds_except`](CommandExt::close_tracked_fds_except)):
    /// everything else is marked close-on-exec in the child, tracked or not,
    /// inherited from this process's parent or opened without `O_CLOEXEC` by
    /// some library.
    ///
    /// Marking instead of closing keeps `spawn`'s error reporting: std's
    /// exec-error socket stays open until `execve`, so a missing program
    /// still fails with `NotFound`. In the child: one
    /// `close_range(first, last, CLOSE_RANGE_CLOEXEC)` per gap between kept
    /// numbers (Linux 5.11+); where that is refused (older kernels, seccomp),
    /// a walk of `/proc/self/fd` with `getdents64` into a stack buffer; where
    /// `/proc` cannot be opened (not mounted, or at `RLIMIT_NOFILE`), an
    /// `fcntl` on every number below the soft `RLIMIT_NOFILE` (a descriptor
    /// above it, opened before the limit was lowered, is then missed).
    ///
    /// Installs the hook. Not async-signal-safe (parent only); the hook is.
    ///
    /// # Examples
    /// ```
    /// use fdtable::CommandExt;
    /// use std::os::fd::AsRawFd;
    /// use std::process::Command;
    ///
    /// // Inheritable on purpose, as a careless library might leave one.
    /// let leaky = std::fs::File::open("/dev/null")?;
    /// // SAFETY: F_SETFD on a descriptor we own.
    /// assert_eq!(unsafe { libc::fcntl(leaky.as_raw_fd(), libc::F_SETFD, 0) }, 0);
    ///
    /// let out = Command::new("ls").arg("/proc/self/fd").close_other_fds().output()?;
    /// let listed = String::from_utf8_lossy(&out.stdout).into_owned();
    /// // 0-2 and the directory `ls` opened itself; not `leaky`.
    /// assert_eq!(listed.lines().count(), 4, "{listed}");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    fn close_other_fds(&mut self) -> &mut Self;
}

impl CommandExt for Command {
    fn close_tracked_fds(&mut self, table: &'static FdTable) -> &mut Self {
        self.close_tracked_fds_except(table, &[])
    }

    fn close_tracked_fds_except(&mut self, table: &'static FdTable, keep: &[RawFd]) -> &mut Self {
        // Ask about close_range(2) here, in the parent, so every child
        // inherits the answer instead of probing on its own.
        let _ = close_range_usable();
        let needs_hook =
            !keep.is_empty() || crate::quarantine::is_active() || MaskGuard::is_active();
        let install = needs_hook.then_some(install_hook as fn(&mut Command, Arc<SetupCell>));
        if setup::configure(self, install, |s| s.add_table(table, keep)).is_none() {
            reassert_cloexec(table);
        }
        self
    }

    fn pass_fd(&mut self, fd: BorrowedFd<'_>, child_fd: RawFd) -> io::Result<&mut Self> {
        if child_fd < 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("pass_fd: child_fd {child_fd} is negative"),
            ));
        }
        let taken = setup::configure(self, None, |s| s.targets(child_fd)).unwrap_or(false);
        if taken {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("pass_fd: child_fd {child_fd} is already the target of another pass_fd"),
            ));
        }
        // Checked again inside: `configure` may have to start over.
        setup::configure(self, Some(install_hook), |s| {
            if s.targets(child_fd) {
                return Err(io::Error::from(io::ErrorKind::InvalidInput));
            }
            s.add_pass(fd, child_fd)
        })
        .unwrap_or_else(|| Err(io::Error::from(io::ErrorKind::Other)))?;
        Ok(self)
    }

    fn close_other_fds(&mut self) -> &mut Self {
        let _ = cloexec_range_usable();
        setup::configure(self, Some(install_hook), Setup::set_close_other);
        self
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for std::process::Command {}
    #[cfg(feature = "tokio")]
    impl Sealed for tokio::process::Command {}
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
