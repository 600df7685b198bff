//! H3 / H4 / I4: iteration is re-entrant. Inside a `for_each` callback the
//! user may close, drop, track, walk again, take other entries back or
//! panic, and
//! the walk still visits each entry that was live when it began (and is
//! still live when reached) exactly once, never an entry tracked after it
//! began, and never lets the visited number be closed or recycled before
//! the callback returns.

mod util;

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::mpsc;
use std::time::Duration;

use fdtable::{FdTable, Tracked};
use util::{identity, is_open, Deadline};

static TABLE: FdTable = FdTable::new();

type Handle = Tracked<'static, OwnedFd>;

/// Track `n` fresh pipe read ends (each a distinct inode); the write ends are
/// returned too so the pipes stay alive.
fn track_pipes(n: usize) -> (Vec<Option<Handle>>, Vec<OwnedFd>) {
    let mut handles = Vec::new();
    let mut writers = Vec::new();
    for _ in 0..n {
        let (r, w) = util::pipe();
        handles.push(Some(TABLE.track(r).expect("track")));
        writers.push(w);
    }
    (handles, writers)
}

fn raw(h: &Option<Handle>) -> RawFd {
    h.as_ref().unwrap().as_raw_fd()
}

/// Visit counts per number for one walk of TABLE.
fn visits() -> HashMap<RawFd, usize> {
    let mut seen = HashMap::new();
    TABLE.for_each(|fd| *seen.entry(fd.as_raw_fd()).or_insert(0) += 1);
    seen
}

fn assert_clean() {
    assert!(TABLE.is_empty(), "entries left: {}", TABLE.len());
    assert!(visits().is_empty());
    assert_eq!(TABLE.swallowed_close_errors(), 0);
}

#[test]
fn every_live_entry_is_visited_exactly_once() {
    let _serial = util::serial();
    let (handles, _w) = track_pipes(40);
    let seen = visits();
    assert_eq!(seen.len(), 40);
    for h in &handles {
        assert_eq!(
            seen.get(&raw(h)),
            Some(&1),
            "fd {} not visited once",
            raw(h)
        );
    }
    drop(handles);
    assert_clean();
}

#[test]
fn closing_the_visited_fd_in_its_callback_defers_the_close_until_return() {
    let _serial = util::serial();
    let (mut handles, _w) = track_pipes(3);
    let target = raw(&handles[1]);
    let id = identity(target).unwrap();
    let mut checked = false;
    TABLE.for_each(|fd| {
        if fd.as_raw_fd() != target {
            return;
        }
        handles[1]
            .take()
            .unwrap()
            .close()
            .expect("deferred close reports Ok");
        // Still open, still the same file, still reserved.
        assert_eq!(
            identity(target),
            Some(id),
            "visited fd closed under the visitor"
        );
        assert!(TABLE.contains(target));
        assert_eq!(TABLE.len(), 2);
        // The kernel cannot hand the number out again yet.
        let fresh = File::open("/dev/null").unwrap();
        assert_ne!(fresh.as_raw_fd(), target, "visited number recycled");
        checked = true;
    });
    assert!(checked);
    assert!(!is_open(target), "deferred close never happened");
    assert!(!TABLE.contains(target));
    drop(handles);
    assert_clean();
}

#[test]
fn drop_inside_for_each_does_not_close_the_visited_fd() {
    let _serial = util::serial();
    let (mut handles, _w) = track_pipes(2);
    let target = raw(&handles[0]);
    let id = identity(target).unwrap();
    let mut during = None;
    TABLE.for_each(|fd| {
        if fd.as_raw_fd() == target {
            drop(handles[0].take());
            during = identity(fd.as_raw_fd());
        }
    });
    assert_eq!(during, Some(id));
    assert!(!is_open(target));
    drop(handles);
    assert_clean();
}

#[test]
fn closing_a_later_fd_in_a_callback_means_it_is_not_visited() {
    let _serial = util::serial();
    let (mut handles, _w) = track_pipes(6);
    let first = raw(&handles[0]);
    let later: Vec<RawFd> = handles[3..].iter().map(raw).collect();
    let mut seen = Vec::new();
    TABLE.for_each(|fd| {
        seen.push(fd.as_raw_fd());
        if fd.as_raw_fd() == first {
            handles[3].take().unwrap().close().unwrap(); // explicit close
            drop(handles[4].take()); // drop
            let _ = handles[5].take().unwrap().into_inner(); // untrack + close
        }
    });
    assert!(seen.contains(&first));
    for fd in &later {
        assert!(
            !seen.contains(fd),
            "fd {fd} closed before being reached was visited"
        );
        assert!(!is_open(*fd));
    }
    assert_eq!(seen.len(), 3);
    drop(handles);
    assert_clean();
}

