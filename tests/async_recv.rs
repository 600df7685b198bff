//! Issue 11, item 2 (feature `tokio`): `AsyncInterrupts::recv().await` on
//! multi-thread and current-thread runtimes, cancel safe, losing no signal
//! and no count.
//!
//! The storm tests drop thousands of receive futures mid-wait (a biased
//! `select!` that cancels after one poll, timeouts of a few microseconds)
//! while another thread sends SIGUSR1 to the process as fast as it can;
//! every delivery is also counted by an action of our own in signal-hook's
//! handler, and at the end the receives must have reported exactly that
//! many. Signals are process-wide, so every test takes `util::serial()`.

mod util;

use std::future::poll_fn;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fdtable::{AsyncInterrupts, Interrupts, Received, Signal};
use tokio::runtime::Runtime;

/// Generous bound for anything that should be prompt.
const PROMPTLY: Duration = Duration::from_secs(30);

fn events(signal: Signal) -> Interrupts {
    Interrupts::builder(signal)
        .respect_ignored(false)
        .second_signal_kills(false)
        .install()
        .expect("install")
}

fn multi_thread() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn current_thread() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn kill_self(sig: libc::c_int) {
    // SAFETY: kill to our own pid; a handler is installed for `sig`.
    assert_eq!(unsafe { libc::kill(libc::getpid(), sig) }, 0);
}

/// Send `sig` to the process from another thread after `delay`, so the
/// receive is already waiting when it arrives.
fn signal_later(sig: libc::c_int, delay: Duration) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        std::thread::sleep(delay);
        kill_self(sig);
    })
}

async fn recv_within(interrupts: &AsyncInterrupts) -> Received {
    tokio::time::timeout(PROMPTLY, interrupts.recv())
        .await
        .expect("no signal within the bound")
        .expect("recv")
}

#[test]
fn recv_wakes_a_waiting_task_on_both_runtime_flavours() {
    let _serial = util::serial();
    for runtime in [current_thread(), multi_thread()] {
        let interrupts = events(Signal::User1);
        runtime.block_on(async {
            let interrupts = AsyncInterrupts::new(interrupts).unwrap();
            let sender = signal_later(libc::SIGUSR1, Duration::from_millis(50));
            let got = recv_within(&interrupts).await;
            assert_eq!((got.signal(), got.count()), (Signal::User1, 1));
            sender.join().unwrap();
            assert_eq!(interrupts.try_recv(), None);
        });
    }
}

