//! [`MaskGuard`]: block asynchronous signals on this thread for a scope.
//!
//! A signal mask is per thread. Blocking protects the current thread against
//! its *own* handlers running in the middle of a two-step update (close the
//! number, then unregister it); other threads are handled by the table's
//! atomics. The guard blocks every blockable signal except the synchronous
//! fault signals (`SIGSEGV`, `SIGBUS`, `SIGFPE`, `SIGILL`, `SIGTRAP`,
//! `SIGSYS`), which must still be able to kill the process. `SIGKILL` and
//! `SIGSTOP` cannot be blocked at all; glibc also keeps its internal
//! cancellation signals deliverable.
//!
//! Guards nest: only the outermost one issues `pthread_sigmask`. The depth and
//! the saved mask live in `const`-initialised thread-locals without a
//! destructor, so a guard works from a thread-local destructor, at exit, in a
//! fork child and inside a signal handler.
//!
//! # Limitations
//! `mem::forget` on a guard leaves the mask blocked on this thread for good,
//! as a leaked `MutexGuard` leaves its mutex locked.

use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;
use std::mem::MaybeUninit;

thread_local! {
    /// How many guards are alive on this thread.
    static DEPTH: Cell<usize> = const { Cell::new(0) };
    /// The mask to restore when the depth returns to zero.
    static SAVED: Cell<MaybeUninit<libc::sigset_t>> = const { Cell::new(MaybeUninit::uninit()) };
    /// Whether the outermost guard issued a block (not in quarantine mode).
    static RESTORE: Cell<bool> = const { Cell::new(false) };
}

/// Signals that are raised by the instruction being executed: blocking them
/// would turn a crash into a hang or undefined behaviour.
const SYNCHRONOUS: [libc::c_int; 6] = [
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGFPE,
    libc::SIGILL,
    libc::SIGTRAP,
    libc::SIGSYS,
];

/// The set of signals a [`MaskGuard`] blocks. Async-signal-safe.
pub(crate) fn async_signal_set() -> libc::sigset_t {
    let mut set = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigfillset initialises the whole set; sigdelset only edits it.
    // Both are async-signal-safe and cannot fail for valid signal numbers.
    unsafe {
        libc::sigfillset(set.as_mut_ptr());
        for sig in SYNCHRONOUS {
            libc::sigdelset(set.as_mut_ptr(), sig);
        }
        set.assume_init()
    }
}

/// The mask this thread had before its outermost live [`MaskGuard`] blocked
/// signals, when such a guard is alive and issued the block itself (not in
/// quarantine mode, where guards block nothing). The exec hook gives it to
/// the new program. Async-signal-safe: `const` thread-locals without a
/// destructor, read in a fork child by the thread that forked.
pub(crate) fn mask_before_guards() -> Option<libc::sigset_t> {
    if DEPTH.with(Cell::get) > 0 && RESTORE.with(Cell::get) {
        // SAFETY: RESTORE is set only after the outermost guard stored an
        // initialised mask in SAVED, and cleared before that guard's drop
        // restores it.
        Some(unsafe { SAVED.with(Cell::get).assume_init() })
    } else {
        None
    }
}

/// RAII guard that blocks asynchronous signals on the current thread.
///
/// Creating the outermost guard on a thread issues one
/// `pthread_sigmask(SIG_BLOCK)`; dropping the last one restores exactly the
/// mask that was in force before (one `pthread_sigmask(SIG_SETMASK)`). Guards
/// created while another is alive on the same thread cost no syscall. Signals
/// that arrive meanwhile stay pending and are delivered on restore.
///
/// The guard is `!Send`: a mask belongs to the thread that set it.
///
/// Async-signal-safe: both creating and dropping a guard may be done inside a
/// signal handler or a fork child.
///
/// Do not run code that spawns processes while a guard is held: a child
/// inherits the blocked mask. A [`Command`](std::process::Command)
/// configured through [`CommandExt`](crate::CommandExt) while a guard is
/// alive on the configuring thread gets a `pre_exec` hook that hands the new
/// program the mask from before the outermost guard; a plain `Command`, or a
/// hook-free [`close_tracked_fds`](crate::CommandExt::close_tracked_fds)
/// configured with no guard alive and spawned under one, starts its program
/// with signals blocked.
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
pub struct MaskGuard {
    _not_send: PhantomData<*const ()>,
}

impl MaskGuard {
    /// Block asynchronous signals on this thread until the guard drops.
    ///
    /// Async-signal-safe. Never fails: `pthread_sigmask` can only fail for an
    /// invalid `how`, which this code never passes.
    ///
    /// # References
    /// `pthread_sigmask(3)`
    #[must_use = "signals are unblocked again as soon as the guard is dropped"]
    pub fn new() -> MaskGuard {
        let depth = DEPTH.with(Cell::get);
        if depth == 0 && !crate::quarantine::current_thread_is_quarantined() {
            let block = async_signal_set();
            let mut old = MaybeUninit::<libc::sigset_t>::uninit();
            // SAFETY: `block` is initialised; `old` is written by the call.
            unsafe {
                libc::pthread_sigmask(libc::SIG_BLOCK, &block, old.as_mut_ptr());
            }
            // From here on no handler runs on this thread, so the two
            // thread-local writes cannot be observed half done.
            SAVED.with(|saved| saved.set(old));
            RESTORE.with(|r| r.set(true));
        }
        DEPTH.with(|d| d.set(depth + 1));
        MaskGuard {
            _not_send: PhantomData,
        }
    }

    /// Whether a guard is alive on the current thread. Async-signal-safe.
    pub fn is_active() -> bool {
        DEPTH.with(Cell::get) > 0
    }
}

impl Default for MaskGuard {
    fn default() -> Self {
        MaskGuard::new()
    }
}

impl Drop for MaskGuard {
    fn drop(&mut self) {
        let depth = DEPTH.with(Cell::get);
        debug_assert!(depth > 0);
        let depth = depth.saturating_sub(1);
        DEPTH.with(|d| d.set(depth));
        if depth == 0 && RESTORE.with(|r| r.replace(false)) {
            let old = SAVED.with(Cell::get);
            // SAFETY: the outermost guard stored an initialised mask in SAVED
            // before raising the depth above zero; signals have stayed blocked
            // since, so nothing overwrote it.
            unsafe {
                libc::pthread_sigmask(libc::SIG_SETMASK, old.as_ptr(), std::ptr::null_mut());
            }
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
