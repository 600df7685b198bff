//! Quarantine mode: all asynchronous signals handled on one dedicated
//! thread, so the table's critical sections need no mask syscall at all.
//!
//! A mask guard costs a `pthread_sigmask` pair per close because a signal
//! handler could otherwise interrupt the closing thread between "close" and
//! "unregister". If no handler can ever run on the threads that touch the
//! table, the pair buys nothing. [`enter`] arranges exactly that:
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
//! On a quarantined thread, the first [`MaskGuard`] checks once that the
//! mask really is in force and remembers it in a `const` thread-local
//! without a destructor; every later guard on that thread issues no syscall.
//! A thread whose mask is not fully blocked (one that existed before
//! [`enter`], or one that unblocked signals itself) keeps paying the syscall
//! pair: it stays protected, it is just not fast. Such threads are counted
//! in [`unprotected_threads_seen`].
//!
//! Programs spawned through [`CommandExt`](crate::CommandExt) start with the
//! mask the program had *before* quarantine, not with everything blocked.
//!
//! # Examples
//! ```no_run
//! fn main() -> std::io::Result<()> {
//!     // First thing, before any thread exists:
//!     let report = fdtable::quarantine::enter()?;
//!     assert_eq!(report.preexisting_threads(), 0);
//!     // ... spawn workers, track descriptors: drops now cost one close(2)
//!     // plus two atomic operations.
//!     Ok(())
//! }
//! ```
//!
//! # Limitations
//! - Signals sent to a specific worker thread (`pthread_kill`, `tgkill`) stay
//!   pending on it: that thread has them blocked for good.
//! - Code that unblocks asynchronous signals on a worker after its first
//!   guard defeats the quarantine for that thread; do not do that.
//! - Quarantine cannot be left: the masks it set are inherited by every
//!   thread created since.

use std::cell::{Cell, UnsafeCell};
use std::fmt;
use std::io;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicI64, AtomicU8, AtomicUsize, Ordering};

use crate::mask::async_signal_set;
#[cfg(doc)]
use crate::MaskGuard;

const OFF: u8 = 0;
const ENTERING: u8 = 1;
const ACTIVE: u8 = 2;

static STATE: AtomicU8 = AtomicU8::new(OFF);
static UNPROTECTED: AtomicUsize = AtomicUsize::new(0);
static SIGNAL_THREAD_TID: AtomicI64 = AtomicI64::new(0);

/// The mask the program had before `enter`, written once before `STATE`
/// becomes `ACTIVE` (release) and only read after seeing `ACTIVE` (acquire).
struct OriginalMask(UnsafeCell<MaybeUninit<libc::sigset_t>>);
// SAFETY: written exactly once, by the thread that won the OFF -> ENTERING
// transition, before the release store of ACTIVE; read only after an acquire
// load of ACTIVE. No concurrent write exists.
unsafe impl Sync for OriginalMask {}
static ORIGINAL_MASK: OriginalMask = OriginalMask(UnsafeCell::new(MaybeUninit::uninit()));

const UNKNOWN: u8 = 0;
const QUARANTINED: u8 = 1;
const EXPOSED: u8 = 2;

thread_local! {
    /// What the first guard on this thread found while quarantine was on.
    static THREAD_MODE: Cell<u8> = const { Cell::new(UNKNOWN) };
}

/// What [`enter`] found and did.
#[derive(Debug, Clone)]
pub struct QuarantineReport {
    preexisting_threads: usize,
    signal_thread_tid: i64,
}

impl QuarantineReport {
    /// Threads other than the caller that were already running when
    /// quarantine was entered (Linux: counted in `/proc/self/task`; 0 where
    /// that cannot be known). Their masks were not changed: guards on them
    /// keep issuing the syscall pair, and handlers may still run on them.
    /// Async-signal-safe.
    pub fn preexisting_threads(&self) -> usize {
        self.preexisting_threads
    }

    /// The kernel thread id (`gettid`) of the thread that runs every
    /// asynchronous signal handler from now on (0 where unknown).
    /// Async-signal-safe.
    pub fn signal_thread_tid(&self) -> i64 {
        self.signal_thread_tid
    }
}

