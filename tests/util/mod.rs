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

/// The directory that lists this process's open descriptors: Linux's
/// `/proc/self/fd`; elsewhere `/dev/fd`, a real per-process listing on
/// macOS (and on FreeBSD only with `fdescfs` mounted there). The tests run
/// on Linux only; elsewhere they are type-checked.
#[cfg(target_os = "linux")]
pub const FD_DIR: &str = "/proc/self/fd";
/// See the Linux version.
#[cfg(not(target_os = "linux"))]
pub const FD_DIR: &str = "/dev/fd";

/// This test program's own executable, opened for reading: through
/// `/proc/self/exe` on Linux, by its path elsewhere.
pub fn open_self_exe() -> File {
    #[cfg(target_os = "linux")]
    let path = std::path::PathBuf::from("/proc/self/exe");
    #[cfg(not(target_os = "linux"))]
    let path = std::env::current_exe().expect("current_exe");
    File::open(path).expect("open exe")
}

/// How many descriptors this process has open, from [`FD_DIR`] (the
/// directory's own descriptor is not counted).
///
/// The first `track` of any table opens one process-lifetime placeholder
/// descriptor (see `FdTable`'s docs); this opens it first, so a baseline
/// taken before anything was tracked matches a count taken afterwards. A
/// placeholder opened again and again would still show.
pub fn open_fd_count() -> usize {
    ensure_placeholder();
    let dir = std::fs::read_dir(FD_DIR).expect("read the descriptor directory");
    // `read_dir` holds one descriptor for the listing itself.
    dir.count() - 1
}

/// Make sure the crate's process-wide placeholder is open: one `track`
/// (on a table of its own) does it.
pub fn ensure_placeholder() {
    // Under `--cfg fdtable_loom` `FdTable::new` is not `const`; the loom
    // models count no descriptors.
    #[cfg(not(fdtable_loom))]
    {
        static WARM_UP: fdtable::FdTable = fdtable::FdTable::new();
        drop(WARM_UP.track(dev_null()).expect("track /dev/null"));
    }
}

/// `(st_dev, st_ino)` of what `close_all` swaps in (on Linux an `O_PATH`
/// descriptor of a private pipe), learned the way a user would see it: by
/// retiring a tracked pipe end on a table of its own and looking at what
/// its number names then.
pub fn placeholder_identity() -> (u64, u64) {
    #[cfg(not(fdtable_loom))]
    static PROBE: fdtable::FdTable = fdtable::FdTable::new();
    // Under `--cfg fdtable_loom` tables are not `const` (and this runs
    // inside a model).
    #[cfg(fdtable_loom)]
    let table = fdtable::FdTable::new();
    #[cfg(fdtable_loom)]
    let probe_table = &table;
    #[cfg(not(fdtable_loom))]
    let probe_table = &PROBE;
    let (read, _write) = pipe();
    let pipe_id = identity(read.as_raw_fd()).expect("fstat pipe");
    let probe = probe_table.track(read).expect("track a pipe end");
    // Another thread may retire it first (this table is shared by callers):
    // the number names the placeholder either way.
    let report = probe_table.close_all();
    assert!(report.is_ok(), "{report:?}");
    let retired = identity(probe.as_raw_fd()).expect("a retired number stays open");
    assert_ne!(retired, pipe_id, "close_all left the pipe in place");
    drop(probe);
    retired
}

/// The number of this process's placeholder: the descriptor other than
/// `except` whose identity is [`placeholder_identity`]'s, found through
/// [`FD_DIR`]. Call it where no other test retires anything.
pub fn placeholder_fd() -> RawFd {
    let id = placeholder_identity();
    let numbers: Vec<RawFd> = std::fs::read_dir(FD_DIR)
        .expect("read the descriptor directory")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    let found: Vec<RawFd> = numbers
        .into_iter()
        .filter(|&fd| identity(fd) == Some(id))
        .collect();
    assert_eq!(found.len(), 1, "exactly one placeholder: {found:?}");
    found[0]
}

