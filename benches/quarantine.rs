//! `Tracked` drop in quarantine mode against a bare `close(2)`, in one
//! process that enters quarantine before criterion starts any thread.
//!
//! `cargo bench --bench quarantine`

use std::fs::File;
use std::os::fd::{IntoRawFd, RawFd};

use criterion::Criterion;
use fdtable::FdTable;

#[path = "util/mod.rs"]
mod util;
use util::timed_batches;

static TABLE: FdTable = FdTable::new();

fn null_fd() -> RawFd {
    File::open("/dev/null")
        .expect("open /dev/null")
        .into_raw_fd()
}

fn main() {
    let report = fdtable::quarantine::enter().expect("enter quarantine");
    eprintln!("{report}");
    let mut c = Criterion::default().configure_from_args();
    let mut group = c.benchmark_group("quarantine_close_dev_null");
    group.bench_function("bare_close", |b| {
        b.iter_custom(|iters| {
            timed_batches(iters, null_fd, |fd| {
                // SAFETY: the setup handed us this descriptor.
                unsafe { libc::close(fd) };
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
    c.final_summary();
    assert_eq!(fdtable::quarantine::unprotected_threads_seen(), 0);
}