/// Enter quarantine mode; see the [module documentation](self).
///
/// Call it at the very start of `main`, before any other thread exists.
/// Fails with `AlreadyExists` if quarantine is already on, `WouldBlock` if a
/// [`MaskGuard`] is alive on the calling thread, or the OS error if the
/// signal thread cannot be started (in every case nothing changed).
///
/// Not async-signal-safe (spawns a thread).
pub fn enter() -> io::Result<QuarantineReport> {
    if crate::MaskGuard::is_active() {
        // The live guard would restore its saved (open) mask later, leaving
        // this thread exposed while guards on it believe it quarantined.
        return Err(io::Error::new(
            io::ErrorKind::WouldBlock,
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
    let preexisting_threads = count_threads().saturating_sub(1);
    let block = async_signal_set();
    let mut original = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: valid sets; `original` is written by the call.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &block, original.as_mut_ptr()) };
    // SAFETY: we won OFF -> ENTERING, so no one else writes ORIGINAL_MASK,
    // and no one reads it before ACTIVE is published below.
    unsafe { *ORIGINAL_MASK.0.get() = original };

    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("fdtable-signals".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            // SAFETY: restores the pre-quarantine mask on this thread only.
            unsafe {
                libc::pthread_sigmask(libc::SIG_SETMASK, original.as_ptr(), std::ptr::null_mut())
            };
            let _ = tid_tx.send(current_tid());
            loop {
                // SAFETY: pause(2) has no preconditions; handlers run here.
                unsafe { libc::pause() };
            }
        });
    if let Err(error) = spawned {
        // SAFETY: undo our own block; the state goes back to OFF.
        unsafe {
            libc::pthread_sigmask(libc::SIG_SETMASK, original.as_ptr(), std::ptr::null_mut())
        };
        STATE.store(OFF, Ordering::Release);
        return Err(error);
    }
    let signal_thread_tid = tid_rx.recv().unwrap_or(0);
    SIGNAL_THREAD_TID.store(signal_thread_tid, Ordering::Relaxed);
    // This thread's mode is left unknown: its first guard checks the real
    // mask, like on every other thread.
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
/// have every asynchronous signal blocked (and so kept paying the syscall
/// pair). Async-signal-safe.
pub fn unprotected_threads_seen() -> usize {
    UNPROTECTED.load(Ordering::Relaxed)
}

/// The kernel thread id of the quarantine's signal thread, 0 when off.
/// Async-signal-safe.
pub fn signal_thread_tid() -> i64 {
    SIGNAL_THREAD_TID.load(Ordering::Relaxed)
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

/// Whether the current thread's async signals are known to be blocked for
/// good, so a guard may skip its syscalls. Checks the real mask once per
/// thread. Async-signal-safe.
pub(crate) fn current_thread_is_quarantined() -> bool {
    if !is_active() {
        return false;
    }
    match THREAD_MODE.with(Cell::get) {
        QUARANTINED => true,
        EXPOSED => false,
        _ => {
            let blocked = async_signals_all_blocked();
            THREAD_MODE.with(|m| m.set(if blocked { QUARANTINED } else { EXPOSED }));
            if !blocked {
                UNPROTECTED.fetch_add(1, Ordering::Relaxed);
            }
            blocked
        }
    }
}

fn async_signals_all_blocked() -> bool {
    let wanted = async_signal_set();
    let mut current = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: a null `set` only queries the mask into `current`.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), current.as_mut_ptr()) };
    // SAFETY: initialised by the call above.
    let current = unsafe { current.assume_init() };
    (1..max_signal()).all(|sig| {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            return true; // cannot be blocked, never in a mask
        }
        // SAFETY: both sets are initialised; `sig` is within range.
        unsafe { libc::sigismember(&wanted, sig) != 1 || libc::sigismember(&current, sig) == 1 }
    })
}

fn max_signal() -> libc::c_int {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        libc::SIGRTMAX() + 1
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        32
    }
}

fn count_threads() -> usize {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        std::fs::read_dir("/proc/self/task").map_or(1, |dir| dir.count())
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        1
    }
}

fn current_tid() -> i64 {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        // SAFETY: gettid has no preconditions.
        i64::from(unsafe { libc::gettid() })
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        0
    }
}

impl fmt::Display for QuarantineReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "signal quarantine on (signal thread tid {}, {} thread(s) predate it)",
            self.signal_thread_tid, self.preexisting_threads
        )
    }
}
