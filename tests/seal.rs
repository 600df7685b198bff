//! Issue 18, item 1: `FdTable::seal` and `FdTable::is_sealed`.
//!
//! After `seal`, `track` refuses and hands the resource back open and
//! untouched; entries already in the table are left alone; and `seal();
//! close_all()` releases every entry that any `track` accepted, whatever
//! other threads were tracking at that moment. The loom models
//! `seal_then_close_all_releases_every_entry_a_racing_track_accepted` and
//! `seal_races_track_and_a_walk_that_visits_the_new_entry` (`tests/loom.rs`)
//! explore that race interleaving by interleaving, memory orderings
//! included; the race test here runs it on real threads and real sockets.

mod util;

use std::io::{self, ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Barrier;
use std::thread;
use std::time::Duration;

use fdtable::{FdTable, TrackError, Tracked};

/// Tracking threads racing each `seal(); close_all()`.
const TRACKERS: usize = 4;
/// Entries one tracker holds at most in a round (the seal comes long
/// before, see `race_round`).
const MOST_PER_TRACKER: usize = 64;

/// What a tracker tracks, in turn: the three ways `close_all` releases.
enum Resource {
    /// A Unix socket (`FdKind::Socket`: shutdown, then the swap); the peer
    /// stays with the test.
    Socket(UnixStream, UnixStream),
    /// A pipe's read end (`NotSocket`: the swap only); the write end stays.
    Pipe(io::PipeReader, io::PipeWriter),
    /// A Unix socket as a bare `OwnedFd` (`Unknown`: shutdown, then the
    /// swap).
    Fd(OwnedFd, UnixStream),
}

fn make(i: usize) -> Resource {
    match i % 3 {
        0 => {
            let (a, b) = UnixStream::pair().expect("socketpair");
            Resource::Socket(a, b)
        }
        1 => {
            let (r, w) = io::pipe().expect("pipe");
            Resource::Pipe(r, w)
        }
        _ => {
            let (a, b) = UnixStream::pair().expect("socketpair");
            Resource::Fd(a.into(), b)
        }
    }
}

/// A tracked resource and the end the test kept.
enum Accepted<'t> {
    Socket(Tracked<'t, UnixStream>, UnixStream),
    Pipe(Tracked<'t, io::PipeReader>, io::PipeWriter),
    Fd(Tracked<'t, OwnedFd>, UnixStream),
}

/// Track `resource`; on refusal, the error and the resource back (with its
/// peer) in the shape it had.
fn track<'t>(
    table: &'t FdTable,
    resource: Resource,
) -> Result<Accepted<'t>, (io::Error, Resource)> {
    fn back<T, P>(
        e: TrackError<T>,
        peer: P,
        f: impl FnOnce(T, P) -> Resource,
    ) -> (io::Error, Resource) {
        let (error, resource) = e.into_parts();
        (error, f(resource, peer))
    }
    match resource {
        Resource::Socket(a, b) => match table.track(a) {
            Ok(h) => Ok(Accepted::Socket(h, b)),
            Err(e) => Err(back(e, b, Resource::Socket)),
        },
        Resource::Pipe(r, w) => match table.track(r) {
            Ok(h) => Ok(Accepted::Pipe(h, w)),
            Err(e) => Err(back(e, w, Resource::Pipe)),
        },
        Resource::Fd(fd, b) => match table.track(fd) {
            Ok(h) => Ok(Accepted::Fd(h, b)),
            Err(e) => Err(back(e, b, Resource::Fd)),
        },
    }
}

impl Accepted<'_> {
    fn fd(&self) -> RawFd {
        match self {
            Accepted::Socket(h, _) => h.as_raw_fd(),
            Accepted::Pipe(h, _) => h.as_raw_fd(),
            Accepted::Fd(h, _) => h.as_raw_fd(),
        }
    }

    /// Panic unless the entry was released: its number names the
    /// placeholder (so I/O through the handle fails) and the test's end
    /// sees the other side gone.
    fn assert_released(&mut self, placeholder: (u64, u64)) {
        let fd = self.fd();
        assert_eq!(
            util::identity(fd),
            Some(placeholder),
            "accepted fd {fd} does not name the placeholder: left live"
        );
        match self {
            Accepted::Socket(h, peer) => {
                assert!(
                    (&**h).read(&mut [0u8; 4]).is_err(),
                    "I/O through a released handle"
                );
                assert_eq!(
                    peer.read(&mut [0u8; 4]).expect("peer read"),
                    0,
                    "peer sees no EOF"
                );
            }
            Accepted::Pipe(_, w) => {
                let e = w.write(b"x").expect_err("the pipe still has its reader");
                assert_eq!(e.kind(), ErrorKind::BrokenPipe, "{e}");
            }
            Accepted::Fd(_, peer) => {
                assert_eq!(
                    peer.read(&mut [0u8; 4]).expect("peer read"),
                    0,
                    "peer sees no EOF"
                );
            }
        }
    }
}

