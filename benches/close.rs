//! The close path: what dropping a `Tracked` costs against its floor.
//!
//! Each variant closes the last reference to a freshly made descriptor (the
//! open is setup, not timed), on `/dev/null` files and on pipe ends:
//! - `bare_close`: `close(2)`, the floor;
//! - `owned_fd_drop`: std's `OwnedFd` drop;
//! - `close_plus_mask_pair`: `pthread_sigmask` block + `close(2)` + restore,
//!   the floor the contract sets for a masked close;
//! - `naive_table`: what users write by hand: `Mutex<HashSet<RawFd>>`, the
//!   mask pair and `close(2)`;
//! - `tracked_drop`: dropping a `Tracked`.
//!
//! `cargo bench --bench close`; compare medians within one run.

use std::collections::HashSet;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::sync::Mutex;

use criterion::{criterion_group, criterion_main, Criterion};
use fdtable::FdTable;

#[path = "util/mod.rs"]
mod util;
use util::{bench_bare_close, bench_tracked_drop, mask_set, timed_batches, MaskPair, FD_KINDS};

static TABLE: FdTable = FdTable::new();
static NAIVE: Mutex<Option<HashSet<RawFd>>> = Mutex::new(None);

fn close_path(c: &mut Criterion) {
    let set = mask_set();
    for (kind, make) in FD_KINDS {
        let mut group = c.benchmark_group(format!("close_{kind}"));
        bench_bare_close(&mut group, make);
        group.bench_function("owned_fd_drop", |b| {
            b.iter_custom(|iters| {
                // SAFETY: the setup handed us this descriptor.
                timed_batches(iters, || unsafe { OwnedFd::from_raw_fd(make()) }, drop)
            })
        });
        group.bench_function("close_plus_mask_pair", |b| {
            b.iter_custom(|iters| {
                timed_batches(iters, make, |fd| {
                    let _pair = MaskPair::block(&set);
                    // SAFETY: the setup handed us this descriptor.
                    unsafe { libc::close(fd) };
                })
            })
        });
        group.bench_function("naive_table", |b| {
            b.iter_custom(|iters| {
                timed_batches(
                    iters,
                    || {
                        let fd = make();
                        NAIVE
                            .lock()
                            .unwrap()
                            .get_or_insert_with(HashSet::new)
                            .insert(fd);
                        fd
                    },
                    |fd| {
                        let _pair = MaskPair::block(&set);
                        // SAFETY: the setup handed us this descriptor.
                        unsafe { libc::close(fd) };
                        NAIVE.lock().unwrap().as_mut().unwrap().remove(&fd);
                    },
                )
            })
        });
        bench_tracked_drop(&mut group, &TABLE, make);
        group.finish();
    }
}

criterion_group!(benches, close_path);
criterion_main!(benches);