/// A close-on-exec duplicate of `fd` at exactly `n`, which must be free.
#[allow(dead_code)]
pub fn dup_at(fd: RawFd, n: RawFd) -> OwnedFd {
    assert!(!is_open(n), "number {n} is busy");
    // SAFETY: F_DUPFD_CLOEXEC makes a fresh descriptor that we own.
    let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, n) };
    assert_eq!(new, n, "could not place at {n}");
    // SAFETY: just created; nobody else owns it.
    unsafe { std::os::fd::FromRawFd::from_raw_fd(new) }
}

/// Place a close-on-exec duplicate of `fd` at exactly `n`, which the
/// caller knows is free: `dup3(fd, n, O_CLOEXEC)`, or on Apple systems (no
/// `dup3`) `fcntl(fd, F_DUPFD_CLOEXEC, n)`, which lands at `n` because it
/// is free. Returns what the call returned (`n`, or -1 with `errno`).
/// Async-signal-safe.
pub fn dup_cloexec_at(fd: RawFd, n: RawFd) -> libc::c_int {
    #[cfg(not(target_vendor = "apple"))]
    {
        // SAFETY: duplicates a descriptor the caller owns onto a number it
        // knows is free.
        unsafe { libc::dup3(fd, n, libc::O_CLOEXEC) }
    }
    #[cfg(target_vendor = "apple")]
    {
        // SAFETY: as above; never replaces an open descriptor.
        unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, n) }
    }
}

/// Fill every free number from 3 below `below` with `/dev/null` except
/// `spare` (so std's exec-error socket pair, made at the two lowest free
/// numbers, lands on `spare` and the next free one); the fillers close on
/// drop.
#[allow(dead_code)]
pub fn fill_below(below: RawFd, spare: RawFd) -> Vec<OwnedFd> {
    let null = File::open("/dev/null").unwrap();
    let mut fillers: Vec<OwnedFd> = (3..below)
        .filter(|&n| n != spare && !is_open(n))
        .map(|n| dup_at(std::os::fd::AsRawFd::as_raw_fd(&null), n))
        .collect();
    // Its own number is one of the filled ones.
    fillers.push(null.into());
    fillers
}

/// A descriptor number that is not open right now (from 3000 up, above
/// what the tests place on purpose).
#[allow(dead_code)]
pub fn closed_number() -> RawFd {
    (3000..).find(|&n| !is_open(n)).expect("a free number")
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
    assert!(raw_pipe(&mut fds), "pipe: {}", io::Error::last_os_error());
    // SAFETY: the pipe was just created; nothing else owns its ends.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// Make a pipe into `fds`, both ends close-on-exec; whether it worked.
/// `pipe2(O_CLOEXEC)`, or on Apple systems (no `pipe2`) `pipe` then
/// `fcntl`. Async-signal-safe, allocation-free (for fork children).
pub fn raw_pipe(fds: &mut [libc::c_int; 2]) -> bool {
    #[cfg(not(target_vendor = "apple"))]
    {
        // SAFETY: `fds` is a valid two-element out-array.
        unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) == 0 }
    }
    #[cfg(target_vendor = "apple")]
    {
        // SAFETY: `fds` is a valid two-element out-array.
        unsafe { libc::pipe(fds.as_mut_ptr()) == 0 && cloexec_both(fds) }
    }
}

/// Make an `AF_UNIX` socket pair of type `ty` into `fds`, both ends
/// close-on-exec; whether it worked. `SOCK_CLOEXEC`, or on Apple systems
/// (no `SOCK_CLOEXEC`) `fcntl` afterwards. Async-signal-safe,
/// allocation-free.
pub fn raw_socketpair(ty: libc::c_int, fds: &mut [libc::c_int; 2]) -> bool {
    #[cfg(not(target_vendor = "apple"))]
    let ty = ty | libc::SOCK_CLOEXEC;
    // SAFETY: `fds` is a valid two-element out-array.
    let made = unsafe { libc::socketpair(libc::AF_UNIX, ty, 0, fds.as_mut_ptr()) == 0 };
    #[cfg(target_vendor = "apple")]
    let made = made && cloexec_both(fds);
    made
}

