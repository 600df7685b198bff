//! Soak: every hazard at once, for a fixed time, with the invariants checked
//! all along.
//!
//! ```text
//! cargo run --release --example soak -- [--seconds N] [--spin N] [--quiet] [--unpaced] [--no-seal]
//! FDTABLE_SOAK_SECONDS=N cargo run --release --example soak
//! ```
//!
//! `--seconds` (default 60; the flag wins over `FDTABLE_SOAK_SECONDS`) is how
//! long the load runs; shutting down and the final checks take a moment more.
//! `--spin` is the busy-wait between two signals of the storm (default 200).
//! `--unpaced` turns the storm's pacing off (see below): the negative
//! control for the watchdog, which must then fail the run. `--no-seal`
//! leaves the sealer (below) out.
//!
//! What runs at the same time, on one `static` table:
//! - **churners** (3 threads): track, `close`, drop, `into_inner`, and
//!   `for_each` whose callbacks track, close, drop, walk again (nested),
//!   call `close_all`, fork, or panic;
//! - a **signal storm**: `pthread_kill(SIGUSR1)` at the churners, and
//!   `kill(getpid(), SIGUSR2)` at the process, paced so it cannot starve
//!   them (see below);
//! - an **I3 check in the handler**: each churner publishes "the fd I am
//!   closing" in its own atomic; the handler (a signal-hook action, run on
//!   whichever thread the signal interrupted) finds its thread's slot
//!   through a `const` thread-local and compares `contains(fd)` with
//!   `fcntl(fd, F_GETFD)`: a mix is a half-update;
//! - an [`Interrupts`] on SIGUSR2 (no "second signal kills"), so its pipe
//!   handler runs under load too, drained by its own thread;
//! - periodic **`close_all`**;
//! - **forks** whose child runs `close_all_in_child` and then checks, with
//!   async-signal-safe calls only, that no number the table holds is still
//!   open, that every churner number still open is close-on-exec, and that
//!   the sentinels are intact (the exit code reports which check failed);
//!   each child is waited for with a deadline: a hung child is a failure;
//! - **spawns** through the [`CommandExt`] hook: a missing program must
//!   fail with `NotFound`, `true` must succeed;
//! - a **sealer** (on unless `--no-seal`): rounds on tables of its own (the
//!   churners' table is never sealed: a seal is for good), each with
//!   [`SEAL_TRACKERS`] threads that open and track sockets and pipes until
//!   the table refuses, while the sealer calls `seal(); close_all()` in the
//!   middle of their tracking. Every entry a `track` accepted must end
//!   released (its number names the placeholder, its peer sees end of file
//!   or a broken pipe) and counted (`released()` is the number accepted,
//!   `len()` is 0); every refused resource must come back open, itself and
//!   untracked; nothing may be lost (tracks = accepted + refused).
//!
//! At the end: every churner number closed, `len() == 0`, sentinels intact
//! (same `(st_dev, st_ino)`), `/proc/self/fd` back to its baseline, and at
//! least [`MIN_CHECKS_PER_CHURNER`] handler checks inside each churner's
//! close window. It prints its totals, operations per second per churner,
//! and exits with status 1 if anything failed.
//!
//! # A soak that stops working fails
//! Every worker (the churners, the forker, the closer) bumps a progress
//! counter from its own code at each table operation, walk callback, fork
//! and spawn. The main thread is the watchdog: when a worker's counter has
//! not moved for 5 s ([`STALL_LIMIT`]), during the run or while winding
//! down, the soak exits at once with status 1 and one line naming each
//! stalled worker and the step it is in (`soak: FAIL: no progress: churn-0
//! for 5.1 s (forking and waiting for the child)`).
//!
//! # The storm cannot starve its targets
//! A standard signal does not queue, and a thread handles it on its way
//! back to user space; if the next one is already pending when the handler
//! returns, the thread runs the handler again without running a line of its
//! own code. Before this was paced, a storm at `--spin 0` or `--spin 20`
//! (or the default on a loaded machine) did exactly that: within 10-40 s two
//! churners sat in walk callbacks in the fork-and-wait step, their children
//! already zombies, interrupted faster than they could reach `waitpid`,
//! and the third waited in `into_inner` for the pins those two held. Table
//! operations stopped for good, the signals kept coming, and the soak still
//! said OK.
//!
//! That live-lock is now **impossible**, and anything like it is
//! **detected**:
//! - the storm sends a churner its next SIGUSR1 only once that churner's
//!   handler has counted the previous one (or 100 ms passed: then the
//!   signal is held by a mask or merged with a pending one, and another
//!   would add nothing) *and* the churner has made progress of its own
//!   since ([`util::Pace`]). So each signal costs the churner at most one
//!   unit of work, whatever the machine's load: the storm can slow the
//!   churners, never stop them. The process-directed SIGUSR2 is paced the
//!   same way, on any table operation;
//! - a stall of any other cause (a real deadlock in the table, an
//!   `into_inner` waiting forever for a pin) trips the watchdog within 5 s.
//!
//! `--unpaced` brings the old storm back; with `--spin 0` it starves the
//! churners within seconds, and the watchdog fails the run.
//!
//! # Why each churner owns a range of numbers
//! The handler's check is about the *interrupted thread's own* close. If any
//! thread could `open` the number another thread just closed, the handler
//! would see "not tracked, open" for a number that is simply someone else's
//! now. So every churner places its descriptors with `dup3` onto numbers in
//! a range of its own (far above what `open` hands out here), and reuses a
//! number only once `fcntl` says it is closed.
//!
//! # Cross-thread windows are not half-updates
//! A mask protects a thread against its own handlers only (a signal mask
//! is per thread: see `MaskGuard`'s docs, `src/mask.rs`). When another
//! thread's walk (or `close_all`) holds a pin on our descriptor, the
//! deferred `close(2)` runs on *that* thread, which unpublishes first and
//! closes right after: a handler on our thread may see that gap. So every walk is announced in two counters (begun, ended),
//! and the handler excuses a mix only when a walk of another thread may
//! have overlapped its look; those are counted apart ("excused"), never
//! hidden.

#[path = "../tests/util/mod.rs"]
mod util;

