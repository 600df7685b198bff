//! [`ChildFds`]: everything a spawned program gets of this process's
//! descriptors, as one value.

use std::fmt;
use std::io;
use std::os::fd::{BorrowedFd, RawFd};

use std::process::Command;

use super::activation::{self, Exec};
use super::close::close_range_usable;
use super::close_other::cloexec_range_usable;
use super::pass::Passes;
use super::run::Plan;
use crate::sys;
use crate::table::FdTable;
#[cfg(doc)]
use crate::CommandExt;

/// What a spawned program gets of this process's descriptors: chosen ones at
/// chosen numbers ([`pass_fd`](ChildFds::pass_fd)), none of a table's
/// ([`close_tracked_fds`](ChildFds::close_tracked_fds)), nothing else at all
/// ([`close_other_fds`](ChildFds::close_other_fds)). Built here, handed to a
/// command with [`CommandExt::child_fds`], carried out in the child by one
/// `pre_exec` hook.
///
/// The value is all there is: the command's setup is never looked up
/// anywhere, nothing is remembered between calls or shared between
/// commands, and a child gets exactly what its value says.
///
/// # What the value owns
/// [`pass_fd`](ChildFds::pass_fd) duplicates the descriptor at once
/// (close-on-exec), so the caller may close its own right after. The
/// duplicates belong to the value, and then to the command it is given to:
/// dropping either releases them. They are the program's descriptors like
/// any other: each is tracked in [`FdTable::global`], so
/// `FdTable::global().close_all()` (the Ctrl-C path) releases them too, and
/// a command spawned after that fails (see [Errors at
/// spawn](CommandExt#errors-at-spawn)).
///
/// # Examples
/// A program gets a socket at descriptor 3 (as systemd's socket activation
/// does) and nothing else of ours, whatever its parent has open:
/// ```
/// use fdtable::{ChildFds, CommandExt, FdTable};
/// use std::os::fd::AsFd;
/// use std::process::Command;
///
/// static TABLE: FdTable = FdTable::new();
/// let listener = TABLE.track(std::net::TcpListener::bind("127.0.0.1:0")?)?;
/// let secret = TABLE.track(std::fs::File::open("/dev/null")?)?;
///
/// let fds = ChildFds::new()
///     .pass_fd(listener.as_fd(), 3)?
///     .close_tracked_fds(&TABLE)
///     .close_other_fds();
/// let out = Command::new("ls").arg("/proc/self/fd").child_fds(fds).output()?;
/// // 0-2, the socket at 3, and the directory `ls` itself opened.
/// let listed = String::from_utf8_lossy(&out.stdout).into_owned();
/// assert_eq!(listed.lines().take(4).collect::<Vec<_>>(), ["0", "1", "2", "3"]);
/// # drop(secret);
/// # Ok::<(), std::io::Error>(())
/// ```
#[must_use = "a ChildFds does nothing until CommandExt::child_fds hands it to a command"]
#[derive(Default)]
pub struct ChildFds {
    passes: Passes,
    tables: Vec<&'static FdTable>,
    close_other: bool,
    /// `listen_fd` names, in order: the sockets are at 3, 4, ...
    listen: Vec<String>,
}

impl ChildFds {
    /// A setup that does nothing yet: the program would inherit what
    /// `spawn` gives it anyway (stdio, and every descriptor of ours that is
    /// not close-on-exec).
    ///
    /// Async-signal-safe (no allocation; the calls below allocate).
    pub fn new() -> ChildFds {
        ChildFds::default()
    }

