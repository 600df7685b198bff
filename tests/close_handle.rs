//! `Interrupts::close_handle` (issue 18 item 3): a `CloseHandle::close`
//! releases a thread blocked in `recv`, `recv_timeout` or `wait_readable`
//! promptly, every later receive fails at once, `try_recv` reports nothing,
//! and the instance still drops cleanly, its descriptors closed even while
//! a handle lives and never written to afterwards; `close` works from a
//! signal handler.
//!
//! Signals are process-wide: every in-process test takes `util::serial()`;
//! what changes the process's policy for good runs in a helper process.

mod util;

use std::io::{self, ErrorKind, Write};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use fdtable::{Interrupts, Signal};
use util::{assert_lines, raise, readable_now, say};

/// Generous bound for anything that must merely happen.
const PROMPTLY: Duration = Duration::from_secs(30);
/// The bound from `close()` to the blocked receive returning.
const RELEASED_WITHIN: Duration = Duration::from_millis(500);
const HELPER_ENV: &str = "FDTABLE_CLOSE_HELPER";

/// `signal` as events only: no second-signal kill, and no default action
/// once dropped (SIGUSR2 is raised with no instance alive, for a
/// signal-hook action of the test's own).
fn events(signal: Signal) -> Interrupts {
    Interrupts::builder(signal)
        .respect_ignored(false)
        .second_signal_kills(false)
        .default_after_drop(false)
        .install()
        .unwrap()
}

/// Whether thread `tid` is blocked in `poll(2)` (which glibc makes as
/// `ppoll` where the architecture has no `poll`), from `/proc`.
#[cfg(target_os = "linux")]
fn in_poll(tid: libc::pid_t) -> bool {
    let Some(nr) = util::blocked_in_syscall(tid) else {
        return false;
    };
    #[cfg(target_arch = "x86_64")]
    if nr == libc::SYS_poll {
        return true;
    }
    nr == libc::SYS_ppoll
}

