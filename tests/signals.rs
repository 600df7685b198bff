//! H2 / I3: a signal handler interrupting the thread that mutates the table
//! never observes a half-done update, and the [`MaskGuard`] that makes this
//! so blocks exactly what it should and restores exactly what it found.
//!
//! The storm tests aim `SIGUSR1` at the mutating thread from another thread
//! ([`util::Storm`], paced so it cannot starve the thread it aims at). The
//! handler (registered through signal-hook) looks at the descriptor being
//! released right now and compares `TABLE.contains(fd)` with what the
//! number refers to (`fstat`): (tracked, open on its file), (tracked, open
//! on `close_all`'s placeholder) and (untracked, closed) are fine, anything
//! else is a half-update. A negative control shows that the very same
//! handler catches the bug when the close is not masked.
//!
//! # The storms must hit the windows they claim to cover
//! Each release is split into phases, and the handler counts what it saw in
//! each. A signal that arrives while the release's critical section runs
//! with signals blocked is delivered when the section unblocks them, that
//! is *inside the same phase, after the change*: so "the new state, seen
//! inside the phase that makes it" counts the signals that really landed in
//! that critical section (its edges included). Each test names the windows
//! it covers, runs until each has [`MIN_WINDOW_HITS`] of those (or a
//! generous deadline passes) and then fails if any has fewer: a storm that
//! never hit cannot pass. Counting all signals, or all checks made anywhere
//! inside the release call, could (a storm that only ever lands in the walk
//! around a deferred close, or in `close_all` but never in the placeholder's
//! close, would pass).

mod util;

use std::os::fd::{AsRawFd, IntoRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering::SeqCst};
use std::time::Duration;

use fdtable::{FdTable, MaskGuard};
use signal_hook::consts::{SIGUSR1, SIGUSR2};
use signal_hook::SigId;
use util::{Deadline, Storm, StormTarget};

static TABLE: FdTable = FdTable::new();

/// The descriptor whose release is in progress on the mutating thread, or -1,
/// and the `(st_dev, st_ino)` it had when tracked.
static CURRENT: AtomicI32 = AtomicI32::new(-1);
static CURRENT_ID: (AtomicU64, AtomicU64) = (AtomicU64::new(0), AtomicU64::new(0));
/// Negative control: the handler asks this flag instead of the table.
static USE_FAKE: AtomicBool = AtomicBool::new(false);
static FAKE_REGISTERED: AtomicBool = AtomicBool::new(false);

/// Where the mutating thread is (see [`Release`] for what each window is).
/// A pending signal is delivered on the way out of a syscall or when a
/// mask is lifted, so a phase's own critical section shows up as the new
/// state seen inside that phase.
const BEFORE: usize = 0;
const WINDOW_1: usize = 1;
const WINDOW_2: usize = 2;
const AFTER: usize = 3;
static PHASE: AtomicU64 = AtomicU64::new(0);

/// What the handler can see of `CURRENT`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Seen {
    /// Tracked, open on the file it was tracked with.
    Original,
    /// Tracked, open on something else: `close_all`'s placeholder.
    Retired,
    /// Untracked and closed.
    Gone,
    /// Half-updates.
    TrackedClosed,
    UntrackedOpen,
}
const SEEN_KINDS: usize = 5;

/// `SEEN[phase][kind]`: what the handler saw, by phase.
static SEEN: [[AtomicU64; SEEN_KINDS]; 4] =
    [const { [const { AtomicU64::new(0) }; SEEN_KINDS] }; 4];
/// Handler runs (the storm's pace: counted as the handler's last step).
static HANDLED: AtomicU64 = AtomicU64::new(0);
/// Bumped by the mutating thread's own code: the storm's other pace.
static PROGRESS: AtomicU64 = AtomicU64::new(0);

fn seen(phase: usize, kind: Seen) -> u64 {
    SEEN[phase][kind as usize].load(SeqCst)
}

fn seen_anywhere(kind: Seen) -> u64 {
    (0..4).map(|phase| seen(phase, kind)).sum()
}

fn progress() {
    PROGRESS.fetch_add(1, SeqCst);
}

/// The I3 check, run inside the signal handler: atomics, `contains` and
/// `fstat` only, all async-signal-safe. Then the count the storm waits for.
fn check_current() {
    look_at_current();
    HANDLED.fetch_add(1, SeqCst);
}

