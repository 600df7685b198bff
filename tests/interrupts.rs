//! `Interrupts` with real processes and real signals (invariant I7).
//!
//! Two kinds of test live here:
//! - tests that spawn `examples/ctrlc_cleanup` (or this test binary in a
//!   helper mode, see [`helper_process`]) and signal it from outside;
//! - tests that raise signals at this process. Signals and dispositions are
//!   process-wide, so those take [`util::serial`] and run one at a time,
//!   each under a watchdog that aborts the whole binary if it hangs.
//!
//! Children get SIGINT reset to `SIG_DFL` before `exec` (as an interactive
//! shell does), because `cargo test` itself may run with SIGINT ignored (a
//! background job) and the crate then, by design, keeps it ignored.

mod util;

use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use fdtable::{Interrupts, Signal};
use util::{kill, lines_of, raise, readable_now, TempDir};

/// Generous bound for anything a child must do "promptly".
const PROMPTLY: Duration = Duration::from_secs(30);
/// Environment variable that turns this binary into a helper process.
const HELPER_ENV: &str = "FDTABLE_INTERRUPTS_HELPER";

// ---------------------------------------------------------------------------
// Utilities
// ---------------------------------------------------------------------------

/// Aborts the process if not dropped within `limit`: a test that hangs in a
/// signal handler must fail, not stall the suite.
struct Watchdog(Option<mpsc::Sender<()>>);

impl Watchdog {
    fn new(name: &'static str, limit: Duration) -> Watchdog {
        let (tx, rx) = mpsc::channel::<()>();
        std::thread::spawn(move || {
            if let Err(RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
                eprintln!("watchdog: {name} still running after {limit:?}; aborting");
                std::process::abort();
            }
        });
        Watchdog(Some(tx))
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        drop(self.0.take()); // disconnects: the watchdog thread ends
    }
}

/// The example binary, built once per test process.
fn example_path() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| util::build_example("ctrlc_cleanup", ""))
}

/// A running child with its stdout and stderr turned into line channels.
struct Spawned {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Receiver<String>,
    stderr: Receiver<String>,
    /// Every stdout line seen so far.
    seen: Vec<String>,
}

/// Spawn `command` with SIGINT set to `sigint` (SIG_DFL or SIG_IGN) before
/// exec.
fn spawn(mut command: Command, sigint: libc::sighandler_t) -> Spawned {
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: the closure runs in the child between fork and exec and calls
    // only `signal`, which is async-signal-safe.
    unsafe {
        command.pre_exec(move || {
            libc::signal(libc::SIGINT, sigint);
            Ok(())
        });
    }
    let mut child = command.spawn().expect("spawn child");
    let stdin = child.stdin.take();
    let stdout = lines_of(child.stdout.take().unwrap());
    let stderr = lines_of(child.stderr.take().unwrap());
    Spawned {
        child,
        stdin,
        stdout,
        stderr,
        seen: Vec::new(),
    }
}

fn spawn_example(args: &[&str], tmp: &TempDir, sigint: libc::sighandler_t) -> Spawned {
    let mut command = Command::new(example_path());
    command.args(args).env("TMPDIR", &tmp.0);
    spawn(command, sigint)
}

/// This test binary, running only [`helper_process`] in `mode`.
fn spawn_helper(mode: &str) -> Spawned {
    spawn_helper_with(mode, libc::SIG_DFL)
}

/// [`spawn_helper`] with SIGINT's disposition at exec set to `sigint`
/// (after [`util::helper_command`]'s reset to the defaults).
fn spawn_helper_with(mode: &str, sigint: libc::sighandler_t) -> Spawned {
    spawn(util::helper_command(HELPER_ENV, mode), sigint)
}

fn next_line_with(rx: &Receiver<String>, prefix: &str, within: Duration) -> Option<String> {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.starts_with(prefix) => return Some(line),
            Ok(_) => continue,
            Err(_) => return None,
        }
    }
}

