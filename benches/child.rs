//! The fork-child path against its floors: `close_all_in_child` over 1 000
//! and 10 000 tracked descriptors, contiguous or scattered (every third
//! number of the range left unopened), versus a `close(2)` loop over the same
//! numbers and, for contiguous blocks, one raw `close_range(2)`; plus the
//! `close(2)` fallback of `close_all_in_child` itself (forced the only way the
//! crate allows: a seccomp filter in the child that refuses `close_range`).
//!
//! Each iteration forks; the child inherits the descriptors, times only the
//! close with `clock_gettime(CLOCK_MONOTONIC)`, and sends the elapsed
//! nanoseconds back through a pipe. Fork and wait are not measured.
//!
//! ```text
//! cargo bench --bench child -- --warm-up-time 1 --measurement-time 2
//! ```

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use fdtable::{FdTable, Tracked};

// The tests' helpers, for the seccomp filter that forces the fallback.
#[path = "../tests/util/mod.rs"]
mod test_util;

/// First number of every block; well above anything the harness opens, and
/// low enough that 10 000 scattered numbers (a 15 000-number range) stay
/// below RLIMIT_NOFILE (20 000 on the CI).
const BASE: RawFd = 4_096;

/// The layout in force, read by the child-side work functions.
static COUNT: AtomicI32 = AtomicI32::new(0);
static SCATTERED: AtomicBool = AtomicBool::new(false);

/// The numbers of the current layout, in ascending order.
fn numbers() -> impl Iterator<Item = RawFd> {
    let scattered = SCATTERED.load(Ordering::Relaxed);
    (BASE..)
        .filter(move |n| !scattered || n % 3 != 2)
        .take(COUNT.load(Ordering::Relaxed) as usize)
}

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

/// Track `/dev/null` at exactly the numbers of the current layout.
fn populate() -> Vec<Tracked<'static, OwnedFd>> {
    raise_nofile_limit();
    let null = std::fs::File::open("/dev/null").expect("open /dev/null");
    numbers()
        .map(|n| {
            // `n` is free (above everything else we open); dup3 makes a
            // fresh close-on-exec descriptor there, which we own.
            let fd = test_util::dup_cloexec_at(null.as_raw_fd(), n);
            assert_eq!(fd, n, "descriptor {n}: {}", std::io::Error::last_os_error());
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
/// With `fallback`, `close_range(2)` is refused in the child first.
fn time_in_child(work: fn(), fallback: bool) -> Duration {
    let mut fds = [0; 2];
    assert!(test_util::raw_pipe(&mut fds), "pipe");
    // Keep the pipe ends clear of the measured block.
    assert!(fds[1] < BASE, "pipe landed in the block");
    // SAFETY: the child only calls async-signal-safe functions and `_exit`s.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // The crate has no switch for its fallback: a seccomp filter that
        // makes `close_range(2)` fail as on a kernel without it forces it.
        // SAFETY: ends the child; the parent sees no report and panics.
        if fallback && !test_util::refuse_close_range(libc::ENOSYS) {
            unsafe { libc::_exit(90) };
        }
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
    assert_eq!(closed, COUNT.load(Ordering::Relaxed) as usize);
}

fn close_loop() {
    for fd in numbers() {
        // SAFETY: the child owns (copies of) exactly these descriptors.
        unsafe { libc::close(fd) };
    }
}

/// Linux's raw `close_range(2)`: the floor where the kernel has it.
#[cfg(target_os = "linux")]
fn raw_close_range() {
    let last = BASE + COUNT.load(Ordering::Relaxed) - 1;
    // SAFETY: the child owns (copies of) exactly these descriptors.
    let r = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            BASE as libc::c_uint,
            last as libc::c_uint,
            0 as libc::c_uint,
        )
    };
    assert_eq!(r, 0);
}

fn bench(c: &mut Criterion) {
    for (count, scattered) in [
        (1_000, false),
        (10_000, false),
        (1_000, true),
        (10_000, true),
    ] {
        COUNT.store(count, Ordering::Relaxed);
        SCATTERED.store(scattered, Ordering::Relaxed);
        let layout = if scattered { "scattered" } else { "contiguous" };
        let tracked = populate();
        let mut group = c.benchmark_group(format!("child_close_{count}_{layout}"));
        let mut run = |name: &str, fallback: bool, work: fn()| {
            group.bench_function(name, |b| {
                b.iter_custom(|iters| (0..iters).map(|_| time_in_child(work, fallback)).sum())
            });
        };
        run("close_all_in_child", false, table_close_all_in_child);
        run("close_loop", false, close_loop);
        #[cfg(target_os = "linux")]
        if !scattered {
            run("raw_close_range", false, raw_close_range);
        }
        run(
            "close_all_in_child_close_fallback",
            true,
            table_close_all_in_child,
        );
        group.finish();
        drop(tracked);
    }
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