impl Resource {
    fn fd(&self) -> RawFd {
        match self {
            Resource::Socket(a, _) => a.as_raw_fd(),
            Resource::Pipe(r, _) => r.as_raw_fd(),
            Resource::Fd(fd, _) => fd.as_raw_fd(),
        }
    }

    /// Panic unless the resource works as it did before `track` saw it.
    fn assert_open_and_working(&mut self) {
        match self {
            Resource::Socket(a, b) => {
                a.write_all(b"ok").expect("write through a refused socket");
                let mut got = [0u8; 2];
                b.read_exact(&mut got).expect("peer read");
                assert_eq!(&got, b"ok");
            }
            Resource::Pipe(r, w) => {
                w.write_all(b"ok").expect("write into a refused pipe");
                let mut got = [0u8; 2];
                r.read_exact(&mut got).expect("read a refused pipe");
                assert_eq!(&got, b"ok");
            }
            Resource::Fd(fd, b) => {
                b.write_all(b"ok").expect("peer write");
                let mut got = [0u8; 2];
                std::fs::File::from(fd.try_clone().expect("dup"))
                    .read_exact(&mut got)
                    .expect("read a refused fd");
                assert_eq!(&got, b"ok");
            }
        }
    }
}

/// What one tracker ended a round with.
#[derive(Default)]
struct Outcome<'t> {
    attempts: usize,
    accepted: Vec<Accepted<'t>>,
    refused: Vec<(io::Error, Resource)>,
    /// Tracks that started after this thread saw `is_sealed()` and still
    /// succeeded: must stay 0.
    accepted_after_seal: usize,
}

