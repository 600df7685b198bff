//! Helpers for the tests that spawn real programs through `CommandExt`:
//! what a running child really has open (from `/proc/<pid>/fd`), and
//! seccomp filters that make the kernel refuse what the child setup would
//! like to use, installed by a `pre_exec` hook that runs before ours.
//!
//! Included with `mod spawn_util;` next to `mod util;`.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io;
use std::os::fd::RawFd;
use std::os::unix::fs::MetadataExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One descriptor of a running child, as `/proc/<pid>/fd{,info}` show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChildFd {
    /// `(st_dev, st_ino)` of the file it names.
    pub id: (u64, u64),
    /// Whether it is close-on-exec.
    pub cloexec: bool,
}

/// Spawn `cmd` (a program that sleeps, such as `sleep 30`) with stdin,
/// stdout and stderr at `/dev/null` unless the caller set them, and wait
/// until it sleeps, so its descriptor set is the one `execve` left it with
/// (the dynamic loader's transient descriptors are closed by then).
pub fn spawn_sleeping(cmd: &mut Command) -> io::Result<Child> {
    let child = cmd.spawn()?;
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let wchan = std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
        if wchan.contains("nanosleep") || in_nanosleep(pid) {
            return Ok(child);
        }
        assert!(
            Instant::now() < deadline,
            "child {pid} never went to sleep (wchan {wchan:?})"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Whether `/proc/<pid>/syscall` shows the process blocked in a sleep call
/// (for kernels that hide `wchan`). Linux only; `false` elsewhere.
#[cfg(not(target_os = "linux"))]
fn in_nanosleep(_pid: u32) -> bool {
    false
}

/// See the other version.
#[cfg(target_os = "linux")]
fn in_nanosleep(pid: u32) -> bool {
    let line = std::fs::read_to_string(format!("/proc/{pid}/syscall")).unwrap_or_default();
    let Some(nr) = line
        .split_whitespace()
        .next()
        .and_then(|n| n.parse::<i64>().ok())
    else {
        return false;
    };
    #[cfg(target_arch = "x86_64")]
    if nr == libc::SYS_nanosleep {
        return true;
    }
    nr == libc::SYS_clock_nanosleep
}

/// `sleep 30`, stdio at `/dev/null`.
pub fn sleep_cmd() -> Command {
    let mut cmd = Command::new("sleep");
    cmd.arg("30")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

/// Every descriptor of process `pid`.
pub fn fds_of(pid: u32) -> BTreeMap<RawFd, ChildFd> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd")).expect("read /proc/<pid>/fd") {
        let entry = entry.expect("entry");
        let Ok(fd) = entry.file_name().to_string_lossy().parse::<RawFd>() else {
            continue;
        };
        let Ok(meta) = std::fs::metadata(entry.path()) else {
            continue; // closed meanwhile
        };
        let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).unwrap_or_default();
        let flags = info
            .lines()
            .find_map(|l| l.strip_prefix("flags:"))
            .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
            .unwrap_or(0);
        out.insert(
            fd,
            ChildFd {
                id: (meta.dev(), meta.ino()),
                cloexec: flags & libc::O_CLOEXEC as u32 != 0,
            },
        );
    }
    out
}

