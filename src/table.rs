//! [`FdTable`]: the lock-free slot array, `track`, walks and releases.
//!
//! Slots live in chunks (see `chunks.rs`) that are never freed while the
//! table lives, so a reference to a slot stays valid without any lock, from
//! any thread, inside a signal handler or in a fork child. Memory is 8 bytes per fd number in the
//! chunks in use: at most `max(8 KiB, 16 * (highest tracked fd + 1))` bytes.
//!
//! Ordering rule that the child path and other threads rely on: **publish
//! after** the number is open and close-on-exec, **unpublish before**
//! `close(2)`. Everything that closes does so inside a [`MaskGuard`], so a
//! handler on the same thread never sees the number unpublished but still open.

use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::ptr;

use crate::chunks::{alloc_chunk, chunk_base, chunk_len, free_chunk, locate, CHUNKS};
use crate::counter::StripedCount;
use crate::mask::MaskGuard;
use crate::placeholder;
use crate::slot::{Slot, SlotState, Word, GEN_MASK};
use crate::sync::{backoff, fence, AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use crate::sys;
use crate::trackable::Trackable;
use crate::tracked::{TrackError, Tracked};
use crate::visits::{self, PinNode};

/// A table of owned file descriptors that can be walked, closed in bulk, and
/// closed in a fork child, safely against threads, signal handlers and
/// re-entrant callbacks.
///
/// Use [`FdTable::global`] for the process-wide table, or a `static` of your
/// own:
///
/// ```
/// use fdtable::FdTable;
/// static TABLE: FdTable = FdTable::new();
///
/// let file = TABLE.track(std::fs::File::open("/dev/null")?)?;
/// assert!(TABLE.contains(std::os::fd::AsRawFd::as_raw_fd(&file)));
/// assert_eq!(TABLE.len(), 1);
/// drop(file); // closed and unregistered, with signals masked
/// assert!(TABLE.is_empty());
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// # What is async-signal-safe
/// [`contains`](FdTable::contains), [`len`](FdTable::len),
/// [`is_empty`](FdTable::is_empty), [`is_sealed`](FdTable::is_sealed) and
/// [`swallowed_close_errors`](FdTable::swallowed_close_errors) only read
/// atomics, and [`seal`](FdTable::seal) writes one;
/// [`close_all_in_child`](FdTable::close_all_in_child) and
/// [`retire_all_in_child`](FdTable::retire_all_in_child) also make
/// async-signal-safe syscalls. `track` may allocate a chunk; `for_each` runs
/// your code; `close_all` collects errors in a `Vec`: none of those belongs in
/// a signal handler.
///
/// # Resources
/// The table allocates nothing until the first `track`, then 8 bytes per fd
/// number in the chunks in use (chunks of 1 024, 1 024, 2 048, ... numbers,
/// from `mmap`, never freed while the table lives). The first `track` of any
/// table in the process (a [`ChildFds::pass_fd`](crate::ChildFds::pass_fd)
/// tracks its duplicate, so it counts) also opens one dead placeholder descriptor
/// (close-on-exec, numbered 3 or above), kept open for the life of the
/// process, so that [`close_all`](FdTable::close_all) and
/// [`retire_all_in_child`](FdTable::retire_all_in_child) work even when the
/// process is out of descriptors. On Linux it is an `O_PATH` descriptor of
/// a private pipe whose ends are closed (opened through `/proc/self/fd`): it
/// needs no `/dev/null`, resolves no path, does no I/O, and shares no inode
/// with anything else. Without a usable `/proc`, and on other systems, it is
/// the read end of a pipe whose write end is closed.
///
/// # Generations
/// Each entry is stamped with the table's walk epoch when it is tracked; a
/// walk visits only entries stamped before it began. Stamps are 46 bits and
/// compared modulo 2^46, which is exact as long as fewer than 2^45 (about
/// 3.5 * 10^13) walks of the table start while one entry stays tracked, or
/// while one walk runs: at ten million walks a second, about 40 days.
/// Beyond that bound a walk may skip an entry that was tracked before it
/// began, and a walk that runs while more than 2^45 others start may also
/// visit entries tracked after it began. The stamp also tells a walk's pin
/// from a later entry's in the same slot: only after 2^46 walks could a
/// stale pin (of an entry that was taken back while pinned) match a new
/// entry again.
pub struct FdTable {
    chunks: [AtomicPtr<Slot>; CHUNKS],
    /// Bumped by every walk as it starts. `track` stamps an entry with the
    /// current value (a read of a line that only walks write), so a walk
    /// that started at `e` (and made it `e + 1`) visits stamps `<= e`.
    walk_epoch: AtomicU64,
    /// Set once by [`seal`](FdTable::seal), never cleared: `track` refuses.
    sealed: AtomicBool,
    /// Entries in state `Live`.
    live: StripedCount,
    /// `close(2)` errors that no caller could be told about.
    swallowed: AtomicUsize,
}

impl FdTable {
    /// An empty table. `const`, so it can be a `static`. Allocates nothing
    /// until the first `track`.
    ///
    /// Async-signal-safe.
    #[cfg(not(fdtable_loom))]
    pub const fn new() -> FdTable {
        FdTable {
            chunks: [const { AtomicPtr::new(ptr::null_mut()) }; CHUNKS],
            walk_epoch: AtomicU64::new(1),
            sealed: AtomicBool::new(false),
            live: StripedCount::new(),
            swallowed: AtomicUsize::new(0),
        }
    }

    /// An empty table (loom build: not `const`).
    #[cfg(fdtable_loom)]
    pub fn new() -> FdTable {
        FdTable {
            chunks: std::array::from_fn(|_| AtomicPtr::new(ptr::null_mut())),
            walk_epoch: AtomicU64::new(1),
            sealed: AtomicBool::new(false),
            live: StripedCount::new(),
            swallowed: AtomicUsize::new(0),
        }
    }

    /// The process-wide table, a `const`-initialised `static`: usable from
    /// any thread, from static and thread-local destructors, and after
    /// `main` returns.
    ///
    /// Async-signal-safe.
    ///
    /// ```
    /// let table = fdtable::FdTable::global();
    /// let null = table.track(std::fs::File::open("/dev/null")?)?;
    /// # drop(null);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    #[cfg(not(fdtable_loom))]
    pub fn global() -> &'static FdTable {
        static GLOBAL: FdTable = FdTable::new();
        &GLOBAL
    }

    /// No process-wide table in the model-checking build
    /// (`--cfg fdtable_loom`): a table of loom atomics lives inside one model
    /// run, never in a `static`. The child setup, which tracks its
    /// duplicates in the global table, is not model-checked there; this
    /// panics if it is called.
    #[cfg(fdtable_loom)]
    pub fn global() -> &'static FdTable {
        panic!("fdtable: there is no global table under --cfg fdtable_loom")
    }

    /// This table's identity for the visit list (`visits.rs`).
    pub(crate) fn id(&self) -> visits::TableId {
        (self as *const FdTable).cast()
    }

    /// The slot for `fd`, if its chunk exists. Async-signal-safe.
    pub(crate) fn slot(&self, fd: RawFd) -> Option<&Slot> {
        let fd = usize::try_from(fd).ok()?;
        let (k, i) = locate(fd);
        let chunk = self.chunks.get(k)?.load(Ordering::Acquire);
        if chunk.is_null() {
            return None;
        }
        // SAFETY: a non-null chunk pointer points at `chunk_len(k)` slots that
        // live as long as the table; `i < chunk_len(k)` by construction.
        Some(unsafe { &*chunk.add(i) })
    }

    /// Every allocated chunk as (its first fd number, its slots), in
    /// ascending order. Atomic loads only: async-signal-safe.
    pub(crate) fn chunks_in_use(&self) -> impl Iterator<Item = (RawFd, &[Slot])> {
        (0..CHUNKS).filter_map(move |k| {
            let chunk = self.chunks[k].load(Ordering::Acquire);
            if chunk.is_null() {
                return None;
            }
            // SAFETY: see `slot`: a non-null chunk holds `chunk_len(k)`
            // initialised slots that live as long as the table.
            let slots = unsafe { std::slice::from_raw_parts(chunk, chunk_len(k)) };
            Some((chunk_base(k) as RawFd, slots))
        })
    }

    /// The slot for `fd`, allocating its chunk if needed. Not
    /// async-signal-safe (allocates).
    fn slot_or_alloc(&self, fd: RawFd) -> io::Result<&Slot> {
        if let Some(slot) = self.slot(fd) {
            return Ok(slot);
        }
        let ufd = usize::try_from(fd).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
        let (k, _) = locate(ufd);
        let fresh = alloc_chunk(chunk_len(k))?;
        if self.chunks[k]
            .compare_exchange(ptr::null_mut(), fresh, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            // Another thread installed this chunk first; ours was never shared.
            // SAFETY: `fresh` came from `alloc_chunk(chunk_len(k))` just above.
            unsafe { free_chunk(fresh, chunk_len(k)) };
        }
        self.slot(fd)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOMEM))
    }

    /// Take ownership of `resource` and register its descriptor.
    ///
    /// Sets `FD_CLOEXEC` on the descriptor (one `fcntl(F_GETFD)`, plus an
    /// `F_SETFD` only when the flag is missing), then publishes it with its
    /// [`FdKind`](crate::FdKind) (`T::KIND`). The first `track` of any table
    /// in the process also opens the dead placeholder that
    /// [`close_all`](FdTable::close_all) swaps over descriptors, unless it
    /// is already open (see [Resources](FdTable#resources)); later calls
    /// only check that it exists.
    ///
    /// `T` is any [`Trackable`]: std's descriptor types (`File`, `OwnedFd`,
    /// sockets, pipes, child stdio), or your own type through an `unsafe
    /// impl`.
    ///
    /// Not async-signal-safe (may allocate the chunk for a new range of
    /// numbers). Takes no signal mask: publishing is one atomic step, and the
    /// number is open both before and after it. Never waits, except in one
    /// narrow race: when the table is sealed between `track`'s first check
    /// and its publishing step, `track` takes its entry back, and if another
    /// thread's walk or `close_all` already pins it, waits for that pin to
    /// go (as [`Tracked::into_inner`] does) before handing the resource back.
    ///
    /// # Errors
    /// Nothing is closed on failure: the resource comes back inside the
    /// [`TrackError`] (see [`TrackError::into_parts`]).
    /// - The table is [sealed](FdTable::seal): `Other`, with a message that
    ///   says so; checked first, so the descriptor is not touched. A `track`
    ///   that runs while another thread seals either fails so or succeeds;
    ///   if it succeeds, a `close_all` after the seal releases its entry
    ///   (and may already have, before `track` returns: see
    ///   [`seal`](FdTable::seal)).
    /// - The number is already tracked by this table: `AlreadyExists`, with
    ///   the number in the message.
    /// - The number is not an open descriptor: `InvalidInput`, with the
    ///   number in the message; the `EBADF` from `fcntl(2)` is its
    ///   [`source`](std::error::Error::source).
    /// - Other errors of `fcntl(2)` (`EPERM` under a seccomp filter, say), as
    ///   the OS error.
    /// - The placeholder cannot be opened (first call in the process only:
    ///   `EMFILE` when the process is already out of descriptors): the OS
    ///   error's kind, a message that names the placeholder, and the OS error
    ///   as its [`source`](std::error::Error::source).
    /// - The slot memory cannot be mapped (`ENOMEM`): the OS error.
    ///
    /// # Examples
    /// ```
    /// use fdtable::FdTable;
    /// use std::io::Write;
    ///
    /// static TABLE: FdTable = FdTable::new();
    /// let mut log = TABLE.track(std::fs::OpenOptions::new().write(true).open("/dev/null")?)?;
    /// log.write_all(b"through Deref to the File")?;
    /// log.close()?; // or just drop it
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// The handle is `#[must_use]`: dropping it at once would close the
    /// descriptor at once.
    /// ```compile_fail
    /// #![deny(unused_must_use)]
    /// # fn main() -> std::io::Result<()> {
    /// let table = fdtable::FdTable::global();
    /// table.track(std::fs::File::open("/dev/null")?)?; // error: unused `Tracked`
    /// # Ok(())
    /// # }
    /// ```
    pub fn track<T: Trackable>(&self, resource: T) -> Result<Tracked<'_, T>, TrackError<T>> {
        let fd = resource.as_fd().as_raw_fd();
        // The fast refusal, before anything touches the descriptor. What
        // makes the seal hold against a track that passes this check just
        // before `seal` is the second check, after publishing (see `seal`).
        if self.sealed.load(Ordering::Relaxed) {
            return Err(TrackError::new(resource, crate::tracked::sealed(fd)));
        }
        if let Err(error) = sys::set_cloexec(fd, true) {
            let error = if error.raw_os_error() == Some(libc::EBADF) {
                crate::tracked::not_open(fd, error)
            } else {
                error
            };
            return Err(TrackError::new(resource, error));
        }
        self.track_cloexec(resource)
    }

    /// [`track`](FdTable::track) for a descriptor known to be open and
    /// close-on-exec already (made by `F_DUPFD_CLOEXEC`, say): no `fcntl`.
    /// Not async-signal-safe.
    pub(crate) fn track_cloexec<T: Trackable>(
        &self,
        resource: T,
    ) -> Result<Tracked<'_, T>, TrackError<T>> {
        let fd = resource.as_fd().as_raw_fd();
        if self.sealed.load(Ordering::Relaxed) {
            return Err(TrackError::new(resource, crate::tracked::sealed(fd)));
        }
        // After the `fcntl` check: a placeholder opened first could take the
        // very number a bad `resource` names.
        if let Err(error) = placeholder::ensure() {
            return Err(TrackError::new(resource, placeholder::unavailable(error)));
        }
        let slot = match self.slot_or_alloc(fd) {
            Ok(slot) => slot,
            Err(error) => return Err(TrackError::new(resource, error)),
        };
        // Slot first (acquire), epoch second: if this number was released
        // while a walk still pinned it (a panicking conversion inside the
        // walk's callback), that walk's epoch bump happens-before the release
        // we just read, so our stamp is newer than its pins and its stale
        // unpin cannot touch the new entry.
        let current = slot.load();
        let gen = self.walk_epoch.load(Ordering::Relaxed) & GEN_MASK;
        let published = current.state() == SlotState::Free
            && slot
                .cas(current, Word::new(SlotState::Live, T::KIND, 0, gen))
                .is_ok();
        if !published {
            let error = io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("fd {fd} is already tracked by this table"),
            );
            return Err(TrackError::new(resource, error));
        }
        self.live.add();
        // The check that counts: after publishing, behind the fence that
        // pairs with the one `close_all` starts with. Either it sees the
        // seal, or every `close_all` after the seal finds this entry (the
        // argument is in `seal`).
        fence(Ordering::SeqCst);
        if self.sealed.load(Ordering::Relaxed) {
            return self.withdraw_sealed(slot, fd, gen, resource);
        }
        Ok(Tracked::new(self, fd, gen, resource))
    }

    /// `track` published `fd` (generation `gen`) and then found the table
    /// sealed: a `close_all` after the seal may already have walked past the
    /// slot. Take the entry back and hand the resource back open, as if
    /// `track` had seen the seal first, unless such a `close_all` has
    /// already retired it: then the entry was accepted and released, and
    /// its (dead) handle is returned.
    ///
    /// Waits while other threads pin the entry (a `close_all` releasing it,
    /// or a walk that started after the publishing step visiting it), for
    /// the reason `into_inner` waits: the caller may close the resource as
    /// soon as it is back. No walk of this thread can pin it: a walk under
    /// way here began before this `track` read its stamp.
    fn withdraw_sealed<T: Trackable>(
        &self,
        slot: &Slot,
        fd: RawFd,
        gen: u64,
        resource: T,
    ) -> Result<Tracked<'_, T>, TrackError<T>> {
        let mut round = 0;
        loop {
            let w = slot.load();
            if !w.is_handle_of(gen) {
                // Cannot happen: only this call holds the entry. Whatever
                // took it, the table no longer claims the number, and the
                // resource is still the caller's.
                return Err(TrackError::new(resource, crate::tracked::sealed(fd)));
            }
            if w.state() == SlotState::Retired {
                return Ok(Tracked::new(self, fd, gen, resource));
            }
            if w.pins() == 0 {
                if slot.cas(w, Word::FREE).is_ok() {
                    self.count_unpublished_live();
                    return Err(TrackError::new(resource, crate::tracked::sealed(fd)));
                }
                continue;
            }
            backoff(round);
            round = round.saturating_add(1);
        }
    }

    /// Refuse every later [`track`](FdTable::track) on this table: the first
    /// step of a shutdown. Entries already in the table are untouched (live
    /// and usable; [`close_all`](FdTable::close_all) is what releases them).
    /// Sealing again does nothing; there is no way to unseal.
    ///
    /// Once `seal` has returned, `track` fails before it touches the
    /// descriptor, and hands the resource back open (see
    /// [`TrackError::into_parts`]). The error's kind is
    /// [`io::ErrorKind::Other`] and its message says the table is sealed:
    /// the refusal is not an OS error, and std never produces `Other`, so
    /// that kind tells a sealed table apart from every other reason `track`
    /// gives (`AlreadyExists`, `InvalidInput`, the OS errors of `fcntl`,
    /// `pipe` and `mmap`).
    ///
    /// # Against threads that keep tracking
    /// `seal()` then [`close_all()`](FdTable::close_all) releases every entry
    /// that any `track` accepted, whatever other threads are doing: a `track`
    /// that runs at the same time as the seal either fails as above, or
    /// succeeds and its entry is in the table by the time `close_all` walks
    /// it (released then, unless its handle was closed first). No accepted
    /// entry escapes, and no resource is lost: each one is either in a
    /// handle or given back in the error. A `track` that overlaps the seal
    /// may return a handle that this `close_all` has already retired: I/O
    /// through it fails, as through any retired handle. `close_all` may run
    /// on another thread, as long as that thread knows the seal happened: it
    /// called `seal` itself, saw [`is_sealed`](FdTable::is_sealed) return
    /// `true`, or was told by the sealing thread through a channel, a join,
    /// a lock. So threads that open and track in a loop need no stop flag
    /// of their own: a refused `track` tells them to stop, and whatever they
    /// got before is released by the `close_all`.
    ///
    /// `close_all` does not seal by itself (its docs say why): shutting down
    /// is `seal(); close_all()`.
    ///
    /// # Fork children
    /// The seal is part of the table's memory, so a child forked after
    /// `seal` is sealed too, and stays so:
    /// [`close_all_in_child`](FdTable::close_all_in_child) and
    /// [`retire_all_in_child`](FdTable::retire_all_in_child) leave the seal
    /// as it is (a child of a process that is shutting down is part of the
    /// shutdown; one that goes on and must track again uses a table of its
    /// own). A seal made in the parent after the fork does not reach the
    /// child, nor the other way round.
    ///
    /// Async-signal-safe: one atomic store, no wait. A signal handler may
    /// seal a table; the guarantee above then holds for a `close_all` on a
    /// thread that saw `is_sealed()` return `true`.
    ///
    /// # Examples
    /// Ctrl-C while four workers open and track files:
    /// ```
    /// use fdtable::{FdTable, Interrupts, Signal};
    /// use std::fs::File;
    /// use std::io::Read;
    /// static TABLE: FdTable = FdTable::new();
    ///
    /// let interrupts = Interrupts::builder(Signal::Interrupt)
    ///     .respect_ignored(false) // this doc test may run under `nohup`
    ///     .install()?;
    /// std::thread::scope(|s| {
    ///     for _ in 0..4 {
    ///         s.spawn(|| loop {
    ///             let Ok(file) = File::open("/dev/zero") else { break };
    ///             // Refused once the table is sealed: time to stop.
    ///             let Ok(mut file) = TABLE.track(file) else { break };
    ///             // Fails once close_all has released the file.
    ///             if file.read(&mut [0u8; 64]).is_err() {
    ///                 break;
    ///             }
    ///         });
    ///     }
    ///     // SAFETY: raise has no preconditions. "Ctrl-C", delivered to ourselves:
    ///     unsafe { libc::raise(libc::SIGINT) };
    ///     let received = interrupts.recv()?;
    ///     TABLE.seal(); // from here on, `track` refuses
    ///     let report = TABLE.close_all(); // releases everything it accepted
    ///     eprintln!("{received}: released {}", report.released());
    ///     Ok::<(), std::io::Error>(())
    /// })?; // the workers have stopped
    /// assert!(TABLE.is_empty());
    /// // A real program now dies by the signal: `Interrupts::die_by_signal`.
    ///
    /// let refused = TABLE.track(File::open("/dev/null")?).unwrap_err();
    /// assert_eq!(refused.error().kind(), std::io::ErrorKind::Other);
    /// assert!(refused.to_string().contains("sealed"));
    /// let file: File = refused.into_inner(); // still open, still ours
    /// # drop(file);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn seal(&self) {
        // Why `seal(); close_all()` leaves no accepted entry behind, with no
        // lock and no wait (the store-buffering pattern, closed by two
        // `SeqCst` fences):
        //
        //   track:     publish (CAS on the slot); F1 = fence(SeqCst); R = load `sealed`
        //   seal:      W = store `sealed` = true
        //   close_all: F2 = fence(SeqCst); L = load each chunk pointer and slot
        //
        // and W happens before F2 (the documented precondition). Suppose R
        // reads `false`: R is then coherence-ordered before W, F1 is
        // sequenced before R and W happens before F2, so F1 precedes F2 in
        // the single total order S of `SeqCst` operations (C++20
        // [atomics.order] p4, the case of two fences; Rust uses that model).
        // Had L read the slot as it was before the publishing CAS, or the
        // chunk pointer before the chunk was installed (by this `track`, or
        // by another thread before this `track` loaded it; either way it
        // happens before F1), then by the same rule F2 would precede F1: a
        // contradiction. So `close_all` sees the entry published and, if it
        // is still live, releases it. If R reads `true`, `track` takes its
        // entry back and fails (`withdraw_sealed`), unless a `close_all`
        // has already retired it: then it returns the retired handle. Either
        // way nothing `track` accepts escapes (the loom models
        // `seal_then_close_all_...` and `seal_races_track_and_a_walk_...`
        // check it, and fail without either fence or the second check).
        //
        // Why fences and not `SeqCst` accesses: the publishing CAS is the
        // slot protocol's `AcqRel` one, outside S, so a `SeqCst` load of
        // `sealed` after it orders nothing against `close_all`'s loads; and
        // loom models `SeqCst` fences exactly but `SeqCst` accesses only as
        // `AcqRel`. On x86 the CAS is already a full barrier; F1 costs a
        // few nanoseconds next to `track`'s `fcntl`. The store below could
        // be `Release` (it only has to happen before F2); `SeqCst` costs
        // nothing that matters here.
        self.sealed.store(true, Ordering::SeqCst);
    }

    /// Whether [`seal`](FdTable::seal) was called on this table (in this
    /// process, or in the parent before this fork child was made). Once
    /// `true`, it stays `true`.
    ///
    /// A thread that sees `true` may [`close_all`](FdTable::close_all) with
    /// the guarantee `seal` describes: every entry a `track` accepted is
    /// released.
    ///
    /// Async-signal-safe (one atomic load).
    ///
    /// ```
    /// use fdtable::FdTable;
    /// static TABLE: FdTable = FdTable::new();
    /// assert!(!TABLE.is_sealed());
    /// TABLE.seal();
    /// assert!(TABLE.is_sealed());
    /// ```
    pub fn is_sealed(&self) -> bool {
        self.sealed.load(Ordering::SeqCst)
    }

    /// Number of live entries: tracked, not closed, not retired by
    /// [`close_all`](FdTable::close_all).
    ///
    /// Async-signal-safe (a few relaxed atomic loads, summed: the count is
    /// striped per thread). A snapshot that may be briefly off while other
    /// threads update it, and while a [`close_all`](FdTable::close_all) runs
    /// (it subtracts what it retired once, as it returns; a signal handler
    /// interrupting it on its own thread sees the entries retired so far
    /// still counted).
    pub fn len(&self) -> usize {
        self.live.get()
    }

    /// Whether [`len`](FdTable::len) is zero. Async-signal-safe.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the table holds the number `fd` right now: true exactly while
    /// the table owns that open number (live, being closed after a walk, or
    /// retired by `close_all` and reserved until its handle drops).
    ///
    /// Async-signal-safe (atomic loads only): a signal handler may call it.
    pub fn contains(&self, fd: RawFd) -> bool {
        self.slot(fd).is_some_and(|slot| slot.load().is_published())
    }

    /// How many `close(2)` errors were swallowed because no caller could be
    /// told: handles dropped instead of [`Tracked::close`]d, closes that
    /// were deferred until a walk released the number, and descriptors lost
    /// by a failed [`Trackable::try_into_owned_fd`] of a dropped handle.
    ///
    /// Async-signal-safe.
    pub fn swallowed_close_errors(&self) -> usize {
        self.swallowed.load(Ordering::Relaxed)
    }

    /// Call `f` with each entry that is live when the walk starts.
    ///
    /// The walk is re-entrant: `f` may track, close, drop handles, call
    /// `close_all`, walk again (on this table or another), or panic (the
    /// panic propagates after the walk cleans up). Guarantees:
    /// - an entry live when the walk began and still live when reached is
    ///   visited exactly once; one closed before it is reached is not
    ///   visited; one tracked after the walk began is not visited, even if it
    ///   reuses a number the walk has not reached yet;
    /// - the number being visited stays open, and is not recycled, until `f`
    ///   returns, whatever safe code does meanwhile (in `f` or on another
    ///   thread): a close of its handle is deferred until `f` returns, and the
    ///   handle cannot be taken back out of the table while it is visited:
    ///   - [`Tracked::close`] and dropping the handle defer the close;
    ///   - [`Tracked::try_into_inner`] returns the handle in `Err` while the
    ///     entry is pinned: any walk visits it, this thread's included, or a
    ///     `close_all` is releasing it;
    ///   - [`Tracked::into_inner`] waits for other threads' pins, and
    ///     panics when a walk of the calling thread (this one or any
    ///     enclosing one) is visiting the entry: it would wait for itself;
    /// - [`close_all`](FdTable::close_all) may retire the visited entry: the
    ///   number then names the dead placeholder, still reserved.
    ///
    /// No signal mask is held while `f` runs. See
    /// [Generations](FdTable#generations) for the bound on how many walks may
    /// start while one entry lives. Walks may nest to any depth: an entry
    /// holds up to 8 191 pins, and a walk that finds that many visits again
    /// on the pin of an enclosing visit of its own thread (which outlasts
    /// it), so it never waits for itself.
    ///
    /// Not async-signal-safe (runs your code).
    ///
    /// # Panics
    /// When `f` panics: the panic propagates once the walk has released its
    /// pin on the visited entry (running a close deferred behind it, if
    /// any). Entries not yet reached are not visited.
    ///
    /// ```
    /// use fdtable::FdTable;
    /// static TABLE: FdTable = FdTable::new();
    ///
    /// let a = TABLE.track(std::fs::File::open("/dev/null")?)?;
    /// let b = TABLE.track(std::fs::File::open("/dev/null")?)?;
    /// let mut seen = Vec::new();
    /// TABLE.for_each(|fd| seen.push(std::os::fd::AsRawFd::as_raw_fd(&fd)));
    /// assert_eq!(seen.len(), 2);
    ///
    /// // Dropping a handle inside the walk is fine: the number it visits
    /// // stays valid until the callback returns.
    /// let mut b = Some(b);
    /// TABLE.for_each(|_fd| drop(b.take()));
    /// assert_eq!(TABLE.len(), 1);
    /// # drop(a);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn for_each(&self, mut f: impl FnMut(BorrowedFd<'_>)) {
        // Entries tracked from now on (by `f` too) read `epoch + 1` or more.
        let epoch = self.walk_epoch.fetch_add(1, Ordering::Relaxed) & GEN_MASK;
        for (base, slots) in self.chunks_in_use() {
            for (fd, slot) in (base..).zip(slots) {
                let Some(pin) = self.pin(slot, fd, Some(epoch)) else {
                    continue;
                };
                if !pin.counted {
                    // SAFETY: saturated, and an enclosing visit of this
                    // thread holds a counted pin on this entry; that visit's
                    // callback cannot return before this one does, so its
                    // pin keeps `fd` open and ours until `f` returns.
                    // Nothing to link or drop.
                    f(unsafe { BorrowedFd::borrow_raw(fd) });
                    continue;
                }
                let gen = pin.word.gen();
                let node = PinNode::new(self.id(), fd, gen);
                // SAFETY: `node` outlives `visit`, whose drop unlinks it (on
                // return or unwind), before any node linked after it is
                // gone: inner walks unlink theirs first.
                unsafe { visits::link(&node) };
                let visit = Visit {
                    table: self,
                    slot,
                    fd,
                    gen,
                    node: &node,
                };
                // SAFETY: the pin keeps `fd` open and owned by the table (or
                // its handle) until `visit` drops, after `f` returns.
                f(unsafe { BorrowedFd::borrow_raw(fd) });
                drop(visit);
            }
        }
    }

    /// Unregister `fd` (generation `gen`) and close `owned`, the descriptor
    /// its handle held. The path behind `Tracked::close` and `Drop`.
    pub(crate) fn close_entry(&self, fd: RawFd, gen: u64, owned: OwnedFd) -> io::Result<()> {
        let raw = std::os::fd::IntoRawFd::into_raw_fd(owned);
        if raw != fd {
            // `into_owned_fd` gave back another descriptor than the one
            // registered (a breach of `Trackable`'s or `get_unchecked_mut`'s safety
            // contract): the registered number is not ours to close. Forget
            // it once no other thread visits it, close what we hold.
            self.forget_entry_leniently(fd, gen);
            return sys::close(raw);
        }
        let Some(slot) = self.slot(fd) else {
            return sys::close(raw);
        };
        let _mask = MaskGuard::new();
        loop {
            let w = slot.load();
            let ours = w.is_handle_of(gen);
            if !ours {
                // Cannot happen while handles are used as documented; the
                // handle owns `raw` either way.
                return sys::close(raw);
            }
            let next = if w.pins() == 0 {
                Word::FREE
            } else if w.state() == SlotState::Retired {
                // The `close_all` that retired it counted it; a `close_all`
                // still holding it must not count it again.
                w.with_state(SlotState::Closing).with_counted()
            } else {
                w.with_state(SlotState::Closing)
            };
            if slot.cas(w, next).is_err() {
                continue;
            }
            if w.state() == SlotState::Live {
                self.live.sub();
            }
            return if w.pins() == 0 {
                // Unpublished above, so a fork child or handler can no longer
                // claim this number; only now may the kernel recycle it.
                sys::close(raw)
            } else {
                // A walker still uses the number: the last unpin closes it.
                Ok(())
            };
        }
    }

    /// Count a close error nobody could be told about.
    pub(crate) fn count_swallowed(&self) {
        self.swallowed.fetch_add(1, Ordering::Relaxed);
    }

    /// A `Live` entry was unpublished (closed or taken back).
    pub(crate) fn count_unpublished_live(&self) {
        self.live.sub();
    }

    /// `n` `Live` entries were retired by
    /// [`retire_and_unpin`](Self::retire_and_unpin) (batched: one atomic
    /// operation per `close_all`, not per entry).
    pub(crate) fn count_retired_live(&self, n: usize) {
        self.live.sub_n(n);
    }

    /// Make [`len`](Self::len) exactly `n`: for the fork child, whose copy
    /// of the counter may be off (a fork between another thread's
    /// publishing compare-and-swap and its count update), after it has
    /// counted its `Live` entries. Only one thread may exist.
    pub(crate) fn reset_live_count(&self, n: usize) {
        self.live.reset_to(n);
    }

    /// Visit every published number with atomic loads only: the walk behind
    /// the fork-child path. `f` gets each number once, in ascending order.
    pub(crate) fn for_each_published(&self, mut f: impl FnMut(RawFd)) {
        for (base, slots) in self.chunks_in_use() {
            for (fd, slot) in (base..).zip(slots) {
                if slot.load().is_published() {
                    f(fd);
                }
            }
        }
    }
}