fn look_at_current() {
    let fd = CURRENT.load(SeqCst);
    if fd < 0 {
        return;
    }
    // The handler interrupts the mutating thread, so the phase cannot move
    // while it looks.
    let phase = (PHASE.load(SeqCst) as usize).min(AFTER);
    let tracked = if USE_FAKE.load(SeqCst) {
        FAKE_REGISTERED.load(SeqCst)
    } else {
        TABLE.contains(fd)
    };
    let original = (CURRENT_ID.0.load(SeqCst), CURRENT_ID.1.load(SeqCst));
    let kind = match (tracked, util::identity(fd)) {
        (true, Some(id)) if id == original => Seen::Original,
        (true, Some(_)) => Seen::Retired,
        (false, None) => Seen::Gone,
        (true, None) => Seen::TrackedClosed,
        (false, Some(_)) => Seen::UntrackedOpen,
    };
    SEEN[phase][kind as usize].fetch_add(1, SeqCst);
}

fn reset_counters() {
    CURRENT.store(-1, SeqCst);
    PHASE.store(BEFORE as u64, SeqCst);
    for row in &SEEN {
        for c in row {
            c.store(0, SeqCst);
        }
    }
    USE_FAKE.store(false, SeqCst);
    FAKE_REGISTERED.store(false, SeqCst);
    // No storm runs between tests (serial), so its pace may restart at 0.
    HANDLED.store(0, SeqCst);
}

fn mismatches() -> u64 {
    seen_anywhere(Seen::TrackedClosed) + seen_anywhere(Seen::UntrackedOpen)
}

/// A signal-hook action, unregistered on drop (also on panic).
struct Handler(Option<SigId>);

impl Handler {
    fn register(signal: libc::c_int, action: fn()) -> Handler {
        // SAFETY: every action passed here only touches atomics and calls
        // async-signal-safe functions (`contains`, `fstat`).
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

/// Storm the calling thread with SIGUSR1, paced by [`HANDLED`] and
/// [`PROGRESS`].
fn storm_at_me() -> Storm {
    let me = StormTarget {
        thread: util::pthread_self(),
        handled: &HANDLED,
        progress: &PROGRESS,
    };
    // SAFETY: the calling thread (the test's) finishes or drops the storm
    // before it returns, so the target outlives the storm.
    unsafe { Storm::start(SIGUSR1, vec![me], Duration::from_secs(90)) }
}

/// How a handle is released while `CURRENT` names its descriptor, and the
/// windows each one covers.
#[derive(Clone, Copy, Debug)]
enum Release {
    /// `Tracked::close()`. Window 1: the call (the masked unregister and
    /// `close(2)`).
    Close,
    /// `drop(Tracked)`. Window 1: the drop.
    Drop,
    /// `close_all()` retires it (the number now names the placeholder),
    /// then the handle drops. Window 1: `close_all` (the masked `dup3` of
    /// the placeholder); window 2: the drop (the placeholder's close).
    CloseAllThenDrop,
    /// Dropped inside a `for_each` callback visiting it: deferred close.
    /// Window 2: from that drop until `for_each` returns (the unpin that
    /// unpublishes and closes).
    DropWhileVisited,
}

impl Release {
    /// The windows this release covers: phase, the state that shows the
    /// critical section happened, and a name for messages.
    fn windows(self) -> &'static [(usize, Seen, &'static str)] {
        match self {
            Release::Close => &[(WINDOW_1, Seen::Gone, "the masked close")],
            Release::Drop => &[(WINDOW_1, Seen::Gone, "the masked close in drop")],
            Release::CloseAllThenDrop => &[
                (WINDOW_1, Seen::Retired, "close_all's retire (dup3)"),
                (WINDOW_2, Seen::Gone, "the placeholder's close"),
            ],
            Release::DropWhileVisited => &[(
                WINDOW_2,
                Seen::Gone,
                "the deferred close after the callback",
            )],
        }
    }
}

/// Hits demanded in each window a storm test covers.
const MIN_WINDOW_HITS: u64 = 200;
/// Release rounds demanded per storm: each is one interrupted release.
const MIN_ROUNDS: u64 = 2000;
/// Looks at each side (tracked on its own file, and gone) demanded per
/// storm: the check must have seen both to mean anything.
const MIN_SIDES: u64 = 20;

fn yield_now() {
    // SAFETY: sched_yield has no preconditions.
    unsafe { libc::sched_yield() };
}

fn window_hits(release: Release) -> Vec<(u64, &'static str)> {
    release
        .windows()
        .iter()
        .map(|&(phase, kind, name)| (seen(phase, kind), name))
        .collect()
}

