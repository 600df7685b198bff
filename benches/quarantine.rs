//! `Tracked` drop in quarantine mode against a bare `close(2)`, on
//! `/dev/null` files and pipe ends, in one process that enters quarantine
//! before criterion starts any thread.
//!
//! `cargo bench --bench quarantine`

use std::fs::File;
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd, RawFd};

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

/// One end of a fresh pipe; the other end is closed at once (setup).
fn pipe_fd() -> RawFd {
    let (r, w) = nix::unistd::pipe().expect("pipe");
    drop(r);
    w.into_raw_fd()
}

fn main() {
    let report = fdtable::quarantine::enter().expect("enter quarantine");
    eprintln!("{report}");
    let mut c = Criterion::default().configure_from_args();
    for (kind, make) in [("dev_null", null_fd as fn() -> RawFd), ("pipe", pipe_fd)] {
        let mut group = c.benchmark_group(format!("quarantine_close_{kind}"));
        group.bench_function("bare_close", |b| {
            b.iter_custom(|iters| {
                timed_batches(iters, make, |fd| {
                    // SAFETY: the setup handed us this descriptor.
                    unsafe { libc::close(fd) };
                })
            })
        });
        group.bench_function("tracked_drop", |b| {
            b.iter_custom(|iters| {
                timed_batches(
                    iters,
                    // SAFETY: the setup handed us this descriptor.
                    || {
                        TABLE
                            .track(unsafe { OwnedFd::from_raw_fd(make()) })
                            .expect("track")
                    },
                    drop,
                )
            })
        });
        group.finish();
    }
    c.final_summary();
    assert_eq!(fdtable::quarantine::unprotected_threads_seen(), 0);
}
