//! A delivery that lands while an `Interrupts` is being installed or dropped
//! (review finding 5): it must never arm the process with no instance to
//! see the event, and during the drop of the last instance it must get the
//! default action, not be swallowed.
//!
//! The windows are a few instructions wide, so instead of hoping a storm
//! hits them this binary's global allocator raises SIGUSR1 at its k-th call
//! (allocation or deallocation) on the thread under test, for every k in
//! turn. `install` and `drop` allocate inside signal-hook's registry (its
//! copy-on-write action map, published between an allocation and a
//! deallocation) and around the instance itself, so every k lands the
//! signal at another point of the sequence, deterministically.
//!
//! Runs in helper processes (this binary re-executed, single-threaded):
//! a delivery at the wrong point may end the process.

mod util;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, Ordering};
use std::time::Duration;

use fdtable::{Interrupts, Signal};
use util::{assert_lines, say, ChildEnd};

const HELPER_ENV: &str = "FDTABLE_RACES_HELPER";
const PROMPTLY: Duration = Duration::from_secs(120);
/// More allocator calls than one install or drop makes.
const MAX_POINTS: u32 = 500;

/// Raises SIGUSR1 at the k-th allocator call of the armed thread.
struct RaisingAllocator;

/// Allocator calls left before the raise; 0: off.
static COUNTDOWN: AtomicU32 = AtomicU32::new(0);
/// The thread whose calls count (`util::thread_id`: `gettid` on Linux).
static TARGET: AtomicI64 = AtomicI64::new(0);
static FIRED: AtomicBool = AtomicBool::new(false);

fn tick() {
    if COUNTDOWN.load(Ordering::SeqCst) == 0 {
        return;
    }
    if util::thread_id() != TARGET.load(Ordering::SeqCst) {
        return;
    }
    if COUNTDOWN.fetch_sub(1, Ordering::SeqCst) == 1 {
        FIRED.store(true, Ordering::SeqCst);
        // SAFETY: raise has no preconditions. The handler (signal-hook's,
        // running this crate's actions) neither allocates nor locks, so
        // running it inside the allocator is fine.
        unsafe { libc::raise(libc::SIGUSR1) };
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments;
// `tick` allocates nothing.
unsafe impl GlobalAlloc for RaisingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        tick();
        // SAFETY: forwarded as received.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        tick();
        // SAFETY: forwarded as received.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        tick();
        // SAFETY: forwarded as received.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as received.
        unsafe { System.dealloc(ptr, layout) };
        tick();
    }
}

#[global_allocator]
static ALLOCATOR: RaisingAllocator = RaisingAllocator;

/// Raise SIGUSR1 at the `k`-th allocator call of this thread from now on.
fn raise_at(k: u32) {
    TARGET.store(util::thread_id(), Ordering::SeqCst);
    FIRED.store(false, Ordering::SeqCst);
    COUNTDOWN.store(k, Ordering::SeqCst);
}

/// Stop counting; whether the raise happened.
fn stop() -> bool {
    COUNTDOWN.store(0, Ordering::SeqCst);
    FIRED.load(Ordering::SeqCst)
}

/// Runs only in a helper process; a no-op in the test run itself.
#[test]
fn helper_process() {
    let Ok(mode) = std::env::var(HELPER_ENV) else {
        return;
    };
    match mode.as_str() {
        "install" => helper_install(),
        "drop" => helper_drop(),
        _ => panic!("unknown helper mode {mode}"),
    }
    std::process::exit(0);
}

fn helper_install() {
    let install = || {
        Interrupts::builder(Signal::User1)
            .default_after_drop(false)
            .install()
            .unwrap()
    };
    // The process's first instance registers the fallback and makes the
    // record this process's; idle, SIGUSR1 is then simply not handled.
    drop(install());
    let mut points = 0;
    let mut armed_unseen = Vec::new();
    for k in 1..=MAX_POINTS {
        raise_at(k);
        let interrupts = install();
        if !stop() {
            break; // `install` makes fewer than k allocator calls
        }
        points += 1;
        let seen = interrupts.try_recv().is_some();
        if Interrupts::is_armed() && !seen {
            armed_unseen.push(k);
        }
        Interrupts::disarm();
        drop(interrupts);
    }
    say(&format!("install: {} points", points.min(3)));
    say(&format!("install: armed unseen at {armed_unseen:?}"));
}

fn helper_drop() {
    // The parent registers the fallback once; each child inherits it.
    drop(Interrupts::builder(Signal::User1).install().unwrap());
    let mut died = 0;
    let mut survived = Vec::new();
    for k in 1..=MAX_POINTS {
        // SAFETY: this helper process is single-threaded, so the child may
        // allocate; it leaves with `_exit`.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork");
        if pid == 0 {
            // Every convention on: once the last instance is gone, SIGUSR1's
            // default action (terminate) applies.
            let interrupts = Interrupts::builder(Signal::User1).install().unwrap();
            raise_at(k);
            drop(interrupts);
            let code = if stop() { 0 } else { 10 };
            // SAFETY: ends the child.
            unsafe { libc::_exit(code) };
        }
        match util::wait_child(pid, PROMPTLY).unwrap() {
            ChildEnd::Exited(10) => break, // `drop` makes fewer than k calls
            ChildEnd::Exited(0) => survived.push(k),
            ChildEnd::Signaled(libc::SIGUSR1) => died += 1,
            other => panic!("k={k}: {other:?}"),
        }
    }
    say(&format!("drop: {} points", died.min(3)));
    say(&format!("drop: survived at {survived:?}"));
}

/// A SIGUSR1 raised at every allocator call of `install` in turn: none
/// leaves the process armed without the new instance having seen the
/// event (the instance's action is registered before it counts as live).
#[test]
fn a_delivery_during_install_never_arms_the_process_unseen() {
    let (status, lines) = util::run_helper(HELPER_ENV, "install", PROMPTLY);
    assert_lines(
        &lines,
        &["install: 3 points", "install: armed unseen at []"],
        &[],
    );
    assert!(status.success(), "{status:?} {lines:#?}");
}

/// A SIGUSR1 raised at every allocator call of the last instance's `drop`
/// in turn gets the default action every time: the instance stops
/// counting as live before its action goes away, so no delivery arms a
/// process that no instance handles any more.
#[test]
fn a_delivery_during_the_last_drop_gets_the_default_action() {
    let (status, lines) = util::run_helper(HELPER_ENV, "drop", PROMPTLY);
    assert_lines(&lines, &["drop: 3 points", "drop: survived at []"], &[]);
    assert!(status.success(), "{status:?} {lines:#?}");
}
