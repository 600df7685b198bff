//! The fork-child path under a matrix like systemd's close-all-fds test
//! (issue 5, invariant I6): [`FdTable::close_all_in_child`] must close every
//! tracked number and nothing else, whichever way the kernel lets it close.
//!
//! Situations (one test each):
//! - ordinary numbers, with gaps and an untracked number inside a run;
//! - `RLIMIT_NOFILE` raised (to 65536 when root may, else to the hard
//!   limit) with tracked numbers at `limit - 1` and `limit - 2`;
//! - descriptors 0-2 closed at start, so tracked files get 0, 1 and 2 (in a
//!   re-executed copy of this binary, since closing stdio here would take
//!   the harness's output with it).
//!
//! Each situation runs every way of closing: `close_range(2)` available,
//! and refused by the kernel (a seccomp filter in the child makes
//! `close_range` fail with `ENOSYS`, then `EPERM`: the runtime fallback, the
//! only way the crate can be made to take it). Every run checks, in the child, which
//! of a list of probe numbers is still open, whether the sentinels are
//! intact, and what `close_all_in_child` returned; the child sends that back
//! through a pipe. The parent checks each run against what it expects (open
//! before the fork and not tracked) and that all ways give the same result.
//!
//! `close_other_fds` gets the same treatment with real programs: every way
//! it can mark descriptors close-on-exec (`CLOSE_RANGE_CLOEXEC`; the flag
//! refused with `EINVAL` as on Linux 5.9/5.10; `close_range` refused with
//! `ENOSYS` or `EPERM`; then `/proc/self/fd` unopenable as at the
//! descriptor limit, or unreadable) must leave a spawned program exactly 0-2
//! and the passed descriptors, and keep std's exec-error socket working.
//! The filters are installed by a `pre_exec` hook registered before ours.
//!
//! Code after `fork` makes only async-signal-safe calls into memory
//! allocated before the fork, and leaves with `_exit`.
//!
//! The seccomp ways and the `close_other_fds` matrix are Linux's; on other
//! systems (type-checked only) the `close_all_in_child` situations run the
//! one way the system offers.

mod spawn_util;
mod util;

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::Duration;

#[cfg(target_os = "linux")]
use fdtable::{ChildFds, CommandExt};
use fdtable::{FdTable, Tracked};
use util::{ChildEnd, Sentinels};

static TABLE: FdTable = FdTable::new();

/// How long a fork child may take before it counts as hung.
const CHILD_LIMIT: Duration = Duration::from_secs(20);
/// Set in the re-executed copy of this binary that closes its stdio.
const STDIO_CHILD_ENV: &str = "FDTABLE_MATRIX_STDIO_CHILD";
/// Where that copy writes why it failed.
const STDIO_REPORT_ENV: &str = "FDTABLE_MATRIX_REPORT";

/// How the child gets to close its numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Way {
    /// `close_range(2)` for runs of consecutive numbers (where the system
    /// has no `close_range`: what it offers instead).
    CloseRange,
    /// A seccomp filter makes `close_range` fail with this errno.
    #[cfg(target_os = "linux")]
    KernelRefuses(libc::c_int),
}

#[cfg(target_os = "linux")]
const WAYS: [Way; 3] = [
    Way::CloseRange,
    Way::KernelRefuses(libc::ENOSYS),
    Way::KernelRefuses(libc::EPERM),
];
#[cfg(not(target_os = "linux"))]
const WAYS: [Way; 1] = [Way::CloseRange];

/// What a child saw after `close_all_in_child`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    /// `close_all_in_child`'s return value.
    closed: u64,
    /// For each probe number: still open in the child?
    open: Vec<bool>,
    sentinels_intact: bool,
}

