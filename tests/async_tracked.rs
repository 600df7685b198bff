//! Issue 11, items 3 and 5 (feature `tokio`): tokio's descriptor types are
//! `Trackable` with the `Registered*` kinds, a `Tracked` tokio value is used
//! like the value (`AsyncRead`/`AsyncWrite` forwarded, `&self` methods
//! through `Deref`, never `&mut T`), closing one deregisters it from the
//! reactor and closes it through the table, a conversion that loses the
//! descriptor is unregistered without a second close, and `CommandExt`
//! works on `tokio::process::Command`.

mod util;

use std::io::{self, IoSlice};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::process::Stdio;
use std::time::Duration;

use fdtable::{ChildFds, CommandExt, FdKind, FdTable, Trackable};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::net::{TcpListener, TcpStream, UdpSocket, UnixDatagram, UnixListener, UnixStream};
use tokio::process::{ChildStderr, ChildStdin, ChildStdout, Command};
use util::{identity, is_open};

static TABLE: FdTable = FdTable::new();

/// Generous bound for anything that should be instant.
const PROMPTLY: Duration = Duration::from_secs(30);

/// Run `test` on a multi-thread runtime (2 workers), serialised with the
/// other tests of this binary: they check that numbers are closed, and a
/// parallel test could otherwise reopen one in between.
fn multi_thread<F: std::future::Future>(test: F) -> F::Output {
    let _serial = util::serial();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(test)
}

/// [`multi_thread`] on a current-thread runtime.
fn current_thread<F: std::future::Future>(test: F) -> F::Output {
    let _serial = util::serial();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(test)
}

async fn bounded<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(PROMPTLY, future)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {PROMPTLY:?}"))
}

/// Close through the table, then check the number is gone from both the
/// table and the process.
fn close_and_check<T: Trackable>(tracked: fdtable::Tracked<'static, T>) {
    let fd = tracked.as_raw_fd();
    assert!(TABLE.contains(fd));
    tracked.close().expect("close");
    assert!(!TABLE.contains(fd), "fd {fd} still tracked");
    assert!(!is_open(fd), "fd {fd} still open after close");
}

#[test]
fn every_tokio_descriptor_type_declares_the_kind_that_keeps_its_registration() {
    // Sockets whose shutdown wakes a waiting task with EOF or an error.
    assert_eq!(TcpStream::KIND, FdKind::RegisteredSocket);
    assert_eq!(TcpListener::KIND, FdKind::RegisteredSocket);
    assert_eq!(UnixStream::KIND, FdKind::RegisteredSocket);
    // Sockets whose shutdown makes a waiting tokio task spin (see
    // tests/async_close_all.rs), and everything that is not a socket.
    assert_eq!(UdpSocket::KIND, FdKind::RegisteredOther);
    assert_eq!(UnixDatagram::KIND, FdKind::RegisteredOther);
    assert_eq!(UnixListener::KIND, FdKind::RegisteredOther);
    assert_eq!(pipe::Sender::KIND, FdKind::RegisteredOther);
    assert_eq!(pipe::Receiver::KIND, FdKind::RegisteredOther);
    assert_eq!(ChildStdin::KIND, FdKind::RegisteredOther);
    assert_eq!(ChildStdout::KIND, FdKind::RegisteredOther);
    assert_eq!(ChildStderr::KIND, FdKind::RegisteredOther);
}

