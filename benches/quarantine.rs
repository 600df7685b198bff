//! Does quarantine mode pay for itself? A `Tracked` drop in quarantine mode
//! against the normal drop and a bare `close(2)`, on `/dev/null` files and
//! pipe ends, all in one process and one run: first the bare close and the
//! normal drop (a signal-mask pair around the close), then quarantine is
//! entered (no other thread exists: criterion, built without its `rayon`
//! feature, starts none) and the drop is measured again.
//!
//! `cargo bench --bench quarantine`; each group `drop_<kind>` holds
//! `bare_close`, `normal_drop` and `quarantine_drop`.

use std::os::fd::{FromRawFd, OwnedFd};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion};
use fdtable::FdTable;

#[path = "util/mod.rs"]
mod util;
use util::{bench_bare_close, timed_batches, MakeFd, FD_KINDS};

static TABLE: FdTable = FdTable::new();

/// Dropping a `Tracked` of `TABLE` around a descriptor made by `make`,
/// measured as `name`.
fn bench_drop(group: &mut BenchmarkGroup<'_, WallTime>, name: &str, make: MakeFd) {
    group.bench_function(name, |b| {
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
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    for (kind, make) in FD_KINDS {
        let mut group = c.benchmark_group(format!("drop_{kind}"));
        bench_bare_close(&mut group, make);
        bench_drop(&mut group, "normal_drop", make);
        group.finish();
    }
    let report = fdtable::quarantine::enter().expect("enter quarantine");
    eprintln!("{report}");
    assert_eq!(
        report.preexisting_threads(),
        Some(0),
        "another thread existed: quarantine would not protect it"
    );
    for (kind, make) in FD_KINDS {
        let mut group = c.benchmark_group(format!("drop_{kind}"));
        bench_drop(&mut group, "quarantine_drop", make);
        group.finish();
    }
    c.final_summary();
    assert_eq!(fdtable::quarantine::unprotected_threads_seen(), 0);
}