use std::cell::{Cell, RefCell};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::sync::atomic::{
    AtomicBool, AtomicI32, AtomicI64, AtomicU64, AtomicU8, AtomicUsize, Ordering::SeqCst,
};
use std::sync::{mpsc, Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use fdtable::{ChildFds, CommandExt, FdTable, Interrupts, Signal, Tracked};
use util::{ChildEnd, Pace, Sentinels};

static TABLE: FdTable = FdTable::new();

const CHURNERS: usize = 3;
/// First number of churner 0's range; far above what `open` returns here.
const RANGE_BASE: RawFd = 512;
const RANGE_LEN: RawFd = 64;
const RANGE_END: RawFd = RANGE_BASE + RANGE_LEN * CHURNERS as RawFd;
/// Most handles a churner holds at once.
const MAX_LIVE: usize = 24;
/// Handler runs inside each churner's close window that a run must reach.
const MIN_CHECKS_PER_CHURNER: u64 = 100;
/// How long a fork child or a spawned `true` may take before it is a hang.
const CHILD_LIMIT: Duration = Duration::from_secs(20);
/// Threads that track in each of the sealer's rounds.
const SEAL_TRACKERS: usize = 3;
/// Entries one of them holds at most in a round (far below `RANGE_BASE`
/// in all: the sealer's descriptors come from `open`, lowest numbers first).
const SEAL_MOST_PER_TRACKER: usize = 32;
/// The sealer seals once fewer than this many entries were accepted: the
/// trackers are still tracking when it does, far from their limit.
const SEAL_AFTER_AT_MOST: usize = 24;
/// How long a peer may wait for fork children's copies of a released file
/// to go (well below [`STALL_LIMIT`]).
const SEAL_PEER_LIMIT: Duration = Duration::from_secs(2);

// --- what each churner publishes for its handler -------------------------

/// The number churner `i` is closing right now, or -1.
static CLOSING: [AtomicI32; CHURNERS] = [const { AtomicI32::new(-1) }; CHURNERS];
/// Walks (`for_each`, `close_all`) churner `i` is inside right now.
static OWN_WALKS: [AtomicI64; CHURNERS] = [const { AtomicI64::new(0) }; CHURNERS];
/// SIGUSR1 deliveries handled on churner `i` (counted as the handler's last step).
static USR1_HANDLED: [AtomicU64; CHURNERS] = [const { AtomicU64::new(0) }; CHURNERS];
/// SIGUSR2 deliveries handled, on any thread (last step too).
static USR2_HANDLED: AtomicU64 = AtomicU64::new(0);
/// Per churner, kept up to date by the storm: the longest wait (µs)
/// from a signal to its handler's count, and signals not seen handled
/// within [`PACE_BOUND`].
static LONGEST_WAIT_US: [AtomicU64; CHURNERS] = [const { AtomicU64::new(0) }; CHURNERS];
static UNANSWERED: [AtomicU64; CHURNERS] = [const { AtomicU64::new(0) }; CHURNERS];
/// I3 checks made on churner `i`: handler runs inside its close window.
static CHECKS_ON: [AtomicU64; CHURNERS] = [const { AtomicU64::new(0) }; CHURNERS];
/// Walks begun / ended by anyone.
static WALKS_BEGUN: AtomicI64 = AtomicI64::new(0);
static WALKS_ENDED: AtomicI64 = AtomicI64::new(0);

thread_local! {
    /// This thread's churner index, `usize::MAX` elsewhere. `const`, no
    /// destructor: reading it in a signal handler is a plain TLS load.
    static CHURNER: Cell<usize> = const { Cell::new(usize::MAX) };
    /// This thread's index among the watched workers, `usize::MAX` elsewhere.
    static WORKER: Cell<usize> = const { Cell::new(usize::MAX) };
}

// --- progress, for the watchdog -------------------------------------------

/// Watched workers: the churners, then the forker, the closer and the
/// sealer.
const WORKERS: usize = CHURNERS + 3;
const FORKER: usize = CHURNERS;
const CLOSER: usize = CHURNERS + 1;
const SEALER: usize = CHURNERS + 2;
/// A worker that makes no progress for this long fails the soak.
const STALL_LIMIT: Duration = Duration::from_secs(5);

/// Bumped by each worker's own code (never by a handler) at every table
/// operation, walk callback, fork and spawn: what the watchdog watches.
static PROGRESS: [AtomicU64; WORKERS] = [const { AtomicU64::new(0) }; WORKERS];
/// Table operations per churner, for ops/s.
static OPS: [AtomicU64; CHURNERS] = [const { AtomicU64::new(0) }; CHURNERS];
/// What each worker is doing right now (a [`Step`]), for the verdict.
static DOING: [AtomicU8; WORKERS] = [const { AtomicU8::new(Step::Starting as u8) }; WORKERS];

fn worker_name(i: usize) -> String {
    match i {
        FORKER => "forker".into(),
        CLOSER => "closer".into(),
        SEALER => "sealer".into(),
        _ => format!("churn-{i}"),
    }
}

/// Where a worker is, as the watchdog reports it when it stalls.
#[derive(Clone, Copy)]
#[repr(u8)]
enum Step {
    Starting,
    Idle,
    Track,
    Close,
    Drop,
    IntoInner,
    TryIntoInner,
    Walk,
    Callback,
    CloseAll,
    ForkWait,
    Spawn,
    Sleep,
    WindDown,
    SealRound,
}

impl Step {
    const ALL: [Step; 15] = [
        Step::Starting,
        Step::Idle,
        Step::Track,
        Step::Close,
        Step::Drop,
        Step::IntoInner,
        Step::TryIntoInner,
        Step::Walk,
        Step::Callback,
        Step::CloseAll,
        Step::ForkWait,
        Step::Spawn,
        Step::Sleep,
        Step::WindDown,
        Step::SealRound,
    ];

    fn describe(raw: u8) -> &'static str {
        match Step::ALL.get(raw as usize) {
            Some(Step::Starting) => "not started",
            Some(Step::Idle) => "between operations",
            Some(Step::Track) => "in track",
            Some(Step::Close) => "in Tracked::close",
            Some(Step::Drop) => "dropping a Tracked",
            Some(Step::IntoInner) => "in into_inner (waits for other threads' pins)",
            Some(Step::TryIntoInner) => "in try_into_inner",
            Some(Step::Walk) => "in for_each",
            Some(Step::Callback) => "in a for_each callback",
            Some(Step::CloseAll) => "in close_all",
            Some(Step::ForkWait) => "forking and waiting for the child",
            Some(Step::Spawn) => "spawning through CommandExt",
            Some(Step::Sleep) => "sleeping between rounds",
            Some(Step::WindDown) => "closing its handles at the end",
            Some(Step::SealRound) => "in a sealing round (tracks, seal, close_all, checks)",
            None => "?",
        }
    }
}

/// Publishes this worker's step until dropped, then puts the outer step
/// back (steps nest: a callback that closes, a close_all in a callback).
struct Doing(Option<(usize, u8)>);

fn doing(step: Step) -> Doing {
    let me = WORKER.with(Cell::get);
    Doing(DOING.get(me).map(|d| (me, d.swap(step as u8, SeqCst))))
}

impl std::ops::Drop for Doing {
    fn drop(&mut self) {
        if let Some((me, outer)) = self.0 {
            DOING[me].store(outer, SeqCst);
        }
    }
}

/// One unit of progress for this worker (no-op on other threads).
fn progress() {
    if let Some(p) = PROGRESS.get(WORKER.with(Cell::get)) {
        p.fetch_add(1, SeqCst);
    }
}

// --- totals ---------------------------------------------------------------

