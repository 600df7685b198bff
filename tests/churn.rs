//! H1 + H2 + H3 + H4 together: several threads track, close, drop,
//! `into_inner`, walk and `close_all` at once while a storm of `SIGUSR1`
//! hits every one of them.
//!
//! What the signal handler checks on the interrupted thread is race-free
//! even with other threads recycling numbers: every descriptor this thread
//! holds a live handle for, and the one its walk is visiting, must be
//! registered (`contains`) and open on its own file (or on `close_all`'s
//! placeholder). A table that closed a number it does not own, let a
//! visited number be recycled, or unregistered a live handle is caught.
//! (The exact "closing right now" check of I3 lives in `tests/signals.rs`:
//! with other threads opening descriptors it would race with number reuse.)
//! After the churn: nothing leaked, no foreign fd touched, no close failed.
//!
//! The storm ([`util::Storm`]) is paced so it cannot starve a worker, and
//! the test runs until the handler has looked inside each window it claims
//! to cover at least a minimum number of times (or a generous deadline
//! passes, and then it fails): the visited number while its callback runs,
//! the visited number after this thread released it in that callback (its
//! close deferred), this thread's handles while another thread's
//! `close_all` retires numbers, and while another thread walks (pins).

mod util;

use std::cell::Cell;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

use fdtable::{FdTable, Tracked};
use util::Deadline;

static TABLE: FdTable = FdTable::new();
/// Operations done so far by all churners (for the run-until-enough loop).
static OPS_SO_FAR: AtomicU64 = AtomicU64::new(0);
/// The least churn that makes the run meaningful.
const MIN_OPS: u64 = 3000;

const THREADS: usize = 3;
const SLOTS: usize = 24;

/// Per worker: handler runs (the storm's pace, counted last in the
/// handler) and progress of its own code (the storm's other pace).
static HANDLED: [AtomicU64; THREADS] = [const { AtomicU64::new(0) }; THREADS];
static PROGRESS: [AtomicU64; THREADS] = [const { AtomicU64::new(0) }; THREADS];

/// `close_all` calls and walks in progress, by anyone; each thread also
/// counts its own (a handler on a thread cannot be inside its own).
static CLOSE_ALLS_RUNNING: AtomicU64 = AtomicU64::new(0);
static WALKS_RUNNING: AtomicU64 = AtomicU64::new(0);

/// Handler looks inside each window (see the module docs).
static VISIT_CHECKS: AtomicU64 = AtomicU64::new(0);
static RELEASED_VISIT_CHECKS: AtomicU64 = AtomicU64::new(0);
static CHECKS_IN_OTHERS_CLOSE_ALL: AtomicU64 = AtomicU64::new(0);
static CHECKS_IN_OTHERS_WALK: AtomicU64 = AtomicU64::new(0);

/// The least number of looks inside each window, and of handler runs per
/// worker.
const MIN_VISIT_CHECKS: u64 = 1000;
const MIN_RELEASED_VISIT_CHECKS: u64 = 200;
const MIN_CHECKS_IN_CLOSE_ALL: u64 = 200;
const MIN_CHECKS_IN_WALK: u64 = 1000;
const MIN_HANDLED_PER_WORKER: u64 = 500;

