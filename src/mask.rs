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

pub(crate) use kernel_mask::async_signal_set;

/// The mask as the kernel sees it, on 64-bit Linux: 64 signals, the first
/// 64 bits of the C library's 1024-bit `sigset_t`. Knowing the layout lets
/// the guard's set be built at compile time. One module per layout: the target list appears only
/// here and in the fallback's negation.
#[cfg(all(
    target_os = "linux",
    any(
        target_arch = "x86_64",
        target_arch = "aarch64",
        target_arch = "riscv64",
        target_arch = "loongarch64",
        target_arch = "powerpc64",
        target_arch = "s390x"
    )
))]
mod kernel_mask {
    use super::SYNCHRONOUS;

    /// The set of signals a [`MaskGuard`](super::MaskGuard) blocks.
    /// Async-signal-safe.
    pub(crate) fn async_signal_set() -> libc::sigset_t {
        // Built at compile time: the guard's hot path pays no sigfillset
        // and no sigdelset calls.
        ASYNC_SET
    }

    /// The C library's internal signals, as bits of the kernel's mask
    /// (signal `n` at bit `n - 1`): never blocked by a guard.
    ///
    /// glibc keeps 32 (SIGCANCEL) and 33 (SIGSETXID) and strips them from a
    /// copy of every set passed to `pthread_sigmask`. musl keeps 32, 33 and
    /// 34 (SIGSYNCCALL, which `setuid`, `setgroups` and friends send to
    /// every thread and wait for), passes the set to the kernel as it is,
    /// and clears all three from the old mask it reports. So on musl 34 must
    /// stay out of the set (a held guard would stall `setuid` in other
    /// threads until it drops). On
    /// glibc, 34 is SIGRTMIN, the program's own, and is blocked like any
    /// other.
    ///
    /// Only the glibc value is built and tested on this project's CI (no
    /// musl target there); the musl value follows musl's `pthread_sigmask`
    /// and `sigfillset` sources.
    const LIBC_INTERNAL: u64 = if cfg!(target_env = "musl") {
        1 << 31 | 1 << 32 | 1 << 33
    } else {
        1 << 31 | 1 << 32
    };

    /// Signals 1-64 (the kernel's whole mask, the first 64 bits of the set)
    /// minus the synchronous ones and the C library's internal ones
    /// ([`LIBC_INTERNAL`]), which glibc's `pthread_sigmask` would otherwise
    /// strip from a copy of the set on every call.
    const ASYNC_SET: libc::sigset_t = {
        const WORDS: usize = std::mem::size_of::<libc::sigset_t>() / 8;
        let mut synchronous = 0u64;
        let mut i = 0;
        while i < SYNCHRONOUS.len() {
            synchronous |= 1 << (SYNCHRONOUS[i] - 1);
            i += 1;
        }
        let mut words = [0u64; WORDS];
        words[0] = !synchronous & !LIBC_INTERNAL;
        // SAFETY: `sigset_t` is plain data, exactly `WORDS` 64-bit words on
        // these 64-bit Linux targets (glibc and musl: 1024 bits), with
        // signal `n` at bit `n - 1` of the first word (their kernels have 64
        // signals); any bit pattern is a valid value.
        unsafe { std::mem::transmute::<[u64; WORDS], libc::sigset_t>(words) }
    };
}

/// Other targets: the mask's layout is not assumed.
#[cfg(not(all(
    target_os = "linux",
    any(
        target_arch = "x86_64",
        target_arch = "aarch64",
        target_arch = "riscv64",
        target_arch = "loongarch64",
        target_arch = "powerpc64",
        target_arch = "s390x"
    )
)))]
mod kernel_mask {
    use super::SYNCHRONOUS;
    use std::mem::MaybeUninit;

    /// The set of signals a [`MaskGuard`](super::MaskGuard) blocks.
    /// Async-signal-safe.
    pub(crate) fn async_signal_set() -> libc::sigset_t {
        let mut set = MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: sigfillset initialises the whole set; sigdelset only edits
        // it. Both are async-signal-safe and cannot fail for valid numbers.
        unsafe {
            libc::sigfillset(set.as_mut_ptr());
            for sig in SYNCHRONOUS {
                libc::sigdelset(set.as_mut_ptr(), sig);
            }
            set.assume_init()
        }
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    /// A guard must never block the C library's own signals: glibc's 32 and
    /// 33, and on musl also 34 (SIGSYNCCALL: a guard held on one thread
    /// would stall `setuid` on every other). On glibc, 34 is SIGRTMIN, an
    /// application signal, and is blocked. (The musl branch is compiled
    /// only for a musl target, which this project's CI does not build.)
    #[cfg(all(
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64")
    ))]
    #[test]
    fn the_guard_set_leaves_the_c_librarys_internal_signals_alone() {
        let set = async_signal_set();
        // SAFETY: a valid, initialised set; `sigismember` only reads it.
        let bit = |sig: u32| unsafe { libc::sigismember(&set, sig as libc::c_int) } == 1;
        assert!(!bit(32) && !bit(33));
        if cfg!(target_env = "musl") {
            assert!(!bit(34), "musl's SIGSYNCCALL is in the guard's set");
        } else {
            assert!(bit(34), "glibc's SIGRTMIN is not in the guard's set");
        }
        assert!(bit(64) && bit(libc::SIGINT as u32) && !bit(libc::SIGSEGV as u32));
    }
}