static STOP_STORM: AtomicBool = AtomicBool::new(false);
static STOP_WORK: AtomicBool = AtomicBool::new(false);

macro_rules! counters {
    ($($name:ident: $what:literal,)*) => {
        $(static $name: AtomicU64 = AtomicU64::new(0);)*
        fn print_totals() {
            $(println!("  {:<34} {:>12}", $what, $name.load(SeqCst));)*
        }
    };
}

counters! {
    THREAD_SIGNALS: "signals sent (pthread_kill SIGUSR1)",
    PROCESS_SIGNALS: "signals sent (kill SIGUSR2)",
    HANDLER_RUNS: "handler runs",
    HANDLER_CHECKS: "handler I3 checks",
    SAW_TRACKED_OPEN: "  tracked and open",
    SAW_UNTRACKED_CLOSED: "  untracked and closed",
    EXCUSED: "  mixed, other thread's walk (ok)",
    MISMATCHES: "  MIXED: half-updates",
    INTERRUPT_EVENTS: "Interrupts SIGUSR2 deliveries",
    TABLE_OPS: "table ops",
    TRACKS: "  track",
    CLOSES: "  close",
    DROPS: "  drop",
    INTO_INNERS: "  into_inner",
    WALKS: "  for_each (incl. nested)",
    CALLBACKS: "  callbacks",
    PANICS: "  panics through for_each",
    CLOSE_ALLS: "close_all calls",
    RELEASED: "  entries released",
    FORKS: "forks",
    SPAWNS: "spawns",
    SEAL_ROUNDS: "sealing rounds",
    SEAL_ACCEPTED: "  tracks accepted, then released",
    SEAL_REFUSED: "  tracks refused (sealed)",
    FAIL_CLOSE_ERRORS: "FAIL close errors",
    FAIL_TRACK_ERRORS: "FAIL track errors",
    FAIL_CLOSE_ALL: "FAIL close_all errors",
    FAIL_VISITED_CLOSED: "FAIL visited fd not open",
    FAIL_CHILD: "FAIL fork child checks",
    FAIL_HUNG: "FAIL hung children",
    FAIL_SPAWN: "FAIL wrong spawn results",
    FAIL_SEAL: "FAIL sealing-round checks",
}

fn count(counter: &AtomicU64) {
    counter.fetch_add(1, SeqCst);
}

fn op(counter: &AtomicU64) {
    counter.fetch_add(1, SeqCst);
    TABLE_OPS.fetch_add(1, SeqCst);
    if let Some(ops) = OPS.get(CHURNER.with(Cell::get)) {
        ops.fetch_add(1, SeqCst);
    }
    progress();
}

// --- the handler ------------------------------------------------------------

/// The I3 check, on whichever thread the signal interrupted. Atomics, a
/// `const` thread-local, `contains` and `fcntl`: all async-signal-safe.
fn on_signal() {
    count(&HANDLER_RUNS);
    let me = CHURNER.with(Cell::get);
    let (Some(closing), Some(own)) = (CLOSING.get(me), OWN_WALKS.get(me)) else {
        return;
    };
    let fd = closing.load(SeqCst);
    if fd < 0 {
        return;
    }
    let begun = WALKS_BEGUN.load(SeqCst);
    let ended = WALKS_ENDED.load(SeqCst);
    let own = own.load(SeqCst);
    let tracked = TABLE.contains(fd);
    // SAFETY: F_GETFD only reads the descriptor flags; async-signal-safe.
    let open = unsafe { libc::fcntl(fd, libc::F_GETFD) } != -1;
    let begun_after = WALKS_BEGUN.load(SeqCst);
    count(&HANDLER_CHECKS);
    count(&CHECKS_ON[me]);
    match (tracked, open) {
        (true, true) => count(&SAW_TRACKED_OPEN),
        (false, false) => count(&SAW_UNTRACKED_CLOSED),
        _ => {
            // No walk began while we looked, so the walks that could have
            // overlapped are those active at the start: `begun - ended`,
            // of which `own` are this (frozen) thread's.
            let others = begun - ended - own;
            if others > 0 || begun_after != begun {
                count(&EXCUSED);
            } else {
                count(&MISMATCHES);
            }
        }
    }
}

/// SIGUSR1 (from the storm, aimed at one churner): the check, then the
/// count the storm waits for before it aims at this churner again.
fn on_usr1() {
    on_signal();
    if let Some(handled) = USR1_HANDLED.get(CHURNER.with(Cell::get)) {
        handled.fetch_add(1, SeqCst);
    }
}

/// SIGUSR2 (process-directed, any thread may take it): the check, then the
/// count the storm waits for before it sends the next one.
fn on_usr2() {
    on_signal();
    USR2_HANDLED.fetch_add(1, SeqCst);
}

/// A signal-hook action, unregistered on drop.
struct Action(signal_hook::SigId);

impl Action {
    fn register(signal: libc::c_int, action: fn()) -> io::Result<Action> {
        // SAFETY: the actions (`on_usr1`, `on_usr2`) touch only atomics and
        // const thread-locals and call `contains` and `fcntl`, all
        // async-signal-safe.
        unsafe { signal_hook::low_level::register(signal, action) }.map(Action)
    }
}

impl Drop for Action {
    fn drop(&mut self) {
        signal_hook::low_level::unregister(self.0);
    }
}

// --- walks are announced ----------------------------------------------------

/// Marks a walk (`for_each` or `close_all`) as in progress for the handler's
/// excuse rule; ends it on drop, also when a callback panics.
struct WalkMark(Option<usize>);

impl WalkMark {
    fn begin(churner: Option<usize>) -> WalkMark {
        // Own count first, global second (and the reverse at the end): a
        // handler between the two sees fewer "other" walks, never more.
        if let Some(i) = churner {
            OWN_WALKS[i].fetch_add(1, SeqCst);
        }
        WALKS_BEGUN.fetch_add(1, SeqCst);
        WalkMark(churner)
    }
}

impl Drop for WalkMark {
    fn drop(&mut self) {
        WALKS_ENDED.fetch_add(1, SeqCst);
        if let Some(i) = self.0 {
            OWN_WALKS[i].fetch_sub(1, SeqCst);
        }
    }
}

fn close_all(churner: Option<usize>) {
    let _doing = doing(Step::CloseAll);
    let _walk = WalkMark::begin(churner);
    let report = TABLE.close_all();
    progress();
    count(&CLOSE_ALLS);
    RELEASED.fetch_add(report.released() as u64, SeqCst);
    if !report.is_ok() {
        count(&FAIL_CLOSE_ALL);
        eprintln!("close_all errors: {:?}", report.errors());
    }
}

// --- fork children ------------------------------------------------------------

