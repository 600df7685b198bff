//! [`CommandExt`]: a [`ChildFds`] handed to a command, in one `pre_exec`
//! hook, or no hook at all when none is needed.

use std::process::Command;

use super::child_fds::ChildFds;
use super::run::{install, Plan};
use crate::mask::MaskGuard;
use crate::table::FdTable;

/// Child setup for [`std::process::Command`]: a [`ChildFds`] carried out in
/// the child, or, hook-free, the promise that a table's descriptors stay
/// behind.
///
/// std has a trait of the same name
/// ([`std::os::unix::process::CommandExt`]); import this one without its
/// name to use both:
///
/// ```
/// use std::os::unix::process::CommandExt; // std's: pre_exec, uid, exec, ...
/// use fdtable::CommandExt as _;           // ours: child_fds, close_tracked_fds
/// ```
///
/// Implemented for [`Command`] and, with the `tokio` feature, for
/// `tokio::process::Command` (which spawns through the std `Command` inside
/// it, so everything below applies to it unchanged); sealed.
///
/// # Examples
/// ```
/// use fdtable::{ChildFds, CommandExt, FdTable};
/// use std::os::fd::AsFd;
/// use std::process::Command;
///
/// static TABLE: FdTable = FdTable::new();
/// let private = TABLE.track(std::fs::File::open("/dev/null")?)?;
/// let (_reader, writer) = std::io::pipe()?;
///
/// // Hook-free (no fork): tracked descriptors are close-on-exec.
/// let status = Command::new("true").close_tracked_fds(&TABLE).status()?;
/// assert!(status.success());
///
/// // One value, one hook: the pipe at 3, nothing else.
/// let fds = ChildFds::new().pass_fd(writer.as_fd(), 3)?.close_other_fds();
/// let status = Command::new("sh")
///     .args(["-c", "test -e /proc/self/fd/3 && ! test -e /proc/self/fd/4"])
///     .child_fds(fds)
///     .status()?;
/// assert!(status.success());
/// # drop(private);
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// # When a hook is installed, and what it costs
/// Any `pre_exec` hook makes std create the child with `fork(2)` instead of
/// `posix_spawn(3)` (which is `clone(CLONE_VM | CLONE_VFORK)` in glibc), and
/// `fork` copies the parent's page tables: cheap for a small program, tens of
/// milliseconds per spawn instead of under one for a parent with 1 GiB
/// resident (see `benches/README.md`). So:
/// - [`child_fds`](CommandExt::child_fds) installs the hook, unless the
///   value asks for nothing;
/// - [`close_tracked_fds`](CommandExt::close_tracked_fds) installs none,
///   except while a [`MaskGuard`] is alive on the calling thread: then a
///   hook that only gives the program the signal mask from before the
///   guard, since std's children inherit the spawning thread's mask.
///   Configure commands outside guards, or give them the hook.
///
/// # What runs in the child
/// The hook runs between `fork` and `execve`, where only async-signal-safe
/// calls are allowed: it takes no lock and allocates nothing (everything it
/// reads was prepared in the parent). In Go's order:
///
/// 0. make sure this is a child that `spawn` created, else refuse and
///    change nothing (see [`Command::exec`](#commandexec));
/// 1. block asynchronous signals (one `pthread_sigmask`, the set a
///    [`MaskGuard`] blocks);
/// 2. put every signal this crate has handled (e.g. SIGINT for
///    [`Interrupts`](crate::Interrupts)) back to `SIG_DFL` where a handler
///    function is in place (`execve` would reset it anyway; one set to
///    `SIG_IGN` since stays ignored, as `execve` keeps it);
/// 3. place the [`pass_fd`](ChildFds::pass_fd) descriptors: first check
///    them all (refusing as described under [errors at
///    spawn](#errors-at-spawn)), then one `dup2` each, or, for a duplicate
///    already sitting at its number, clearing its `FD_CLOEXEC` (the
///    parent's copy keeps the flag);
/// 4. close every number each table given to
///    [`ChildFds::close_tracked_fds`] holds, as
///    [`FdTable::close_all_in_child`] does (runs of numbers with one
///    `close_range(2)`), except 0-2 and the passed numbers;
/// 5. with [`ChildFds::close_other_fds`], mark every other descriptor
///    close-on-exec;
/// 6. restore a mask: the one from before this thread's outermost
///    [`MaskGuard`] when the command is spawned under a guard, else exactly
///    the mask found in step 1.
///
/// Descriptors 0-2 are never closed by the hook: std has already made them
/// the new program's stdio (inherited, or `dup2`-ed from the `Stdio` you
/// chose) by the time `pre_exec` hooks run, so those numbers no longer belong
/// to the table in the child.
///
/// # Errors at spawn
/// A hook's error reaches `spawn` as a bare OS error: std sends the child's
/// `errno` through its exec-error channel and nothing else survives. So
/// what can be checked in the parent is checked when the value is built
/// ([`ChildFds::pass_fd`]'s errors name `pass_fd` and the numbers), and
/// what can only be seen in the child has its own errno:
///
/// | `spawn` error ([`raw_os_error`](std::io::Error::raw_os_error)) | `ErrorKind` | what happened |
/// |---|---|---|
/// | `ECANCELED` "Operation canceled" | uncategorized | a `pass_fd` duplicate was released by `FdTable::global().close_all()` (the Ctrl-C path): the program is shutting down |
/// | `EBADF` "Bad file descriptor" | uncategorized | a `pass_fd` duplicate no longer names the passed file: other code closed or replaced its number behind the value's back (an I/O-safety bug there) |
/// | `EBUSY` "Device or resource busy" | `ResourceBusy` | std's exec-error channel sits at a `pass_fd` target, which must not be overwritten (a missing program would look like a successful spawn). Only a target that another descriptor held when `pass_fd` was called (so it could not be reserved) and that was closed before the spawn: keep such a descriptor open until the spawn, or pass to a number that is free. Also a 0-2 target while this process has that stdio stream closed and the command inherits it. Conservative: a close-on-exec `SOCK_SEQPACKET` socket pair end (elsewhere: pipe) that this process made after `child_fds` and left at the target looks like the channel too. |
/// | `EEXIST` "File exists" | `AlreadyExists` | a second `child_fds` on the same command: a command takes one [`ChildFds`] (see below) |
/// | `ENOSYS` "Function not implemented" | `Unsupported` | `Command::exec` outside the configuring process (see below) |
///
/// A command that keeps its value can be spawned any number of times; each
/// spawn checks again.
///
/// # One `ChildFds` per command
/// The value is the whole setup: build one with everything the child
/// needs. A second [`child_fds`](CommandExt::child_fds) on the same
/// command adds a second hook, which cannot know what the first placed
/// (nothing is looked up): its `close_other_fds` would mark the first
/// value's descriptors close-on-exec, its tracked close could close them.
/// So the second hook refuses in the child, and every spawn of that
/// command fails with `EEXIST` (`AlreadyExists`), loudly, instead of
/// giving the program less than either value promised. The mask-only hook
/// of a `close_tracked_fds` under a guard touches no descriptor and
/// combines with a `ChildFds`.
///
/// # `Command::exec`
/// std's [`exec`](std::os::unix::process::CommandExt::exec) runs `pre_exec`
/// hooks in the calling process, without a fork, and returns when `execve`
/// fails. The setup would then close tracked descriptors under their live
/// handles and overwrite descriptors of the running program. So the hook
/// acts only with proof that it runs in a child that `spawn` created:
/// std's exec-error channel, which `spawn` creates right before it forks
/// and `exec` never does. On Linux that is a close-on-exec `AF_UNIX`
/// `SOCK_SEQPACKET` socket whose peer credentials name the child's parent,
/// found with a walk of the open descriptors (usually a few: std creates
/// it at the lowest free numbers; numbers the crate's tables hold are
/// skipped without a syscall, and a `pass_fd` duplicate is checked before
/// the walk). Without it the hook refuses before it
/// changes anything of ours, and `exec` returns:
/// - in the process that configured the command: `Unsupported`, with a
///   message that says so;
/// - in any other process (a fork child of it calling `exec` on its copy):
///   `ENOSYS` (`Unsupported`), a bare errno: allocating a message could
///   deadlock there.
///
/// What std has already done by then, in the calling process: the
/// command's stdio (`dup2` onto 0-2), groups, user and group ids, working
/// directory and process group are applied, and SIGPIPE is back at its
/// default; the program goes on with those. Elsewhere than Linux the
/// channel is a pipe that names nobody, and only the configuring process
/// is told apart. Proof limits (Linux): a process that calls `exec` while
/// holding a `SOCK_SEQPACKET` socket pair made by its parent (a parent that
/// uses them itself, or the channel of a spawn running in the parent when
/// this process was forked from it) is taken for a spawn child.
///
/// A command without a hook (a hook-free `close_tracked_fds`) execs
/// normally: its tracked descriptors are close-on-exec.
///
/// # Hook order
/// std runs `pre_exec` hooks in the order they were registered, after it has
/// set up stdio. A hook of your own that `dup2`s descriptors onto fixed
/// numbers must run *after* ours, or the tracked close (step 4) closes what
/// it placed on a tracked number and `close_other_fds` (step 5) marks it
/// close-on-exec: register it after `child_fds`. Better, use
/// [`ChildFds::pass_fd`], which places descriptors inside the hook,
/// collision-safe. A hook of yours that only needs to run before ours (a
/// seccomp filter, `setrlimit`) can be registered first.
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
/// such as std's exec-error channel, the passed descriptors, or stdio.
///
/// # References
/// `fork(2)`, `execve(2)` ("file descriptors marked close-on-exec are
/// closed"), `signal-safety(7)`, `close_range(2)`, `dup2(2)`, `posix_spawn(3)`,
/// `unix(7)` (`SO_PEERCRED`), and
/// [`std::os::unix::process::CommandExt::pre_exec`].
pub trait CommandExt: sealed::Sealed {
    /// Carry out `fds` in the child of every spawn of this command: the one
    /// `pre_exec` hook (none when `fds` asks for nothing). The command owns
    /// the value from now on, its duplicates included, until it is dropped.
    ///
    /// A command takes one value: see [One `ChildFds` per
    /// command](CommandExt#one-childfds-per-command).
    ///
    /// Not async-signal-safe (parent only); the hook is, and allocates
    /// nothing.
    ///
    /// # Examples
    /// ```
    /// use fdtable::{ChildFds, CommandExt};
    /// use std::os::fd::{AsFd, AsRawFd};
    /// use std::process::Command;
    ///
    /// // A descriptor passed at the number it has here may be closed at once.
    /// let file = std::fs::File::open("/dev/null")?;
    /// let n = file.as_raw_fd();
    /// let fds = ChildFds::new().pass_fd(file.as_fd(), n)?;
    /// drop(file);
    /// let mut cmd = Command::new("sh");
    /// cmd.args(["-c", &format!("test -e /proc/self/fd/{n}")]).child_fds(fds);
    /// // Spawned as often as you like: each child gets the same setup.
    /// for _ in 0..3 {
    ///     assert!(cmd.status()?.success());
    /// }
    /// # Ok::<(), std::io::Error>(())
    /// ```
    fn child_fds(&mut self, fds: ChildFds) -> &mut Self;

