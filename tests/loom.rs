//! Model checking of the slot state machine with `loom`.
//!
//! How to run (about 15 s on 2 cores; CI does exactly this):
//!
//! ```sh
//! RUSTFLAGS="--cfg fdtable_loom" CARGO_TARGET_DIR=target/loom \
//!     cargo test --test loom --release -- --test-threads=1
//! ```
//!
//! `LOOM_MAX_PREEMPTIONS=N` overrides each model's preemption bound (higher
//! explores more interleavings and takes much longer); `LOOM_LOG=trace` and
//! `LOOM_LOCATION=1` explain a failure.
//!
//! Under `--cfg fdtable_loom` the crate's atomics (`src/sync.rs`) and its per-thread
//! pin list are loom's, chunks hold 4 slots, and `FdTable::new` is not `const`.
//! The syscalls are real: loom runs all model threads as coroutines on the
//! test's one OS thread, so every iteration opens its own pipes and checks
//! what the kernel says about them:
//! - the tracked end of a pipe is released exactly when the model says so
//!   (`POLLERR` on the write end the test keeps: no reader left), and its
//!   number is closed at the end of the iteration (`fcntl(F_GETFD)` fails);
//! - a number being visited by a walk keeps referring to the same file (or,
//!   after `close_all`, to the placeholder) until the callback returns,
//!   whatever another thread does to its handle meanwhile;
//! - no `close(2)` made by the table fails (`swallowed_close_errors() == 0`
//!   and `close()` returns `Ok`), so no number was closed twice: between the
//!   model's `pipe` calls and its end nothing opens a descriptor that could
//!   absorb a second close except `close_all`'s placeholder, which then makes
//!   `close_all` report an error;
//! - sentinel descriptors opened before the model keep their identity.
//!
//! Models run one at a time (`SERIAL`): descriptor numbers are process-wide,
//! and a parallel test could receive a number this one just closed.
#![cfg(fdtable_loom)]

mod util;

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Mutex;

use fdtable::{FdKind, FdTable, Trackable};
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::Arc;
use loom::thread;
use util::{identity, is_open};

static SERIAL: Mutex<()> = Mutex::new(());

/// `(st_dev, st_ino)` of an open descriptor ([`util::identity`]).
type Identity = (u64, u64);

/// What `close_all` swaps in: on Linux an `O_PATH` descriptor of a private
/// pipe ([`util::placeholder_identity`] learns it by retiring a pipe end).
fn placeholder_identity() -> Identity {
    util::placeholder_identity()
}

/// The tracked resource: the read end of a pipe.
#[derive(Debug)]
struct Reader(OwnedFd);

impl AsFd for Reader {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

// SAFETY: owns exactly the descriptor `as_fd` borrows and hands it over.
unsafe impl Trackable for Reader {
    const KIND: FdKind = FdKind::NotSocket;
    fn into_owned_fd(self) -> OwnedFd {
        self.0
    }
}

/// The test's side of a pipe: knows the read end's number and file, and can
/// tell whether any descriptor still refers to the read end.
struct Probe {
    fd: RawFd,
    id: Identity,
    writer: OwnedFd,
}

impl Probe {
    /// Whether the pipe still has a reader (some descriptor refers to the
    /// tracked end's file).
    fn reader_alive(&self) -> bool {
        let mut pfd = libc::pollfd {
            fd: self.writer.as_raw_fd(),
            events: libc::POLLOUT,
            revents: 0,
        };
        // SAFETY: one valid pollfd, timeout 0.
        let rc = unsafe { libc::poll(&mut pfd, 1, 0) };
        assert_eq!(rc, 1, "poll on the write end");
        pfd.revents & libc::POLLERR == 0
    }

