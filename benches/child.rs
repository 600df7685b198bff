//! The fork-child path against the floor: `close_all_in_child` over 10 000
//! contiguous tracked descriptors versus one raw `close_range(2)` over the
//! same numbers (and, for reference, the `close(2)` fallback).
//!
//! Each iteration forks; the child inherits the 10 000 descriptors, times
//! only the close with `clock_gettime(CLOCK_MONOTONIC)`, and sends the
//! elapsed nanoseconds back through a pipe. Fork and wait are not measured.
//!
//! ```text
//! cargo bench --bench child -- --warm-up-time 1 --measurement-time 2
//! ```

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use fdtable::{force_close_fallback, FdTable, Tracked};

const COUNT: RawFd = 10_000;
/// First number of the contiguous block; well above anything the harness
/// opens, below RLIMIT_NOFILE (20 000 on the CI).
const BASE: RawFd = 4_096;

static TABLE: FdTable = FdTable::new();

/// Raise the soft descriptor limit to the hard one.
fn raise_nofile_limit() {
    // SAFETY: get/setrlimit with a valid out/in pointer.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Track `/dev/null` at exactly `BASE..BASE + COUNT`.
fn populate() -> Vec<Tracked<'static, OwnedFd>> {
    raise_nofile_limit();
    let null = std::fs::File::open("/dev/null").expect("open /dev/null");
    (BASE..BASE + COUNT)
        .map(|n| {
            // SAFETY: F_DUPFD_CLOEXEC returns a fresh descriptor >= n.
            let fd = unsafe { libc::fcntl(null.as_raw_fd(), libc::F_DUPFD_CLOEXEC, n) };
            assert_eq!(fd, n, "descriptor {n} is busy or over RLIMIT_NOFILE");
            // SAFETY: just created; we own it.
            TABLE
                .track(unsafe { OwnedFd::from_raw_fd(fd) })
                .expect("track")
        })
        .collect()
}

/// Nanoseconds on the monotonic clock. Async-signal-safe.
fn now_ns() -> u64 {
    // SAFETY: all-zero timespec is valid; clock_gettime fills it.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: valid out pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Fork; in the child time `work` and write the nanoseconds to a pipe.
fn time_in_child(work: fn()) -> Duration {
    let mut fds = [0; 2];
    // SAFETY: valid out array of two ints.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // Keep the pipe ends clear of the measured block.
    assert!(fds[1] < BASE, "pipe landed in the block");
    // SAFETY: the child only calls async-signal-safe functions and `_exit`s.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let start = now_ns();
        work();
        let ns = (now_ns() - start).to_ne_bytes();
        // SAFETY: writing a local buffer to our pipe, then leaving.
        unsafe {
            libc::write(fds[1], ns.as_ptr().cast(), ns.len());
            libc::_exit(0);
        }
    }
    let mut buf = [0u8; 8];
    // SAFETY: closing our copy of the write end; reading into a local buffer;
    // reaping our child.
    unsafe {
        libc::close(fds[1]);
        let n = libc::read(fds[0], buf.as_mut_ptr().cast(), buf.len());
        libc::close(fds[0]);
        let mut status = 0;
        libc::waitpid(pid, &mut status, 0);
        assert_eq!(n, 8, "child reported nothing");
    }
    Duration::from_nanos(u64::from_ne_bytes(buf))
}

fn table_close_all_in_child() {
    // SAFETY: runs in the fork child only, which exits right after.
    let closed = unsafe { TABLE.close_all_in_child() };
    assert_eq!(closed, COUNT as usize);
}

fn raw_close_range() {
    // SAFETY: the child owns (copies of) exactly these descriptors.
    let r = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            BASE as libc::c_uint,
            (BASE + COUNT - 1) as libc::c_uint,
            0 as libc::c_uint,
        )
    };
    assert_eq!(r, 0);
}

fn bench(c: &mut Criterion) {
    let tracked = populate();
    let mut group = c.benchmark_group("child_close_10000");
    let mut run = |name: &str, fallback: bool, work: fn()| {
        force_close_fallback(fallback);
        group.bench_function(name, |b| {
            b.iter_custom(|iters| (0..iters).map(|_| time_in_child(work)).sum())
        });
        force_close_fallback(false);
    };
    run("close_all_in_child", false, table_close_all_in_child);
    run("raw_close_range", false, raw_close_range);
    run(
        "close_all_in_child_close_fallback",
        true,
        table_close_all_in_child,
    );
    group.finish();
    drop(tracked);
}

criterion_group! {
    name = benches;
    // Every iteration is a fork: keep the sample count small.
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
