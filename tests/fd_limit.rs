//! I9 (issue 9, item 3): cleanup works at the descriptor limit. With the
//! soft `RLIMIT_NOFILE` lowered and every number below it in use,
//! `close_all` and `retire_all_in_child` still release every entry: a
//! pipe's reader sees end-of-file and a socket's peer sees end-of-file. The
//! placeholder they swap in was opened by the first `track`, long before.
//! Tracked numbers at or above a lowered soft limit cannot be swapped
//! (`dup3` refuses them): reported by number and limit (table review
//! finding 4). A first `track` that cannot open the placeholder says so
//! (finding 3).
//!
//! Each test runs in a fork child (the limit is process-wide), which makes
//! only async-signal-safe calls and reports through its exit code, or in a
//! helper process where it needs one whose placeholder is not open yet.

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
    if !(util::raw_pipe(&mut p) && util::raw_socketpair(libc::SOCK_STREAM, &mut s)) {
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
        if !util::raw_pipe(&mut go) {
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

/// Move `fd` to the lowest free number at or above `at` (close-on-exec).
/// Async-signal-safe.
fn move_up(fd: OwnedFd, at: RawFd) -> Option<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC on an open descriptor; the result is ours,
    // the old number closes when `fd` drops.
    let high = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, at) };
    // SAFETY: just created, ours.
    (high >= 0).then(|| unsafe { OwnedFd::from_raw_fd(high) })
}

/// Lower the soft `RLIMIT_NOFILE` to `to`. Async-signal-safe.
fn lower_soft_limit(to: libc::rlim_t) -> Option<libc::rlimit> {
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid out- and in-pointers to locals.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut old) != 0 {
            return None;
        }
        let new = libc::rlimit {
            rlim_cur: to,
            rlim_max: old.rlim_max,
        };
        (libc::setrlimit(libc::RLIMIT_NOFILE, &new) == 0).then_some(old)
    }
}

const ABOVE: &str = "1: setup, 2: the entry below the limit was not released, 3: not \
                     exactly the two entries above the limit reported, 4: an error does not \
                     name its fd and the limit, 5: its source is not EBADF, 6: the socket \
                     above the limit was not shut down, 7: entries above the limit not left \
                     live, 8: not released once the limit is back";

/// Review finding 4: `dup3` refuses a target at or above the soft
/// `RLIMIT_NOFILE` (a program may lower it after opening descriptors, to
/// keep `select` safe), so `close_all` cannot swap the placeholder over
/// such a number. It does not raise the limit behind the program's back:
/// it still shuts sockets down, leaves those entries live, and reports
/// each with an error naming the number and the limit.
#[test]
fn close_all_reports_numbers_above_a_lowered_soft_limit_by_name() {
    let _serial = util::serial();
    let code = util::in_fork(Duration::from_secs(30), || {
        let Some(((_reader, writer), (socket, peer))) = pipe_and_socket() else {
            return 1;
        };
        let (Some(writer), Some(socket)) = (move_up(writer, 1000), move_up(socket, 1000)) else {
            return 1;
        };
        let (high_writer, high_socket) = (writer.as_raw_fd(), socket.as_raw_fd());
        let Ok(low) = std::fs::File::open("/dev/zero") else {
            return 1;
        };
        let (Ok(w), Ok(s), Ok(l)) = (
            TABLE.track(std::io::PipeWriter::from(writer)),
            TABLE.track(UnixStream::from(socket)),
            TABLE.track(low),
        ) else {
            return 1;
        };
        let Some(old) = lower_soft_limit(256) else {
            return 1;
        };
        let report = TABLE.close_all();
        if report.released() != 1 {
            return 2;
        }
        let mut reported: Vec<RawFd> = report.errors().iter().map(|(fd, _)| *fd).collect();
        reported.sort_unstable();
        if reported != [high_writer.min(high_socket), high_writer.max(high_socket)] {
            return 3;
        }
        for (fd, error) in report.errors() {
            let message = error.to_string();
            if !message.contains(&format!("fd {fd} ")) || !message.contains("RLIMIT_NOFILE (256)") {
                return 4;
            }
            let source = std::error::Error::source(error)
                .and_then(|e| e.downcast_ref::<io::Error>())
                .and_then(io::Error::raw_os_error);
            if source != Some(libc::EBADF) {
                return 5;
            }
        }
        if !reads_eof(peer.as_raw_fd()) {
            return 6;
        }
        if TABLE.len() != 2 {
            return 7;
        }
        // SAFETY: restores what `lower_soft_limit` read.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &old) };
        let again = TABLE.close_all();
        if again.released() != 2 || !again.is_ok() || !TABLE.is_empty() {
            return 8;
        }
        drop((w, s, l));
        0
    });
    assert_eq!(code, 0, "{ABOVE}");
}

