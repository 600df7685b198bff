//! Quarantine mode: all asynchronous signals handled on one dedicated
//! thread, so the table's critical sections need no mask syscall pair.
//!
//! A mask guard costs a `pthread_sigmask` pair per close because a signal
//! handler could otherwise interrupt the closing thread between "close" and
//! "unregister". If no handler can ever run on the threads that touch the
//! table, the pair buys nothing but the check that it is so. [`enter`]
//! arranges exactly that:
//!
//! 1. it blocks the asynchronous signals (the set [`MaskGuard`] blocks) on
//!    the calling thread, normally the main thread at the top of `main`;
//!    every thread spawned later inherits that mask;
//! 2. it starts one small thread, `fdtable-signals`, which restores the
//!    original mask and only waits in `pause(2)`. The kernel delivers a
//!    process-directed signal to a thread that has it unblocked, so every
//!    handler (signal-hook's pipe writes for [`Interrupts`](crate::Interrupts),
//!    your own) runs there and never on a thread that mutates a table.
//!
//! A [`MaskGuard`] on a quarantined thread still issues its one
//! `pthread_sigmask(SIG_BLOCK)`: it is how the guard learns, soundly, that
//! the thread's mask really is fully blocked right now (it may have been
//! changed since the last guard). With everything already blocked, the
//! kernel answers without taking the process's signal lock, and the guard
//! skips the restore: one cheap syscall per guard instead of a pair, and a
//! thread that unblocked signals since is protected again by the same call.
//! A thread whose mask is open (one that existed before [`enter`], or one
//! that unblocked signals itself) pays the pair: it stays protected, it is
//! just not fast. Such threads are counted in [`unprotected_threads_seen`].
//!
//! Programs spawned through a command with [`CommandExt`](crate::CommandExt)'s
//! `pre_exec` hook start with the mask the program had *before* quarantine,
//! not with everything blocked. Every `CommandExt` call made while
//! quarantine is on installs that hook (so the spawn forks), and
//! [`child_fds`](crate::CommandExt::child_fds) always does (unless its
//! value asks for nothing). A command without it starts its program with
//! the spawning thread's mask, that is with every asynchronous signal
//! blocked: a plain `Command`, and one whose only call is a hook-free
//! [`close_tracked_fds`](crate::CommandExt::close_tracked_fds) made before
//! [`enter`]. Configure commands after [`enter`].
//!
//! # Examples
//! ```no_run
//! fn main() -> std::io::Result<()> {
//!     // First thing, before any thread exists:
//!     let report = fdtable::quarantine::enter()?;
//!     assert_eq!(report.preexisting_threads(), Some(0));
//!     // ... spawn workers, track descriptors: drops now cost one close(2),
//!     // one pthread_sigmask that changes nothing, and two atomic operations.
//!     Ok(())
//! }
//! ```
//!
//! # Limitations
//! - Signals sent to a specific worker thread (`pthread_kill`, `tgkill`) stay
//!   pending on it: that thread has them blocked for good.
//! - Code that unblocks asynchronous signals on a worker makes handlers run
//!   there again (guards on it then pay the syscall pair); do not do that.
//! - Quarantine cannot be left in the process that entered it: the masks
//!   it set are inherited by every thread created since. (A fork child
//!   leaves it in
//!   [`FdTable::retire_all_in_child`](crate::FdTable::retire_all_in_child),
//!   see below.)
//! - A `fork` child that goes on running (no `exec`) inherits the forking
//!   thread's fully blocked mask but not the signal thread: no asynchronous
//!   signal is ever delivered to it (it survives `kill -TERM`, and an
//!   `Interrupts` it installs never receives anything).
//!   [`FdTable::retire_all_in_child`](crate::FdTable::retire_all_in_child)
//!   leaves quarantine in the child: it restores the pre-quarantine mask on
//!   the child's thread and turns the mode off there (call it on any table,
//!   `FdTable::global()` if the child has nothing to release). A child
//!   that does not call it must restore an open mask itself, first thing.
//!   Programs spawned through a command with
//!   [`CommandExt`](crate::CommandExt)'s hook get the pre-quarantine mask
//!   anyway (see above).
//! - A `Command` spawned in quarantine without that hook (a plain one, or
//!   one configured with a hook-free `close_tracked_fds` before [`enter`])
//!   starts its program with every asynchronous signal blocked, as std's
//!   children inherit the spawning thread's mask.