    /// The tracked end was released and its number closed.
    fn assert_closed(&self) {
        assert!(!self.reader_alive(), "fd {} still has its file", self.fd);
        assert!(!is_open(self.fd), "fd {} is still open", self.fd);
    }
}

fn pipe() -> (Reader, Probe) {
    let mut fds = [-1; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: pipe2 just returned both descriptors; nothing else owns them.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let probe = Probe {
        fd: fds[0],
        id: identity(fds[0]).expect("fstat pipe"),
        writer: write,
    };
    (Reader(read), probe)
}

/// Descriptors the table never owns; checked after every iteration.
struct Sentinels(Vec<(File, Identity)>);

impl Sentinels {
    fn open() -> Sentinels {
        let files = ["/dev/zero", "/dev/null", "/"];
        Sentinels(
            files
                .iter()
                .map(|path| {
                    let f = File::open(path).expect("open sentinel");
                    let id = identity(f.as_raw_fd()).expect("fstat sentinel");
                    (f, id)
                })
                .collect(),
        )
    }

    fn check(&self) {
        for (f, id) in &self.0 {
            assert_eq!(identity(f.as_raw_fd()), Some(*id), "sentinel touched");
        }
    }
}

/// A table that model threads can share and move handles between: loom's
/// `spawn` needs `'static`, so the table is leaked for the iteration and
/// freed when this drops, after every thread was joined and every handle
/// dropped (each model does both before returning). On a panic it stays
/// leaked, since other model threads may still hold handles.
struct ModelTable(&'static FdTable);

impl ModelTable {
    fn new() -> ModelTable {
        ModelTable(Box::leak(Box::new(FdTable::new())))
    }
}

impl Drop for ModelTable {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        assert_eq!(self.0.len(), 0, "a model left a live entry");
        assert_eq!(self.0.swallowed_close_errors(), 0, "a close(2) failed");
        let ptr = self.0 as *const FdTable as *mut FdTable;
        // SAFETY: `ptr` came from `Box::leak` in `new`; every model joins its
        // threads and drops its handles (the only borrowers) before this runs.
        drop(unsafe { Box::from_raw(ptr) });
    }
}

/// Run `f` under loom with `bound` preemptions (unless `LOOM_MAX_PREEMPTIONS`
/// says otherwise) on a fresh [`ModelTable`] each iteration, checking the
/// table's end state and then the sentinels after every iteration.
fn model(bound: usize, f: impl Fn(&'static FdTable) + Sync + Send + 'static) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let sentinels = Sentinels::open();
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(bound);
    }
    let builder_bound = builder.preemption_bound;
    let executions = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = executions.clone();
    builder.check(move || {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        {
            let t = ModelTable::new();
            f(t.0);
        }
        sentinels.check();
    });
    let n = executions.load(std::sync::atomic::Ordering::Relaxed);
    let bound = builder_bound;
    eprintln!("explored {n} executions (preemption bound {bound:?})");
    // Not vacuous: the threads really were interleaved in several ways.
    assert!(n > 10, "only {n} executions explored");
}

/// Walk `table`, checking in each callback that the visited number is
/// published and keeps referring to one file expected for it (`ids[fd]`)
/// across a scheduling point. Returns the visited numbers in order.
fn checked_walk(table: &FdTable, ids: &HashMap<RawFd, Vec<Identity>>) -> Vec<RawFd> {
    let mut seen = Vec::new();
    table.for_each(|fd| {
        let raw = fd.as_raw_fd();
        assert!(table.contains(raw), "visited fd {raw} not published");
        let expected = ids
            .get(&raw)
            .unwrap_or_else(|| panic!("visited foreign fd {raw}"));
        let before = identity(raw).expect("visited fd is closed");
        assert!(expected.contains(&before), "fd {raw} is some other file");
        // Let the other threads act in the middle of the visit.
        thread::yield_now();
        let after = identity(raw).expect("visited fd was closed under the callback");
        assert!(
            expected.contains(&after),
            "fd {raw} was recycled during the visit"
        );
        assert!(
            table.contains(raw),
            "visited fd {raw} unpublished during the visit"
        );
        seen.push(raw);
    });
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "walk order: {seen:?}");
    seen
}

fn count(seen: &[RawFd], fd: RawFd) -> usize {
    seen.iter().filter(|&&s| s == fd).count()
}