fn windows() -> [(&'static str, u64, u64); 4] {
    [
        (
            "the visited number during its callback",
            VISIT_CHECKS.load(SeqCst),
            MIN_VISIT_CHECKS,
        ),
        (
            "the visited number after its release in the callback",
            RELEASED_VISIT_CHECKS.load(SeqCst),
            MIN_RELEASED_VISIT_CHECKS,
        ),
        (
            "our handles during another thread's close_all",
            CHECKS_IN_OTHERS_CLOSE_ALL.load(SeqCst),
            MIN_CHECKS_IN_CLOSE_ALL,
        ),
        (
            "our handles during another thread's walk",
            CHECKS_IN_OTHERS_WALK.load(SeqCst),
            MIN_CHECKS_IN_WALK,
        ),
    ]
}

fn enough_hits() -> bool {
    windows().iter().all(|&(_, hits, min)| hits >= min)
        && HANDLED
            .iter()
            .all(|h| h.load(SeqCst) >= MIN_HANDLED_PER_WORKER)
}

thread_local! {
    /// Numbers this thread holds live handles for (-1: empty) and their
    /// files' identities. Written before a handle is published here and
    /// cleared before it is released; read by the signal handler.
    static OWNED: [AtomicI32; SLOTS] = const { [const { AtomicI32::new(-1) }; SLOTS] };
    static OWNED_ID: [(AtomicU64, AtomicU64); SLOTS] =
        const { [const { (AtomicU64::new(0), AtomicU64::new(0)) }; SLOTS] };
    /// The number this thread's walk is visiting, and its identity.
    static VISITING: AtomicI32 = const { AtomicI32::new(-1) };
    static VISITING_ID: (AtomicU64, AtomicU64) = const { (AtomicU64::new(0), AtomicU64::new(0)) };
    /// Whether this thread released the visited number in its callback.
    static VISITING_RELEASED: AtomicBool = const { AtomicBool::new(false) };
    /// This thread's worker index (`usize::MAX` elsewhere) and how many
    /// `close_all` calls and walks it is inside.
    static ME: Cell<usize> = const { Cell::new(usize::MAX) };
    static OWN_CLOSE_ALLS: AtomicU64 = const { AtomicU64::new(0) };
    static OWN_WALKS: AtomicU64 = const { AtomicU64::new(0) };
}

/// The identity of `close_all`'s placeholder (see [`placeholder_identity`]).
static PLACEHOLDER_ID: (AtomicU64, AtomicU64) = (AtomicU64::new(0), AtomicU64::new(0));

static CHECKS: AtomicU64 = AtomicU64::new(0);
static MISMATCHES: AtomicU64 = AtomicU64::new(0);

/// fstat-based identity, async-signal-safe.
fn id_of(fd: RawFd) -> Option<(u64, u64)> {
    util::identity(fd)
}

fn load_id(id: &(AtomicU64, AtomicU64)) -> (u64, u64) {
    (id.0.load(SeqCst), id.1.load(SeqCst))
}

fn store_id(id: &(AtomicU64, AtomicU64), v: (u64, u64)) {
    id.0.store(v.0, SeqCst);
    id.1.store(v.1, SeqCst);
}

/// The handler: the check, then the count the storm waits for.
fn on_signal() {
    check_owned();
    if let Some(handled) = HANDLED.get(ME.with(Cell::get)) {
        handled.fetch_add(1, SeqCst);
    }
}

/// The check: atomics, const thread-locals, `contains` and `fstat` only.
fn check_owned() {
    let others_close_all =
        CLOSE_ALLS_RUNNING.load(SeqCst) > OWN_CLOSE_ALLS.with(|c| c.load(SeqCst));
    let others_walk = WALKS_RUNNING.load(SeqCst) > OWN_WALKS.with(|c| c.load(SeqCst));
    let placeholder = load_id(&PLACEHOLDER_ID);
    let verdict = |fd: RawFd, expected: (u64, u64), must_be_tracked: bool| {
        CHECKS.fetch_add(1, SeqCst);
        let ok_id = matches!(id_of(fd), Some(id) if id == expected || id == placeholder);
        if !ok_id || (must_be_tracked && !TABLE.contains(fd)) {
            MISMATCHES.fetch_add(1, SeqCst);
        }
    };
    OWNED.with(|owned| {
        OWNED_ID.with(|ids| {
            for (slot, id) in owned.iter().zip(ids) {
                let fd = slot.load(SeqCst);
                if fd >= 0 {
                    verdict(fd, load_id(id), true);
                    if others_close_all {
                        CHECKS_IN_OTHERS_CLOSE_ALL.fetch_add(1, SeqCst);
                    }
                    if others_walk {
                        CHECKS_IN_OTHERS_WALK.fetch_add(1, SeqCst);
                    }
                }
            }
        })
    });
    let fd = VISITING.with(|v| v.load(SeqCst));
    if fd >= 0 {
        // Visited: open on its own file until the callback returns (it may
        // have been closed meanwhile, so it need not be registered).
        verdict(fd, VISITING_ID.with(load_id), false);
        VISIT_CHECKS.fetch_add(1, SeqCst);
        if VISITING_RELEASED.with(|r| r.load(SeqCst)) {
            RELEASED_VISIT_CHECKS.fetch_add(1, SeqCst);
        }
    }
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> usize {
        (self.next() % n) as usize
    }
}

type Handle = Tracked<'static, OwnedFd>;

/// Handles of one churn thread, mirrored into its `OWNED` thread-local.
struct Held {
    slots: Vec<Option<Handle>>,
    close_errors: u64,
}

impl Held {
    fn new() -> Held {
        Held {
            slots: (0..SLOTS).map(|_| None).collect(),
            close_errors: 0,
        }
    }

    fn put(&mut self, handle: Handle) {
        let Some(i) = self.slots.iter().position(Option::is_none) else {
            // Full: release it at once.
            self.close(handle);
            return;
        };
        let fd = handle.as_raw_fd();
        let id = id_of(fd).expect("a fresh handle is open");
        OWNED_ID.with(|ids| store_id(&ids[i], id));
        OWNED.with(|o| o[i].store(fd, SeqCst));
        self.slots[i] = Some(handle);
    }

    /// The slot holding a handle for `fd`, if any.
    fn slot_of(&self, fd: RawFd) -> Option<usize> {
        self.slots
            .iter()
            .position(|h| h.as_ref().is_some_and(|h| h.as_raw_fd() == fd))
    }

    /// Take slot `i` out of the handler's view first, then hand it back.
    fn take(&mut self, i: usize) -> Option<Handle> {
        OWNED.with(|o| o[i].store(-1, SeqCst));
        self.slots[i].take()
    }

    fn close(&mut self, handle: Handle) {
        if let Err(e) = handle.close() {
            eprintln!("close failed: {e}");
            self.close_errors += 1;
        }
    }

    fn release(&mut self, i: usize, how: usize) {
        let Some(h) = self.take(i) else { return };
        match how {
            0 => self.close(h),
            1 => drop(h),
            _ => drop(h.into_inner()),
        }
    }
}

/// What `close_all` puts in place of a retired descriptor, learned by
/// retiring one: the table opens its placeholder once and reuses it.
fn placeholder_identity() -> (u64, u64) {
    let (read, _write) = util::pipe();
    let probe = TABLE.track(read).unwrap();
    let before = id_of(probe.as_raw_fd()).unwrap();
    assert_eq!(TABLE.close_all().released(), 1);
    let retired = id_of(probe.as_raw_fd()).expect("a retired number stays open");
    assert_ne!(retired, before, "close_all left the file in place");
    drop(probe);
    retired
}

/// Counts this thread into a running `close_all` or walk (for the
/// handler's windows) until dropped.
struct Running(
    &'static AtomicU64,
    &'static std::thread::LocalKey<AtomicU64>,
);

impl Running {
    fn enter(all: &'static AtomicU64, own: &'static std::thread::LocalKey<AtomicU64>) -> Running {
        // Own first, global second (and the reverse on the way out): a
        // handler in between sees fewer "other" ones, never more.
        own.with(|c| c.fetch_add(1, SeqCst));
        all.fetch_add(1, SeqCst);
        Running(all, own)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, SeqCst);
        self.1.with(|c| c.fetch_sub(1, SeqCst));
    }
}

