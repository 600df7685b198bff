//! The close path: what dropping a `Tracked` costs against its floor.
//!
//! Variants, each closing the last reference to a freshly opened `/dev/null`
//! (the open is setup, not timed):
//! - `bare_close`: `close(2)`;
//! - `close_plus_mask_pair`: `pthread_sigmask` block + `close(2)` + restore,
//!   the floor the contract sets for a masked close;
//! - `tracked_drop`: dropping a `Tracked<File>`.
//!
//! `cargo bench --bench close`; compare medians within one run.

use std::fs::File;
use std::hint::black_box;
use std::mem::MaybeUninit;
use std::os::fd::{IntoRawFd, RawFd};

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use fdtable::FdTable;

static TABLE: FdTable = FdTable::new();

fn null_fd() -> RawFd {
    File::open("/dev/null")
        .expect("open /dev/null")
        .into_raw_fd()
}

fn mask_set() -> libc::sigset_t {
    let mut set = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigfillset initialises the set; sigdelset edits it.
    unsafe {
        libc::sigfillset(set.as_mut_ptr());
        for sig in [
            libc::SIGSEGV,
            libc::SIGBUS,
            libc::SIGFPE,
            libc::SIGILL,
            libc::SIGTRAP,
            libc::SIGSYS,
        ] {
            libc::sigdelset(set.as_mut_ptr(), sig);
        }
        set.assume_init()
    }
}

/// Time `close` over `iters` values made by `setup`, in batches small
/// enough to stay far below RLIMIT_NOFILE; only the closes are timed.
fn timed_batches<T>(
    iters: u64,
    mut setup: impl FnMut() -> T,
    mut close: impl FnMut(T),
) -> Duration {
    const BATCH: u64 = 512;
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(BATCH);
        let inputs: Vec<T> = (0..n).map(|_| setup()).collect();
        let start = Instant::now();
        for input in inputs {
            close(black_box(input));
        }
        total += start.elapsed();
        left -= n;
    }
    total
}

fn close_path(c: &mut Criterion) {
    let mut group = c.benchmark_group("close_dev_null");
    group.bench_function("bare_close", |b| {
        b.iter_custom(|iters| {
            timed_batches(iters, null_fd, |fd| {
                // SAFETY: the setup handed us this descriptor; nobody else has it.
                unsafe { libc::close(fd) };
            })
        })
    });
    let set = mask_set();
    group.bench_function("close_plus_mask_pair", |b| {
        b.iter_custom(|iters| {
            timed_batches(iters, null_fd, |fd| {
                let mut old = MaybeUninit::<libc::sigset_t>::uninit();
                // SAFETY: valid sets; the descriptor is ours to close.
                unsafe {
                    libc::pthread_sigmask(libc::SIG_BLOCK, &set, old.as_mut_ptr());
                    libc::close(fd);
                    libc::pthread_sigmask(libc::SIG_SETMASK, old.as_ptr(), std::ptr::null_mut());
                }
            })
        })
    });
    group.bench_function("tracked_drop", |b| {
        b.iter_custom(|iters| {
            timed_batches(
                iters,
                || {
                    TABLE
                        .track(File::open("/dev/null").expect("open"))
                        .expect("track")
                },
                drop,
            )
        })
    });
    group.finish();
}

criterion_group!(benches, close_path);
criterion_main!(benches);