/// A walk races an explicit `close` of an entry it may be visiting, and the
/// other entry, live throughout, is visited exactly once.
#[test]
fn walk_races_close() {
    model(4, |table| {
        let (a, pa) = pipe();
        let (b, pb) = pipe();
        let ha = table.track(a).unwrap();
        let hb = table.track(b).unwrap();
        let ids = HashMap::from([(pa.fd, vec![pa.id]), (pb.fd, vec![pb.id])]);

        let walker = thread::spawn(move || checked_walk(table, &ids));
        let closer = thread::spawn(move || ha.close());

        closer.join().unwrap().expect("close reports no error");
        let seen = walker.join().unwrap();
        assert!(count(&seen, pa.fd) <= 1);
        assert_eq!(count(&seen, pb.fd), 1, "a live entry was skipped");
        assert_eq!(seen.len(), count(&seen, pa.fd) + 1);

        pa.assert_closed();
        assert!(!table.contains(pa.fd));
        assert!(pb.reader_alive() && table.contains(pb.fd));
        assert_eq!(table.len(), 1);
        drop(hb);
        pb.assert_closed();
        assert!(table.is_empty() && !table.contains(pb.fd));
    });
}

/// A walk races the drop of the entry it visits (the close is deferred to
/// the last unpin) while the main thread tracks a new entry: the new entry
/// is never visited by a walk that was already under way.
#[test]
fn walk_races_drop_and_track() {
    model(4, |table| {
        let (a, pa) = pipe();
        let (c, pc) = pipe();
        let ha = table.track(a).unwrap();
        let ids = HashMap::from([(pa.fd, vec![pa.id]), (pc.fd, vec![pc.id])]);
        let started = Arc::new(AtomicBool::new(false));

        let walker = {
            let started = started.clone();
            thread::spawn(move || {
                let mut seen = Vec::new();
                table.for_each(|fd| {
                    // The walk's epoch is fixed by now.
                    started.store(true, Ordering::SeqCst);
                    let raw = fd.as_raw_fd();
                    let expected = &ids[&raw];
                    assert!(expected.contains(&identity(raw).expect("visited fd closed")));
                    thread::yield_now();
                    let after = identity(raw).expect("deferred close ran too early");
                    assert!(expected.contains(&after));
                    seen.push(raw);
                });
                seen
            })
        };
        let dropper = thread::spawn(move || drop(ha));

        let walk_had_started = started.load(Ordering::SeqCst);
        let hc = table.track(c).unwrap();

        dropper.join().unwrap();
        let seen = walker.join().unwrap();
        assert!(count(&seen, pa.fd) <= 1);
        if walk_had_started {
            assert_eq!(count(&seen, pc.fd), 0, "visited an entry tracked mid-walk");
        }
        pa.assert_closed();
        assert!(!table.contains(pa.fd));
        assert_eq!(table.len(), 1);
        assert!(pc.reader_alive());
        drop(hc);
        pc.assert_closed();
    });
}

/// `close_all` retires entries while a walk visits them: the visited number
/// may switch to the placeholder but is never closed under the callback;
/// afterwards the files are released, the numbers reserved until the handles
/// drop, and nothing counts as live.
#[test]
fn walk_races_close_all() {
    model(4, |table| {
        let (a, pa) = pipe();
        let (b, pb) = pipe();
        let ha = table.track(a).unwrap();
        let hb = table.track(b).unwrap();
        let dead = placeholder_identity();
        let ids = HashMap::from([(pa.fd, vec![pa.id, dead]), (pb.fd, vec![pb.id, dead])]);

        let walker = thread::spawn(move || checked_walk(table, &ids));
        let retirer = thread::spawn(move || table.close_all());

        let report = retirer.join().unwrap();
        let seen = walker.join().unwrap();
        assert!(report.is_ok(), "{:?}", report.errors());
        assert_eq!(report.released(), 2);
        assert!(count(&seen, pa.fd) <= 1 && count(&seen, pb.fd) <= 1);
        assert_eq!(table.len(), 0);
        for (p, h) in [(&pa, &ha), (&pb, &hb)] {
            assert!(!p.reader_alive(), "retired file still referenced");
            assert!(table.contains(p.fd), "retired number must stay reserved");
            assert_eq!(identity(h.as_raw_fd()), Some(dead));
        }
        drop(ha);
        ha_closed(&pa, table);
        // A retired handle can still be taken back: it holds the placeholder.
        let back = hb.into_inner();
        assert!(!table.contains(pb.fd));
        assert_eq!(identity(back.as_fd().as_raw_fd()), Some(dead));
        drop(back);
        pb.assert_closed();
    });
}