/// One round: `TRACKERS` threads track in a loop until refused; the main
/// thread seals once `seal_after` entries were accepted, then runs
/// `close_all`. Checks everything the seal promises and returns what was
/// accepted (handles still alive) for the caller's number checks.
fn race_round(seal_after: usize, placeholder: (u64, u64)) -> (usize, usize) {
    let table = FdTable::new();
    let accepted_so_far = AtomicUsize::new(0);
    let start = Barrier::new(TRACKERS + 1);
    let (report, mut outcomes) = thread::scope(|s| {
        let workers: Vec<_> = (0..TRACKERS)
            .map(|t| {
                let (table, start, accepted_so_far) = (&table, &start, &accepted_so_far);
                s.spawn(move || {
                    let mut out = Outcome::default();
                    start.wait();
                    loop {
                        if out.accepted.len() >= MOST_PER_TRACKER {
                            // Enough: wait for the seal, then be refused.
                            while !table.is_sealed() {
                                thread::yield_now();
                            }
                        }
                        let sealed_before = table.is_sealed();
                        let resource = make(t + out.attempts);
                        out.attempts += 1;
                        match track(table, resource) {
                            Ok(accepted) => {
                                accepted_so_far.fetch_add(1, Ordering::Relaxed);
                                out.accepted.push(accepted);
                                if sealed_before {
                                    out.accepted_after_seal += 1;
                                    break;
                                }
                            }
                            Err(refused) => {
                                out.refused.push(refused);
                                break; // the sealed table says: stop
                            }
                        }
                    }
                    out
                })
            })
            .collect();
        start.wait();
        while accepted_so_far.load(Ordering::Relaxed) < seal_after {
            std::hint::spin_loop();
        }
        table.seal();
        let report = table.close_all();
        let outcomes: Vec<Outcome<'_>> = workers
            .into_iter()
            .map(|w| w.join().expect("tracker panicked"))
            .collect();
        (report, outcomes)
    });

    assert!(report.is_ok(), "{:?}", report.errors());
    let attempts: usize = outcomes.iter().map(|o| o.attempts).sum();
    let accepted: usize = outcomes.iter().map(|o| o.accepted.len()).sum();
    let refused: usize = outcomes.iter().map(|o| o.refused.len()).sum();
    let late: usize = outcomes.iter().map(|o| o.accepted_after_seal).sum();
    assert_eq!(late, 0, "a track that began after is_sealed() succeeded");
    // Nothing lost: every resource is in a handle or came back.
    assert_eq!(attempts, accepted + refused, "a resource was lost");
    assert_eq!(refused, TRACKERS, "each tracker stops at its first refusal");
    // Nothing accepted and left live; each counted once.
    assert_eq!(table.len(), 0, "an accepted entry was left live");
    assert_eq!(
        report.released(),
        accepted,
        "released() is not what was accepted"
    );
    for outcome in &mut outcomes {
        for entry in &mut outcome.accepted {
            assert!(
                table.contains(entry.fd()),
                "a retired number must stay reserved"
            );
            entry.assert_released(placeholder);
        }
        for (error, resource) in &mut outcome.refused {
            assert_eq!(error.kind(), ErrorKind::Other, "{error}");
            assert!(error.to_string().contains("sealed"), "{error}");
            assert!(
                !table.contains(resource.fd()),
                "a refused number is published"
            );
            resource.assert_open_and_working();
        }
    }
    let numbers: Vec<RawFd> = outcomes
        .iter()
        .flat_map(|o| o.accepted.iter().map(Accepted::fd))
        .collect();
    drop(outcomes);
    for fd in numbers {
        assert!(
            !table.contains(fd),
            "fd {fd} published after its handle dropped"
        );
    }
    assert!(table.is_empty());
    (accepted, refused)
}

#[test]
fn seal_then_close_all_releases_every_entry_that_racing_tracks_accepted() {
    let _serial = util::serial();
    let baseline = util::open_fd_count();
    let sentinels = util::Sentinels::open(2);
    let placeholder = util::placeholder_identity();
    let (rounds, accepted) =
        util::within(Duration::from_secs(120), "seal race rounds", move || {
            let mut deadline = util::Deadline::new(Duration::from_secs(4), 300);
            let (mut rounds, mut accepted) = (0usize, 0usize);
            while deadline.tick() {
                // Seal at once in some rounds (the trackers' first tracks race
                // it), after a few dozen entries in others.
                let seal_after = (rounds * 7) % 41;
                accepted += race_round(seal_after, placeholder).0;
                rounds += 1;
            }
            (rounds, accepted)
        });
    eprintln!("{rounds} rounds, {accepted} entries accepted and released");
    assert!(rounds > 0 && accepted > 0);
    sentinels.check_and_close();
    assert_eq!(util::open_fd_count(), baseline, "/proc/self/fd");
}

