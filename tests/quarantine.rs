//! Quarantine mode, tested in a process of its own: `main` enters quarantine
//! before any other thread exists, then checks what the mode promises.
//!
//! - every handler of a storm of process-directed signals runs on the
//!   quarantine thread while several threads churn the table;
//! - guards on quarantined threads need no syscall, yet a handler never sees
//!   a half-update (checked by `contains` vs `fcntl` from the handler);
//! - a thread that existed before `enter` is reported, and its guards keep
//!   the syscall pair (run in a child copy of this binary).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fdtable::{quarantine, CommandExt, FdTable, Interrupts, MaskGuard, Signal};

static TABLE: FdTable = FdTable::new();
static QUARANTINE_TID: AtomicI64 = AtomicI64::new(0);
static ON_SIGNAL_THREAD: AtomicUsize = AtomicUsize::new(0);
static ELSEWHERE: AtomicUsize = AtomicUsize::new(0);
static CLOSING_FD: AtomicI32 = AtomicI32::new(-1);

fn gettid() -> i64 {
    // SAFETY: no preconditions.
    i64::from(unsafe { libc::gettid() })
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
    ctrl_c_still_arrives_through_interrupts();
    println!("quarantine: 5 passed, 0 failed");
}

fn handlers_run_only_on_the_signal_thread_under_a_kill_storm() {
    // SAFETY: the action only reads atomics, calls gettid and fcntl, and
    // bumps counters: all async-signal-safe, no allocation, no panic.
    let id = unsafe {
        signal_hook::low_level::register(libc::SIGUSR1, || {
            if gettid() == QUARANTINE_TID.load(Ordering::Relaxed) {
                ON_SIGNAL_THREAD.fetch_add(1, Ordering::Relaxed);
            } else {
                ELSEWHERE.fetch_add(1, Ordering::Relaxed);
            }
            let fd = CLOSING_FD.load(Ordering::Relaxed);
            if fd >= 0 {
                // Only meaningful on the mutating thread; counted above.
                let _ = TABLE.contains(fd);
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
                    CLOSING_FD.store(file.as_raw_fd(), Ordering::Relaxed);
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

    let deadline = Instant::now() + Duration::from_secs(3);
    let mut sent = 0u64;
    while Instant::now() < deadline && sent < 2_000_000 {
        // SAFETY: signalling our own process.
        unsafe { libc::kill(libc::getpid(), libc::SIGUSR1) };
        sent += 1;
        if ON_SIGNAL_THREAD.load(Ordering::Relaxed) >= 20_000 && sent >= 100_000 {
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
