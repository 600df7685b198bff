//! The fork child path allocates nothing (hazard H6): a counting global
//! allocator, checked inside the child, reported through the exit code.
//!
//! In its own test binary so the counting allocator slows nothing else.

mod spawn_util;
mod util;

use std::alloc::{GlobalAlloc, Layout, System};
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use fdtable::{ChildFds, CommandExt, FdTable};
use spawn_util::channel_like_end;
use util::serial;

/// Counts every allocation and reallocation, from any thread.
struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to `System` unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::SeqCst);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::SeqCst);
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::SeqCst);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Fork, run `child` (async-signal-safe, allocates nothing, returns an exit
/// code), wait with a deadline. Returns the exit code.
fn in_fork(child: impl FnOnce() -> i32) -> i32 {
    util::in_fork(Duration::from_secs(20), child)
}

/// Track `n` descriptors in `table`, with gaps between runs.
fn populate(table: &'static FdTable, n: usize) -> Vec<fdtable::Tracked<'static, File>> {
    let mut spare = Vec::new();
    let mut tracked = Vec::new();
    for i in 0..n {
        let f = File::open("/dev/null").unwrap();
        if i % 7 == 3 {
            spare.push(f); // a gap: open but untracked
        } else {
            tracked.push(table.track(f).unwrap());
        }
    }
    tracked
}

#[test]
fn close_all_in_child_allocates_nothing_under_churn() {
    let _serial = serial();
    static TABLE: FdTable = FdTable::new();
    let tracked = populate(&TABLE, 64);
    let stop = AtomicBool::new(false);
    thread::scope(|s| {
        // Another thread allocates and mutates the table all along, so a
        // fork may land inside malloc or inside a table update.
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                let t = TABLE.track(File::open("/dev/null").unwrap()).unwrap();
                TABLE.for_each(|_| {});
                drop(t);
            }
        });
        let result = std::panic::catch_unwind(|| {
            for fallback in [false, true] {
                for i in 0..50 {
                    let code = in_fork(|| {
                        // The runtime fallback: close_range refused.
                        if fallback && !util::refuse_close_range(libc::ENOSYS) {
                            return 90;
                        }
                        let before = ALLOCS.load(Ordering::SeqCst);
                        // SAFETY: fork child; the table is not used afterwards.
                        let closed = unsafe { TABLE.close_all_in_child() };
                        let after = ALLOCS.load(Ordering::SeqCst);
                        if after != before {
                            2
                        } else if closed == 0 {
                            3
                        } else {
                            0
                        }
                    });
                    assert_eq!(
                        code, 0,
                        "fork {i} fallback={fallback}: 2 allocated, 3 closed none, 90 seccomp"
                    );
                }
            }
        });
        stop.store(true, Ordering::Relaxed);
        if let Err(panic) = result {
            std::panic::resume_unwind(panic);
        }
    });
    drop(tracked);
}

#[test]
fn retire_all_in_child_allocates_nothing() {
    let _serial = serial();
    static TABLE: FdTable = FdTable::new();
    let tracked = populate(&TABLE, 32);
    let keep = [tracked[0].as_raw_fd()];
    let code = in_fork(|| {
        let before = ALLOCS.load(Ordering::SeqCst);
        // SAFETY: fork child, single-threaded; nothing else uses TABLE.
        let released = unsafe { TABLE.retire_all_in_child(&keep) };
        let after = ALLOCS.load(Ordering::SeqCst);
        match released {
            _ if after != before => 2,
            Ok(n) if n == tracked.len() - 1 => 0,
            _ => 3,
        }
    });
    assert_eq!(code, 0, "2 allocated, 3 wrong count or error");
    drop(tracked);
}

/// How `command_hook_allocates_nothing_in_the_child` configures a command.
#[derive(Debug, Clone, Copy)]
enum Case {
    /// The tracked close, two tracked numbers kept at their own numbers.
    Keep,
    /// `pass_fd` twice (one onto a number the parent uses), `close_other_fds`
    /// and the tracked close.
    PassCloseOther,
    /// `pass_fd` onto numbers held by a close-on-exec `SOCK_SEQPACKET`
    /// socket (what std's exec-error channel looks like) and a pipe, and a
    /// hook-free `close_tracked_fds` before it.
    PassOntoSockets,
}

