//! Ctrl-C as an event: [`Interrupts`] turns SIGINT (and chosen others) into
//! bytes on a self-pipe that the program reads in its own loop.
//!
//! A signal handler may only make async-signal-safe calls: no allocation, no
//! lock, no `println!`, no closing of a table that another part of the
//! program is in the middle of changing. So the handler here does almost
//! nothing: it counts the signal in an atomic and writes one byte to a pipe.
//! The program sees the read end become readable (in `poll(2)`, mio, an event
//! loop, or [`Interrupts::wait`]) and runs its cleanup as ordinary code, with
//! every lock and allocator available.
//!
//! The promises, with examples, are on [`Interrupts`]; this module's own
//! notes are below.
//!
//! # Internal details (not promised)
//! The handler is signal-hook's (`signal_hook::low_level::register`), which
//! chains every action registered for a signal. Per signal, this crate
//! registers one permanent *fallback* action the first time it handles the
//! signal (it applies the default action while no `Interrupts` handles the
//! signal and the last one dropped asked for it) and one action per
//! `Interrupts`. signal-hook never uninstalls its process-level handler, so
//! the bit for the signal in `HANDLED_SIGNALS` stays set from then on, and
//! the exec path resets the signal to `SIG_DFL` in a child before `exec`
//! (which is what `exec` itself does to a caught signal).

use std::fmt;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use libc::c_int;
use signal_hook::SigId;

use crate::sys::{self, syscall};

/// Bit `sig - 1` is set while this crate has an action installed for signal
/// `sig` (from the first `Interrupts` that handles `sig` on: signal-hook's
/// handler, and this crate's fallback action, stay installed for good).
/// Read (async-signal-safely) by the exec path, which resets those signals to
/// their default disposition in the child before `exec`.
pub(crate) static HANDLED_SIGNALS: AtomicU64 = AtomicU64::new(0);

/// Signals this module accepts: their default action terminates the process,
/// so "restore the default and re-raise" always ends it.
const SUPPORTED: [c_int; 7] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGALRM,
];

/// Live `Interrupts` handling each signal, indexed by `sig - 1`.
static LIVE: [AtomicUsize; 64] = [const { AtomicUsize::new(0) }; 64];
/// Bit `sig - 1`: this crate has looked at the signal's original disposition.
static LOOKED_AT: AtomicU64 = AtomicU64::new(0);
/// Bit `sig - 1`: the original disposition was `SIG_IGN`.
static IGNORED_AT_START: AtomicU64 = AtomicU64::new(0);
/// Bit `sig - 1`: the original disposition was `SIG_DFL`.
static DEFAULT_AT_START: AtomicU64 = AtomicU64::new(0);
/// Bit `sig - 1`: apply the default action while `LIVE` is zero.
static DEFAULT_WHEN_IDLE: AtomicU64 = AtomicU64::new(0);
/// Pid of the process that last installed an `Interrupts` for each signal,
/// indexed by `sig - 1`. A fork child that installed none of its own sees
/// its parent's pid here, and gets the default action (see `ensure_fallback`).
static INSTALLER_PID: [AtomicI32; 64] = [const { AtomicI32::new(0) }; 64];
/// Serialises install and drop (the bookkeeping above, not the handlers).
static SETUP: Mutex<()> = Mutex::new(());

fn bit(sig: c_int) -> u64 {
    1u64 << (sig - 1)
}

fn live(sig: c_int) -> &'static AtomicUsize {
    &LIVE[(sig - 1) as usize]
}

fn setup_lock() -> MutexGuard<'static, ()> {
    // The guarded data is `()`: a panic elsewhere cannot leave it broken.
    SETUP
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One signal as [`Interrupts::try_recv`] reports it: which signal, and how
/// many deliveries since the last report for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Received {
    signal: c_int,
    count: u64,
}

impl Received {
    /// The signal number (`libc::SIGINT`, ...). Async-signal-safe.
    pub fn signal(&self) -> c_int {
        self.signal
    }

    /// Deliveries counted since the previous report for this signal; at
    /// least 1. Standard signals coalesce, so this may be smaller than the
    /// number of `kill`s sent. Async-signal-safe.
    pub fn count(&self) -> u64 {
        self.count
    }
}

/// The per-signal state the handler touches.
struct SignalSlot {
    signal: c_int,
    count: AtomicU64,
}

