//! Bulk operations over many tracked descriptors.
//!
//! - `close_all/{1000,10000}/{contiguous,scattered}`: `FdTable::close_all`
//!   over tracked `OwnedFd`s (kind `Unknown`: a `shutdown` probe, then the
//!   `dup3`) against a `close(2)` loop over the same numbers and, where the
//!   numbers are contiguous, one `close_range(2)`. "Scattered" leaves every
//!   third number of the range unopened.
//! - `retire/10000/{close_all_files,dup3_loop}`: `close_all` over 10 000
//!   tracked `File`s (kind `NotSocket`: no probe) against its floor, a loop
//!   of `dup3(placeholder, fd)` over 10 000 live descriptors (the numbers
//!   must stay reserved, so a swap per descriptor is the least it can do).
//! - `for_each/10000`: one walk over 10 000 entries with an empty callback;
//!   divide by 10 000 for the per-entry cost.
//!
//! `cargo bench --bench bulk`

use std::fs::File;
use std::hint::black_box;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use fdtable::{FdTable, Trackable};

#[path = "util/mod.rs"]
mod util;

static TABLE: FdTable = FdTable::new();

/// `n` descriptors on `/dev/null` from number 1024 up: contiguous, or
/// `scattered` (every third number left unopened, a hole the walks must skip).
fn open_set(n: usize, scattered: bool) -> Vec<OwnedFd> {
    let null = File::open("/dev/null").expect("open /dev/null");
    let mut fds = Vec::with_capacity(n);
    let mut target: RawFd = 1024;
    while fds.len() < n {
        if scattered && target % 3 == 2 {
            target += 1;
            continue;
        }
        // `target` is above every number this process uses, so dup3 takes
        // a free number; the result is new and ours.
        let fd = util::dup_cloexec_at(null.as_raw_fd(), target);
        assert_eq!(fd, target, "dup3: {}", std::io::Error::last_os_error());
        // SAFETY: as above.
        fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
        target += 1;
    }
    fds
}

/// `close_all` over `n` fresh descriptors tracked as `T` (`OwnedFd`, or
/// `File` for the file-kind path).
fn time_close_all<T: Trackable + From<OwnedFd>>(iters: u64, n: usize, scattered: bool) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let handles: Vec<_> = open_set(n, scattered)
            .into_iter()
            .map(|fd| TABLE.track(T::from(fd)).expect("track"))
            .collect();
        let start = Instant::now();
        let report = black_box(TABLE.close_all());
        total += start.elapsed();
        assert_eq!(report.released(), n);
        drop(handles);
    }
    total
}

fn time_close_loop(iters: u64, n: usize, scattered: bool) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let fds = open_set(n, scattered);
        let raw: Vec<RawFd> = fds.into_iter().map(IntoRawFd::into_raw_fd).collect();
        let start = Instant::now();
        for fd in &raw {
            // SAFETY: we own every number in `raw`.
            unsafe { libc::close(*fd) };
        }
        total += start.elapsed();
    }
    total
}

#[cfg(target_os = "linux")]
fn time_close_range(iters: u64, n: usize) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let fds = open_set(n, false);
        let raw: Vec<RawFd> = fds.into_iter().map(IntoRawFd::into_raw_fd).collect();
        let (lo, hi) = (raw[0], raw[n - 1]);
        assert_eq!((hi - lo) as usize, n - 1, "expected a contiguous run");
        let start = Instant::now();
        // SAFETY: we own every number in lo..=hi.
        let rc = unsafe { libc::syscall(libc::SYS_close_range, lo as u32, hi as u32, 0u32) };
        total += start.elapsed();
        assert_eq!(rc, 0, "close_range: {}", std::io::Error::last_os_error());
    }
    total
}