#[test]
fn fds_tracked_inside_a_callback_are_not_visited() {
    let _serial = util::serial();
    let (handles, _w) = track_pipes(3);
    let mut fresh: Vec<Handle> = Vec::new();
    let mut seen = Vec::new();
    TABLE.for_each(|fd| {
        seen.push(fd.as_raw_fd());
        // Several per visit, some numbers above and some below later entries.
        for _ in 0..3 {
            let (r, w) = util::pipe();
            fresh.push(TABLE.track(r).unwrap());
            fresh.push(TABLE.track(w).unwrap());
        }
    });
    assert_eq!(
        seen.len(),
        3,
        "walk visited entries tracked after it began: {seen:?}"
    );
    for h in &fresh {
        assert!(!seen.contains(&h.as_raw_fd()));
    }
    assert_eq!(TABLE.len(), 3 + fresh.len());
    drop(fresh);
    drop(handles);
    assert_clean();
}

/// H4: a number closed and immediately re-opened and re-tracked during the
/// walk belongs to a new entry, and the walk must not visit it.
#[test]
fn a_number_closed_and_retracked_during_a_walk_is_not_visited() {
    let _serial = util::serial();
    let (mut handles, _w) = track_pipes(4);
    let first = raw(&handles[0]);
    let victim = raw(&handles[3]);
    let mut reborn: Option<Handle> = None;
    let mut seen = Vec::new();
    TABLE.for_each(|fd| {
        seen.push(fd.as_raw_fd());
        if fd.as_raw_fd() == first {
            // A different file, opened before the number is freed.
            let (r, _w2) = util::pipe();
            handles[3].take().unwrap().close().unwrap();
            // Claim exactly the freed number for it.
            // SAFETY: F_DUPFD_CLOEXEC returns a new descriptor (lowest free
            // number >= victim) that we own.
            let dup = unsafe { libc::fcntl(r.as_raw_fd(), libc::F_DUPFD_CLOEXEC, victim) };
            assert_eq!(
                dup, victim,
                "serialised test: the freed number must be lowest"
            );
            // SAFETY: `dup` is a fresh descriptor owned by nobody else.
            let owned = unsafe { OwnedFd::from_raw_fd(dup) };
            reborn = Some(TABLE.track(owned).unwrap());
        }
    });
    assert!(
        !seen.contains(&victim),
        "the walk visited a recycled number tracked after it began"
    );
    assert_eq!(seen.len(), 3);
    assert!(TABLE.contains(victim));
    drop(reborn);
    drop(handles);
    assert_clean();
}

#[test]
fn nested_for_each_sees_the_same_entries_and_releases_pins() {
    let _serial = util::serial();
    let (mut handles, _w) = track_pipes(4);
    let all: Vec<RawFd> = handles.iter().map(raw).collect();
    let mut outer = 0;
    let mut inner_total = 0;
    TABLE.for_each(|o| {
        outer += 1;
        let mut inner = Vec::new();
        TABLE.for_each(|i| {
            inner.push(i.as_raw_fd());
            // Three levels deep, and close the outer's visited fd from here.
            TABLE.for_each(|_| {});
        });
        inner_total += inner.len();
        assert!(inner.contains(&o.as_raw_fd()));
        if o.as_raw_fd() == all[1] {
            // Close the entry the outer walk is visiting, from the outer
            // callback, after an inner walk pinned and unpinned it.
            drop(handles[1].take());
            assert!(is_open(all[1]));
        }
    });
    assert_eq!(outer, 4);
    // The inner walks after the close see one fewer entry.
    assert_eq!(inner_total, 4 + 4 + 3 + 3);
    assert!(!is_open(all[1]));
    // Pins are all released: into_inner (which waits for pins) returns.
    for h in handles.iter_mut().filter_map(Option::take) {
        util::within(
            Duration::from_secs(5),
            "into_inner after nested walk",
            move || drop(h.into_inner()),
        );
    }
    assert_clean();
}

