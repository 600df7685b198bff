//! An interpreter of random operation sequences on an [`FdTable`], checked
//! after every step against a plain model.
//!
//! Shared by `tests/proptest_ops.rs` (random sequences), `tests/regressions.rs`
//! (minimal failing sequences kept as plain tests) and `fuzz/fuzz_targets/ops.rs`
//! (`#[path]`-included). The kernel is the oracle for "open" and "released":
//! - a number is open iff `fcntl(F_GETFD)` succeeds; what it refers to is
//!   `fstat`'s `(st_dev, st_ino)` (every pipe and socket has its own inode);
//! - the tracked end of a pipe or socket pair is released iff the end the test
//!   keeps says so (`POLLERR` on a pipe's write end, end-of-file on the peer
//!   socket), which no number recycling can fake.
//!
//! The checker assumes no other thread opens descriptors while a sequence
//! runs (a number the model knows to be closed must stay closed): run one
//! sequence at a time per process.
#![allow(dead_code)] // each includer uses a different part

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Once, OnceLock};

use fdtable::{FdTable, Trackable, Tracked};
use util::{identity, is_open};

#[path = "../util/mod.rs"]
mod util;

/// One step. Indices pick among the handles (or returned resources) that
/// exist when the step runs, modulo their number; a step with nothing to act
/// on does nothing. `*Visited` steps act on the entry that the innermost
/// running walk is visiting (nothing outside a walk).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Track the read end of a fresh pipe.
    TrackPipe,
    /// Track one end of a fresh Unix socket pair.
    TrackSocket,
    /// Track a fresh `/dev/null` file.
    TrackFile,
    /// Try to track an alias of a published number: must fail with
    /// `AlreadyExists` and close nothing.
    TrackDuplicate(usize),
    /// `Tracked::close` on a handle.
    Close(usize),
    /// Drop a handle.
    Drop(usize),
    /// `Tracked::into_inner` on a handle; the resource is kept as "returned".
    /// On an entry that a running walk visits, it must panic instead (the
    /// unwinding drops the handle: a deferred close).
    IntoInner(usize),
    /// `Tracked::try_into_inner` on a handle: `Err` (the handle back,
    /// unchanged) while a running walk visits its entry, else like
    /// `IntoInner`.
    TryIntoInner(usize),
    /// Drop (close) a resource returned by `into_inner`.
    DropReturned(usize),
    /// `close` the handle of the entry being visited.
    CloseVisited,
    /// Drop the handle of the entry being visited.
    DropVisited,
    /// `into_inner` on the entry being visited: must panic.
    IntoInnerVisited,
    /// `try_into_inner` on the entry being visited: must give it back.
    TryIntoInnerVisited,
    /// `FdTable::close_all`.
    CloseAll,
    /// `for_each`; its k-th callback runs the k-th script (if any).
    Walk(Vec<Vec<Op>>),
    /// Panic in the current callback (unwinds the innermost walk only).
    Panic,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Pipe,
    Socket,
    File,
}

/// The resource type the table tracks: a user type, not just `OwnedFd`.
#[derive(Debug)]
pub enum Res {
    File(File),
    Pipe(OwnedFd),
    Socket(UnixStream),
}

impl AsFd for Res {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Res::File(f) => f.as_fd(),
            Res::Pipe(p) => p.as_fd(),
            Res::Socket(s) => s.as_fd(),
        }
    }
}

// SAFETY: each variant owns exactly the descriptor `as_fd` borrows and
// hands that one over; `Res` has no methods that close or replace it.
unsafe impl Trackable for Res {
    fn into_owned_fd(self) -> OwnedFd {
        match self {
            Res::File(f) => f.into(),
            Res::Pipe(p) => p,
            Res::Socket(s) => s.into(),
        }
    }
}

pub type Identity = (u64, u64);

fn cloexec(fd: RawFd) -> bool {
    // SAFETY: as in `is_open`.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    flags != -1 && flags & libc::FD_CLOEXEC != 0
}