/// Fork; in the child close the table and check, async-signal-safe only;
/// in the parent wait with a deadline and count the outcome.
fn fork_and_check(sentinels: &[(RawFd, (u64, u64))]) {
    let _doing = doing(Step::ForkWait);
    // SAFETY: the child runs `child_checks` (async-signal-safe: atomics,
    // fcntl, fstat, close/close_range, reading memory) and `_exit`s.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let code = child_checks(sentinels);
        // SAFETY: ends the child at once, no destructor or atexit handler.
        unsafe { libc::_exit(code) };
    }
    if pid < 0 {
        count(&FAIL_CHILD);
        eprintln!("fork: {}", io::Error::last_os_error());
        return;
    }
    count(&FORKS);
    let end = util::wait_child(pid, CHILD_LIMIT);
    progress();
    match end {
        Ok(ChildEnd::Exited(0)) => {}
        Ok(ChildEnd::Hung) => {
            count(&FAIL_HUNG);
            eprintln!("fork child {pid} hung");
        }
        other => {
            count(&FAIL_CHILD);
            eprintln!(
                "fork child {pid}: {other:?} (10: tracked fd open, 11: no cloexec, 12: sentinel)"
            );
        }
    }
}

/// Runs in the fork child. No allocation, no lock, no panic.
fn child_checks(sentinels: &[(RawFd, (u64, u64))]) -> i32 {
    // SAFETY: we are a fork child that never uses a handle again and leaves
    // with `_exit`.
    unsafe { TABLE.close_all_in_child() };
    for fd in 0..RANGE_END {
        // SAFETY: F_GETFD only reads descriptor flags.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        if flags != -1 && TABLE.contains(fd) {
            return 10;
        }
        // A churner number still open in the child was unpublished in the
        // parent after the fork copied the descriptor table: fine, as long
        // as exec would close it.
        if flags != -1 && fd >= RANGE_BASE && flags & libc::FD_CLOEXEC == 0 {
            return 11;
        }
    }
    if !sentinels
        .iter()
        .all(|&(fd, id)| util::identity(fd) == Some(id))
    {
        return 12;
    }
    0
}

// --- spawns -------------------------------------------------------------------

fn spawn_checks() {
    let _doing = doing(Step::Spawn);
    // Every other round through the fork path: a `ChildFds` needs the
    // `pre_exec` hook, the plain `close_tracked_fds` installs none.
    static ROUND: AtomicU64 = AtomicU64::new(0);
    let mut missing = Command::new("/nonexistent/fdtable-soak");
    if ROUND.fetch_add(1, SeqCst) % 2 == 1 {
        missing.child_fds(ChildFds::new().close_other_fds().close_tracked_fds(&TABLE));
    } else {
        missing.close_tracked_fds(&TABLE);
    }
    match missing.spawn() {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => {
            count(&FAIL_SPAWN);
            eprintln!("spawn of a missing program: {e} (expected NotFound)");
        }
        Ok(mut child) => {
            count(&FAIL_SPAWN);
            eprintln!("spawn of a missing program returned Ok");
            let _ = child.kill();
            let _ = child.wait();
        }
    }
    count(&SPAWNS);
    progress();
    let spawned = Command::new("true")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .close_tracked_fds(&TABLE)
        .spawn();
    count(&SPAWNS);
    let child = match spawned {
        Ok(child) => child,
        Err(e) => {
            count(&FAIL_SPAWN);
            eprintln!("spawn true: {e}");
            return;
        }
    };
    let end = util::wait_child(child.id() as libc::pid_t, CHILD_LIMIT);
    progress();
    match end {
        Ok(ChildEnd::Exited(0)) => {}
        Ok(ChildEnd::Hung) => {
            count(&FAIL_HUNG);
            eprintln!("true hung");
        }
        other => {
            count(&FAIL_SPAWN);
            eprintln!("true: {other:?}");
        }
    }
    // Reaped above; `Child` has no destructor that waits.
}

// --- churners -----------------------------------------------------------------

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn one_in(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }
}

type Handle = Tracked<'static, OwnedFd>;

struct Churner {
    me: usize,
    rng: Rng,
    handles: Vec<Handle>,
    /// Numbers of `handles`, by offset in our range.
    in_use: [bool; RANGE_LEN as usize],
}

/// Ways a handle leaves the table.
#[derive(Clone, Copy)]
enum Release {
    Close,
    Drop,
    IntoInner,
    /// From inside a walk callback: `try_into_inner`, or `close` when another
    /// thread is visiting the entry (`into_inner` could wait crosswise).
    TryIntoInner,
}

impl Churner {
    fn base(&self) -> RawFd {
        RANGE_BASE + RANGE_LEN * self.me as RawFd
    }

    /// Move `fd` onto a closed number of our range (close-on-exec).
    fn place(&mut self, fd: OwnedFd) -> Option<OwnedFd> {
        let start = self.rng.below(RANGE_LEN as u64) as RawFd;
        for k in 0..RANGE_LEN {
            let off = (start + k) % RANGE_LEN;
            let n = self.base() + off;
            // A number we gave up may still be open, its close deferred
            // behind a walk: wait until that walk has closed it.
            if self.in_use[off as usize] || util::is_open(n) {
                continue;
            }
            // `n` is closed and in our private range, so no one else can be
            // handed it; dup3 makes it a copy of `fd`, which we own.
            let rc = util::dup_cloexec_at(fd.as_raw_fd(), n);
            if rc != n {
                eprintln!("dup3 -> {n}: {}", io::Error::last_os_error());
                return None;
            }
            // SAFETY: dup3 just made `n` a descriptor that only we own.
            return Some(unsafe { OwnedFd::from_raw_fd(n) });
        }
        None
    }

    fn open_some(&mut self) -> Vec<OwnedFd> {
        let made: io::Result<Vec<OwnedFd>> = match self.rng.below(3) {
            0 => File::open("/dev/null").map(|f| vec![f.into()]),
            1 => Ok({
                let (r, w) = util::pipe();
                vec![r, w]
            }),
            _ => UnixStream::pair().map(|(a, b)| vec![a.into(), b.into()]),
        };
        made.unwrap_or_default()
            .into_iter()
            .filter_map(|fd| self.place(fd))
            .collect()
    }

    fn track_some(&mut self) {
        for fd in self.open_some() {
            if self.handles.len() >= MAX_LIVE {
                break; // `fd` is closed here: it was never tracked
            }
            let raw = fd.as_raw_fd();
            op(&TRACKS);
            let _doing = doing(Step::Track);
            match TABLE.track(fd) {
                Ok(handle) => {
                    self.in_use[(raw - self.base()) as usize] = true;
                    self.handles.push(handle);
                }
                Err(e) => {
                    count(&FAIL_TRACK_ERRORS);
                    eprintln!("track {raw}: {}", e.error());
                }
            }
        }
    }

    fn take_random(&mut self) -> Option<Handle> {
        if self.handles.is_empty() {
            return None;
        }
        let i = self.rng.below(self.handles.len() as u64) as usize;
        let handle = self.handles.swap_remove(i);
        self.in_use[(handle.as_raw_fd() - self.base()) as usize] = false;
        Some(handle)
    }
}