fn churn(me: usize, seed: u64, stop: &AtomicBool) -> (u64, u64) {
    ME.with(|m| m.set(me));
    let progress = || PROGRESS[me].fetch_add(1, SeqCst);
    let mut rng = Rng(seed);
    let mut held = Held::new();
    let mut ops = 0u64;
    // Generous: the test stops us long before, once every window was hit.
    let mut deadline = Deadline::new(Duration::from_secs(70), 50_000_000);
    while !stop.load(SeqCst) && deadline.tick() {
        ops += 1;
        OPS_SO_FAR.fetch_add(1, SeqCst);
        progress();
        match rng.below(100) {
            0..=29 => {
                let (r, w) = util::pipe();
                held.put(TABLE.track(r).unwrap());
                held.put(TABLE.track(w).unwrap());
            }
            30..=39 => {
                let (a, b) = UnixStream::pair().unwrap();
                held.put(TABLE.track(OwnedFd::from(a)).unwrap());
                held.put(TABLE.track(OwnedFd::from(b)).unwrap());
            }
            40..=74 => {
                let i = rng.below(SLOTS as u64);
                let how = rng.below(3);
                held.release(i, how);
            }
            75..=98 => {
                let victim = rng.below(SLOTS as u64);
                let mut visited = 0u32;
                let _walking = Running::enter(&WALKS_RUNNING, &OWN_WALKS);
                TABLE.for_each(|fd| {
                    progress();
                    let n = fd.as_raw_fd();
                    let Some(id) = id_of(n) else {
                        // The visited number is closed: caught right here.
                        MISMATCHES.fetch_add(1, SeqCst);
                        return;
                    };
                    VISITING_ID.with(|v| store_id(v, id));
                    VISITING.with(|v| v.store(n, SeqCst));
                    visited += 1;
                    if visited % 7 == 1 {
                        // Release one of ours mid-walk, maybe this very one.
                        held.release(victim, visited as usize % 2);
                    }
                    if visited.is_multiple_of(3) {
                        // Release the visited number itself, if it is ours:
                        // its close is deferred until we return.
                        if let Some(i) = held.slot_of(n) {
                            VISITING_RELEASED.with(|r| r.store(true, SeqCst));
                            held.release(i, visited as usize % 2);
                            progress();
                        }
                    }
                    if visited.is_multiple_of(5) {
                        std::thread::yield_now();
                    }
                    VISITING.with(|v| v.store(-1, SeqCst));
                    VISITING_RELEASED.with(|r| r.store(false, SeqCst));
                });
            }
            _ => {
                let _closing = Running::enter(&CLOSE_ALLS_RUNNING, &OWN_CLOSE_ALLS);
                let report = TABLE.close_all();
                assert!(report.is_ok(), "{report:?}");
            }
        }
    }
    for i in 0..SLOTS {
        held.release(i, i % 3);
    }
    (ops, held.close_errors)
}