use std::cell::UnsafeCell;
use std::fmt;
use std::io;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicI64, AtomicU8, Ordering};

use crate::mask::{async_signal_set, count_open_mask_threads, open_mask_threads};
#[cfg(doc)]
use crate::MaskGuard;

const OFF: u8 = 0;
const ENTERING: u8 = 1;
const ACTIVE: u8 = 2;

static STATE: AtomicU8 = AtomicU8::new(OFF);
static SIGNAL_THREAD_TID: AtomicI64 = AtomicI64::new(0);

/// The mask the program had before `enter`, written once before `STATE`
/// becomes `ACTIVE` (release) and only read after seeing `ACTIVE` (acquire).
struct OriginalMask(UnsafeCell<MaybeUninit<libc::sigset_t>>);
// SAFETY: written exactly once, by the thread that won the OFF -> ENTERING
// transition, before the release store of ACTIVE; read only after an acquire
// load of ACTIVE. No concurrent write exists.
unsafe impl Sync for OriginalMask {}
static ORIGINAL_MASK: OriginalMask = OriginalMask(UnsafeCell::new(MaybeUninit::uninit()));

/// What [`enter`] found and did.
///
/// The report is `#[must_use]`: threads that were already running when
/// quarantine was entered are not covered by it, and
/// [`preexisting_threads`](QuarantineReport::preexisting_threads) says how
/// many there were.
/// ```compile_fail
/// #![deny(unused_must_use)]
/// fn main() -> std::io::Result<()> {
///     fdtable::quarantine::enter()?; // error: unused `QuarantineReport`
///     Ok(())
/// }
/// ```
#[derive(Debug, Clone)]
#[must_use = "preexisting_threads() says how many threads quarantine does not cover"]
pub struct QuarantineReport {
    preexisting_threads: Option<usize>,
    signal_thread_tid: Option<i64>,
}

impl QuarantineReport {
    /// Threads other than the caller that were already running when
    /// quarantine was entered (Linux: counted in `/proc/self/task`), `None`
    /// where that cannot be known. Their masks were not changed: guards on
    /// them keep issuing the syscall pair, and handlers may still run on
    /// them. Async-signal-safe.
    pub fn preexisting_threads(&self) -> Option<usize> {
        self.preexisting_threads
    }

    /// The kernel thread id of the thread that runs every asynchronous
    /// signal handler from now on: `gettid` on Linux,
    /// `pthread_threadid_np` on Apple systems, `pthread_getthreadid_np` on
    /// FreeBSD, `_lwp_self` on NetBSD, `getthrid` on OpenBSD; `None`
    /// elsewhere. Async-signal-safe.
    pub fn signal_thread_tid(&self) -> Option<i64> {
        self.signal_thread_tid
    }
}

/// Enter quarantine mode; see the [module documentation](self).
///
/// Call it at the very start of `main`, before any other thread exists.
///
/// # Errors
/// In every case nothing changed:
/// - `AlreadyExists` if quarantine is already on;
/// - `InvalidInput` if a [`MaskGuard`] is alive on the calling thread (its
///   drop would later restore the open mask it saved, leaving this thread
///   exposed while it looks quarantined): a logic error, retrying cannot
///   help;
/// - the OS error if the signal thread cannot be started.
///
/// Not async-signal-safe (spawns a thread).
pub fn enter() -> io::Result<QuarantineReport> {
    if crate::MaskGuard::is_active() {
        // The live guard would restore its saved (open) mask later, leaving
        // this thread exposed while guards on it believe it quarantined.
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "cannot enter signal quarantine while a MaskGuard is alive on this thread",
        ));
    }
    if STATE
        .compare_exchange(OFF, ENTERING, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "signal quarantine is already active",
        ));
    }
    let preexisting_threads = crate::sys::thread_count().map(|n| n.saturating_sub(1));
    let block = async_signal_set();
    let original = crate::sys::change_sigmask(libc::SIG_BLOCK, Some(&block));
    // SAFETY: we won OFF -> ENTERING, so no one else writes ORIGINAL_MASK,
    // and no one reads it before ACTIVE is published below.
    unsafe { *ORIGINAL_MASK.0.get() = MaybeUninit::new(original) };

    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("fdtable-signals".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            set_thread_mask(&original);
            let _ = tid_tx.send(crate::sys::current_tid());
            loop {
                // Handlers run here.
                crate::sys::pause();
            }
        });
    if let Err(error) = spawned {
        // Undo our own block; the state goes back to OFF.
        set_thread_mask(&original);
        STATE.store(OFF, Ordering::Release);
        return Err(error);
    }
    let signal_thread_tid = tid_rx.recv().ok().flatten();
    SIGNAL_THREAD_TID.store(signal_thread_tid.unwrap_or(0), Ordering::Relaxed);
    // From now on, a thread whose guard finds its mask open is reported.
    count_open_mask_threads();
    STATE.store(ACTIVE, Ordering::Release);
    Ok(QuarantineReport {
        preexisting_threads,
        signal_thread_tid,
    })
}

