//! I9 (issue 9, item 4, security): a retired handle is dead. After
//! `close_all` (and after `retire_all_in_child` in a fork child) the number
//! names the placeholder, an `O_PATH` descriptor of `/dev/null`: path lookups
//! through it fail (`ENOTDIR`) and create nothing anywhere, `fchdir` fails,
//! `read`/`write` fail with `EBADF`, and `fstat` describes `/dev/null`.
//!
//! The checks run in fork children (a successful `fchdir` would move the
//! whole test process) and use only async-signal-safe calls. The parent
//! removes whatever a broken placeholder would have created.
#![cfg(target_os = "linux")]

mod util;

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;
use std::time::Duration;

use fdtable::FdTable;

static TABLE: FdTable = FdTable::new();

/// Names a lookup through a live directory descriptor would create.
struct Probes {
    file: CString,
    dir: CString,
    /// Where those names would land: under `/` (the old placeholder) and
    /// under the working directory.
    places: Vec<PathBuf>,
    absolute: Vec<CString>,
}

impl Probes {
    fn new(what: &str) -> Probes {
        let base = format!("fdtable-retired-{what}-{}", std::process::id());
        let names = [base.clone(), format!("{base}-dir")];
        let cwd = std::env::current_dir().unwrap();
        let places: Vec<PathBuf> = names
            .iter()
            .flat_map(|n| [PathBuf::from("/").join(n), cwd.join(n)])
            .collect();
        let absolute = places
            .iter()
            .map(|p| CString::new(p.to_str().unwrap()).unwrap())
            .collect();
        Probes {
            file: CString::new(names[0].clone()).unwrap(),
            dir: CString::new(names[1].clone()).unwrap(),
            places,
            absolute,
        }
    }

    /// Remove anything a lookup created; report whether there was any.
    fn clean_up(&self) -> bool {
        let mut found = false;
        for p in &self.places {
            found |= std::fs::remove_file(p).is_ok() || std::fs::remove_dir(p).is_ok();
        }
        found
    }
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Every way to use `fd` that must fail. Returns 0, or the number of the
/// first check that did not fail as it should. Async-signal-safe.
fn dead(fd: RawFd, probes: &Probes) -> i32 {
    // SAFETY (whole function): raw syscalls on an integer descriptor with
    // pointers to live locals and C strings; failures are the point.
    unsafe {
        let created = libc::openat(
            fd,
            probes.file.as_ptr(),
            libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC,
            0o600,
        );
        if created != -1 || errno() != libc::ENOTDIR {
            return 10;
        }
        if libc::mkdirat(fd, probes.dir.as_ptr(), 0o700) != -1 || errno() != libc::ENOTDIR {
            return 11;
        }
        for path in &probes.absolute {
            if libc::access(path.as_ptr(), libc::F_OK) == 0 {
                return 12; // created something somewhere
            }
        }
        let host = libc::openat(
            fd,
            c"etc/hostname".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        );
        if host != -1 || errno() != libc::ENOTDIR {
            return 13;
        }
        if libc::openat(fd, c".".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) != -1 {
            return 14;
        }
        if libc::fchdir(fd) != -1 || errno() != libc::ENOTDIR {
            return 15;
        }
        let mut byte = 0u8;
        if libc::read(fd, (&mut byte as *mut u8).cast(), 1) != -1 || errno() != libc::EBADF {
            return 16;
        }
        if libc::write(fd, b"x".as_ptr().cast(), 1) != -1 || errno() != libc::EBADF {
            return 17;
        }
        let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
        if libc::fstat(fd, st.as_mut_ptr()) != 0 {
            return 18;
        }
        let st = st.assume_init();
        let is_dev_null = st.st_mode & libc::S_IFMT == libc::S_IFCHR
            && libc::major(st.st_rdev) == 1
            && libc::minor(st.st_rdev) == 3;
        if !is_dev_null {
            return 19;
        }
    }
    0
}

const WHAT: &str = "1: setup, 2: not released, 10: openat(O_CREAT) did not fail with ENOTDIR, \
                    11: mkdirat, 12: something was created, 13: openat(\"etc/hostname\"), \
                    14: openat(\".\"), 15: fchdir, 16: read not EBADF, 17: write not EBADF, \
                    18: fstat failed, 19: fstat does not describe /dev/null";

#[test]
fn a_handle_retired_by_close_all_resolves_no_path_and_does_no_io() {
    let _serial = util::serial();
    let probes = Probes::new("close-all");
    let code = util::in_fork(Duration::from_secs(20), || {
        let Ok(file) = File::open("/dev/zero") else {
            return 1;
        };
        let Ok(handle) = TABLE.track(file) else {
            return 1;
        };
        let report = TABLE.close_all();
        if report.released() != 1 || !report.is_ok() {
            return 2;
        }
        dead(handle.as_raw_fd(), &probes)
    });
    let created = probes.clean_up();
    assert_eq!(code, 0, "{WHAT}");
    assert!(
        !created,
        "a lookup through the retired handle created a file"
    );
}

#[test]
fn a_handle_retired_by_retire_all_in_child_resolves_no_path_and_does_no_io() {
    let _serial = util::serial();
    let probes = Probes::new("in-child");
    let handle = TABLE.track(File::open("/dev/zero").unwrap()).unwrap();
    let fd = handle.as_raw_fd();
    let code = util::in_fork(Duration::from_secs(20), || {
        // SAFETY: a fork child; nothing else uses TABLE here.
        match unsafe { TABLE.retire_all_in_child(&[]) } {
            Ok(1) => dead(fd, &probes),
            _ => 2,
        }
    });
    let created = probes.clean_up();
    drop(handle);
    assert_eq!(code, 0, "{WHAT}");
    assert!(
        !created,
        "a lookup through the retired handle created a file"
    );
    assert!(TABLE.is_empty());
}