/// Everything a handler action reaches. Shared with signal-hook's registry,
/// which drops its references only after no handler can be running them.
struct Shared {
    /// The process that installed the actions; others (fork children) ignore
    /// deliveries.
    installer: libc::pid_t,
    /// Non-blocking, close-on-exec write end of the self-pipe.
    write: OwnedFd,
    slots: Box<[SignalSlot]>,
    second_signal_kills: bool,
    /// Set by the first delivery when `second_signal_kills`.
    armed: AtomicBool,
}

impl Shared {
    /// The handler action for `slots[index]`. Async-signal-safe: `getpid`,
    /// atomics, `write`, and on a second delivery `sigaction` + `raise`.
    fn on_signal(&self, index: usize) {
        // SAFETY: getpid is async-signal-safe and cannot fail.
        if unsafe { libc::getpid() } != self.installer {
            return; // a fork child before exec: not our event
        }
        let Some(slot) = self.slots.get(index) else {
            return;
        };
        // No errno save here: signal-hook-registry's handler saves and
        // restores errno around every action (>= 1.4.8, pinned in Cargo.toml).
        if self.second_signal_kills && self.armed.swap(true, Ordering::SeqCst) {
            // Armed by an earlier delivery: this is the second Ctrl-C.
            die_by_default(slot.signal);
        }
        // Count before writing, so a reader that drains the byte is sure to
        // see the count; a full pipe (EAGAIN) then loses nothing.
        slot.count.fetch_add(1, Ordering::SeqCst);
        wake(self.write.as_raw_fd());
    }
}

/// Write one wake-up byte, ignoring a full pipe. Async-signal-safe.
fn wake(fd: RawFd) {
    // SAFETY: writes one byte from a static buffer to a descriptor we own;
    // the descriptor is non-blocking, so this never waits. EAGAIN (pipe
    // full) is fine: the reader is already due to wake and counts are kept
    // in atomics.
    unsafe {
        libc::write(fd, b"!".as_ptr().cast(), 1);
    }
}

/// Restore the default action of `sig`, unblock it on this thread and raise
/// it; `_exit(128 + sig)` if the process is somehow still alive.
/// Async-signal-safe.
fn die_by_default(sig: c_int) -> ! {
    // EINVAL for a number that is not a signal: `_exit` below handles it.
    let _ = sys::set_default_disposition(sig);
    // SAFETY: sigemptyset/sigaddset/pthread_sigmask/raise/_exit are
    // async-signal-safe; every pointer refers to an initialised local.
    unsafe {
        let mut set = MaybeUninit::<libc::sigset_t>::uninit();
        libc::sigemptyset(set.as_mut_ptr());
        libc::sigaddset(set.as_mut_ptr(), sig);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, set.as_ptr(), ptr::null_mut());
        // With the default action and the signal unblocked on this thread,
        // POSIX delivers it before `raise` returns, and the process ends.
        libc::raise(sig);
        // Only reached for a number that is not a signal (or one that cannot
        // kill): wrap instead of overflowing, the status keeps 8 bits anyway.
        libc::_exit(128i32.wrapping_add(sig))
    }
}

/// The current disposition's handler word (`SIG_DFL`, `SIG_IGN` or a
/// function address). Not called from handlers.
fn current_disposition(sig: c_int) -> io::Result<libc::sighandler_t> {
    // SAFETY: a zeroed sigaction is a valid out-parameter; a null `act`
    // only queries.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    syscall!(sigaction(sig, ptr::null(), &mut old))?;
    Ok(old.sa_sigaction)
}

/// Record the disposition `sig` had before this crate touched it, once.
/// Call with the setup lock held.
fn look_at_start(sig: c_int) -> io::Result<()> {
    if LOOKED_AT.load(Ordering::Relaxed) & bit(sig) != 0 {
        return Ok(());
    }
    let handler = current_disposition(sig)?;
    if handler == libc::SIG_IGN {
        IGNORED_AT_START.fetch_or(bit(sig), Ordering::Relaxed);
    } else if handler == libc::SIG_DFL {
        DEFAULT_AT_START.fetch_or(bit(sig), Ordering::Relaxed);
    }
    LOOKED_AT.fetch_or(bit(sig), Ordering::Relaxed);
    Ok(())
}