/// Set `FD_CLOEXEC` on both descriptors; whether it worked.
#[cfg(target_vendor = "apple")]
fn cloexec_both(fds: &[libc::c_int; 2]) -> bool {
    // SAFETY: F_SETFD on descriptors the caller just created.
    fds.iter()
        .all(|&fd| unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } == 0)
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
            fds.push(OwnedFd::from(open_self_exe()));
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

/// The highest signal number: `SIGRTMAX` on Linux; elsewhere 128, above
/// every system's last signal (macOS has 31, NetBSD 63, FreeBSD 128; a
/// number that is not a signal is never a member).
pub fn max_signal() -> libc::c_int {
    #[cfg(target_os = "linux")]
    {
        libc::SIGRTMAX()
    }
    #[cfg(not(target_os = "linux"))]
    {
        128
    }
}

/// The first and last real-time signals (`SIGRTMIN`, `SIGRTMAX`) on
/// Linux; none elsewhere (macOS has no real-time signals; the `libc` crate
/// names none for the BSDs).
pub fn realtime_signals() -> Vec<libc::c_int> {
    #[cfg(target_os = "linux")]
    {
        vec![libc::SIGRTMIN(), libc::SIGRTMAX()]
    }
    #[cfg(not(target_os = "linux"))]
    {
        Vec::new()
    }
}

/// Every signal number 1..=[`max_signal`] that is in `set`.
pub fn members(set: &libc::sigset_t) -> Vec<libc::c_int> {
    (1..=max_signal()).filter(|&s| has(set, s)).collect()
}

/// The calling thread's kernel id, as `fdtable::quarantine`'s report
/// gives it: `gettid` on Linux, `pthread_threadid_np` on Apple systems,
/// `pthread_getthreadid_np` on FreeBSD, `_lwp_self` on NetBSD; elsewhere
/// `pthread_self`'s value (unique among the live threads). Async-signal-safe,
/// allocation-free.
pub fn thread_id() -> i64 {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid has no preconditions.
        i64::from(unsafe { libc::gettid() })
    }
    #[cfg(target_vendor = "apple")]
    {
        let mut id = 0u64;
        // SAFETY: a null thread is the calling one; `id` is a valid out pointer.
        unsafe { libc::pthread_threadid_np(0, &mut id) };
        id as i64
    }
    #[cfg(target_os = "freebsd")]
    {
        // SAFETY: no preconditions.
        i64::from(unsafe { libc::pthread_getthreadid_np() })
    }
    #[cfg(target_os = "netbsd")]
    {
        // SAFETY: no preconditions.
        i64::from(unsafe { libc::_lwp_self() })
    }
    #[cfg(not(any(
        target_os = "linux",
        target_vendor = "apple",
        target_os = "freebsd",
        target_os = "netbsd"
    )))]
    {
        // SAFETY: no preconditions.
        unsafe { libc::pthread_self() as i64 }
    }
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

/// A classic-BPF conditional jump (`BPF_JUMP`): skip `jt` instructions if
/// the test holds, `jf` if not.
#[cfg(target_os = "linux")]
pub fn bpf_jump(code: u32, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    }
}

