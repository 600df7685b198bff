//! Issue 11, item 4 (feature `tokio`): `close_all` in an async program.
//!
//! Tasks awaiting I/O on tracked sockets whose shutdown wakes them
//! (`RegisteredSocket`: TCP listener, TCP stream, Unix stream) wake with
//! end-of-file or an error, and no number registered with tokio's reactor
//! is ever swapped: each keeps naming the same socket until its handle
//! drops. Tasks awaiting the other registered descriptors (pipes, child
//! stdio, datagram sockets, Unix listeners: `RegisteredOther`) are left
//! exactly as they were: reported, not swapped, not shut down, still
//! pending, and the runtime stays responsive (a shutdown would make a
//! datagram or Unix-listener task spin forever); the program cancels them
//! and drops their handles.

mod util;

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fdtable::FdTable;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::net::{TcpListener, TcpStream, UdpSocket, UnixDatagram, UnixListener, UnixStream};
use tokio::process::Command;
use util::{identity, is_open};

/// Generous bound for anything that should be prompt (the target is
/// 100 ms; the measured latencies are printed, not asserted).
const PROMPTLY: Duration = Duration::from_secs(30);

/// `(number, (st_dev, st_ino))` of each descriptor.
fn identities(fds: &[RawFd]) -> Vec<(RawFd, Option<(u64, u64)>)> {
    fds.iter().map(|&fd| (fd, identity(fd))).collect()
}

#[test]
fn close_all_wakes_tasks_awaiting_tracked_sockets_and_swaps_no_registered_number() {
    static TABLE: FdTable = FdTable::new();
    let _serial = util::serial();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let latencies = util::within(PROMPTLY * 2, "close_all over tokio sockets", move || {
        runtime.block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let (reader, server_side) = tokio::join!(TcpStream::connect(addr), listener.accept());
            let (writer, writer_peer) = tokio::join!(TcpStream::connect(addr), listener.accept());
            let (_server_side, _writer_peer) = (server_side.unwrap(), writer_peer.unwrap());
            let (unix, _unix_peer) = UnixStream::pair().unwrap();

            let listener = TABLE.track(listener).unwrap();
            let mut reader = TABLE.track(reader.unwrap()).unwrap();
            let mut writer = TABLE.track(writer.unwrap()).unwrap();
            let mut unix = TABLE.track(unix).unwrap();
            let fds = [
                listener.as_raw_fd(),
                reader.as_raw_fd(),
                writer.as_raw_fd(),
                unix.as_raw_fd(),
            ];
            let before = identities(&fds);

            // Each task says when it is about to block, and gives its
            // handle back when it ends (so the numbers can be checked after).
            let (started_tx, mut started) = tokio::sync::mpsc::channel(4);
            let go = started_tx.clone();
            let accept = tokio::spawn(async move {
                go.send(()).await.unwrap();
                let result = listener.accept().await.map(drop);
                (
                    format!("{result:?}"),
                    result.is_err(),
                    identity(listener.as_raw_fd()),
                )
            });
            let go = started_tx.clone();
            let tcp_read = tokio::spawn(async move {
                go.send(()).await.unwrap();
                let result = reader.read(&mut [0u8; 64]).await;
                (
                    format!("{result:?}"),
                    matches!(result, Ok(0)),
                    identity(reader.as_raw_fd()),
                )
            });
            let go = started_tx.clone();
            let tcp_write = tokio::spawn(async move {
                go.send(()).await.unwrap();
                // The peer never reads: this blocks once the buffers fill.
                let chunk = vec![0u8; 1 << 20];
                let result = async {
                    for _ in 0..1024 {
                        writer.write_all(&chunk).await?;
                    }
                    Ok::<_, io::Error>(())
                }
                .await;
                (
                    format!("{result:?}"),
                    result.is_err(),
                    identity(writer.as_raw_fd()),
                )
            });
            let go = started_tx;
            let unix_read = tokio::spawn(async move {
                go.send(()).await.unwrap();
                let result = unix.read(&mut [0u8; 64]).await;
                (
                    format!("{result:?}"),
                    matches!(result, Ok(0)),
                    identity(unix.as_raw_fd()),
                )
            });
            for _ in 0..4 {
                started.recv().await.unwrap();
            }
            // Let each reach its await (an earlier close_all would end them
            // the same way; this makes them really wait first).
            tokio::time::sleep(Duration::from_millis(100)).await;
            for task in [&accept, &tcp_read, &tcp_write, &unix_read] {
                assert!(!task.is_finished(), "a task ended before close_all");
            }

            assert_eq!(TABLE.len(), 4);
            let start = Instant::now();
            let report = TABLE.close_all();
            assert!(report.is_ok(), "{:?}", report.errors());
            // Every entry left the live count, and each one counts: a task
            // woken by one shutdown may drop (close) its handle while
            // close_all still pins that entry, released all the same.
            assert_eq!(TABLE.len(), 0);
            assert_eq!(report.released(), 4);
            let mut latencies = Vec::new();
            for ((name, task), (fd, id_before)) in [
                ("accept", accept),
                ("tcp read", tcp_read),
                ("tcp write", tcp_write),
                ("unix read", unix_read),
            ]
            .into_iter()
            .zip(before)
            {
                let (result, as_expected, id_when_woken) = tokio::time::timeout(PROMPTLY, task)
                    .await
                    .unwrap_or_else(|_| panic!("{name}: not woken by close_all"))
                    .unwrap();
                latencies.push((name, start.elapsed()));
                assert!(as_expected, "{name}: {result}");
                // Shut down, not swapped: the number still named the same
                // socket when the task woke (its handle drops only now).
                assert!(id_before.is_some());
                assert_eq!(id_when_woken, id_before, "{name}: fd {fd} was swapped");
            }
            latencies
        })
    });
    // Printed for the record; the target is 100 ms.
    eprintln!("wake latency after close_all: {latencies:?}");
    assert!(TABLE.is_empty(), "the handles closed as the tasks ended");
}

