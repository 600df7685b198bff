//! The track path: `track` of a descriptor that already has `FD_CLOEXEC`
//! (one `fcntl`) and of one that does not (two), against the bare `fcntl`
//! calls. The descriptors are opened in setup; each timed `track` is
//! followed by an untimed `into_inner` + close.
//!
//! `cargo bench --bench track`

use std::fs::File;
use std::hint::black_box;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use fdtable::FdTable;

static TABLE: FdTable = FdTable::new();

fn open_null(cloexec: bool) -> OwnedFd {
    let fd = File::open("/dev/null").expect("open").into_raw_fd();
    if !cloexec {
        // SAFETY: our own descriptor; clearing a flag.
        unsafe { libc::fcntl(fd, libc::F_SETFD, 0) };
    }
    // SAFETY: we own `fd`.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

fn bench_track(iters: u64, cloexec: bool) -> Duration {
    const BATCH: u64 = 512;
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(BATCH);
        let inputs: Vec<OwnedFd> = (0..n).map(|_| open_null(cloexec)).collect();
        let mut handles = Vec::with_capacity(n as usize);
        let start = Instant::now();
        for fd in inputs {
            handles.push(black_box(TABLE.track(fd).expect("track")));
        }
        total += start.elapsed();
        for h in handles {
            drop(h.into_inner());
        }
        left -= n;
    }
    total
}

fn bench_fcntl(iters: u64, cloexec: bool) -> Duration {
    let fds: Vec<OwnedFd> = (0..512).map(|_| open_null(cloexec)).collect();
    let start = Instant::now();
    for i in 0..iters {
        let fd = fds[(i % 512) as usize].as_raw_fd();
        // SAFETY: querying our own open descriptor.
        let flags = unsafe { libc::fcntl(black_box(fd), libc::F_GETFD) };
        if !cloexec {
            // SAFETY: as above; the flag is cleared again so every round pays.
            unsafe {
                libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
                libc::fcntl(fd, libc::F_SETFD, flags);
            }
        }
    }
    start.elapsed()
}

fn track_path(c: &mut Criterion) {
    let mut group = c.benchmark_group("track");
    group.bench_function("bare_getfd", |b| b.iter_custom(|n| bench_fcntl(n, true)));
    group.bench_function("track_cloexec_already_set", |b| {
        b.iter_custom(|n| bench_track(n, true))
    });
    group.bench_function("track_cloexec_missing", |b| {
        b.iter_custom(|n| bench_track(n, false))
    });
    group.finish();
}

criterion_group!(benches, track_path);
criterion_main!(benches);