/// Register, once per signal, the action that applies the default while no
/// `Interrupts` handles `sig`. Call with the setup lock held.
fn ensure_fallback(sig: c_int) -> io::Result<()> {
    if HANDLED_SIGNALS.load(Ordering::SeqCst) & bit(sig) != 0 {
        return Ok(());
    }
    let action = move || {
        let idle = live(sig).load(Ordering::SeqCst) == 0
            && DEFAULT_WHEN_IDLE.load(Ordering::SeqCst) & bit(sig) != 0;
        // A fork child that installed no `Interrupts` of its own inherited
        // its parent's actions, which ignore it (they check the pid). Without
        // this it could not be stopped by the signal at all; give it the
        // default action it would have had without this crate.
        // SAFETY: getpid is async-signal-safe and cannot fail.
        let foreign_child = INSTALLER_PID[(sig - 1) as usize].load(Ordering::SeqCst)
            != unsafe { libc::getpid() }
            && DEFAULT_AT_START.load(Ordering::SeqCst) & bit(sig) != 0;
        if idle || foreign_child {
            die_by_default(sig);
        }
    };
    // SAFETY: the action only loads atomics and, when it acts, calls
    // `die_by_default`, which is async-signal-safe; it never panics (the
    // index `sig - 1` was validated against SUPPORTED).
    unsafe { signal_hook::low_level::register(sig, action) }?;
    HANDLED_SIGNALS.fetch_or(bit(sig), Ordering::SeqCst);
    Ok(())
}

/// Create the self-pipe: both ends close-on-exec and non-blocking.
fn self_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [-1 as c_int; 2];
    #[cfg(not(any(target_os = "macos", target_os = "ios")))]
    syscall!(pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK))?;
    #[cfg(any(target_os = "macos", target_os = "ios"))]
    syscall!(pipe(fds.as_mut_ptr()))?;
    // SAFETY: the call just returned two fresh descriptors that we own.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    #[cfg(any(target_os = "macos", target_os = "ios"))]
    for fd in [fds[0], fds[1]] {
        syscall!(fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC))?;
        let flags = syscall!(fcntl(fd, libc::F_GETFL))?;
        syscall!(fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK))?;
    }
    Ok((read, write))
}

/// Chooses the signals and conventions of an [`Interrupts`]; made by
/// [`Interrupts::builder`].
///
/// ```
/// use fdtable::Interrupts;
///
/// let interrupts = Interrupts::builder()
///     .signal(libc::SIGINT)
///     .signal(libc::SIGTERM)
///     .install()?;
/// # drop(interrupts);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct InterruptsBuilder {
    signals: Vec<c_int>,
    respect_ignored: bool,
    second_signal_kills: bool,
    default_after_drop: bool,
}

impl InterruptsBuilder {
    /// Handle `signal` too. Accepted: `SIGINT`, `SIGTERM`, `SIGHUP`,
    /// `SIGQUIT`, `SIGUSR1`, `SIGUSR2`, `SIGALRM`; anything else makes
    /// [`install`](InterruptsBuilder::install) fail with `InvalidInput`.
    /// Adding a signal twice is the same as adding it once.
    ///
    /// Not async-signal-safe (may allocate).
    pub fn signal(mut self, signal: c_int) -> Self {
        if !self.signals.contains(&signal) {
            self.signals.push(signal);
        }
        self
    }

    /// When `true` (the default), a signal that was ignored (`SIG_IGN`) when
    /// this crate first looked at it stays ignored: it is not handled, and
    /// [`Interrupts::ignored`] lists it. `false` handles it anyway.
    ///
    /// Not async-signal-safe.
    pub fn respect_ignored(mut self, respect: bool) -> Self {
        self.respect_ignored = respect;
        self
    }

    /// When `true` (the default), the first delivery of any handled signal
    /// arms the instance, and the next delivery of any of its signals ends
    /// the process by that signal's default action at once, even while
    /// cleanup runs. `false` turns every delivery into an event.
    ///
    /// Not async-signal-safe.
    pub fn second_signal_kills(mut self, kills: bool) -> Self {
        self.second_signal_kills = kills;
        self
    }