/// Kill and reap `child`.
pub fn finish(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// The descriptors of a sleeping child spawned from `cmd`.
pub fn fds_in_child(cmd: &mut Command) -> BTreeMap<RawFd, ChildFd> {
    let child = spawn_sleeping(cmd).expect("spawn");
    let fds = fds_of(child.id());
    finish(child);
    fds
}

/// Descriptors of this process that a child would inherit: open and not
/// close-on-exec.
pub fn inheritable_here() -> Vec<RawFd> {
    let listing: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")
        .expect("read /proc/self/fd")
        .filter_map(|e| e.ok()?.file_name().to_string_lossy().parse().ok())
        .collect();
    listing
        .into_iter()
        .filter(|&fd| {
            // SAFETY: F_GETFD only reads flags; a closed number gives -1.
            let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
            flags != -1 && flags & libc::FD_CLOEXEC == 0
        })
        .collect()
}

/// What a seccomp rule refuses.
#[derive(Debug, Clone, Copy)]
pub struct Refuse {
    /// Syscall number.
    pub nr: libc::c_long,
    /// Only when this argument (0-based) has one of these bits set in its
    /// low 32 bits (`true`), or has none of them (`false`).
    pub when_arg: Option<(u32, u32, bool)>,
    /// The errno returned instead.
    pub errno: libc::c_int,
}

impl Refuse {
    /// Refuse `nr` always.
    pub const fn always(nr: libc::c_long, errno: libc::c_int) -> Refuse {
        Refuse {
            nr,
            when_arg: None,
            errno,
        }
    }

    /// Refuse `nr` when argument `arg` has any of `bits`.
    pub const fn when(nr: libc::c_long, arg: u32, bits: u32, errno: libc::c_int) -> Refuse {
        Refuse {
            nr,
            when_arg: Some((arg, bits, true)),
            errno,
        }
    }

    /// Refuse `nr` when argument `arg` has none of `bits`.
    pub const fn unless(nr: libc::c_long, arg: u32, bits: u32, errno: libc::c_int) -> Refuse {
        Refuse {
            nr,
            when_arg: Some((arg, bits, false)),
            errno,
        }
    }
}

/// The largest filter [`install`] builds (5 instructions per rule + 1).
const MAX_RULES: usize = 6;

/// Install a filter that makes each rule's syscall fail with its errno and
/// allows everything else, for the calling thread and its future children.
/// Async-signal-safe (the program lives on the stack; two `prctl` calls).
/// Returns whether it is in force.
#[cfg(target_os = "linux")]
pub fn install(rules: &[Refuse]) -> bool {
    use crate::util::{bpf_jump, bpf_stmt, install_seccomp, BPF_LOAD, BPF_RETURN, SECCOMP_NR};
    const JEQ: u32 = libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K;
    const JSET: u32 = libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K;
    let mut prog = [bpf_stmt(0, 0); MAX_RULES * 5 + 1];
    let mut n = 0;
    let mut push = |f: libc::sock_filter| {
        prog[n] = f;
        n += 1;
    };
    if rules.len() > MAX_RULES {
        return false;
    }
    for rule in rules {
        push(bpf_stmt(BPF_LOAD, SECCOMP_NR));
        match rule.when_arg {
            None => {
                push(bpf_jump(JEQ, rule.nr as u32, 0, 1));
            }
            Some((arg, bits, has)) => {
                push(bpf_jump(JEQ, rule.nr as u32, 0, 3));
                // seccomp_data.args[arg], low half on a little-endian machine.
                push(bpf_stmt(BPF_LOAD, 16 + 8 * arg));
                if has {
                    push(bpf_jump(JSET, bits, 0, 1));
                } else {
                    push(bpf_jump(JSET, bits, 1, 0));
                }
            }
        }
        push(bpf_stmt(
            BPF_RETURN,
            libc::SECCOMP_RET_ERRNO | rule.errno as u32,
        ));
    }
    push(bpf_stmt(BPF_RETURN, libc::SECCOMP_RET_ALLOW));
    install_seccomp(&prog[..n])
}

/// Rules that make every way to fork fail on x86-64 (`clone3` as on an old
/// kernel, `clone` unless it shares memory as `posix_spawn`'s does, `fork`,
/// `vfork`): a command that still spawns under them did not fork.
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
pub const NO_FORK: [Refuse; 4] = [
    Refuse::always(libc::SYS_clone3, libc::ENOSYS),
    Refuse::unless(libc::SYS_clone, 0, libc::CLONE_VM as u32, libc::EPERM),
    Refuse::always(libc::SYS_fork, libc::EPERM),
    Refuse::always(libc::SYS_vfork, libc::EPERM),
];

/// Elsewhere there are no filters: only the empty rule list (the system as
/// it is) is accepted, and nothing is registered.
#[cfg(not(target_os = "linux"))]
pub fn refuse_in_child(_cmd: &mut Command, rules: &'static [Refuse]) {
    assert!(rules.is_empty(), "seccomp filters are Linux's");
}

/// Register a `pre_exec` hook on `cmd` that installs `rules` in the child.
/// Register it before any `fdtable::CommandExt` call, so it runs first.
#[cfg(target_os = "linux")]
pub fn refuse_in_child(cmd: &mut Command, rules: &'static [Refuse]) {
    use std::os::unix::process::CommandExt as _;
    // SAFETY: `install` is async-signal-safe and allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if install(rules) {
                Ok(())
            } else {
                Err(io::Error::from_raw_os_error(libc::EPERM))
            }
        });
    }
}

