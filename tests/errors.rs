//! Bad input and `close(2)` errors (I5, H5, H7): `track` refuses numbers it
//! cannot own without closing anything, a descriptor closed behind the
//! table's back makes `close()` report `EBADF` and leaves no entry behind,
//! and `track` always sets `FD_CLOEXEC`.

mod util;

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};

use fdtable::{FdTable, Trackable};
use util::{fd_flags, identity, is_open, PanickingInto};

static TABLE: FdTable = FdTable::new();

/// A resource naming a number that is not open. It never closes anything:
/// if `track` wrongly accepted it, converting it back would panic.
struct NotOpen(RawFd);

impl AsFd for NotOpen {
    fn as_fd(&self) -> BorrowedFd<'_> {
        // SAFETY: deliberately names a closed number to exercise `track`'s
        // EBADF path; `track` only passes it to fcntl, which reports EBADF.
        // The number is never -1 (BorrowedFd's niche).
        unsafe { BorrowedFd::borrow_raw(self.0) }
    }
}

// SAFETY: deliberately breaks the contract (it owns no descriptor) to
// exercise `track`'s defence: `track` must refuse it before publishing, so
// `into_owned_fd` is never reached (it panics if it is).
unsafe impl Trackable for NotOpen {
    fn into_owned_fd(self) -> OwnedFd {
        panic!(
            "fd {} is not open and must never be closed by the table",
            self.0
        )
    }
}

/// A number that is not open right now (serialised tests: nothing else
/// opens descriptors meanwhile).
fn closed_number() -> RawFd {
    let n = util::dev_null().as_raw_fd();
    assert!(!is_open(n));
    n
}

#[test]
fn tracking_a_number_twice_is_already_exists_and_closes_nothing() {
    let _serial = util::serial();
    let file = TABLE.track(util::dev_null()).unwrap();
    let fd = file.as_raw_fd();
    let id = identity(fd).unwrap();
    // SAFETY: deliberately aliases `file`'s number to provoke AlreadyExists;
    // the alias is handed back with into_inner and forgotten, never closed.
    let alias = unsafe { OwnedFd::from_raw_fd(fd) };
    let err = TABLE.track(alias).unwrap_err();
    assert_eq!(err.error().kind(), io::ErrorKind::AlreadyExists);
    assert!(err.to_string().contains(&fd.to_string()), "{err}");
    assert!(format!("{err:?}").contains("TrackError"));
    let source: &dyn std::error::Error = &err;
    let _ = source.to_string();
    let alias = err.into_inner();
    assert_eq!(alias.as_raw_fd(), fd, "resource not given back unchanged");
    std::mem::forget(alias);
    assert_eq!(identity(fd), Some(id), "the failed track closed the number");
    assert!(TABLE.contains(fd));
    assert_eq!(TABLE.len(), 1);
    file.close().expect("the original entry still works");
    assert!(!is_open(fd));
    assert!(TABLE.is_empty());
}

/// `track`'s error for a number that is not open: `InvalidInput`, the number
/// in the message (like `AlreadyExists`), `EBADF` as the source.
fn assert_ebadf_naming(error: &io::Error, n: RawFd) {
    assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{error}");
    let message = error.to_string();
    assert!(
        message.contains(&format!("fd {n} ")),
        "the error does not name fd {n}: {message}"
    );
    let source = std::error::Error::source(error)
        .and_then(|s| s.downcast_ref::<io::Error>())
        .unwrap_or_else(|| panic!("no OS error as the source of: {message}"));
    assert_eq!(source.raw_os_error(), Some(libc::EBADF));
}

#[test]
fn tracking_a_closed_number_is_ebadf_and_registers_nothing() {
    let _serial = util::serial();
    let before = util::open_fd_count();
    let n = closed_number();
    let err = match TABLE.track(NotOpen(n)) {
        Ok(h) => {
            std::mem::forget(h);
            panic!("tracked a closed number");
        }
        Err(err) => err,
    };
    assert_ebadf_naming(err.error(), n);
    assert_eq!(err.into_inner().0, n);
    assert!(!TABLE.contains(n));
    assert!(TABLE.is_empty());
    assert!(!is_open(n));
    assert_eq!(util::open_fd_count(), before);
}