impl Spawned {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Wait for the stdout line starting with `prefix`, bounded.
    fn expect_stdout(&mut self, prefix: &str) -> String {
        let deadline = Instant::now() + PROMPTLY;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stdout.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.starts_with(prefix) {
                        return line;
                    }
                }
                Err(_) => {
                    let _ = self.child.kill();
                    panic!(
                        "no stdout line {prefix:?} within {PROMPTLY:?}; saw {:?}",
                        self.seen
                    );
                }
            }
        }
    }

    fn expect_stderr(&mut self, prefix: &str) -> String {
        next_line_with(&self.stderr, prefix, PROMPTLY).unwrap_or_else(|| {
            let _ = self.child.kill();
            panic!("no stderr line {prefix:?} within {PROMPTLY:?}")
        })
    }

    fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    /// Wait for exit (bounded), then collect the rest of stdout.
    fn finish(&mut self, within: Duration) -> (ExitStatus, Vec<String>) {
        let status = wait_bounded(&mut self.child, within);
        // The writer is gone: the reader thread ends at end-of-file.
        while let Ok(line) = self.stdout.recv_timeout(PROMPTLY) {
            self.seen.push(line);
        }
        (status, self.seen.clone())
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn wait_bounded(child: &mut Child, within: Duration) -> ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("child {} still running after {within:?}", child.id());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `ready pid=<pid> tracked=<N> fds=<a,b,...>` → (pid, N, fds).
fn parse_ready(line: &str) -> (u32, usize, Vec<i32>) {
    let field = |key: &str| {
        line.split_whitespace()
            .find_map(|word| word.strip_prefix(key))
            .unwrap_or_else(|| panic!("{key} missing in {line:?}"))
            .to_owned()
    };
    let pid = field("pid=").parse().unwrap();
    let tracked = field("tracked=").parse().unwrap();
    let fds = field("fds=")
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    (pid, tracked, fds)
}

fn died_by(status: ExitStatus, sig: libc::c_int) -> bool {
    status.signal() == Some(sig)
}

// ---------------------------------------------------------------------------
// The example, signalled from outside
// ---------------------------------------------------------------------------

#[test]
fn ctrl_c_releases_every_tracked_fd_removes_temp_files_and_dies_by_sigint() {
    let tmp = TempDir::new("ctrlc");
    let mut child = spawn_example(&["--open", "8"], &tmp, libc::SIG_DFL);
    let ready = child.expect_stdout("ready ");
    let (pid, tracked, fds) = parse_ready(&ready);
    assert_eq!(pid, child.pid());
    assert_eq!(tracked, 8);
    assert_eq!(fds.len(), 8, "{ready}");
    #[cfg(target_os = "linux")]
    for fd in &fds {
        let link = PathBuf::from(format!("/proc/{pid}/fd/{fd}"));
        assert!(link.exists(), "fd {fd} listed but not open in the child");
    }
    assert!(!tmp.files().is_empty(), "the example writes temp files");

    kill(pid, libc::SIGINT);
    let (status, stdout) = child.finish(PROMPTLY);
    assert!(
        died_by(status, libc::SIGINT),
        "status {status:?}, stdout {stdout:?}"
    );
    assert!(stdout.iter().any(|l| l == "released 8"), "{stdout:?}");
    assert_eq!(tmp.files(), Vec::<PathBuf>::new(), "temp files left behind");
}

#[test]
fn second_ctrl_c_during_a_stuck_cleanup_kills_at_once() {
    let tmp = TempDir::new("twice");
    // The cleanup sleeps for a minute before releasing anything.
    let mut child = spawn_example(&["--slow-cleanup-ms", "60000"], &tmp, libc::SIG_DFL);
    let (pid, _, _) = parse_ready(&child.expect_stdout("ready "));
    kill(pid, libc::SIGINT);
    child.expect_stderr("cleaning up");
    let second = Instant::now();
    kill(pid, libc::SIGINT);
    let (status, stdout) = child.finish(PROMPTLY);
    assert!(died_by(status, libc::SIGINT), "status {status:?}");
    assert!(second.elapsed() < Duration::from_secs(30), "not at once");
    assert!(
        !stdout.iter().any(|l| l.starts_with("released")),
        "the cleanup finished instead of being cut short: {stdout:?}"
    );
}

#[test]
fn sigint_ignored_at_start_stays_ignored_until_sigterm() {
    let tmp = TempDir::new("nohup");
    let mut child = spawn_example(&["--open", "6"], &tmp, libc::SIG_IGN);
    let (pid, tracked, _) = parse_ready(&child.expect_stdout("ready "));
    assert_eq!(tracked, 6);
    child.expect_stderr("note: SIGINT was ignored");
    for _ in 0..3 {
        kill(pid, libc::SIGINT);
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        child.child.try_wait().unwrap().is_none(),
        "an ignored SIGINT ended the program"
    );
    kill(pid, libc::SIGTERM);
    let (status, stdout) = child.finish(PROMPTLY);
    assert!(died_by(status, libc::SIGTERM), "status {status:?}");
    assert!(stdout.iter().any(|l| l == "released 6"), "{stdout:?}");
    assert_eq!(tmp.files(), Vec::<PathBuf>::new());
}

// ---------------------------------------------------------------------------
// Helper processes: this binary re-executed with HELPER_ENV set
// ---------------------------------------------------------------------------

/// Runs only in a child spawned by [`spawn_helper`]; a no-op otherwise.
#[test]
fn helper_process() {
    let Ok(mode) = std::env::var(HELPER_ENV) else {
        return;
    };
    match mode.as_str() {
        "burst" => helper_burst(),
        "default_after_drop" => helper_after_drop(true),
        "lost_after_drop" => helper_after_drop(false),
        "fork_pid_check" => helper_fork_pid_check(),
        other => panic!("unknown helper mode {other}"),
    }
}

/// Print `line` on a line of its own (libtest has just printed
/// `test helper_process ... ` without a newline).
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "\n{line}").unwrap();
    out.flush().unwrap();
}

