//! H2 / I3: a signal handler interrupting the thread that mutates the table
//! never observes a half-done update, and the [`MaskGuard`] that makes this
//! so blocks exactly what it should and restores exactly what it found.
//!
//! The storm tests aim `SIGUSR1` at the mutating thread from another thread
//! as fast as it can. The handler (registered through signal-hook) looks at
//! the descriptor being closed right now and compares `TABLE.contains(fd)`
//! with `fcntl(fd, F_GETFD)`: (tracked and open) and (untracked and closed)
//! are fine, anything else is a half-update. The tests demand a minimum
//! number of checks so they cannot pass by never being interrupted, and a
//! negative control shows that the very same handler catches the bug when
//! the close is not masked.

mod util;

use std::os::fd::{AsRawFd, IntoRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use fdtable::{FdTable, MaskGuard};
use signal_hook::consts::{SIGUSR1, SIGUSR2};
use signal_hook::SigId;
use util::Deadline;

static TABLE: FdTable = FdTable::new();

/// Busy-wait between two signals: fast enough to hit every window, slow
/// enough that the mutating thread still makes progress.
const SPINS: u32 = 50;

/// The descriptor whose close is in progress on the mutating thread, or -1.
static CURRENT: AtomicI32 = AtomicI32::new(-1);
/// Negative control: the handler asks this flag instead of the table.
static USE_FAKE: AtomicBool = AtomicBool::new(false);
static FAKE_REGISTERED: AtomicBool = AtomicBool::new(false);

/// Where the mutating thread is: 0 before the release call, 1 inside it,
/// 2 after it (both edges end with a syscall, where pending signals land).
static PHASE: AtomicU64 = AtomicU64::new(0);
/// Consistent checks made in each phase.
static CHECKS_IN_PHASE: [AtomicU64; 3] = [const { AtomicU64::new(0) }; 3];

static SIGNALS: AtomicU64 = AtomicU64::new(0);
static SAW_TRACKED_OPEN: AtomicU64 = AtomicU64::new(0);
static SAW_UNTRACKED_CLOSED: AtomicU64 = AtomicU64::new(0);
static SAW_TRACKED_CLOSED: AtomicU64 = AtomicU64::new(0);
static SAW_UNTRACKED_OPEN: AtomicU64 = AtomicU64::new(0);

/// The I3 check, run inside the signal handler: atomics, `contains` and
/// `fcntl` only, all async-signal-safe.
fn check_current() {
    SIGNALS.fetch_add(1, SeqCst);
    let fd = CURRENT.load(SeqCst);
    if fd < 0 {
        return;
    }
    let tracked = if USE_FAKE.load(SeqCst) {
        FAKE_REGISTERED.load(SeqCst)
    } else {
        TABLE.contains(fd)
    };
    // SAFETY: F_GETFD only reads descriptor flags; async-signal-safe.
    let open = unsafe { libc::fcntl(fd, libc::F_GETFD) } != -1;
    let counter = match (tracked, open) {
        (true, true) => &SAW_TRACKED_OPEN,
        (false, false) => &SAW_UNTRACKED_CLOSED,
        (true, false) => &SAW_TRACKED_CLOSED,
        (false, true) => &SAW_UNTRACKED_OPEN,
    };
    counter.fetch_add(1, SeqCst);
    if tracked == open {
        let phase = PHASE.load(SeqCst) as usize;
        CHECKS_IN_PHASE[phase.min(2)].fetch_add(1, SeqCst);
    }
}

fn reset_counters() {
    CURRENT.store(-1, SeqCst);
    PHASE.store(0, SeqCst);
    for c in &CHECKS_IN_PHASE {
        c.store(0, SeqCst);
    }
    USE_FAKE.store(false, SeqCst);
    FAKE_REGISTERED.store(false, SeqCst);
    for c in [
        &SIGNALS,
        &SAW_TRACKED_OPEN,
        &SAW_UNTRACKED_CLOSED,
        &SAW_TRACKED_CLOSED,
        &SAW_UNTRACKED_OPEN,
    ] {
        c.store(0, SeqCst);
    }
}

fn mismatches() -> u64 {
    SAW_TRACKED_CLOSED.load(SeqCst) + SAW_UNTRACKED_OPEN.load(SeqCst)
}

fn consistent_checks() -> (u64, u64) {
    (
        SAW_TRACKED_OPEN.load(SeqCst),
        SAW_UNTRACKED_CLOSED.load(SeqCst),
    )
}

/// A signal-hook action, unregistered on drop (also on panic).
struct Handler(Option<SigId>);

impl Handler {
    fn register(signal: libc::c_int, action: fn()) -> Handler {
        // SAFETY: every action passed here only touches atomics and calls
        // async-signal-safe functions (`contains`, `fcntl`).
        let id = unsafe { signal_hook::low_level::register(signal, action) }
            .expect("register signal handler");
        Handler(Some(id))
    }
}

impl Drop for Handler {
    fn drop(&mut self) {
        if let Some(id) = self.0.take() {
            signal_hook::low_level::unregister(id);
        }
    }
}

/// A thread that `pthread_kill`s `target` with SIGUSR1 until stopped. Stops
/// and joins on drop, so it never signals a thread that has exited.
struct Storm {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<u64>>,
}

impl Storm {
    fn start(target: libc::pthread_t) -> Storm {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let target = target as usize;
        let thread = std::thread::spawn(move || {
            let mut sent = 0u64;
            // Hard bound in case the owner forgets to stop us.
            let mut limit = Deadline::new(Duration::from_secs(30), u64::MAX);
            while !flag.load(SeqCst) && limit.tick() {
                // SAFETY: `target` is the mutating thread, which joins this
                // thread (via `Storm::drop`) before it can exit.
                let rc = unsafe { libc::pthread_kill(target as libc::pthread_t, SIGUSR1) };
                assert_eq!(rc, 0, "pthread_kill");
                sent += 1;
                for _ in 0..SPINS {
                    std::hint::spin_loop();
                }
            }
            sent
        });
        Storm {
            stop,
            thread: Some(thread),
        }
    }

    /// Stop and return how many signals were sent.
    fn finish(mut self) -> u64 {
        self.stop.store(true, SeqCst);
        self.thread.take().unwrap().join().expect("storm thread")
    }
}

impl Drop for Storm {
    fn drop(&mut self) {
        self.stop.store(true, SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// How a handle is released while `CURRENT` names its descriptor.
#[derive(Clone, Copy, Debug)]
enum Release {
    /// `Tracked::close()`.
    Close,
    /// `drop(Tracked)`.
    Drop,
    /// `close_all()` retires it (number reserved), then the handle drops.
    CloseAllThenDrop,
    /// Dropped inside a `for_each` callback visiting it: deferred close.
    DropWhileVisited,
}

/// Consistent checks demanded per storm: in all, and made by signals that
/// landed inside the release call itself (the critical section and its edges).
const MIN_TOTAL: u64 = 1000;
const MIN_DURING: u64 = 200;
/// Release rounds demanded per storm: each is one interrupted close.
const MIN_ROUNDS: u64 = 2000;

fn yield_now() {
    // SAFETY: sched_yield has no preconditions.
    unsafe { libc::sched_yield() };
}

fn storm_while_releasing(release: Release) {
    let _serial = util::serial();
    reset_counters();
    let sentinels = util::Sentinels::open(2);
    let baseline = util::open_fd_count();
    let handler = Handler::register(SIGUSR1, check_current);
    let storm = Storm::start(util::pthread_self());

    let started = std::time::Instant::now();
    let mut deadline = Deadline::new(Duration::from_secs(20), 5_000_000);
    let mut rounds = 0u64;
    while deadline.tick() {
        let (before, after) = consistent_checks();
        if before + after >= MIN_TOTAL
            && CHECKS_IN_PHASE[1].load(SeqCst) >= MIN_DURING
            && rounds >= MIN_ROUNDS
        {
            break;
        }
        rounds += 1;
        let handle = TABLE.track(util::dev_null()).expect("track");
        let fd = handle.as_raw_fd();
        PHASE.store(0, SeqCst);
        CURRENT.store(fd, SeqCst);
        // A pending signal is delivered on the way out of any syscall: this
        // lets the handler see the "tracked and open" side often too.
        yield_now();
        PHASE.store(1, SeqCst);
        match release {
            Release::Close => handle.close().expect("close"),
            Release::Drop => drop(handle),
            Release::CloseAllThenDrop => {
                let report = TABLE.close_all();
                assert_eq!(report.released(), 1, "{report:?}");
                drop(handle);
            }
            Release::DropWhileVisited => {
                let mut handle = Some(handle);
                let mut visited = 0;
                TABLE.for_each(|b| {
                    if b.as_raw_fd() == fd {
                        visited += 1;
                        drop(handle.take());
                        // Deferred: the visited number is still ours.
                        assert!(util::is_open(fd) && TABLE.contains(fd));
                    }
                });
                assert_eq!(visited, 1);
            }
        }
        PHASE.store(2, SeqCst);
        yield_now();
        CURRENT.store(-1, SeqCst);
    }
    let sent = storm.finish();
    drop(handler);

    let (before, after) = consistent_checks();
    let during = CHECKS_IN_PHASE[1].load(SeqCst);
    let (tc, uo) = (
        SAW_TRACKED_CLOSED.load(SeqCst),
        SAW_UNTRACKED_OPEN.load(SeqCst),
    );
    eprintln!(
        "{release:?}: {:?} rounds={rounds} sent={sent} handled={} during={during} tracked+open={before} \
         untracked+closed={after} tracked+closed={tc} untracked+open={uo}",
        started.elapsed(),
        SIGNALS.load(SeqCst)
    );
    assert_eq!(
        mismatches(),
        0,
        "{release:?}: a handler saw a half-update: tracked+closed={tc}, untracked+open={uo}"
    );
    assert!(
        before + after >= MIN_TOTAL && during >= MIN_DURING && before > 0 && after > 0,
        "{release:?}: too few checks to mean anything \
         (tracked+open={before}, untracked+closed={after}, inside the release={during})"
    );
    assert!(
        rounds >= MIN_ROUNDS,
        "{release:?}: only {rounds} releases happened under the storm"
    );
    assert!(TABLE.is_empty());
    assert_eq!(TABLE.swallowed_close_errors(), 0);
    assert_eq!(util::open_fd_count(), baseline, "descriptor leak");
    sentinels.check_and_close();
}

#[test]
fn signal_storm_never_sees_half_done_explicit_close() {
    storm_while_releasing(Release::Close);
}

#[test]
fn signal_storm_never_sees_half_done_drop() {
    storm_while_releasing(Release::Drop);
}

#[test]
fn signal_storm_never_sees_half_done_close_all_retire_or_placeholder_close() {
    storm_while_releasing(Release::CloseAllThenDrop);
}

#[test]
fn signal_storm_never_sees_half_done_deferred_close_after_walk() {
    storm_while_releasing(Release::DropWhileVisited);
}

/// Negative control: the same handler, aimed at a hand-written unmasked
/// "close, then unregister" sequence, does catch the half-update. A pending
/// signal is delivered when `close(2)` returns to user space, which is exactly
/// inside the window, so this is reliable. Proves the storm tests above can
/// fail.
#[test]
fn negative_control_unmasked_close_then_unregister_is_caught() {
    let _serial = util::serial();
    reset_counters();
    USE_FAKE.store(true, SeqCst);
    let handler = Handler::register(SIGUSR1, check_current);
    let storm = Storm::start(util::pthread_self());

    let mut deadline = Deadline::new(Duration::from_secs(20), 5_000_000);
    while deadline.tick() && SAW_TRACKED_CLOSED.load(SeqCst) < 3 {
        let fd: RawFd = util::dev_null().into_raw_fd();
        FAKE_REGISTERED.store(true, SeqCst);
        CURRENT.store(fd, SeqCst);
        // The bug under test: close first, unregister after, no mask.
        // SAFETY: `fd` was just released from its OwnedFd; we own it.
        unsafe { libc::close(fd) };
        FAKE_REGISTERED.store(false, SeqCst);
        CURRENT.store(-1, SeqCst);
    }
    let sent = storm.finish();
    drop(handler);
    USE_FAKE.store(false, SeqCst);
    eprintln!(
        "control: sent={sent} tracked+closed={} untracked+open={}",
        SAW_TRACKED_CLOSED.load(SeqCst),
        SAW_UNTRACKED_OPEN.load(SeqCst)
    );
    assert!(
        SAW_TRACKED_CLOSED.load(SeqCst) >= 1,
        "the handler never caught the unmasked half-update: the storm tests are vacuous"
    );
}

// ---------------------------------------------------------------------------
// MaskGuard

#[test]
fn mask_guard_blocks_async_signals_but_never_synchronous_faults() {
    let _serial = util::serial();
    let _restore = util::RestoreMask::save();
    util::block_by_hand(&[SIGUSR1, SIGUSR2], libc::SIG_UNBLOCK);
    let guard = MaskGuard::new();
    assert!(MaskGuard::is_active());
    let inside = util::current_mask();
    for sig in [
        libc::SIGINT,
        libc::SIGTERM,
        libc::SIGHUP,
        libc::SIGQUIT,
        libc::SIGUSR1,
        libc::SIGUSR2,
        libc::SIGALRM,
        libc::SIGCHLD,
        libc::SIGPIPE,
        libc::SIGWINCH,
        libc::SIGRTMIN(),
        libc::SIGRTMAX(),
    ] {
        assert!(
            util::has(&inside, sig),
            "signal {sig} not blocked under the guard"
        );
    }
    for sig in [libc::SIGSEGV, libc::SIGBUS, libc::SIGFPE, libc::SIGILL] {
        assert!(
            !util::has(&inside, sig),
            "synchronous fault signal {sig} blocked: a crash would become a hang"
        );
    }
    drop(guard);
    assert!(!MaskGuard::is_active());
    let after = util::current_mask();
    assert!(!util::has(&after, SIGUSR1) && !util::has(&after, SIGUSR2));
}

#[test]
fn nested_mask_guard_restores_exactly_the_previous_mask() {
    let _serial = util::serial();
    let _restore = util::RestoreMask::save();
    // A distinctive starting mask: some signals already blocked by the caller.
    util::block_by_hand(&[SIGUSR1, libc::SIGINT], libc::SIG_UNBLOCK);
    util::block_by_hand(&[SIGUSR2, libc::SIGRTMIN() + 3], libc::SIG_BLOCK);
    let before = util::members(&util::current_mask());
    assert!(before.contains(&SIGUSR2) && !before.contains(&SIGUSR1));

    let outer = MaskGuard::new();
    let outer_mask = util::members(&util::current_mask());
    let inner = MaskGuard::new();
    assert_eq!(util::members(&util::current_mask()), outer_mask);
    drop(inner);
    assert_eq!(
        util::members(&util::current_mask()),
        outer_mask,
        "dropping a nested guard unblocked signals while the outer one lives"
    );
    assert!(MaskGuard::is_active());
    drop(outer);
    assert_eq!(
        util::members(&util::current_mask()),
        before,
        "the outermost guard did not restore exactly the previous mask"
    );
    // The caller's own SIGUSR2 block survives the guard's restore.
    assert!(util::has(&util::current_mask(), SIGUSR2));
}

/// "Nested guards must not re-issue the syscalls": observable by changing the
/// mask by hand under the outer guard. A nested guard that re-blocked (or
/// restored on drop) would undo the hand-made change.
#[test]
fn nested_mask_guard_issues_no_mask_syscall() {
    let _serial = util::serial();
    let _restore = util::RestoreMask::save();
    let outer = MaskGuard::new();
    util::block_by_hand(&[libc::SIGWINCH], libc::SIG_UNBLOCK);
    let inner = MaskGuard::new();
    assert!(
        !util::has(&util::current_mask(), libc::SIGWINCH),
        "a nested guard called pthread_sigmask(SIG_BLOCK)"
    );
    drop(inner);
    assert!(
        !util::has(&util::current_mask(), libc::SIGWINCH),
        "a nested guard's drop called pthread_sigmask(SIG_SETMASK)"
    );
    drop(outer);
}

static USR2_DELIVERED: AtomicU64 = AtomicU64::new(0);

fn count_usr2() {
    USR2_DELIVERED.fetch_add(1, SeqCst);
}

#[test]
fn signal_raised_under_mask_guard_is_held_then_delivered_on_drop() {
    let _serial = util::serial();
    let _restore = util::RestoreMask::save();
    util::block_by_hand(&[SIGUSR2], libc::SIG_UNBLOCK);
    USR2_DELIVERED.store(0, SeqCst);
    let handler = Handler::register(SIGUSR2, count_usr2);

    let guard = MaskGuard::new();
    // SAFETY: signalling the current thread, which is alive.
    assert_eq!(
        unsafe { libc::pthread_kill(libc::pthread_self(), SIGUSR2) },
        0
    );
    assert_eq!(USR2_DELIVERED.load(SeqCst), 0, "delivered through the mask");
    let mut pending = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigpending fills the whole set.
    let pending = unsafe {
        assert_eq!(libc::sigpending(pending.as_mut_ptr()), 0);
        pending.assume_init()
    };
    assert!(
        util::has(&pending, SIGUSR2),
        "signal lost instead of pending"
    );
    drop(guard);
    // Delivery happens on return from the restoring pthread_sigmask.
    assert_eq!(
        USR2_DELIVERED.load(SeqCst),
        1,
        "pending signal not delivered on drop"
    );
    drop(handler);
}

/// No table operation leaves a signal blocked behind it (each mask pair is
/// balanced), and none unblocks what the caller had blocked.
#[test]
fn table_operations_leave_the_thread_mask_as_they_found_it() {
    let _serial = util::serial();
    let _restore = util::RestoreMask::save();
    util::block_by_hand(&[SIGUSR1], libc::SIG_UNBLOCK);
    util::block_by_hand(&[SIGUSR2], libc::SIG_BLOCK);
    let expected = util::members(&util::current_mask());
    let same = |what: &str| {
        assert_eq!(
            util::members(&util::current_mask()),
            expected,
            "mask changed after {what}"
        );
        assert!(!MaskGuard::is_active(), "guard left active after {what}");
    };

    let a = TABLE.track(util::dev_null()).unwrap();
    same("track");
    a.close().unwrap();
    same("close");
    drop(TABLE.track(util::dev_null()).unwrap());
    same("drop");
    let b = TABLE.track(util::dev_null()).unwrap();
    drop(b.into_inner());
    same("into_inner");
    let mut c = Some(TABLE.track(util::dev_null()).unwrap());
    TABLE.for_each(|_| {
        // User code runs unmasked, even inside the walk.
        assert_eq!(util::members(&util::current_mask()), expected);
        assert!(!MaskGuard::is_active(), "callback runs under the mask");
        drop(c.take());
    });
    same("deferred close after for_each");
    let d = TABLE.track(util::dev_null()).unwrap();
    let _ = TABLE.close_all();
    same("close_all");
    drop(d);
    same("drop of a retired handle");
    assert!(TABLE.is_empty());
}

/// The storm tests catch a close that runs before its unregister, but the
/// window the mask really guards (between the unregistering CAS and the
/// `close(2)` entry) is a few nanoseconds wide, too narrow for a storm to hit
/// reliably. So look at the mask directly: a TCP socket with unsent data and
/// `SO_LINGER` makes `close(2)` sleep in the kernel, and while the closing
/// thread sleeps there its `SigBlk` in /proc must show the async signals
/// blocked. Without the guard around the close this fails every time.
#[cfg(target_os = "linux")]
#[test]
fn the_close_syscall_runs_with_async_signals_blocked() {
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};

    let _serial = util::serial();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (_peer, _) = listener.accept().unwrap(); // never reads: the data stays unsent
    client.set_nonblocking(true).unwrap();
    let chunk = [0u8; 64 * 1024];
    let mut filled = Deadline::new(Duration::from_secs(10), 100_000);
    while filled.tick() {
        match client.write(&chunk) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("fill: {e}"),
        }
    }
    client.set_nonblocking(false).unwrap();
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 2,
    };
    // SAFETY: a valid `linger` for SO_LINGER on our own socket.
    let rc = unsafe {
        libc::setsockopt(
            client.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0);
    let handle = TABLE.track(client).unwrap();

    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    let closer = std::thread::spawn(move || {
        // SAFETY: gettid has no preconditions.
        tid_tx.send(unsafe { libc::gettid() }).unwrap();
        drop(handle); // sleeps in close(2) for up to the linger time
    });
    let tid = tid_rx.recv().unwrap();
    let mut seen_in_close = None;
    let mut wait = Deadline::new(Duration::from_secs(10), 1_000_000);
    while wait.tick() && !closer.is_finished() {
        let syscall = std::fs::read_to_string(format!("/proc/self/task/{tid}/syscall"));
        let in_close = syscall.is_ok_and(|s| {
            s.split_whitespace().next() == Some(libc::SYS_close.to_string().as_str())
        });
        if in_close {
            let status = std::fs::read_to_string(format!("/proc/self/task/{tid}/status")).unwrap();
            let blocked = status
                .lines()
                .find_map(|l| l.strip_prefix("SigBlk:"))
                .map(|v| u64::from_str_radix(v.trim(), 16).unwrap())
                .unwrap();
            seen_in_close = Some(blocked);
            break;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    closer.join().unwrap();
    let blocked = seen_in_close.expect("never saw the closing thread inside close(2)");
    for sig in [libc::SIGINT, libc::SIGTERM, SIGUSR1, SIGUSR2] {
        assert_ne!(
            blocked & (1 << (sig - 1)),
            0,
            "signal {sig} was deliverable during close(2) (SigBlk {blocked:#x})"
        );
    }
    assert!(TABLE.is_empty());
}