impl Default for FdTable {
    fn default() -> Self {
        FdTable::new()
    }
}

impl fmt::Debug for FdTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FdTable")
            .field("len", &self.len())
            .field("sealed", &self.is_sealed())
            .field("swallowed_close_errors", &self.swallowed_close_errors())
            .finish_non_exhaustive()
    }
}

impl Drop for FdTable {
    fn drop(&mut self) {
        // No handle or walk can outlive the table (they borrow it), so every
        // slot is `Free` and the chunks can go.
        for k in 0..CHUNKS {
            let chunk = self.chunks[k].load(Ordering::Acquire);
            if !chunk.is_null() {
                // SAFETY: installed by `slot_or_alloc` from `alloc_chunk`.
                unsafe { free_chunk(chunk, chunk_len(k)) };
            }
        }
    }
}

/// Keeps one slot pinned for the duration of a `for_each` callback; unpins
/// (and runs a deferred close) on return or unwind.
struct Visit<'a> {
    table: &'a FdTable,
    slot: &'a Slot,
    fd: RawFd,
    gen: u64,
    node: *const PinNode,
}

impl Drop for Visit<'_> {
    fn drop(&mut self) {
        // SAFETY: `node` is alive (it outlives `self` in `for_each`) and is
        // the head of this thread's list: inner walks unlinked theirs first.
        unsafe { visits::unlink(self.node) };
        self.table.unpin(self.slot, self.fd, self.gen);
    }
}
