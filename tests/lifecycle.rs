//! Handle lifecycles (I1, H8, close_all of section 4.3): handles dropped at
//! teardown (thread-local destructors, `atexit`), handles used through
//! `Deref`, `close_all` releasing files at once while keeping their numbers
//! reserved, and nothing leaking after many cycles.

mod util;

use std::cell::RefCell;
use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::Mutex;
use std::time::Duration;

use fdtable::{FdTable, Tracked};
use util::{identity, is_open, Deadline};

static TABLE: FdTable = FdTable::new();

#[test]
fn handle_dropped_from_a_thread_local_destructor_closes_and_unregisters() {
    let _serial = util::serial();
    thread_local! {
        static HELD: RefCell<Vec<Tracked<'static, File>>> = const { RefCell::new(Vec::new()) };
    }
    let fds = std::thread::spawn(|| {
        let mut fds = Vec::new();
        for _ in 0..3 {
            let h = TABLE.track(util::dev_null()).unwrap();
            fds.push(h.as_raw_fd());
            HELD.with(|held| held.borrow_mut().push(h));
        }
        // Also leave a walk's worth of thread-local state behind.
        TABLE.for_each(|_| {});
        fds
    })
    .join()
    .expect("thread with a tracked handle in a TLS destructor");
    for fd in fds {
        assert!(
            !TABLE.contains(fd),
            "H8: TLS destructor left fd {fd} registered"
        );
        assert!(!is_open(fd), "H8: TLS destructor did not close fd {fd}");
    }
    assert!(TABLE.is_empty());
    assert_eq!(TABLE.swallowed_close_errors(), 0);
}

const ATEXIT_ENV: &str = "FDTABLE_TEST_ATEXIT_CHILD";
static AT_EXIT: Mutex<Option<Tracked<'static, File>>> = Mutex::new(None);

extern "C" fn drop_at_exit() {
    let held = AT_EXIT.lock().ok().and_then(|mut h| h.take());
    let msg: &[u8] = match held {
        Some(h) => {
            let fd = h.as_raw_fd();
            drop(h);
            if !is_open(fd) && !TABLE.contains(fd) && TABLE.is_empty() {
                b"\nATEXIT-OK\n"
            } else {
                b"\nATEXIT-BAD\n"
            }
        }
        None => b"\nATEXIT-MISSING\n",
    };
    // SAFETY: writes a static buffer to stdout; no Rust stdout machinery,
    // which may already be torn down at exit.
    unsafe { libc::write(1, msg.as_ptr().cast(), msg.len()) };
}

/// Runs only in the child spawned by the test below (otherwise a no-op):
/// parks a handle in a static and drops it from an `atexit` handler, after
/// the test harness's `main` has returned.
#[test]
fn child_process_helper_drops_a_handle_at_exit() {
    if std::env::var_os(ATEXIT_ENV).is_none() {
        return;
    }
    let h = TABLE.track(util::dev_null()).unwrap();
    *AT_EXIT.lock().unwrap() = Some(h);
    // SAFETY: registers a plain extern "C" function.
    assert_eq!(unsafe { libc::atexit(drop_at_exit) }, 0);
}

#[test]
fn handle_dropped_in_atexit_after_main_returns_closes_cleanly() {
    let _serial = util::serial();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_process_helper_drops_a_handle_at_exit",
            "--test-threads=1",
            "--nocapture",
        ])
        .env(ATEXIT_ENV, "1")
        .output()
        .expect("spawn the test binary");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed: {:?}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("ATEXIT-OK"), "H8 at exit: {stdout}");
}

#[test]
fn tracked_file_and_unix_stream_are_used_through_deref() {
    let _serial = util::serial();
    let path = std::env::temp_dir().join(format!("fdtable-deref-{}", std::process::id()));
    let file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    let mut file = TABLE.track(file).unwrap();
    file.write_all(b"hello tracked").unwrap();
    file.rewind().unwrap();
    let mut text = String::new();
    file.read_to_string(&mut text).unwrap();
    assert_eq!(text, "hello tracked");
    assert!(format!("{file:?}").contains(&file.as_raw_fd().to_string()));
    file.close().unwrap();
    std::fs::remove_file(&path).unwrap();

    let (a, b) = UnixStream::pair().unwrap();
    let mut a = TABLE.track(a).unwrap();
    let mut b = TABLE.track(b).unwrap();
    a.write_all(b"ping").unwrap();
    let mut buf = [0; 4];
    b.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ping");
    b.set_nonblocking(true).unwrap(); // &UnixStream methods through Deref
    drop(a);
    assert_eq!(b.read(&mut buf).unwrap(), 0, "peer closed: EOF");
    let b: UnixStream = b.into_inner();
    assert!(is_open(b.as_raw_fd()) && !TABLE.contains(b.as_raw_fd()));
    drop(b);
    assert!(TABLE.is_empty());
}

fn set_nonblocking(fd: RawFd) {
    // SAFETY: F_GETFL/F_SETFL on a descriptor we own.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        assert!(libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK) == 0);
    }
}

