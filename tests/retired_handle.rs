//! I9 (issue 9, item 4; table review findings 1 and 7, security): a
//! retired handle is dead. After `close_all` (and after
//! `retire_all_in_child` in a fork child) the number names the placeholder,
//! an `O_PATH` descriptor of a private pipe whose ends are closed: path
//! lookups through it fail (`ENOTDIR`) and create nothing anywhere, `fchdir`
//! fails, `read`/`write` fail with `EBADF`; and the calls that do work on an
//! `O_PATH` descriptor (`fchownat`/`fchmodat2`/`utimensat` with
//! `AT_EMPTY_PATH`, reopening through `/proc/self/fd`) reach only that
//! private pipe, never a shared inode such as the machine's `/dev/null`.
//! A placeholder replaced behind the table's back is detected before use
//! and replaced once, never swapped in.
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

/// `fstat` of `fd`, or `None`. Async-signal-safe.
fn stat_fd(fd: RawFd) -> Option<libc::stat> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: a valid out-pointer; read only when fstat succeeded.
    unsafe { (libc::fstat(fd, st.as_mut_ptr()) == 0).then(|| st.assume_init()) }
}

/// What a shared inode looked like before the probes: `/dev/null`, which
/// the placeholder used to be an `O_PATH` descriptor of.
#[derive(Clone, Copy)]
struct Shared {
    fd: RawFd,
    ino: u64,
    ctime: (i64, i64),
}

impl Shared {
    fn dev_null(file: &File) -> Shared {
        let st = stat_fd(file.as_raw_fd()).unwrap();
        Shared {
            fd: file.as_raw_fd(),
            ino: st.st_ino,
            ctime: (st.st_ctime, st.st_ctime_nsec),
        }
    }

    /// Unchanged: even a no-op `chown`/`chmod`/`utimensat` of it would
    /// have set its change time.
    fn untouched(&self) -> bool {
        stat_fd(self.fd).is_some_and(|st| (st.st_ctime, st.st_ctime_nsec) == self.ctime)
    }
}

/// `/proc/self/fd/<fd>`, NUL-terminated, built without allocating.
fn proc_fd_path(fd: RawFd) -> [u8; 32] {
    let mut buf = [0u8; 32];
    let prefix = b"/proc/self/fd/";
    buf[..prefix.len()].copy_from_slice(prefix);
    let mut digits = [0u8; 10];
    let (mut n, mut len) = (fd as u32, 0);
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for i in 0..len {
        buf[prefix.len() + i] = digits[len - 1 - i];
    }
    buf
}

/// Every way to use `fd` that must fail, and every `O_PATH`-capable call
/// that must reach only the private pipe. Returns 0, or the number of the
/// first check that did not hold. Async-signal-safe.
fn dead(fd: RawFd, probes: &Probes, shared: Shared) -> i32 {
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
        let Some(st) = stat_fd(fd) else {
            return 18;
        };
        // A nameless pipe: no path but `/proc`'s magic links reaches it.
        if st.st_mode & libc::S_IFMT != libc::S_IFIFO || st.st_ino == shared.ino {
            return 19;
        }
        // The metadata calls that work on `O_PATH` descriptors, as no-ops
        // (same owner, same mode, same times): whether they succeed or not,
        // no shared inode may change.
        libc::fchownat(fd, c"".as_ptr(), st.st_uid, st.st_gid, libc::AT_EMPTY_PATH);
        libc::syscall(
            libc::SYS_fchmodat2,
            fd,
            c"".as_ptr(),
            (st.st_mode & 0o7777) as libc::c_uint,
            libc::AT_EMPTY_PATH,
        );
        let times = [
            libc::timespec {
                tv_sec: st.st_atime,
                tv_nsec: st.st_atime_nsec,
            },
            libc::timespec {
                tv_sec: st.st_mtime,
                tv_nsec: st.st_mtime_nsec,
            },
        ];
        libc::utimensat(fd, c"".as_ptr(), times.as_ptr(), libc::AT_EMPTY_PATH);
        if !shared.untouched() {
            return 20;
        }
        // Reopening through /proc may work, but only on the same pipe.
        let path = proc_fd_path(fd);
        let reopened = libc::open(
            path.as_ptr().cast(),
            libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
        );
        if reopened != -1 {
            let same =
                stat_fd(reopened).is_some_and(|r| (r.st_dev, r.st_ino) == (st.st_dev, st.st_ino));
            libc::close(reopened);
            if !same {
                return 21;
            }
        }
    }
    0
}