/// What `close_all` swaps in, learned once by retiring a pipe end on a
/// table of its own ([`util::placeholder_identity`]) before any sequence
/// runs.
fn placeholder() -> Identity {
    static ID: OnceLock<Identity> = OnceLock::new();
    *ID.get_or_init(util::placeholder_identity)
}

/// Descriptors opened once per process and never tracked: every check
/// verifies they still refer to the same files.
fn sentinels() -> &'static [(RawFd, Identity)] {
    static S: OnceLock<Vec<(RawFd, Identity)>> = OnceLock::new();
    S.get_or_init(|| {
        let mut v = Vec::new();
        for path in ["/dev/zero", "/dev/null"] {
            let f = File::open(path).expect("open sentinel");
            let fd = std::os::fd::IntoRawFd::into_raw_fd(f);
            v.push((fd, identity(fd).unwrap()));
        }
        let (a, b) = UnixStream::pair().expect("socketpair");
        for s in [a, b] {
            let fd = std::os::fd::IntoRawFd::into_raw_fd(s);
            v.push((fd, identity(fd).unwrap()));
        }
        v
    })
}

/// The test's end of a pipe or socket pair: tells whether the tracked end's
/// file still has a descriptor referring to it.
#[derive(Debug)]
enum Probe {
    Pipe(OwnedFd),
    Socket(UnixStream),
    None,
}

impl Probe {
    /// `Some(alive)` for pipes and sockets, `None` for files.
    fn alive(&self) -> Option<bool> {
        match self {
            Probe::Pipe(writer) => {
                let mut pfd = libc::pollfd {
                    fd: writer.as_raw_fd(),
                    events: libc::POLLOUT,
                    revents: 0,
                };
                // SAFETY: one valid pollfd, timeout 0.
                let rc = unsafe { libc::poll(&mut pfd, 1, 0) };
                assert_eq!(rc, 1, "poll on a pipe's write end");
                Some(pfd.revents & libc::POLLERR == 0)
            }
            Probe::Socket(peer) => {
                let mut byte = 0u8;
                // SAFETY: a one-byte buffer; MSG_PEEK|MSG_DONTWAIT never
                // blocks. Nothing is ever written, so 0 means the other end is
                // gone (closed or shut down) and EAGAIN means it is alive.
                let rc = unsafe {
                    libc::recv(
                        peer.as_raw_fd(),
                        (&mut byte as *mut u8).cast(),
                        1,
                        libc::MSG_PEEK | libc::MSG_DONTWAIT,
                    )
                };
                assert!(
                    rc <= 0,
                    "nothing writes to the tracked socket, yet it has data"
                );
                Some(rc == -1)
            }
            Probe::None => None,
        }
    }
}

/// What the model knows about one resource, for its whole life.
#[derive(Debug)]
struct Meta {
    id: u64,
    fd: RawFd,
    kind: Kind,
    file: Identity,
    probe: Probe,
}

#[derive(Debug)]
struct Held<'t> {
    handle: Tracked<'t, Res>,
    meta: Meta,
    /// Retired by `close_all`: holds the placeholder, not counted in `len`.
    retired: bool,
}

/// A handle closed while a walk pinned it: the table owns the number until
/// the last pin goes.
#[derive(Debug)]
struct Closing {
    meta: Meta,
    retired: bool,
}

/// A resource given back by `into_inner`.
#[derive(Debug)]
struct Returned {
    res: Res,
    meta: Meta,
    retired: bool,
}

#[derive(Debug)]
struct Visit {
    fd: RawFd,
    id: u64,
}

/// Marker payload of [`Op::Panic`], so the panic hook stays quiet about it.
struct WalkPanic;

/// What `Tracked::into_inner` says when called on an entry its own thread's
/// walk visits.
const OWN_VISIT_PANIC: &str = "it would wait for its own visit";

fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or("")
}

