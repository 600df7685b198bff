//! I2 / I8 (issue 9, item 2): what `track` accepts and what `close_all` does
//! with it. Only `Trackable` types are tracked (a lying safe `AsFd` is a
//! compile error: see the `compile_fail` doctest on `Trackable`); std's
//! descriptor types are trackable unchanged; the kind a type declares steers
//! `close_all`: no `shutdown` for `NotSocket`, `shutdown` only (no swap) for
//! `RegisteredSocket`, nothing (and an error) for `RegisteredOther`.

mod util;

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};

use fdtable::{FdKind, FdTable, Trackable};
use util::{identity, is_open};

static TABLE: FdTable = FdTable::new();

/// A socket registered with an async runtime, as a tokio integration would
/// declare it.
#[derive(Debug)]
struct RegisteredSocket(UnixStream);

impl AsFd for RegisteredSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

// SAFETY: owns exactly the descriptor `as_fd` borrows and hands it over;
// no method closes or replaces it.
unsafe impl Trackable for RegisteredSocket {
    const KIND: FdKind = FdKind::RegisteredSocket;
    fn into_owned_fd(self) -> OwnedFd {
        self.0.into()
    }
}

/// Any other descriptor registered with an async runtime (here a pipe end).
#[derive(Debug)]
struct RegisteredPipe(OwnedFd);