const ABOVE_IN_CHILD: &str = "1: setup, 2: not EBADF, 3: the number above the limit was \
                              swapped, 4: the number below the limit was not";

/// The same limit in a fork child: `retire_all_in_child` (async-signal-safe,
/// so no message) returns `EBADF` and still releases every other entry.
#[test]
fn retire_all_in_child_reports_ebadf_above_a_lowered_soft_limit() {
    let _serial = util::serial();
    let code = util::in_fork(Duration::from_secs(30), || {
        let Some(((reader, writer), _)) = pipe_and_socket() else {
            return 1;
        };
        let Some(reader) = move_up(reader, 1000) else {
            return 1;
        };
        let high = reader.as_raw_fd();
        let high_id = util::identity(high);
        let Ok(low) = std::fs::File::open("/dev/zero") else {
            return 1;
        };
        let low_fd = low.as_raw_fd();
        let low_id = util::identity(low_fd);
        let (Ok(r), Ok(l)) = (
            TABLE.track(std::io::PipeReader::from(reader)),
            TABLE.track(low),
        ) else {
            return 1;
        };
        if lower_soft_limit(256).is_none() {
            return 1;
        }
        // SAFETY: a fork child (single-threaded); nothing else uses TABLE.
        let result = unsafe { TABLE.retire_all_in_child(&[]) };
        if result.map_err(|e| e.raw_os_error()).err() != Some(Some(libc::EBADF)) {
            return 2;
        }
        if util::identity(high) != high_id {
            return 3;
        }
        if util::identity(low_fd) == low_id {
            return 4;
        }
        // Both numbers are still the handles' own: dropping is fine.
        drop((writer, r, l));
        0
    });
    assert_eq!(code, 0, "{ABOVE_IN_CHILD}");
}

const HELPER_ENV: &str = "FDTABLE_FD_LIMIT_HELPER";

/// Runs only in a helper process; a no-op in the test run itself.
#[test]
fn helper_process() {
    let Ok(mode) = std::env::var(HELPER_ENV) else {
        return;
    };
    match mode.as_str() {
        "first_track_at_emfile" => helper_first_track_at_emfile(),
        _ => panic!("unknown helper mode {mode}"),
    }
    std::process::exit(0);
}

/// In a fresh process (no placeholder yet), out of descriptors: the first
/// `track` cannot open the placeholder. Prints the error and whether the
/// resource came back unharmed.
fn helper_first_track_at_emfile() {
    let file = std::fs::File::open("/dev/zero").unwrap();
    let fd = file.as_raw_fd();
    if !exhaust_descriptors(fd) {
        util::say("could not reach EMFILE");
        return;
    }
    match TABLE.track(file) {
        Ok(_) => util::say("tracked at EMFILE"),
        Err(e) => {
            let (error, file) = e.into_parts();
            let os = std::error::Error::source(&error)
                .and_then(|e| e.downcast_ref::<io::Error>())
                .and_then(io::Error::raw_os_error);
            util::say(&format!("error: {error}"));
            if os == Some(libc::EMFILE) {
                util::say("source EMFILE");
            }
            if file.as_raw_fd() == fd && util::is_open(fd) {
                util::say("resource given back");
            }
        }
    }
}

/// Review finding 3: when the first `track` cannot open the placeholder
/// (here: the process is out of descriptors), the error says what could
/// not be opened, instead of a bare OS error that names nothing the caller
/// asked for.
#[test]
fn a_first_track_that_cannot_open_the_placeholder_says_so() {
    let (status, lines) =
        util::run_helper(HELPER_ENV, "first_track_at_emfile", Duration::from_secs(60));
    assert!(status.success(), "{status} {lines:#?}");
    util::assert_lines(&lines, &["source EMFILE", "resource given back"], &[]);
    let message = lines
        .iter()
        .find_map(|l| l.strip_prefix("error: "))
        .unwrap_or_else(|| panic!("no error: {lines:#?}"));
    assert!(
        message.contains("placeholder") && message.contains("Too many open files"),
        "{message}"
    );
}