/// Release `handle`, publishing its number for the handler while the table
/// closes it.
fn release(me: usize, handle: Handle, how: Release) {
    let fd = handle.as_raw_fd();
    match how {
        Release::Close => {
            let _doing = doing(Step::Close);
            CLOSING[me].store(fd, SeqCst);
            let result = handle.close();
            CLOSING[me].store(-1, SeqCst);
            op(&CLOSES);
            if let Err(e) = result {
                count(&FAIL_CLOSE_ERRORS);
                eprintln!("close {fd}: {e}");
            }
        }
        Release::Drop => {
            let _doing = doing(Step::Drop);
            CLOSING[me].store(fd, SeqCst);
            drop(handle);
            CLOSING[me].store(-1, SeqCst);
            op(&DROPS);
        }
        Release::IntoInner => {
            // Not the table's close: the number is ours, untracked and open,
            // until we close it ourselves. Not published for the handler.
            let _doing = doing(Step::IntoInner);
            drop(handle.into_inner());
            op(&INTO_INNERS);
        }
        Release::TryIntoInner => {
            let tried = {
                let _doing = doing(Step::TryIntoInner);
                handle.try_into_inner()
            };
            match tried {
                Ok(owned) => {
                    drop(owned);
                    op(&INTO_INNERS);
                }
                Err(handle) => release(me, handle, Release::Close),
            }
        }
    }
}

struct Quiet;

fn churn(me: usize, sentinels: Arc<Vec<(RawFd, (u64, u64))>>) {
    let state = RefCell::new(Churner {
        me,
        rng: Rng(0x9e37_79b9_7f4a_7c15 ^ (me as u64 + 1).wrapping_mul(0x1234_5678_9abc_def1)),
        handles: Vec::new(),
        in_use: [false; RANGE_LEN as usize],
    });
    let _idle = doing(Step::Idle);
    // Ends when main sets STOP_WORK, after the run time.
    while !STOP_WORK.load(SeqCst) {
        let choice = state.borrow_mut().rng.below(100);
        match choice {
            0..=39 => state.borrow_mut().track_some(),
            40..=54 => release_one(&state, Release::Close),
            55..=69 => release_one(&state, Release::Drop),
            70..=74 => release_one(&state, Release::IntoInner),
            _ => {
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    walk(&state, 0, &sentinels)
                }));
                if result.is_err() {
                    count(&PANICS);
                }
            }
        }
    }
    // Wind down: every handle closed through the table.
    let _doing = doing(Step::WindDown);
    let handles = std::mem::take(&mut state.borrow_mut().handles);
    for handle in handles {
        release(me, handle, Release::Close);
    }
}

fn release_one(state: &RefCell<Churner>, how: Release) {
    let (me, handle) = {
        let mut s = state.borrow_mut();
        (s.me, s.take_random())
    };
    if let Some(handle) = handle {
        release(me, handle, how);
    }
}

fn walk(state: &RefCell<Churner>, depth: u32, sentinels: &[(RawFd, (u64, u64))]) {
    let me = state.borrow().me;
    let _mark = WalkMark::begin(Some(me));
    op(&WALKS);
    let _doing = doing(Step::Walk);
    TABLE.for_each(|fd: BorrowedFd<'_>| {
        let _doing = doing(Step::Callback);
        count(&CALLBACKS);
        progress();
        if !util::is_open(fd.as_raw_fd()) {
            count(&FAIL_VISITED_CLOSED);
            eprintln!("visited fd {} is not open", fd.as_raw_fd());
        }
        let choice = state.borrow_mut().rng.below(1000);
        match choice {
            0..=199 => {}
            // `try_into_inner`, never `into_inner`, in here: `into_inner`
            // waits for other threads' pins, and two callbacks each waiting
            // for the other's pin would never return.
            200..=299 => release_one(state, Release::Drop),
            300..=349 => release_one(state, Release::TryIntoInner),
            350..=529 => release_one(state, Release::Close),
            530..=699 => state.borrow_mut().track_some(),
            700..=789 if depth < 2 => walk(state, depth + 1, sentinels),
            790..=792 => close_all(Some(me)),
            793 => fork_and_check(sentinels),
            794 if depth == 0 && state.borrow_mut().rng.one_in(4) => {
                std::panic::panic_any(Quiet);
            }
            _ => {}
        }
    });
}

// --- the other threads --------------------------------------------------------

/// How long the storm waits for a handler's count before it treats the
/// signal as merged or held by a mask (see [`util::Pace`]).
const PACE_BOUND: Duration = Duration::from_millis(100);

/// The storm: SIGUSR1 at each churner, and every eighth round a SIGUSR2 at
/// the process. Paced (unless `unpaced`): a churner gets its next signal
/// only after its handler has counted the previous one and the churner has
/// made progress of its own since ([`util::Pace`]); the process gets its
/// next SIGUSR2 only after the previous one was handled and some table
/// operation happened since. So the storm cannot starve anyone.
fn storm(targets: Vec<libc::pthread_t>, spin: u32, unpaced: bool) {
    let mut paces: Vec<Pace> = (0..CHURNERS)
        .map(|i| Pace::new(&USR1_HANDLED[i], &PROGRESS[i], PACE_BOUND))
        .collect();
    let mut process_pace = Pace::new(&USR2_HANDLED, &TABLE_OPS, PACE_BOUND);
    let mut round = 0u64;
    let mut passes = 0u64;
    let mut idle_since = None;
    while !STOP_STORM.load(SeqCst) {
        passes += 1;
        if passes & 1023 == 0 {
            // Kept current for the watchdog's report too.
            publish_pace(&paces);
        }
        let mut sent = false;
        for (&t, pace) in targets.iter().zip(&mut paces) {
            if !unpaced && !pace.ready() {
                continue;
            }
            pace.sending();
            // SAFETY: every target is a churner that stays alive until this
            // thread has been joined (STOP_WORK is set only after that).
            let rc = unsafe { libc::pthread_kill(t, libc::SIGUSR1) };
            if rc == 0 {
                count(&THREAD_SIGNALS);
                sent = true;
            }
            for _ in 0..spin {
                std::hint::spin_loop();
            }
        }
        if !sent {
            // Every churner is in its handler or has not moved since.
            util::storm_idle(&mut idle_since);
            continue;
        }
        idle_since = None;
        round += 1;
        if round & 7 == 0 && (unpaced || process_pace.ready()) {
            process_pace.sending();
            // SAFETY: a process-directed signal at ourselves; SIGUSR2 is
            // handled (our action plus the Interrupts pipe).
            if unsafe { libc::kill(libc::getpid(), libc::SIGUSR2) } == 0 {
                count(&PROCESS_SIGNALS);
            }
        }
    }
    publish_pace(&paces);
}