#[test]
fn close_all_never_swaps_a_socket_number_under_tokio() {
    static TABLE: FdTable = FdTable::new();
    let _serial = util::serial();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (stream, _peer) = UnixStream::pair().unwrap();
        let listener = TABLE.track(listener).unwrap();
        let stream = TABLE.track(stream).unwrap();
        let fds = [listener.as_raw_fd(), stream.as_raw_fd()];
        let before = identities(&fds);
        let report = TABLE.close_all();
        assert_eq!(report.released(), 2);
        // The same socket at each number, while the handles live.
        assert_eq!(identities(&fds), before);
        assert_ne!(
            before[0].1,
            Some(util::placeholder_identity()),
            "not the placeholder"
        );
        // And the handles close them (tokio deregisters first: no error).
        listener.close().unwrap();
        stream.close().unwrap();
        for fd in fds {
            assert!(!is_open(fd), "fd {fd} still open");
        }
    });
}

#[test]
fn close_all_reports_registered_others_leaves_them_alone_and_they_close_after_cancel() {
    static TABLE: FdTable = FdTable::new();
    let _serial = util::serial();
    // A current-thread runtime: a task spinning in a poll would stop every
    // other task on it, the heartbeat included, and `within` would report a
    // hang instead of the test hanging.
    util::within(PROMPTLY * 2, "registered others under close_all", || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let (tx, rx) = pipe::pipe().unwrap();
            let mut cat = Command::new("cat")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            let cat_stdin = cat.stdin.take().unwrap();
            let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let (datagram, _datagram_peer) = UnixDatagram::pair().unwrap();
            let path = std::env::temp_dir()
                .join(format!("fdtable-async-close-{}.sock", std::process::id()));
            let _ = std::fs::remove_file(&path);
            let unix_listener = UnixListener::bind(&path).unwrap();
            std::fs::remove_file(&path).unwrap();

            let _tx = TABLE.track(tx).unwrap(); // keeps the pipe open
            let mut rx = TABLE.track(rx).unwrap();
            let mut stdout = TABLE.track(cat.stdout.take().unwrap()).unwrap();
            let udp = TABLE.track(udp).unwrap();
            let datagram = TABLE.track(datagram).unwrap();
            let unix_listener = TABLE.track(unix_listener).unwrap();
            let mut fds = vec![
                _tx.as_raw_fd(),
                rx.as_raw_fd(),
                stdout.as_raw_fd(),
                udp.as_raw_fd(),
                datagram.as_raw_fd(),
                unix_listener.as_raw_fd(),
            ];
            fds.sort_unstable();
            let before = identities(&fds);

            let beats = Arc::new(AtomicU64::new(0));
            let beat = Arc::clone(&beats);
            let heartbeat = tokio::spawn(async move {
                loop {
                    beat.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            });
            let (done_tx, mut done) = tokio::sync::mpsc::unbounded_channel::<&str>();
            let d = done_tx.clone();
            let pipe_read = tokio::spawn(async move {
                let _ = rx.read(&mut [0u8; 8]).await;
                d.send("pipe").unwrap();
            });
            let d = done_tx.clone();
            let stdout_read = tokio::spawn(async move {
                let _ = stdout.read(&mut [0u8; 8]).await;
                d.send("child stdout").unwrap();
            });
            let d = done_tx.clone();
            let udp_recv = tokio::spawn(async move {
                let _ = udp.recv_from(&mut [0u8; 8]).await;
                d.send("udp").unwrap();
            });
            let d = done_tx.clone();
            let datagram_recv = tokio::spawn(async move {
                let _ = datagram.recv(&mut [0u8; 8]).await;
                d.send("unix datagram").unwrap();
            });
            let d = done_tx;
            let accept = tokio::spawn(async move {
                let _ = unix_listener.accept().await;
                d.send("unix accept").unwrap();
            });
            tokio::time::sleep(Duration::from_millis(100)).await;

            let report = TABLE.close_all();
            assert_eq!(report.released(), 0);
            let mut reported: Vec<RawFd> = report.errors().iter().map(|(fd, _)| *fd).collect();
            reported.sort_unstable();
            assert_eq!(reported, fds, "every registered other is reported");
            for (fd, error) in report.errors() {
                assert_eq!(
                    error.kind(),
                    io::ErrorKind::ResourceBusy,
                    "fd {fd}: {error}"
                );
            }
            // Left exactly as they were: no swap, no shutdown.
            assert_eq!(identities(&fds), before);
            assert_eq!(TABLE.len(), fds.len(), "still live, still tracked");

            // Nothing spins: the heartbeat goes on, and every task still
            // waits (none of them was woken into a retry loop).
            let beats_then = beats.load(Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(200)).await;
            assert!(
                beats.load(Ordering::SeqCst) > beats_then,
                "the runtime stalled"
            );
            assert!(done.try_recv().is_err(), "a task was woken");

            // The documented way out: cancel the tasks; their handles drop
            // with them and close through the table.
            for task in [pipe_read, stdout_read, udp_recv, datagram_recv, accept] {
                task.abort();
                let ended = tokio::time::timeout(PROMPTLY, task).await.expect("cancel");
                assert!(ended.unwrap_err().is_cancelled());
            }
            heartbeat.abort();
            drop(_tx);
            assert!(TABLE.is_empty(), "every handle closed");
            for fd in &fds {
                assert!(!is_open(*fd), "fd {fd} still open after its handle dropped");
            }
            drop(cat_stdin);
            tokio::time::timeout(PROMPTLY, cat.wait())
                .await
                .unwrap()
                .unwrap();
        });
    });
}