#[test]
fn question_mark_turns_track_error_into_io_error_with_the_same_kind() {
    let _serial = util::serial();
    fn track_bad(n: RawFd) -> io::Result<()> {
        let h = TABLE.track(NotOpen(n))?;
        std::mem::forget(h);
        Ok(())
    }
    let n = closed_number();
    let err = track_bad(n).unwrap_err();
    assert_ebadf_naming(&err, n);

    fn track_twice(fd: RawFd) -> io::Result<()> {
        let h = TABLE.track(Alias(fd))?;
        std::mem::forget(h);
        Ok(())
    }
    let file = TABLE.track(util::dev_null()).unwrap();
    let err = track_twice(file.as_raw_fd()).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
    // The `?` dropped the rejected alias; it must not have closed the number.
    assert!(is_open(file.as_raw_fd()));
    drop(file);
    assert!(TABLE.is_empty());
}

/// An alias of an open number owned elsewhere: never closes it.
#[derive(Debug)]
struct Alias(RawFd);

impl AsFd for Alias {
    fn as_fd(&self) -> BorrowedFd<'_> {
        // SAFETY: the number is open (owned by a live handle) for as long as
        // this alias is used in the test.
        unsafe { BorrowedFd::borrow_raw(self.0) }
    }
}

// SAFETY: deliberately breaks the contract (it does not own the number) to
// exercise `track`'s `AlreadyExists` defence: `track` refuses it before
// publishing, so `into_owned_fd` is never reached (it panics if it is).
unsafe impl Trackable for Alias {
    fn into_owned_fd(self) -> OwnedFd {
        panic!("alias of fd {} must never be closed by the table", self.0)
    }
}

#[test]
fn track_error_into_parts_gives_the_error_then_the_resource_still_open() {
    let _serial = util::serial();
    let file = TABLE.track(util::dev_null()).unwrap();
    let fd = file.as_raw_fd();
    let (error, alias): (io::Error, Alias) = TABLE.track(Alias(fd)).unwrap_err().into_parts();
    assert_eq!(error.kind(), io::ErrorKind::AlreadyExists);
    assert_eq!(alias.0, fd);
    // `into_error` drops the resource: an `Alias` owns nothing, so that
    // closes nothing either.
    let error: io::Error = match TABLE.track(Alias(fd)) {
        Ok(h) => {
            std::mem::forget(h);
            panic!("tracked fd {fd} twice");
        }
        Err(e) => e.into_error(),
    };
    assert_eq!(error.kind(), io::ErrorKind::AlreadyExists);
    assert!(is_open(fd));
    file.close().unwrap();
}

#[test]
fn fd_closed_behind_the_tables_back_makes_close_report_ebadf_and_leaves_no_entry() {
    let _serial = util::serial();
    let h = TABLE.track(util::dev_null()).unwrap();
    let fd = h.as_raw_fd();
    // SAFETY: deliberately violates the handle's ownership to simulate a
    // buggy caller; serialised, so nobody reuses the number before `close`.
    assert_eq!(unsafe { libc::close(fd) }, 0);
    let err = h.close().unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EBADF), "{err}");
    assert!(!TABLE.contains(fd), "entry survived a failed close");
    assert!(TABLE.is_empty());

    // The same through Drop: the error is swallowed and counted.
    let swallowed = TABLE.swallowed_close_errors();
    let h = TABLE.track(util::dev_null()).unwrap();
    let fd = h.as_raw_fd();
    // SAFETY: as above.
    assert_eq!(unsafe { libc::close(fd) }, 0);
    drop(h);
    assert_eq!(TABLE.swallowed_close_errors(), swallowed + 1);
    assert!(!TABLE.contains(fd));
    assert!(TABLE.is_empty());
}

