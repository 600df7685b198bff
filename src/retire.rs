//! [`FdTable::close_all`]: release every live entry now while keeping its
//! number reserved, and [`CloseAllReport`], what it did.

use std::io;
use std::os::fd::RawFd;

use crate::pins::Settled;
use crate::placeholder;
use crate::sync::{fence, Ordering};
use crate::sys;
use crate::table::FdTable;
use crate::trackable::FdKind;
#[cfg(doc)]
use crate::{Trackable, Tracked};

impl FdTable {
    /// Release every live entry now, keeping the numbers reserved.
    ///
    /// Handles may still be in use on other threads, so their numbers cannot
    /// go back to the kernel yet (the next `open` would reuse them under a
    /// thread still writing to "its" file). Instead each live descriptor of
    /// a kind that allows it (see below) is atomically replaced by a dead
    /// placeholder (`dup3`): the descriptor's reference to its file is
    /// dropped at once and the number stays reserved; any later I/O through
    /// the handle fails with `EBADF` (reads see end-of-file instead where
    /// the placeholder is a pipe's read end: every system but Linux), and
    /// path lookups through it (`openat` and friends) fail with `ENOTDIR`.
    /// The placeholder copy is closed when the handle drops. Retired entries
    /// no longer count in [`len`](FdTable::len) but
    /// [`contains`](FdTable::contains) reports them until their handles drop.
    ///
    /// What that releases, exactly: the file is closed once its last
    /// reference goes. Other descriptors of it (a `try_clone`, a copy in a
    /// child process) keep it open, and so does a system call in progress on
    /// it: a thread blocked in `read` or `write` on a pipe, a FIFO or a
    /// [`ChildStdout`](std::process::ChildStdout) through the tracked handle
    /// is **not** woken by the swap, keeps the file alive until that call
    /// returns, and may still read or write data. So the reader of a tracked
    /// pipe write end sees end-of-file as soon as no other descriptor of that
    /// write end exists and no `write` on it is in progress. Sockets are
    /// different: `shutdown(SHUT_RDWR)` first ends the connection and wakes
    /// threads blocked in `read`, `write` or `accept` on them.
    ///
    /// What happens to each entry depends on its [`FdKind`] (the resource
    /// type's [`Trackable::KIND`]):
    /// - `NotSocket` (`File`, pipes, child stdio): the swap only;
    /// - `Socket` and `Unknown` (`OwnedFd`): `shutdown(SHUT_RDWR)` (which
    ///   fails at once and harmlessly on anything but a socket), then the
    ///   swap;
    /// - `RegisteredSocket`: `shutdown(SHUT_RDWR)` only; the number keeps
    ///   naming the same socket, as the async runtime it is registered with
    ///   requires. The entry counts as released (see [`FdKind`] for what that
    ///   means for a listening socket);
    /// - `RegisteredOther`: left live and open, and reported in
    ///   [`errors`](CloseAllReport::errors) (`ResourceBusy`).
    ///
    /// `shutdown(2)` acts on the socket, not on the descriptor: it also ends
    /// the connection for every other descriptor of the same socket, such as
    /// a `try_clone` or a copy a child process inherited (for example through
    /// [`ChildFds::pass_fd`](crate::ChildFds::pass_fd)). Take
    /// such sockets back with [`Tracked::into_inner`] first if they must
    /// survive.
    ///
    /// The placeholder is the process-wide one, opened no later than the
    /// first `track` (see [Resources](FdTable#resources)), so `close_all`
    /// needs no new descriptor and works when the process is at its
    /// `RLIMIT_NOFILE`. On Linux it is an `O_PATH` descriptor of a private
    /// pipe whose ends are closed: `fstat` (and `File::metadata`) on a
    /// retired handle succeed and describe that nameless pipe, and the few
    /// calls that work on an `O_PATH` descriptor (`fchownat` and `utimensat`
    /// with `AT_EMPTY_PATH`, reopening through `/proc/self/fd`) reach only
    /// that pipe, no inode shared with the rest of the system. Where `/proc/self/fd` could not
    /// be opened, it is the read end of such a pipe instead: reads through a
    /// retired handle then see end-of-file rather than `EBADF`. It is checked
    /// before each call (one `fstat`, one `fcntl`) and replaced, once, if
    /// code that does not own its number closed or replaced it.
    ///
    /// # Limits
    /// - `dup3` refuses a target at or above the soft `RLIMIT_NOFILE`. A
    ///   tracked number that high (the program lowered its limit after
    ///   opening it, to keep `select(2)` safe, say) cannot be released: its
    ///   socket is still shut down first (kinds `Socket` and `Unknown`), but
    ///   the entry stays live with its file, and the report names the number
    ///   and the limit. The limit is not raised behind the program's back.
    /// - Apple systems have no `dup3` (nor `F_DUP2FD_CLOEXEC`): the swap is
    ///   `dup2` and then `fcntl(F_SETFD)`. A `fork` + `exec` by another
    ///   thread between the two passes the *placeholder* (a dead pipe end)
    ///   to that program at the retired number; the retired file itself
    ///   never leaks (the `dup2` released it, and it was close-on-exec
    ///   before). Linux, the BSDs and illumos use `dup3`: no window.
    /// - No signal mask is held: every step leaves the number published and
    ///   open, so a handler sees the entry either live or retired. A release
    ///   can block in the kernel (the last close of a socket with `SO_LINGER`
    ///   and unsent data, of a file on NFS or FUSE, of a draining tty), and
    ///   signals stay deliverable meanwhile: a second Ctrl-C at its default
    ///   action ends even a single-threaded program stuck here at once.
    ///   (Closes that must run masked, [`Tracked::close`] and dropping a
    ///   handle, delay this thread's signals for as long as `close(2)`
    ///   blocks.)
    ///
    /// Entries being closed at that moment behind a walk are left to the
    /// walk. An entry a walk is visiting is retired too; the visited number
    /// then names the placeholder until the callback returns. While it
    /// releases an entry, `close_all` pins it like a walk:
    /// [`Tracked::try_into_inner`] on it is refused and
    /// [`Tracked::into_inner`] waits meanwhile. [`len`](FdTable::len) still
    /// counts the entries retired so far until `close_all` returns.
    ///
    /// # Threads that keep tracking, and why this does not seal
    /// An entry tracked after this call has passed its number is not
    /// released: a worker that opens and tracks a file just after the call
    /// keeps it. To stop that, [`seal`](FdTable::seal) the table first:
    /// `seal(); close_all()` releases every entry any `track` accepted.
    ///
    /// `close_all` does not seal by itself, because a seal is for good
    /// (there is no unseal) and `close_all` has uses that go on afterwards:
    /// a server that drops every connection on a reload and accepts new
    /// ones, a test harness that cleans up between cases, a library that
    /// empties its own table between jobs. A hidden seal would make every
    /// later `track` on the table fail, for the rest of the process; on
    /// [`FdTable::global`], shared with the libraries a program uses, that
    /// would break code that never called `close_all`. A fork child that
    /// goes on running has the same need: it releases what it inherited and
    /// tracks its own descriptors afterwards (see
    /// [`retire_all_in_child`](FdTable::retire_all_in_child)). So shutting
    /// down is the two explicit steps, and a cleanup that must not be
    /// outrun by late `track`s says so with `seal`.
    ///
    /// Not async-signal-safe (the report allocates for errors). In a fork
    /// child use [`close_all_in_child`](FdTable::close_all_in_child) or
    /// [`retire_all_in_child`](FdTable::retire_all_in_child).
    ///
    /// # Examples
    /// ```
    /// use fdtable::FdTable;
    /// use std::io::Read;
    /// static TABLE: FdTable = FdTable::new();
    ///
    /// let mut file = TABLE.track(std::fs::File::open("/dev/zero")?)?;
    /// let report = TABLE.close_all();
    /// assert_eq!(report.released(), 1);
    /// assert!(report.errors().is_empty());
    /// assert!(file.read(&mut [0u8; 8]).is_err()); // the handle is dead
    /// drop(file); // the number is handed back to the kernel here
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// The report is `#[must_use]`: it is where failures are.
    /// ```compile_fail
    /// #![deny(unused_must_use)]
    /// fdtable::FdTable::global().close_all(); // error: unused `CloseAllReport`
    /// ```
    pub fn close_all(&self) -> CloseAllReport {
        // Pairs with the fence `track` makes after publishing: every entry
        // tracked by a `track` that did not see a seal happening before this
        // call is visible to the walk below (the argument is in `seal`).
        fence(Ordering::SeqCst);
        let mut report = CloseAllReport {
            released: 0,
            errors: Vec::new(),
        };
        let mut retired = 0;
        // Checked, not trusted: see `placeholder.rs`. At `EMFILE` a missing
        // one cannot be replaced; then every entry that needs it reports why.
        let placeholder = placeholder::checked();
        // No signal mask: the number is published and open before and after
        // each retire (one `dup3`, one compare-and-swap), so a handler sees
        // no half-update; a close deferred behind our pin takes its own
        // guard in `unpin`. A batch mask would also hold back a second
        // Ctrl-C for as long as a release blocks in the kernel (the last
        // close of a lingering socket, an NFS file).
        for (base, slots) in self.chunks_in_use() {
            for (fd, slot) in (base..).zip(slots) {
                let Some(pin) = self.pin(slot, fd, None) else {
                    continue;
                };
                // The pin keeps the number ours while we release its file.
                let outcome = release(fd, pin.word.kind(), &placeholder);
                match self.retire_and_unpin(slot, fd, pin, outcome.is_ok()) {
                    Settled::Retired => {
                        report.released += 1;
                        retired += 1;
                    }
                    // Its handle closed it while we held it (a thread woken
                    // by the shutdown, say): released all the same.
                    Settled::ReleasedClosed => report.released += 1,
                    Settled::NotCounted => {}
                }
                if let Err(error) = outcome {
                    report.errors.push((fd, error));
                }
            }
        }
        // `len` counts the retired entries until here (documented on `len`):
        // one atomic operation per call instead of one per entry.
        self.count_retired_live(retired);
        report
    }
}