fn read_raw(fd: RawFd) -> io::Result<usize> {
    let mut buf = [0u8; 16];
    // SAFETY: `buf` is a valid writable buffer of the given length.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

#[test]
fn close_all_releases_the_file_at_once_so_a_pipe_reader_sees_eof() {
    let _serial = util::serial();
    let (r, w) = util::pipe();
    set_nonblocking(r.as_raw_fd());
    let w = TABLE.track(w).unwrap();
    assert_eq!(
        read_raw(r.as_raw_fd()).unwrap_err().kind(),
        io::ErrorKind::WouldBlock,
        "writer open: no EOF yet"
    );
    let report = TABLE.close_all();
    assert_eq!(report.released(), 1);
    assert!(report.is_ok(), "{report:?}");
    // The handle is still alive, yet the pipe's write end is gone.
    assert_eq!(
        read_raw(r.as_raw_fd()).unwrap(),
        0,
        "reader did not see EOF"
    );
    drop(w);
    assert!(TABLE.is_empty());
}

#[test]
fn close_all_keeps_the_number_reserved_until_the_handle_drops() {
    let _serial = util::serial();
    // A file of its own, to tell it from the placeholder.
    let mut file = TABLE.track(File::open("/dev/zero").unwrap()).unwrap();
    let fd = file.as_raw_fd();
    let id = identity(fd).unwrap();
    let report = TABLE.close_all();
    assert_eq!(report.released(), 1);
    assert_eq!(TABLE.len(), 0, "retired entries are not live");
    assert!(TABLE.contains(fd), "retired number no longer reserved");
    assert!(
        is_open(fd),
        "number handed back to the kernel while the handle lives"
    );
    assert_ne!(identity(fd), Some(id), "the original file was not released");
    assert_ne!(
        util::fd_flags(fd).unwrap() & libc::FD_CLOEXEC,
        0,
        "placeholder leaks into exec"
    );
    // A new descriptor cannot get the reserved number.
    let probe = util::dev_null();
    // SAFETY: F_DUPFD_CLOEXEC makes a new descriptor >= fd that we own.
    let dup = unsafe { libc::fcntl(probe.as_raw_fd(), libc::F_DUPFD_CLOEXEC, fd) };
    assert!(dup > fd, "reserved number {fd} was reused ({dup})");
    // SAFETY: `dup` is ours.
    unsafe { libc::close(dup) };
    // I/O through the handle fails instead of hitting some other file.
    let err = file.write(b"x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EBADF), "{err}");
    assert!(file.read(&mut [0u8; 1]).is_err());
    // A second close_all has nothing left to release.
    assert_eq!(TABLE.close_all().released(), 0);
    // Tracking works again for other numbers meanwhile.
    let other = TABLE.track(util::dev_null()).unwrap();
    assert_ne!(other.as_raw_fd(), fd);
    assert_eq!(TABLE.len(), 1);
    drop(other);
    file.close().expect("closing the placeholder succeeds");
    assert!(!is_open(fd) && !TABLE.contains(fd));
    assert!(TABLE.is_empty());
    assert_eq!(TABLE.swallowed_close_errors(), 0);
}

#[test]
fn close_all_wakes_a_thread_blocked_reading_a_tracked_socket() {
    let _serial = util::serial();
    let (a, peer) = UnixStream::pair().unwrap();
    let a = TABLE.track(a).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        let reader = &*a;
        s.spawn(move || {
            tx.send(None).unwrap();
            let mut buf = [0u8; 8];
            tx.send(Some((&*reader).read(&mut buf).map_err(|e| e.kind())))
                .unwrap();
        });
        assert_eq!(rx.recv().unwrap(), None);
        // Let the reader block in read(2); no data will ever come.
        std::thread::sleep(Duration::from_millis(100));
        let report = TABLE.close_all();
        assert_eq!(report.released(), 1);
        match rx.recv_timeout(Duration::from_secs(5)) {
            Ok(Some(result)) => {
                assert!(matches!(result, Ok(0) | Err(_)), "{result:?}");
            }
            other => {
                // Unblock the reader so the scope can end, then fail.
                peer.shutdown(std::net::Shutdown::Both).unwrap();
                panic!("close_all did not wake the blocked reader: {other:?}");
            }
        }
    });
    // The untracked peer sees the tracked end gone too.
    let mut buf = [0u8; 1];
    assert_eq!((&peer).read(&mut buf).unwrap(), 0);
    drop(a);
    assert!(TABLE.is_empty());
}

/// I1: every tracked fd is closed exactly once by the time its handle goes,
/// whichever way it goes; the process's descriptor count returns to baseline.
#[test]
fn nothing_leaks_after_many_track_and_release_cycles() {
    let _serial = util::serial();
    let sentinels = util::Sentinels::open(2);
    let baseline = util::open_fd_count();
    let mut deadline = Deadline::new(Duration::from_secs(2), 3_000);
    let mut cycles = 0;
    while deadline.tick() {
        cycles += 1;
        let (r, w) = util::pipe();
        let (s1, s2) = UnixStream::pair().unwrap();
        let r = TABLE.track(r).unwrap();
        let w = TABLE.track(w).unwrap();
        let s1 = TABLE.track(s1).unwrap();
        let s2 = TABLE.track(s2).unwrap();
        let f = TABLE.track(util::dev_null()).unwrap();
        match cycles % 4 {
            0 => {
                r.close().unwrap();
                drop(w);
                drop(s1.into_inner());
                let _: OwnedFd = s2.into_inner().into();
                drop(f);
            }
            1 => {
                let mut all = [Some(r), Some(w)];
                TABLE.for_each(|_| all.iter_mut().for_each(|h| drop(h.take())));
                drop((s1, s2, f));
            }
            2 => {
                let _ = TABLE.close_all();
                drop((r, w, s1, s2));
                f.close().unwrap();
            }
            _ => drop((f, s2, s1, w, r)),
        }
        assert!(TABLE.is_empty());
    }
    assert!(cycles >= 100, "only {cycles} cycles");
    assert_eq!(util::open_fd_count(), baseline, "I1: descriptors leaked");
    assert_eq!(
        TABLE.swallowed_close_errors(),
        0,
        "a close failed (double close?)"
    );
    sentinels.check_and_close();
}