#[test]
fn a_sealed_table_refuses_tracks_untouched_and_leaves_its_entries_alone() {
    let _serial = util::serial();
    let table = FdTable::new();
    let (a, mut peer) = UnixStream::pair().expect("socketpair");
    let mut kept = table.track(a).expect("track before the seal");
    assert!(!table.is_sealed());

    table.seal();
    table.seal(); // again: nothing changes
    assert!(table.is_sealed());
    assert!(format!("{table:?}").contains("sealed: true"));

    // The entry already in the table is untouched: live, usable.
    assert_eq!(table.len(), 1);
    assert!(table.contains(kept.as_raw_fd()));
    kept.write_all(b"still")
        .expect("write through a kept entry");
    let mut got = [0u8; 5];
    peer.read_exact(&mut got).expect("peer read");
    assert_eq!(&got, b"still");

    // A refused resource comes back as it was: not even FD_CLOEXEC is set
    // (`track` refuses before it touches the descriptor).
    let (late, _late_peer) = UnixStream::pair().expect("socketpair");
    let late_fd = late.as_raw_fd();
    let id = util::identity(late_fd);
    // SAFETY: F_SETFD on a descriptor we own.
    assert_eq!(unsafe { libc::fcntl(late_fd, libc::F_SETFD, 0) }, 0);
    let err = table.track(late).expect_err("track on a sealed table");
    assert_eq!(err.error().kind(), ErrorKind::Other);
    let message = err.to_string();
    assert!(
        message.contains("sealed") && message.contains(&format!("fd {late_fd}")),
        "{message}"
    );
    let late = err.into_inner();
    assert_eq!(late.as_raw_fd(), late_fd);
    assert_eq!(util::identity(late_fd), id);
    assert_eq!(util::fd_flags(late_fd).expect("open") & libc::FD_CLOEXEC, 0);
    assert!(!table.contains(late_fd));
    assert_eq!(table.len(), 1);
    // Through `?` it is an io::Error of the same kind (the resource dropped).
    let as_io: io::Error = table.track(util::dev_null()).unwrap_err().into();
    assert_eq!(as_io.kind(), ErrorKind::Other);

    // A bad number is refused as sealed too, before it is looked at.
    let bogus = OwnedFd::from(util::dev_null());
    let err = table.track(bogus).unwrap_err();
    assert_eq!(err.error().kind(), ErrorKind::Other);
    drop(err);

    // close_all releases what was there before the seal.
    let report = table.close_all();
    assert!(report.is_ok(), "{:?}", report.errors());
    assert_eq!(report.released(), 1);
    assert!(
        kept.write_all(b"x").is_err(),
        "released handle still writes"
    );
    assert_eq!(peer.read(&mut [0u8; 4]).expect("peer read"), 0);
    drop(kept);
    assert!(table.is_empty());
    assert!(table.is_sealed(), "close_all does not unseal");
}

#[test]
fn close_all_does_not_seal() {
    let _serial = util::serial();
    let table = FdTable::new();
    let first = table.track(util::dev_null()).expect("track");
    assert_eq!(table.close_all().released(), 1);
    assert!(!table.is_sealed());
    let second = table
        .track(util::dev_null())
        .expect("track after close_all");
    assert_eq!(table.len(), 1);
    drop((first, second));
}

#[test]
fn a_fork_child_inherits_the_seal_and_retire_all_in_child_keeps_it() {
    static SEALED: FdTable = FdTable::new();
    static OPEN: FdTable = FdTable::new();
    let _serial = util::serial();
    let kept = SEALED.track(util::dev_null()).expect("track");
    SEALED.seal();
    let code = util::in_fork(Duration::from_secs(20), || {
        if !SEALED.is_sealed() || OPEN.is_sealed() {
            return 1;
        }
        // SAFETY: a fork child, nothing else uses the tables; it only
        // makes async-signal-safe calls and `_exit`s.
        if unsafe { SEALED.retire_all_in_child(&[]) }.is_err() {
            return 2;
        }
        if !SEALED.is_sealed() {
            return 3;
        }
        0
    });
    assert_eq!(
        code, 0,
        "1: seal not inherited, 2: retire failed, 3: retire unsealed"
    );
    // A seal made in the child (or after the fork) stays where it was made.
    let code = util::in_fork(Duration::from_secs(20), || {
        OPEN.seal();
        i32::from(!OPEN.is_sealed())
    });
    assert_eq!(code, 0);
    assert!(!OPEN.is_sealed(), "the child's seal reached the parent");
    drop(kept);
}
