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

mod util;

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use fdtable::{FdTable, Tracked};
use util::Deadline;

static TABLE: FdTable = FdTable::new();
/// Operations done so far by all churners (for the run-until-enough loop).
static OPS_SO_FAR: AtomicU64 = AtomicU64::new(0);
/// The least churn that makes the run meaningful.
const MIN_OPS: u64 = 3000;

const THREADS: usize = 3;
const SLOTS: usize = 24;

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
}

/// `close_all`'s placeholder is an O_PATH descriptor of `/dev/null`.
static ROOT_ID: (AtomicU64, AtomicU64) = (AtomicU64::new(0), AtomicU64::new(0));

static CHECKS: AtomicU64 = AtomicU64::new(0);
static MISMATCHES: AtomicU64 = AtomicU64::new(0);
static HANDLED: AtomicU64 = AtomicU64::new(0);

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

/// The handler: atomics, `contains` and `fstat` only.
fn check_owned() {
    HANDLED.fetch_add(1, SeqCst);
    let root = load_id(&ROOT_ID);
    let verdict = |fd: RawFd, expected: (u64, u64), must_be_tracked: bool| {
        CHECKS.fetch_add(1, SeqCst);
        let ok_id = matches!(id_of(fd), Some(id) if id == expected || id == root);
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
                }
            }
        })
    });
    let fd = VISITING.with(|v| v.load(SeqCst));
    if fd >= 0 {
        // Visited: open on its own file until the callback returns (it may
        // have been closed meanwhile, so it need not be registered).
        verdict(fd, VISITING_ID.with(load_id), false);
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

fn churn(seed: u64, stop: &AtomicBool) -> (u64, u64) {
    let mut rng = Rng(seed);
    let mut held = Held::new();
    let mut ops = 0u64;
    let mut deadline = Deadline::new(Duration::from_secs(10), 2_000_000);
    while !stop.load(SeqCst) && deadline.tick() {
        ops += 1;
        OPS_SO_FAR.fetch_add(1, SeqCst);
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
                TABLE.for_each(|fd| {
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
                    if visited.is_multiple_of(5) {
                        std::thread::yield_now();
                    }
                    VISITING.with(|v| v.store(-1, SeqCst));
                });
            }
            _ => {
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
    store_id(&ROOT_ID, util::placeholder_identity());
    let sentinels = util::Sentinels::open(3);
    let baseline = util::open_fd_count();
    // SAFETY: `check_owned` only uses atomics, `contains` and `fstat`.
    let sig = unsafe { signal_hook::low_level::register(libc::SIGUSR1, check_owned) }.unwrap();

    static STOP: AtomicBool = AtomicBool::new(false);
    static FINISHED: AtomicUsize = AtomicUsize::new(0);
    static STORM_OVER: AtomicBool = AtomicBool::new(false);
    static TIDS: [AtomicUsize; THREADS] = [const { AtomicUsize::new(0) }; THREADS];
    STOP.store(false, SeqCst);
    FINISHED.store(0, SeqCst);
    STORM_OVER.store(false, SeqCst);

    let mut sent = 0u64;
    let results = std::thread::scope(|s| {
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                s.spawn(move || {
                    /// Counts the worker as finished even if `churn` panics,
                    /// then keeps the thread alive until the storm has stopped
                    /// aiming at it (`pthread_kill` on an exited thread is UB).
                    /// The storm gives up after 30 s, well inside this wait.
                    struct Finished;
                    impl Drop for Finished {
                        fn drop(&mut self) {
                            FINISHED.fetch_add(1, SeqCst);
                            let mut wait = Deadline::new(Duration::from_secs(90), u64::MAX);
                            while !STORM_OVER.load(SeqCst) && wait.tick() {
                                std::thread::sleep(Duration::from_millis(1));
                            }
                        }
                    }
                    let _finished = Finished;
                    TIDS[t].store(util::pthread_self() as usize, SeqCst);
                    churn(0x9E37_79B9_7F4A_7C15 ^ (t as u64 + 1), &STOP)
                })
            })
            .collect();
        let storm = s.spawn(|| {
            let mut sent = 0u64;
            let mut limit = Deadline::new(Duration::from_secs(30), u64::MAX);
            while TIDS.iter().any(|t| t.load(SeqCst) == 0) && limit.tick() {
                std::thread::yield_now();
            }
            // A worker that never published its id (it panicked first) must
            // not be signalled: stop at once, the join below reports it.
            let all_known = TIDS.iter().all(|t| t.load(SeqCst) != 0);
            while all_known && FINISHED.load(SeqCst) < THREADS && limit.tick() {
                for t in &TIDS {
                    // SAFETY: every worker's `Finished` guard waits for
                    // STORM_OVER before the thread exits, so each target
                    // thread is alive.
                    let rc = unsafe {
                        libc::pthread_kill(t.load(SeqCst) as libc::pthread_t, libc::SIGUSR1)
                    };
                    assert_eq!(rc, 0);
                    sent += 1;
                }
                for _ in 0..200 {
                    std::hint::spin_loop();
                }
            }
            STORM_OVER.store(true, SeqCst);
            sent
        });
        // At least 2.5 s and 3000 operations, whichever comes last (a
        // loaded machine churns slower), but never more than 30 s.
        std::thread::sleep(Duration::from_millis(2500));
        let mut more = Deadline::new(Duration::from_millis(27_500), u64::MAX);
        while OPS_SO_FAR.load(SeqCst) < MIN_OPS && more.tick() {
            std::thread::sleep(Duration::from_millis(10));
        }
        STOP.store(true, SeqCst);
        let results: Vec<(u64, u64)> = workers.into_iter().map(|w| w.join().unwrap()).collect();
        sent = storm.join().unwrap();
        results
    });
    signal_hook::low_level::unregister(sig);

    let ops: u64 = results.iter().map(|r| r.0).sum();
    let close_errors: u64 = results.iter().map(|r| r.1).sum();
    eprintln!(
        "ops={ops} sent={sent} handled={} checks={} mismatches={}",
        HANDLED.load(SeqCst),
        CHECKS.load(SeqCst),
        MISMATCHES.load(SeqCst)
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
    assert!(
        CHECKS.load(SeqCst) >= 1000,
        "too few handler checks to mean anything"
    );
}