fn publish_pace(paces: &[Pace]) {
    for (i, pace) in paces.iter().enumerate() {
        LONGEST_WAIT_US[i].store(pace.longest_wait.as_micros() as u64, SeqCst);
        UNANSWERED[i].store(pace.unanswered, SeqCst);
    }
}

fn drain_interrupts(interrupts: &Interrupts) {
    while !STOP_WORK.load(SeqCst) {
        if let Ok(Some(received)) = interrupts.recv_timeout(Duration::from_millis(50)) {
            INTERRUPT_EVENTS.fetch_add(received.count(), SeqCst);
        }
    }
    while let Some(received) = interrupts.try_recv() {
        INTERRUPT_EVENTS.fetch_add(received.count(), SeqCst);
    }
}

fn forker(sentinels: Arc<Vec<(RawFd, (u64, u64))>>) {
    let mut round = 0u64;
    while !STOP_WORK.load(SeqCst) {
        round += 1;
        fork_and_check(&sentinels);
        if round.is_multiple_of(10) {
            spawn_checks();
        }
        let _doing = doing(Step::Sleep);
        thread::sleep(Duration::from_millis(2));
    }
}

fn closer() {
    while !STOP_WORK.load(SeqCst) {
        {
            let _doing = doing(Step::Sleep);
            thread::sleep(Duration::from_millis(25));
        }
        close_all(None);
    }
}

// --- the sealer -----------------------------------------------------------------

/// The test's end of a resource a sealing round tracks.
enum Peer {
    /// The other end of a socket pair (non-blocking): reads end of file
    /// once the tracked end is released.
    Socket(UnixStream),
    /// A pipe's write end: writes fail (`EPIPE`) once the read end is.
    Pipe(File),
}

impl Peer {
    /// Whether the tracked end is gone, as seen from here (never blocks).
    fn sees_release(&mut self) -> bool {
        match self {
            Peer::Socket(peer) => matches!(peer.read(&mut [0u8; 8]), Ok(0)),
            Peer::Pipe(w) => matches!(
                w.write(b"x"),
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe
            ),
        }
    }
}

/// Whether `peer` sees its tracked end released within [`SEAL_PEER_LIMIT`]. A
/// fork child made (by the forker or a churner) before the release holds a
/// copy of the file until it exits or execs, so the peer may have to wait
/// for that: what `close_all` promises is to drop the table's reference.
fn peer_sees_release(peer: &mut Peer) -> bool {
    let end = Instant::now() + SEAL_PEER_LIMIT;
    loop {
        if peer.sees_release() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        thread::sleep(Duration::from_millis(1));
    }
}

/// A fresh resource to track (socket pair ends and pipe read ends in turn)
/// and the end the test keeps.
fn seal_resource(i: usize) -> io::Result<(OwnedFd, Peer)> {
    if i.is_multiple_of(2) {
        let (mine, peer) = UnixStream::pair()?;
        peer.set_nonblocking(true)?;
        Ok((mine.into(), Peer::Socket(peer)))
    } else {
        let (r, w) = util::pipe();
        Ok((r, Peer::Pipe(File::from(w))))
    }
}

/// A refused `track` in a sealing round: the error, the resource given
/// back, its peer, and the resource's `(st_dev, st_ino)` before `track` saw
/// it.
type Refused = (io::Error, OwnedFd, Peer, Option<(u64, u64)>);

/// What one tracking thread of a sealing round ended with.
#[derive(Default)]
struct SealOutcome<'t> {
    attempts: usize,
    accepted: Vec<(Tracked<'t, OwnedFd>, Peer)>,
    refused: Vec<Refused>,
    failures: Vec<String>,
}

/// One sealing round on a table of its own: [`SEAL_TRACKERS`] threads
/// track until refused; once `target` entries were accepted (or 1 s
/// passed), `seal(); close_all()`. Then every promise of the seal is
/// checked; a broken one is counted in `FAIL_SEAL` and printed.
fn seal_round(target: usize, placeholder: (u64, u64)) {
    let _doing = doing(Step::SealRound);
    let table = FdTable::new();
    let accepted_so_far = AtomicUsize::new(0);
    let start = Barrier::new(SEAL_TRACKERS + 1);
    let (report, mut outcomes) = thread::scope(|s| {
        let trackers: Vec<_> = (0..SEAL_TRACKERS)
            .map(|t| {
                let (table, start, so_far) = (&table, &start, &accepted_so_far);
                s.spawn(move || {
                    let mut out = SealOutcome::default();
                    start.wait();
                    loop {
                        if out.accepted.len() >= SEAL_MOST_PER_TRACKER {
                            while !table.is_sealed() {
                                thread::yield_now();
                            }
                        }
                        let (fd, peer) = match seal_resource(t + out.attempts) {
                            Ok(made) => made,
                            Err(e) => {
                                out.failures.push(format!("open a resource: {e}"));
                                break;
                            }
                        };
                        let id = util::identity(fd.as_raw_fd());
                        out.attempts += 1;
                        match table.track(fd) {
                            Ok(handle) => {
                                so_far.fetch_add(1, SeqCst);
                                out.accepted.push((handle, peer));
                            }
                            Err(refused) => {
                                let (error, fd) = refused.into_parts();
                                out.refused.push((error, fd, peer, id));
                                break; // the sealed table says: stop
                            }
                        }
                    }
                    out
                })
            })
            .collect();
        start.wait();
        let bound = Instant::now() + Duration::from_secs(1);
        while accepted_so_far.load(SeqCst) < target && Instant::now() < bound {
            std::hint::spin_loop();
        }
        table.seal();
        let report = table.close_all();
        let outcomes: Vec<SealOutcome<'_>> = trackers
            .into_iter()
            .map(|t| t.join().expect("seal tracker panicked"))
            .collect();
        (report, outcomes)
    });
    progress();

    let mut failures: Vec<String> = outcomes
        .iter_mut()
        .flat_map(|o| std::mem::take(&mut o.failures))
        .collect();
    let attempts: usize = outcomes.iter().map(|o| o.attempts).sum();
    let accepted: usize = outcomes.iter().map(|o| o.accepted.len()).sum();
    let refused: usize = outcomes.iter().map(|o| o.refused.len()).sum();
    if !report.is_ok() {
        failures.push(format!("close_all errors: {:?}", report.errors()));
    }
    if attempts != accepted + refused || refused != SEAL_TRACKERS {
        failures.push(format!(
            "{attempts} tracks, {accepted} accepted, {refused} refused: a resource was lost"
        ));
    }
    if report.released() != accepted || !table.is_empty() {
        failures.push(format!(
            "{accepted} accepted, released() {}, len() {} after seal(); close_all()",
            report.released(),
            table.len()
        ));
    }
    for outcome in &mut outcomes {
        for (handle, peer) in &mut outcome.accepted {
            let fd = handle.as_raw_fd();
            if util::identity(fd) != Some(placeholder) {
                failures.push(format!(
                    "accepted fd {fd} was left live (not the placeholder)"
                ));
            } else if !peer_sees_release(peer) {
                failures.push(format!("accepted fd {fd}: its peer never saw it released"));
            }
        }
        for (error, fd, _, id) in &outcome.refused {
            let raw = fd.as_raw_fd();
            if error.kind() != io::ErrorKind::Other
                || util::identity(raw) != *id
                || id.is_none()
                || table.contains(raw)
            {
                failures.push(format!(
                    "refused fd {raw} did not come back intact: {error}"
                ));
            }
        }
    }
    count(&SEAL_ROUNDS);
    SEAL_ACCEPTED.fetch_add(accepted as u64, SeqCst);
    SEAL_REFUSED.fetch_add(refused as u64, SeqCst);
    for failure in failures {
        count(&FAIL_SEAL);
        eprintln!("sealing round: {failure}");
    }
}