/// Read one line from fd 0 without buffering (so `poll` on fd 0 stays
/// truthful). Bounded by the line length.
fn read_stdin_line() -> String {
    let mut line = Vec::new();
    for _ in 0..4096 {
        let mut byte = 0u8;
        // SAFETY: reads one byte into a local.
        let n = unsafe { libc::read(0, (&mut byte as *mut u8).cast(), 1) };
        let interrupted =
            n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted;
        if n == 1 && byte != b'\n' {
            line.push(byte);
        } else if !interrupted {
            break; // newline, end of file, or an error
        }
    }
    String::from_utf8_lossy(&line).into_owned()
}

fn helper_burst() {
    let interrupts = Interrupts::builder(Signal::Interrupt)
        .signal(Signal::Terminate)
        .second_signal_kills(false)
        .install()
        .unwrap();
    // Shrink the pipe to one page so the burst overflows it while nobody
    // reads (Linux; elsewhere the pipe just stays bigger).
    #[cfg(target_os = "linux")]
    // SAFETY: fcntl on a descriptor we own.
    unsafe {
        libc::fcntl(interrupts.as_raw_fd(), libc::F_SETPIPE_SZ, 4096);
    }
    say(&format!("ready pid={}", std::process::id()));
    // Do not read the pipe during the burst: let it fill.
    assert_eq!(read_stdin_line(), "start");
    let mut queued: libc::c_int = 0;
    // SAFETY: FIONREAD writes an int.
    unsafe { libc::ioctl(interrupts.as_raw_fd(), libc::FIONREAD, &mut queued) };
    say(&format!("started pipe_bytes={queued}"));
    let mut sigints = 0u64;
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        let mut fds = [
            libc::pollfd {
                fd: interrupts.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: 0,
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: two valid pollfds.
        unsafe { libc::poll(fds.as_mut_ptr(), 2, 1000) };
        let mut terminate = false;
        while let Some(received) = interrupts.try_recv() {
            match received.signal() {
                Signal::Interrupt => sigints += received.count(),
                _ => terminate = true,
            }
        }
        if terminate {
            say(&format!("sigint_count={sigints}"));
            std::process::exit(0);
        }
        if fds[1].revents != 0 && read_stdin_line() == "ping" {
            say("pong");
        }
    }
    panic!("helper_burst: no SIGTERM within its deadline");
}

fn helper_after_drop(default_after_drop: bool) {
    let interrupts = Interrupts::builder(Signal::Interrupt)
        .default_after_drop(default_after_drop)
        .install()
        .unwrap();
    drop(interrupts);
    say("dropped");
    raise(libc::SIGINT);
    // Reached only when SIGINT did not end the process.
    say("survived");
    std::process::exit(0);
}

#[test]
fn burst_of_10000_sigints_leaves_the_program_responsive_and_counts_them() {
    let mut child = spawn_helper("burst");
    let ready = child.expect_stdout("ready ");
    let pid: u32 = ready.trim_start_matches("ready pid=").parse().unwrap();
    for _ in 0..10_000 {
        kill(pid, libc::SIGINT);
    }
    child.send_line("start");
    let started = child.expect_stdout("started ");
    eprintln!("burst: {started} (4096 means the pipe was full)");
    child.send_line("ping");
    child.expect_stdout("pong");
    kill(pid, libc::SIGTERM);
    let line = child.expect_stdout("sigint_count=");
    let count: u64 = line.trim_start_matches("sigint_count=").parse().unwrap();
    eprintln!("burst: 10000 kills delivered as {count} signals");
    assert!((1..=10_000).contains(&count), "{line}");
    let (status, _) = child.finish(PROMPTLY);
    assert!(status.success(), "{status:?}");
}

/// Runs with SIGINT ignored at start, so the fallback that gives a foreign
/// fork child the default action stays out of the way: only the handler's
/// pid check keeps the child's SIGINT out of this process's pipe.
fn helper_fork_pid_check() {
    let interrupts = Interrupts::builder(Signal::Interrupt)
        .respect_ignored(false)
        .second_signal_kills(false)
        .install()
        .unwrap();
    let mut command = Command::new("/bin/sh");
    command.args(["-c", "exit 0"]);
    // SAFETY: runs in the fork child before exec; raise is async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            libc::raise(libc::SIGINT);
            Ok(())
        });
    }
    let status = command.status().unwrap();
    // The child's counts live in its own memory: only a byte in the shared
    // pipe can show that its handler acted, so look without draining.
    let woke = readable_now(&interrupts);
    say(&format!("child_ok={} woke={woke}", status.success()));
    std::process::exit(0);
}