/// Fork; in the child make `close_range` behave as `way` says, run
/// `close_all_in_child`, and report what is open among `probes`. Also
/// returns what the parent expects: open before the fork and not tracked.
fn close_in_child(way: Way, probes: &[RawFd], sentinels: &Sentinels) -> (Seen, Vec<bool>) {
    let (read, write) = util::pipe();
    // Everything the child touches is allocated here, before the fork.
    let mut report = vec![0u8; 8 + probes.len() + 1];
    let expected: Vec<bool> = probes
        .iter()
        .map(|&fd| util::is_open(fd) && !TABLE.contains(fd))
        .collect();

    // SAFETY: the child makes only async-signal-safe calls (prctl, fcntl,
    // fstat, close/close_range, write) on memory allocated before the fork,
    // and leaves with `_exit`.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        #[cfg(target_os = "linux")]
        if let Way::KernelRefuses(errno) = way {
            if !util::refuse_close_range(errno) {
                // SAFETY: ends the child at once.
                unsafe { libc::_exit(90) };
            }
        }
        // SAFETY: we are the fork child; no handle is used again.
        let closed = unsafe { TABLE.close_all_in_child() } as u64;
        let (head, rest) = report.split_at_mut(8);
        head.copy_from_slice(&closed.to_le_bytes());
        for (slot, &fd) in rest.iter_mut().zip(probes) {
            *slot = util::is_open(fd) as u8;
        }
        if let Some(last) = rest.last_mut() {
            *last = sentinels.intact() as u8;
        }
        let mut sent = 0;
        // Bounded: each round sends at least one byte or gives up.
        while sent < report.len() {
            // SAFETY: writes from a live buffer to our pipe's write end
            // (untracked, created before the fork).
            let n = unsafe {
                libc::write(
                    write.as_raw_fd(),
                    report[sent..].as_ptr().cast(),
                    report.len() - sent,
                )
            };
            if n <= 0 {
                // SAFETY: ends the child at once.
                unsafe { libc::_exit(91) };
            }
            sent += n as usize;
        }
        // SAFETY: ends the child at once, no destructor or atexit handler.
        unsafe { libc::_exit(0) };
    }
    drop(write);
    let end = util::wait_child(pid, CHILD_LIMIT).expect("waitpid");
    assert_eq!(
        end,
        ChildEnd::Exited(0),
        "{way:?}: child failed (90: seccomp refused, 91: report write)"
    );
    let mut got = Vec::new();
    File::from(read).read_to_end(&mut got).expect("read report");
    assert_eq!(got.len(), report.len(), "{way:?}: short report");
    let closed = u64::from_le_bytes(got[..8].try_into().expect("8 bytes"));
    let seen = Seen {
        closed,
        open: got[8..8 + probes.len()].iter().map(|&b| b == 1).collect(),
        sentinels_intact: got[8 + probes.len()] == 1,
    };
    (seen, expected)
}

/// Run every [`Way`] over the current table and check each against what the
/// parent expects, and all against each other.
fn check_every_way(situation: &str, tracked: &[RawFd], probes: &[RawFd], sentinels: &Sentinels) {
    for fd in tracked {
        assert!(probes.contains(fd), "{situation}: probe {fd} too");
        assert!(TABLE.contains(*fd), "{situation}: {fd} is tracked");
    }
    let mut first: Option<Seen> = None;
    for way in WAYS {
        let (seen, expected) = close_in_child(way, probes, sentinels);
        let wrong: Vec<(RawFd, bool)> = probes
            .iter()
            .zip(seen.open.iter().zip(&expected))
            .filter(|(_, (open, want))| open != want)
            .map(|(&fd, (&open, _))| (fd, open))
            .collect();
        assert!(
            wrong.is_empty(),
            "{situation}, {way:?}: (fd, open in child) differs from expected: {wrong:?}"
        );
        for &fd in tracked {
            let i = probes.iter().position(|&p| p == fd).expect("probed");
            assert!(!seen.open[i], "{situation}, {way:?}: tracked {fd} open");
        }
        assert_eq!(
            seen.closed,
            tracked.len() as u64,
            "{situation}, {way:?}: close_all_in_child's count"
        );
        assert!(seen.sentinels_intact, "{situation}, {way:?}: sentinels");
        match &first {
            None => first = Some(seen),
            Some(first) => assert_eq!(
                first, &seen,
                "{situation}: {way:?} differs from {:?}",
                WAYS[0]
            ),
        }
    }
    // The parent's descriptors are untouched by all of it.
    for &fd in tracked {
        assert!(util::is_open(fd), "{situation}: parent's {fd} closed");
    }
    sentinels.check();
}

