//! [`MaskGuard`]: block asynchronous signals on this thread for a scope.
//!
//! What a user needs (which signals stay deliverable, nesting, the
//! `mem::forget` caveat, where a guard may be used) is on [`MaskGuard`].
//!
//! # Internal details
//! The depth and the mask in force before the outermost guard live in
//! `const`-initialised thread-locals without a destructor, so a guard works
//! from a thread-local destructor, at exit, in a fork child and inside a
//! signal handler. `SAVED` is valid while `DEPTH > 0`: it is always the mask
//! in force before this thread's outermost live guard.
//!
//! There is no per-thread cache of "this thread has everything blocked":
//! the outermost guard always issues `pthread_sigmask(SIG_BLOCK)` and learns
//! the old mask from it. When the old mask already blocked the whole set
//! (quarantine mode's worker threads, or a thread that blocked everything
//! itself) the block changed nothing, so the drop skips the restore, and
//! the kernel's block returned early without taking the signal lock: a
//! fully blocked thread pays one cheap syscall per guard, and a thread whose
//! mask is open is always protected, however its mask changed since its
//! last guard.

use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

thread_local! {
    /// How many guards are alive on this thread.
    static DEPTH: Cell<usize> = const { Cell::new(0) };
    /// The mask in force before the outermost live guard (valid while
    /// `DEPTH > 0`).
    static SAVED: Cell<MaybeUninit<libc::sigset_t>> = const { Cell::new(MaybeUninit::uninit()) };
    /// Whether the outermost guard's block changed the mask, so its drop
    /// must restore `SAVED`.
    static RESTORE: Cell<bool> = const { Cell::new(false) };
    /// This thread was counted in [`OPEN_MASK_THREADS`].
    static COUNTED: Cell<bool> = const { Cell::new(false) };
}