/// Release the file behind the live number `fd` of kind `kind`, keeping the
/// number reserved. Async-signal-safe except for the error values it builds.
#[inline]
fn release(fd: RawFd, kind: FdKind, placeholder: &io::Result<RawFd>) -> io::Result<()> {
    let swap = || match placeholder {
        Ok(p) => sys::replace_with_placeholder(*p, fd).map_err(|e| swap_failed(fd, kind, e)),
        Err(e) => Err(e
            .raw_os_error()
            .map_or_else(|| io::Error::from(e.kind()), io::Error::from_raw_os_error)),
    };
    match kind {
        FdKind::NotSocket => swap(),
        FdKind::RegisteredSocket => match sys::shutdown(fd) {
            // Nothing connected (a listener that never accepted, an
            // unconnected datagram socket): nothing left to end.
            Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => Ok(()),
            other => other,
        },
        FdKind::RegisteredOther => Err(io::Error::new(
            io::ErrorKind::ResourceBusy,
            format!(
                "fd {fd} is registered with an async runtime (FdKind::RegisteredOther), so \
                 close_all left it open: cancel the tasks that use it or drop its handle to \
                 release it"
            ),
        )),
        // `Unknown`, `Socket`: ENOTSOCK / ENOTCONN / EINVAL just mean there
        // is no connection to end.
        _ => {
            let _ = sys::shutdown(fd);
            swap()
        }
    }
}

