//! Quarantine mode, tested in a process of its own: `main` enters quarantine
//! before any other thread exists, then checks what the mode promises.
//!
//! - every handler of a storm of process-directed signals runs on the
//!   quarantine thread while several threads churn the table;
//! - so no handler can interrupt a thread that mutates the table (I3 by
//!   construction: the storm checks that no handler ever ran on a worker,
//!   `elsewhere == 0`), while guards on the workers skip the restore;
//! - a thread that existed before `enter` is reported, and its guards keep
//!   the syscall pair (run in a child copy of this binary);
//! - a quarantined thread that unblocks signals itself after a guard is
//!   protected again by its next guard (the decision is never cached).

mod util;

use std::fs::File;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fdtable::{quarantine, CommandExt, FdTable, Interrupts, MaskGuard, Signal};

static TABLE: FdTable = FdTable::new();
static QUARANTINE_TID: AtomicI64 = AtomicI64::new(0);
static ON_SIGNAL_THREAD: AtomicUsize = AtomicUsize::new(0);
static ELSEWHERE: AtomicUsize = AtomicUsize::new(0);

fn gettid() -> i64 {
    util::thread_id()
}

fn main() {
    if std::env::args().any(|a| a == "--late-quarantine") {
        late_quarantine_child();
        return;
    }
    if std::env::args().any(|a| a == "--guard-then-enter") {
        guard_then_enter_child();
        return;
    }
    let mask_before = sig_blk(&std::fs::read_to_string("/proc/thread-self/status").unwrap());
    let mask_before_set = current_mask();
    // Configured before quarantine, hook-free: spawned after `enter` it
    // starts with everything blocked (a documented limit).
    let mut configured_before = Command::new("cat");
    configured_before
        .arg("/proc/self/status")
        .close_tracked_fds(&TABLE);
    let report = quarantine::enter().expect("enter quarantine");
    assert_eq!(
        report.preexisting_threads(),
        Some(0),
        "libtest harness must be off"
    );
    assert!(quarantine::is_active());
    QUARANTINE_TID.store(
        report.signal_thread_tid().expect("Linux has tids"),
        Ordering::SeqCst,
    );
    assert_eq!(quarantine::signal_thread_tid(), report.signal_thread_tid());
    assert!(quarantine::enter().is_err(), "entering twice must fail");

    handlers_run_only_on_the_signal_thread_under_a_kill_storm();
    a_thread_that_predates_quarantine_is_reported();
    entering_quarantine_under_a_live_mask_guard_is_refused();
    spawned_program_starts_with_the_mask_from_before_quarantine(&mask_before);
    a_hook_free_command_configured_before_quarantine_starts_with_everything_blocked(
        configured_before,
    );
    ctrl_c_still_arrives_through_interrupts();
    #[cfg(target_os = "linux")]
    a_thread_that_unblocks_signals_after_a_guard_is_protected_by_its_next_guard();
    a_fork_child_that_goes_on_running_leaves_quarantine_in_retire_all_in_child(&mask_before_set);
    println!("quarantine: 8 passed, 0 failed");
}