fn ha_closed(p: &Probe, table: &FdTable) {
    p.assert_closed();
    assert!(!table.contains(p.fd));
}

/// `close_all` races the drop of an entry (the `Closing` branch of
/// `retire_and_unpin`) and an explicit close of another: each number is
/// closed exactly once and `close_all` reports no error.
#[test]
fn close_all_races_drop_and_close() {
    model(4, |table| {
        let (a, pa) = pipe();
        let (b, pb) = pipe();
        let ha = table.track(a).unwrap();
        let hb = table.track(b).unwrap();

        let retirer = thread::spawn(move || table.close_all());
        let dropper = thread::spawn(move || drop(ha));
        let closed = hb.close();

        let report = retirer.join().unwrap();
        dropper.join().unwrap();
        closed.expect("close reports no error");
        assert!(report.is_ok(), "{:?}", report.errors());
        assert!(report.released() <= 2);
        ha_closed(&pa, table);
        ha_closed(&pb, table);
        assert_eq!(table.len(), 0);
    });
}

/// `into_inner` on another thread waits for a walk's pin: the walker's
/// number is not closed under it even though the caller closes the returned
/// descriptor at once.
#[test]
fn into_inner_waits_for_foreign_pin() {
    model(4, |table| {
        let (a, pa) = pipe();
        let ha = table.track(a).unwrap();
        let ids = HashMap::from([(pa.fd, vec![pa.id])]);

        let walker = thread::spawn(move || checked_walk(table, &ids));
        let taker = thread::spawn(move || {
            let reader = ha.into_inner();
            assert_eq!(identity(reader.0.as_raw_fd()), Some(pa.id));
            drop(reader); // closes the number right away
            pa
        });

        let pa = taker.join().unwrap();
        let seen = walker.join().unwrap();
        assert!(seen.len() <= 1);
        pa.assert_closed();
        assert!(!table.contains(pa.fd) && table.is_empty());
    });
}

/// Two threads walk; one of them tries to take the entry it is visiting
/// back with `try_into_inner` from inside its callback. It must be refused
/// (its own visit holds the number), and the close it falls back to is
/// deferred until the last of both walks' visits ends: neither callback
/// ever sees the number closed or recycled.
#[test]
fn try_into_inner_inside_own_visit_is_refused_and_close_waits_for_both_walks() {
    model(4, |table| {
        let (a, pa) = pipe();
        let ha = table.track(a).unwrap();
        let fd = pa.fd;
        let ids = HashMap::from([(pa.fd, vec![pa.id])]);

        let taker = thread::spawn(move || {
            let ids = HashMap::from([(fd, vec![pa.id])]);
            let mut handle = Some(ha);
            table.for_each(|visited| {
                assert_eq!(visited.as_raw_fd(), fd);
                let h = handle.take().expect("visited once");
                let h = match h.try_into_inner() {
                    Ok(_) => panic!("try_into_inner took the entry its own walk visits"),
                    Err(h) => h,
                };
                h.close().expect("deferred close reports Ok");
                thread::yield_now();
                assert_eq!(identity(fd), Some(ids[&fd][0]), "closed under the visit");
                assert!(table.contains(fd));
            });
            // Not visited (cannot happen: it was live throughout); release.
            if let Some(h) = handle {
                h.close().expect("close");
            }
            pa
        });
        let seen = checked_walk(table, &ids);

        let pa = taker.join().unwrap();
        assert!(seen.len() <= 1);
        pa.assert_closed();
        assert!(!table.contains(fd) && table.is_empty());
    });
}