const WHAT: &str = "1: setup, 2: not released, 10: openat(O_CREAT) did not fail with ENOTDIR, \
                    11: mkdirat, 12: something was created, 13: openat(\"etc/hostname\"), \
                    14: openat(\".\"), 15: fchdir, 16: read not EBADF, 17: write not EBADF, \
                    18: fstat failed, 19: fstat does not describe a private pipe, \
                    20: an AT_EMPTY_PATH call changed /dev/null, 21: reopening through \
                    /proc/self/fd gave another file";

#[test]
fn a_handle_retired_by_close_all_resolves_no_path_and_does_no_io() {
    let _serial = util::serial();
    let probes = Probes::new("close-all");
    let null = File::open("/dev/null").unwrap();
    let shared = Shared::dev_null(&null);
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
        dead(handle.as_raw_fd(), &probes, shared)
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
    let null = File::open("/dev/null").unwrap();
    let shared = Shared::dev_null(&null);
    let handle = TABLE.track(File::open("/dev/zero").unwrap()).unwrap();
    let fd = handle.as_raw_fd();
    let code = util::in_fork(Duration::from_secs(20), || {
        // SAFETY: a fork child; nothing else uses TABLE here.
        match unsafe { TABLE.retire_all_in_child(&[]) } {
            Ok(1) => dead(fd, &probes, shared),
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

/// Open descriptors among the first 4096 numbers (`fcntl` sweep, so it
/// works without `/proc`). Async-signal-safe.
fn count_open() -> usize {
    (0..4096).filter(|&fd| util::is_open(fd)).count()
}

const REPLACED: &str = "1: setup, 2: dup2 over the placeholder, 3: close_all failed, \
                        4: the retired handle reads the file that replaced the placeholder, \
                        5: the replacing file was touched, 6: not exactly one new placeholder \
                        after 20 close_all calls";

/// Review finding 7: the placeholder is checked before each use. Hostile
/// (unsafe) code `dup2`s a live file over the placeholder's number; the
/// next `close_all` must notice and swap in a fresh placeholder, never that
/// file (a retired handle would read and write it), and must open exactly
/// one fresh placeholder for the loss, not one per call (finding 3).
#[test]
fn a_placeholder_replaced_behind_the_tables_back_is_never_swapped_in() {
    let _serial = util::serial();
    let placeholder = util::placeholder_fd();
    let path = std::env::temp_dir().join(format!("fdtable-secret-{}", std::process::id()));
    let mut secret = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .unwrap();
    std::fs::remove_file(&path).unwrap();
    std::io::Write::write_all(&mut secret, b"secret").unwrap();
    let secret_id = util::identity(secret.as_raw_fd()).unwrap();
    let code = util::in_fork(Duration::from_secs(20), || {
        let Ok(file) = File::open("/dev/zero") else {
            return 1;
        };
        let Ok(handle) = TABLE.track(file) else {
            return 1;
        };
        // SAFETY: the hostile act under test; the number now belongs to
        // this child's code, not to the table.
        if unsafe { libc::dup2(secret.as_raw_fd(), placeholder) } != placeholder {
            return 2;
        }
        let before = count_open();
        for _ in 0..20 {
            if !TABLE.close_all().is_ok() {
                return 3;
            }
        }
        let mut buf = [0u8; 8];
        // SAFETY: a read into a local buffer.
        let n = unsafe { libc::pread(handle.as_raw_fd(), buf.as_mut_ptr().cast(), 8, 0) };
        if n != -1 {
            return 4;
        }
        if util::identity(placeholder) != Some(secret_id) {
            return 5;
        }
        if count_open() != before + 1 {
            return 6;
        }
        drop(handle);
        0
    });
    assert_eq!(code, 0, "{REPLACED}");
}

// ---------------------------------------------------------------------------
// Review finding 3: no dependency on /dev/null (or on /proc)
// ---------------------------------------------------------------------------

const HELPER_ENV: &str = "FDTABLE_RETIRED_HELPER";

/// Runs only in a helper process; a no-op in the test run itself.
#[test]
fn helper_process() {
    let Ok(mode) = std::env::var(HELPER_ENV) else {
        return;
    };
    helper_sandbox(&mode);
    std::process::exit(0);
}

/// What the sandbox helper is given instead of a normal `/dev`.
#[derive(Clone, Copy, Debug)]
enum Sandbox {
    /// An empty tmpfs on `/dev`: no `/dev/null` at all.
    NoDevNull,
    /// `/dev/null` is a regular file.
    DevNullFile,
    /// No `/dev/null`, and an empty tmpfs on `/proc` too: the placeholder
    /// falls back to a pipe's read end.
    NoProc,
}

impl Sandbox {
    fn name(self) -> &'static str {
        match self {
            Sandbox::NoDevNull => "no_dev_null",
            Sandbox::DevNullFile => "dev_null_file",
            Sandbox::NoProc => "no_proc",
        }
    }
}

/// In the helper, in its own mount namespace (see [`run_sandboxed`]): the
/// first `track` of the process opens the placeholder, `close_all` works 50
/// times without opening anything more, and retired handles are dead.
/// Prints one line per check that held; the parent looks for all of them.
fn helper_sandbox(mode: &str) {
    let dev_null = std::fs::symlink_metadata("/dev/null");
    let proc_ok = std::fs::metadata("/proc/self/fd").is_ok();
    util::say(&format!(
        "sandbox {mode}: /dev/null {:?}, /proc/self/fd {}",
        dev_null.as_ref().map(|m| m.file_type()),
        if proc_ok { "present" } else { "absent" }
    ));
    static SANDBOXED: FdTable = FdTable::new();
    let baseline = count_open();
    let (reader, writer) = util::pipe();
    let writer = match SANDBOXED.track(writer) {
        Ok(w) => w,
        Err(e) => {
            util::say(&format!("track failed: {}", e.error()));
            return;
        }
    };
    util::say("tracked");
    let mut released = 0;
    for _ in 0..50 {
        let report = SANDBOXED.close_all();
        if !report.is_ok() {
            util::say(&format!("close_all failed: {report:?}"));
            return;
        }
        released += report.released();
    }
    // The pipe's two ends, and the placeholder.
    let after = count_open();
    util::say(&format!(
        "released {released}, descriptors {baseline} -> {after}"
    ));
    if released == 1 && after == baseline + 3 {
        util::say("one placeholder");
    }
    if reads_eof(reader.as_raw_fd()) {
        util::say("reader sees end-of-file");
    }
    let fd = writer.as_raw_fd();
    let st = stat_fd(fd).expect("a retired number stays open");
    // SAFETY: raw calls on our own retired number, into locals.
    let (write, lookup, read) = unsafe {
        let write = libc::write(fd, b"x".as_ptr().cast(), 1) == -1 && errno() == libc::EBADF;
        let lookup = libc::openat(fd, c"x".as_ptr(), libc::O_CREAT | libc::O_WRONLY, 0o600) == -1
            && errno() == libc::ENOTDIR;
        let mut byte = 0u8;
        let read = libc::read(fd, (&mut byte as *mut u8).cast(), 1);
        let read = if read == -1 { -errno() as isize } else { read };
        (write, lookup, read)
    };
    if st.st_mode & libc::S_IFMT == libc::S_IFIFO && write && lookup {
        util::say("retired handle is a dead pipe");
    }
    // The fallback (no /proc) is a read end: reads see end-of-file there.
    let expected_read = if proc_ok { -(libc::EBADF as isize) } else { 0 };
    if read == expected_read {
        util::say("read as documented");
    }
    drop(writer);
}

/// Whether `fd` reads end-of-file now. Async-signal-safe.
fn reads_eof(fd: RawFd) -> bool {
    // SAFETY: F_SETFL on an open descriptor; read into a one-byte local.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
        let mut byte = 0u8;
        libc::read(fd, (&mut byte as *mut u8).cast(), 1) == 0
    }
}

/// Run the sandbox helper in a mount namespace of its own with an empty
/// tmpfs on `/dev` (and `/proc`, or a regular file at `/dev/null`), set up
/// in the child before `exec`. Needs `CAP_SYS_ADMIN`: without it the test
/// is skipped (and fails under `CI`, which runs as root).
fn run_sandboxed(sandbox: Sandbox) -> Option<Vec<String>> {
    use std::os::unix::process::CommandExt;
    let mut command = util::helper_command(HELPER_ENV, sandbox.name());
    // SAFETY: runs in the child before exec: raw syscalls with C string
    // literals, no allocation.
    unsafe {
        command.pre_exec(move || {
            let fail = || Err(std::io::Error::last_os_error());
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                return fail();
            }
            // Keep our mounts out of the parent's namespace.
            let none = std::ptr::null();
            if libc::mount(
                none,
                c"/".as_ptr(),
                none,
                libc::MS_REC | libc::MS_PRIVATE,
                none.cast(),
            ) != 0
                || libc::mount(
                    c"none".as_ptr(),
                    c"/dev".as_ptr(),
                    c"tmpfs".as_ptr(),
                    0,
                    none.cast(),
                ) != 0
            {
                return fail();
            }
            match sandbox {
                Sandbox::NoDevNull => {}
                Sandbox::DevNullFile => {
                    let fd =
                        libc::open(c"/dev/null".as_ptr(), libc::O_CREAT | libc::O_WRONLY, 0o666);
                    if fd < 0 {
                        return fail();
                    }
                    libc::close(fd);
                }
                Sandbox::NoProc => {
                    if libc::mount(
                        c"none".as_ptr(),
                        c"/proc".as_ptr(),
                        c"tmpfs".as_ptr(),
                        0,
                        none.cast(),
                    ) != 0
                    {
                        return fail();
                    }
                }
            }
            Ok(())
        });
    }
    let output = util::within(Duration::from_secs(60), "sandbox helper", move || {
        command.output()
    });
    let output = match output {
        Ok(output) => output,
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "no CAP_SYS_ADMIN for a mount namespace, but CI is set: {e}"
            );
            eprintln!("skipped: a mount namespace needs CAP_SYS_ADMIN ({e})");
            return None;
        }
        Err(e) => panic!("spawn the sandbox helper: {e}"),
    };
    let lines: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert!(
        output.status.success(),
        "{sandbox:?}: {} {lines:#?} {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    Some(lines)
}

fn assert_sandbox_works(sandbox: Sandbox) {
    let Some(lines) = run_sandboxed(sandbox) else {
        return;
    };
    util::assert_lines(
        &lines,
        &[
            "tracked",
            "one placeholder",
            "reader sees end-of-file",
            "retired handle is a dead pipe",
            "read as documented",
        ],
        &[],
    );
}

#[test]
fn track_and_close_all_need_no_dev_null() {
    assert_sandbox_works(Sandbox::NoDevNull);
}

#[test]
fn a_regular_file_at_dev_null_costs_no_descriptor_per_close_all() {
    assert_sandbox_works(Sandbox::DevNullFile);
}

#[test]
fn without_proc_the_placeholder_falls_back_to_a_pipe_read_end() {
    assert_sandbox_works(Sandbox::NoProc);
}