/// The environment variable that tells an `#[ignore]`d test it runs as the
/// isolated half of [`run_isolated`] (its value: where to write the report).
pub const ISOLATED_REPORT_ENV: &str = "FDTABLE_ISOLATED_REPORT";

/// Run the `#[ignore]`d test `name` of this test binary as a process of its
/// own (single-threaded, stdio at `/dev/null`), for what must not happen in
/// the shared test process: closing stdio, `Command::exec`, damage that a
/// test exists to rule out. The other half calls [`isolated`]. Returns the
/// report: `"ok"`, or why it failed. A helper still running after `limit`
/// is killed and fails the test.
pub fn run_isolated(name: &str, limit: Duration) -> String {
    let report = std::env::temp_dir().join(format!(
        "fdtable-isolated-{name}-{}.txt",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&report);
    let mut child = Command::new(std::env::current_exe().expect("current_exe"))
        .args([name, "--exact", "--ignored", "--test-threads=1"])
        .env(ISOLATED_REPORT_ENV, &report)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("re-run the test binary");
    let end = crate::util::wait_child(child.id() as libc::pid_t, limit).expect("waitpid");
    let _ = child.try_wait(); // reaped above
    let why = std::fs::read_to_string(&report).unwrap_or_default();
    let _ = std::fs::remove_file(&report);
    assert_eq!(
        end,
        crate::util::ChildEnd::Exited(if why == "ok" { 0 } else { 1 }),
        "{name}: the isolated run ended badly: {why:?}"
    );
    assert!(!why.is_empty(), "{name}: the isolated half did not run");
    why
}

/// The isolated half of [`run_isolated`]: run `body`, write `"ok"` or the
/// panic message to the report, and leave the process with 0 or 1 (before
/// the harness prints to a stdio that `body` may have closed). Does nothing
/// when the test is run directly (with `--ignored`, outside
/// [`run_isolated`]).
pub fn isolated(body: impl FnOnce()) {
    let Some(report) = std::env::var_os(ISOLATED_REPORT_ENV) else {
        return;
    };
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body));
    let (code, why) = match outcome {
        Ok(()) => (0, "ok".to_owned()),
        Err(panic) => (
            1,
            panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "panic".into()),
        ),
    };
    let _ = std::fs::write(report, why);
    std::process::exit(code);
}

/// A regular file with its own inode, unlinked at once.
pub fn scratch_file(tag: &str) -> std::fs::File {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("fdtable-{tag}-{}-{n}", std::process::id()));
    let file = std::fs::File::create(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    file
}

/// Clear `FD_CLOEXEC`: the descriptor leaks into children, as descriptors
/// opened by careless libraries or inherited from our own parent do.
pub fn make_inheritable(fd: RawFd) {
    // SAFETY: F_SETFD on a descriptor the test owns.
    assert_eq!(unsafe { libc::fcntl(fd, libc::F_SETFD, 0) }, 0);
}

/// One end of a close-on-exec channel made here of the kind std uses for
/// its exec-error channel: an `AF_UNIX` `SOCK_SEQPACKET` socket pair on
/// Linux, a pipe elsewhere.
#[cfg(not(target_os = "linux"))]
pub fn channel_like_end() -> std::os::fd::OwnedFd {
    crate::util::pipe().0
}

/// One end of an `AF_UNIX` `SOCK_SEQPACKET` socket pair made here,
/// close-on-exec: what std's exec-error channel looks like on Linux.
#[cfg(target_os = "linux")]
pub fn channel_like_end() -> std::os::fd::OwnedFd {
    use std::os::fd::{FromRawFd, OwnedFd};
    let mut fds = [-1; 2];
    // SAFETY: `fds` is a valid two-element out-array.
    let rc = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    assert_eq!(rc, 0, "socketpair: {}", io::Error::last_os_error());
    // SAFETY: socketpair just created both; we own them.
    let (a, _b) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    a
}