/// Issue 18, item 2: a tokio echo server with five clients printed
/// `released 3` after `close_all` while `len()` went from 5 to 0. Each
/// connection's task ends the moment its read sees the shutdown and drops
/// its handle, often while `close_all` still holds that entry; every one of
/// them was released, and `released()` must say so: exactly `CLIENTS`, round
/// after round.
#[test]
fn released_counts_every_connection_of_an_echo_server_whose_tasks_end_at_once() {
    const CLIENTS: usize = 5;
    static TABLE: FdTable = FdTable::new();
    let _serial = util::serial();
    let baseline = util::open_fd_count();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let rounds = util::within(PROMPTLY * 2, "echo server rounds", move || {
        runtime.block_on(async {
            let mut deadline = util::Deadline::new(Duration::from_secs(3), 100);
            let mut rounds = 0;
            while deadline.tick() {
                echo_round(&TABLE, CLIENTS).await;
                rounds += 1;
            }
            rounds
        })
    });
    eprintln!("{rounds} rounds of {CLIENTS} connections");
    assert!(rounds > 0);
    assert!(TABLE.is_empty());
    assert_eq!(util::open_fd_count(), baseline, "/proc/self/fd");
}

/// One round of the echo server: `clients` connections, each served by a
/// task that echoes until end of file and then ends (dropping its tracked
/// stream at once); then `close_all`, and the count.
async fn echo_round(table: &'static FdTable, clients: usize) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (serving_tx, mut serving) = tokio::sync::mpsc::channel(clients);
    let mut tasks = Vec::new();
    let mut peers = Vec::new();
    for _ in 0..clients {
        let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let mut stream = table.track(accepted.unwrap().0).unwrap();
        let serving = serving_tx.clone();
        tasks.push(tokio::spawn(async move {
            serving.send(()).await.unwrap();
            let mut buf = [0u8; 256];
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if stream.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                }
            }
            // `stream` drops here, the moment the shutdown is seen.
        }));
        let mut client = client.unwrap();
        client.write_all(b"ping").await.unwrap();
        let mut echo = [0u8; 4];
        client.read_exact(&mut echo).await.unwrap();
        assert_eq!(&echo, b"ping");
        peers.push(client);
    }
    for _ in 0..clients {
        serving.recv().await.unwrap();
    }
    assert_eq!(table.len(), clients);

    let report = table.close_all();
    assert!(report.is_ok(), "{:?}", report.errors());
    assert_eq!(
        report.released(),
        clients,
        "every connection was live when close_all reached it and was released"
    );
    for task in tasks {
        tokio::time::timeout(PROMPTLY, task)
            .await
            .expect("a task was not woken by close_all")
            .unwrap();
    }
    assert!(table.is_empty(), "len {}", table.len());
    for mut client in peers {
        let n = tokio::time::timeout(PROMPTLY, client.read(&mut [0u8; 8]))
            .await
            .expect("the client saw no end of file");
        assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    }
}
