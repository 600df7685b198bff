//! The fork/exec path: closing tracked descriptors in a child without a lock
//! or an allocation.
//!
//! After `fork(2)` in a threaded program only the forking thread exists in
//! the child. Any lock another thread held at that instant stays held for
//! good, and `malloc` may be one of them. So between `fork` and `execve` the
//! child may only make async-signal-safe calls (`signal-safety(7)`). This
//! module is the part of the crate that runs there:
//!
//! - [`FdTable::close_all_in_child`] closes every number the table holds,
//!   reading the slot array with plain atomic loads and coalescing runs of
//!   consecutive numbers into one `close_range(2)` call.
//! - [`CommandExt`] installs that as a `pre_exec` hook on
//!   [`std::process::Command`], in Go's order: block signals, put the signals
//!   this crate handles back to their default disposition, close, restore the
//!   mask. The new program never starts with signals blocked by us nor with
//!   our handlers.
//! - [`FdTable::retire_all_in_child`] is for children that do *not* exec
//!   (prefork workers, daemons): it releases the files but keeps the numbers
//!   reserved, so the handles the child inherited stay safe to drop.
//!
//! # Why the child can trust the table
//! The table publishes a number only after it is open and close-on-exec, and
//! unpublishes it before `close(2)` (`DESIGN.md` §4.1). A fork can happen at
//! any instant, but at every instant "published" implies "open and owned by
//! the table". So the child never closes a number it does not own: not
//! stdio, not the caller's other descriptors, and not the close-on-exec pipe
//! std uses to report a failed `execve` back to the parent (closing that one
//! would make `spawn` of a missing program return `Ok`).
//!
//! # Examples
//! ```
//! use fdtable::{CommandExt, FdTable};
//! use std::process::Command;
//!
//! static TABLE: FdTable = FdTable::new();
//! let secret = TABLE.track(std::fs::File::open("/dev/null")?)?;
//!
//! let status = Command::new("true").close_tracked_fds(&TABLE).status()?;
//! assert!(status.success());
//! # drop(secret);
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! # Limitations
//! - `close_range(2)` is used on Linux only; other systems close one number
//!   at a time.
//! - The hook skips descriptors 0-2 (see [`CommandExt`]); call
//!   [`FdTable::close_all_in_child`] yourself for a child that must not keep
//!   tracked stdio.
//!
//! # Internal details
//! Whether `close_range` works is asked once, in the parent, when a hook is
//! installed (a probe that cannot close anything), and cached in an atomic
//! that children inherit. A child that is then refused (`ENOSYS`, `EPERM`)
//! records it in its own copy and falls back to `close(2)`.
//!
//! `fork(2)` does not copy a threaded process atomically: Linux copies the
//! descriptor table first and the memory afterwards, page by page, while the
//! other threads keep running. So a child may see a number published that
//! another thread opened after the descriptor table was copied (the child
//! never had it: closing it is a harmless `EBADF`), or miss one that was
//! unpublished and closed meanwhile (it stays open in the child, with
//! `FD_CLOEXEC` unless someone cleared it). What the child can never do is
//! close a number its forking thread owns, such as std's exec-error pipe:
//! that thread is inside `fork` for the whole window and keeps the number
//! open, so no other thread can publish it.

use std::io;
use std::os::fd::RawFd;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use crate::interrupts::HANDLED_SIGNALS;
use crate::mask::MaskGuard;
use crate::sys;
use crate::table::FdTable;

/// `close_range(2)` not asked about yet.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
const UNKNOWN: u8 = 0;
/// The kernel has `close_range(2)` and lets us call it.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
const AVAILABLE: u8 = 1;
/// `ENOSYS` or `EPERM`: use `close(2)`.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
const UNAVAILABLE: u8 = 2;

/// What this process knows about `close_range(2)`.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
static CLOSE_RANGE: AtomicU8 = AtomicU8::new(UNKNOWN);
/// Test switch: never use `close_range(2)`.
static FORCE_FALLBACK: AtomicBool = AtomicBool::new(false);