#[test]
fn every_tokio_descriptor_type_tracks_and_closes_through_the_table() {
    multi_thread(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        close_and_check(TABLE.track(client.unwrap()).unwrap());
        close_and_check(TABLE.track(accepted.unwrap().0).unwrap());
        close_and_check(TABLE.track(listener).unwrap());
        close_and_check(
            TABLE
                .track(UdpSocket::bind("127.0.0.1:0").await.unwrap())
                .unwrap(),
        );

        let (a, b) = UnixStream::pair().unwrap();
        close_and_check(TABLE.track(a).unwrap());
        close_and_check(TABLE.track(b).unwrap());
        let (a, b) = UnixDatagram::pair().unwrap();
        close_and_check(TABLE.track(a).unwrap());
        close_and_check(TABLE.track(b).unwrap());
        let path = std::env::temp_dir().join(format!("fdtable-async-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let unix_listener = UnixListener::bind(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        close_and_check(TABLE.track(unix_listener).unwrap());

        let (tx, rx) = pipe::pipe().unwrap();
        close_and_check(TABLE.track(tx).unwrap());
        close_and_check(TABLE.track(rx).unwrap());

        let mut child = Command::new("cat")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        close_and_check(TABLE.track(child.stdin.take().unwrap()).unwrap());
        close_and_check(TABLE.track(child.stdout.take().unwrap()).unwrap());
        close_and_check(TABLE.track(child.stderr.take().unwrap()).unwrap());
        bounded("cat to exit", child.wait()).await.unwrap();
    });
}

#[test]
fn tracked_tokio_streams_forward_async_read_and_write() {
    current_thread(async {
        let (a, b) = UnixStream::pair().unwrap();
        let mut a = TABLE.track(a).unwrap();
        let mut b = TABLE.track(b).unwrap();
        a.write_all(b"ping").await.unwrap();
        let vectored = [IoSlice::new(b"-"), IoSlice::new(b"pong")];
        let n = a.write_vectored(&vectored).await.unwrap();
        assert!(n >= 1);
        let mut buf = vec![0u8; 4 + n];
        bounded("read", b.read_exact(&mut buf)).await.unwrap();
        assert_eq!(&buf[..4], b"ping");
        // `&self` methods reach the stream through `Deref`.
        b.writable().await.unwrap();
        assert!(a.peer_addr().is_ok());
        // `poll_shutdown` shuts the write side down: the peer reads EOF.
        a.shutdown().await.unwrap();
        let mut rest = Vec::new();
        bounded("read to EOF", b.read_to_end(&mut rest))
            .await
            .unwrap();
        assert_eq!(rest.len(), 5 - n);
        // Generic helpers that take `AsyncRead + AsyncWrite` take a `Tracked`.
        let (mut read_half, _write_half) = tokio::io::split(b);
        assert_eq!(read_half.read(&mut [0u8; 1]).await.unwrap(), 0);
        let b = read_half.unsplit(_write_half);
        close_and_check(b);
        close_and_check(a);
    });
}

#[test]
fn tracked_child_stdio_and_pipes_read_and_write_without_get_unchecked_mut() {
    multi_thread(async {
        let mut child = Command::new("cat")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = TABLE.track(child.stdin.take().unwrap()).unwrap();
        let mut stdout = TABLE.track(child.stdout.take().unwrap()).unwrap();
        stdin.write_all(b"through cat\n").await.unwrap();
        stdin.flush().await.unwrap();
        stdin.close().unwrap(); // cat sees EOF
        let mut out = String::new();
        bounded("cat's output", stdout.read_to_string(&mut out))
            .await
            .unwrap();
        assert_eq!(out, "through cat\n");
        bounded("cat to exit", child.wait()).await.unwrap();
        close_and_check(stdout);

        let (tx, rx) = pipe::pipe().unwrap();
        let mut tx = TABLE.track(tx).unwrap();
        let mut rx = TABLE.track(rx).unwrap();
        tx.write_all(b"pipe").await.unwrap();
        let mut buf = [0u8; 4];
        bounded("pipe read", rx.read_exact(&mut buf)).await.unwrap();
        assert_eq!(&buf, b"pipe");
        close_and_check(tx);
        let mut rest = Vec::new();
        bounded("pipe EOF", rx.read_to_end(&mut rest))
            .await
            .unwrap();
        close_and_check(rx);
    });
}

#[test]
fn into_inner_hands_back_a_value_still_registered_with_the_runtime() {
    current_thread(async {
        let (a, b) = UnixStream::pair().unwrap();
        let a = TABLE.track(a).unwrap();
        let fd = a.as_raw_fd();
        let mut a = a.into_inner();
        assert!(!TABLE.contains(fd));
        let mut b = TABLE.track(b).unwrap();
        b.write_all(b"x").await.unwrap();
        let mut byte = [0u8; 1];
        bounded("read after into_inner", a.read_exact(&mut byte))
            .await
            .unwrap();
        // And it can be tracked again.
        close_and_check(TABLE.track(a).unwrap());
        close_and_check(b);
    });
}

/// `dup2` a file over `fd`, as code that closes numbers it does not own
/// might: the number no longer names the file tokio registered.
fn replace_behind_its_back(fd: RawFd) {
    let null = util::dev_null();
    // SAFETY: dup2 onto a number this test owns through a tracked value; the
    // test breaks that value's contract on purpose.
    assert_eq!(unsafe { libc::dup2(null.as_raw_fd(), fd) }, fd);
}

#[test]
fn a_number_replaced_behind_tokios_back_is_unregistered_not_closed_again() {
    current_thread(async {
        // close(): tokio cannot deregister the number (it names /dev/null now),
        // closes it itself and says why; the table unregisters the entry
        // without closing the number a second time and returns the error.
        let (a, b) = UnixStream::pair().unwrap();
        let a = TABLE.track(a).unwrap();
        let fd = a.as_raw_fd();
        replace_behind_its_back(fd);
        let error = a.close().expect_err("deregistration of a replaced number");
        assert_ne!(error.kind(), io::ErrorKind::Other, "{error}");
        assert!(!TABLE.contains(fd), "the entry must be unregistered");
        assert!(
            !is_open(fd),
            "tokio closes the number it could not deregister"
        );

        // drop: the same, with the error counted.
        let b = TABLE.track(b).unwrap();
        let fd = b.as_raw_fd();
        let swallowed = TABLE.swallowed_close_errors();
        replace_behind_its_back(fd);
        drop(b);
        assert!(!TABLE.contains(fd));
        assert!(!is_open(fd));
        assert_eq!(TABLE.swallowed_close_errors(), swallowed + 1);
    });
}

#[test]
fn a_tracked_tokio_value_outliving_its_runtime_still_closes_cleanly() {
    let _serial = util::serial();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_io()
        .build()
        .unwrap();
    let (a, b) = runtime.block_on(async { UnixStream::pair().unwrap() });
    let a = TABLE.track(a).unwrap();
    let fd = a.as_raw_fd();
    let swallowed = TABLE.swallowed_close_errors();
    drop(runtime);
    // The reactor's handle lives as long as a registration does, so
    // deregistering still works: a plain close, no error.
    a.close().unwrap();
    assert!(!is_open(fd));
    let b = TABLE.track(b).unwrap();
    let fd = b.as_raw_fd();
    drop(b);
    assert!(!is_open(fd));
    assert_eq!(TABLE.swallowed_close_errors(), swallowed);
}

#[test]
fn into_owned_fd_called_directly_panics_when_the_descriptor_is_lost() {
    let _serial = util::serial();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    let a = runtime.block_on(async { UnixStream::pair().unwrap().0 });
    replace_behind_its_back(a.as_raw_fd());
    let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _: OwnedFd = Trackable::into_owned_fd(a);
    }))
    .expect_err("a lost descriptor cannot be handed over");
    let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(message.contains("could not deregister"), "{message}");
}

