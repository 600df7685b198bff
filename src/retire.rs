//! [`FdTable::close_all`]: release every live entry now while keeping its
//! number reserved, and [`CloseAllReport`], what it did.

use std::io;
use std::os::fd::RawFd;

use crate::mask::MaskGuard;
use crate::placeholder;
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
    /// thread still writing to "its" file). Instead each live descriptor is
    /// atomically replaced by a dead placeholder (`dup3`): the descriptor's
    /// reference to its file is dropped at once and the number stays
    /// reserved; any later I/O through the handle fails with `EBADF`, and
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
    ///   requires. The entry counts as released;
    /// - `RegisteredOther`: left live and open, and reported in
    ///   [`errors`](CloseAllReport::errors) (`ResourceBusy`).
    ///
    /// `shutdown(2)` acts on the socket, not on the descriptor: it also ends
    /// the connection for every other descriptor of the same socket, such as
    /// a `try_clone` or a copy a child process inherited (for example through
    /// [`CommandExt::close_tracked_fds_except`](crate::CommandExt)). Take
    /// such sockets back with [`Tracked::into_inner`] first if they must
    /// survive.
    ///
    /// The placeholder is the process-wide one opened by the first `track`
    /// (see [Resources](FdTable#resources)), so `close_all` needs no new
    /// descriptor and works when the process is at its `RLIMIT_NOFILE`. On
    /// Linux it is an `O_PATH` descriptor of `/dev/null`: `fstat` (and
    /// `File::metadata`) on a retired handle succeed and describe `/dev/null`
    /// (a character device).
    ///
    /// Takes the signal mask once for the whole batch. Entries being closed
    /// at that moment behind a walk are left to the walk. An entry a walk is
    /// visiting is retired too; the visited number then names the
    /// placeholder until the callback returns.
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
    #[must_use = "the report lists the descriptors close_all could not release"]
    pub fn close_all(&self) -> CloseAllReport {
        let mut report = CloseAllReport::default();
        // Checked, not trusted: see `placeholder.rs`. At `EMFILE` a missing
        // one cannot be replaced; then every entry that needs it reports why.
        let placeholder = placeholder::checked();
        let _mask = MaskGuard::new();
        for (base, slots) in self.chunks_in_use() {
            for (fd, slot) in (base..).zip(slots) {
                let Some(w) = self.pin(slot, None) else {
                    continue;
                };
                // The pin keeps the number ours while we release its file.
                let outcome = release(fd, w.kind(), &placeholder);
                if self.retire_and_unpin(slot, fd, w, outcome.is_ok()) {
                    report.released += 1;
                }
                if let Err(error) = outcome {
                    report.errors.push((fd, error));
                }
            }
        }
        // `len` counts the retired entries until here: still under the mask,
        // so no handler of this thread sees the difference.
        self.count_retired(report.released);
        report
    }
}

/// Release the file behind the live number `fd` of kind `kind`, keeping the
/// number reserved. Async-signal-safe except for the error values it builds.
#[inline]
fn release(fd: RawFd, kind: FdKind, placeholder: &io::Result<RawFd>) -> io::Result<()> {
    let swap = || match placeholder {
        Ok(p) => sys::replace_with_placeholder(*p, fd),
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

/// What [`FdTable::close_all`] did.
///
/// ```
/// let report = fdtable::FdTable::new().close_all();
/// assert_eq!(report.released(), 0);
/// assert!(report.is_ok());
/// ```
#[derive(Debug, Default)]
#[must_use = "the report lists the descriptors close_all could not release"]
pub struct CloseAllReport {
    released: usize,
    errors: Vec<(RawFd, io::Error)>,
}

impl CloseAllReport {
    /// How many live entries were released: their files dropped and their
    /// numbers reserved by the placeholder, or (for
    /// [`FdKind::RegisteredSocket`]) their connections shut down.
    /// Async-signal-safe.
    pub fn released(&self) -> usize {
        self.released
    }

    /// The live entries that were not released, each with its number and
    /// why: an [`FdKind::RegisteredOther`] entry (`ResourceBusy`), a
    /// `RegisteredSocket` whose `shutdown` failed, or a failed `dup3`. Each
    /// such entry stays live and tracked. Async-signal-safe.
    pub fn errors(&self) -> &[(RawFd, io::Error)] {
        &self.errors
    }

    /// Whether every live entry was released. Async-signal-safe.
    pub fn is_ok(&self) -> bool {
        self.errors.is_empty()
    }
}