fn quiet_walk_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let expected = info.payload().downcast_ref::<WalkPanic>().is_some()
                || panic_message(info.payload()).contains(OWN_VISIT_PANIC);
            if !expected {
                default(info);
            }
        }));
    });
}

/// Runs operations on a table and checks it against the model after each.
pub struct Harness<'t> {
    table: &'t FdTable,
    held: Vec<Held<'t>>,
    closing: Vec<Closing>,
    /// Closing entries whose last pin is being released right now.
    unpinned: Vec<Closing>,
    returned: Vec<Returned>,
    /// The running walks' current visits, innermost last.
    visits: Vec<Visit>,
    /// Numbers that the model says are closed (and nobody reopened).
    closed: BTreeSet<RawFd>,
    next_id: u64,
    /// Steps executed (including those inside callbacks); bounds the work.
    pub steps: usize,
    /// Walks started so far and callbacks run, for statistics.
    pub walks: usize,
    pub visited: usize,
}

/// Upper bound on steps per sequence, so nested walks cannot blow up.
const MAX_STEPS: usize = 400;

impl<'t> Harness<'t> {
    pub fn new(table: &'t FdTable) -> Harness<'t> {
        quiet_walk_panics();
        sentinels();
        placeholder();
        assert!(table.is_empty(), "use a fresh table per sequence");
        Harness {
            table,
            held: Vec::new(),
            closing: Vec::new(),
            unpinned: Vec::new(),
            returned: Vec::new(),
            visits: Vec::new(),
            closed: BTreeSet::new(),
            next_id: 0,
            steps: 0,
            walks: 0,
            visited: 0,
        }
    }

    /// Run `ops` in order, checking after each, then release everything and
    /// check that nothing leaked.
    pub fn run(table: &'t FdTable, ops: &[Op]) -> Harness<'t> {
        let mut h = Harness::new(table);
        for op in ops {
            h.apply(op);
        }
        h.finish();
        h
    }

    fn pinned(&self, id: u64) -> bool {
        self.visits.iter().any(|v| v.id == id)
    }

    fn fresh(&mut self, kind: Kind) -> (Res, Meta) {
        let (res, probe) = match kind {
            Kind::Pipe => {
                let (r, w) = util::pipe();
                self.closed.remove(&w.as_raw_fd());
                (Res::Pipe(r), Probe::Pipe(w))
            }
            Kind::Socket => {
                let (a, b) = UnixStream::pair().expect("socketpair");
                self.closed.remove(&b.as_raw_fd());
                (Res::Socket(a), Probe::Socket(b))
            }
            Kind::File => (
                Res::File(File::open("/dev/zero").expect("open /dev/zero")),
                Probe::None,
            ),
        };
        let fd = res.as_fd().as_raw_fd();
        self.closed.remove(&fd);
        self.next_id += 1;
        let meta = Meta {
            id: self.next_id,
            fd,
            kind,
            file: identity(fd).unwrap(),
            probe,
        };
        (res, meta)
    }

    fn track(&mut self, kind: Kind) {
        let (res, meta) = self.fresh(kind);
        let handle = match self.table.track(res) {
            Ok(h) => h,
            Err(e) => panic!("track {kind:?} fd {} failed: {}", meta.fd, e.error()),
        };
        assert_eq!(handle.as_raw_fd(), meta.fd);
        assert!(cloexec(meta.fd), "track must set FD_CLOEXEC");
        self.held.push(Held {
            handle,
            meta,
            retired: false,
        });
    }

    /// The handle released from the model's "held" list: record what the
    /// table must do with its number.
    fn released(&mut self, meta: Meta, retired: bool) {
        if self.pinned(meta.id) {
            self.closing.push(Closing { meta, retired });
        } else {
            self.closed.insert(meta.fd);
            drop(meta); // drops the probe end too; the number was closed above
        }
    }

    fn close_at(&mut self, i: usize, explicit: bool) {
        let Held {
            handle,
            meta,
            retired,
        } = self.held.remove(i);
        if explicit {
            handle.close().unwrap_or_else(|e| {
                panic!("close of fd {} ({:?}) failed: {e}", meta.fd, meta.kind)
            });
        } else {
            drop(handle);
        }
        // Probe before the model forgets the entry: released unless pinned.
        if let Some(alive) = meta.probe.alive() {
            let expect = !retired && self.pinned(meta.id);
            assert_eq!(alive, expect, "fd {} file after close", meta.fd);
        }
        self.released(meta, retired);
    }

    fn take_back_at(&mut self, i: usize, attempt: bool) {
        let pinned = self.pinned(self.held[i].meta.id);
        if attempt && pinned {
            let Held {
                handle,
                meta,
                retired,
            } = self.held.remove(i);
            // A walk visits it: the handle must come back unchanged.
            let handle = match handle.try_into_inner() {
                Ok(res) => {
                    std::mem::forget(res);
                    panic!("try_into_inner took fd {} during its visit", meta.fd);
                }
                Err(handle) => handle,
            };
            assert_eq!(handle.as_raw_fd(), meta.fd);
            self.held.insert(
                i,
                Held {
                    handle,
                    meta,
                    retired,
                },
            );
            return;
        }
        let Held {
            handle,
            meta,
            retired,
        } = self.held.remove(i);
        if pinned {
            // This thread's walk visits it: `into_inner` must refuse by
            // panicking, and the unwinding drops the handle (deferred close).
            let outcome = catch_unwind(AssertUnwindSafe(move || handle.into_inner()));
            let payload = match outcome {
                Ok(res) => {
                    std::mem::forget(res);
                    panic!("into_inner took fd {} during its own visit", meta.fd);
                }
                Err(payload) => payload,
            };
            assert!(
                panic_message(&*payload).contains(OWN_VISIT_PANIC),
                "unexpected panic: {}",
                panic_message(&*payload)
            );
            if let Some(alive) = meta.probe.alive() {
                assert_eq!(
                    alive, !retired,
                    "fd {} file after refused into_inner",
                    meta.fd
                );
            }
            self.released(meta, retired);
            return;
        }
        let res = if attempt {
            match handle.try_into_inner() {
                Ok(res) => res,
                Err(_) => panic!("try_into_inner refused fd {}: nothing visits it", meta.fd),
            }
        } else {
            handle.into_inner()
        };
        assert_eq!(res.as_fd().as_raw_fd(), meta.fd);
        self.returned.push(Returned { res, meta, retired });
    }

    fn visited_index(&self) -> Option<usize> {
        let v = self.visits.last()?;
        self.held.iter().position(|h| h.meta.id == v.id)
    }

    pub fn apply(&mut self, op: &Op) {
        if self.steps >= MAX_STEPS {
            return;
        }
        self.steps += 1;
        match op {
            Op::TrackPipe => self.track(Kind::Pipe),
            Op::TrackSocket => self.track(Kind::Socket),
            Op::TrackFile => self.track(Kind::File),
            Op::TrackDuplicate(i) => self.track_duplicate(*i),
            Op::Close(i) | Op::Drop(i) | Op::IntoInner(i) | Op::TryIntoInner(i) => {
                if self.held.is_empty() {
                    return;
                }
                let i = i % self.held.len();
                match op {
                    Op::Close(_) => self.close_at(i, true),
                    Op::Drop(_) => self.close_at(i, false),
                    Op::IntoInner(_) => self.take_back_at(i, false),
                    _ => self.take_back_at(i, true),
                }
            }
            Op::CloseVisited | Op::DropVisited | Op::IntoInnerVisited | Op::TryIntoInnerVisited => {
                let Some(i) = self.visited_index() else {
                    return;
                };
                match op {
                    Op::CloseVisited => self.close_at(i, true),
                    Op::DropVisited => self.close_at(i, false),
                    Op::IntoInnerVisited => self.take_back_at(i, false),
                    _ => self.take_back_at(i, true),
                }
            }
            Op::DropReturned(i) => {
                if self.returned.is_empty() {
                    return;
                }
                let r = self.returned.remove(i % self.returned.len());
                drop(r.res);
                self.closed.insert(r.meta.fd);
            }
            Op::CloseAll => self.close_all(),
            Op::Walk(scripts) => self.walk(scripts),
            Op::Panic => {
                if !self.visits.is_empty() {
                    std::panic::panic_any(WalkPanic);
                }
            }
        }
        self.check();
    }

    fn track_duplicate(&mut self, i: usize) {
        let published: Vec<RawFd> = self
            .held
            .iter()
            .map(|h| h.meta.fd)
            .chain(self.closing.iter().map(|c| c.meta.fd))
            .collect();
        if published.is_empty() {
            return;
        }
        let fd = published[i % published.len()];
        // SAFETY: an alias of a number the table owns; it is forgotten on
        // every path below, so it never closes anything.
        let alias = unsafe { OwnedFd::from_raw_fd(fd) };
        match self.table.track(Res::Pipe(alias)) {
            Ok(handle) => {
                std::mem::forget(handle);
                panic!("fd {fd} tracked twice");
            }
            Err(e) => {
                assert_eq!(e.error().kind(), io::ErrorKind::AlreadyExists, "fd {fd}");
                std::mem::forget(e.into_inner());
            }
        }
    }

    fn close_all(&mut self) {
        let live = self.held.iter().filter(|h| !h.retired).count();
        let report = self.table.close_all();
        assert!(report.is_ok(), "close_all errors: {:?}", report.errors());
        assert_eq!(report.released(), live, "close_all released");
        for h in &mut self.held {
            h.retired = true;
        }
    }

    fn walk(&mut self, scripts: &[Vec<Op>]) {
        self.walks += 1;
        // (fd, id) of the entries live when the walk starts, ascending.
        let start: BTreeMap<RawFd, u64> = self
            .held
            .iter()
            .filter(|h| !h.retired)
            .map(|h| (h.meta.fd, h.meta.id))
            .collect();
        let depth = self.visits.len();
        let table = self.table;
        let mut prev: Option<RawFd> = None;
        let mut k = 0;
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            table.for_each(|fd| {
                let raw = fd.as_raw_fd();
                self.visited += 1;
                assert!(
                    prev.is_none_or(|p| p < raw),
                    "walk order: {prev:?} then {raw}"
                );
                self.settle();
                self.check_passed(&start, prev, Some(raw));
                let id = *start
                    .get(&raw)
                    .unwrap_or_else(|| panic!("visited fd {raw}, not live at walk start"));
                let held = self
                    .held
                    .iter()
                    .find(|h| h.meta.id == id)
                    .unwrap_or_else(|| panic!("visited fd {raw} after its handle went"));
                assert!(!held.retired, "visited fd {raw} after close_all retired it");
                assert_eq!(identity(raw), Some(held.meta.file), "fd {raw} file");
                self.visits.push(Visit { fd: raw, id });
                if let Some(script) = scripts.get(k) {
                    for op in script {
                        self.apply(op);
                    }
                }
                k += 1;
                self.end_visit();
                prev = Some(raw);
            });
        }));
        match outcome {
            Ok(()) => {
                self.settle();
                self.check_passed(&start, prev, None);
            }
            Err(payload) => {
                if payload.downcast_ref::<WalkPanic>().is_none() {
                    std::panic::resume_unwind(payload);
                }
                // The walk's own visit unwound: its pin is gone.
                while self.visits.len() > depth {
                    self.end_visit();
                }
                self.settle();
            }
        }
        assert_eq!(self.visits.len(), depth);
    }

    /// The walk moved from `prev` to `next` (`None`: the end): every entry
    /// live at its start with a number in between must no longer be live.
    fn check_passed(&self, start: &BTreeMap<RawFd, u64>, prev: Option<RawFd>, next: Option<RawFd>) {
        let lo = prev.map_or(i32::MIN, |p| p.saturating_add(1));
        for (&fd, &id) in start.range(lo..) {
            if next.is_some_and(|n| fd >= n) {
                break;
            }
            let still_live = self.held.iter().any(|h| h.meta.id == id && !h.retired);
            assert!(
                !still_live,
                "fd {fd} was live at walk start and when reached, yet skipped"
            );
        }
    }

    /// The innermost visit's callback is about to return (or is unwinding):
    /// its pin goes, and with the last pin a deferred close happens, which
    /// [`settle`](Self::settle) verifies once the walk has unpinned.
    fn end_visit(&mut self) {
        let v = self.visits.pop().expect("a visit to end");
        if self.pinned(v.id) {
            return;
        }
        if let Some(i) = self.closing.iter().position(|c| c.meta.id == v.id) {
            let c = self.closing.remove(i);
            self.unpinned.push(c);
        }
    }

    /// The walk has returned from the callback whose visit ended: deferred
    /// closes must be complete now.
    fn settle(&mut self) {
        for c in std::mem::take(&mut self.unpinned) {
            let fd = c.meta.fd;
            assert!(!is_open(fd), "deferred close of fd {fd} did not happen");
            assert_ne!(
                c.meta.probe.alive(),
                Some(true),
                "deferred close of fd {fd} kept the file"
            );
            self.closed.insert(fd);
        }
        self.check();
    }

    /// Compare the table and the kernel with the model.
    pub fn check(&self) {
        let t = self.table;
        let live = self.held.iter().filter(|h| !h.retired).count();
        assert_eq!(t.len(), live, "len");
        assert_eq!(t.is_empty(), live == 0);
        assert_eq!(t.swallowed_close_errors(), 0, "a close(2) failed");
        let dead = placeholder();
        for h in &self.held {
            let m = &h.meta;
            assert!(t.contains(m.fd), "held fd {} not contained", m.fd);
            assert_eq!(h.handle.as_raw_fd(), m.fd);
            let want = if h.retired { dead } else { m.file };
            assert_eq!(
                identity(m.fd),
                Some(want),
                "held fd {} (retired: {})",
                m.fd,
                h.retired
            );
            if let Some(alive) = m.probe.alive() {
                assert_eq!(alive, !h.retired, "held fd {} file liveness", m.fd);
            }
        }
        for c in &self.closing {
            let m = &c.meta;
            assert!(self.pinned(m.id));
            assert!(t.contains(m.fd), "closing fd {} must stay published", m.fd);
            let want = if c.retired { dead } else { m.file };
            assert_eq!(
                identity(m.fd),
                Some(want),
                "closing fd {} closed early",
                m.fd
            );
            if let Some(alive) = m.probe.alive() {
                assert_eq!(alive, !c.retired);
            }
        }
        for r in &self.returned {
            let m = &r.meta;
            assert!(!t.contains(m.fd), "returned fd {} still contained", m.fd);
            let want = if r.retired { dead } else { m.file };
            assert_eq!(identity(m.fd), Some(want), "returned fd {}", m.fd);
            if let Some(alive) = m.probe.alive() {
                assert_eq!(alive, !r.retired);
            }
        }
        for &fd in &self.closed {
            assert!(!is_open(fd), "fd {fd} should be closed");
            assert!(!t.contains(fd), "closed fd {fd} contained");
        }
        for &(fd, id) in sentinels() {
            assert_eq!(identity(fd), Some(id), "sentinel fd {fd} touched");
            assert!(!t.contains(fd));
        }
    }

    /// Drop every handle and returned resource; check nothing leaked.
    pub fn finish(&mut self) {
        assert!(self.visits.is_empty());
        while !self.held.is_empty() {
            self.close_at(self.held.len() - 1, false);
        }
        for r in self.returned.drain(..) {
            drop(r.res);
            self.closed.insert(r.meta.fd);
        }
        assert!(self.closing.is_empty());
        self.check();
        assert!(self.table.is_empty());
        let mut count = 0;
        self.table.for_each(|_| count += 1);
        assert_eq!(count, 0, "an empty table was walked");
    }
}