fn sealer() {
    let placeholder = util::placeholder_identity();
    let mut rng = Rng(0x5ea1_5ea1_5ea1_5ea1);
    while !STOP_WORK.load(SeqCst) {
        // Seal at once in some rounds (the first tracks race it), after a
        // few dozen entries in others.
        let target = rng.below(SEAL_AFTER_AT_MOST as u64) as usize;
        seal_round(target, placeholder);
        // Rounds are bursts of four busy threads: spaced so that the
        // churners (and the storm, paced by their progress) keep the CPU.
        let _doing = doing(Step::Sleep);
        thread::sleep(Duration::from_millis(20));
    }
}

// --- the watchdog ----------------------------------------------------------------

/// Fails the soak, at once, when a worker makes no progress for
/// [`STALL_LIMIT`]: a soak whose work has stopped proves nothing, however
/// many signals it sends.
struct Watchdog {
    seen: [u64; WORKERS],
    since: [Instant; WORKERS],
    finished: [bool; WORKERS],
}

impl Watchdog {
    fn new() -> Watchdog {
        Watchdog {
            seen: [0; WORKERS],
            since: [Instant::now(); WORKERS],
            finished: [false; WORKERS],
        }
    }

    /// A worker that has ended is no longer expected to progress.
    fn finished(&mut self, worker: usize) {
        self.finished[worker] = true;
    }

    /// Exit with status 1 and one line naming every stalled worker (and
    /// where it is) if any has made no progress for [`STALL_LIMIT`].
    fn check(&mut self, start: Instant) {
        let now = Instant::now();
        let mut stalled = Vec::new();
        for i in 0..WORKERS {
            let seen = PROGRESS[i].load(SeqCst);
            if seen != self.seen[i] || self.finished[i] {
                self.seen[i] = seen;
                self.since[i] = now;
            } else if now - self.since[i] >= STALL_LIMIT {
                stalled.push(format!(
                    "{} for {:.1} s ({})",
                    worker_name(i),
                    (now - self.since[i]).as_secs_f64(),
                    Step::describe(DOING[i].load(SeqCst))
                ));
            }
        }
        if stalled.is_empty() {
            return;
        }
        println!(
            "fdtable soak: stopped after {:.1}s, {CHURNERS} churners",
            start.elapsed().as_secs_f64()
        );
        print_totals();
        print_churners(start.elapsed());
        println!("soak: FAIL: no progress: {}", stalled.join("; "));
        std::process::exit(1);
    }
}

/// Per churner: table operations, ops/s over `run`, signals handled on it
/// and I3 checks made in its close window.
fn print_churners(run: Duration) {
    println!(
        "  {:<10} {:>11} {:>9} {:>13} {:>10} {:>13} {:>11}",
        "churner", "table ops", "ops/s", "SIGUSR1 runs", "I3 checks", "longest wait", ">100ms"
    );
    for i in 0..CHURNERS {
        let ops = OPS[i].load(SeqCst);
        println!(
            "  {:<10} {:>11} {:>9.0} {:>13} {:>10} {:>10} ms {:>11}",
            worker_name(i),
            ops,
            ops as f64 / run.as_secs_f64().max(1e-9),
            USR1_HANDLED[i].load(SeqCst),
            CHECKS_ON[i].load(SeqCst),
            LONGEST_WAIT_US[i].load(SeqCst) / 1000,
            UNANSWERED[i].load(SeqCst),
        );
    }
}

// --- main -----------------------------------------------------------------------

struct Options {
    seconds: u64,
    spin: u32,
    quiet: bool,
    unpaced: bool,
    seal: bool,
}