/// `try_into_inner` from another thread races a walk: it either takes the
/// entry before or after the visit (and closes it at once), or is refused
/// during it; the visited number never closes under the callback.
#[test]
fn try_into_inner_from_another_thread_never_takes_a_visited_entry() {
    model(4, |table| {
        let (a, pa) = pipe();
        let ha = table.track(a).unwrap();
        let ids = HashMap::from([(pa.fd, vec![pa.id])]);

        let walker = thread::spawn(move || checked_walk(table, &ids));
        let taker = thread::spawn(move || {
            match ha.try_into_inner() {
                Ok(reader) => drop(reader), // closes the number right away
                Err(h) => h.close().expect("deferred close"),
            }
            pa
        });

        let pa = taker.join().unwrap();
        let seen = walker.join().unwrap();
        assert!(seen.len() <= 1);
        pa.assert_closed();
        assert!(!table.contains(pa.fd) && table.is_empty());
    });
}

/// Numbers are recycled while a walk runs: one thread closes an entry and
/// tracks a fresh pipe (the kernel hands back the lowest free numbers, so
/// usually the same ones). The walk never visits the newcomer, and every
/// number it visits stays open for the whole callback.
#[test]
fn recycled_number_is_not_visited() {
    model(4, |table| {
        let (a, pa) = pipe();
        let ha = table.track(a).unwrap();
        let old_id = pa.id;
        let started = Arc::new(AtomicBool::new(false));

        let churner = {
            let started = started.clone();
            thread::spawn(move || {
                // Deferred if the walk is visiting it right now.
                ha.close().expect("close");
                let walk_had_started = started.load(Ordering::SeqCst);
                let (n, pn) = pipe();
                let hn = table.track(n).expect("track the recycled number");
                (hn, pn, pa, walk_had_started)
            })
        };
        let mut seen = Vec::new();
        table.for_each(|fd| {
            started.store(true, Ordering::SeqCst);
            let raw = fd.as_raw_fd();
            let before = identity(raw).expect("visited fd closed");
            thread::yield_now();
            assert_eq!(identity(raw), Some(before), "fd {raw} recycled mid-visit");
            seen.push(before);
        });

        let (hn, pn, pa, walk_had_started) = churner.join().unwrap();
        assert!(
            !pa.reader_alive(),
            "the closed entry's file is still referenced"
        );
        assert!(seen.len() <= 1);
        assert!(seen.iter().all(|id| *id == old_id || *id == pn.id));
        if walk_had_started {
            assert!(!seen.contains(&pn.id), "visited an entry tracked mid-walk");
        }
        assert_eq!(table.len(), 1);
        assert!(table.contains(pn.fd) && pn.reader_alive());
        drop(hn);
        pn.assert_closed();
    });
}

/// Retire and take back at once: one thread walks, one runs `close_all`, one
/// calls `into_inner` and closes what it gets. `into_inner` waits for the
/// walk's pin whether or not the entry was retired first, so the visited
/// number never closes under the callback; the resource handed back holds
/// either the pipe or the placeholder.
#[test]
fn into_inner_races_close_all_and_walk() {
    model(4, |table| {
        let (a, pa) = pipe();
        let ha = table.track(a).unwrap();
        let dead = placeholder_identity();
        let ids = HashMap::from([(pa.fd, vec![pa.id, dead])]);

        let walker = thread::spawn(move || checked_walk(table, &ids));
        let retirer = thread::spawn(move || table.close_all());
        let reader = ha.into_inner();
        let got = identity(reader.0.as_raw_fd()).expect("returned fd is open");
        assert!(got == pa.id || got == dead);
        assert!(!table.contains(pa.fd));
        drop(reader);

        let report = retirer.join().unwrap();
        let seen = walker.join().unwrap();
        assert!(report.is_ok(), "{:?}", report.errors());
        assert!(report.released() <= 1);
        assert!(seen.len() <= 1);
        pa.assert_closed();
        assert!(table.is_empty() && !table.contains(pa.fd));
    });
}