/// Seccomp rules for the fallbacks: none; `close_range` refused (the
/// tracked close uses `close(2)`, `close_other_fds` walks `/proc`); and
/// `/proc/self/fd` unopenable too (`close_other_fds` sweeps with `fcntl`).
/// Elsewhere (no seccomp): the system as it is.
#[cfg(not(target_os = "linux"))]
const WAYS: [&[spawn_util::Refuse]; 1] = [&[]];
/// See the other version.
#[cfg(target_os = "linux")]
const WAYS: [&[spawn_util::Refuse]; 3] = {
    use spawn_util::Refuse;
    [
        &[],
        &[Refuse::always(libc::SYS_close_range, libc::ENOSYS)],
        &[
            Refuse::always(libc::SYS_close_range, libc::ENOSYS),
            Refuse::when(libc::SYS_openat, 2, libc::O_DIRECTORY as u32, libc::EMFILE),
        ],
    ]
};

/// The `CommandExt` hook, measured from inside std's child: a `pre_exec`
/// hook before ours records the count, one after ours compares; a change
/// fails the spawn with an error the parent sees. Every setup, every way.
#[test]
fn command_hook_allocates_nothing_in_the_child() {
    use std::os::fd::AsFd;
    use std::os::unix::process::CommandExt as _;
    let _serial = serial();
    static TABLE: FdTable = FdTable::new();
    static BEFORE: AtomicUsize = AtomicUsize::new(0);
    let tracked = populate(&TABLE, 32);
    let keep = [tracked[1].as_raw_fd(), tracked[5].as_raw_fd()];
    let passed = File::open("/dev/null").unwrap();
    let socket = channel_like_end();
    let (pipe, _writer) = util::pipe();
    // A handler of this crate in place: the hook queries and resets it.
    let handled = fdtable::Interrupts::builder(fdtable::Signal::User2)
        .respect_ignored(false)
        .install()
        .unwrap();
    for case in [Case::Keep, Case::PassCloseOther, Case::PassOntoSockets] {
        for (way, rules) in WAYS.into_iter().enumerate() {
            let mut cmd = Command::new("true");
            spawn_util::refuse_in_child(&mut cmd, rules);
            // SAFETY: both hooks only load and compare atomics; the error
            // is built from a raw OS code, which allocates nothing.
            unsafe {
                cmd.pre_exec(|| {
                    BEFORE.store(ALLOCS.load(Ordering::SeqCst), Ordering::SeqCst);
                    Ok(())
                });
            }
            let fds = match case {
                Case::Keep => ChildFds::new()
                    .close_tracked_fds(&TABLE)
                    .pass_fd(tracked[1].as_fd(), keep[0])
                    .unwrap()
                    .pass_fd(tracked[5].as_fd(), keep[1])
                    .unwrap(),
                Case::PassCloseOther => ChildFds::new()
                    .pass_fd(passed.as_fd(), 3)
                    .unwrap()
                    .pass_fd(passed.as_fd(), keep[0])
                    .unwrap()
                    .close_other_fds()
                    .close_tracked_fds(&TABLE),
                Case::PassOntoSockets => {
                    cmd.close_tracked_fds(&TABLE);
                    ChildFds::new()
                        .pass_fd(passed.as_fd(), socket.as_raw_fd())
                        .unwrap()
                        .pass_fd(passed.as_fd(), pipe.as_raw_fd())
                        .unwrap()
                }
            };
            cmd.child_fds(fds);
            // SAFETY: as above.
            unsafe {
                cmd.pre_exec(|| {
                    if ALLOCS.load(Ordering::SeqCst) == BEFORE.load(Ordering::SeqCst) {
                        Ok(())
                    } else {
                        Err(io::Error::from_raw_os_error(libc::EDOM))
                    }
                });
            }
            let status = cmd
                .status()
                .unwrap_or_else(|e| panic!("{case:?}, way {way}: the hook allocated ({e})"));
            assert!(status.success(), "{case:?}, way {way}");
        }
    }
    drop((tracked, handled));
}