/// I5 / H5: after a failed close the number is never closed again: a new
/// file that gets the same number survives every later table operation.
#[test]
fn after_a_close_error_the_recycled_number_is_never_closed_by_the_table() {
    let _serial = util::serial();
    let h = TABLE.track(util::dev_null()).unwrap();
    let fd = h.as_raw_fd();
    // SAFETY: simulated buggy caller, as in the test above.
    assert_eq!(unsafe { libc::close(fd) }, 0);
    assert!(h.close().is_err());
    let (r, _w) = util::pipe();
    assert_eq!(
        r.as_raw_fd(),
        fd,
        "serialised: the freed number is reused first"
    );
    let id = identity(fd).unwrap();
    let other = TABLE.track(util::dev_null()).unwrap();
    TABLE.for_each(|_| {});
    let report = TABLE.close_all();
    assert_eq!(report.released(), 1);
    drop(other);
    assert_eq!(
        identity(fd),
        Some(id),
        "the table closed a number it no longer owns"
    );
    assert!(TABLE.is_empty());
}

#[test]
fn track_sets_cloexec_when_it_was_missing() {
    let _serial = util::serial();
    // SAFETY: plain open(2) without O_CLOEXEC; the descriptor is ours.
    let raw = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) };
    assert!(raw >= 0);
    // SAFETY: `raw` was just opened and is owned by nobody else.
    let owned = unsafe { OwnedFd::from_raw_fd(raw) };
    assert_eq!(fd_flags(raw).unwrap() & libc::FD_CLOEXEC, 0);
    // SAFETY: F_GETFL only reads the status flags.
    let status = unsafe { libc::fcntl(raw, libc::F_GETFL) };
    let h = TABLE.track(owned).unwrap();
    assert_ne!(
        fd_flags(raw).unwrap() & libc::FD_CLOEXEC,
        0,
        "H7: fd would leak into exec"
    );
    // SAFETY: as above.
    assert_eq!(
        unsafe { libc::fcntl(raw, libc::F_GETFL) },
        status,
        "status flags changed"
    );
    drop(h);
    assert!(!is_open(raw));
}

#[test]
fn track_keeps_cloexec_when_already_set() {
    let _serial = util::serial();
    let file = util::dev_null(); // std opens with O_CLOEXEC
    let raw = file.as_raw_fd();
    assert_ne!(fd_flags(raw).unwrap() & libc::FD_CLOEXEC, 0);
    let h = TABLE.track(file).unwrap();
    assert_ne!(fd_flags(raw).unwrap() & libc::FD_CLOEXEC, 0);
    // into_inner keeps it too.
    let file = h.into_inner();
    assert_ne!(fd_flags(file.as_raw_fd()).unwrap() & libc::FD_CLOEXEC, 0);
    let raw = file.into_raw_fd();
    // SAFETY: `raw` came from into_raw_fd just above; we own it.
    drop(unsafe { OwnedFd::from_raw_fd(raw) });
    assert!(TABLE.is_empty());
}

#[test]
fn contains_is_false_for_numbers_never_tracked_and_out_of_range() {
    let _serial = util::serial();
    for n in [-1, -100, 0, 1, 2, 1023, 1024, 65_536, i32::MAX] {
        assert!(!TABLE.contains(n), "contains({n})");
    }
    // A number in a higher chunk works like any other.
    let file = util::dev_null();
    // SAFETY: F_DUPFD_CLOEXEC returns a new descriptor >= 3000 that we own.
    let high = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3000) };
    assert!(high >= 3000, "{}", io::Error::last_os_error());
    // SAFETY: `high` is a fresh descriptor owned by nobody else.
    let h = TABLE.track(unsafe { OwnedFd::from_raw_fd(high) }).unwrap();
    assert!(TABLE.contains(high));
    let mut seen = Vec::new();
    TABLE.for_each(|fd| seen.push(fd.as_raw_fd()));
    assert_eq!(seen, vec![high]);
    h.close().unwrap();
    assert!(!TABLE.contains(high) && !is_open(high));
}