fn storm_while_releasing(release: Release) {
    let _serial = util::serial();
    reset_counters();
    let sentinels = util::Sentinels::open(2);
    let baseline = util::open_fd_count();
    let handler = Handler::register(SIGUSR1, check_current);
    let storm = storm_at_me();

    let started = std::time::Instant::now();
    // Generous: a loaded 2-core machine takes a second or two.
    let mut deadline = Deadline::new(Duration::from_secs(60), 50_000_000);
    let mut rounds = 0u64;
    while deadline.tick() {
        let enough = window_hits(release)
            .iter()
            .all(|&(hits, _)| hits >= MIN_WINDOW_HITS)
            && seen_anywhere(Seen::Original) >= MIN_SIDES
            && seen_anywhere(Seen::Gone) >= MIN_SIDES;
        // A half-update fails the test below; no need to wait for more.
        if (enough && rounds >= MIN_ROUNDS) || mismatches() > 0 {
            break;
        }
        rounds += 1;
        // A file of its own (not a pipe, like the placeholder): the handler
        // must tell the original file from the placeholder.
        let handle = TABLE
            .track(std::fs::File::open("/dev/zero").expect("open /dev/zero"))
            .expect("track");
        let fd = handle.as_raw_fd();
        let id = util::identity(fd).expect("tracked fd is open");
        PHASE.store(BEFORE as u64, SeqCst);
        CURRENT_ID.0.store(id.0, SeqCst);
        CURRENT_ID.1.store(id.1, SeqCst);
        CURRENT.store(fd, SeqCst);
        progress();
        // A pending signal is delivered on the way out of any syscall: this
        // lets the handler see the "tracked and open" side often too.
        yield_now();
        PHASE.store(WINDOW_1 as u64, SeqCst);
        progress();
        match release {
            Release::Close => handle.close().expect("close"),
            Release::Drop => drop(handle),
            Release::CloseAllThenDrop => {
                let report = TABLE.close_all();
                assert_eq!(report.released(), 1, "{report:?}");
                PHASE.store(WINDOW_2 as u64, SeqCst);
                progress();
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
                        PHASE.store(WINDOW_2 as u64, SeqCst);
                        progress();
                    }
                });
                assert_eq!(visited, 1);
            }
        }
        PHASE.store(AFTER as u64, SeqCst);
        progress();
        yield_now();
        CURRENT.store(-1, SeqCst);
    }
    let report = storm.finish();
    drop(handler);

    let hits = window_hits(release);
    let (original, gone) = (seen_anywhere(Seen::Original), seen_anywhere(Seen::Gone));
    let (tc, uo) = (
        seen_anywhere(Seen::TrackedClosed),
        seen_anywhere(Seen::UntrackedOpen),
    );
    eprintln!(
        "{release:?}: {:?} rounds={rounds} {report:?} handled={} windows={hits:?} \
         original={original} retired={} gone={gone} tracked+closed={tc} untracked+open={uo}",
        started.elapsed(),
        HANDLED.load(SeqCst),
        seen_anywhere(Seen::Retired),
    );
    assert_eq!(
        mismatches(),
        0,
        "{release:?}: a handler saw a half-update: tracked+closed={tc}, untracked+open={uo}"
    );
    for (hits, name) in hits {
        assert!(
            hits >= MIN_WINDOW_HITS,
            "{release:?}: the storm hit {name} only {hits} times (at least \
             {MIN_WINDOW_HITS}): too few to mean anything"
        );
    }
    assert!(
        original >= MIN_SIDES && gone >= MIN_SIDES,
        "{release:?}: the handler hardly saw one side (original={original}, gone={gone}, \
         at least {MIN_SIDES} each)"
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
    let storm = storm_at_me();

    let mut deadline = Deadline::new(Duration::from_secs(60), 5_000_000);
    while deadline.tick() && seen_anywhere(Seen::TrackedClosed) < 3 {
        let fd: RawFd = util::dev_null().into_raw_fd();
        let id = util::identity(fd).expect("open");
        CURRENT_ID.0.store(id.0, SeqCst);
        CURRENT_ID.1.store(id.1, SeqCst);
        FAKE_REGISTERED.store(true, SeqCst);
        CURRENT.store(fd, SeqCst);
        progress();
        // The bug under test: close first, unregister after, no mask.
        // SAFETY: `fd` was just released from its OwnedFd; we own it.
        unsafe { libc::close(fd) };
        FAKE_REGISTERED.store(false, SeqCst);
        CURRENT.store(-1, SeqCst);
    }
    let report = storm.finish();
    drop(handler);
    USE_FAKE.store(false, SeqCst);
    eprintln!(
        "control: {report:?} tracked+closed={} untracked+open={}",
        seen_anywhere(Seen::TrackedClosed),
        seen_anywhere(Seen::UntrackedOpen)
    );
    assert!(
        seen_anywhere(Seen::TrackedClosed) >= 1,
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
    ]
    .into_iter()
    .chain(util::realtime_signals())
    {
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
    // A real-time signal where there are any (Linux), else SIGWINCH.
    let distinctive = util::realtime_signals()
        .first()
        .map_or(libc::SIGWINCH, |&rtmin| rtmin + 3);
    util::block_by_hand(&[SIGUSR2, distinctive], libc::SIG_BLOCK);
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
    let _serial = util::serial();
    // The peer never reads: the data stays unsent.
    let (client, _peer) = util::lingering_socket(2);
    let handle = TABLE.track(client).unwrap();
    // The drop sleeps in close(2) for up to the linger time.
    let seen_in_close = util::signals_blocked_in_close(move || drop(handle));
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

// ---------------------------------------------------------------------------
// Review finding 2: no batch mask in close_all
// ---------------------------------------------------------------------------

/// How long the kernel keeps a `dup3` over the lingering socket waiting:
/// far longer than the test waits for the child to die.
#[cfg(target_os = "linux")]
const LINGER_SECONDS: libc::c_int = 120;

/// A single-threaded program stuck in `close_all` (the last close of a
/// socket with `SO_LINGER` and unsent data blocks in the kernel; NFS and
/// FUSE files, ttys draining do the same) can still be killed by a
/// default-action SIGINT at once, as after a first Ctrl-C that restored
/// the default: `close_all` runs its releases with signals deliverable.
/// Before the fix it held every async signal blocked for the whole batch,
/// so the second Ctrl-C waited for the kernel.
///
/// The program is a fork child (single-threaded, like the programs the
/// finding is about); the parent drops its copy of the socket, so the
/// child's `dup3` drops the last reference and lingers, then looks at the
/// child's `SigBlk` while it sleeps in `dup3` and sends SIGINT.
#[cfg(target_os = "linux")]
#[test]
fn sigint_kills_a_process_blocked_in_close_all_at_once() {
    let _serial = util::serial();
    let (client, peer) = util::lingering_socket(LINGER_SECONDS);
    let (go_read, go_write) = util::pipe();
    // SAFETY: the child makes only async-signal-safe calls (and `track`'s
    // chunk `mmap`) and leaves with `_exit`.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        // SAFETY (whole child): raw calls on locals; `_exit` at the end.
        unsafe {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            let mut set = std::mem::zeroed::<libc::sigset_t>();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGINT);
            libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
            let mut byte = 0u8;
            if libc::read(go_read.as_raw_fd(), (&mut byte as *mut u8).cast(), 1) != 1 {
                libc::_exit(1);
            }
            let Ok(handle) = TABLE.track(client) else {
                libc::_exit(2);
            };
            let report = TABLE.close_all();
            std::mem::forget((handle, report));
            libc::_exit(3);
        }
    }
    // The child's copy is now the only one: its `dup3` is the last close.
    drop(client);
    // SAFETY: one byte from a local to our pipe.
    assert_eq!(
        unsafe { libc::write(go_write.as_raw_fd(), b"g".as_ptr().cast(), 1) },
        1
    );
    // Wait (bounded) until it sleeps inside the release.
    let mut deadline = Deadline::new(Duration::from_secs(30), u64::MAX);
    let mut in_dup3 = false;
    while deadline.tick() {
        if util::blocked_in_syscall(pid) == Some(libc::SYS_dup3) {
            in_dup3 = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let blocked = util::blocked_signals(pid);
    // SAFETY: `pid` is our unreaped child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    // Generous, yet far below the linger time: a hang detector.
    let end = util::wait_child(pid, Duration::from_secs(60)).unwrap();
    drop(peer);
    assert!(in_dup3, "the child never blocked in dup3 ({end:?})");
    assert_eq!(
        blocked & (1 << (libc::SIGINT - 1)),
        0,
        "SIGINT was blocked while close_all waited in the kernel (SigBlk {blocked:#x})"
    );
    assert_eq!(
        end,
        util::ChildEnd::Signaled(libc::SIGINT),
        "the child was not killed by SIGINT while stuck in close_all"
    );
}