fn handlers_run_only_on_the_signal_thread_under_a_kill_storm() {
    // SAFETY: the action only reads atomics, calls gettid and bumps
    // counters: all async-signal-safe, no allocation, no panic.
    let id = unsafe {
        signal_hook::low_level::register(libc::SIGUSR1, || {
            if gettid() == QUARANTINE_TID.load(Ordering::Relaxed) {
                ON_SIGNAL_THREAD.fetch_add(1, Ordering::Relaxed);
            } else {
                ELSEWHERE.fetch_add(1, Ordering::Relaxed);
            }
        })
    }
    .expect("register SIGUSR1");

    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..3)
        .map(|w| {
            let stop = Arc::clone(&stop);
            let ops = Arc::clone(&ops);
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) && n < 5_000_000 {
                    n += 1;
                    let file = TABLE.track(File::open("/dev/null").unwrap()).unwrap();
                    match n % 7 {
                        0 => TABLE.for_each(|_| {}),
                        1 if w == 0 && n % 1000 == 1 => {
                            let _ = TABLE.close_all();
                        }
                        _ => {}
                    }
                    drop(file);
                    ops.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();

    // About 3 s, longer only while the storm has not yet reached the
    // signal thread 1 000 times (a loaded shared machine), up to 30 s.
    let start = Instant::now();
    let mut sent = 0u64;
    while start.elapsed() < Duration::from_secs(30) && sent < 2_000_000 {
        // SAFETY: signalling our own process.
        unsafe { libc::kill(libc::getpid(), libc::SIGUSR1) };
        sent += 1;
        let on = ON_SIGNAL_THREAD.load(Ordering::Relaxed);
        if (on >= 20_000 && sent >= 100_000)
            || (on >= 1_000 && start.elapsed() >= Duration::from_secs(3))
        {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    signal_hook::low_level::unregister(id);

    let on = ON_SIGNAL_THREAD.load(Ordering::Relaxed);
    let elsewhere = ELSEWHERE.load(Ordering::Relaxed);
    println!(
        "kill storm: sent {sent}, handled on the signal thread {on}, elsewhere {elsewhere}, table ops {}",
        ops.load(Ordering::Relaxed)
    );
    assert_eq!(
        elsewhere, 0,
        "a handler ran on a thread that mutates the table"
    );
    assert!(on >= 1_000, "too few handler runs ({on}) to mean anything");
    assert!(ops.load(Ordering::Relaxed) > 0);
    assert_eq!(quarantine::unprotected_threads_seen(), 0);
    assert!(TABLE.is_empty());
}

/// Runs this binary again with `--late-quarantine`: that copy starts a thread
/// first, then enters quarantine, and must report the thread.
fn a_thread_that_predates_quarantine_is_reported() {
    child_copy_says("--late-quarantine", "preexisting=1 unprotected=1");
}

/// A guard alive during `enter` would later restore its saved open mask on
/// a thread that guards then believe quarantined: `enter` must refuse.
fn entering_quarantine_under_a_live_mask_guard_is_refused() {
    child_copy_says(
        "--guard-then-enter",
        "refused=InvalidInput then-entered=true masked-after=true",
    );
}

/// Run this binary again in `mode` and require `expected` in its output.
fn child_copy_says(mode: &str, expected: &str) {
    let out = run_child_copy(mode);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{mode} child failed: {stdout} {stderr}"
    );
    assert!(stdout.contains(expected), "{mode} child said: {stdout}");
}

fn guard_then_enter_child() {
    let guard = MaskGuard::new();
    let refused = quarantine::enter().expect_err("enter under a live guard");
    drop(guard);
    let entered = quarantine::enter().is_ok();
    let _inner = MaskGuard::new();
    let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
    let blocked = u64::from_str_radix(&sig_blk(&status), 16).unwrap();
    let masked = blocked & (1 << (libc::SIGINT - 1)) != 0;
    println!(
        "refused={:?} then-entered={entered} masked-after={masked}",
        refused.kind()
    );
}

/// Run this binary again in `mode`. This process is quarantined, so a plain
/// child would inherit a fully blocked mask; give it an open one, as a fresh
/// program would have.
fn run_child_copy(mode: &str) -> std::process::Output {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.arg(mode);
    // SAFETY: the hook only calls sigemptyset and pthread_sigmask, both
    // async-signal-safe, and allocates nothing.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            let mut empty = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
            libc::sigemptyset(empty.as_mut_ptr());
            libc::pthread_sigmask(libc::SIG_SETMASK, empty.as_ptr(), std::ptr::null_mut());
            Ok(())
        });
    }
    cmd.output().expect("run child copy")
}