/// `if A == k` fall through, else skip `jf` instructions.
#[cfg(target_os = "linux")]
pub fn bpf_jump_eq(k: u32, jf: u8) -> libc::sock_filter {
    bpf_jump(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K, k, 0, jf)
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

// --- paced signal storms ---------------------------------------------------

/// When a storm may signal one thread again, so that it cannot starve it.
///
/// A storm that signals a thread faster than the thread gets through its
/// handler starves it: each return from the handler finds the next signal
/// pending, and the thread never runs a line of its own code again while the
/// signals keep coming (issue 13: the soak's churners stopped for good after
/// 10-20 s and the soak still said OK). So a paced storm sends the next
/// signal to a thread only once
/// - the thread's handler has counted the previous one in `handled` (as its
///   last step), or `bound` has passed without that (the signal is held by
///   the thread's mask, or merged with one already pending: another one
///   would add nothing), and
/// - the thread has made progress since: `progress`, bumped by the thread's
///   own code and never by a handler, has moved since the storm saw the
///   handler's count.
///
/// So the thread does at least one unit of its own work per signal, however
/// loaded the machine is: starvation is impossible by construction.
pub struct Pace {
    handled: &'static std::sync::atomic::AtomicU64,
    progress: &'static std::sync::atomic::AtomicU64,
    bound: Duration,
    /// The `handled` count that means "the previous signal was handled",
    /// and when it was sent.
    awaited: Option<(u64, Instant)>,
    /// `progress` as last seen; the next signal waits until it moves.
    mark: u64,
    /// Signals sent.
    pub sent: u64,
    /// Signals whose handling was not seen within `bound`.
    pub unanswered: u64,
    /// The longest time from a send to seeing its handler's count.
    pub longest_wait: Duration,
}

impl Pace {
    /// Pace signals to a thread whose handler bumps `handled` and whose own
    /// code bumps `progress`.
    pub fn new(
        handled: &'static std::sync::atomic::AtomicU64,
        progress: &'static std::sync::atomic::AtomicU64,
        bound: Duration,
    ) -> Pace {
        Pace {
            handled,
            progress,
            bound,
            awaited: None,
            mark: progress.load(std::sync::atomic::Ordering::SeqCst),
            sent: 0,
            unanswered: 0,
            longest_wait: Duration::ZERO,
        }
    }

    /// Whether the next signal may be sent now. Never blocks.
    pub fn ready(&mut self) -> bool {
        use std::sync::atomic::Ordering::SeqCst;
        if let Some((count, at)) = self.awaited {
            if self.handled.load(SeqCst) >= count {
                self.longest_wait = self.longest_wait.max(at.elapsed());
                self.awaited = None;
                self.mark = self.progress.load(SeqCst);
            } else if at.elapsed() >= self.bound {
                self.unanswered += 1;
                self.awaited = None;
            } else {
                return false;
            }
        }
        self.progress.load(SeqCst) != self.mark
    }

    /// Record that a signal is being sent now (call right before sending).
    pub fn sending(&mut self) {
        use std::sync::atomic::Ordering::SeqCst;
        self.awaited = Some((self.handled.load(SeqCst) + 1, Instant::now()));
        self.mark = self.progress.load(SeqCst);
        self.sent += 1;
    }
}

/// One thread a [`Storm`] aims at: its handler bumps `handled` as its last
/// step, its own code bumps `progress` (see [`Pace`]).
pub struct StormTarget {
    pub thread: libc::pthread_t,
    pub handled: &'static std::sync::atomic::AtomicU64,
    pub progress: &'static std::sync::atomic::AtomicU64,
}

/// What a [`Storm`] did.
#[derive(Debug, Clone)]
pub struct StormReport {
    /// Signals sent, per target.
    pub sent: Vec<u64>,
    /// Signals whose handling was not seen within the bound, per target.
    pub unanswered: Vec<u64>,
    /// The longest wait for a handler, over all targets.
    pub longest_wait: Duration,
}

/// A thread that `pthread_kill`s its targets with one signal, paced by
/// [`Pace`], until stopped or `limit` has passed. Stops and joins on drop.
pub struct Storm {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<StormReport>>,
}

impl Storm {
    /// Start storming `targets` with `signal`.
    ///
    /// # Safety
    /// Every target thread must stay alive until this storm has been
    /// finished or dropped: `pthread_kill` on a thread that has ended is
    /// undefined behaviour.
    pub unsafe fn start(signal: libc::c_int, targets: Vec<StormTarget>, limit: Duration) -> Storm {
        use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let flag = std::sync::Arc::clone(&stop);
        let targets: Vec<(usize, Pace)> = targets
            .into_iter()
            .map(|t| {
                let pace = Pace::new(t.handled, t.progress, Duration::from_millis(100));
                (t.thread as usize, pace)
            })
            .collect();
        let thread = std::thread::spawn(move || {
            let mut targets = targets;
            let mut deadline = Deadline::new(limit, u64::MAX);
            let mut idle_since = None;
            while !flag.load(SeqCst) && deadline.tick() {
                let mut sent = false;
                for (thread, pace) in &mut targets {
                    if !pace.ready() {
                        continue;
                    }
                    pace.sending();
                    // SAFETY: the caller of `start` keeps every target alive
                    // until this thread has been joined.
                    let rc = unsafe { libc::pthread_kill(*thread as libc::pthread_t, signal) };
                    assert_eq!(rc, 0, "pthread_kill");
                    sent = true;
                }
                if sent {
                    idle_since = None;
                } else {
                    // Every target is in its handler or has not moved yet.
                    storm_idle(&mut idle_since);
                }
            }
            StormReport {
                sent: targets.iter().map(|(_, p)| p.sent).collect(),
                unanswered: targets.iter().map(|(_, p)| p.unanswered).collect(),
                longest_wait: targets
                    .iter()
                    .map(|(_, p)| p.longest_wait)
                    .max()
                    .unwrap_or_default(),
            }
        });
        Storm {
            stop,
            thread: Some(thread),
        }
    }

    /// Stop, join, and say what the storm did.
    pub fn finish(mut self) -> StormReport {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.thread
            .take()
            .expect("storm thread")
            .join()
            .expect("storm thread panicked")
    }
}

impl Drop for Storm {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What a paced storm does while none of its targets may be signalled yet:
/// spin for up to 20 µs (a target running on the other core answers within
/// microseconds), then yield once and start over. Yielding at once would give
/// the time slice away and, on a loaded machine, send a few hundred signals a
/// second; spinning only would hold the core a target may be waiting for.
pub fn storm_idle(idle_since: &mut Option<Instant>) {
    let since = *idle_since.get_or_insert_with(Instant::now);
    if since.elapsed() < Duration::from_micros(20) {
        std::hint::spin_loop();
    } else {
        std::thread::yield_now();
        *idle_since = None;
    }
}

/// Run this test binary again as a helper process: only its test named
/// `helper_process`, single-threaded (`--test-threads=1`), with `env=mode`
/// in its environment, SIGINT, SIGTERM and SIGQUIT reset to the default
/// before `exec` (as an interactive shell does: `cargo test` itself may run
/// with them ignored) and core dumps off. Returns its exit status and the
/// lines it printed on stdout. A helper still running after `limit` fails
/// the test (it is leaked, not waited for).
pub fn run_helper(
    env: &str,
    mode: &str,
    limit: Duration,
) -> (std::process::ExitStatus, Vec<String>) {
    let mut command = helper_command(env, mode);
    let what = format!("helper {mode}");
    let out = within(limit, &what, move || {
        command.output().expect("spawn helper")
    });
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    (out.status, lines)
}

/// The command [`run_helper`] runs, for a test that spawns it itself (to
/// talk to it while it runs, or to add its own `pre_exec` step, which runs
/// after the signal reset).
pub fn helper_command(env: &str, mode: &str) -> std::process::Command {
    use std::os::unix::process::CommandExt;
    let mut command = std::process::Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "helper_process",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(env, mode);
    // SAFETY: runs in the child before exec; `signal` and `setrlimit` are
    // async-signal-safe and the closure allocates nothing.
    unsafe {
        command.pre_exec(|| {
            for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGQUIT] {
                libc::signal(sig, libc::SIG_DFL);
            }
            let none = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            libc::setrlimit(libc::RLIMIT_CORE, &none);
            Ok(())
        });
    }
    command
}

/// A TCP connection whose `client` end has data queued that its `peer`
/// never reads, with `SO_LINGER` set to `seconds`: the last close of the
/// client's socket (a `close(2)`, or a `dup3` over its last descriptor)
/// blocks in the kernel for that long. Returns `(client, peer)`; keep the
/// peer open meanwhile.
pub fn lingering_socket(seconds: libc::c_int) -> (std::net::TcpStream, std::net::TcpStream) {
    use std::io::Write;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).expect("connect");
    let (peer, _) = listener.accept().expect("accept");
    // A small receive window on the peer: the queue fills sooner.
    let small: libc::c_int = 4096;
    // SAFETY: a valid int option on our own socket.
    unsafe {
        libc::setsockopt(
            peer.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&small as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
    client.set_nonblocking(true).unwrap();
    let chunk = [0u8; 64 * 1024];
    let mut filled = Deadline::new(Duration::from_secs(10), 100_000);
    while filled.tick() {
        match client.write(&chunk) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("fill: {e}"),
        }
    }
    client.set_nonblocking(false).unwrap();
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: seconds,
    };
    // SAFETY: a valid `linger` for SO_LINGER on our own socket.
    let rc = unsafe {
        libc::setsockopt(
            client.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_LINGER: {}", io::Error::last_os_error());
    (client, peer)
}

/// The syscall number `tid` (a thread of this process, or a process) is
/// blocked in, from `/proc/<tid>/syscall`; `None` while it runs in user
/// space or cannot be read.
pub fn blocked_in_syscall(tid: libc::pid_t) -> Option<libc::c_long> {
    let text = std::fs::read_to_string(format!("/proc/{tid}/syscall")).ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// The signals blocked on `tid`, from `SigBlk` in `/proc/<tid>/status`.
pub fn blocked_signals(tid: libc::pid_t) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{tid}/status")).expect("read status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigBlk:"))
        .map(|v| u64::from_str_radix(v.trim(), 16).expect("SigBlk"))
        .expect("no SigBlk line")
}

/// In a helper process: print `line` on a line of its own (libtest has
/// just printed `test helper_process ... ` without a newline) and flush.
pub fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "\n{line}").unwrap();
    out.flush().unwrap();
}