/// A nested walk pins the visited entry a second time while another thread
/// drops its handle: the close waits for both pins (the inner callback and
/// the rest of the outer one still see the same file).
#[test]
fn nested_walk_holds_two_pins_against_a_drop() {
    model(4, |table| {
        let (a, pa) = pipe();
        let ha = table.track(a).unwrap();
        let (fd, id) = (pa.fd, pa.id);

        let walker = thread::spawn(move || {
            let mut visits = 0;
            table.for_each(|outer| {
                assert_eq!(outer.as_raw_fd(), fd);
                table.for_each(|inner| {
                    assert_eq!(inner.as_raw_fd(), fd);
                    thread::yield_now();
                    assert_eq!(identity(fd), Some(id), "closed under the inner visit");
                    visits += 1;
                });
                assert_eq!(identity(fd), Some(id), "closed under the outer visit");
                assert!(table.contains(fd));
                visits += 1;
            });
            visits
        });
        let dropper = thread::spawn(move || drop(ha));

        dropper.join().unwrap();
        let visits = walker.join().unwrap();
        assert!(visits <= 2);
        pa.assert_closed();
        assert!(table.is_empty() && !table.contains(fd));
    });
}

/// Loom saturates a slot at 2 pins (8 191 in real builds). Thread A walks
/// the entry three deep: once the count is full and A holds a pin of its
/// own, the next visit (and a `close_all` inside it) goes ahead on that
/// pin, adding none, while thread B's walk pins the entry and then drops
/// its handle. Whatever the interleaving: the number names the pipe or the
/// placeholder until every callback has returned, nobody waits for
/// itself, and the number is closed exactly once at the end.
#[test]
fn a_saturated_entry_is_visited_and_retired_on_this_threads_own_pin() {
    model(3, |table| {
        let (a, pa) = pipe();
        let ha = table.track(a).unwrap();
        let (fd, id) = (pa.fd, pa.id);
        let dead = placeholder_identity();
        let alive = move || {
            let now = identity(fd);
            assert!(now == Some(id) || now == Some(dead), "fd {fd} recycled");
            assert!(table.contains(fd), "fd {fd} unpublished under a visit");
        };

        let walker = thread::spawn(move || {
            let mut depth = 0;
            table.for_each(|_| {
                depth = depth.max(1);
                table.for_each(|_| {
                    depth = depth.max(2);
                    table.for_each(|_| {
                        depth = 3;
                        let _ = table.close_all();
                        alive();
                    });
                    alive();
                });
                alive();
            });
            depth
        });
        let dropper = thread::spawn(move || {
            table.for_each(|_| {
                thread::yield_now();
                alive();
            });
            drop(ha);
        });

        dropper.join().unwrap();
        let depth = walker.join().unwrap();
        SATURATED_DEPTH.fetch_max(depth, std::sync::atomic::Ordering::Relaxed);
        pa.assert_closed();
        assert!(table.is_empty() && !table.contains(fd));
    });
    // Not vacuous: some interleaving went three deep, past saturation.
    assert_eq!(
        SATURATED_DEPTH.load(std::sync::atomic::Ordering::Relaxed),
        3
    );
}

/// The deepest walk any iteration of the model above reached.
static SATURATED_DEPTH: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Seal while another thread tracks: `seal(); close_all()` on the main
/// thread against one `track` (the race behind `FdTable::seal`). Whatever
/// the interleaving, the `track` either fails with the resource given back
/// open and untracked, or succeeds with its file released by the
/// `close_all` (never accepted and left live), and the report counts
/// exactly what it released.
#[test]
fn seal_then_close_all_releases_every_entry_a_racing_track_accepted() {
    model(4, |table| {
        let (a, pa) = pipe();
        let tracker = thread::spawn(move || table.track(a).map_err(|e| e.into_parts()));

        table.seal();
        let report = table.close_all();

        let tracked = tracker.join().unwrap();
        assert!(report.is_ok(), "{:?}", report.errors());
        match tracked {
            Ok(handle) => {
                assert!(!pa.reader_alive(), "accepted after the seal and left live");
                assert_eq!(report.released(), 1, "accepted entry not counted");
                assert!(table.contains(pa.fd), "retired number must stay reserved");
                assert_eq!(identity(handle.as_raw_fd()), Some(placeholder_identity()));
                drop(handle);
            }
            Err((error, reader)) => {
                assert_eq!(error.kind(), std::io::ErrorKind::Other, "{error}");
                assert!(error.to_string().contains("sealed"), "{error}");
                assert_eq!(report.released(), 0);
                assert!(!table.contains(pa.fd), "a refused number stays published");
                assert!(pa.reader_alive(), "a refused resource came back released");
                assert_eq!(identity(reader.0.as_raw_fd()), Some(pa.id));
                drop(reader);
            }
        }
        assert_eq!(table.len(), 0);
        pa.assert_closed();
        assert!(!table.contains(pa.fd));
    });
}