fn late_quarantine_child() {
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let early = std::thread::spawn(move || {
        go_rx.recv().unwrap();
        // This thread predates quarantine: its mask is open, so the guard
        // must do the real syscalls and the thread must be counted.
        drop(MaskGuard::new());
        done_tx.send(()).unwrap();
    });
    let report = quarantine::enter().expect("enter");
    go_tx.send(()).unwrap();
    done_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    early.join().unwrap();
    println!(
        "preexisting={} unprotected={}",
        report.preexisting_threads().unwrap_or(usize::MAX),
        quarantine::unprotected_threads_seen()
    );
}

fn sig_blk(status: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigBlk:"))
        .map(|v| v.trim().to_string())
        .expect("SigBlk line")
}

/// The exec hook must hand the new program the pre-quarantine mask, not the
/// everything-blocked mask of the quarantined thread that spawns it.
fn spawned_program_starts_with_the_mask_from_before_quarantine(before: &str) {
    let here = sig_blk(&std::fs::read_to_string("/proc/thread-self/status").unwrap());
    assert_ne!(
        here, before,
        "this thread should be quarantined (all blocked)"
    );
    let out = Command::new("cat")
        .arg("/proc/self/status")
        .close_tracked_fds(&TABLE)
        .output()
        .expect("spawn cat");
    assert!(out.status.success());
    let child = sig_blk(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(
        child, before,
        "child mask {child} != pre-quarantine mask {before}"
    );
    // Control: without the hook the child inherits the quarantined mask.
    let out = Command::new("cat")
        .arg("/proc/self/status")
        .output()
        .unwrap();
    assert_eq!(sig_blk(&String::from_utf8_lossy(&out.stdout)), here);
}

/// The documented limit of the hook-free `close_tracked_fds` (review
/// finding 5): a command configured before `enter` has no hook, so its
/// program inherits the quarantined thread's mask, as a plain `Command`'s
/// does. (Configured after `enter`, it gets the hook: see above.)
fn a_hook_free_command_configured_before_quarantine_starts_with_everything_blocked(
    mut cmd: Command,
) {
    let here = sig_blk(&std::fs::read_to_string("/proc/thread-self/status").unwrap());
    let out = cmd.output().expect("spawn cat");
    assert!(out.status.success());
    assert_eq!(sig_blk(&String::from_utf8_lossy(&out.stdout)), here);
}

/// Every thread but the signal thread has SIGINT blocked; a process-directed
/// SIGINT must still reach `Interrupts` (its handler runs on the signal
/// thread and writes the pipe the main thread waits on).
fn ctrl_c_still_arrives_through_interrupts() {
    let interrupts = Interrupts::builder(Signal::Interrupt)
        .respect_ignored(false) // the test runner may start us with SIGINT ignored
        .second_signal_kills(false)
        .install()
        .expect("install Interrupts");
    // SAFETY: signalling our own process; SIGINT is handled above.
    unsafe { libc::kill(libc::getpid(), libc::SIGINT) };
    let got = interrupts
        .recv_timeout(Duration::from_secs(10))
        .expect("handlers in place")
        .expect("SIGINT never arrived through the quarantine thread");
    assert_eq!(got.signal(), Signal::Interrupt);
    assert!(got.count() >= 1);
}

/// The signals blocked by thread `tid` while it sleeps inside `close(2)`:
/// `SO_LINGER` with unsent data makes the close wait in the kernel, long
/// enough to read `SigBlk` from /proc (the technique of
/// `tests/signals.rs::the_close_syscall_runs_with_async_signals_blocked`).
/// `drop_on_thread` runs on the thread and must end by dropping the
/// lingering handle it is given.
#[cfg(target_os = "linux")]
fn sig_blk_during_close(
    drop_on_thread: impl FnOnce(fdtable::Tracked<'static, std::net::TcpStream>) + Send + 'static,
) -> u64 {
    // The peer never reads: the data stays unsent.
    let (client, peer) = util::lingering_socket(2);
    let handle = TABLE.track(client).unwrap();
    let seen = util::signals_blocked_in_close(move || drop_on_thread(handle));
    drop(peer);
    seen.expect("never saw the closing thread inside close(2)")
}

/// A thread of a quarantined process has everything blocked, so its first
/// guard finds the mask fully blocked. If it then unblocks signals for its
/// own reasons, its next close must still run with them blocked (I3): the
/// guard decides from the real mask every time, never from a cached
/// observation. (Read from `/proc`: Linux only.)
#[cfg(target_os = "linux")]
fn a_thread_that_unblocks_signals_after_a_guard_is_protected_by_its_next_guard() {
    let before = quarantine::unprotected_threads_seen();
    let blocked = sig_blk_during_close(|handle| {
        drop(MaskGuard::new()); // first guard: everything is blocked here
        let set = {
            let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
            // SAFETY: sigemptyset/sigaddset initialise and edit a local set.
            unsafe {
                libc::sigemptyset(set.as_mut_ptr());
                for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGUSR1] {
                    libc::sigaddset(set.as_mut_ptr(), sig);
                }
                set.assume_init()
            }
        };
        // SAFETY: unblocks three signals on this thread only.
        unsafe { libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut()) };
        drop(handle); // lingers in close(2)
    });
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGUSR1] {
        assert_ne!(
            blocked & (1 << (sig - 1)),
            0,
            "signal {sig} was deliverable during close(2) (SigBlk {blocked:#x}) on a \
             thread that unblocked it after a guard"
        );
    }
    assert_eq!(
        quarantine::unprotected_threads_seen(),
        before + 1,
        "the thread with an open mask is reported"
    );
    assert!(TABLE.is_empty());
}

