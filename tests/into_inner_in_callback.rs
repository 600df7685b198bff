//! Found by the soak (issue 5): `Tracked::into_inner` waits until other
//! threads' walks release their pin on the entry (`DESIGN.md` §4.2), so two
//! `for_each` callbacks on two threads, each calling `into_inner` on the
//! handle the *other* thread is visiting, wait for each other forever. The
//! soak hung exactly so (both churners in `forget_entry`'s backoff, nested
//! inside `for_each`) until it stopped calling `into_inner` from callbacks.
//!
//! Kept as an ignored, failing test until the crate either breaks the cycle
//! or documents it as a limitation ("do not call `into_inner` inside a
//! `for_each` callback when other threads walk the same table"). Run it with
//! `cargo test --test into_inner_in_callback -- --ignored`; it fails after
//! 10 s instead of hanging (the two stuck threads are leaked).

mod util;

use std::os::fd::AsRawFd;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use fdtable::FdTable;

static TABLE: FdTable = FdTable::new();

#[test]
#[ignore = "known deadlock: into_inner in crossed callbacks waits forever (see module docs)"]
fn into_inner_in_callbacks_visiting_each_others_handle_does_not_deadlock() {
    let _serial = util::serial();
    util::within(Duration::from_secs(10), "crossed into_inner", || {
        let a = TABLE.track(util::dev_null()).expect("track a");
        let b = TABLE.track(util::dev_null()).expect("track b");
        let (fa, fb) = (a.as_raw_fd(), b.as_raw_fd());
        let both_pinned = Arc::new(Barrier::new(2));
        // Thread `mine` owns `own` and, while visiting `other`, gives `own` back.
        let cross = |own: fdtable::Tracked<'static, std::fs::File>, other: i32| {
            let both_pinned = Arc::clone(&both_pinned);
            thread::spawn(move || {
                let mut own = Some(own);
                TABLE.for_each(|fd| {
                    if fd.as_raw_fd() == other {
                        // Each thread now pins the other's entry.
                        both_pinned.wait();
                        if let Some(handle) = own.take() {
                            drop(handle.into_inner());
                        }
                    }
                });
            })
        };
        let t1 = cross(a, fb);
        let t2 = cross(b, fa);
        t1.join().expect("thread 1");
        t2.join().expect("thread 2");
    });
    assert!(TABLE.is_empty());
}