    /// The program gets a descriptor for `fd`'s open file at number
    /// `child_fd`, not close-on-exec, whatever number `fd` has here.
    ///
    /// `fd` is duplicated now (close-on-exec; see [What the value
    /// owns](ChildFds#what-the-value-owns)), so `fd` itself may be closed
    /// right after this call. When `child_fd` is free here, the duplicate
    /// is made *at* `child_fd`, which keeps the number reserved: std's
    /// exec-error channel, created at `spawn` at the lowest free numbers,
    /// can then never land there. When it is not (another descriptor holds
    /// it, another value's duplicate among them: values share nothing), the
    /// duplicate is made elsewhere and the number is reserved when the
    /// value is handed to a command, if it is free by then. A number
    /// vacated after that may receive std's channel at the spawn, which
    /// then fails with `EBUSY` rather than overwrite it (see [Errors at
    /// spawn](CommandExt#errors-at-spawn)). In the child, all mappings are placed
    /// together, collision-safe (a descriptor at another mapping's number,
    /// cycles such as 3 -> 4 and 4 -> 3), with no allocation; whatever else
    /// the child has at `child_fd` (a descriptor inherited from here, or
    /// one std opened there at the spawn) is replaced, in the child only.
    ///
    /// `child_fd` 0-2 replaces that stdio stream after std set it up from
    /// [`Command::stdin`](std::process::Command::stdin)/`stdout`/`stderr`:
    /// the `Stdio` you chose for that stream is opened and then overwritten,
    /// so with `Stdio::piped()` there your end of the pipe sees end-of-file.
    /// Leave that stream at its default (or `Stdio::null()`).
    ///
    /// The file status flags come along: they belong to the open file, not
    /// to the number. A descriptor of an async runtime's value (a tokio
    /// socket or pipe, set `O_NONBLOCK` by tokio) arrives non-blocking, and
    /// a program that expects blocking I/O on it gets `EAGAIN`. Pass a
    /// descriptor of its own instead (a std socket pair, a `std::io::pipe`).
    ///
    /// A tracked descriptor kept at its own number in the child is
    /// `pass_fd(fd, fd.as_raw_fd())`.
    ///
    /// Work: `O(log n)` in the number of mappings, and three or four
    /// syscalls (`fstat`, `fcntl(F_DUPFD_CLOEXEC)`, the `fcntl` of
    /// [`FdTable::track`]). Not async-signal-safe (allocates).
    ///
    /// # Errors
    /// Each names `pass_fd`, `fd` and `child_fd`; the value is dropped (its
    /// duplicates released):
    /// - `InvalidInput` when `child_fd` is negative, not below the soft
    ///   `RLIMIT_NOFILE`, or already the target of another `pass_fd` of this
    ///   value, or when `fd` is not open;
    /// - the OS error's kind when no duplicate can be made (`EMFILE` at the
    ///   descriptor limit) or [`FdTable::global`] refuses to track it.
    ///
    /// Errors that can only show at `spawn` are under [Errors at
    /// spawn](CommandExt#errors-at-spawn).
    ///
    /// # Examples
    /// ```
    /// use fdtable::{ChildFds, CommandExt};
    /// use std::io::Read;
    /// use std::os::fd::AsFd;
    /// use std::process::{Command, Stdio};
    ///
    /// // A pipe end at descriptor 5 of the child; the shell writes into it.
    /// let (mut reader, writer) = std::io::pipe()?;
    /// let fds = ChildFds::new().pass_fd(writer.as_fd(), 5)?;
    /// drop(writer); // the value holds its own duplicate
    /// let mut child = Command::new("sh")
    ///     .args(["-c", "echo hello >&5"])
    ///     .child_fds(fds)
    ///     .stdout(Stdio::null())
    ///     .spawn()?;
    /// child.wait()?;
    /// let mut got = String::new();
    /// reader.read_to_string(&mut got)?; // end-of-file: the command is gone
    /// # drop(child);
    /// assert_eq!(got, "hello\n");
    ///
    /// // The same child number twice is refused, naming both.
    /// let err = ChildFds::new()
    ///     .pass_fd(reader.as_fd(), 7)?
    ///     .pass_fd(reader.as_fd(), 7)
    ///     .unwrap_err();
    /// assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    /// assert!(err.to_string().contains("child_fd 7"), "{err}");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn pass_fd(mut self, fd: BorrowedFd<'_>, child_fd: RawFd) -> io::Result<ChildFds> {
        self.passes.add(fd, child_fd)?;
        Ok(self)
    }

    /// No descriptor `table` holds reaches the program, even one whose
    /// `FD_CLOEXEC` flag was cleared behind the table's back: the child
    /// closes every number the table holds (runs of numbers with one
    /// `close_range(2)`), except 0-2 (std has made them the program's stdio
    /// by then) and the [`pass_fd`](ChildFds::pass_fd) targets.
    ///
    /// Any number of tables; a table named twice counts once. This is the
    /// hook's version of [`CommandExt::close_tracked_fds`], which installs no
    /// hook and relies on `FD_CLOEXEC`.
    ///
    /// Not async-signal-safe (may allocate).
    ///
    /// # Examples
    /// ```
    /// use fdtable::{ChildFds, CommandExt, FdTable};
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
    ///     .child_fds(fdtable::ChildFds::new().close_tracked_fds(&TABLE))
    ///     .status()?;
    /// assert!(status.success(), "the shell inherited descriptor {fd}");
    /// # drop(log);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn close_tracked_fds(mut self, table: &'static FdTable) -> ChildFds {
        if !self.tables.iter().any(|t| std::ptr::eq(*t, table)) {
            self.tables.push(table);
        }
        self
    }

    /// The program starts with descriptors 0-2 and the
    /// [`pass_fd`](ChildFds::pass_fd) ones only: everything else is marked
    /// close-on-exec in the child, tracked or not, inherited from this
    /// process's parent or opened without `O_CLOEXEC` by some library.
    ///
    /// Marking instead of closing keeps `spawn`'s error reporting: std's
    /// exec-error channel stays open until `execve`, so a missing program
    /// still fails with `NotFound`. In the child: one `close_range(first,
    /// last, CLOSE_RANGE_CLOEXEC)` per gap between kept numbers (Linux
    /// 5.11+, FreeBSD 13.1+); where that is refused (older kernels, seccomp)
    /// or missing, an `fcntl` on every open number, found without
    /// allocating:
    /// - Linux: listed from `/proc/self/fd` with `getdents64`; where that
    ///   cannot be read, every number below the soft `RLIMIT_NOFILE`.
    /// - macOS: the descriptor table's size from `proc_pidinfo` (every open
    ///   number is below it), and the open numbers listed from it when the
    ///   table is small; otherwise every number below that size.
    /// - FreeBSD: numbers from 0 up until as many open ones were seen as the
    ///   kernel counts (`kern.proc.nfds`). NetBSD: every number up to the
    ///   highest open one (`F_MAXFD`).
    /// - Elsewhere (and when those calls are refused): every number below
    ///   `getdtablesize()` on the BSDs and macOS (finite even with an
    ///   unlimited soft limit), below the soft `RLIMIT_NOFILE` on illumos
    ///   and other systems (2^20 when it is unlimited).
    ///
    /// A descriptor at or above a sweep's bound (opened before the limit was
    /// lowered) is then missed. Only Linux runs this in CI; the other ways
    /// are type-checked (see `docs/platforms.md`).
    ///
    /// Async-signal-safe (sets a flag).
    ///
    /// # Examples
    /// ```
    /// use fdtable::{ChildFds, CommandExt};
    /// use std::os::fd::AsRawFd;
    /// use std::process::Command;
    ///
    /// // Inheritable on purpose, as a careless library might leave one.
    /// let leaky = std::fs::File::open("/dev/null")?;
    /// // SAFETY: F_SETFD on a descriptor we own.
    /// assert_eq!(unsafe { libc::fcntl(leaky.as_raw_fd(), libc::F_SETFD, 0) }, 0);
    ///
    /// let out = Command::new("ls")
    ///     .arg("/proc/self/fd")
    ///     .child_fds(ChildFds::new().close_other_fds())
    ///     .output()?;
    /// let listed = String::from_utf8_lossy(&out.stdout).into_owned();
    /// // 0-2 and the directory `ls` opened itself; not `leaky`.
    /// assert_eq!(listed.lines().count(), 4, "{listed}");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn close_other_fds(mut self) -> ChildFds {
        self.close_other = true;
        self
    }

    /// Socket activation, as systemd does it (`sd_listen_fds(3)`): the
    /// program gets `fd` at the next number from 3 up (3 for the first
    /// call, 4 for the second, ...), and `LISTEN_FDS` (how many),
    /// `LISTEN_FDNAMES` (the names, `:`-separated) and `LISTEN_PID` (the
    /// program's own pid, which `sd_listen_fds` checks) in its environment.
    /// No Rust crate and no `pre_exec` hook could set `LISTEN_PID` so far:
    /// the pid exists only in the child, and std makes the child's
    /// environment after the hooks ran.
    ///
    /// So the hook execs the program itself, with everything prepared when
    /// the command gets the value ([`CommandExt::child_fds`]); in the child
    /// it only writes the pid's digits into a reserved entry and calls
    /// `execvp(3)`, allocating nothing. A missing program is still
    /// reported by `spawn` (`NotFound`). What that changes:
    /// - the program's environment is the command's as of `child_fds`:
    ///   this process's, with the command's `env` and `env_remove` applied
    ///   (any inherited `LISTEN_*` variables replaced). `env_clear` cannot
    ///   be seen on stable Rust: do not combine it with `listen_fd` (the
    ///   program would get this process's environment);
    /// - `argv[0]` is the program name (an `arg0` override cannot be seen);
    /// - `pre_exec` hooks registered after `child_fds` never run.
    ///
    /// Combine with [`close_other_fds`](ChildFds::close_other_fds) so the
    /// program gets its sockets and nothing else. `pass_fd` targets must
    /// not be the numbers `listen_fd` takes.
    ///
    /// Not async-signal-safe (allocates).
    ///
    /// # Errors
    /// `InvalidInput` for a `name` that `sd_listen_fds` would not accept
    /// (empty, over 255 bytes, not printable ASCII, or with `:`); otherwise
    /// as [`pass_fd`](ChildFds::pass_fd), named `listen_fd`.
    ///
    /// # Examples
    /// ```
    /// use fdtable::{ChildFds, CommandExt};
    /// use std::os::fd::AsFd;
    /// use std::process::Command;
    ///
    /// let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    /// let fds = ChildFds::new()
    ///     .listen_fd(listener.as_fd(), "http")?
    ///     .close_other_fds();
    /// // What a socket-activated daemon checks first.
    /// let check = r#"test "$LISTEN_PID" = $$ && test "$LISTEN_FDS" = 1 \
    ///     && test "$LISTEN_FDNAMES" = http && test -S /proc/self/fd/3"#;
    /// let status = Command::new("sh").args(["-c", check]).child_fds(fds).status()?;
    /// assert!(status.success());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn listen_fd(mut self, fd: BorrowedFd<'_>, name: &str) -> io::Result<ChildFds> {
        let target = 3 + RawFd::try_from(self.listen.len()).unwrap_or(RawFd::MAX - 3);
        if let Err(why) = activation::check_name(name) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "listen_fd(fd {}, {name:?}): the name {why} (sd_listen_fds)",
                    std::os::fd::AsRawFd::as_raw_fd(&fd)
                ),
            ));
        }
        self.passes.add_as("listen_fd", fd, target)?;
        self.listen.push(name.to_owned());
        Ok(self)
    }

    /// Whether the value asks for nothing, so it needs no hook.
    fn is_empty(&self) -> bool {
        self.passes.len() == 0 && self.tables.is_empty() && !self.close_other
    }

    /// Freeze into what the hook reads; `None` when nothing needs a hook.
    /// Asks the kernel about `close_range` here, in the parent, so every
    /// child inherits the answer instead of probing on its own.
    ///
    /// Not async-signal-safe (parent only).
    pub(super) fn into_plan(self, cmd: &Command) -> Option<Plan> {
        if self.is_empty() {
            return None;
        }
        // Only a NUL byte in the program or an argument fails here, and
        // std refuses such a spawn before any hook runs.
        let exec = (!self.listen.is_empty()).then(|| Exec::capture(cmd, &self.listen).ok());
        if !self.tables.is_empty() {
            let _ = close_range_usable();
        }
        if self.close_other {
            let _ = cloexec_range_usable();
        }
        let mut passes = self.passes;
        passes.reserve_free_targets();
        let mut passes = passes.into_sorted();
        // The child tells std's channel at a target apart from what held
        // the target now.
        super::pass::record_occupants(&mut passes);
        let targets = passes.iter().map(|p| p.target).collect();
        Some(Plan {
            passes,
            targets,
            tables: self.tables,
            close_other: self.close_other,
            configured_in: sys::getpid(),
            is_child_fds: true,
            exec,
        })
    }
}

impl fmt::Debug for ChildFds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChildFds")
            .field("passes", &self.passes)
            .field("close_tracked_fds", &self.tables.len())
            .field("close_other_fds", &self.close_other)
            .field("listen_fds", &self.listen)
            .finish()
    }
}