/// This thread's signal mask.
fn current_mask() -> libc::sigset_t {
    let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initialises the set; a null new set only queries.
    unsafe {
        libc::sigemptyset(set.as_mut_ptr());
        libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), set.as_mut_ptr());
        set.assume_init()
    }
}

/// Signals 1-64: the part of a mask the kernel keeps.
fn kernel_word(set: &libc::sigset_t) -> u64 {
    // SAFETY: a sigset_t is at least 8 bytes of plain data.
    unsafe {
        (set as *const libc::sigset_t)
            .cast::<u64>()
            .read_unaligned()
    }
}

/// A fork child inherits the forking thread's fully blocked mask but not
/// the signal thread, so no asynchronous signal could ever be delivered to
/// it: it would survive `kill -TERM`, and its own `Interrupts` would never
/// receive. `retire_all_in_child` leaves quarantine in the child: the
/// pre-quarantine mask is back on the child's thread, `is_active` is false,
/// and SIGTERM's default action ends it.
fn a_fork_child_that_goes_on_running_leaves_quarantine_in_retire_all_in_child(
    before: &libc::sigset_t,
) {
    let before = kernel_word(before);
    // SAFETY: the child makes only async-signal-safe calls (retire, atomics,
    // pthread_sigmask, signal, raise) and leaves with `_exit`.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        // SAFETY: the fork child, right after fork; nothing else uses TABLE.
        let _ = unsafe { TABLE.retire_all_in_child(&[]) };
        let mut code = 0;
        if quarantine::is_active() {
            code |= 1;
        }
        if quarantine::signal_thread_tid().is_some() {
            code |= 2;
        }
        if kernel_word(&current_mask()) != before {
            code |= 4;
        }
        // SAFETY: SIGTERM's default action, then raise it at ourselves.
        unsafe {
            libc::signal(libc::SIGTERM, libc::SIG_DFL);
            libc::raise(libc::SIGTERM);
            libc::_exit(code | 8) // survived SIGTERM
        }
    }
    let mut status = 0;
    // SAFETY: our own child; `status` is a valid out pointer.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(
        libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGTERM,
        "the fork child did not die by SIGTERM: exit code {} (1: still quarantined, \
         2: signal thread tid kept, 4: mask not restored, 8: survived SIGTERM)",
        libc::WEXITSTATUS(status)
    );
}