#[test]
fn churn_under_signal_storm_leaks_nothing_and_touches_nothing_foreign() {
    let _serial = util::serial();
    store_id(&PLACEHOLDER_ID, placeholder_identity());
    let sentinels = util::Sentinels::open(3);
    let baseline = util::open_fd_count();
    // SAFETY: `on_signal` only uses atomics, const thread-locals, `contains`
    // and `fstat`.
    let sig = unsafe { signal_hook::low_level::register(libc::SIGUSR1, on_signal) }.unwrap();

    static STOP: AtomicBool = AtomicBool::new(false);
    static FINISHED: AtomicUsize = AtomicUsize::new(0);
    static STORM_OVER: AtomicBool = AtomicBool::new(false);
    static TIDS: [AtomicUsize; THREADS] = [const { AtomicUsize::new(0) }; THREADS];
    STOP.store(false, SeqCst);
    FINISHED.store(0, SeqCst);
    STORM_OVER.store(false, SeqCst);

    let started = Instant::now();
    let mut storm_report = None;
    let results = std::thread::scope(|s| {
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                s.spawn(move || {
                    /// Counts the worker as finished even if `churn` panics,
                    /// then keeps the thread alive until the storm has stopped
                    /// aiming at it (`pthread_kill` on an exited thread is UB).
                    /// The main thread stops the storm once every worker is
                    /// finished, or gives up waiting after 60 s.
                    struct Finished;
                    impl Drop for Finished {
                        fn drop(&mut self) {
                            FINISHED.fetch_add(1, SeqCst);
                            let mut wait = Deadline::new(Duration::from_secs(120), u64::MAX);
                            while !STORM_OVER.load(SeqCst) && wait.tick() {
                                std::thread::sleep(Duration::from_millis(1));
                            }
                        }
                    }
                    let _finished = Finished;
                    TIDS[t].store(util::pthread_self() as usize, SeqCst);
                    churn(t, 0x9E37_79B9_7F4A_7C15 ^ (t as u64 + 1), &STOP)
                })
            })
            .collect();
        let mut known = Deadline::new(Duration::from_secs(30), u64::MAX);
        while TIDS.iter().any(|t| t.load(SeqCst) == 0) && known.tick() {
            std::thread::yield_now();
        }
        // A worker that never published its id (it panicked first) must not
        // be signalled: no storm then, the join below reports it.
        let storm = TIDS.iter().all(|t| t.load(SeqCst) != 0).then(|| {
            let targets = (0..THREADS)
                .map(|t| util::StormTarget {
                    thread: TIDS[t].load(SeqCst) as libc::pthread_t,
                    handled: &HANDLED[t],
                    progress: &PROGRESS[t],
                })
                .collect();
            // SAFETY: every worker's `Finished` guard waits for STORM_OVER,
            // which is set only after the storm has been finished below.
            unsafe { util::Storm::start(libc::SIGUSR1, targets, Duration::from_secs(120)) }
        });
        // At least 2.5 s, MIN_OPS operations and the minimum looks inside
        // every window, whichever comes last (a loaded machine churns
        // slower), but never more than 60 s: then the asserts below fail.
        std::thread::sleep(Duration::from_millis(2500));
        let mut more = Deadline::new(Duration::from_secs(60) - started.elapsed(), u64::MAX);
        while !(OPS_SO_FAR.load(SeqCst) >= MIN_OPS && enough_hits()) && more.tick() {
            std::thread::sleep(Duration::from_millis(10));
        }
        STOP.store(true, SeqCst);
        let mut finishing = Deadline::new(Duration::from_secs(60), u64::MAX);
        while FINISHED.load(SeqCst) < THREADS && finishing.tick() {
            std::thread::sleep(Duration::from_millis(1));
        }
        storm_report = storm.map(util::Storm::finish);
        STORM_OVER.store(true, SeqCst);
        let results: Vec<(u64, u64)> = workers.into_iter().map(|w| w.join().unwrap()).collect();
        results
    });
    signal_hook::low_level::unregister(sig);

    let ops: u64 = results.iter().map(|r| r.0).sum();
    let close_errors: u64 = results.iter().map(|r| r.1).sum();
    let handled: Vec<u64> = HANDLED.iter().map(|h| h.load(SeqCst)).collect();
    eprintln!(
        "{:?} ops={ops} {storm_report:?} handled={handled:?} checks={} mismatches={} windows={:?}",
        started.elapsed(),
        CHECKS.load(SeqCst),
        MISMATCHES.load(SeqCst),
        windows(),
    );
    assert_eq!(
        MISMATCHES.load(SeqCst),
        0,
        "a live or visited fd was closed, recycled or unregistered"
    );
    assert_eq!(close_errors, 0, "I2: a close(2) by the table failed");
    assert_eq!(
        TABLE.swallowed_close_errors(),
        0,
        "I2: a swallowed close(2) failed"
    );
    assert!(TABLE.is_empty(), "{} entries left", TABLE.len());
    let mut left = 0;
    TABLE.for_each(|_| left += 1);
    assert_eq!(left, 0);
    assert_eq!(util::open_fd_count(), baseline, "I1: descriptors leaked");
    sentinels.check_and_close();
    assert!(ops >= MIN_OPS, "too little churn: {ops} ops");
    for (window, hits, min) in windows() {
        assert!(
            hits >= min,
            "the handler looked at {window} only {hits} times (at least {min}): \
             too few to mean anything"
        );
    }
    for (worker, &n) in handled.iter().enumerate() {
        assert!(
            n >= MIN_HANDLED_PER_WORKER,
            "the storm reached worker {worker} only {n} times (at least {MIN_HANDLED_PER_WORKER})"
        );
    }
}