/// A [`PanickingInto`] (its own value, and so its descriptor, is dropped
/// by the unwinding): the table must not keep a stale published number,
/// nor close it a second time.
#[test]
fn a_panicking_into_owned_fd_unregisters_and_closes_nothing_twice() {
    let _serial = util::serial();
    let baseline_errors = TABLE.swallowed_close_errors();
    let null = std::fs::File::open("/dev/null").unwrap();
    let tracked = TABLE.track(PanickingInto(null.into())).unwrap();
    let fd = tracked.as_raw_fd();
    assert!(TABLE.contains(fd));
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(tracked)));
    assert!(outcome.is_err(), "the panic must reach the caller");
    assert!(!TABLE.contains(fd), "a stale entry stayed published");
    assert!(TABLE.is_empty());
    // The number was closed once, by the unwinding conversion; the table
    // neither closed it again (that would be an EBADF swallowed error) nor
    // left it reserved.
    assert_eq!(TABLE.swallowed_close_errors(), baseline_errors);
    assert!(!util::is_open(fd));
}

/// Install a seccomp filter that makes `fcntl(_, F_SETFD, _)` fail with
/// `EPERM` and allows everything else. Async-signal-safe. Returns whether it
/// is in force.
#[cfg(target_os = "linux")]
fn refuse_f_setfd() -> bool {
    use util::{bpf_jump_eq, bpf_stmt, BPF_LOAD, BPF_RETURN, SECCOMP_ARG1_LOW, SECCOMP_NR};
    util::install_seccomp(&[
        bpf_stmt(BPF_LOAD, SECCOMP_NR),
        bpf_jump_eq(libc::SYS_fcntl as u32, 3),
        bpf_stmt(BPF_LOAD, SECCOMP_ARG1_LOW),
        bpf_jump_eq(libc::F_SETFD as u32, 1),
        bpf_stmt(BPF_RETURN, libc::SECCOMP_RET_ERRNO | libc::EPERM as u32),
        bpf_stmt(BPF_RETURN, libc::SECCOMP_RET_ALLOW),
    ])
}

/// `track` of a descriptor that already has `FD_CLOEXEC` makes no `F_SETFD`
/// call (only `F_GETFD`); one without the flag does. Checked in a fork child
/// whose seccomp filter refuses `F_SETFD`.
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
#[test]
fn track_skips_f_setfd_when_cloexec_is_already_set() {
    static CHILD_TABLE: FdTable = FdTable::new();
    let _serial = util::serial();
    // Allocate the first chunk here, so the child allocates nothing.
    drop(CHILD_TABLE.track(util::dev_null()).unwrap().into_inner());
    // The child makes only async-signal-safe calls (open, fcntl, prctl,
    // close, atomics, a mask pair).
    let code = util::in_fork(std::time::Duration::from_secs(20), || {
        if !refuse_f_setfd() {
            return 10;
        }
        // SAFETY: a path literal; flags only.
        let with = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
        // SAFETY: as above.
        let without = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY) };
        if with < 0 || without < 0 {
            return 11;
        }
        // SAFETY: both descriptors were just opened and are ours.
        let (with, without) =
            unsafe { (OwnedFd::from_raw_fd(with), OwnedFd::from_raw_fd(without)) };
        match CHILD_TABLE.track(with) {
            Ok(tracked) => drop(tracked),
            Err(_) => return 1, // an F_SETFD was issued although not needed
        }
        match CHILD_TABLE.track(without) {
            Ok(_) => 2, // the filter did not bite: the test proves nothing
            Err(e) if e.error().raw_os_error() == Some(libc::EPERM) => 0,
            Err(_) => 3,
        }
    });
    assert_eq!(
        code,
        0,
        "1: F_SETFD issued for a close-on-exec fd; 2: filter ineffective; 3: wrong error; 10/11: setup"
    );
}