    /// No descriptor tracked by `table` reaches the new program, with no
    /// hook: [`FdTable::track`] sets `FD_CLOEXEC` on every descriptor it
    /// takes, so `execve` closes them, and `spawn` keeps its fast path
    /// (`posix_spawn`, no `fork`). The call does nothing per descriptor and
    /// nothing per spawn: `O(1)` work, whatever the table holds.
    ///
    /// What it cannot cover: a descriptor whose flag was cleared behind the
    /// table's back (a raw `fcntl(F_SETFD, 0)` on a tracked number). For
    /// that, give the command [`ChildFds::close_tracked_fds`] instead: the
    /// hook closes the table's numbers in the child whatever their flags.
    ///
    /// Under a [`MaskGuard`] it installs a hook that
    /// only restores the mask (see [When a hook is
    /// installed](CommandExt#when-a-hook-is-installed-and-what-it-costs)).
    /// This crate's signal handlers are not inherited either way (`execve`
    /// resets handlers; glibc's `posix_spawn` resets them before).
    ///
    /// Not async-signal-safe (parent only).
    ///
    /// # Examples
    /// ```
    /// use fdtable::{CommandExt, FdTable};
    /// use std::os::fd::AsRawFd;
    /// use std::process::Command;
    ///
    /// static TABLE: FdTable = FdTable::new();
    /// let private = TABLE.track(std::fs::File::open("/dev/null")?)?;
    /// let check = format!("test ! -e /proc/self/fd/{}", private.as_raw_fd());
    /// let status = Command::new("sh")
    ///     .args(["-c", &check])
    ///     .close_tracked_fds(&TABLE)
    ///     .status()?;
    /// assert!(status.success());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    fn close_tracked_fds(&mut self, table: &'static FdTable) -> &mut Self;
}

impl CommandExt for Command {
    fn child_fds(&mut self, fds: ChildFds) -> &mut Self {
        if let Some(plan) = fds.into_plan(self) {
            install(self, plan);
        } else if mask_needs_restoring() {
            install(self, Plan::mask_only());
        }
        self
    }

    fn close_tracked_fds(&mut self, table: &'static FdTable) -> &mut Self {
        // The promise rests on `track`'s `FD_CLOEXEC`: nothing to do with
        // the table here, by design (no per-descriptor work).
        let _ = table;
        if mask_needs_restoring() {
            install(self, Plan::mask_only());
        }
        self
    }
}

/// Whether a child spawned now would inherit a mask this crate set: the
/// calling thread is inside a [`MaskGuard`].
fn mask_needs_restoring() -> bool {
    MaskGuard::is_active()
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for std::process::Command {}
    #[cfg(feature = "tokio")]
    impl Sealed for tokio::process::Command {}
}