/// Run `receive` on a thread of its own, wait until that thread is blocked
/// in `poll(2)` (on Linux from `/proc/<tid>/syscall`, so "blocked" is a
/// fact, not a guess; elsewhere a 200 ms sleep stands in), then call
/// `close` and return how long the receive took to come back after it, with
/// its result.
fn release_blocked<T: Send + 'static>(
    close: impl FnOnce(),
    receive: impl FnOnce() -> T + Send + 'static,
) -> (Duration, T) {
    let (tid_tx, tid_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel();
    let thread = std::thread::spawn(move || {
        #[cfg(target_os = "linux")]
        // SAFETY: gettid has no preconditions.
        tid_tx.send(unsafe { libc::gettid() }).unwrap();
        #[cfg(not(target_os = "linux"))]
        tid_tx.send(()).unwrap();
        let _ = done_tx.send(receive());
    });
    let _tid = tid_rx.recv().unwrap();
    #[cfg(target_os = "linux")]
    {
        let mut wait = util::Deadline::new(PROMPTLY, 1_000_000);
        while !in_poll(_tid) {
            assert!(wait.tick(), "the receive never blocked in poll");
            assert!(!thread.is_finished(), "the receive returned before close");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    #[cfg(not(target_os = "linux"))]
    std::thread::sleep(Duration::from_millis(200));
    let before = Instant::now(); // right before close, as the issue asks
    close();
    let result = done_rx
        .recv_timeout(PROMPTLY)
        .expect("close did not release the blocked receive");
    let took = before.elapsed();
    thread.join().unwrap();
    (took, result)
}

/// The facts every receive error after a close must carry.
fn assert_closed_error(error: &io::Error, op: &str) {
    assert_eq!(error.kind(), ErrorKind::BrokenPipe, "{error}");
    let message = error.to_string();
    assert!(message.starts_with(op), "does not name {op}: {message}");
    assert!(message.contains("closed by its CloseHandle"), "{message}");
}

#[test]
fn close_releases_a_thread_blocked_in_recv_within_500_ms() {
    let _serial = util::serial();
    let interrupts = std::sync::Arc::new(events(Signal::User1));
    let close = interrupts.close_handle();
    assert!(!close.is_closed() && !interrupts.is_closed());
    let waiting = std::sync::Arc::clone(&interrupts);
    let (took, result) = release_blocked(|| close.close(), move || waiting.recv());
    assert_closed_error(&result.unwrap_err(), "Interrupts::recv");
    assert!(
        took < RELEASED_WITHIN,
        "recv came back {took:?} after close (bound {RELEASED_WITHIN:?})"
    );
    assert!(interrupts.is_closed() && close.is_closed());
}

#[test]
fn close_releases_blocked_recv_timeout_and_wait_readable() {
    let _serial = util::serial();
    let interrupts = std::sync::Arc::new(events(Signal::User1));

    let close = interrupts.close_handle();
    let waiting = std::sync::Arc::clone(&interrupts);
    let (took, result) = release_blocked(
        || close.close(),
        move || waiting.recv_timeout(Duration::from_secs(600)),
    );
    assert_closed_error(&result.unwrap_err(), "Interrupts::recv_timeout");
    assert!(took < RELEASED_WITHIN, "recv_timeout: {took:?}");

    // A fresh instance: this one is closed for good.
    let interrupts = std::sync::Arc::new(events(Signal::User1));
    let (_tx, rx) = UnixStream::pair().unwrap();
    let close = interrupts.close_handle();
    let waiting = std::sync::Arc::clone(&interrupts);
    let (took, result) = release_blocked(
        || close.close(),
        move || waiting.wait_readable(rx.as_fd(), None),
    );
    assert_closed_error(&result.unwrap_err(), "Interrupts::wait_readable");
    assert!(took < RELEASED_WITHIN, "wait_readable: {took:?}");
}

/// After a close nothing waits and nothing is reported, even with a signal
/// pending and a readable descriptor; the pipe stays readable, so a program
/// polling it in its own loop wakes up and can check `is_closed`.
#[test]
fn after_close_every_receive_fails_at_once_and_try_recv_reports_nothing() {
    let _serial = util::serial();
    let interrupts = events(Signal::User1);
    let close = interrupts.close_handle();
    let clone = close.clone();
    raise(libc::SIGUSR1); // pending, never reported
    clone.close();
    close.close(); // idempotent
    assert!(close.is_closed() && clone.is_closed() && interrupts.is_closed());
    assert!(readable_now(&interrupts), "a poller would not wake up");
    assert_eq!(interrupts.try_recv(), None);
    assert!(
        readable_now(&interrupts),
        "try_recv ate the close's wake-up"
    );

    let interrupts = util::within(PROMPTLY, "receives after close", move || {
        assert_closed_error(&interrupts.recv().unwrap_err(), "Interrupts::recv");
        let error = interrupts
            .recv_timeout(Duration::from_secs(600))
            .unwrap_err();
        assert_closed_error(&error, "Interrupts::recv_timeout");
        let (mut tx, rx) = UnixStream::pair().unwrap();
        tx.write_all(b"data").unwrap(); // readable: the close still wins
        let error = interrupts.wait_readable(rx.as_fd(), None).unwrap_err();
        assert_closed_error(&error, "Interrupts::wait_readable");
        interrupts
    });
    // Deliveries are still counted and handled (the instance lives), but
    // never reported.
    raise(libc::SIGUSR1);
    assert_eq!(interrupts.try_recv(), None);
    assert!(format!("{close:?}").contains("closed: true"), "{close:?}");
}

/// Dropping the closed instance closes its two descriptors although a
/// handle still lives; closing through that handle afterwards writes to
/// neither number, even once the kernel has handed both to a new pipe.
#[test]
fn a_handle_outliving_its_instance_keeps_no_descriptor_and_writes_to_no_reused_number() {
    let _serial = util::serial();
    let baseline = util::open_fd_count();
    let interrupts = events(Signal::User1);
    let numbers = {
        // The pipe's two numbers: the read end, and the other new one.
        let read = interrupts.as_raw_fd();
        let write = (0..1024)
            .filter(|&fd| fd != read && util::is_open(fd))
            .filter(|&fd| util::identity(fd) == util::identity(read))
            .collect::<Vec<RawFd>>();
        assert_eq!(write.len(), 1, "the pipe's write end: {write:?}");
        [read, write[0]]
    };
    assert_eq!(util::open_fd_count(), baseline + 2, "an instance costs two");
    let close = interrupts.close_handle();
    close.close();
    drop(interrupts);
    assert_eq!(
        util::open_fd_count(),
        baseline,
        "the handle kept the instance's descriptors open"
    );

    // The kernel hands out the lowest free numbers: the old ones, here.
    let (read, write) = util::pipe();
    let reused = [read.as_raw_fd(), write.as_raw_fd()];
    assert!(
        reused.iter().all(|fd| numbers.contains(fd)),
        "numbers {numbers:?} not reused by {reused:?}: the check below would prove nothing"
    );
    close.close();
    close.clone().close();
    assert!(
        !readable_now(&read),
        "close wrote to a number it no longer owns"
    );
}

/// `close` is async-signal-safe: called from a signal-hook action for
/// SIGUSR2, it releases a thread blocked in `recv` on a SIGUSR1 instance.
#[test]
fn close_from_a_signal_handler_releases_a_blocked_recv() {
    let _serial = util::serial();
    let interrupts = std::sync::Arc::new(events(Signal::User1));
    let in_handler = interrupts.close_handle();
    // SAFETY: the action only calls `CloseHandle::close` (atomics, getpid,
    // one write); the handle is dropped by `unregister`, outside a handler.
    let id = unsafe { signal_hook::low_level::register(libc::SIGUSR2, move || in_handler.close()) }
        .unwrap();
    let waiting = std::sync::Arc::clone(&interrupts);
    // Process-directed: whichever thread has SIGUSR2 unblocked runs it.
    // SAFETY: kill to our own pid; SIGUSR2 has the action above.
    let kill = || assert_eq!(unsafe { libc::kill(libc::getpid(), libc::SIGUSR2) }, 0);
    let (took, result) = release_blocked(kill, move || waiting.recv());
    signal_hook::low_level::unregister(id);
    assert_closed_error(&result.unwrap_err(), "Interrupts::recv");
    assert!(took < RELEASED_WITHIN, "{took:?}");
    assert!(interrupts.is_closed());
}

// ---------------------------------------------------------------------------
// Helper processes: the policy after a closed instance is dropped
// ---------------------------------------------------------------------------

#[test]
fn helper_process() {
    let Ok(mode) = std::env::var(HELPER_ENV) else {
        return;
    };
    match mode.as_str() {
        "close_then_drop" => {
            // No second-signal kill: only the drop can bring death back.
            let interrupts = Interrupts::builder(Signal::User1)
                .second_signal_kills(false)
                .install()
                .unwrap();
            let close = interrupts.close_handle();
            close.close();
            raise(libc::SIGUSR1); // still handled: an event, never reported
            say(&format!(
                "closed, survived, try_recv={:?}",
                interrupts.try_recv()
            ));
            drop(interrupts);
            say("dropped");
            raise(libc::SIGUSR1); // the default action is back
            say("survived after the drop");
        }
        _ => panic!("unknown helper mode {mode}"),
    }
    std::process::exit(0);
}

/// A closed instance leaves the process-wide policy as any other: while it
/// lives its signal is still handled (an event, so the process survives),
/// and its drop, the last, unregisters it and brings the default back.
#[test]
fn dropping_a_closed_instance_brings_the_default_action_back() {
    // Spawning opens descriptors: not while the reuse test counts them.
    let _serial = util::serial();
    let (status, lines) = util::run_helper(HELPER_ENV, "close_then_drop", PROMPTLY);
    assert_lines(
        &lines,
        &["closed, survived, try_recv=None", "dropped"],
        &["survived after the drop"],
    );
    assert_eq!(
        status.signal(),
        Some(libc::SIGUSR1),
        "{status:?} {lines:#?}"
    );
}