#[test]
fn the_pid_check_keeps_a_fork_childs_sigint_out_of_the_parents_pipe() {
    let mut child = spawn_helper_with("fork_pid_check", libc::SIG_IGN);
    let line = child.expect_stdout("child_ok=");
    assert_eq!(line, "child_ok=true woke=false");
    let (status, _) = child.finish(PROMPTLY);
    assert!(status.success(), "{status:?}");
}

#[test]
fn dropping_the_last_interrupts_brings_the_default_action_back() {
    let mut child = spawn_helper("default_after_drop");
    child.expect_stdout("dropped");
    let (status, stdout) = child.finish(PROMPTLY);
    assert!(died_by(status, libc::SIGINT), "{status:?} {stdout:?}");
    assert!(!stdout.iter().any(|l| l == "survived"));
}

#[test]
fn without_default_after_drop_a_late_sigint_is_lost() {
    let mut child = spawn_helper("lost_after_drop");
    child.expect_stdout("survived");
    let (status, _) = child.finish(PROMPTLY);
    assert!(status.success(), "{status:?}");
}

// ---------------------------------------------------------------------------
// In-process signals (serialised)
// ---------------------------------------------------------------------------

/// SIGINT handled regardless of how `cargo test` was started, with the
/// second-signal kill off so raising it twice cannot end the test binary.
fn sigint_events() -> Interrupts {
    Interrupts::builder(Signal::Interrupt)
        .respect_ignored(false)
        .second_signal_kills(false)
        .install()
        .unwrap()
}