/// A dead placeholder like the crate's: on Linux an `O_PATH` descriptor of
/// a pipe whose ends are then closed, elsewhere the read end of such a pipe.
fn open_placeholder() -> OwnedFd {
    let mut fds = [-1; 2];
    // SAFETY: a valid two-element out-array.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0, "pipe");
    // SAFETY: just created, ours.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(write);
    #[cfg(target_os = "linux")]
    {
        let path = std::ffi::CString::new(format!("/proc/self/fd/{}", read.as_raw_fd())).unwrap();
        // SAFETY: a C string and flags.
        let fd = unsafe { libc::open(path.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
        assert!(
            fd >= 0,
            "open placeholder: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: just opened, ours.
        unsafe { OwnedFd::from_raw_fd(fd) }
    }
    #[cfg(not(target_os = "linux"))]
    read
}

/// What `close_all` does per descriptor at the least: `dup3` of the
/// placeholder over it, or on Apple systems (no `dup3`) `dup2` and
/// `fcntl(F_SETFD)`, as the crate does there.
#[inline(always)]
fn swap_in(placeholder: RawFd, fd: RawFd) -> libc::c_int {
    // SAFETY: `fd` is ours and stays open (now naming the placeholder's
    // file); the call only replaces what it refers to.
    #[cfg(not(target_vendor = "apple"))]
    let rc = unsafe { libc::dup3(placeholder, fd, libc::O_CLOEXEC) };
    // SAFETY: as above, in two steps.
    #[cfg(target_vendor = "apple")]
    let rc = unsafe {
        libc::dup2(placeholder, fd);
        libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC)
    };
    rc
}

fn time_dup3_loop(iters: u64, n: usize) -> Duration {
    let placeholder = open_placeholder();
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let fds = open_set(n, false);
        let start = Instant::now();
        for fd in &fds {
            black_box(swap_in(placeholder.as_raw_fd(), fd.as_raw_fd()));
        }
        total += start.elapsed();
        drop(fds);
    }
    total
}

fn retire(c: &mut Criterion) {
    util::raise_nofile();
    let mut group = c.benchmark_group("retire");
    group.sample_size(20);
    let n = 10_000;
    // The floor first: on a shared machine the first function of a group
    // tends to run in slightly different conditions; the floor should not
    // be the one that benefits.
    group.bench_function(BenchmarkId::new("dup3_loop", n), |b| {
        b.iter_custom(|iters| time_dup3_loop(iters, n))
    });
    group.bench_function(BenchmarkId::new("close_all_files", n), |b| {
        b.iter_custom(|iters| time_close_all::<File>(iters, n, false))
    });
    group.finish();
}

fn close_all(c: &mut Criterion) {
    util::raise_nofile();
    let mut group = c.benchmark_group("close_all");
    group.sample_size(20);
    for n in [1_000usize, 10_000] {
        for scattered in [false, true] {
            let layout = if scattered { "scattered" } else { "contiguous" };
            let id = format!("{n}/{layout}");
            group.bench_function(BenchmarkId::new("close_all", &id), |b| {
                b.iter_custom(|iters| time_close_all::<OwnedFd>(iters, n, scattered))
            });
            group.bench_function(BenchmarkId::new("close_loop", &id), |b| {
                b.iter_custom(|iters| time_close_loop(iters, n, scattered))
            });
            #[cfg(target_os = "linux")]
            if !scattered {
                group.bench_function(BenchmarkId::new("close_range", &id), |b| {
                    b.iter_custom(|iters| time_close_range(iters, n))
                });
            }
        }
    }
    group.finish();
}

fn for_each(c: &mut Criterion) {
    util::raise_nofile();
    let fds = open_set(10_000, false);
    let handles: Vec<_> = fds
        .into_iter()
        .map(|fd| TABLE.track(fd).expect("track"))
        .collect();
    let mut group = c.benchmark_group("for_each");
    group.bench_function("10000_entries", |b| {
        b.iter(|| {
            let mut count = 0usize;
            TABLE.for_each(|fd| count += black_box(fd.as_raw_fd()) as usize & 1);
            count
        })
    });
    group.finish();
    drop(handles);
}

criterion_group!(benches, retire, close_all, for_each);
criterion_main!(benches);
