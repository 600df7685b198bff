//! `Tracked` drop in quarantine mode against a bare `close(2)`, on
//! `/dev/null` files and pipe ends, in one process that enters quarantine
//! before criterion starts any thread.
//!
//! `cargo bench --bench quarantine`

use criterion::Criterion;
use fdtable::FdTable;

#[path = "util/mod.rs"]
mod util;
use util::{bench_bare_close, bench_tracked_drop, FD_KINDS};

static TABLE: FdTable = FdTable::new();

fn main() {
    let report = fdtable::quarantine::enter().expect("enter quarantine");
    eprintln!("{report}");
    let mut c = Criterion::default().configure_from_args();
    for (kind, make) in FD_KINDS {
        let mut group = c.benchmark_group(format!("quarantine_close_{kind}"));
        bench_bare_close(&mut group, make);
        bench_tracked_drop(&mut group, &TABLE, make);
        group.finish();
    }
    c.final_summary();
    assert_eq!(fdtable::quarantine::unprotected_threads_seen(), 0);
}