#[test]
fn sigint_in_a_fork_child_before_exec_never_reaches_the_parent() {
    let _serial = util::serial();
    let _watchdog = Watchdog::new("fork child", Duration::from_secs(60));
    let interrupts = sigint_events();
    let mut command = Command::new("/bin/sh");
    command.args(["-c", "exit 0"]);
    // SAFETY: runs in the fork child before exec; `raise` is
    // async-signal-safe. The inherited handler runs in the child.
    unsafe {
        command.pre_exec(|| {
            libc::raise(libc::SIGINT);
            libc::raise(libc::SIGINT);
            Ok(())
        });
    }
    let status = command.status().unwrap();
    // Our handler did nothing in the child: no wake-up byte in the (shared)
    // pipe. Counts live in the child's copy of memory, so only the pipe can
    // tell. The child itself either died by SIGINT (the default action a
    // child without an `Interrupts` of its own gets) or, when this test
    // process started with SIGINT ignored, survived.
    use std::os::unix::process::ExitStatusExt;
    assert!(
        status.success() || status.signal() == Some(libc::SIGINT),
        "child {status:?}"
    );
    assert!(
        !readable_now(&interrupts),
        "the child's SIGINT woke the parent"
    );
    assert_eq!(
        interrupts.recv_timeout(Duration::from_millis(300)).unwrap(),
        None
    );
    // The pipe does work in this process.
    raise(libc::SIGINT);
    let got = interrupts
        .recv_timeout(PROMPTLY)
        .unwrap()
        .expect("own SIGINT");
    assert_eq!((got.signal(), got.count()), (Signal::Interrupt, 1));
}

#[test]
fn recv_timeout_returns_on_time_when_nothing_arrives() {
    let _serial = util::serial();
    let interrupts = sigint_events();
    for wait in [
        Duration::ZERO,
        Duration::from_millis(50),
        Duration::from_millis(300),
    ] {
        let start = Instant::now();
        assert_eq!(interrupts.recv_timeout(wait).unwrap(), None);
        let took = start.elapsed();
        assert!(took >= wait, "returned early: {took:?} < {wait:?}");
        assert!(
            took < wait + Duration::from_secs(5),
            "returned late: {took:?}"
        );
    }
    assert_eq!(interrupts.try_recv(), None);
}

#[test]
fn two_interrupts_both_see_the_signal_and_dropping_one_leaves_the_other() {
    let _serial = util::serial();
    let _watchdog = Watchdog::new("two interrupts", Duration::from_secs(60));
    let library = sigint_events();
    let program = sigint_events();
    assert_ne!(library.as_raw_fd(), program.as_raw_fd());
    raise(libc::SIGINT);
    for interrupts in [&library, &program] {
        let got = interrupts
            .recv_timeout(PROMPTLY)
            .unwrap()
            .expect("both see it");
        assert_eq!((got.signal(), got.count()), (Signal::Interrupt, 1));
    }
    drop(library);
    raise(libc::SIGINT);
    raise(libc::SIGINT);
    let got = program
        .recv_timeout(PROMPTLY)
        .unwrap()
        .expect("still working");
    assert_eq!((got.signal(), got.count()), (Signal::Interrupt, 2));
    assert_eq!(program.try_recv(), None);
}

#[test]
fn a_full_pipe_never_blocks_the_handler_and_loses_no_count() {
    let _serial = util::serial();
    let _watchdog = Watchdog::new("full pipe", Duration::from_secs(60));
    let interrupts = Interrupts::builder(Signal::User1)
        .signal(Signal::User2)
        .respect_ignored(false)
        .second_signal_kills(false)
        .install()
        .unwrap();
    #[cfg(target_os = "linux")]
    // SAFETY: fcntl on a descriptor we own.
    unsafe {
        libc::fcntl(interrupts.as_raw_fd(), libc::F_SETPIPE_SZ, 4096);
    }
    // raise() delivers synchronously: no coalescing, 6000 handler runs, so
    // at least 1904 of them find the pipe full. A blocking write would hang
    // here (and the watchdog would abort).
    for _ in 0..5000 {
        raise(libc::SIGUSR1);
    }
    for _ in 0..1000 {
        raise(libc::SIGUSR2);
    }
    let first = interrupts.try_recv().expect("pending");
    assert_eq!((first.signal(), first.count()), (Signal::User1, 5000));
    // The pipe is drained, yet SIGUSR2 is still reported: try_recv kept a
    // wake-up byte for it.
    assert!(readable_now(&interrupts), "no wake-up left for SIGUSR2");
    let second = interrupts.try_recv().expect("pending");
    assert_eq!((second.signal(), second.count()), (Signal::User2, 1000));
    assert_eq!(interrupts.try_recv(), None);
}