/// Make the child path close one number at a time with `close(2)` instead of
/// using `close_range(2)` (`true`), or go back to the default (`false`).
///
/// For tests and benchmarks that check the fallback gives the same results;
/// not part of the stable API. Process-wide; a child inherits the setting in
/// force when it was forked. Async-signal-safe (one atomic store).
#[doc(hidden)]
pub fn force_close_fallback(on: bool) {
    FORCE_FALLBACK.store(on, Ordering::Relaxed);
}

/// Whether `close_range(2)` may be tried. Asks the kernel once (a probe that
/// closes nothing) and caches the answer. Async-signal-safe.
fn close_range_usable() -> bool {
    if FORCE_FALLBACK.load(Ordering::Relaxed) {
        return false;
    }
    #[cfg(target_os = "linux")]
    {
        match CLOSE_RANGE.load(Ordering::Relaxed) {
            AVAILABLE => true,
            UNAVAILABLE => false,
            _ => {
                let ok = sys::close_range_supported();
                let state = if ok { AVAILABLE } else { UNAVAILABLE };
                CLOSE_RANGE.store(state, Ordering::Relaxed);
                ok
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        false
    }
}

/// Close the numbers `first..=last`, all held by the table; return how many
/// that is (`last - first + 1`). One `close_range(2)` when there is more than
/// one number and the kernel allows it, else `close(2)` on each, never
/// retried (on Linux the number is released even when `close` reports
/// `EINTR` or `EIO`). Async-signal-safe.
fn close_run(first: RawFd, last: RawFd) -> usize {
    debug_assert!(first <= last);
    let count = (last - first) as usize + 1;
    #[cfg(target_os = "linux")]
    if first < last && close_range_usable() {
        match sys::close_range(first, last) {
            // With flags == 0 the kernel closes all of the range or nothing.
            Ok(()) => return count,
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOSYS | libc::EPERM)) => {
                CLOSE_RANGE.store(UNAVAILABLE, Ordering::Relaxed);
            }
            // Nothing was closed; `close(2)` below does the work.
            Err(_) => {}
        }
    }
    for fd in first..=last {
        // EBADF only for a number published after the kernel copied the
        // descriptor table at fork (see the module's internal details).
        let _ = sys::close(fd);
    }
    count
}

/// Walk the published numbers (atomic loads only, ascending), skip those for
/// which `keep` says so (after calling `on_kept` on each published one), and
/// close the rest, coalescing consecutive numbers into one run. Returns how
/// many were closed. Async-signal-safe when `keep` and `on_kept` are.
fn close_published(
    table: &FdTable,
    mut keep: impl FnMut(RawFd) -> bool,
    mut on_kept: impl FnMut(RawFd),
) -> usize {
    let mut closed = 0;
    let mut run: Option<(RawFd, RawFd)> = None;
    table.for_each_published(|fd| {
        if keep(fd) {
            on_kept(fd);
            if let Some((first, last)) = run.take() {
                closed += close_run(first, last);
            }
            return;
        }
        run = match run {
            Some((first, last)) if last + 1 == fd => Some((first, fd)),
            Some((first, last)) => {
                closed += close_run(first, last);
                Some((fd, fd))
            }
            None => Some((fd, fd)),
        };
    });
    if let Some((first, last)) = run {
        closed += close_run(first, last);
    }
    closed
}

/// Put every signal this crate has a handler for back to `SIG_DFL`.
/// Async-signal-safe: one atomic load and at most 64 `sigaction(2)` calls.
fn reset_handled_signals() {
    let handled = HANDLED_SIGNALS.load(Ordering::Acquire);
    for bit in 0..64 {
        if handled & (1 << bit) != 0 {
            // EINVAL for a number the kernel does not know: nothing to undo.
            let _ = sys::set_default_disposition(bit + 1);
        }
    }
}

