//! [`MaskGuard`]: block asynchronous signals on this thread for a scope.
//!
//! What a user needs (which signals stay deliverable, nesting, the
//! `mem::forget` caveat, where a guard may be used) is on [`MaskGuard`].
//!
//! # Internal details
//! The outermost guard of a thread keeps the mask it found, and whether it
//! must restore it, in the guard object itself; the only thread-local the
//! guard's own work depends on is `DEPTH`, the number of live guards. The
//! order makes a guard correct even when a handler that makes its own guard
//! interrupts it anywhere (a handler for a signal the guard leaves
//! deliverable: SIGTRAP, SIGSEGV, SIGSYS, ..., also sent by `kill`):
//!
//! - `new`: read `DEPTH`; if 0, block and keep the old mask in the object;
//!   then `DEPTH = depth + 1`. A handler that runs before the block finds
//!   depth 0 and restores what it found; one that runs after it finds
//!   depth 0 too, and everything already blocked, so its guard's restore
//!   changes nothing; either way the object still holds the right mask.
//! - `drop`: `DEPTH = depth - 1`, then restore from the object. A handler
//!   in between finds depth 0 and everything blocked: its restore changes
//!   nothing.
//!
//! Guards may be dropped in another order than they were made. When the
//! outermost object drops while others live, it hands its restore over
//! through the thread-locals `SAVED`/`RESTORE_LATE`, and the guard whose
//! drop brings `DEPTH` to 0 performs it. That one reads them *before*
//! lowering `DEPTH`: at depth 1 a handler's guard is nested and writes
//! nothing, so the hand-over cannot be overwritten.
//!
//! `SAVED` also holds, while `DEPTH > 0`, the mask in force before this
//! thread's outermost guard (written by the outermost guard after its
//! block, before it raises `DEPTH`), for readers other than the guard
//! itself. It has one harmless race of its own: a handler that interrupts
//! the outermost guard's `new` between that write and the `DEPTH` store
//! makes a guard that finds depth 0 and overwrites `SAVED` with the
//! blocked mask, so `SAVED` says "everything blocked" for the rest of the
//! outer guard's life. The guard's own restore never reads it (it uses the
//! object), so only a reader of `SAVED` sees the blocked mask.
//!
//! The thread-locals are `const`-initialised and have no destructor, so a
//! guard works from a thread-local destructor, at exit, in a fork child and
//! inside a signal handler.

use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;
use std::mem::MaybeUninit;

use crate::sys;

thread_local! {
    /// How many guards are alive on this thread.
    static DEPTH: Cell<usize> = const { Cell::new(0) };
    /// The mask in force before this thread's outermost guard (valid while
    /// `DEPTH > 0`; see the module's internal details for its one race).
    /// Also the hand-over of an outermost guard dropped before the others.
    static SAVED: Cell<MaybeUninit<libc::sigset_t>> = const { Cell::new(MaybeUninit::uninit()) };
    /// The outermost guard was dropped while others lived and its restore
    /// of `SAVED` falls to the guard whose drop brings `DEPTH` to 0.
    static RESTORE_LATE: Cell<bool> = const { Cell::new(false) };
}

/// The set a guard blocks (every signal but the synchronous ones and the
/// C library's internal ones): the platform's, from `sys` (built at compile
/// time on 64-bit Linux, whose layout is known; at run time elsewhere).
pub(crate) use crate::sys::async_signal_set;

/// The mask this thread had before its outermost live [`MaskGuard`], while
/// one is alive (`SAVED`, see the module's internal details for its one
/// harmless race). The exec hook gives it to the new program. Async-signal-safe: `const` thread-locals without a
/// destructor, read in a fork child by the thread that forked.
pub(crate) fn mask_before_guards() -> Option<libc::sigset_t> {
    if DEPTH.with(Cell::get) > 0 {
        // SAFETY: the outermost guard stores an initialised mask in SAVED
        // before it raises DEPTH above zero, and nothing clears it while
        // DEPTH stays above zero.
        Some(unsafe { SAVED.with(Cell::get).assume_init() })
    } else {
        None
    }
}

