//! [`FdTable`]: the lock-free slot array and every operation on it.
//!
//! Slots live in chunks of doubling size reached through a fixed array of
//! chunk pointers: chunk 0 covers fd numbers `0..1024`, chunk `k >= 1` covers
//! `1024 << (k-1) .. 1024 << k`. A chunk is allocated the first time a number
//! in its range is tracked and is never freed while the table lives, so a
//! reference to a slot stays valid without any lock, from any thread, inside
//! a signal handler or in a fork child. Memory is 8 bytes per fd number in the
//! chunks in use: at most `max(8 KiB, 16 * (highest tracked fd + 1))` bytes.
//!
//! Ordering rule that the child path and other threads rely on: **publish
//! after** the number is open and close-on-exec, **unpublish before**
//! `close(2)`. Everything that closes does so inside a [`MaskGuard`], so a
//! handler on the same thread never sees the number unpublished but still open.

use std::cell::Cell;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::ptr;

use crate::counter::StripedCount;
use crate::mask::MaskGuard;
use crate::slot::{tracked_by, Slot, SlotState, Word, GEN_MASK, MAX_PINS};
use crate::sync::{backoff, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use crate::sys;
use crate::tracked::{TrackError, Tracked};

#[cfg(not(fdtable_loom))]
const BASE_SHIFT: u32 = 10;
#[cfg(fdtable_loom)]
const BASE_SHIFT: u32 = 2;
const CHUNKS: usize = 32;

/// Which chunk holds `fd`, and where inside it.
fn locate(fd: usize) -> (usize, usize) {
    let hi = fd >> BASE_SHIFT;
    if hi == 0 {
        (0, fd)
    } else {
        let k = (usize::BITS - hi.leading_zeros()) as usize;
        (k, fd - chunk_base(k))
    }
}

fn chunk_base(k: usize) -> usize {
    if k == 0 {
        0
    } else {
        1 << (BASE_SHIFT as usize + k - 1)
    }
}

fn chunk_len(k: usize) -> usize {
    if k == 0 {
        1 << BASE_SHIFT
    } else {
        1 << (BASE_SHIFT as usize + k - 1)
    }
}

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
/// [`is_empty`](FdTable::is_empty) and
/// [`swallowed_close_errors`](FdTable::swallowed_close_errors) only read
/// atomics; [`close_all_in_child`](FdTable::close_all_in_child) and
/// [`retire_all_in_child`](FdTable::retire_all_in_child) also make
/// async-signal-safe syscalls. `track` may allocate a chunk; `for_each` runs
/// your code; `close_all` collects errors in a `Vec`: none of those belongs in
/// a signal handler.
pub struct FdTable {
    chunks: [AtomicPtr<Slot>; CHUNKS],
    /// Bumped by every walk as it starts. `track` stamps an entry with the
    /// current value (a read of a line that only walks write), so a walk
    /// that started at `e` (and made it `e + 1`) visits stamps `<= e`.
    walk_epoch: AtomicU64,
    /// Entries in state `Live`.
    live: StripedCount,
    /// `close(2)` errors that no caller could be told about.
    swallowed: AtomicUsize,
}

// One node per slot pinned by a `for_each` frame on this thread, linked
// through the stack frames themselves: no allocation, no destructor.
struct PinNode {
    table: *const FdTable,
    fd: RawFd,
    gen: u64,
    prev: *const PinNode,
}

#[cfg(not(fdtable_loom))]
thread_local! {
    static PINS_HELD: Cell<*const PinNode> = const { Cell::new(ptr::null()) };
}

// loom runs every model thread as a coroutine on one OS thread, so a std
// thread-local would be shared by all of them (and a list linked through
// their stacks would dangle): use loom's per-model-thread storage instead.
#[cfg(fdtable_loom)]
loom::thread_local! {
    static PINS_HELD: Cell<*const PinNode> = Cell::new(ptr::null());
}

/// How many pins on `(table, fd, gen)` the current thread's walks hold.
fn pins_held_here(table: *const FdTable, fd: RawFd, gen: u64) -> u64 {
    let mut count = 0;
    let mut node = PINS_HELD.with(Cell::get);
    while !node.is_null() {
        // SAFETY: every node in the list lives in a `for_each` frame that is
        // still on this thread's stack; it unlinks itself before it dies.
        let n = unsafe { &*node };
        if ptr::eq(n.table, table) && n.fd == fd && n.gen == gen {
            count += 1;
        }
        node = n.prev;
    }
    count
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

    /// The slot for `fd`, if its chunk exists. Async-signal-safe.
    fn slot(&self, fd: RawFd) -> Option<&Slot> {
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
    fn chunks_in_use(&self) -> impl Iterator<Item = (RawFd, &[Slot])> {
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
    /// `F_SETFD` only when the flag is missing), then publishes it. On
    /// failure nothing is closed and the resource comes back inside the
    /// error:
    /// - the number is already tracked by this table: `AlreadyExists`;
    /// - the number is not open: the OS error (`EBADF`);
    /// - the slot memory cannot be allocated: `ENOMEM`.
    ///
    /// Not async-signal-safe (may allocate the chunk for a new range of
    /// numbers). Takes no signal mask: publishing is one atomic step, and the
    /// number is open both before and after it.
    ///
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
    pub fn track<T: AsFd + Into<OwnedFd>>(
        &self,
        resource: T,
    ) -> Result<Tracked<'_, T>, TrackError<T>> {
        let fd = resource.as_fd().as_raw_fd();
        if let Err(error) = sys::set_cloexec(fd, true) {
            return Err(TrackError::new(resource, error));
        }
        let slot = match self.slot_or_alloc(fd) {
            Ok(slot) => slot,
            Err(error) => return Err(TrackError::new(resource, error)),
        };
        // Slot first (acquire), epoch second: if this number was released by
        // `into_inner` inside a walk, that walk's epoch bump happens-before
        // the release we just read, so our stamp is newer than its pins and
        // its stale unpin cannot touch the new entry.
        let current = slot.load();
        let gen = self.walk_epoch.load(Ordering::Relaxed) & GEN_MASK;
        let published = current.state() == SlotState::Free
            && slot
                .cas(current, Word::new(SlotState::Live, 0, gen))
                .is_ok();
        if !published {
            let error = io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("fd {fd} is already tracked by this table"),
            );
            return Err(TrackError::new(resource, error));
        }
        self.live.add();
        Ok(Tracked::new(self, fd, gen, resource))
    }

    /// Number of live entries: tracked, not closed, not retired by
    /// [`close_all`](FdTable::close_all).
    ///
    /// Async-signal-safe (a few relaxed atomic loads, summed: the count is
    /// striped per thread). A snapshot that may be briefly off while other
    /// threads update it.
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
    /// told: handles dropped instead of [`Tracked::close`]d, and closes that
    /// were deferred until a walk released the number.
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
    ///   returns, even if its handle is closed meanwhile (by `f` or another
    ///   thread): the close then completes right after `f` returns.
    ///
    /// No signal mask is held while `f` runs. Calling
    /// [`Tracked::into_inner`] from another thread on the entry being visited
    /// waits until `f` returns. Calling it from inside `f` on the entry being
    /// visited does not wait: the descriptor is yours again, so do not close
    /// it before `f` returns if you still use the `BorrowedFd`.
    ///
    /// Not async-signal-safe (runs your code).
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
                let Some(gen) = self.pin(slot, Some(epoch)) else {
                    continue;
                };
                let node = PinNode {
                    table: self,
                    fd,
                    gen,
                    prev: PINS_HELD.with(Cell::get),
                };
                PINS_HELD.with(|head| head.set(&node));
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

    /// Pin a `Live` slot, only if tracked before `epoch` when one is given.
    /// Returns the entry's generation.
    fn pin(&self, slot: &Slot, epoch: Option<u64>) -> Option<u64> {
        let mut round = 0;
        loop {
            let w = slot.load();
            let in_walk = epoch.map_or(true, |epoch| tracked_by(w.gen(), epoch));
            if w.state() != SlotState::Live || !in_walk {
                return None;
            }
            if w.pins() == MAX_PINS {
                backoff(round);
                round += 1;
                continue;
            }
            if slot.cas(w, w.with_pins(w.pins() + 1)).is_ok() {
                return Some(w.gen());
            }
        }
    }

    /// Drop one pin of generation `gen`; the last pin of a `Closing` entry
    /// closes the number.
    fn unpin(&self, slot: &Slot, fd: RawFd, gen: u64) {
        let mut mask = None;
        loop {
            let w = slot.load();
            if w.state() == SlotState::Free || w.gen() != gen || w.pins() == 0 {
                // Released by `into_inner` on this thread; nothing is ours.
                return;
            }
            if w.state() == SlotState::Closing && w.pins() == 1 {
                mask.get_or_insert_with(MaskGuard::new);
                if slot.cas(w, Word::FREE).is_ok() {
                    // Unpublished; now the number may go back to the kernel.
                    if sys::close(fd).is_err() {
                        self.swallowed.fetch_add(1, Ordering::Relaxed);
                    }
                    return;
                }
            } else if slot.cas(w, w.with_pins(w.pins() - 1)).is_ok() {
                return;
            }
        }
    }

    /// Unregister `fd` (generation `gen`) and close `owned`, the descriptor
    /// its handle held. The path behind `Tracked::close` and `Drop`.
    pub(crate) fn close_entry(&self, fd: RawFd, gen: u64, owned: OwnedFd) -> io::Result<()> {
        let raw = std::os::fd::IntoRawFd::into_raw_fd(owned);
        if raw != fd {
            // `Into<OwnedFd>` gave back another descriptor than the one
            // registered (a `get_mut` contract breach, or a `T` whose `AsFd`
            // and `Into<OwnedFd>` disagree): the registered number is not
            // ours to close. Forget it, close what we hold.
            self.forget_entry(fd, gen);
            return sys::close(raw);
        }
        let Some(slot) = self.slot(fd) else {
            return sys::close(raw);
        };
        let _mask = MaskGuard::new();
        loop {
            let w = slot.load();
            let ours = w.gen() == gen && matches!(w.state(), SlotState::Live | SlotState::Retired);
            if !ours {
                // Cannot happen while handles are used as documented; the
                // handle owns `raw` either way.
                return sys::close(raw);
            }
            let next = if w.pins() == 0 {
                Word::FREE
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

    /// Unregister `fd` without closing it, after waiting for pins held by
    /// other threads. The path behind `Tracked::into_inner`.
    pub(crate) fn forget_entry(&self, fd: RawFd, gen: u64) {
        let mut round = 0;
        while !self.try_forget_entry(fd, gen) {
            backoff(round);
            round = round.saturating_add(1);
        }
    }

    /// Unregister `fd` without closing it unless another thread's walk is
    /// visiting it; returns `false` (and changes nothing) in that case. The
    /// path behind `Tracked::try_into_inner`.
    pub(crate) fn try_forget_entry(&self, fd: RawFd, gen: u64) -> bool {
        let Some(slot) = self.slot(fd) else {
            return true;
        };
        let own = pins_held_here(self, fd, gen);
        loop {
            let w = slot.load();
            let ours = w.gen() == gen && matches!(w.state(), SlotState::Live | SlotState::Retired);
            if !ours {
                return true;
            }
            if w.pins() > own {
                return false;
            }
            if slot.cas(w, Word::FREE).is_ok() {
                if w.state() == SlotState::Live {
                    self.live.sub();
                }
                return true;
            }
        }
    }

    /// Count a close error nobody could be told about.
    pub(crate) fn count_swallowed(&self) {
        self.swallowed.fetch_add(1, Ordering::Relaxed);
    }

    /// Release every live entry now, keeping the numbers reserved.
    ///
    /// Handles may still be in use on other threads, so their numbers cannot
    /// go back to the kernel yet (the next `open` would reuse them under a
    /// thread still writing to "its" file). Instead each live descriptor is
    /// atomically replaced by a dead placeholder (`dup3`): the original file
    /// is released at once (a pipe's reader sees end-of-file, a lock is
    /// dropped), sockets are `shutdown(SHUT_RDWR)` first so threads blocked
    /// in `read`/`accept` wake up, and any later I/O through the handle fails
    /// (`EBADF` on Linux). The placeholder is closed when the handle drops.
    /// Retired entries no longer count in [`len`](FdTable::len) but
    /// [`contains`](FdTable::contains) reports them until their handles drop.
    ///
    /// Takes the signal mask once for the whole batch. Entries being closed
    /// at that moment behind a walk are left to the walk.
    ///
    /// `shutdown(2)` acts on the socket, not on the descriptor: it also ends
    /// the connection for every other descriptor of the same socket, such as
    /// a `try_clone` or a copy a child process inherited (for example through
    /// [`CommandExt::close_tracked_fds_except`](crate::CommandExt)). Retire
    /// such sockets with [`Tracked::into_inner`] first if they must survive.
    ///
    /// On Linux the placeholder is an `O_PATH` descriptor of `/`: `read` and
    /// `write` through a retired handle fail with `EBADF`, but `fstat` (and
    /// `File::metadata`) succeed and describe `/`.
    ///
    /// Not async-signal-safe (the report allocates for errors). In a fork
    /// child use [`close_all_in_child`](FdTable::close_all_in_child).
    ///
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
    pub fn close_all(&self) -> CloseAllReport {
        let mut report = CloseAllReport::default();
        let placeholder = match sys::open_placeholder() {
            Ok(fd) => fd,
            Err(error) => {
                report.errors.push((-1, error));
                return report;
            }
        };
        let _mask = MaskGuard::new();
        for (base, slots) in self.chunks_in_use() {
            for (fd, slot) in (base..).zip(slots) {
                let Some(gen) = self.pin(slot, None) else {
                    continue;
                };
                // The pin keeps the number ours while we swap its file out.
                sys::shutdown_if_socket(fd);
                let swapped = sys::replace_with_placeholder(placeholder.as_raw_fd(), fd);
                if self.retire_and_unpin(slot, fd, gen, swapped.is_ok()) {
                    report.released += 1;
                }
                if let Err(error) = swapped {
                    report.errors.push((fd, error));
                }
            }
        }
        report
    }

    /// Drop `close_all`'s pin; if the placeholder went in and the entry is
    /// still live, mark it `Retired` in the same step. Any other case is a
    /// plain [`unpin`](Self::unpin), which also performs a close deferred
    /// behind this pin. Returns whether this call retired a live entry.
    fn retire_and_unpin(&self, slot: &Slot, fd: RawFd, gen: u64, swapped: bool) -> bool {
        if swapped {
            loop {
                let w = slot.load();
                debug_assert!(w.gen() == gen && w.pins() > 0, "pinned slot changed owner");
                if w.state() != SlotState::Live {
                    break;
                }
                let retired = w.with_state(SlotState::Retired).with_pins(w.pins() - 1);
                if slot.cas(w, retired).is_ok() {
                    self.live.sub();
                    return true;
                }
            }
        }
        self.unpin(slot, fd, gen);
        false
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
        let prev = unsafe { (*self.node).prev };
        PINS_HELD.with(|head| head.set(prev));
        self.table.unpin(self.slot, self.fd, self.gen);
    }
}

/// Chunks come straight from anonymous `mmap`, not the heap: their pages are
/// zero until first written, and written only through slot CASes. `fork`
/// copies a threaded parent's memory page by page while other threads run;
/// with heap memory a child could see a fresh chunk pointer next to stale
/// bytes from before the chunk was zeroed, and read them as published
/// numbers. An untouched anonymous page can only ever read as zero, and a
/// VMA created by `mmap` is either wholly in the child or not at all.
#[cfg(not(fdtable_loom))]
fn alloc_chunk(len: usize) -> io::Result<*mut Slot> {
    let bytes = len
        .checked_mul(std::mem::size_of::<Slot>())
        .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOMEM))?;
    // SAFETY: a fresh private anonymous mapping; no existing memory is
    // touched. All-zero bytes are valid `Slot`s holding `Word::FREE`.
    let ptr = unsafe {
        libc::mmap(
            ptr::null_mut(),
            bytes,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANON,
            -1,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(ptr.cast::<Slot>())
}

/// # Safety
/// `ptr` must come from `alloc_chunk(len)` and not be used afterwards.
#[cfg(not(fdtable_loom))]
unsafe fn free_chunk(ptr: *mut Slot, len: usize) {
    // SAFETY: guaranteed by the caller: the mapping of exactly this size.
    unsafe { libc::munmap(ptr.cast(), len * std::mem::size_of::<Slot>()) };
}

#[cfg(fdtable_loom)]
fn alloc_chunk(len: usize) -> io::Result<*mut Slot> {
    let slots: Box<[Slot]> = (0..len).map(|_| Slot::new()).collect();
    Ok(Box::into_raw(slots).cast::<Slot>())
}

/// # Safety
/// `ptr` must come from `alloc_chunk(len)` and not be used afterwards.
#[cfg(fdtable_loom)]
unsafe fn free_chunk(ptr: *mut Slot, len: usize) {
    // SAFETY: guaranteed by the caller.
    drop(unsafe { Box::from_raw(ptr::slice_from_raw_parts_mut(ptr, len)) });
}

/// What [`FdTable::close_all`] did.
///
/// ```
/// let report = fdtable::FdTable::new().close_all();
/// assert_eq!(report.released(), 0);
/// assert!(report.is_ok());
/// ```
#[derive(Debug, Default)]
pub struct CloseAllReport {
    released: usize,
    errors: Vec<(RawFd, io::Error)>,
}

impl CloseAllReport {
    /// How many live entries were released (their files dropped, their
    /// numbers now reserved by placeholders). Async-signal-safe.
    pub fn released(&self) -> usize {
        self.released
    }

    /// The entries that could not be released, with why. A number of `-1`
    /// means the placeholder itself could not be opened, so nothing was
    /// released. Async-signal-safe.
    pub fn errors(&self) -> &[(RawFd, io::Error)] {
        &self.errors
    }

    /// Whether every live entry was released. Async-signal-safe.
    pub fn is_ok(&self) -> bool {
        self.errors.is_empty()
    }
}

#[cfg(all(test, not(fdtable_loom)))]
mod tests {
    use super::*;

    #[test]
    fn chunks_tile_the_fd_space_without_gaps() {
        let mut expected = 0usize;
        for k in 0..23 {
            assert_eq!(chunk_base(k), expected, "chunk {k}");
            assert_eq!(locate(chunk_base(k)), (k, 0));
            assert_eq!(
                locate(chunk_base(k) + chunk_len(k) - 1),
                (k, chunk_len(k) - 1)
            );
            expected += chunk_len(k);
        }
        assert!(locate(i32::MAX as usize).0 < CHUNKS);
    }
}