/// `/dev/null` moved to exactly `fd` (close-on-exec), which must be closed.
fn null_at(fd: RawFd) -> OwnedFd {
    assert!(!util::is_open(fd), "{fd} is free");
    let null = util::dev_null();
    // `fd` is closed (checked above; tests that place numbers hold the
    // serial lock), so dup3 only allocates it.
    let rc = util::dup_cloexec_at(null.as_raw_fd(), fd);
    assert_eq!(rc, fd, "dup3 to {fd}: {}", std::io::Error::last_os_error());
    // SAFETY: dup3 just made `fd` ours.
    unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) }
}

/// Track and place: runs `base..base+3` and `base+4..base+6` tracked, the
/// number `base+3` between them open and untracked (a run must not swallow
/// it), `base+7` tracked alone. Returns (handles, tracked numbers, the
/// untracked one).
fn track_runs(base: RawFd) -> (Vec<Tracked<'static, OwnedFd>>, Vec<RawFd>, OwnedFd) {
    let numbers = [base, base + 1, base + 2, base + 4, base + 5, base + 7];
    let handles: Vec<_> = numbers
        .iter()
        .map(|&fd| TABLE.track(null_at(fd)).expect("track"))
        .collect();
    let between = null_at(base + 3);
    (handles, numbers.to_vec(), between)
}

/// The seccomp filter really makes the kernel refuse `close_range` (so the
/// `KernelRefuses` runs do take the runtime fallback), in a child.
#[test]
#[cfg(target_os = "linux")]
fn seccomp_filter_refuses_close_range() {
    let _serial = util::serial();
    for errno in [libc::ENOSYS, libc::EPERM] {
        let code = util::in_fork(CHILD_LIMIT, || {
            if !util::refuse_close_range(errno) {
                return 90;
            }
            // close_range(1, 0) is EINVAL where the call is allowed.
            // SAFETY: first > last: closes nothing.
            let rc = unsafe { libc::syscall(libc::SYS_close_range, 1u32, 0u32, 0u32) };
            // SAFETY: reads this thread's errno.
            let got = unsafe { *libc::__errno_location() };
            if rc == -1 && got == errno {
                0
            } else {
                1
            }
        });
        assert_eq!(code, 0, "errno {errno}");
    }
}

#[test]
fn close_all_in_child_closes_exactly_the_tracked_numbers_every_way() {
    let _serial = util::serial();
    let sentinels = Sentinels::open(2);
    let (handles, tracked, between) = track_runs(200);
    let probes: Vec<RawFd> = (0..256).collect();
    check_every_way("ordinary numbers", &tracked, &probes, &sentinels);
    assert!(util::is_open(between.as_raw_fd()));
    for handle in handles {
        handle.close().expect("close");
    }
    assert!(TABLE.is_empty());
    sentinels.check_and_close();
}

/// Put `RLIMIT_NOFILE` back as it was, also when the test panics.
struct RestoreLimit(libc::rlimit);

impl Drop for RestoreLimit {
    fn drop(&mut self) {
        // SAFETY: a valid rlimit value read earlier by getrlimit.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &self.0) };
    }
}

/// Raise the soft (and, when allowed, hard) limit on descriptors; return the
/// new soft limit.
fn raise_nofile() -> (RestoreLimit, RawFd) {
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `old` is a valid out pointer.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut old) }, 0);
    let restore = RestoreLimit(old);
    // Root may go past the hard limit (up to fs.nr_open); try 65536 first.
    let wanted = 65536.max(old.rlim_cur);
    let big = libc::rlimit {
        rlim_cur: wanted,
        rlim_max: wanted.max(old.rlim_max),
    };
    // SAFETY: a valid rlimit value.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &big) } != 0 {
        let hard = libc::rlimit {
            rlim_cur: old.rlim_max,
            rlim_max: old.rlim_max,
        };
        // SAFETY: a valid rlimit value; raising soft to hard is always allowed.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &hard) }, 0);
    }
    let mut now = old;
    // SAFETY: `now` is a valid out pointer.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut now) }, 0);
    // Keep the number representable and the table's chunk modest.
    let limit = now.rlim_cur.min(1 << 20) as RawFd;
    (restore, limit)
}