    /// When `true` (the default) and this is the last `Interrupts` handling a
    /// signal to be dropped, the signal's default action (terminate) applies
    /// again afterwards, provided the signal had the default disposition
    /// before this crate first handled it. When `false`, a signal arriving
    /// while no `Interrupts` handles it runs only the handlers other code
    /// registered through signal-hook, if any; with none, it is lost.
    ///
    /// Not async-signal-safe.
    pub fn default_after_drop(mut self, restore: bool) -> Self {
        self.default_after_drop = restore;
        self
    }

    /// Create the pipe and register the handler actions.
    ///
    /// Fails with `InvalidInput` if no signal was chosen or one is not
    /// supported, or with the OS error of `pipe2`/`sigaction`. Nothing stays
    /// registered on failure.
    ///
    /// Not async-signal-safe (allocates, takes a lock).
    pub fn install(self) -> io::Result<Interrupts> {
        if self.signals.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "Interrupts needs at least one signal",
            ));
        }
        if let Some(bad) = self.signals.iter().find(|s| !SUPPORTED.contains(s)) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("signal {bad} is not supported by Interrupts (its default must terminate)"),
            ));
        }
        let _setup = setup_lock();
        let mut handled = Vec::new();
        let mut ignored = Vec::new();
        for &sig in &self.signals {
            look_at_start(sig)?;
            if self.respect_ignored && IGNORED_AT_START.load(Ordering::Relaxed) & bit(sig) != 0 {
                ignored.push(sig);
            } else {
                handled.push(sig);
            }
        }
        let (read, write) = self_pipe()?;
        let shared = Arc::new(Shared {
            // SAFETY: getpid cannot fail.
            installer: unsafe { libc::getpid() },
            write,
            slots: handled
                .iter()
                .map(|&signal| SignalSlot {
                    signal,
                    count: AtomicU64::new(0),
                })
                .collect(),
            second_signal_kills: self.second_signal_kills,
            armed: AtomicBool::new(false),
        });
        let mut interrupts = Interrupts {
            shared,
            read,
            registered: Vec::with_capacity(handled.len()),
            ignored,
            default_after_drop: self.default_after_drop,
        };
        for (index, &sig) in handled.iter().enumerate() {
            if let Err(error) = interrupts.register(index, sig) {
                // Undo what is registered; the drop that follows finds
                // nothing left to do (and so never takes the lock we hold).
                interrupts.unregister_all();
                return Err(error);
            }
        }
        for &sig in &handled {
            INSTALLER_PID[(sig - 1) as usize].store(interrupts.shared.installer, Ordering::SeqCst);
        }
        Ok(interrupts)
    }
}

