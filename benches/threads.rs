//! Throughput of `track` + drop from two threads at once against one thread,
//! and the same for a bare `close(2)` loop (the descriptors are opened in
//! setup; the kernel's own fd table is shared by all threads, so it bounds
//! what any user-space table can scale).
//!
//! Reported as the time for a fixed amount of work (`OPS` track/drop pairs
//! per thread); the two-thread variants do twice the total work, so
//! `speedup = 2 * t(one) / t(two)`.
//!
//! `cargo bench --bench threads`

use std::fs::File;
use std::hint::black_box;
use std::os::fd::{IntoRawFd, OwnedFd};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use fdtable::FdTable;

static TABLE: FdTable = FdTable::new();
const OPS: usize = 2_000;

fn null_fds(n: usize) -> Vec<OwnedFd> {
    (0..n)
        .map(|_| File::open("/dev/null").expect("open").into())
        .collect()
}

/// Each thread tracks and drops `OPS` pre-opened descriptors (the open is
/// setup; `track` + drop are timed), all threads starting together.
fn run(threads: usize, tracked: bool, iters: u64) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let sets: Vec<Vec<OwnedFd>> = (0..threads).map(|_| null_fds(OPS)).collect();
        let barrier = Barrier::new(threads + 1);
        let elapsed = std::thread::scope(|s| {
            for set in sets {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    for fd in set {
                        if tracked {
                            drop(black_box(TABLE.track(fd).expect("track")));
                        } else {
                            // SAFETY: `fd` is ours; closing it by hand.
                            unsafe { libc::close(black_box(fd.into_raw_fd())) };
                        }
                    }
                    barrier.wait();
                });
            }
            barrier.wait();
            let start = Instant::now();
            barrier.wait();
            start.elapsed()
        });
        total += elapsed;
    }
    total
}

fn threads(c: &mut Criterion) {
    let mut group = c.benchmark_group("track_drop_throughput");
    group.sample_size(30);
    for (name, threads, tracked) in [
        ("tracked/1_thread", 1, true),
        ("tracked/2_threads", 2, true),
        ("bare_close/1_thread", 1, false),
        ("bare_close/2_threads", 2, false),
    ] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| run(threads, tracked, iters))
        });
    }
    group.finish();
}

criterion_group!(benches, threads);
criterion_main!(benches);
