//! Helpers shared by the integration tests.
//!
//! Every test binary includes this module with `mod util;`, and not every
//! binary uses every helper.
#![allow(dead_code)]

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// One lock per test binary for tests that touch signals, count
/// descriptors, or depend on which number the kernel hands out next.
/// Signals, masks-by-pthread_kill and the fd table are process-wide, so such
/// tests must not overlap.
static SERIAL: Mutex<()> = Mutex::new(());

/// Take the process-wide serial lock. Poison-tolerant: a test that failed
/// while holding it must not fail every later test too.
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// How many descriptors this process has open, from `/proc/self/fd`
/// (the directory's own descriptor is not counted).
pub fn open_fd_count() -> usize {
    let dir = std::fs::read_dir("/proc/self/fd").expect("read /proc/self/fd");
    // `read_dir` holds one descriptor for the listing itself.
    dir.count() - 1
}

/// Whether `fd` is an open descriptor (`fcntl(F_GETFD)` succeeds).
pub fn is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD only reads the descriptor flags; any integer is a valid
    // argument (a closed one yields EBADF).
    unsafe { libc::fcntl(fd, libc::F_GETFD) != -1 }
}

/// `fcntl(F_GETFD)`: the descriptor flags, or the OS error.
pub fn fd_flags(fd: RawFd) -> io::Result<libc::c_int> {
    // SAFETY: as in `is_open`.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(flags)
    }
}

/// The `(st_dev, st_ino)` identity of whatever `fd` refers to, if open.
pub fn identity(fd: RawFd) -> Option<(u64, u64)> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `st` is a valid out-pointer for one `struct stat`; fstat
    // initialises it on success and we read it only then.
    unsafe {
        if libc::fstat(fd, st.as_mut_ptr()) == -1 {
            return None;
        }
        let st = st.assume_init();
        // The field types differ between targets (u32 / u64).
        #[allow(clippy::unnecessary_cast)]
        Some((st.st_dev as u64, st.st_ino as u64))
    }
}

/// A pipe whose both ends are close-on-exec: `(read, write)`.
pub fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [-1; 2];
    // SAFETY: `fds` is a valid two-element out-array.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2: {}", io::Error::last_os_error());
    // SAFETY: pipe2 just created both descriptors; nothing else owns them.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// `/dev/null`, opened for reading and writing.
pub fn dev_null() -> File {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .expect("open /dev/null")
}

/// Descriptors opened before a test and never tracked: after the test each
/// must still be open and still refer to the same file (I2: nothing foreign
/// is closed, nothing foreign is replaced).
pub struct Sentinels {
    fds: Vec<OwnedFd>,
    ids: Vec<(RawFd, (u64, u64))>,
}

impl Sentinels {
    /// Open a mix of files and pipes: `n` of each kind.
    pub fn open(n: usize) -> Sentinels {
        let mut fds = Vec::new();
        for _ in 0..n {
            fds.push(OwnedFd::from(
                File::open("/proc/self/exe").expect("open exe"),
            ));
            let (r, w) = pipe();
            fds.push(r);
            fds.push(w);
        }
        let ids = fds
            .iter()
            .map(|fd| {
                let raw = fd.as_raw_fd();
                (raw, identity(raw).expect("sentinel is open"))
            })
            .collect();
        Sentinels { fds, ids }
    }

    /// Panic unless every sentinel is open with its original identity.
    pub fn check(&self) {
        for &(fd, id) in &self.ids {
            assert_eq!(
                identity(fd),
                Some(id),
                "sentinel fd {fd} was closed or replaced"
            );
        }
    }

    /// Each sentinel's number and `(st_dev, st_ino)`, for checks that must
    /// run without allocating (in a fork child: compare with [`identity`]).
    pub fn ids(&self) -> &[(RawFd, (u64, u64))] {
        &self.ids
    }

    /// Whether every sentinel is open with its original identity.
    /// Async-signal-safe (`fstat` only, no allocation, no panic).
    pub fn intact(&self) -> bool {
        self.ids.iter().all(|&(fd, id)| identity(fd) == Some(id))
    }