/// SIGINT (and chosen others) delivered as self-pipe events.
///
/// Install with [`Interrupts::install`] (SIGINT only) or
/// [`Interrupts::builder`]. Poll the descriptor ([`AsFd`]/[`AsRawFd`]) for
/// readability in your own loop, then call [`try_recv`](Interrupts::try_recv)
/// until it returns `None`; or block in [`wait`](Interrupts::wait) /
/// [`wait_timeout`](Interrupts::wait_timeout). The conventions of
/// well-behaved Unix programs are on by default (see below).
///
/// # Examples
/// ```
/// use fdtable::Interrupts;
/// use std::time::Duration;
///
/// let interrupts = Interrupts::builder()
///     .signal(libc::SIGINT)
///     .respect_ignored(false) // this doc test may run under `nohup`
///     .second_signal_kills(false)
///     .install()?;
/// // SAFETY: raise has no preconditions. "Ctrl-C", delivered to ourselves:
/// unsafe { libc::raise(libc::SIGINT) };
/// let got = interrupts.wait_timeout(Duration::from_secs(10)).expect("SIGINT");
/// assert_eq!((got.signal(), got.count()), (libc::SIGINT, 1));
/// # Ok::<(), std::io::Error>(())
/// ```
/// A real program ends the other way: clean up, then
/// [`Interrupts::die_by_signal`] so its parent shell sees the real cause
/// (exit status 130 for SIGINT). See `examples/ctrlc_cleanup.rs`.
///
/// # Conventions (each on by default)
/// - **Ignored stays ignored** ([`InterruptsBuilder::respect_ignored`]): a
///   signal whose disposition was `SIG_IGN` when this crate first looked at
///   it (a program started by `nohup`, or as a background job by a shell
///   without job control) is left ignored and reported by
///   [`Interrupts::ignored`].
/// - **A second signal kills at once**
///   ([`InterruptsBuilder::second_signal_kills`]): the first delivery of any
///   signal an `Interrupts` handles *arms* it, in the handler, before the
///   wake-up byte is written (so before the program can start cleaning up).
///   The next delivery of any of its signals restores that signal's default
///   action and re-raises it: a second Ctrl-C ends a stuck cleanup.
///   [`Interrupts::disarm`] undoes the arming ("do you really want to
///   quit? no").
/// - **Die by the signal** ([`Interrupts::die_by_signal`]): after cleanup,
///   restore the default action, unblock the signal and raise it, so the
///   parent sees `WIFSIGNALED` rather than a faked `exit(130)`.
/// - **The default comes back** ([`InterruptsBuilder::default_after_drop`]):
///   when the last `Interrupts` that handles a signal is dropped, the
///   signal's default action (terminate) applies again, as if no handler had
///   ever been installed.
/// - **Fork children are not us**: the handler stamps the installer's pid and
///   does nothing in a process with another pid (a child between `fork` and
///   `exec`, whose signals must not wake the parent's loop).
///
/// # Several instances
/// Any number of `Interrupts` may exist at once (a library and the program
/// that uses it), for the same or different signals: each has its own pipe
/// and its own counts, and every one of them sees every delivery of the
/// signals it handles. Dropping one unregisters only its own actions.
///
/// # Limitations
/// - Only signals whose default action terminates the process are accepted:
///   `SIGINT`, `SIGTERM`, `SIGHUP`, `SIGQUIT`, `SIGUSR1`, `SIGUSR2`,
///   `SIGALRM`.
/// - Standard signals coalesce: ten `kill`s in a row may be delivered as
///   one. [`Received::count`] counts deliveries, not `kill` calls.
/// - After the last `Interrupts` for a signal is dropped with
///   [`default_after_drop`](InterruptsBuilder::default_after_drop) on, the
///   default action runs even if another part of the program registered its
///   own signal-hook action for that signal (tokio's `signal`, signal-hook's
///   iterator). Turn the option off in such programs; the signal is then
///   handled only by those other actions, or is lost if there are none.
///
/// # Drop
/// Dropping unregisters this instance's actions; other instances keep
/// working. When it was the last one handling a signal, that signal's
/// default action comes back (see
/// [`default_after_drop`](InterruptsBuilder::default_after_drop)); a signal
/// that was left ignored stays ignored.
///
/// ```
/// use fdtable::Interrupts;
/// use std::time::Duration;
///
/// let events = || Interrupts::builder().signal(libc::SIGUSR1).second_signal_kills(false);
/// let (a, b) = (events().install()?, events().install()?);
/// // SAFETY: raise has no preconditions.
/// unsafe { libc::raise(libc::SIGUSR1) };
/// assert!(a.try_recv().is_some() && b.try_recv().is_some()); // both see it
/// drop(a);
/// // SAFETY: as above.
/// unsafe { libc::raise(libc::SIGUSR1) };
/// assert_eq!(b.wait_timeout(Duration::from_secs(10)).map(|r| r.count()), Some(1));
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Interrupts {
    shared: Arc<Shared>,
    /// Non-blocking, close-on-exec read end of the self-pipe.
    read: OwnedFd,
    registered: Vec<(c_int, SigId)>,
    ignored: Vec<c_int>,
    default_after_drop: bool,
}

impl Interrupts {
    /// Handle SIGINT with every convention on: equivalent to
    /// `Interrupts::builder().signal(libc::SIGINT).install()`.
    ///
    /// If SIGINT was ignored when the program started, it stays ignored and
    /// [`ignored`](Interrupts::ignored) returns `[SIGINT]`.
    ///
    /// Not async-signal-safe (allocates, takes a lock).
    pub fn install() -> io::Result<Interrupts> {
        Interrupts::builder().signal(libc::SIGINT).install()
    }

    /// A builder with no signal chosen yet and every convention on.
    ///
    /// Not async-signal-safe.
    pub fn builder() -> InterruptsBuilder {
        InterruptsBuilder {
            signals: Vec::new(),
            respect_ignored: true,
            second_signal_kills: true,
            default_after_drop: true,
        }
    }

