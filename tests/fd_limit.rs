//! I9 (issue 9, item 3): cleanup works at the descriptor limit. With the
//! soft `RLIMIT_NOFILE` lowered and every number below it in use,
//! `close_all` and `retire_all_in_child` still release every entry: a
//! pipe's reader sees end-of-file and a socket's peer sees end-of-file. The
//! placeholder they swap in was opened by the first `track`, long before.
//!
//! Each test runs in a fork child (the limit is process-wide), which makes
//! only async-signal-safe calls and reports through its exit code.

mod util;

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use fdtable::FdTable;

static TABLE: FdTable = FdTable::new();

/// A pipe and a socket pair made with raw calls: `(reader, writer)`,
/// `(socket, peer)`, all close-on-exec. Async-signal-safe.
fn pipe_and_socket() -> Option<((OwnedFd, OwnedFd), (OwnedFd, OwnedFd))> {
    let mut p = [-1; 2];
    let mut s = [-1; 2];
    // SAFETY: valid two-element out-arrays.
    let ok = unsafe {
        libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) == 0
            && libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
                0,
                s.as_mut_ptr(),
            ) == 0
    };
    if !ok {
        return None;
    }
    // SAFETY: just created, owned by nobody else.
    unsafe {
        Some((
            (OwnedFd::from_raw_fd(p[0]), OwnedFd::from_raw_fd(p[1])),
            (OwnedFd::from_raw_fd(s[0]), OwnedFd::from_raw_fd(s[1])),
        ))
    }
}

/// Lower the soft `RLIMIT_NOFILE` to a little above `highest`, then open
/// `/dev/null` until the kernel says `EMFILE`. Returns whether the process
/// is now out of descriptors. Async-signal-safe; the descriptors it opens
/// are closed by `_exit`.
fn exhaust_descriptors(highest: RawFd) -> bool {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid out-pointer, then an in-pointer to a local.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return false;
        }
        limit.rlim_cur = (highest as libc::rlim_t + 16).min(limit.rlim_max);
        if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
            return false;
        }
    }
    for _ in 0..100_000 {
        // SAFETY: a path literal and flags.
        let fd = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
        if fd == -1 {
            return io::Error::last_os_error().raw_os_error() == Some(libc::EMFILE);
        }
    }
    false
}

/// Whether `fd` reads end-of-file now (0 from a non-blocking read), rather
/// than data or "nothing yet".
fn reads_eof(fd: RawFd) -> bool {
    // SAFETY: F_SETFL on an open descriptor; read into a one-byte local.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
        let mut byte = 0u8;
        libc::read(fd, (&mut byte as *mut u8).cast(), 1) == 0
    }
}

/// Exit codes of the children, for the parent's message.
const WHAT: &str = "1: setup, 2: could not reach EMFILE, 3: nothing or not everything \
                    released, 4: reported errors, 5: pipe reader saw no EOF, 6: socket \
                    peer saw no EOF, 7: still live, 8: retire failed, 9: inner fork";

#[test]
fn close_all_at_the_descriptor_limit_releases_every_entry() {
    let _serial = util::serial();
    let code = util::in_fork(Duration::from_secs(30), || {
        let Some(((reader, writer), (socket, peer))) = pipe_and_socket() else {
            return 1;
        };
        let Ok(file) = std::fs::File::open("/dev/zero") else {
            return 1;
        };
        let highest = [&reader, &writer, &socket, &peer]
            .iter()
            .map(|fd| fd.as_raw_fd())
            .chain([file.as_raw_fd()])
            .max()
            .unwrap_or(0);
        let (Ok(w), Ok(s), Ok(f)) = (
            TABLE.track(writer),
            TABLE.track(UnixStream::from(socket)),
            TABLE.track(file),
        ) else {
            return 1;
        };
        if !exhaust_descriptors(highest) {
            return 2;
        }
        let report = TABLE.close_all();
        if report.released() != 3 {
            return 3;
        }
        if !report.is_ok() {
            return 4;
        }
        if !reads_eof(reader.as_raw_fd()) {
            return 5;
        }
        if !reads_eof(peer.as_raw_fd()) {
            return 6;
        }
        if !TABLE.is_empty() {
            return 7;
        }
        drop((w, s, f));
        0
    });
    assert_eq!(code, 0, "{WHAT}");
}

/// The same for `retire_all_in_child` in a fork child that does not exec:
/// the entries are tracked in the parent (here a first child, single-
/// threaded), whose copies are closed before the second child, at the
/// limit, retires its own.
#[test]
fn retire_all_in_child_at_the_descriptor_limit_releases_every_entry() {
    let _serial = util::serial();
    let code = util::in_fork(Duration::from_secs(30), || {
        let Some(((reader, writer), (socket, peer))) = pipe_and_socket() else {
            return 1;
        };
        let mut go = [-1; 2];
        // SAFETY: a valid two-element out-array.
        if unsafe { libc::pipe2(go.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return 1;
        }
        let highest = [&reader, &writer, &socket, &peer]
            .iter()
            .map(|fd| fd.as_raw_fd())
            .chain(go)
            .max()
            .unwrap_or(0);
        let (Ok(w), Ok(s)) = (TABLE.track(writer), TABLE.track(UnixStream::from(socket))) else {
            return 1;
        };
        // SAFETY: this process is single-threaded (a fork child itself);
        // the grandchild makes only async-signal-safe calls until `_exit`.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let mut byte = 0u8;
            // SAFETY: blocks until the parent has closed its copies.
            if unsafe { libc::read(go[0], (&mut byte as *mut u8).cast(), 1) } != 1 {
                // SAFETY: ends the grandchild.
                unsafe { libc::_exit(1) };
            }
            let code = if !exhaust_descriptors(highest) {
                2
            } else {
                // SAFETY: a fork child; nothing else uses TABLE here.
                match unsafe { TABLE.retire_all_in_child(&[]) } {
                    Err(_) => 8,
                    Ok(n) if n != 2 => 3,
                    Ok(_) if !reads_eof(reader.as_raw_fd()) => 5,
                    Ok(_) if !reads_eof(peer.as_raw_fd()) => 6,
                    Ok(_) => 0,
                }
            };
            // SAFETY: ends the grandchild; its handles are never dropped.
            unsafe { libc::_exit(code) };
        }
        if pid < 0 {
            return 9;
        }
        // The grandchild's copies are now the only writer and socket end.
        drop((w, s));
        // SAFETY: one byte from a local to our pipe.
        unsafe { libc::write(go[1], b"g".as_ptr().cast(), 1) };
        match util::wait_child(pid, Duration::from_secs(20)) {
            Ok(util::ChildEnd::Exited(code)) => code,
            _ => 9,
        }
    });
    assert_eq!(code, 0, "{WHAT}");
}