impl FdTable {
    /// Close every number the table holds, in the child of a `fork(2)`.
    /// Returns how many numbers that was.
    ///
    /// Async-signal-safe, lock-free and allocation-free: it reads the slot
    /// array with atomic loads only, takes the signal mask once for the
    /// whole walk ([`MaskGuard`]), and closes each run of consecutive numbers
    /// with one `close_range(2)` (Linux 5.9+), or with `close(2)` per number
    /// where the kernel says `ENOSYS` or `EPERM` (the answer is cached).
    ///
    /// Closes every *published* number: live entries, entries whose close
    /// was deferred behind a `for_each` visit, and entries retired by
    /// [`close_all`](FdTable::close_all) (those hold a placeholder). It
    /// closes nothing the table does not own: stdio is closed only if it was
    /// tracked, and descriptors created by std for `spawn` (the exec-error
    /// pipe) never are.
    ///
    /// The table itself is not changed: entries stay published and the
    /// `Tracked` handles the child inherited still name the closed numbers.
    /// So after this call the child must not drop or use those handles; it
    /// should `execve` or `_exit`. A child that goes on running Rust code
    /// wants [`retire_all_in_child`](FdTable::retire_all_in_child) instead.
    ///
    /// # Safety
    /// Call it only in a child process between `fork` (or a `clone` without
    /// `CLONE_VM`) and `execve`/`_exit`, e.g. from a
    /// [`pre_exec`](std::os::unix::process::CommandExt::pre_exec) hook or
    /// right after `libc::fork()` returned 0. The caller must guarantee that nothing
    /// in the child uses a descriptor of this table afterwards: no handle is
    /// dropped, read or written (its number is closed and may be reused by
    /// the next `open`), and no `for_each` or `close_all` runs on it. Called
    /// in a process that goes on using the table, it would close numbers
    /// under their owners (an I/O-safety violation).
    ///
    /// In a `pre_exec` hook, descriptors 0-2 are already the new program's
    /// stdio; if the table tracked those numbers in the parent, this closes
    /// them. [`CommandExt`] skips 0-2 for that reason.
    ///
    /// # Examples
    /// ```
    /// use fdtable::FdTable;
    /// static TABLE: FdTable = FdTable::new();
    /// let file = TABLE.track(std::fs::File::open("/dev/null")?)?;
    ///
    /// // SAFETY: fork in a test: the child only makes async-signal-safe
    /// // calls and leaves with `_exit`.
    /// match unsafe { libc::fork() } {
    ///     0 => {
    ///         // SAFETY: we are the fork child and never touch `file` again.
    ///         let closed = unsafe { TABLE.close_all_in_child() };
    ///         let code = if closed == 1 { 0 } else { 1 };
    ///         // SAFETY: `_exit` is async-signal-safe and ends the child.
    ///         unsafe { libc::_exit(code) }
    ///     }
    ///     -1 => return Err(std::io::Error::last_os_error()),
    ///     pid => {
    ///         let mut status = 0;
    ///         // SAFETY: `pid` is our child; `status` is a valid out pointer.
    ///         unsafe { libc::waitpid(pid, &mut status, 0) };
    ///         assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
    ///     }
    /// }
    /// drop(file); // the parent's copy is untouched
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # References
    /// `fork(2)`, `signal-safety(7)`, `close_range(2)`, `close(2)`
    pub unsafe fn close_all_in_child(&self) -> usize {
        let _mask = MaskGuard::new();
        close_published(self, |_| false, |_| {})
    }