#[test]
fn a_panicking_callback_leaves_the_table_consistent_and_runs_the_deferred_close() {
    let _serial = util::serial();
    let (mut handles, _w) = track_pipes(3);
    let target = raw(&handles[1]);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        TABLE.for_each(|fd| {
            if fd.as_raw_fd() == target {
                drop(handles[1].take()); // deferred close
                TABLE.for_each(|_| panic!("boom from a nested walk"));
            }
        });
    }));
    assert!(result.is_err(), "the panic must propagate");
    assert!(!is_open(target), "deferred close lost on unwind");
    assert!(!TABLE.contains(target));
    assert_eq!(TABLE.len(), 2);
    let seen = visits();
    assert_eq!(seen.len(), 2);
    assert!(seen.values().all(|&n| n == 1));
    // No pin left behind: into_inner would wait forever on one.
    for h in handles.iter_mut().filter_map(Option::take) {
        util::within(
            Duration::from_secs(5),
            "into_inner after panic",
            move || drop(h.into_inner()),
        );
    }
    assert_clean();
}

#[test]
fn into_inner_from_another_thread_waits_until_the_callback_returns() {
    let _serial = util::serial();
    let (r, _w) = util::pipe();
    let handle = TABLE.track(r).unwrap();
    let fd = handle.as_raw_fd();
    let id = identity(fd).unwrap();
    static RETURNED: AtomicBool = AtomicBool::new(false);
    RETURNED.store(false, SeqCst);
    let (in_cb_tx, in_cb_rx) = mpsc::channel::<()>();
    let (calling_tx, calling_rx) = mpsc::channel::<()>();
    std::thread::scope(|s| {
        let other = s.spawn(move || {
            in_cb_rx.recv().unwrap();
            calling_tx.send(()).unwrap();
            let owned = handle.into_inner();
            RETURNED.store(true, SeqCst);
            owned
        });
        let mut visited = 0;
        TABLE.for_each(|b| {
            visited += 1;
            in_cb_tx.send(()).unwrap();
            calling_rx.recv().unwrap();
            // Give the other thread ample time to (wrongly) get the fd back
            // and close it; the visited number must stay ours meanwhile.
            let mut deadline = Deadline::new(Duration::from_millis(200), u64::MAX);
            while deadline.tick() {
                assert!(
                    !RETURNED.load(SeqCst),
                    "into_inner returned during a foreign visit"
                );
                assert_eq!(identity(b.as_raw_fd()), Some(id));
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        assert_eq!(visited, 1);
        let owned = other.join().unwrap();
        assert!(RETURNED.load(SeqCst));
        assert_eq!(
            identity(owned.as_raw_fd()),
            Some(id),
            "into_inner closed the fd"
        );
        assert!(!TABLE.contains(fd));
    });
    assert!(!is_open(fd));
    assert_clean();
}

/// Callers close handles from another thread while a walk is visiting them:
/// the visited number must keep referring to the same file until the
/// callback returns (no recycle into another thread's new pipe), and entries
/// that stay tracked throughout are each visited exactly once.
#[test]
fn concurrent_closes_never_recycle_the_visited_number_and_stable_entries_are_visited_once() {
    let _serial = util::serial();
    let sentinels = util::Sentinels::open(2);
    static STOP: AtomicBool = AtomicBool::new(false);
    static CHURNED: AtomicU64 = AtomicU64::new(0);
    STOP.store(false, SeqCst);
    CHURNED.store(0, SeqCst);
    let (stable_handles, _stable_w) = track_pipes(16);
    let stable: Vec<RawFd> = stable_handles.iter().map(raw).collect();

    let mut walks = 0u64;
    let mut recycled = 0u64;
    let mut visited_churn = 0u64;
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                let mut deadline = Deadline::new(Duration::from_secs(10), u64::MAX);
                while !STOP.load(SeqCst) && deadline.tick() {
                    let (r, w) = util::pipe();
                    let a = TABLE.track(r).unwrap();
                    let b = TABLE.track(w).unwrap();
                    std::thread::yield_now();
                    a.close().expect("close under concurrent walks");
                    drop(b);
                    CHURNED.fetch_add(1, SeqCst);
                }
            });
        }
        let mut deadline = Deadline::new(Duration::from_millis(1500), 20_000);
        while deadline.tick() {
            walks += 1;
            let mut seen: HashMap<RawFd, usize> = HashMap::new();
            TABLE.for_each(|fd| {
                let n = fd.as_raw_fd();
                *seen.entry(n).or_insert(0) += 1;
                let Some(id) = identity(n) else {
                    recycled += 1; // closed under the visitor
                    return;
                };
                if !stable.contains(&n) {
                    visited_churn += 1;
                    // Let the churners close it (and open new pipes) now.
                    std::thread::yield_now();
                }
                if identity(n) != Some(id) {
                    recycled += 1;
                }
            });
            for fd in &stable {
                assert_eq!(
                    seen.get(fd),
                    Some(&1),
                    "stable fd {fd} not visited exactly once"
                );
            }
            assert!(
                seen.values().all(|&c| c == 1),
                "an entry visited twice: {seen:?}"
            );
        }
        STOP.store(true, SeqCst);
    });
    eprintln!(
        "walks={walks} churned={} visited_churn={visited_churn}",
        CHURNED.load(SeqCst)
    );
    assert_eq!(
        recycled, 0,
        "a visited number was closed or recycled mid-callback"
    );
    assert!(
        walks >= 50 && visited_churn >= 50,
        "not enough overlap to mean anything"
    );
    drop(stable_handles);
    assert_clean();
    sentinels.check_and_close();
}