#[test]
fn close_all_in_child_with_a_tracked_fd_at_the_descriptor_limit() {
    let _serial = util::serial();
    let (_restore, limit) = raise_nofile();
    if limit <= 1024 {
        eprintln!("skipped: RLIMIT_NOFILE {limit} cannot be raised above 1024 here");
        return;
    }
    eprintln!("RLIMIT_NOFILE is {limit} for this test");
    let sentinels = Sentinels::open(1);
    let (mut handles, mut tracked, between) = track_runs(100);
    // A run ending at the very last number, with an untracked one below.
    for fd in [limit - 2, limit - 1] {
        handles.push(TABLE.track(null_at(fd)).expect("track near the limit"));
        tracked.push(fd);
    }
    let below = null_at(limit - 3);
    let probes: Vec<RawFd> = (0..128).chain(limit - 64..limit).collect();
    check_every_way(
        &format!(
            "RLIMIT_NOFILE {limit}, tracked {} and {}",
            limit - 2,
            limit - 1
        ),
        &tracked,
        &probes,
        &sentinels,
    );
    assert!(util::is_open(between.as_raw_fd()) && util::is_open(below.as_raw_fd()));
    for handle in handles {
        handle.close().expect("close");
    }
    assert!(TABLE.is_empty());
    sentinels.check_and_close();
}

#[test]
fn close_all_in_child_with_stdio_closed_at_start() {
    let _serial = util::serial();
    let report =
        std::env::temp_dir().join(format!("fdtable-matrix-stdio-{}.txt", std::process::id()));
    let _ = std::fs::remove_file(&report);
    let exe = std::env::current_exe().expect("current_exe");
    let mut child = std::process::Command::new(exe)
        .args([
            "--exact",
            "stdio_closed_child",
            "--ignored",
            "--test-threads=1",
        ])
        .env(STDIO_CHILD_ENV, "1")
        .env(STDIO_REPORT_ENV, &report)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("re-exec the test binary");
    let end = util::wait_child(child.id() as libc::pid_t, Duration::from_secs(60))
        .expect("wait for the re-executed test");
    let _ = child.try_wait(); // reaped above
    let why = std::fs::read_to_string(&report).unwrap_or_default();
    let _ = std::fs::remove_file(&report);
    assert_eq!(end, ChildEnd::Exited(0), "stdio-closed run failed: {why}");
    assert_eq!(why, "ok", "the re-executed half did not run");
}

/// The half of `close_all_in_child_with_stdio_closed_at_start` that runs in
/// the re-executed binary: closes 0-2, tracks files that get 0, 1, 2, runs
/// the matrix, and exits with 0 or writes why it failed and exits with 1.
#[test]
#[ignore = "run by close_all_in_child_with_stdio_closed_at_start"]
fn stdio_closed_child() {
    if std::env::var_os(STDIO_CHILD_ENV).is_none() {
        return;
    }
    let report = std::env::var_os(STDIO_REPORT_ENV).expect("report path");
    let outcome = std::panic::catch_unwind(|| {
        for fd in 0..=2 {
            // SAFETY: nothing in this process uses stdio from here on (the
            // harness's output goes to /dev/null, and we exit directly).
            unsafe { libc::close(fd) };
        }
        let handles: Vec<Tracked<'static, File>> = (0..3)
            .map(|_| TABLE.track(util::dev_null()).expect("track"))
            .collect();
        let numbers: Vec<RawFd> = handles.iter().map(|h| h.as_raw_fd()).collect();
        assert_eq!(numbers, [0, 1, 2], "tracked files took the stdio numbers");
        let sentinels = Sentinels::open(1);
        let probes: Vec<RawFd> = (0..64).collect();
        check_every_way("stdio closed at start", &numbers, &probes, &sentinels);
        drop(handles);
        assert!(TABLE.is_empty());
        sentinels.check_and_close();
    });
    let code = match outcome {
        Ok(()) => {
            // Proof that this half ran at all (a filter matching no test
            // would exit 0 too).
            let _ = std::fs::write(report, "ok");
            0
        }
        Err(panic) => {
            let why = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic".into());
            let _ = std::fs::write(report, why);
            1
        }
    };
    // Leave before the harness tries to print to the closed stdio.
    std::process::exit(code);
}