    /// The signals this instance reports. Async-signal-safe.
    pub fn signals(&self) -> impl Iterator<Item = c_int> + '_ {
        self.shared.slots.iter().map(|slot| slot.signal)
    }

    /// Signals that were asked for but left ignored because they were
    /// ignored at startup (see
    /// [`respect_ignored`](InterruptsBuilder::respect_ignored)).
    /// Async-signal-safe.
    pub fn ignored(&self) -> &[c_int] {
        &self.ignored
    }

    /// Whether the next delivery of a handled signal ends the process (a
    /// signal arrived already and
    /// [`second_signal_kills`](InterruptsBuilder::second_signal_kills) is
    /// on). Async-signal-safe.
    pub fn is_armed(&self) -> bool {
        self.shared.armed.load(Ordering::SeqCst)
    }

    /// Undo the arming: the next signal is an event again, and arms anew.
    /// Async-signal-safe.
    pub fn disarm(&self) {
        self.shared.armed.store(false, Ordering::SeqCst);
    }

    /// Take one pending signal without blocking: which signal, and how many
    /// deliveries since it was last reported. Returns `None` when nothing is
    /// pending. Call it until `None` after the descriptor polls readable;
    /// draining the pipe never loses a count (counts live in atomics, and a
    /// wake-up byte is written back when other signals are still pending).
    ///
    /// Async-signal-safe (`read`, `write`, atomics; no allocation).
    pub fn try_recv(&self) -> Option<Received> {
        self.drain();
        let slots = &self.shared.slots;
        for (i, slot) in slots.iter().enumerate() {
            let count = slot.count.swap(0, Ordering::SeqCst);
            if count > 0 {
                // The pipe is empty now; keep it readable for the others.
                if slots[i + 1..]
                    .iter()
                    .any(|s| s.count.load(Ordering::SeqCst) > 0)
                {
                    wake(self.shared.write.as_raw_fd());
                }
                return Some(Received {
                    signal: slot.signal,
                    count,
                });
            }
        }
        None
    }

    /// Block until a handled signal arrives, then report it as
    /// [`try_recv`](Interrupts::try_recv) does.
    ///
    /// Makes only async-signal-safe calls (`poll`, `read`), but blocks: do
    /// not call it from a signal handler.
    pub fn wait(&self) -> Received {
        loop {
            if let Some(received) = self.try_recv() {
                return received;
            }
            self.poll_readable(-1);
        }
    }

    /// Like [`wait`](Interrupts::wait), giving up after `timeout`: `None`
    /// when nothing arrived in time. Returns no earlier than `timeout`
    /// unless a signal arrives; a `timeout` too large for `Instant` waits
    /// forever.
    ///
    /// Makes only async-signal-safe calls (`poll`, `read`, `clock_gettime`),
    /// but blocks: do not call it from a signal handler.
    pub fn wait_timeout(&self, timeout: Duration) -> Option<Received> {
        let Some(deadline) = Instant::now().checked_add(timeout) else {
            return Some(self.wait());
        };
        loop {
            if let Some(received) = self.try_recv() {
                return Some(received);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            // Round up so we never wake a hair early and spin.
            let ms = left.as_nanos().div_ceil(1_000_000);
            self.poll_readable(c_int::try_from(ms).unwrap_or(c_int::MAX));
        }
    }

    /// End the process by `signal` the conventional way: restore the
    /// default action, unblock the signal on this thread and raise it, so
    /// the parent sees death by that signal (a shell reports status
    /// `128 + signal`, 130 for SIGINT). Falls back to `_exit(128 + signal)`
    /// only if the process is still alive after the re-raise (the default
    /// action of `signal` does not terminate, or it cannot be raised).
    ///
    /// Call it after cleanup, with the [`Received::signal`] that started it.
    /// Neither destructors nor `atexit` handlers run, and Rust's stdout
    /// buffer is not flushed: flush what you printed first.
    ///
    /// Async-signal-safe.
    pub fn die_by_signal(signal: c_int) -> ! {
        die_by_default(signal)
    }

    /// Read and discard every pending wake-up byte. Async-signal-safe.
    fn drain(&self) {
        let mut buf = [0u8; 256];
        // 4096 reads of 256 bytes empty even a 1 MiB pipe; the bound keeps a
        // signal storm from holding us here forever.
        for _ in 0..4096 {
            // SAFETY: reads into a local buffer of the given length from a
            // non-blocking descriptor we own.
            let n =
                unsafe { libc::read(self.read.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n > 0 {
                continue;
            }
            if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            break; // EAGAIN: empty; 0 cannot happen while we hold the writer
        }
    }

    /// `poll(2)` the read end for up to `ms` milliseconds (-1: forever).
    fn poll_readable(&self, ms: c_int) {
        let mut pfd = libc::pollfd {
            fd: self.read.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd. EINTR and readiness both send the caller
        // back to `try_recv`, so the result is not needed.
        unsafe {
            libc::poll(&mut pfd, 1, ms);
        }
    }

    /// Register the action for `shared.slots[index]` (signal `sig`). Call
    /// with the setup lock held.
    fn register(&mut self, index: usize, sig: c_int) -> io::Result<()> {
        ensure_fallback(sig)?;
        // Count ourselves live before the action exists, so the fallback
        // never applies the default while we are being installed.
        live(sig).fetch_add(1, Ordering::SeqCst);
        let shared = Arc::clone(&self.shared);
        // SAFETY: `on_signal` makes only async-signal-safe calls, never
        // allocates and never panics (indexing is checked with `get`).
        let result =
            unsafe { signal_hook::low_level::register(sig, move || shared.on_signal(index)) };
        match result {
            Ok(id) => {
                self.registered.push((sig, id));
                Ok(())
            }
            Err(error) => {
                live(sig).fetch_sub(1, Ordering::SeqCst);
                Err(error)
            }
        }
    }

    /// Unregister every action of this instance and update the per-signal
    /// bookkeeping. Runs once (the list is emptied).
    fn unregister_all(&mut self) {
        for (sig, id) in self.registered.drain(..) {
            signal_hook::low_level::unregister(id);
            // Unregister before leaving LIVE: a delivery in between is lost,
            // but the default is never applied while we still count as live.
            if live(sig).fetch_sub(1, Ordering::SeqCst) == 1 {
                let restore = self.default_after_drop
                    && DEFAULT_AT_START.load(Ordering::Relaxed) & bit(sig) != 0;
                if restore {
                    DEFAULT_WHEN_IDLE.fetch_or(bit(sig), Ordering::SeqCst);
                } else {
                    DEFAULT_WHEN_IDLE.fetch_and(!bit(sig), Ordering::SeqCst);
                }
            }
        }
    }
}

impl Drop for Interrupts {
    fn drop(&mut self) {
        if self.registered.is_empty() {
            return;
        }
        let _setup = setup_lock();
        self.unregister_all();
    }
}

impl AsFd for Interrupts {
    /// The read end of the self-pipe: poll it for readability.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.read.as_fd()
    }
}

impl AsRawFd for Interrupts {
    fn as_raw_fd(&self) -> RawFd {
        self.read.as_raw_fd()
    }
}

impl fmt::Debug for Interrupts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Interrupts")
            .field("fd", &self.read.as_raw_fd())
            .field("signals", &self.signals().collect::<Vec<_>>())
            .field("ignored", &self.ignored)
            .field("armed", &self.is_armed())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handled_signals_bit_is_set_once_a_handler_is_installed() {
        let interrupts = Interrupts::builder()
            .signal(libc::SIGALRM)
            .respect_ignored(false)
            .second_signal_kills(false)
            .install()
            .unwrap();
        let mask = HANDLED_SIGNALS.load(Ordering::SeqCst);
        assert_ne!(mask & (1 << (libc::SIGALRM - 1)), 0);
        drop(interrupts);
        // signal-hook's handler stays installed, so the exec path must still
        // reset the signal in a child.
        let mask = HANDLED_SIGNALS.load(Ordering::SeqCst);
        assert_ne!(mask & (1 << (libc::SIGALRM - 1)), 0);
    }

    #[test]
    fn unsupported_or_missing_signals_are_refused() {
        let none = Interrupts::builder().install().unwrap_err();
        assert_eq!(none.kind(), io::ErrorKind::InvalidInput);
        let chld = Interrupts::builder()
            .signal(libc::SIGCHLD)
            .install()
            .unwrap_err();
        assert_eq!(chld.kind(), io::ErrorKind::InvalidInput);
    }
}
