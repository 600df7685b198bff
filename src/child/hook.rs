//! [`CommandExt`]: child setup for [`std::process::Command`] in one
//! `pre_exec` hook, or none at all when none is needed.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::process::Command;

use super::close::close_range_usable;
use super::close_other::cloexec_range_usable;
use super::raw;
use super::run::install_hook;
use super::setup::{self, Setup};
use crate::mask::MaskGuard;
use crate::sys;
use crate::table::FdTable;

/// The hook-free `close_tracked_fds`: make sure every descriptor the table
/// holds is close-on-exec now, so `execve` closes them without a hook.
///
/// First a read-only pass: one `fcntl(F_GETFD)` per published number, with
/// atomic loads and no pin (a number unpublished and reused meanwhile is
/// only looked at, which harms nothing). Only if a flag is missing, a walk
/// that pins each entry, so the number cannot be closed and reused by
/// someone else under the `F_SETFD`.
fn reassert_cloexec(table: &FdTable) {
    let mut missing = false;
    table.for_each_published(|fd| {
        // EBADF (unpublished and closed meanwhile, or closed behind the
        // table's back) is left to the walk's owners, not counted here.
        missing |= raw::is_cloexec(fd) == Some(false);
    });
    if missing {
        table.for_each(|fd| {
            // EBADF only for a descriptor closed behind the table's back.
            let _ = sys::set_cloexec(fd.as_raw_fd(), true);
        });
    }
}