/// Ways `close_other_fds` may find the kernel, as seccomp rules.
#[cfg(target_os = "linux")]
const CLOSE_OTHER_WAYS: [(&str, &[spawn_util::Refuse]); 6] = {
    use spawn_util::Refuse;
    const NR: libc::c_long = libc::SYS_close_range;
    const CLOEXEC: u32 = libc::CLOSE_RANGE_CLOEXEC;
    const DIRECTORY: u32 = libc::O_DIRECTORY as u32;
    [
        ("CLOSE_RANGE_CLOEXEC available", &[]),
        (
            "the flag refused (EINVAL, Linux 5.9/5.10)",
            &[Refuse::when(NR, 2, CLOEXEC, libc::EINVAL)],
        ),
        (
            "close_range refused (ENOSYS)",
            &[Refuse::always(NR, libc::ENOSYS)],
        ),
        (
            "close_range refused (EPERM)",
            &[Refuse::always(NR, libc::EPERM)],
        ),
        (
            "close_range refused, /proc/self/fd cannot be opened (EMFILE)",
            &[
                Refuse::always(NR, libc::ENOSYS),
                Refuse::when(libc::SYS_openat, 2, DIRECTORY, libc::EMFILE),
            ],
        ),
        (
            "close_range refused, getdents64 refused",
            &[
                Refuse::always(NR, libc::ENOSYS),
                Refuse::always(libc::SYS_getdents64, libc::ENOSYS),
            ],
        ),
    ]
};

/// The seccomp rules really refuse what they say, in a fork child.
#[test]
#[cfg(target_os = "linux")]
fn close_other_fds_filters_refuse_what_they_claim() {
    let _serial = util::serial();
    for (way, rules) in CLOSE_OTHER_WAYS {
        let code = util::in_fork(CHILD_LIMIT, || {
            if !spawn_util::install(rules) {
                return 90;
            }
            // SAFETY: raw syscalls on a range above every descriptor and
            // on a directory we close again; errno read right after.
            unsafe {
                let cloexec = libc::syscall(
                    libc::SYS_close_range,
                    u32::MAX,
                    u32::MAX,
                    libc::CLOSE_RANGE_CLOEXEC,
                ) == 0;
                let dir = libc::open(
                    c"/proc/self/fd".as_ptr(),
                    libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
                );
                let mut buf = [0u64; 64];
                let listed =
                    dir >= 0 && libc::syscall(libc::SYS_getdents64, dir, buf.as_mut_ptr(), 512) > 0;
                if dir >= 0 {
                    libc::close(dir);
                }
                // Bit 0: CLOEXEC works; bit 1: /proc opens; bit 2: listed.
                cloexec as i32 | ((dir >= 0) as i32) << 1 | (listed as i32) << 2
            }
        });
        let expected = match rules.len() {
            0 => 0b111,
            _ if way.contains("cannot be opened") => 0b000,
            _ if way.contains("getdents64") => 0b010,
            _ => 0b110,
        };
        assert_eq!(code, expected, "{way}: bits cloexec/open/listed");
    }
}