// ---------------------------------------------------------------------------
// CommandExt on tokio::process::Command
// ---------------------------------------------------------------------------

/// The child's `/proc/self/fd` listing, as numbers.
async fn listed_fds(command: &mut Command) -> Vec<RawFd> {
    let out = bounded("ls", command.arg("/proc/self/fd").output())
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let mut fds: Vec<RawFd> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    fds.sort_unstable();
    fds
}

#[test]
fn command_ext_on_tokio_command_passes_closes_and_keeps() {
    multi_thread(async {
        let secret = TABLE.track(util::dev_null()).unwrap();
        let kept = TABLE.track(util::dev_null()).unwrap();
        let (passed, _peer) = UnixStream::pair().unwrap();
        let passed = TABLE.track(passed).unwrap();
        let leaky = util::dev_null();
        // Inheritable on purpose, as a careless library might leave one.
        // SAFETY: F_SETFD on a descriptor this test owns.
        assert_eq!(
            unsafe { libc::fcntl(leaky.as_raw_fd(), libc::F_SETFD, 0) },
            0
        );

        // pass_fd + close_other_fds + close_tracked_fds: 0-2, ls's own
        // directory descriptor, and the passed socket at 5. Nothing else.
        let fds = listed_fds(
            Command::new("ls").child_fds(
                ChildFds::new()
                    .pass_fd(passed.as_fd(), 5)
                    .unwrap()
                    .close_other_fds()
                    .close_tracked_fds(&TABLE),
            ),
        )
        .await;
        assert_eq!(fds, [0, 1, 2, 3, 5]);

        // A tracked number kept at its own number is inherited, the other
        // tracked ones are not, even one whose flag was cleared behind the
        // table's back.
        // SAFETY: F_SETFD on a tracked descriptor this test owns.
        assert_eq!(
            unsafe { libc::fcntl(secret.as_raw_fd(), libc::F_SETFD, 0) },
            0
        );
        let fds = listed_fds(
            Command::new("ls").child_fds(
                ChildFds::new()
                    .pass_fd(kept.as_fd(), kept.as_raw_fd())
                    .unwrap()
                    .close_tracked_fds(&TABLE),
            ),
        )
        .await;
        assert!(fds.contains(&kept.as_raw_fd()), "{fds:?}");
        assert!(!fds.contains(&secret.as_raw_fd()), "{fds:?}");
        assert!(!fds.contains(&passed.as_raw_fd()), "{fds:?}");

        // The hook-free close_tracked_fds relies on FD_CLOEXEC: the tracked
        // descriptors whose flag `track` set do not reach the program.
        // SAFETY: F_SETFD on a tracked descriptor this test owns.
        assert_eq!(
            unsafe { libc::fcntl(secret.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) },
            0
        );
        let fds = listed_fds(Command::new("ls").close_tracked_fds(&TABLE)).await;
        assert!(!fds.contains(&secret.as_raw_fd()), "{fds:?}");
        assert!(!fds.contains(&kept.as_raw_fd()), "{fds:?}");

        // Nothing of ours was touched in the parent.
        for fd in [&secret, &kept] {
            assert!(identity(fd.as_raw_fd()).is_some());
        }
        // A child_fd given twice is refused at configuration time.
        let error = ChildFds::new()
            .pass_fd(passed.as_fd(), 7)
            .unwrap()
            .pass_fd(passed.as_fd(), 7)
            .unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
        drop((secret, kept, passed));
    });
}