#[test]
fn first_signal_arms_and_disarm_undoes_it() {
    let _serial = util::serial();
    let _watchdog = Watchdog::new("arming", Duration::from_secs(60));
    let interrupts = Interrupts::builder(Signal::User1)
        .respect_ignored(false)
        .install()
        .unwrap();
    assert!(!Interrupts::is_armed());
    raise(libc::SIGUSR1);
    assert!(Interrupts::is_armed(), "armed by the first delivery");
    assert_eq!(interrupts.try_recv().map(|r| r.count()), Some(1));
    // A second SIGUSR1 now would end this test binary; disarm instead.
    Interrupts::disarm();
    assert!(!Interrupts::is_armed());
    raise(libc::SIGUSR1);
    assert_eq!(interrupts.try_recv().map(|r| r.count()), Some(1));
    Interrupts::disarm();
}

/// A plain fork child (no exec, no `Interrupts` of its own) must not become
/// immune to a signal its parent handles: the parent's actions ignore other
/// pids, so the child gets the default action instead.
#[test]
fn a_fork_child_without_its_own_interrupts_dies_by_the_default_action() {
    let _serial = util::serial();
    let _watchdog = Watchdog::new("fork child default", Duration::from_secs(60));
    let interrupts = Interrupts::builder(Signal::User1)
        .second_signal_kills(false)
        .install()
        .unwrap();
    // SAFETY: the child only calls raise and _exit (async-signal-safe).
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        // SAFETY: as above.
        unsafe {
            libc::raise(libc::SIGUSR1);
            libc::_exit(0);
        }
    }
    let mut status = 0;
    // SAFETY: our own child; `status` is a valid out pointer.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(
        libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGUSR1,
        "the child survived SIGUSR1 (status {status:#x}): immune to a signal its parent handles"
    );
    assert_eq!(
        interrupts.recv_timeout(Duration::from_millis(200)).unwrap(),
        None
    );
    // The parent still gets its own SIGUSR1 as an event.
    raise(libc::SIGUSR1);
    let got = interrupts
        .recv_timeout(PROMPTLY)
        .unwrap()
        .expect("own SIGUSR1");
    assert_eq!(got.signal(), Signal::User1);
}

// ---------------------------------------------------------------------------
// Issue 18 item 4: who sent the signal
// ---------------------------------------------------------------------------

/// A `kill` from a child names the child; `raise` names this process (on
/// Linux it is `tgkill`, `SI_TKILL`); deliveries that coalesce into one
/// report name the latest sender. (Decoded on Linux and Android only:
/// elsewhere `sender_pid` is `None`, see its docs.)
#[test]
#[cfg(any(target_os = "linux", target_os = "android"))]
fn sender_pid_names_a_kill_childs_pid_and_our_own_for_raise() {
    let _serial = util::serial();
    let _watchdog = Watchdog::new("sender pid", Duration::from_secs(60));
    let interrupts = Interrupts::builder(Signal::User1)
        .respect_ignored(false)
        .second_signal_kills(false)
        .install()
        .unwrap();
    // `kill` is a builtin of the shell: the sender is the child itself.
    let mut child = Command::new("/bin/sh")
        .args(["-c", "kill -USR1 $PPID"])
        .spawn()
        .unwrap();
    let child_pid = child.id();
    assert!(wait_bounded(&mut child, PROMPTLY).success());
    let got = interrupts
        .recv_timeout(PROMPTLY)
        .unwrap()
        .expect("the child's SIGUSR1");
    assert_eq!((got.signal(), got.count()), (Signal::User1, 1));
    assert_eq!(got.sender_pid(), Some(child_pid), "{got:?}");

    raise(libc::SIGUSR1);
    let got = interrupts
        .try_recv()
        .expect("raise delivers before it returns");
    assert_eq!(got.sender_pid(), Some(std::process::id()), "{got:?}");

    // Two senders, one report: the latest one is named.
    let mut child = Command::new("/bin/sh")
        .args(["-c", "kill -USR1 $PPID"])
        .spawn()
        .unwrap();
    assert!(wait_bounded(&mut child, PROMPTLY).success());
    // The child's signal was delivered once its `kill` returned (before it
    // exited): count it in before the raise.
    let mut counted = util::Deadline::new(PROMPTLY, 1_000_000);
    while !readable_now(&interrupts) {
        assert!(counted.tick(), "the child's SIGUSR1 never arrived");
        std::thread::sleep(Duration::from_millis(1));
    }
    raise(libc::SIGUSR1);
    let got = interrupts.try_recv().expect("two deliveries pending");
    assert_eq!(got.count(), 2, "{got:?}");
    assert_eq!(got.sender_pid(), Some(std::process::id()), "{got:?}");
}