/// Explain a failed swap. `dup3` refuses a target at or above the soft
/// `RLIMIT_NOFILE` with a bare `EBADF`, although the number is open: a
/// program that lowered its limit after opening descriptors (to keep
/// `select(2)` safe, say) gets a message naming the number and the limit,
/// with the OS error as its source. The limit is not raised behind the
/// program's back.
#[cold]
fn swap_failed(fd: RawFd, kind: FdKind, os: io::Error) -> io::Error {
    if os.raw_os_error() != Some(libc::EBADF) {
        return os;
    }
    match sys::soft_fd_limit() {
        Some(limit) if u64::try_from(fd).is_ok_and(|fd| fd >= limit) => io::Error::new(
            os.kind(),
            AboveLimit {
                fd,
                limit,
                shut_down: kind != FdKind::NotSocket,
                os,
            },
        ),
        _ => os,
    }
}

/// See [`swap_failed`].
#[derive(Debug)]
struct AboveLimit {
    fd: RawFd,
    limit: u64,
    shut_down: bool,
    os: io::Error,
}

impl std::fmt::Display for AboveLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let AboveLimit { fd, limit, .. } = self;
        write!(
            f,
            "fd {fd} is at or above the soft RLIMIT_NOFILE ({limit}), where dup3 cannot swap \
             the placeholder in: close_all left its file open and the entry live{} \
             (raise the soft limit above {fd}, or drop the handle, to release it)",
            if self.shut_down {
                ", after shutdown(2) if it is a socket"
            } else {
                ""
            }
        )
    }
}