#[test]
#[cfg(target_os = "linux")]
fn close_other_fds_leaves_exactly_stdio_and_passed_descriptors_every_way() {
    let _serial = util::serial();
    let sentinels = Sentinels::open(1);
    let soft_limit = {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: valid out pointer.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
        lim.rlim_cur.min(1 << 20) as RawFd
    };
    // Inheritable descriptors a careless library might leave: low, middle,
    // and the highest number the limit allows (the sweep must reach it).
    let inheritable = |fd: RawFd| {
        // SAFETY: F_SETFD on a descriptor we own.
        assert_eq!(unsafe { libc::fcntl(fd, libc::F_SETFD, 0) }, 0);
    };
    let low = util::dev_null();
    inheritable(low.as_raw_fd());
    let middle = null_at(500);
    inheritable(500);
    let top = null_at(soft_limit - 1);
    inheritable(soft_limit - 1);
    let tracked = TABLE.track(util::dev_null()).expect("track");
    inheritable(tracked.as_raw_fd());
    let (_reader, writer) = util::pipe();
    let passed_file = File::open("/proc/self/exe").expect("open exe");
    let null_id = util::identity(low.as_raw_fd()).expect("open");
    let expected: Vec<(RawFd, (u64, u64))> = vec![
        (0, null_id),
        (1, null_id),
        (2, null_id),
        (3, util::identity(writer.as_raw_fd()).expect("open")),
        (600, util::identity(passed_file.as_raw_fd()).expect("open")),
    ];

    let configure = |cmd: &mut std::process::Command, rules: &'static [spawn_util::Refuse]| {
        spawn_util::refuse_in_child(cmd, rules);
        cmd.child_fds(
            ChildFds::new()
                .pass_fd(std::os::fd::AsFd::as_fd(&writer), 3)
                .expect("pass 3")
                .pass_fd(std::os::fd::AsFd::as_fd(&passed_file), 600)
                .expect("pass 600")
                .close_other_fds()
                .close_tracked_fds(&TABLE),
        );
    };
    for (way, rules) in CLOSE_OTHER_WAYS {
        let mut cmd = spawn_util::sleep_cmd();
        configure(&mut cmd, rules);
        let got = spawn_util::fds_in_child(&mut cmd);
        let got: Vec<(RawFd, (u64, u64))> = got
            .iter()
            .map(|(&fd, info)| {
                assert!(!info.cloexec, "{way}: {fd} is close-on-exec");
                (fd, info.id)
            })
            .collect();
        assert_eq!(got, expected, "{way}: the program's descriptors");

        // std's exec-error socket survived every way: a missing program
        // is reported, not turned into a child that dies.
        for i in 0..20 {
            let mut missing = std::process::Command::new("/nonexistent/fdtable-matrix");
            configure(&mut missing, rules);
            let err = missing.spawn().map(spawn_util::finish).unwrap_err();
            assert_eq!(err.kind(), std::io::ErrorKind::NotFound, "{way} {i}: {err}");
        }
    }
    sentinels.check_and_close();
    drop((low, middle, top, tracked));
}

/// Review finding 10: the `fcntl` sweep (the last fallback of
/// `close_other_fds`, and of the hook's search for std's exec-error
/// channel) stops at the soft `RLIMIT_NOFILE`, never at 2^31 numbers,
/// whatever the parent's limit was when the value was built. A hook
/// registered before ours sets the
/// child's soft `RLIMIT_NOFILE` to 4096 (whatever this machine's is) and
/// caps its CPU time (`RLIMIT_CPU`, soft = hard: `SIGKILL` when it runs
/// out), so a runaway sweep ends as a killed child, not a hung test.
#[test]
#[cfg(target_os = "linux")]
fn close_other_fds_sweep_stops_at_the_soft_limit() {
    use spawn_util::Refuse;
    use std::os::unix::process::CommandExt as _;
    let _serial = util::serial();
    static SWEEP: [Refuse; 2] = [
        Refuse::always(libc::SYS_close_range, libc::ENOSYS),
        Refuse::when(libc::SYS_openat, 2, libc::O_DIRECTORY as u32, libc::EMFILE),
    ];
    let tracked = TABLE.track(util::dev_null()).expect("track");
    let mut cmd = std::process::Command::new("true");
    // SAFETY: getrlimit and setrlimit are plain syscalls on locals; nothing
    // is allocated.
    unsafe {
        cmd.pre_exec(|| {
            let cpu = libc::rlimit {
                rlim_cur: 10,
                rlim_max: 10,
            };
            let mut files = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut files) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            files.rlim_cur = files.rlim_max.min(4096);
            if libc::setrlimit(libc::RLIMIT_CPU, &cpu) == 0
                && libc::setrlimit(libc::RLIMIT_NOFILE, &files) == 0
            {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    spawn_util::refuse_in_child(&mut cmd, &SWEEP);
    cmd.child_fds(ChildFds::new().close_tracked_fds(&TABLE).close_other_fds());
    let status = util::within(
        Duration::from_secs(120),
        "spawn with the sweep",
        move || cmd.status().expect("spawn"),
    );
    assert!(
        status.success(),
        "{status}: the sweep ran past the soft limit (killed at the CPU limit)"
    );
    drop(tracked);
}