/// Every line of `expected` was printed, none of `absent` was.
pub fn assert_lines(lines: &[String], expected: &[&str], absent: &[&str]) {
    for want in expected {
        assert!(
            lines.iter().any(|l| l == want),
            "{want:?} missing: {lines:#?}"
        );
    }
    for not in absent {
        assert!(
            !lines.iter().any(|l| l == not),
            "{not:?} printed: {lines:#?}"
        );
    }
}

/// `raise(sig)`, asserting it worked.
pub fn raise(sig: libc::c_int) {
    // SAFETY: raise has no preconditions; callers have a handler for `sig`
    // or want its default action.
    assert_eq!(unsafe { libc::raise(sig) }, 0);
}

/// In a single-threaded helper process: fork, run `child` in the child
/// (it may allocate there, since no other thread can hold a lock) and
/// `_exit` with its code; reap it within `limit` ([`wait_child`]).
pub fn fork_child(limit: Duration, child: impl FnOnce() -> i32) -> ChildEnd {
    // SAFETY: the caller's process is single-threaded (see above); the
    // child leaves with `_exit`, never returning into the caller.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", io::Error::last_os_error());
    if pid == 0 {
        let code = child();
        // SAFETY: ends the child without running the parent's destructors.
        unsafe { libc::_exit(code) };
    }
    wait_child(pid, limit).expect("waitpid")
}