/// The same race with a walk on a third thread, which may pin the entry
/// between its publishing and `track`'s second look at the seal: `track`
/// then waits for that pin before it hands the resource back (the walk's
/// number never closes under its callback), or returns the handle a
/// `close_all` retired meanwhile.
#[test]
fn seal_races_track_and_a_walk_that_visits_the_new_entry() {
    model(3, |table| {
        let (a, pa) = pipe();
        let dead = placeholder_identity();
        let ids = HashMap::from([(pa.fd, vec![pa.id, dead])]);
        let walker = thread::spawn(move || checked_walk(table, &ids));
        let tracker = thread::spawn(move || table.track(a).map_err(|e| e.into_parts()));

        table.seal();
        let report = table.close_all();

        let tracked = tracker.join().unwrap();
        let seen = walker.join().unwrap();
        assert!(seen.len() <= 1);
        assert!(report.is_ok(), "{:?}", report.errors());
        match tracked {
            Ok(handle) => {
                assert!(!pa.reader_alive(), "accepted after the seal and left live");
                assert_eq!(report.released(), 1);
                drop(handle);
            }
            Err((_, reader)) => {
                assert!(pa.reader_alive(), "a refused resource came back released");
                assert_eq!(report.released(), 0);
                drop(reader);
            }
        }
        pa.assert_closed();
        assert!(table.is_empty() && !table.contains(pa.fd));
    });
}

/// The owner of an entry closes its handle the moment `close_all` has
/// released the file (a thread woken by the release), possibly while
/// `close_all` still pins the entry. The entry was released either way and
/// the report says so: `released() == 1` in every interleaving.
#[test]
fn close_all_counts_an_entry_whose_handle_closes_under_its_pin() {
    model(4, |table| {
        let (a, pa) = pipe();
        let ha = table.track(a).unwrap();
        let fd = pa.fd;
        let dead = placeholder_identity();

        let owner = thread::spawn(move || {
            // "Woken by the release": the number names the placeholder.
            while identity(fd) != Some(dead) {
                thread::yield_now();
            }
            drop(ha);
        });
        let report = table.close_all();

        owner.join().unwrap();
        assert!(report.is_ok(), "{:?}", report.errors());
        assert_eq!(report.released(), 1, "a released entry was not counted");
        assert_eq!(table.len(), 0);
        pa.assert_closed();
        assert!(!table.contains(fd));
    });
}

/// Two `close_all` calls hold the same entry while its owner closes it
/// once the file is released: the entry counts in exactly one of the two
/// reports.
#[test]
fn two_close_alls_count_an_entry_once_when_its_handle_closes_under_them() {
    model(3, |table| {
        let (a, pa) = pipe();
        let ha = table.track(a).unwrap();
        let fd = pa.fd;
        let dead = placeholder_identity();

        let owner = thread::spawn(move || {
            while identity(fd) != Some(dead) {
                thread::yield_now();
            }
            drop(ha);
        });
        let other = thread::spawn(move || table.close_all());
        let mine = table.close_all();

        let theirs = other.join().unwrap();
        owner.join().unwrap();
        assert!(mine.is_ok() && theirs.is_ok());
        assert_eq!(
            mine.released() + theirs.released(),
            1,
            "counted {} + {}",
            mine.released(),
            theirs.released()
        );
        assert_eq!(table.len(), 0);
        pa.assert_closed();
    });
}
