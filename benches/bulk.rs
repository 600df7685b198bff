//! Bulk operations over many tracked descriptors.
//!
//! - `close_all/{1000,10000}/{contiguous,scattered}`: `FdTable::close_all`
//!   (timed) against a `close(2)` loop over the same numbers and, where the
//!   numbers are contiguous, one `close_range(2)`. "Scattered" leaves every
//!   third number of the range unopened.
//! - `for_each/10000`: one walk over 10 000 entries with an empty callback;
//!   divide by 10 000 for the per-entry cost.
//!
//! `cargo bench --bench bulk`

use std::fs::File;
use std::hint::black_box;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use fdtable::FdTable;

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
        // SAFETY: `target` is above every number this process uses, so
        // dup3 takes a free number; the result is new and ours.
        let fd = unsafe { libc::dup3(null.as_raw_fd(), target, libc::O_CLOEXEC) };
        assert!(fd >= 0, "dup3: {}", std::io::Error::last_os_error());
        // SAFETY: as above.
        fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
        target += 1;
    }
    fds
}

fn time_close_all(iters: u64, n: usize, scattered: bool) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let fds = open_set(n, scattered);
        let handles: Vec<_> = fds
            .into_iter()
            .map(|fd| TABLE.track(fd).expect("track"))
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

fn close_all(c: &mut Criterion) {
    util::raise_nofile();
    let mut group = c.benchmark_group("close_all");
    group.sample_size(20);
    for n in [1_000usize, 10_000] {
        for scattered in [false, true] {
            let layout = if scattered { "scattered" } else { "contiguous" };
            let id = format!("{n}/{layout}");
            group.bench_function(BenchmarkId::new("close_all", &id), |b| {
                b.iter_custom(|iters| time_close_all(iters, n, scattered))
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

criterion_group!(benches, close_all, for_each);
criterion_main!(benches);