impl AsFd for RegisteredPipe {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

// SAFETY: as above.
unsafe impl Trackable for RegisteredPipe {
    const KIND: FdKind = FdKind::RegisteredOther;
    fn into_owned_fd(self) -> OwnedFd {
        self.0
    }
}

/// Whether the peer of a socket pair sees end-of-file (0 from a
/// non-blocking read) rather than "nothing yet" (`WouldBlock`).
fn peer_sees_eof(peer: &UnixStream) -> bool {
    peer.set_nonblocking(true).unwrap();
    match (&*peer).read(&mut [0u8; 1]) {
        Ok(0) => true,
        Ok(_) => panic!("unexpected data"),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => false,
        Err(e) => panic!("peer read: {e}"),
    }
}

#[test]
fn std_descriptor_types_are_trackable_with_their_kinds() {
    let _serial = util::serial();
    assert_eq!(<File as Trackable>::KIND, FdKind::NotSocket);
    assert_eq!(<OwnedFd as Trackable>::KIND, FdKind::Unknown);
    assert_eq!(<std::net::TcpStream as Trackable>::KIND, FdKind::Socket);
    assert_eq!(<std::net::TcpListener as Trackable>::KIND, FdKind::Socket);
    assert_eq!(<std::net::UdpSocket as Trackable>::KIND, FdKind::Socket);
    assert_eq!(<UnixStream as Trackable>::KIND, FdKind::Socket);
    assert_eq!(
        <std::os::unix::net::UnixListener as Trackable>::KIND,
        FdKind::Socket
    );
    assert_eq!(
        <std::os::unix::net::UnixDatagram as Trackable>::KIND,
        FdKind::Socket
    );
    assert_eq!(
        <std::process::ChildStdin as Trackable>::KIND,
        FdKind::NotSocket
    );
    assert_eq!(
        <std::process::ChildStdout as Trackable>::KIND,
        FdKind::NotSocket
    );
    assert_eq!(
        <std::process::ChildStderr as Trackable>::KIND,
        FdKind::NotSocket
    );
    assert_eq!(<std::io::PipeReader as Trackable>::KIND, FdKind::NotSocket);
    assert_eq!(<std::io::PipeWriter as Trackable>::KIND, FdKind::NotSocket);

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let stream = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let (reader, writer) = std::io::pipe().unwrap();
    let dgram = std::os::unix::net::UnixDatagram::unbound().unwrap();
    let fds = [
        TABLE.track(listener).unwrap().as_raw_fd(),
        TABLE.track(stream).unwrap().as_raw_fd(),
        TABLE.track(udp).unwrap().as_raw_fd(),
        TABLE.track(reader).unwrap().as_raw_fd(),
        TABLE.track(writer).unwrap().as_raw_fd(),
        TABLE.track(dgram).unwrap().as_raw_fd(),
    ];
    // Each handle was dropped at the end of its line: closed and unregistered.
    for fd in fds {
        assert!(!TABLE.contains(fd));
    }
    assert!(TABLE.is_empty());
}

/// `Tracked<T>` forwards `Read`/`Write` where `T` (not only `&T`) has them:
/// a child's stdout reads through its handle, its stdin writes.
#[test]
fn tracked_child_stdio_reads_and_writes_through_the_handle() {
    let _serial = util::serial();
    let mut child = Command::new("cat")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn cat");
    let mut stdin = TABLE.track(child.stdin.take().unwrap()).unwrap();
    let mut stdout = TABLE.track(child.stdout.take().unwrap()).unwrap();
    stdin.write_all(b"through the table\n").unwrap();
    stdin.flush().unwrap();
    stdin.close().unwrap(); // cat sees end-of-file
    let mut out = String::new();
    stdout.read_to_string(&mut out).unwrap();
    assert_eq!(out, "through the table\n");
    drop(stdout);
    assert!(child.wait().unwrap().success());
    assert!(TABLE.is_empty());
}

/// `File` is `NotSocket`: `close_all` swaps it without a `shutdown`. A
/// `File` that wraps a socket shows it: the connection survives for another
/// descriptor of the same socket. Tracked as `OwnedFd` (`Unknown`, probed),
/// the same socket is shut down for every descriptor.
#[test]
fn close_all_shuts_down_unknown_and_socket_kinds_but_not_files() {
    let _serial = util::serial();
    for as_file in [true, false] {
        let (a, peer) = UnixStream::pair().unwrap();
        let clone = a.try_clone().unwrap();
        let fd = a.as_raw_fd();
        let owned = OwnedFd::from(a);
        let report = if as_file {
            let h = TABLE.track(File::from(owned)).unwrap();
            let report = TABLE.close_all();
            drop(h);
            report
        } else {
            let h = TABLE.track(owned).unwrap();
            let report = TABLE.close_all();
            drop(h);
            report
        };
        assert_eq!((report.released(), report.is_ok()), (1, true), "{report:?}");
        assert!(!is_open(fd));
        let wrote = (&clone).write(b"x");
        if as_file {
            // No shutdown: the other descriptor still talks to the peer.
            assert_eq!(wrote.unwrap(), 1);
            let mut byte = [0u8; 1];
            (&peer).read_exact(&mut byte).unwrap();
            assert_eq!(&byte, b"x");
        } else {
            assert!(wrote.is_err(), "an Unknown-kind socket was not shut down");
            assert!(peer_sees_eof(&peer));
        }
    }
    assert!(TABLE.is_empty());
}

/// `RegisteredSocket`: shut down (the peer sees end-of-file, the entry counts
/// as released and is no longer live) but never swapped: the number keeps
/// naming the same socket, as a reactor's registration requires.
#[test]
fn close_all_shuts_a_registered_socket_down_without_swapping_it() {
    let _serial = util::serial();
    let (a, peer) = UnixStream::pair().unwrap();
    let fd = a.as_raw_fd();
    let id = identity(fd).unwrap();
    let handle = TABLE.track(RegisteredSocket(a)).unwrap();
    let report = TABLE.close_all();
    assert_eq!(report.released(), 1, "{report:?}");
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(identity(fd), Some(id), "the registered number was swapped");
    assert!(peer_sees_eof(&peer), "the connection was not shut down");
    assert_eq!(TABLE.len(), 0, "a released entry still counts as live");
    assert!(TABLE.contains(fd), "the number must stay reserved");
    // A second close_all leaves it alone.
    let again = TABLE.close_all();
    assert_eq!((again.released(), again.is_ok()), (0, true));
    // The handle still owns the socket and closes it.
    drop(handle);
    assert!(!is_open(fd) && !TABLE.contains(fd));
    assert!(TABLE.is_empty());
}

/// `RegisteredOther`: left live and open, reported with a clear error.
#[test]
fn close_all_leaves_a_registered_other_open_and_reports_it() {
    let _serial = util::serial();
    let (r, w) = util::pipe();
    let fd = w.as_raw_fd();
    let id = identity(fd).unwrap();
    let handle = TABLE.track(RegisteredPipe(w)).unwrap();
    let file = TABLE.track(File::open("/dev/zero").unwrap()).unwrap();
    let report = TABLE.close_all();
    assert_eq!(report.released(), 1, "the File is still released");
    let errors = report.errors();
    assert_eq!(errors.len(), 1, "{report:?}");
    let (bad, error) = &errors[0];
    assert_eq!(*bad, fd);
    assert_eq!(error.kind(), io::ErrorKind::ResourceBusy);
    let message = error.to_string();
    assert!(
        message.contains(&format!("fd {fd}")) && message.contains("async runtime"),
        "{message}"
    );
    assert_eq!(identity(fd), Some(id), "a RegisteredOther was swapped");
    assert_eq!(TABLE.len(), 1, "it stays live");
    // Still usable: the pipe works.
    // SAFETY: `fd` is open for the whole call (the handle owns it).
    let wrote = unsafe { libc::write(fd, b"y".as_ptr().cast(), 1) };
    assert_eq!(wrote, 1, "{}", io::Error::last_os_error());
    let mut byte = [0u8; 1];
    (&File::from(r)).read_exact(&mut byte).unwrap();
    assert_eq!(&byte, b"y");
    drop((handle, file));
    assert!(!is_open(fd));
    assert!(TABLE.is_empty());
}

/// A listening socket registered with an async runtime.
#[derive(Debug)]
struct RegisteredListener<L>(L);

impl<L: AsFd> AsFd for RegisteredListener<L> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

// SAFETY: as above (`L` is std's listener, which owns its descriptor).
unsafe impl<L: AsFd + Into<OwnedFd>> Trackable for RegisteredListener<L> {
    const KIND: FdKind = FdKind::RegisteredSocket;
    fn into_owned_fd(self) -> OwnedFd {
        self.0.into()
    }
}

/// Table review finding 10: what `shutdown(2)` does to a *listening*
/// `RegisteredSocket`, as `FdKind`'s docs say. A Unix listener refuses new
/// connections but still hands out one queued before `close_all`; a TCP
/// listener stops listening: new connections are refused, queued ones are
/// reset, and `accept` fails.
#[test]
fn close_all_on_registered_listeners_does_what_the_docs_say() {
    use std::net::{TcpListener, TcpStream};
    use std::os::unix::net::UnixListener;
    let _serial = util::serial();
    let dir = std::env::temp_dir().join(format!("fdtable-listener-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("socket");

    let unix = TABLE
        .track(RegisteredListener(UnixListener::bind(&path).unwrap()))
        .unwrap();
    let mut queued = UnixStream::connect(&path).unwrap();
    let tcp = TABLE
        .track(RegisteredListener(
            TcpListener::bind("127.0.0.1:0").unwrap(),
        ))
        .unwrap();
    let address = tcp.0.local_addr().unwrap();
    let mut tcp_queued = TcpStream::connect(address).unwrap();

    let report = TABLE.close_all();
    assert_eq!((report.released(), report.is_ok()), (2, true), "{report:?}");

    // Unix: new connections refused, the queued one still handed out.
    let late = UnixStream::connect(&path).map(drop);
    assert_eq!(
        late.map_err(|e| e.kind()),
        Err(io::ErrorKind::ConnectionRefused),
        "a Unix listener accepted a new connection after close_all"
    );
    unix.0.set_nonblocking(true).unwrap();
    let (mut accepted, _) = unix
        .0
        .accept()
        .expect("the connection queued before close_all is still handed out");
    queued.write_all(b"hi").unwrap();
    let mut buf = [0u8; 2];
    accepted.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"hi");

    // TCP: no longer listening; the queued connection is reset.
    assert!(
        TcpStream::connect(address).is_err(),
        "a TCP listener accepted a new connection after close_all"
    );
    tcp.0.set_nonblocking(true).unwrap();
    assert!(tcp.0.accept().is_err(), "a TCP listener still accepts");
    tcp_queued
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let read = tcp_queued.read(&mut buf);
    assert!(
        matches!(&read, Err(e) if e.kind() == io::ErrorKind::ConnectionReset),
        "the queued TCP connection was not reset: {read:?}"
    );

    drop((unix, tcp, accepted));
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(TABLE.is_empty());
}