/// `try_into_inner` never waits: while another thread's walk visits the
/// entry it hands the handle back, and once the visit is over it succeeds.
#[test]
fn try_into_inner_during_a_foreign_visit_gives_the_handle_back() {
    let _serial = util::serial();
    let (r, _w) = util::pipe();
    let handle = TABLE.track(r).unwrap();
    let fd = handle.as_raw_fd();
    let id = identity(fd).unwrap();
    let (in_cb_tx, in_cb_rx) = mpsc::channel::<()>();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    std::thread::scope(|s| {
        let walker = s.spawn(move || {
            TABLE.for_each(|_| {
                in_cb_tx.send(()).unwrap();
                done_rx.recv_timeout(Duration::from_secs(20)).unwrap();
            });
        });
        in_cb_rx.recv_timeout(Duration::from_secs(20)).unwrap();
        let handle = match handle.try_into_inner() {
            Ok(_) => panic!("try_into_inner took an entry another thread is visiting"),
            Err(handle) => handle,
        };
        assert!(TABLE.contains(fd));
        done_tx.send(()).unwrap();
        walker.join().unwrap();
        let owned = handle.try_into_inner().expect("no visit left");
        assert_eq!(identity(owned.as_raw_fd()), Some(id));
        assert!(!TABLE.contains(fd));
    });
    assert!(!is_open(fd));
    assert_clean();
}

/// Two threads, each walking and releasing its own handles from inside its
/// callbacks, visit each other's entries. `into_inner` would wait crosswise
/// forever; `try_into_inner` with a fallback to `close` must finish. (It
/// refuses the entry its own walk is visiting, so that one is closed:
/// deferred until the visit ends.)
#[test]
fn crosswise_release_from_two_walks_with_try_into_inner_never_deadlocks() {
    let _serial = util::serial();
    let barrier = std::sync::Barrier::new(2);
    std::thread::scope(|s| {
        for _ in 0..2 {
            let barrier = &barrier;
            s.spawn(move || {
                let mut mine: Vec<Option<Handle>> = track_pipes(8).0;
                barrier.wait();
                let mut deadline = Deadline::new(Duration::from_secs(20), 1_000);
                while mine.iter().any(Option::is_some) && deadline.tick() {
                    TABLE.for_each(|visited| {
                        if let Some(slot) = mine.iter_mut().find(|h| h.is_some()) {
                            let handle = slot.take().unwrap();
                            match handle.try_into_inner() {
                                Ok(owned) => drop(owned),
                                Err(handle) if handle.as_raw_fd() == visited.as_raw_fd() => {
                                    handle.close().unwrap();
                                }
                                Err(handle) => *slot = Some(handle),
                            }
                        }
                        std::thread::yield_now();
                    });
                }
                assert!(mine.iter().all(Option::is_none), "ran out of rounds");
            });
        }
    });
    assert_clean();
}