#[test]
fn many_tasks_waiting_on_one_instance_each_signal_is_reported_once() {
    let _serial = util::serial();
    let interrupts = events(Signal::User2);
    multi_thread().block_on(async {
        let interrupts = Arc::new(AsyncInterrupts::new(interrupts).unwrap());
        let total = Arc::new(AtomicU64::new(0));
        let waiters: Vec<_> = (0..4)
            .map(|_| {
                let (interrupts, total) = (Arc::clone(&interrupts), Arc::clone(&total));
                tokio::spawn(async move {
                    let got = interrupts.recv().await.unwrap();
                    total.fetch_add(got.count(), Ordering::SeqCst);
                })
            })
            .collect();
        // One at a time, each after the previous one was reported, so
        // none coalesces with another.
        for sent in 1..=4u64 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            kill_self(libc::SIGUSR2);
            let deadline = Instant::now() + PROMPTLY;
            while total.load(Ordering::SeqCst) < sent {
                assert!(Instant::now() < deadline, "signal {sent} not received");
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        for waiter in waiters {
            tokio::time::timeout(PROMPTLY, waiter)
                .await
                .unwrap()
                .unwrap();
        }
        assert_eq!(total.load(Ordering::SeqCst), 4);
    });
}

/// Every delivery of the storm's signal, counted by an action of our own in
/// signal-hook's handler (which runs every registered action per delivery).
static DELIVERED: AtomicU64 = AtomicU64::new(0);

/// Storm the process with SIGUSR1 while receive futures are cancelled
/// mid-wait, then check that the receives reported every delivery.
fn storm_with_cancelled_receives(runtime: Runtime) {
    let _serial = util::serial();
    let interrupts = events(Signal::User1);
    DELIVERED.store(0, Ordering::SeqCst);
    // SAFETY: the action only increments an atomic: async-signal-safe, no
    // allocation, no panic.
    let counter = unsafe {
        signal_hook::low_level::register(libc::SIGUSR1, || {
            DELIVERED.fetch_add(1, Ordering::SeqCst);
        })
    }
    .unwrap();

    let (reported, cancelled) = util::within(PROMPTLY * 4, "storm", move || {
        runtime.block_on(async move {
            let interrupts = Arc::new(AsyncInterrupts::new(interrupts).unwrap());
            let reported = Arc::new(AtomicU64::new(0));
            let cancelled = Arc::new(AtomicU64::new(0));
            let stop = Arc::new(AtomicBool::new(false));
            let receivers: Vec<_> = (0..4u64)
                .map(|task| {
                    let interrupts = Arc::clone(&interrupts);
                    let (reported, cancelled) = (Arc::clone(&reported), Arc::clone(&cancelled));
                    let stop = Arc::clone(&stop);
                    tokio::spawn(async move {
                        let mut round = task;
                        while !stop.load(Ordering::SeqCst) {
                            round += 1;
                            let got = match round % 3 {
                                // Polled once (it registers its interest),
                                // then dropped unless already ready.
                                0 => tokio::select! {
                                    biased;
                                    got = interrupts.recv() => Some(got),
                                    () = std::future::ready(()) => None,
                                },
                                // Dropped by a timeout of a few microseconds.
                                1 => {
                                    let wait = Duration::from_micros(5 + round % 200);
                                    tokio::time::timeout(wait, interrupts.recv()).await.ok()
                                }
                                // Dropped when another branch wins a race.
                                _ => tokio::select! {
                                    got = interrupts.recv() => Some(got),
                                    () = tokio::task::yield_now() => None,
                                },
                            };
                            match got {
                                Some(got) => {
                                    let got = got.expect("recv");
                                    reported.fetch_add(got.count(), Ordering::SeqCst);
                                }
                                None => {
                                    cancelled.fetch_add(1, Ordering::SeqCst);
                                    tokio::task::yield_now().await;
                                }
                            }
                        }
                    })
                })
                .collect();

            // The storm: SIGUSR1 blocked on its own thread, so each
            // delivery interrupts some other thread (a runtime worker, the
            // harness); bounded in time and count.
            let storm = std::thread::spawn(|| {
                util::block_by_hand(&[libc::SIGUSR1], libc::SIG_BLOCK);
                let mut deadline = util::Deadline::new(Duration::from_secs(2), 20_000);
                let mut sent = 0u64;
                while deadline.tick() {
                    kill_self(libc::SIGUSR1);
                    sent += 1;
                    if sent.is_multiple_of(8) {
                        std::thread::yield_now();
                    }
                }
                sent
            });
            let sent = tokio::task::spawn_blocking(move || storm.join().unwrap())
                .await
                .unwrap();

            // Pending deliveries have landed once the count stops moving;
            // then every one must be reported, with futures still being
            // cancelled all along.
            let deadline = Instant::now() + PROMPTLY;
            loop {
                let delivered = DELIVERED.load(Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                if reported.load(Ordering::SeqCst) == delivered
                    && DELIVERED.load(Ordering::SeqCst) == delivered
                {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "reported {} of {} deliveries ({sent} sent)",
                    reported.load(Ordering::SeqCst),
                    DELIVERED.load(Ordering::SeqCst)
                );
            }
            stop.store(true, Ordering::SeqCst);
            for receiver in receivers {
                tokio::time::timeout(PROMPTLY, receiver)
                    .await
                    .unwrap()
                    .unwrap();
            }
            eprintln!(
                "storm: {sent} sent, {} delivered, {} reported, {} receives cancelled",
                DELIVERED.load(Ordering::SeqCst),
                reported.load(Ordering::SeqCst),
                cancelled.load(Ordering::SeqCst)
            );
            // No wake-up was lost either: the next signal still wakes a
            // fresh receive.
            let sender = signal_later(libc::SIGUSR1, Duration::from_millis(20));
            let got = recv_within(&interrupts).await;
            assert_eq!(got.count(), 1);
            sender.join().unwrap();
            (
                reported.load(Ordering::SeqCst),
                cancelled.load(Ordering::SeqCst),
            )
        })
    });
    signal_hook::low_level::unregister(counter);
    assert_eq!(reported, DELIVERED.load(Ordering::SeqCst) - 1);
    assert!(
        reported >= 100,
        "the storm delivered too little: {reported}"
    );
    assert!(
        cancelled >= 100,
        "too few receives were cancelled: {cancelled}"
    );
}

#[test]
fn cancelled_receives_lose_no_count_under_a_storm_on_a_multi_thread_runtime() {
    storm_with_cancelled_receives(multi_thread());
}

#[test]
fn cancelled_receives_lose_no_count_under_a_storm_on_a_current_thread_runtime() {
    storm_with_cancelled_receives(current_thread());
}

#[test]
fn every_signal_wakes_a_waiting_receive_wherever_it_lands_around_the_drain() {
    let _serial = util::serial();
    let interrupts = events(Signal::User2);
    let rounds = 300u64;
    // A sender thread that, on each request, waits a varying few
    // microseconds and sends one signal: some land before the receive
    // waits, some while it drains, some while it is parked.
    let (go, requests) = std::sync::mpsc::channel::<u64>();
    let sender = std::thread::spawn(move || {
        while let Ok(round) = requests.recv() {
            let until = Instant::now() + Duration::from_micros(round * 7 % 300);
            while Instant::now() < until {
                std::hint::spin_loop();
            }
            kill_self(libc::SIGUSR2);
        }
    });
    multi_thread().block_on(async {
        let interrupts = AsyncInterrupts::new(interrupts).unwrap();
        let mut reported = 0;
        for round in 0..rounds {
            go.send(round).unwrap();
            // One signal per round, and each is reported before the next is
            // sent, so none coalesces: a lost wake-up hangs here.
            reported += recv_within(&interrupts).await.count();
        }
        assert_eq!(reported, rounds);
    });
    drop(go);
    sender.join().unwrap();
}

#[test]
fn poll_recv_drives_a_hand_written_future() {
    let _serial = util::serial();
    let interrupts = events(Signal::User2);
    current_thread().block_on(async {
        let interrupts = AsyncInterrupts::new(interrupts).unwrap();
        let sender = signal_later(libc::SIGUSR2, Duration::from_millis(50));
        let got = tokio::time::timeout(PROMPTLY, poll_fn(|cx| interrupts.poll_recv(cx)))
            .await
            .expect("woken")
            .unwrap();
        assert_eq!(got.signal(), Signal::User2);
        sender.join().unwrap();
    });
}

#[test]
fn new_outside_a_runtime_is_an_error_not_a_panic() {
    let _serial = util::serial();
    let error = AsyncInterrupts::new(events(Signal::User1)).unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::Other);
    assert!(
        error.to_string().contains("inside a tokio runtime"),
        "{error}"
    );
}

#[test]
fn into_inner_keeps_what_is_pending_for_the_blocking_receives() {
    let _serial = util::serial();
    let interrupts = events(Signal::User1);
    let interrupts = current_thread().block_on(async {
        let interrupts = AsyncInterrupts::new(interrupts).unwrap();
        util::raise(libc::SIGUSR1);
        util::raise(libc::SIGUSR1);
        interrupts.into_inner()
    });
    let got = interrupts.recv_timeout(PROMPTLY).unwrap().expect("pending");
    assert_eq!(got.count(), 2);
}

#[test]
fn recv_fails_at_once_when_a_handled_signal_can_no_longer_arrive() {
    let _serial = util::serial();
    let interrupts = events(Signal::Alarm);
    current_thread().block_on(async {
        let interrupts = AsyncInterrupts::new(interrupts).unwrap();
        // Other code takes SIGALRM over with SIG_IGN.
        // SAFETY: SIG_IGN is a valid disposition for SIGALRM.
        let old = unsafe { libc::signal(libc::SIGALRM, libc::SIG_IGN) };
        let result = tokio::time::timeout(PROMPTLY, interrupts.recv()).await;
        // SAFETY: puts signal-hook's handler back.
        unsafe { libc::signal(libc::SIGALRM, old) };
        let error = result.expect("an error, not a wait").unwrap_err();
        assert!(error.to_string().starts_with("SIGALRM"), "{error}");
        // Handler restored: the receive waits again.
        let waited = tokio::time::timeout(Duration::from_millis(50), interrupts.recv()).await;
        assert!(waited.is_err(), "{waited:?}");
    });
}

#[test]
fn recv_on_an_instance_that_handles_no_signal_fails_at_once() {
    let _serial = util::serial();
    // Ignored when this crate first looks at it (no other test of this
    // binary touches SIGHUP), so it stays ignored: nothing can arrive.
    // SAFETY: SIG_IGN is a valid disposition for SIGHUP.
    unsafe { libc::signal(libc::SIGHUP, libc::SIG_IGN) };
    let interrupts = Interrupts::builder(Signal::Hangup).install().unwrap();
    assert_eq!(interrupts.ignored().collect::<Vec<_>>(), [Signal::Hangup]);
    current_thread().block_on(async {
        let interrupts = AsyncInterrupts::new(interrupts).unwrap();
        let result = tokio::time::timeout(PROMPTLY, interrupts.recv()).await;
        let error = result.expect("an error, not a wait").unwrap_err();
        assert!(error.to_string().contains("handles no signal"), "{error}");
        let error = poll_fn(|cx| interrupts.poll_recv(cx)).await.unwrap_err();
        assert!(error.to_string().contains("handles no signal"), "{error}");
    });
}

/// A fork child shares the runtime's epoll instance with the parent: an
/// inherited `AsyncInterrupts` dropped (or taken apart with `into_inner`)
/// there must not deregister the parent's pipe, or the parent's receives
/// never wake again.
#[test]
fn a_fork_child_dropping_its_inherited_instance_leaves_the_parent_receiving() {
    let _serial = util::serial();
    for into_inner in [false, true] {
        current_thread().block_on(async {
            let interrupts = AsyncInterrupts::new(events(Signal::User1)).unwrap();
            // A receive that waits once, so the pipe is armed in epoll.
            let waited = tokio::time::timeout(Duration::from_millis(20), interrupts.recv()).await;
            assert!(waited.is_err(), "nothing was sent yet");
            let slot = std::cell::RefCell::new(Some(interrupts));
            let code = util::in_fork(PROMPTLY, || {
                // Not async-signal-safe, but this runtime's driver is only
                // ever used by the forking thread, so no lock is held.
                let inherited = slot.borrow_mut().take().unwrap();
                if into_inner {
                    drop(inherited.into_inner());
                } else {
                    drop(inherited);
                }
                0
            });
            assert_eq!(code, 0);
            let interrupts = slot.into_inner().unwrap();
            let sender = signal_later(libc::SIGUSR1, Duration::from_millis(20));
            let got = tokio::time::timeout(Duration::from_secs(5), interrupts.recv()).await;
            sender.join().unwrap();
            let got = got.unwrap_or_else(|_| {
                panic!(
                    "the parent's recv never woke after the child's {}",
                    if into_inner { "into_inner" } else { "drop" }
                )
            });
            assert_eq!(got.unwrap().signal(), Signal::User1);
        });
    }
}

// ---------------------------------------------------------------------------
// Issue 18: a close handle ends the receives; a gone runtime says so
// ---------------------------------------------------------------------------

/// A `CloseHandle` closed from another thread releases every task waiting in
/// `recv` (two here: the close's wake-up must reach both) with a
/// `BrokenPipe` error, and later `recv`/`poll_recv` fail at once.
#[test]
fn a_close_handle_releases_waiting_receives_and_later_ones_fail_at_once() {
    let _serial = util::serial();
    for runtime in [current_thread(), multi_thread()] {
        let interrupts = events(Signal::User1);
        runtime.block_on(async {
            let interrupts = Arc::new(AsyncInterrupts::new(interrupts).unwrap());
            let close = interrupts.get_ref().close_handle();
            let waiting: Vec<_> = (0..2)
                .map(|_| {
                    let interrupts = Arc::clone(&interrupts);
                    tokio::spawn(async move { interrupts.recv().await })
                })
                .collect();
            // Let both tasks reach their await (a close before that is
            // reported at once too; this checks the wake-up).
            tokio::time::sleep(Duration::from_millis(50)).await;
            assert!(waiting.iter().all(|task| !task.is_finished()));
            std::thread::spawn(move || close.close()).join().unwrap();
            for task in waiting {
                let result = tokio::time::timeout(PROMPTLY, task)
                    .await
                    .expect("close did not release a waiting recv")
                    .unwrap();
                let error = result.unwrap_err();
                assert_eq!(error.kind(), io::ErrorKind::BrokenPipe, "{error}");
                assert!(
                    error.to_string().starts_with("AsyncInterrupts::recv: "),
                    "{error}"
                );
            }
            let later = tokio::time::timeout(PROMPTLY, interrupts.recv()).await;
            assert_eq!(
                later.expect("not at once").unwrap_err().kind(),
                io::ErrorKind::BrokenPipe
            );
            let polled = poll_fn(|cx| interrupts.poll_recv(cx)).await;
            assert_eq!(polled.unwrap_err().kind(), io::ErrorKind::BrokenPipe);
            assert_eq!(interrupts.try_recv(), None);
        });
    }
}

/// Awaited from a healthy runtime after the runtime it was registered with
/// was dropped, `recv` says so (and what to do) instead of tokio's "A Tokio
/// 1.x context was found, but it is being shutdown", keeps tokio's error as
/// the source, and does not panic; `into_inner` then `new` in the running
/// runtime receives again, pending signals kept.
#[test]
fn recv_after_its_runtime_was_dropped_says_the_runtime_is_gone() {
    let _serial = util::serial();
    let first = current_thread();
    let interrupts = first.block_on(async { AsyncInterrupts::new(events(Signal::User1)).unwrap() });
    drop(first);
    util::raise(libc::SIGUSR1); // pending: reported by the instance made anew
    current_thread().block_on(async {
        // A pending signal is reported at once, without the reactor.
        let got = interrupts
            .recv()
            .await
            .expect("a pending signal needs no reactor");
        assert_eq!(got.signal(), Signal::User1);
        let result = tokio::time::timeout(PROMPTLY, interrupts.recv()).await;
        let error = result.expect("an error, not a wait").unwrap_err();
        let message = error.to_string();
        for fact in [
            "AsyncInterrupts::recv",
            "runtime this AsyncInterrupts was registered with",
            "is gone",
            "make a new AsyncInterrupts in the running runtime",
        ] {
            assert!(message.contains(fact), "{fact:?} missing: {message}");
        }
        let source = std::error::Error::source(&error).expect("tokio's error as the source");
        assert!(source.to_string().contains("shut"), "{source}");

        let interrupts = AsyncInterrupts::new(interrupts.into_inner()).unwrap();
        util::raise(libc::SIGUSR1);
        assert_eq!(recv_within(&interrupts).await.signal(), Signal::User1);
    });
}