/// Whether quarantine mode is on. Async-signal-safe.
pub fn is_active() -> bool {
    STATE.load(Ordering::Acquire) == ACTIVE
}

/// How many threads created a mask guard while quarantine was on but did not
/// have every asynchronous signal blocked at that moment (each is counted
/// once; such guards pay the syscall pair). Async-signal-safe.
pub fn unprotected_threads_seen() -> usize {
    open_mask_threads()
}

/// The kernel thread id of the quarantine's signal thread: `None` when
/// quarantine is off or the id is unknown (outside Linux).
/// Async-signal-safe.
pub fn signal_thread_tid() -> Option<i64> {
    match SIGNAL_THREAD_TID.load(Ordering::Relaxed) {
        0 => None,
        tid => Some(tid),
    }
}

/// The mask programs spawned through the exec hook should start with: the
/// pre-quarantine mask when quarantine is on. Async-signal-safe (a load and
/// a copy), so the child side of `fork` may call it.
pub(crate) fn mask_before_quarantine() -> Option<libc::sigset_t> {
    if is_active() {
        // SAFETY: ACTIVE was observed with acquire ordering, so the one write
        // of ORIGINAL_MASK happened before and no write follows.
        Some(unsafe { (*ORIGINAL_MASK.0.get()).assume_init() })
    } else {
        None
    }
}

/// In a fork child that goes on running: leave quarantine. The child has
/// only the forking thread, with the fully blocked mask it inherited, and
/// no signal thread, so no asynchronous signal could ever be delivered to
/// it. Restores the pre-quarantine mask on the calling thread and turns
/// the mode off (the signal thread's id goes too). Does nothing when
/// quarantine is off.
///
/// Async-signal-safe (atomics, a copy, one `pthread_sigmask`), for the
/// child side of `fork`.
///
/// # Safety
/// Call it only in a fork child, on its only thread, before it starts any
/// other: in a process whose signal thread exists, it would unblock a
/// worker thread and let handlers run there. (A guard the forking thread
/// held at fork time, against the docs, protects nothing in the child from
/// here on; its drop keeps the open mask.)
pub(crate) unsafe fn leave_in_child() {
    let Some(original) = mask_before_quarantine() else {
        return;
    };
    // Off first: from here on a guard on this thread finds the mask open
    // and restores it, as on any thread outside quarantine.
    STATE.store(OFF, Ordering::Release);
    SIGNAL_THREAD_TID.store(0, Ordering::Relaxed);
    set_thread_mask(&original);
}

/// Make `mask` the calling thread's signal mask (the pre-quarantine mask,
/// wherever quarantine is undone or does not apply). Async-signal-safe.
fn set_thread_mask(mask: &libc::sigset_t) {
    crate::sys::set_sigmask(mask);
}

impl fmt::Display for QuarantineReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("signal quarantine on (signal thread tid ")?;
        match self.signal_thread_tid {
            Some(tid) => write!(f, "{tid}")?,
            None => f.write_str("unknown")?,
        }
        match self.preexisting_threads {
            Some(n) => write!(f, ", {n} thread(s) predate it)"),
            None => f.write_str(", threads that predate it unknown)"),
        }
    }
}