    /// Release every file the table holds in a `fork(2)` child that does
    /// **not** exec (a prefork worker, a daemonised child), except the numbers
    /// in `keep`. Returns how many numbers were released.
    ///
    /// Like [`close_all`](FdTable::close_all), but async-signal-safe: each
    /// published number not in `keep` gets a dead placeholder `dup3`-ed over
    /// it (on Linux an `O_PATH` descriptor, so I/O on it fails with
    /// `EBADF`). The child's reference to the parent's file is dropped at
    /// once (a pipe's writer count falls, a listening socket is no longer
    /// held by the worker) while the number stays reserved, so the `Tracked`
    /// handles the child inherited can still be dropped safely: each then
    /// closes its placeholder, never a file the child opened later.
    /// Entries stay live in the child's copy of the table (I/O on them fails).
    ///
    /// In Go's order, like the [`CommandExt`] hook: signals blocked once,
    /// every signal this crate handles put back to `SIG_DFL` (the parent's
    /// handlers ignore a child, so a Ctrl-C would otherwise be lost on it),
    /// files released, the mask restored.
    ///
    /// Async-signal-safe, allocation-free, no lock. Fails only if the
    /// placeholder cannot be opened (`EMFILE`, say); then nothing was
    /// released and the signal dispositions are already reset.
    ///
    /// # Safety
    /// Call it only in a child process right after `fork` (before any other
    /// thread is started in it). Until it returns, nothing else in the child
    /// may use the table. Afterwards the handles are safe to drop, but I/O
    /// through any of them except those kept fails.
    ///
    /// # Limitations
    /// An entry that was being closed at fork time behind a walk on another
    /// parent thread (state "closing") is released here too, but its number
    /// stays reserved by the placeholder for the child's whole life: the
    /// walk whose end would free it does not exist in the child.
    ///
    /// # Examples
    /// A prefork worker keeps the listening socket and lets go of the rest:
    /// ```
    /// use fdtable::FdTable;
    /// use std::os::fd::AsRawFd;
    /// static TABLE: FdTable = FdTable::new();
    ///
    /// let listener = TABLE.track(std::net::TcpListener::bind("127.0.0.1:0")?)?;
    /// let journal = TABLE.track(std::fs::File::open("/dev/null")?)?;
    ///
    /// // SAFETY: the child makes only async-signal-safe calls until `_exit`.
    /// match unsafe { libc::fork() } {
    ///     0 => {
    ///         // SAFETY: we are the fork child; nothing else uses TABLE here.
    ///         let released = unsafe { TABLE.retire_all_in_child(&[listener.as_raw_fd()]) };
    ///         let ok = released.ok() == Some(1)
    ///             && listener.local_addr().is_ok() // still ours
    ///             && std::io::Read::read(&mut &*journal, &mut [0u8; 1]).is_err();
    ///         // Dropping `journal` here would be fine: it closes the placeholder.
    ///         // SAFETY: `_exit` is async-signal-safe and ends the child.
    ///         unsafe { libc::_exit(if ok { 0 } else { 1 }) }
    ///     }
    ///     -1 => return Err(std::io::Error::last_os_error()),
    ///     pid => {
    ///         let mut status = 0;
    ///         // SAFETY: `pid` is our child; `status` is a valid out pointer.
    ///         unsafe { libc::waitpid(pid, &mut status, 0) };
    ///         assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
    ///     }
    /// }
    /// # drop((listener, journal));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # References
    /// `fork(2)`, `signal-safety(7)`, `dup3(2)`, `sigaction(2)`
    pub unsafe fn retire_all_in_child(&self, keep: &[RawFd]) -> io::Result<usize> {
        let _mask = MaskGuard::new();
        reset_handled_signals();
        let placeholder = sys::open_placeholder()?;
        let placeholder = std::os::fd::AsRawFd::as_raw_fd(&placeholder);
        let mut released = 0;
        self.for_each_published(|fd| {
            if !keep.contains(&fd) && sys::replace_with_placeholder(placeholder, fd).is_ok() {
                released += 1;
            }
        });
        // The placeholder's own number is closed when the `OwnedFd` drops
        // here, still under the mask.
        Ok(released)
    }
}

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

    #[test]
    #[cfg(target_os = "linux")]
    fn close_range_probe_closes_nothing_and_agrees_with_the_kernel() {
        use std::os::fd::{AsRawFd, IntoRawFd};
        let (r, w) = std::os::unix::net::UnixStream::pair().unwrap();
        let supported = sys::close_range_supported();
        assert!(sys::is_open(r.as_raw_fd()), "the probe closed something");
        assert!(sys::is_open(w.as_raw_fd()), "the probe closed something");
        // Ask the kernel for real, on a scratch descriptor of our own.
        let scratch = std::fs::File::open("/dev/null").unwrap().into_raw_fd();
        match sys::close_range(scratch, scratch) {
            Ok(()) => {
                assert!(supported, "close_range works but the probe said no");
                assert!(!sys::is_open(scratch));
            }
            Err(e) => {
                assert!(!supported, "the probe said yes but close_range failed: {e}");
                eprintln!("close_range unavailable here ({e}); the fallback is in use");
                sys::close(scratch).unwrap();
            }
        }
    }
}