/// A fork child shares the runtime's epoll instance with the parent. After
/// `retire_all_in_child`, dropping the retired tokio handles there must not
/// deregister the parent's registrations (the numbers name the placeholder,
/// so tokio's `EPOLL_CTL_DEL` misses): the parent's reads still wake.
#[test]
fn a_fork_child_dropping_retired_tokio_handles_leaves_the_parent_registered() {
    current_thread(async {
        let (ours, mut peer) = UnixStream::pair().unwrap();
        let mut ours = TABLE.track(ours).unwrap();
        // A read that waits once, so the socket is armed in epoll.
        let waited =
            tokio::time::timeout(Duration::from_millis(20), ours.read(&mut [0u8; 1])).await;
        assert!(waited.is_err(), "nothing was written yet");
        let slot = std::cell::RefCell::new(Some(ours));
        let code = util::in_fork(PROMPTLY, || {
            // SAFETY: a fork child; nothing else uses TABLE here.
            if unsafe { TABLE.retire_all_in_child(&[]) }.is_err() {
                return 1;
            }
            // Not async-signal-safe, but this runtime's driver is only ever
            // used by the forking thread, and the deregistration fails
            // before tokio takes any lock.
            drop(slot.borrow_mut().take());
            0
        });
        assert_eq!(code, 0);
        let mut ours = slot.into_inner().unwrap();
        peer.write_all(b"x").await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), ours.read(&mut [0u8; 1])).await;
        assert_eq!(
            got.expect("the parent's read never woke after the child dropped its retired copy")
                .unwrap(),
            1
        );
        drop((ours, peer));
    });
}
