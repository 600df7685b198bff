//! The fork-child entry points on [`FdTable`]: close everything before
//! `exec`, or retire everything in a child that goes on running.

use std::io;
use std::os::fd::RawFd;

use super::close::close_published;
use crate::mask::MaskGuard;
use crate::placeholder;
use crate::slot::{SlotState, Word};
use crate::sys;
use crate::table::FdTable;
use crate::visits;
#[cfg(doc)]
use crate::CommandExt;

impl FdTable {
    /// Close every number the table holds, in the child of a `fork(2)`.
    /// Returns how many numbers that was.
    ///
    /// Async-signal-safe, lock-free and allocation-free: it reads the slot
    /// array with atomic loads only, takes the signal mask once for the
    /// whole walk ([`MaskGuard`]), and closes each run of consecutive numbers
    /// with one `close_range(2)` (Linux 5.9+, FreeBSD 12.2+), or with
    /// `close(2)` per number where the kernel says `ENOSYS` or `EPERM` (the
    /// answer is cached) and on systems without the call. Bounded by the
    /// numbers the table holds, on every system: it never sweeps a range of
    /// numbers it does not hold.
    ///
    /// Closes every *published* number: live entries, entries whose close
    /// was deferred behind a `for_each` visit, and entries retired by
    /// [`close_all`](FdTable::close_all) (those hold a placeholder). It
    /// closes nothing the table does not own: stdio is closed only if it was
    /// tracked, and descriptors created by std for `spawn` (the exec-error
    /// pipe) never are.
    ///
    /// A child forked while other threads open, close and track descriptors
    /// may find a number published that names another file in its own
    /// descriptor table: see "What the child can and cannot promise" under
    /// [`retire_all_in_child`](FdTable::retire_all_in_child).
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
        close_published(self, |_| false)
    }

    /// Release every file the table holds in a `fork(2)` child that does
    /// **not** exec (a prefork worker, a daemonised child), except the numbers
    /// in `keep`, and make the child's copy of the table work as if the child
    /// had started fresh. Returns how many numbers were released. A
    /// [seal](FdTable::seal) is kept: a table sealed before the fork stays
    /// sealed in the child.
    ///
    /// Like [`close_all`](FdTable::close_all), but async-signal-safe: each
    /// published number not in `keep` gets the dead placeholder `dup3`-ed
    /// over it (on Linux an `O_PATH` descriptor of a private pipe: I/O
    /// through it fails with `EBADF`, path lookups with `ENOTDIR`, and it
    /// shares no inode with anything; see [Resources](FdTable#resources);
    /// `dup2` then `fcntl` on Apple systems, which have no `dup3`: harmless
    /// here, since a fork child has one thread and no fork can come in
    /// between).
    /// The child's
    /// reference to the parent's file is dropped at once (a pipe's writer
    /// count falls, a listening socket is no longer held by the worker) while
    /// the number stays reserved, so the `Tracked` handles the child
    /// inherited can still be dropped safely: each then closes its
    /// placeholder, never a file the child opened later. Entries stay live in
    /// the child's copy of the table (I/O on them fails). Nothing is shut
    /// down: `shutdown(2)` would end the parent's connections too.
    ///
    /// Walks in progress on other parent threads at fork time do not exist in
    /// the child, so their pins are forgotten: a handle of the child can be
    /// closed (its number really closed), taken back with `into_inner`
    /// (which does not wait) or `try_into_inner`; and an entry whose close
    /// was deferred behind such a walk is closed here and its number freed
    /// (counted as released). Only walks of the forking thread itself (it
    /// forked from inside a `for_each` callback) keep their pins. The
    /// child's [`len`](FdTable::len) is recounted from its entries (a fork
    /// between another thread's publishing step and its count update would
    /// otherwise leave it off for good).
    ///
    /// No signal mask is held across the walk (only around the closes of
    /// deferred entries), so a `dup3` that blocks in the kernel (it drops
    /// the child's last reference to a lingering socket, say) leaves the
    /// child killable by its signals.
    ///
    /// The placeholder is the process-wide one, opened before the fork (no
    /// later than the first `track`), so this needs no new descriptor and
    /// works at the `RLIMIT_NOFILE` limit. It is checked first (one `fstat`,
    /// one `fcntl`) and replaced by a fresh one if its number no longer
    /// names it.
    ///
    /// Signal handlers are left as they are: the parent's
    /// [`Interrupts`](crate::Interrupts) ignore the child, which gets the
    /// default action for their signals, and the child may install its own
    /// `Interrupts` afterwards and receive signals as events (resetting the
    /// dispositions behind signal-hook's back would make those never run).
    ///
    /// Async-signal-safe, allocation-free, no lock.
    ///
    /// # Errors
    /// The first failure, as an OS error (nothing is allocated here):
    /// - the placeholder was lost (its number closed or reused by code that
    ///   does not own it) and a new one cannot be opened (`EMFILE`);
    /// - a `dup3(2)` failed: `EBADF` for a number at or above the soft
    ///   `RLIMIT_NOFILE` (`dup3` refuses such a target; the limit is not
    ///   raised behind the program's back).
    ///
    /// Every other entry is still released and the pins are still
    /// forgotten; the entries that could not be released keep their files.
    ///
    /// # Safety
    /// Call it only in a child process right after `fork` (before any other
    /// thread is started in it). Until it returns, nothing else in the child
    /// may use the table. Afterwards the handles are safe to drop, but I/O
    /// through any of them except those kept fails.
    ///
    /// Do not call it in a child forked from a signal handler that may have
    /// interrupted a [`for_each`](FdTable::for_each) or a
    /// [`close_all`](FdTable::close_all) of the forking thread: a walk
    /// interrupted between taking its pin and recording it in the thread's
    /// visit list (a few instructions, not masked: a mask pair per entry
    /// would double the walk's cost) holds a pin this call cannot tell from
    /// another thread's, so it forgets it, and once the handler returns the
    /// walk's callback runs on a number the child's table no longer keeps
    /// reserved for it.
    ///
    /// # What the child can and cannot promise
    /// `fork(2)` copies the kernel's descriptor table first and the process
    /// memory afterwards, page by page, while the other threads keep running.
    /// In that window another thread may close an untracked number `N` and a
    /// third may open a new file at `N` and track it: the child's memory then
    /// shows `N` published while its descriptor table holds the old, foreign
    /// file at `N`, and this call swaps the placeholder over that foreign
    /// file in the child (the parent is not affected). Conversely an entry
    /// unpublished and closed in that window stays open in the child,
    /// close-on-exec and untracked; and an entry another thread takes back
    /// with [`Tracked::into_inner`](crate::Tracked::into_inner) in that
    /// window may still be published in the child, which then retires that
    /// (now untracked) descriptor in its own copy. What the child can
    /// promise: it never touches a descriptor the forking thread owns (that
    /// thread is inside `fork` for the whole window, so no other thread can
    /// reuse its numbers), never an untracked one that was open before the
    /// fork began and stayed open through it (the foreign file above was
    /// closed in between), and after this call every number the child's
    /// table publishes either names the placeholder or is in `keep`.
    ///
    /// # Async runtimes
    /// A kept descriptor of a [`Registered*`](crate::FdKind::RegisteredSocket)
    /// kind (a tracked tokio value) is registered in the runtime's epoll
    /// instance, which the child shares with the parent, and epoll keys a
    /// registration by file and number, not by process. Dropping its handle
    /// in the child deregisters it (`EPOLL_CTL_DEL`) for the parent too: the
    /// parent's tasks awaiting it never wake again. Let such handles live
    /// until `exec` or `_exit`, or `std::mem::forget` them. The entries this
    /// call retired may be dropped: their numbers name the placeholder, so
    /// the deregistration misses the parent's registration.
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
    /// `fork(2)`, `signal-safety(7)`, `dup3(2)`
    pub unsafe fn retire_all_in_child(&self, keep: &[RawFd]) -> io::Result<usize> {
        // No mask for the whole walk: a swap leaves the number published
        // and open, and a `dup3` that drops the child's last reference to a
        // lingering socket may block; the closes in `settle_in_child` take
        // their own guard.
        // Checked lazily, at the first number that needs it: a table with
        // nothing to release needs no placeholder at all.
        let mut placeholder: Option<io::Result<RawFd>> = None;
        let mut failure: Option<io::Error> = None;
        let mut swapped_in = 0;
        let closed = self.settle_in_child(|fd| {
            if keep.contains(&fd) {
                return;
            }
            let swapped = match placeholder.get_or_insert_with(placeholder::checked) {
                Ok(p) => sys::replace_with_placeholder(*p, fd),
                // An OS error: copying it allocates nothing.
                Err(e) => Err(io::Error::from_raw_os_error(
                    e.raw_os_error().unwrap_or(libc::EBADF),
                )),
            };
            match swapped {
                Ok(()) => swapped_in += 1,
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        });
        match failure {
            Some(error) => Err(error),
            None => Ok(closed + swapped_in),
        }
    }

    /// The fork-child walk behind `retire_all_in_child`: make the child's
    /// copy of the table look as if only the calling (forking) thread had
    /// ever walked it, then hand each number that stays published to `f`, in
    /// ascending order. Returns how many entries it closed itself.
    ///
    /// Only the forking thread exists in the child, so pins held by other
    /// parent threads' walks would never be released: `into_inner` would
    /// wait forever, `try_into_inner` fail forever, and a close deferred
    /// behind them never happen. Each published slot keeps exactly the pins
    /// that the calling thread's walks hold (its inherited pin list); an
    /// entry whose close was deferred behind pins that are all gone is
    /// unpublished and its number closed here (it has no handle left).
    ///
    /// The live count is recounted too: the parent updates it right after
    /// each publishing or unpublishing compare-and-swap, so a fork between
    /// the two leaves the child's copy off by one for good.
    ///
    /// Async-signal-safe and allocation-free: atomics, the thread's pin list
    /// (stack memory), `close(2)` under a [`MaskGuard`] (unpublished and
    /// closed as one step for this thread's handlers). No other thread
    /// exists, so every CAS succeeds at its first try unless a handler of
    /// this thread changes the slot.
    fn settle_in_child(&self, mut f: impl FnMut(RawFd)) -> usize {
        let mut closed = 0;
        let mut live = 0;
        for (base, slots) in self.chunks_in_use() {
            for (fd, slot) in (base..).zip(slots) {
                loop {
                    let w = slot.load();
                    if !w.is_published() {
                        break;
                    }
                    let own = visits::pins_held_here(self.id(), fd, w.gen()).min(w.pins());
                    if w.state() == SlotState::Closing && own == 0 {
                        let _mask = MaskGuard::new();
                        if slot.cas(w, Word::FREE).is_err() {
                            continue;
                        }
                        // Unpublished first, as everywhere.
                        if sys::close(fd).is_err() {
                            self.count_swallowed();
                        }
                        closed += 1;
                        break;
                    }
                    if own == w.pins() || slot.cas(w, w.with_pins(own)).is_ok() {
                        live += usize::from(w.state() == SlotState::Live);
                        f(fd);
                        break;
                    }
                }
            }
        }
        self.reset_live_count(live);
        closed
    }
}