/// Run `change` on `cmd`'s setup; when it has none, on a fresh one that a
/// new hook then owns, but only if `change` succeeded: a refused call
/// leaves no hook behind (the command would fork for nothing).
fn configure<E>(
    cmd: &mut Command,
    mut change: impl FnMut(&mut Setup) -> Result<(), E>,
) -> Result<(), E> {
    if let Some(result) = setup::update(cmd, &mut change) {
        return result;
    }
    let mut fresh = Setup::default();
    change(&mut fresh)?;
    setup::create(cmd, fresh, install_hook);
    Ok(())
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
/// it, so everything below applies to it unchanged); sealed. Every method may
/// be called in any order and more than once; all of them on one command are
/// carried out together, by at most one `pre_exec` hook. (One bound: a
/// hook-free `close_tracked_fds` is carried out by a hook installed later on
/// the same command if fewer than 64 other hook-free calls came in between;
/// see below.)
///
/// For [`spawn`](Command::spawn), [`status`](Command::status) and
/// [`output`](Command::output). [`exec`](std::os::unix::process::CommandExt::exec)
/// of a command with the hook fails with `Unsupported` (see below).
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
/// 40 ms per spawn instead of under 1 ms for a parent with 1 GiB resident
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
/// the call reads the flag of every descriptor the table holds: one
/// `fcntl(F_GETFD)` each, with no lock and no pin; only if a flag is missing
/// does it walk the table pinning each entry (so no number is recycled
/// under it) and set `FD_CLOEXEC` again where it is missing. What that
/// cannot cover: a flag cleared *after* the call (unless a hook is
/// installed on the command later, see next), and the window described
/// below.
///
/// A hook installed later on the same command (by `pass_fd`, say) carries
/// out the earlier hook-free call too: its child closes that table's
/// numbers, whatever their flags are by then. For that the crate remembers
/// the last 64 hook-free calls (program name and table, under the address
/// of the command's program name; the oldest is forgotten first). A command
/// whose hook-free call was followed by 64 others before its hook was
/// installed is covered as of the earlier call only. A remembered call of a
/// dropped command can match a new command with the same program name whose
/// program name std allocated at the same address: that command's hook then
/// also closes that table's numbers in its child (close-on-exec
/// descriptors, unless a flag was cleared behind the table's back).
///
/// # What runs in the child
/// The hook runs between `fork` and `execve`, where only async-signal-safe
/// calls are allowed: it takes no lock and allocates nothing (everything it
/// reads was prepared in the parent at configuration time). In Go's order:
///
/// 0. refuse (`Unsupported`) if this is the process that configured the
///    command, not a fork child: that is `Command::exec` (see below);
/// 1. block asynchronous signals (one `pthread_sigmask`, the set a
///    [`MaskGuard`] blocks);
/// 2. put every signal this crate has handled (e.g. SIGINT for
///    [`Interrupts`](crate::Interrupts)) back to `SIG_DFL` where a handler
///    function is in place (`execve` would reset it anyway; one set to
///    `SIG_IGN` since stays ignored, as `execve` keeps it);
/// 3. place the [`pass_fd`](CommandExt::pass_fd) descriptors: first check
///    them all (refusing as described under `pass_fd`'s errors), then one
///    `dup2` each, or, for a duplicate already sitting at its number,
///    clearing its `FD_CLOEXEC` (the parent's copy keeps the flag);
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
/// has the hook. A plain `Command`, or one with a hook-free
/// `close_tracked_fds` (configured with no guard alive and outside
/// quarantine mode), starts its program with the spawning thread's mask
/// (std's children inherit it): spawned under a `MaskGuard`, with the
/// guard's signals blocked; spawned in [quarantine
/// mode](crate::quarantine) after it was configured before
/// [`enter`](crate::quarantine::enter), with every asynchronous signal
/// blocked. Do not spawn under a guard, and configure commands after
/// `enter` (or give them the hook).
///
/// # `Command::exec`
/// std's [`exec`](std::os::unix::process::CommandExt::exec) runs `pre_exec`
/// hooks in the calling process, without a fork, and returns when `execve`
/// fails. The setup would then have closed tracked descriptors under their
/// live handles, overwritten descriptors and changed flags and signal
/// dispositions of the running program. So the hook refuses with
/// `ErrorKind::Unsupported` in the process that configured the command last
/// (it records `getpid()` at each configuration call), before it touches
/// anything, and `exec` returns that error. Not detected: a fork child of
/// that process, which calls `exec` on its copy of the command without
/// configuring it again. A command without the hook (a hook-free
/// `close_tracked_fds`) execs normally: its tracked descriptors are
/// close-on-exec.
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
    /// that lost it, now, and is remembered for a hook installed later on
    /// the same command.
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
    /// there. The number stays reserved while any live command targets it:
    /// several commands passing to the same number may be built up front and
    /// dropped in any order (a dropped command's duplicate is replaced by a
    /// dead placeholder until the last of them is gone). In the child, all
    /// mappings are placed together, collision-safe (a descriptor at another
    /// mapping's number, cycles such as 3 -> 4 and 4 -> 3), with no
    /// allocation. Whatever else the child has at `child_fd` (a descriptor
    /// inherited from here, or one std opened there at the spawn) is
    /// replaced, in the child only.
    ///
    /// `child_fd` 0-2 replaces that stdio stream after std set it up from
    /// [`Command::stdin`]/[`stdout`](Command::stdout)/[`stderr`](Command::stderr):
    /// the `Stdio` you chose for that stream is opened and then overwritten,
    /// so with `Stdio::piped()` there your end of the pipe sees end-of-file.
    /// Leave that stream at its default (or `Stdio::null()`).
    ///
    /// The file status flags come along: they belong to the open file, not
    /// to the number. A descriptor of an async runtime's value (a tokio
    /// socket or pipe, set `O_NONBLOCK` by tokio) arrives non-blocking, and
    /// a program that expects blocking I/O on it gets `EAGAIN`. Clearing
    /// the flag would clear it under the runtime here too; pass a
    /// descriptor of its own instead (a std socket pair, a `std::io::pipe`).
    ///
    /// Installs the hook (unless it fails). Not async-signal-safe (parent
    /// only).
    ///
    /// # Errors
    /// At configuration time, changing nothing (and installing no hook):
    /// - `InvalidInput` when `child_fd` is negative, not below the soft
    ///   `RLIMIT_NOFILE`, or already the target of another `pass_fd` on this
    ///   command;
    /// - the OS error when `fd` cannot be duplicated (`EMFILE` at the
    ///   descriptor limit).
    ///
    /// At `spawn` (the child refuses before it changes anything):
    /// - `ResourceBusy` (`EBUSY`) when std's exec-error channel sits at
    ///   `child_fd` in the child, which must not be overwritten (a missing
    ///   program would look like a successful spawn). That can only happen
    ///   when `child_fd` was not reserved: another descriptor held it at
    ///   configuration time and was closed before the spawn (keep it open
    ///   until the spawn, or pass to a number that is free), or `child_fd`
    ///   is 0-2 while this process has that stdio stream closed and the
    ///   command inherits it. The check is conservative: on Linux any
    ///   close-on-exec `AF_UNIX` `SOCK_SEQPACKET` socket pair end that this
    ///   process created after the `pass_fd` call and left at `child_fd`
    ///   looks like std's channel; elsewhere, any close-on-exec pipe.
    /// - `EBADF` (an uncategorized error) when the command's duplicate was
    ///   closed behind its back by other code (an I/O-safety bug there).
    ///
    /// # Examples
    /// ```
    /// use fdtable::CommandExt;
    /// use std::io::Read;
    /// use std::os::fd::{AsFd, AsRawFd};
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
    ///
    /// // A descriptor passed at the number it has here may be closed at once.
    /// let file = std::fs::File::open("/dev/null")?;
    /// let n = file.as_raw_fd();
    /// let mut cmd = Command::new("sh");
    /// cmd.args(["-c", &format!("test -e /proc/self/fd/{n}")])
    ///     .pass_fd(file.as_fd(), n)?;
    /// drop(file);
    /// assert!(cmd.output()?.status.success());
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
        let add = |s: &mut Setup| {
            s.add_table(table, keep);
            Ok::<(), std::convert::Infallible>(())
        };
        let needs_hook =
            !keep.is_empty() || crate::quarantine::is_active() || MaskGuard::is_active();
        if needs_hook {
            let _ = configure(self, add);
        } else if setup::update(self, add).is_none() {
            setup::remember_hook_free(self, table);
            reassert_cloexec(table);
        }
        self
    }

    fn pass_fd(&mut self, fd: BorrowedFd<'_>, child_fd: RawFd) -> io::Result<&mut Self> {
        configure(self, |s| s.add_pass(fd, child_fd))?;
        Ok(self)
    }

    fn close_other_fds(&mut self) -> &mut Self {
        let _ = cloexec_range_usable();
        let _ = configure(self, |s| {
            s.set_close_other();
            Ok::<(), std::convert::Infallible>(())
        });
        self
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for std::process::Command {}
    #[cfg(feature = "tokio")]
    impl Sealed for tokio::process::Command {}
}