    /// Check, then close them.
    pub fn check_and_close(self) {
        self.check();
        drop(self.fds);
    }
}

/// Bounds a loop both in time and in iterations, so a test can neither hang
/// nor spin forever on a fast machine.
pub struct Deadline {
    end: Instant,
    left: u64,
}

impl Deadline {
    /// At most `max_iters` iterations and at most `time`.
    pub fn new(time: Duration, max_iters: u64) -> Deadline {
        Deadline {
            end: Instant::now() + time,
            left: max_iters,
        }
    }

    /// Whether the loop may run once more (counts one iteration).
    pub fn tick(&mut self) -> bool {
        if self.left == 0 || Instant::now() >= self.end {
            return false;
        }
        self.left -= 1;
        true
    }

    /// Whether the time is up (does not count an iteration).
    pub fn expired(&self) -> bool {
        Instant::now() >= self.end
    }
}

/// Run `f` on a fresh thread and wait at most `limit` for it: a call that
/// hangs fails the test instead of hanging it (the stuck thread is leaked).
pub fn within<T: Send + 'static>(
    limit: Duration,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)));
    });
    match rx.recv_timeout(limit) {
        Ok(Ok(value)) => value,
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(_) => panic!("{what}: did not finish within {limit:?} (hang)"),
    }
}

/// The signal mask of the calling thread.
pub fn current_mask() -> libc::sigset_t {
    let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: a null `set` only queries; `set` receives the current mask.
    unsafe {
        libc::sigemptyset(set.as_mut_ptr());
        let rc = libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), set.as_mut_ptr());
        assert_eq!(rc, 0);
        set.assume_init()
    }
}

/// Whether `sig` is in `set`.
pub fn has(set: &libc::sigset_t, sig: libc::c_int) -> bool {
    // SAFETY: `set` is an initialised sigset; sigismember only reads it.
    unsafe { libc::sigismember(set, sig) == 1 }
}

/// Every signal number 1..=SIGRTMAX that is in `set`.
pub fn members(set: &libc::sigset_t) -> Vec<libc::c_int> {
    (1..=libc::SIGRTMAX()).filter(|&s| has(set, s)).collect()
}

/// A thread's id for `pthread_kill`, shared through an atomic.
pub fn pthread_self() -> libc::pthread_t {
    // SAFETY: always safe to call.
    unsafe { libc::pthread_self() }
}

/// How a child reaped by [`wait_child`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildEnd {
    /// `_exit(code)` / `exit(code)`.
    Exited(i32),
    /// Killed by this signal.
    Signaled(i32),
    /// Still running at the deadline: killed with SIGKILL and reaped.
    Hung,
}

/// Wait for the child `pid`, polling with `WNOHANG` for at most `limit`; a
/// child still running then is SIGKILLed and reaped, and reported as
/// [`ChildEnd::Hung`] (a hang is a failure, never a stuck run).
pub fn wait_child(pid: libc::pid_t, limit: Duration) -> io::Result<ChildEnd> {
    let end = Instant::now() + limit;
    let mut status = 0;
    let mut round = 0u32;
    loop {
        // SAFETY: `pid` is our child; `status` is a valid out pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            break;
        }
        if r == -1 {
            let error = io::Error::last_os_error();
            if error.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(error);
        }
        if Instant::now() >= end {
            // SAFETY: killing and reaping our own, still unreaped child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                while libc::waitpid(pid, &mut status, 0) == -1
                    && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted
                {
                }
            }
            return Ok(ChildEnd::Hung);
        }
        // Most children are done within microseconds: yield first, then
        // back off to short sleeps.
        if round < 64 {
            std::thread::yield_now();
        } else {
            std::thread::sleep(Duration::from_micros(100));
        }
        round = round.saturating_add(1);
    }
    if libc::WIFEXITED(status) {
        Ok(ChildEnd::Exited(libc::WEXITSTATUS(status)))
    } else {
        Ok(ChildEnd::Signaled(libc::WTERMSIG(status)))
    }
}