/// A signal the kernel makes itself names no sender: SIGALRM from an
/// interval timer (`SI_KERNEL`, as a terminal's Ctrl-C is;
/// `tests/terminal.rs` checks that one), and from a POSIX timer
/// (`SI_TIMER`, whose timer id sits where `si_pid` would be: the second
/// timer of the process, so that id is not 0).
#[test]
fn a_signal_the_kernel_sent_has_no_sender_pid() {
    let _serial = util::serial();
    let _watchdog = Watchdog::new("kernel sender", Duration::from_secs(60));
    let interrupts = Interrupts::builder(Signal::Alarm)
        .respect_ignored(false)
        .second_signal_kills(false)
        .install()
        .unwrap();
    #[cfg(not(any(target_os = "illumos", target_os = "solaris")))]
    {
        let timer = libc::itimerval {
            it_interval: libc::timeval {
                tv_sec: 0,
                tv_usec: 0,
            },
            it_value: libc::timeval {
                tv_sec: 0,
                tv_usec: 10_000,
            },
        };
        // SAFETY: a valid timer value; no old value wanted.
        let rc = unsafe { libc::setitimer(libc::ITIMER_REAL, &timer, std::ptr::null_mut()) };
        assert_eq!(rc, 0);
    }
    // The `libc` crate has no `setitimer` for illumos: a one-second alarm.
    #[cfg(any(target_os = "illumos", target_os = "solaris"))]
    // SAFETY: alarm has no preconditions.
    unsafe {
        libc::alarm(1)
    };
    let got = interrupts
        .recv_timeout(PROMPTLY)
        .unwrap()
        .expect("the timer's SIGALRM");
    assert_eq!(got.signal(), Signal::Alarm);
    assert_eq!(got.sender_pid(), None, "{got:?}");

    #[cfg(target_os = "linux")]
    {
        // SAFETY: a zeroed sigevent is valid; the fields used are set.
        let mut event: libc::sigevent = unsafe { std::mem::zeroed() };
        event.sigev_notify = libc::SIGEV_SIGNAL;
        event.sigev_signo = libc::SIGALRM;
        let mut timers = [std::ptr::null_mut(); 2];
        for timer in &mut timers {
            // SAFETY: valid event and out pointer.
            let rc = unsafe { libc::timer_create(libc::CLOCK_MONOTONIC, &mut event, timer) };
            assert_eq!(rc, 0, "timer_create: {}", std::io::Error::last_os_error());
        }
        let soon = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: 0,
                tv_nsec: 10_000_000,
            },
        };
        // SAFETY: a timer we created; no old value wanted.
        let rc = unsafe { libc::timer_settime(timers[1], 0, &soon, std::ptr::null_mut()) };
        assert_eq!(rc, 0);
        let got = interrupts
            .recv_timeout(PROMPTLY)
            .unwrap()
            .expect("the POSIX timer's SIGALRM");
        for timer in timers {
            // SAFETY: timers we created, deleted once.
            unsafe { libc::timer_delete(timer) };
        }
        assert_eq!(got.sender_pid(), None, "{got:?}");
    }
}