/// RAII guard that blocks asynchronous signals on the current thread.
///
/// Creating the outermost guard on a thread issues one
/// `pthread_sigmask(SIG_BLOCK)`; dropping the last one restores exactly the
/// mask that was in force before (one `pthread_sigmask(SIG_SETMASK)`, skipped
/// when the block changed nothing because the thread already had every one
/// of these signals blocked). Guards created while another is alive on the
/// same thread cost no syscall. Signals that arrive meanwhile stay pending
/// and are delivered on restore.
///
/// # Which signals
/// Every blockable signal except the synchronous fault signals `SIGSEGV`,
/// `SIGBUS`, `SIGFPE`, `SIGILL`, `SIGTRAP` and `SIGSYS`, which must still be
/// able to kill the process (blocking them would turn a crash into a hang).
/// `SIGKILL` and `SIGSTOP` cannot be blocked at all, and the C library's
/// internal signals stay deliverable (glibc's 32 and 33; musl's 32, 33 and
/// 34).
///
/// "Every blockable signal" is whatever the system has: on Linux the
/// real-time signals too (`SIGRTMIN`..`SIGRTMAX`), on macOS the 31
/// standard ones (it has no real-time signals), on the BSDs and illumos
/// their own sets, `SIGINFO` (Ctrl-T) included where it exists. On 64-bit
/// Linux the set is built at compile time; elsewhere it is filled at run
/// time (`sigfillset`). The outermost guard costs two syscalls (block,
/// restore), nested ones none.
///
/// # Where it may be used
/// Async-signal-safe: creating and dropping a guard may be done inside a
/// signal handler, in a fork child, in a thread-local destructor and at
/// exit (its thread-local state is `const`-initialised, without a
/// destructor). That includes a handler for a signal the guard leaves
/// deliverable (`SIGTRAP`, `SIGSEGV`, ...) which interrupts another guard
/// of the same thread in the middle of its creation or drop: the
/// interrupted guard still restores exactly the mask it found.
///
/// Guards may be dropped in any order; the mask comes back when the last
/// guard of the thread drops.
///
/// The guard is neither `Send` nor `Sync`: a mask belongs to the thread that
/// set it.
///
/// ```compile_fail
/// fn needs_send<T: Send>(_: T) {}
/// needs_send(fdtable::MaskGuard::new());
/// ```
/// ```compile_fail
/// fn needs_sync<T: Sync>(_: &T) {}
/// needs_sync(&fdtable::MaskGuard::new());
/// ```
///
/// Do not run code that spawns processes while a guard is held: a child
/// inherits the blocked mask. A [`Command`](std::process::Command)
/// configured through [`CommandExt`](crate::CommandExt) while a guard is
/// alive on the configuring thread gets a `pre_exec` hook that hands the new
/// program the mask from before the outermost guard, and so does any
/// command with a [`ChildFds`](crate::ChildFds) hook spawned under a
/// guard; a plain `Command`, or one whose only call is a
/// hook-free [`close_tracked_fds`](crate::CommandExt::close_tracked_fds)
/// made with no guard alive, spawned under one starts its program with
/// signals blocked.
///
/// # Limitations
/// `mem::forget` on a guard leaves the signals blocked on this thread for
/// good (and every later guard on it nested), as a leaked `MutexGuard` leaves
/// its mutex locked.
///
/// # Examples
/// ```
/// use fdtable::MaskGuard;
///
/// let guard = MaskGuard::new();
/// // SIGINT, SIGTERM, SIGUSR1, ... are held pending here.
/// let nested = MaskGuard::new(); // no syscall
/// drop(nested);
/// drop(guard); // the previous mask is back; pending signals are delivered
/// ```
///
/// A guard dropped at once protects nothing:
/// ```compile_fail
/// #![deny(unused_must_use)]
/// fdtable::MaskGuard::new();
/// ```
#[must_use = "signals are unblocked again as soon as the guard is dropped"]
pub struct MaskGuard {
    /// What the outermost guard found; `None` for a nested guard.
    outermost: Option<Outermost>,
    _not_send: PhantomData<*const ()>,
}

/// The outermost guard's own state (see the module's internal details).
struct Outermost {
    /// The mask in force before the guard.
    saved: libc::sigset_t,
}

impl MaskGuard {
    /// Block asynchronous signals on this thread until the guard drops.
    ///
    /// Async-signal-safe. Never fails: `pthread_sigmask` can only fail for an
    /// invalid `how`, which this code never passes.
    ///
    /// # References
    /// `pthread_sigmask(3)`
    // No `Default`: making a value would block signals as a side effect.
    #[allow(clippy::new_without_default)]
    pub fn new() -> MaskGuard {
        let depth = DEPTH.with(Cell::get);
        let outermost = (depth == 0).then(|| {
            let block = async_signal_set();
            let saved = sys::change_sigmask(libc::SIG_BLOCK, Some(&block));
            // For readers of the mask before this thread's guards; the
            // guard itself restores from the object.
            SAVED.with(|s| s.set(MaybeUninit::new(saved)));
            Outermost { saved }
        });
        // Only now does a handler's guard on this thread count as nested.
        DEPTH.with(|d| d.set(depth + 1));
        MaskGuard {
            outermost,
            _not_send: PhantomData,
        }
    }

    /// Whether a guard is alive on the current thread. Async-signal-safe.
    pub fn is_active() -> bool {
        DEPTH.with(Cell::get) > 0
    }
}

impl Drop for MaskGuard {
    fn drop(&mut self) {
        let depth = DEPTH.with(Cell::get);
        debug_assert!(depth > 0);
        let left = depth.saturating_sub(1);
        // What to restore once this drop brings the depth to 0: this
        // object's own mask, or the hand-over of an outermost guard dropped
        // earlier. Read while the depth is still at least 1, so a handler's
        // guard is nested and writes none of it.
        let handed_over;
        let restore: Option<&libc::sigset_t> = match &self.outermost {
            Some(own) if left == 0 => Some(&own.saved),
            Some(own) => {
                // Dropped before the guards made after it: the last of them
                // restores what this one found.
                SAVED.with(|s| s.set(MaybeUninit::new(own.saved)));
                RESTORE_LATE.with(|r| r.set(true));
                None
            }
            None if left == 0 && RESTORE_LATE.with(|r| r.replace(false)) => {
                // SAFETY: RESTORE_LATE is set only right after SAVED was
                // written with an initialised mask, at a depth of at least
                // 2 (so no guard wrote SAVED since: every one was nested).
                handed_over = unsafe { SAVED.with(Cell::get).assume_init() };
                Some(&handed_over)
            }
            None => None,
        };
        DEPTH.with(|d| d.set(left));
        if let Some(saved) = restore {
            sys::set_sigmask(saved);
        }
    }
}

impl fmt::Debug for MaskGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MaskGuard")
            .field("depth", &DEPTH.with(Cell::get))
            .finish()
    }
}