/// Whether to count threads whose outermost guard found their mask open
/// (switched on by quarantine mode, which reports them).
static COUNT_OPEN_MASK_THREADS: AtomicBool = AtomicBool::new(false);
/// Threads counted since [`count_open_mask_threads`] was switched on.
static OPEN_MASK_THREADS: AtomicUsize = AtomicUsize::new(0);

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
    {
        // Built at compile time: the guard's hot path pays no sigfillset
        // and no sigdelset calls.
        ASYNC_SET
    }
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
    {
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

/// Signals 1-64 (the kernel's whole mask, the first 64 bits of the set)
/// minus the synchronous ones and the C library's internal 32 and 33, which
/// glibc's `pthread_sigmask` would otherwise strip from a copy of the set on
/// every call.
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
const ASYNC_SET: libc::sigset_t = {
    const WORDS: usize = std::mem::size_of::<libc::sigset_t>() / 8;
    let mut synchronous = 0u64;
    let mut i = 0;
    while i < SYNCHRONOUS.len() {
        synchronous |= 1 << (SYNCHRONOUS[i] - 1);
        i += 1;
    }
    let mut words = [0u64; WORDS];
    words[0] = !synchronous & !(1 << 31 | 1 << 32);
    // SAFETY: `sigset_t` is plain data, exactly `WORDS` 64-bit words on
    // these 64-bit Linux targets (glibc and musl: 1024 bits), with signal
    // `n` at bit `n - 1` of the first word (their kernels have 64 signals);
    // any bit pattern is a valid value.
    unsafe { std::mem::transmute::<[u64; WORDS], libc::sigset_t>(words) }
};

/// Whether `mask` already blocks every signal of `set` that the kernel lets
/// a thread block, so that `SIG_BLOCK` of `set` over `mask` changed nothing.
/// Async-signal-safe, no syscall.
///
/// Exact on 64-bit Linux with 64 signals, where it is what lets a fully
/// blocked thread skip the restore. Elsewhere it answers `false` (the guard
/// always restores: two syscalls, always sound).
fn blocks_all(mask: &libc::sigset_t, set: &libc::sigset_t) -> bool {
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
    {
        // Signals 1-64 are the first 64 bits of the set, the part the kernel
        // reads and writes; the rest of glibc's 1024-bit `sigset_t` is never
        // read or written by it. The kernel never blocks SIGKILL and
        // SIGSTOP, and the C library never lets 32 and 33 (glibc's and
        // musl's internal signals; musl's 34 is not in `set`) be blocked.
        const NEVER_BLOCKED: u64 =
            1 << (libc::SIGKILL - 1) | 1 << (libc::SIGSTOP - 1) | 1 << 31 | 1 << 32;
        // SAFETY: `sigset_t` is at least 8 bytes of plain, initialised data
        // (both sets come from sigfillset/sigemptyset, then the kernel).
        let word = |s: &libc::sigset_t| unsafe {
            (s as *const libc::sigset_t).cast::<u64>().read_unaligned()
        };
        let want = word(set) & !NEVER_BLOCKED;
        word(mask) & want == want
    }
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
    {
        let _ = (mask, set);
        false
    }
}

/// Count threads whose outermost guard finds their mask open, from now on.
pub(crate) fn count_open_mask_threads() {
    COUNT_OPEN_MASK_THREADS.store(true, Ordering::SeqCst);
}

/// Threads counted since [`count_open_mask_threads`]. Async-signal-safe.
pub(crate) fn open_mask_threads() -> usize {
    OPEN_MASK_THREADS.load(Ordering::Relaxed)
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
/// `SIGKILL` and `SIGSTOP` cannot be blocked at all; glibc also keeps its
/// internal thread-cancellation signals deliverable.
///
/// # Where it may be used
/// Async-signal-safe: creating and dropping a guard may be done inside a
/// signal handler, in a fork child, in a thread-local destructor and at
/// exit (its state is `const`-initialised thread-locals without a
/// destructor).
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
/// Do not spawn processes while a guard is held: a child inherits the
/// blocked mask (a plain [`std::process::Command`] spawned under a guard
/// starts its program with these signals blocked).
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
/// ```compile_fail
/// #![deny(unused_must_use)]
/// fdtable::MaskGuard::default();
/// ```
#[must_use = "signals are unblocked again as soon as the guard is dropped"]
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
        if depth == 0 {
            let block = async_signal_set();
            let mut old = MaybeUninit::<libc::sigset_t>::uninit();
            // SAFETY: `block` is initialised; sigemptyset initialises `old`
            // fully (the kernel writes only its first 64 bits), then the
            // call writes the previous mask into it.
            let old = unsafe {
                libc::sigemptyset(old.as_mut_ptr());
                libc::pthread_sigmask(libc::SIG_BLOCK, &block, old.as_mut_ptr());
                old.assume_init()
            };
            // From here on no handler runs on this thread, so the
            // thread-local writes cannot be observed half done.
            let changed = !blocks_all(&old, &block);
            SAVED.with(|saved| saved.set(MaybeUninit::new(old)));
            RESTORE.with(|r| r.set(changed));
            if changed
                && COUNT_OPEN_MASK_THREADS.load(Ordering::Relaxed)
                && !COUNTED.with(|c| c.replace(true))
            {
                OPEN_MASK_THREADS.fetch_add(1, Ordering::Relaxed);
            }
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
    /// The same as [`MaskGuard::new`]. Async-signal-safe.
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

#[cfg(test)]
mod tests {
    use super::*;

    fn current_mask() -> libc::sigset_t {
        let mut set = MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: sigemptyset initialises `set`; a null new set only queries.
        unsafe {
            libc::sigemptyset(set.as_mut_ptr());
            libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), set.as_mut_ptr());
            set.assume_init()
        }
    }

    /// The mask a guard leaves in force must count as "blocks all": if the
    /// never-blocked bits were wrong, a fully blocked thread would restore
    /// on every drop (slow), and worse, a wrong "all blocked" would skip a
    /// restore and leave signals blocked for good.
    #[cfg(all(
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64")
    ))]
    #[test]
    fn the_mask_under_a_guard_blocks_all_and_an_open_mask_does_not() {
        std::thread::spawn(|| {
            let set = async_signal_set();
            assert!(
                !blocks_all(&current_mask(), &set),
                "a fresh thread's mask is open"
            );
            let guard = MaskGuard::new();
            assert!(blocks_all(&current_mask(), &set));
            drop(guard);
            assert!(!blocks_all(&current_mask(), &set));
        })
        .join()
        .unwrap();
    }
}