/// Fork and run `child` in the child, which must make only async-signal-safe
/// calls (no allocation, no lock) and return an exit code; the child leaves
/// with `_exit(code)`. The parent waits at most `limit` ([`wait_child`]) and
/// returns the code; a child that hangs or dies by a signal fails the test.
pub fn in_fork(limit: Duration, child: impl FnOnce() -> i32) -> i32 {
    // SAFETY: the child only runs `child` (async-signal-safe by contract of
    // this helper) and leaves with `_exit`, never returning into the harness.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", io::Error::last_os_error());
    if pid == 0 {
        let code = child();
        // SAFETY: ends the child at once; no destructor or atexit runs.
        unsafe { libc::_exit(code) };
    }
    match wait_child(pid, limit).expect("waitpid") {
        ChildEnd::Exited(code) => code,
        ChildEnd::Signaled(sig) => panic!("child {pid} died by signal {sig} instead of exiting"),
        ChildEnd::Hung => panic!("child {pid} hung for {limit:?}"),
    }
}

/// Offset of `nr` in `struct seccomp_data`.
#[cfg(target_os = "linux")]
pub const SECCOMP_NR: u32 = 0;
/// Offset of the low half of `args[1]` in `struct seccomp_data` (16 + 8, on
/// a little-endian machine).
#[cfg(target_os = "linux")]
pub const SECCOMP_ARG1_LOW: u32 = 24;

/// A classic-BPF statement (`BPF_STMT`).
#[cfg(target_os = "linux")]
pub fn bpf_stmt(code: u32, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    }
}

/// `if A == k` fall through, else skip `jf` instructions.
#[cfg(target_os = "linux")]
pub fn bpf_jump_eq(k: u32, jf: u8) -> libc::sock_filter {
    libc::sock_filter {
        code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
        jt: 0,
        jf,
        k,
    }
}

/// `BPF_LD | BPF_W | BPF_ABS`: load a word of `struct seccomp_data`.
#[cfg(target_os = "linux")]
pub const BPF_LOAD: u32 = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
/// `BPF_RET | BPF_K`: return a constant verdict.
#[cfg(target_os = "linux")]
pub const BPF_RETURN: u32 = libc::BPF_RET | libc::BPF_K;

/// Install the seccomp `filter` for the calling thread (and its future
/// children). Async-signal-safe (two `prctl` calls; the kernel copies the
/// program). Returns whether it is in force.
#[cfg(target_os = "linux")]
pub fn install_seccomp(filter: &[libc::sock_filter]) -> bool {
    let program = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: `program` points at `filter`, both alive for the call; the
    // kernel copies the program. NO_NEW_PRIVS is required for unprivileged
    // callers and harmless for root.
    unsafe {
        libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0
            && libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &program as *const libc::sock_fprog,
            ) == 0
    }
}

/// Install a seccomp filter that makes the syscall `nr` fail with `errno`
/// and allows everything else. Async-signal-safe (the program lives on the
/// stack). Returns whether it is in force.
#[cfg(target_os = "linux")]
pub fn refuse_syscall(nr: libc::c_long, errno: libc::c_int) -> bool {
    install_seccomp(&[
        bpf_stmt(BPF_LOAD, SECCOMP_NR),
        bpf_jump_eq(nr as u32, 1),
        bpf_stmt(BPF_RETURN, libc::SECCOMP_RET_ERRNO | errno as u32),
        bpf_stmt(BPF_RETURN, libc::SECCOMP_RET_ALLOW),
    ])
}

/// Make `close_range(2)` fail with `errno` for the calling thread and the
/// processes it forks from now on (seccomp), so the child path takes its
/// runtime fallback exactly as on a kernel without the call (`ENOSYS`) or
/// under a container's filter (`EPERM`). Use it in a fork child or a
/// `pre_exec` hook, never in the test process itself. Async-signal-safe.
/// Returns whether the filter is in force.
#[cfg(target_os = "linux")]
pub fn refuse_close_range(errno: libc::c_int) -> bool {
    refuse_syscall(libc::SYS_close_range, errno)
}