/// Restores the thread's mask on drop, so a failing test leaves no blocked
/// signals behind on the harness thread.
pub struct RestoreMask(libc::sigset_t);

impl RestoreMask {
    pub fn save() -> RestoreMask {
        RestoreMask(current_mask())
    }
}

impl Drop for RestoreMask {
    fn drop(&mut self) {
        // SAFETY: `self.0` is an initialised sigset saved from this thread.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.0, std::ptr::null_mut()) };
    }
}

/// `pthread_sigmask(how, sigs)` on this thread, asserting it worked.
pub fn block_by_hand(sigs: &[libc::c_int], how: libc::c_int) {
    let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: the set is initialised by sigemptyset before use.
    unsafe {
        libc::sigemptyset(set.as_mut_ptr());
        for &s in sigs {
            libc::sigaddset(set.as_mut_ptr(), s);
        }
        assert_eq!(
            libc::pthread_sigmask(how, set.as_ptr(), std::ptr::null_mut()),
            0
        );
    }
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

/// Elsewhere no filter can be installed: `true` ("refused") where the
/// system has no `close_range(2)` at all, so the crate always takes the
/// fallback there; `false` on FreeBSD, which has the call (a test that
/// needs the fallback there fails, saying the filter was refused).
#[cfg(not(target_os = "linux"))]
pub fn refuse_close_range(_errno: libc::c_int) -> bool {
    !cfg!(target_os = "freebsd")
}

// --- example programs and their output -------------------------------------

/// Build `examples/<name>.rs` (with `features`, comma-separated, when not
/// empty) for this test binary's profile and return the program's path.
/// `cargo test --all-targets` builds examples only in test mode, which
/// leaves `target/<profile>/examples/<name>` stale or missing; the build is
/// a no-op when it is up to date. A build still running after 15 minutes
/// fails the test.
pub fn build_example(name: &str, features: &str) -> std::path::PathBuf {
    use std::path::Path;
    // target/<profile>/deps/<test>-<hash> -> target/<profile>/examples
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap();
    let target_dir = profile_dir.parent().unwrap();
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => "dev",
        Some(other) => other,
    };
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let mut build = std::process::Command::new(cargo);
    build.args(["build", "--quiet", "--example", name, "--profile", profile]);
    if !features.is_empty() {
        build.args(["--features", features]);
    }
    build
        .arg("--manifest-path")
        .arg(&manifest)
        .arg("--target-dir")
        .arg(target_dir);
    let status = within(
        Duration::from_secs(900),
        "cargo build --example",
        move || build.status().expect("run cargo build --example"),
    );
    assert!(
        status.success(),
        "cargo build --example {name} failed: {status}"
    );
    let path = profile_dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(path.exists(), "example not found at {}", path.display());
    path
}