impl std::error::Error for AboveLimit {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.os)
    }
}

/// What [`FdTable::close_all`] did.
///
/// ```
/// let report = fdtable::FdTable::new().close_all();
/// assert_eq!(report.released(), 0);
/// assert!(report.is_ok());
/// ```
#[derive(Debug)]
#[must_use = "the report lists the descriptors close_all could not release"]
pub struct CloseAllReport {
    released: usize,
    errors: Vec<(RawFd, io::Error)>,
}

impl CloseAllReport {
    /// How many entries this call released, exactly: each entry that was
    /// live when the call reached it and whose file it released (the
    /// placeholder swapped over its number) or, for
    /// [`FdKind::RegisteredSocket`], whose connection it shut down. An entry
    /// whose handle was closed while the call held it counts too (a thread
    /// woken by the `shutdown` that drops its handle at once, say): that
    /// close waits for the call to let go of the entry, so the call released
    /// the file all the same. Not counted: entries whose handles were closed
    /// or taken back before the call reached them (nothing left to release),
    /// entries tracked after it passed their numbers, and the entries in
    /// [`errors`](CloseAllReport::errors).
    ///
    /// Each entry counts in one report at most: when several `close_all`
    /// calls on one table hold the same entry at once, the one that retires
    /// it (or, if its handle closed meanwhile, the first to settle it)
    /// counts it. With one call at a time, `released() + errors().len()` is
    /// the number of live entries the call reached.
    ///
    /// Async-signal-safe.
    pub fn released(&self) -> usize {
        self.released
    }

    /// The live entries that were not released, each with its number and
    /// why: an [`FdKind::RegisteredOther`] entry (`ResourceBusy`), a
    /// `RegisteredSocket` whose `shutdown` failed, a failed `dup3` (a
    /// number at or above the soft `RLIMIT_NOFILE`: the message names the
    /// number and the limit, and the `EBADF` is its
    /// [`source`](std::error::Error::source)), or a lost placeholder (its
    /// number closed or replaced by code that does not own it) that cannot
    /// be opened again: then every entry that needed the swap gets the OS
    /// error of that open (`EMFILE` at the descriptor limit). Each such
    /// entry stays live and tracked (unless its handle is closed meanwhile,
    /// or another `close_all` at the same time releases it).
    /// Async-signal-safe.
    pub fn errors(&self) -> &[(RawFd, io::Error)] {
        &self.errors
    }

    /// Whether every live entry was released. Async-signal-safe.
    pub fn is_ok(&self) -> bool {
        self.errors.is_empty()
    }
}