fn parse_options() -> Result<Options, String> {
    let mut options = Options {
        seconds: 60,
        spin: 200,
        quiet: false,
        unpaced: false,
        seal: true,
    };
    if let Ok(value) = std::env::var("FDTABLE_SOAK_SECONDS") {
        options.seconds = value
            .parse()
            .map_err(|_| format!("FDTABLE_SOAK_SECONDS: not a number: {value}"))?;
    }
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = |name: &str| -> Result<u64, String> {
            let value = args.next().ok_or(format!("{name} needs a number"))?;
            value
                .parse()
                .map_err(|_| format!("{name}: not a number: {value}"))
        };
        match arg.as_str() {
            "--seconds" => options.seconds = number("--seconds")?,
            "--spin" => options.spin = number("--spin")? as u32,
            "--quiet" => options.quiet = true,
            "--unpaced" => options.unpaced = true,
            "--no-seal" => options.seal = false,
            "-h" | "--help" => {
                return Err(
                    "usage: soak [--seconds N] [--spin N] [--quiet] [--unpaced] [--no-seal]".into(),
                );
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(options)
}

fn main() {
    let options = parse_options().unwrap_or_else(|message| {
        eprintln!("{message}");
        std::process::exit(2);
    });
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !info.payload().is::<Quiet>() {
            default_hook(info);
        }
    }));

    let baseline = util::open_fd_count();
    let sentinels = Sentinels::open(2);
    let ids = Arc::new(sentinels.ids().to_vec());
    let start = Instant::now();

    let interrupts = Interrupts::builder(Signal::User2)
        .second_signal_kills(false)
        // A SIGUSR2 still in flight after the drop must not kill us.
        .default_after_drop(false)
        .install()
        .expect("install Interrupts(SIGUSR2)");
    let usr1 = Action::register(libc::SIGUSR1, on_usr1).expect("register SIGUSR1");
    let usr2 = Action::register(libc::SIGUSR2, on_usr2).expect("register SIGUSR2");

    let (ready_tx, ready_rx) = mpsc::channel();
    let churners: Vec<_> = (0..CHURNERS)
        .map(|me| {
            let tx = ready_tx.clone();
            let ids = Arc::clone(&ids);
            thread::Builder::new()
                .name(format!("churn-{me}"))
                .spawn(move || {
                    CHURNER.with(|c| c.set(me));
                    WORKER.with(|w| w.set(me));
                    // SAFETY: always safe to call.
                    let _ = tx.send(unsafe { libc::pthread_self() });
                    churn(me, ids);
                })
                .expect("spawn churner")
        })
        .collect();
    let targets: Vec<libc::pthread_t> = (0..CHURNERS)
        .map(|_| ready_rx.recv().expect("churner ready"))
        .collect();
    let interrupts = Arc::new(Mutex::new(interrupts));
    let drain = {
        let interrupts = Arc::clone(&interrupts);
        thread::spawn(move || drain_interrupts(&interrupts.lock().expect("interrupts")))
    };
    let (spin, unpaced) = (options.spin, options.unpaced);
    let storm = thread::spawn(move || storm(targets, spin, unpaced));
    let forker = {
        let ids = Arc::clone(&ids);
        thread::spawn(move || {
            WORKER.with(|w| w.set(FORKER));
            forker(ids)
        })
    };
    let closer = thread::spawn(|| {
        WORKER.with(|w| w.set(CLOSER));
        closer()
    });
    let sealer = options.seal.then(|| {
        thread::spawn(|| {
            WORKER.with(|w| w.set(SEALER));
            sealer()
        })
    });
    let mut workers: Vec<(usize, thread::JoinHandle<()>)> = churners
        .into_iter()
        .enumerate()
        .chain([(FORKER, forker), (CLOSER, closer)])
        .chain(sealer.map(|t| (SEALER, t)))
        .collect();

    let mut watchdog = Watchdog::new();
    if !options.seal {
        watchdog.finished(SEALER);
    }
    let run = Duration::from_secs(options.seconds);
    let mut next_report = Duration::from_secs(10);
    let mut ops_at_report = [0u64; CHURNERS];
    while start.elapsed() < run {
        thread::sleep(Duration::from_millis(100).min(run.saturating_sub(start.elapsed())));
        watchdog.check(start);
        if !options.quiet && start.elapsed() >= next_report {
            let rates: Vec<String> = (0..CHURNERS)
                .map(|i| {
                    let ops = OPS[i].load(SeqCst);
                    let rate = (ops - ops_at_report[i]) / 10;
                    ops_at_report[i] = ops;
                    rate.to_string()
                })
                .collect();
            eprintln!(
                "soak {:>4}s: signals {} checks {} ops {} (ops/s per churner {}) forks {} mismatches {}",
                start.elapsed().as_secs(),
                THREAD_SIGNALS.load(SeqCst) + PROCESS_SIGNALS.load(SeqCst),
                HANDLER_CHECKS.load(SeqCst),
                TABLE_OPS.load(SeqCst),
                rates.join("/"),
                FORKS.load(SeqCst),
                MISMATCHES.load(SeqCst),
            );
            next_report += Duration::from_secs(10);
        }
    }
    let run_time = start.elapsed();

    // The storm stops before any churner may exit: pthread_kill on a thread
    // that has ended is undefined.
    STOP_STORM.store(true, SeqCst);
    storm.join().expect("storm thread");
    STOP_WORK.store(true, SeqCst);
    // Winding down is watched too: a worker that never finishes is a stall,
    // not a hung soak.
    while !workers.is_empty() {
        let (done, running): (Vec<_>, Vec<_>) =
            workers.into_iter().partition(|(_, t)| t.is_finished());
        workers = running;
        for (i, t) in done {
            t.join()
                .unwrap_or_else(|_| panic!("{} panicked", worker_name(i)));
            watchdog.finished(i);
        }
        watchdog.check(start);
        thread::sleep(Duration::from_millis(20));
    }
    drain.join().expect("interrupt drainer");
    drop(usr1);
    drop(usr2);
    drop(interrupts);
    let elapsed = start.elapsed();

    // Final checks.
    let mut failures = Vec::new();
    let leaked: Vec<RawFd> = (RANGE_BASE..RANGE_END)
        .filter(|&fd| util::is_open(fd))
        .collect();
    if !leaked.is_empty() {
        failures.push(format!("churner numbers still open: {leaked:?}"));
    }
    if !TABLE.is_empty() || (0..RANGE_END).any(|fd| TABLE.contains(fd)) {
        failures.push(format!("table not empty: len {}", TABLE.len()));
    }
    if !sentinels.intact() {
        failures.push("a sentinel fd was closed or replaced".into());
    }
    drop(sentinels);
    let now = util::open_fd_count();
    if now != baseline {
        failures.push(format!("/proc/self/fd: {now} open, baseline {baseline}"));
    }
    for (name, counter) in [
        ("half-updates seen by the handler", &MISMATCHES),
        ("close errors", &FAIL_CLOSE_ERRORS),
        ("track errors", &FAIL_TRACK_ERRORS),
        ("close_all errors", &FAIL_CLOSE_ALL),
        ("visited fds not open", &FAIL_VISITED_CLOSED),
        ("failed fork children", &FAIL_CHILD),
        ("hung children", &FAIL_HUNG),
        ("wrong spawn results", &FAIL_SPAWN),
        ("failed sealing-round checks", &FAIL_SEAL),
    ] {
        let n = counter.load(SeqCst);
        if n > 0 {
            failures.push(format!("{n} {name}"));
        }
    }
    // Guards against a run that proves nothing: the storm must have hit
    // every churner inside its close window.
    for (i, checks) in CHECKS_ON.iter().enumerate() {
        let checks = checks.load(SeqCst);
        if checks < MIN_CHECKS_PER_CHURNER {
            failures.push(format!(
                "{}: only {checks} handler checks inside its close window \
                 (at least {MIN_CHECKS_PER_CHURNER}): the storm did not reach it",
                worker_name(i)
            ));
        }
    }
    for (name, counter) in [
        ("handler checks", &HANDLER_CHECKS),
        ("forks", &FORKS),
        ("spawns", &SPAWNS),
        ("close_all calls", &CLOSE_ALLS),
    ] {
        if counter.load(SeqCst) == 0 {
            failures.push(format!("no {name} happened"));
        }
    }
    if options.seal && SEAL_ROUNDS.load(SeqCst) == 0 {
        failures.push("no sealing round happened".into());
    }

    println!(
        "fdtable soak: {:.1}s, {CHURNERS} churners, storm spin {}{}{}",
        elapsed.as_secs_f64(),
        options.spin,
        if options.unpaced { ", UNPACED" } else { "" },
        if options.seal { "" } else { ", no sealer" }
    );
    print_totals();
    print_churners(run_time);
    println!(
        "  {:<34} {:>12}",
        "signals sent (total)",
        THREAD_SIGNALS.load(SeqCst) + PROCESS_SIGNALS.load(SeqCst)
    );
    println!(
        "  {:<34} {:>12}",
        "fds open at end / baseline",
        format!("{now}/{baseline}")
    );
    if failures.is_empty() {
        println!("soak: OK");
    } else {
        for failure in &failures {
            println!("soak: FAIL: {failure}");
        }
        std::process::exit(1);
    }
}