/// A unique, empty directory (a child's `TMPDIR`, say), removed with
/// everything in it on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "fdtable-test-{tag}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        // A run that died before its drop may have left one with this name.
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    /// Every file anywhere under the directory.
    pub fn files(&self) -> Vec<std::path::PathBuf> {
        fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, out);
                } else {
                    out.push(path);
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.0, &mut out);
        out
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The lines of `stream` as a channel, read on a thread of their own until
/// the stream ends (or the receiver is gone).
pub fn lines_of(stream: impl io::Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in io::BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// `kill(pid, sig)` for a child this test spawned and has not reaped,
/// asserting it worked.
pub fn kill(pid: u32, sig: libc::c_int) {
    // SAFETY: kill has no memory preconditions; the pid is our own
    // unreaped child, so it names no other process.
    assert_eq!(unsafe { libc::kill(pid as libc::pid_t, sig) }, 0, "kill");
}

/// Whether `fd` polls readable right now (nothing is consumed).
pub fn readable_now(fd: &impl AsRawFd) -> bool {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd; timeout 0 never blocks.
    unsafe { libc::poll(&mut pfd, 1, 0) == 1 }
}

/// Run `close_on_thread` on a thread of its own and return the signals that
/// thread has blocked while it sleeps inside `close(2)` (polled from /proc
/// for up to 10 s), or `None` if it was never seen there. Pair it with
/// [`lingering_socket`], whose last close sleeps in the kernel long enough.
#[cfg(target_os = "linux")]
pub fn signals_blocked_in_close(close_on_thread: impl FnOnce() + Send + 'static) -> Option<u64> {
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    let closer = std::thread::spawn(move || {
        // SAFETY: gettid has no preconditions.
        tid_tx.send(unsafe { libc::gettid() }).unwrap();
        close_on_thread();
    });
    let tid = tid_rx.recv().unwrap();
    let mut seen = None;
    let mut wait = Deadline::new(Duration::from_secs(10), 1_000_000);
    while wait.tick() && !closer.is_finished() {
        if blocked_in_syscall(tid) == Some(libc::SYS_close) {
            seen = Some(blocked_signals(tid));
            break;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    closer.join().unwrap();
    seen
}

/// A resource whose conversion to `OwnedFd` panics after dropping (so
/// closing) its own descriptor, as the `Trackable` contract allows: the
/// table must neither keep its number published nor close it a second time.
pub struct PanickingInto(pub OwnedFd);

impl std::os::fd::AsFd for PanickingInto {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.0.as_fd()
    }
}

// SAFETY: owns the descriptor `as_fd` names; its conversion panics (the
// contract allows it) after dropping, and so closing, the descriptor.
unsafe impl fdtable::Trackable for PanickingInto {
    fn into_owned_fd(self) -> OwnedFd {
        let _drops_and_closes = self;
        panic!("conversion failed on purpose");
    }
}
