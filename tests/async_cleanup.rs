//! Issue 11, item 7 (feature `tokio`): `examples/async_cleanup.rs` as a real
//! process, signalled from outside (SIGINT, SIGTERM, a second SIGINT during
//! a stuck cleanup).
//!
//! The child runs with `--hold`, so after it printed its last line it waits
//! for a line on stdin before dying: the test reads `/proc/<pid>/fd` then,
//! and every tracked number must be closed or no longer name what it named
//! at `ready` (the file, pipe or socket behind it is released).
//!
//! Children get SIGINT and SIGTERM reset to `SIG_DFL` before `exec` (as an
//! interactive shell does): `cargo test` may run with them ignored, and the
//! example then keeps them ignored, by design.

mod util;

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::Receiver;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use util::{kill, lines_of, TempDir};

/// Generous bound for anything the child must do promptly.
const PROMPTLY: Duration = Duration::from_secs(30);

/// The example binary, built once per test process with the feature on.
fn example_path() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| util::build_example("async_cleanup", "tokio"))
}

/// The running example, its stdout as a line channel.
struct Example {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Receiver<String>,
    stderr: Receiver<String>,
    seen: Vec<String>,
}

impl Example {
    fn spawn(args: &[&str], tmp: &TempDir) -> Example {
        let mut command = Command::new(example_path());
        command
            .args(args)
            .env("TMPDIR", &tmp.0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: runs in the child before exec; `signal` is
        // async-signal-safe and the closure allocates nothing.
        unsafe {
            command.pre_exec(|| {
                libc::signal(libc::SIGINT, libc::SIG_DFL);
                libc::signal(libc::SIGTERM, libc::SIG_DFL);
                Ok(())
            });
        }
        let mut child = command.spawn().expect("spawn the example");
        let stdin = child.stdin.take();
        let stdout = lines_of(child.stdout.take().unwrap());
        let stderr = lines_of(child.stderr.take().unwrap());
        Example {
            child,
            stdin,
            stdout,
            stderr,
            seen: Vec::new(),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next stdout line, which must start with `prefix` (stdout carries
    /// only the promised lines).
    fn expect_line(&mut self, prefix: &str) -> String {
        match self.stdout.recv_timeout(PROMPTLY) {
            Ok(line) => {
                self.seen.push(line.clone());
                assert!(line.starts_with(prefix), "{line:?} instead of {prefix:?}");
                line
            }
            Err(_) => {
                let _ = self.child.kill();
                panic!(
                    "no stdout line {prefix:?} within {PROMPTLY:?}; saw {:?}",
                    self.seen
                )
            }
        }
    }

    fn expect_stderr(&mut self, prefix: &str) {
        let deadline = Instant::now() + PROMPTLY;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) if line.starts_with(prefix) => return,
                Ok(_) => continue,
                Err(_) => {
                    let _ = self.child.kill();
                    panic!("no stderr line {prefix:?} within {PROMPTLY:?}");
                }
            }
        }
    }

    /// Let a `--hold` child go on and die; wait for it (bounded).
    fn release_and_wait(&mut self) -> (ExitStatus, Vec<String>) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = writeln!(stdin);
        }
        let deadline = Instant::now() + PROMPTLY;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                panic!("example {} still running after {PROMPTLY:?}", self.pid());
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        while let Ok(line) = self.stdout.recv_timeout(PROMPTLY) {
            self.seen.push(line);
        }
        (status, self.seen.clone())
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `ready pid=<pid> tracked=<N> fds=<a,b,...>` -> (pid, N, fds).
fn parse_ready(line: &str) -> (u32, usize, Vec<i32>) {
    let field = |key: &str| {
        line.split_whitespace()
            .find_map(|word| word.strip_prefix(key))
            .unwrap_or_else(|| panic!("{key} missing in {line:?}"))
            .to_owned()
    };
    let fds = field("fds=")
        .split(',')
        .map(|s| s.parse().unwrap())
        .collect();
    (
        field("pid=").parse().unwrap(),
        field("tracked=").parse().unwrap(),
        fds,
    )
}

/// What each of `fds` names in process `pid` (`readlink /proc/<pid>/fd/<n>`),
/// `None` when closed.
fn links(pid: u32, fds: &[i32]) -> BTreeMap<i32, Option<PathBuf>> {
    fds.iter()
        .map(|fd| {
            let link = std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok();
            (*fd, link)
        })
        .collect()
}

/// Run the example with `--hold`, signal it with `sig`, and check the whole
/// promise: the lines, every tracked number released, no temporary file
/// left, death by `sig`.
fn cleans_up_and_dies_by(sig: libc::c_int, open: usize) {
    let tmp = TempDir::new(&format!("sig{sig}"));
    let mut example = Example::spawn(&["--open", &open.to_string(), "--hold"], &tmp);
    let (pid, tracked, fds) = parse_ready(&example.expect_line("ready "));
    assert_eq!(pid, example.pid());
    assert_eq!((tracked, fds.len()), (open, open));
    let before = links(pid, &fds);
    let kinds: Vec<String> = before
        .values()
        .map(|l| {
            l.as_ref()
                .expect("every listed number is open")
                .display()
                .to_string()
        })
        .collect();
    // The listener, the socket pair, the pipe, the files.
    assert_eq!(
        kinds.iter().filter(|l| l.starts_with("socket:")).count(),
        3,
        "{kinds:?}"
    );
    assert_eq!(
        kinds.iter().filter(|l| l.starts_with("pipe:")).count(),
        2,
        "{kinds:?}"
    );
    assert_eq!(tmp.files().len(), open - 5, "{:?}", tmp.files());

    kill(pid, sig);
    example.expect_line(&format!("released {open}"));
    example.expect_line("tasks finished 3");
    // Held: nothing tracked still names what it named at `ready`.
    let after = links(pid, &fds);
    for fd in &fds {
        if let Some(now) = &after[fd] {
            assert_ne!(Some(now), before[fd].as_ref(), "fd {fd} still names it");
        }
    }
    assert_eq!(tmp.files(), Vec::<PathBuf>::new(), "temporary files left");

    let (status, stdout) = example.release_and_wait();
    assert_eq!(status.signal(), Some(sig), "status {status:?}");
    assert_eq!(
        stdout.len(),
        3,
        "stdout carries exactly three lines: {stdout:?}"
    );
}

#[test]
fn sigint_cancels_the_tasks_releases_every_tracked_fd_and_dies_by_sigint() {
    cleans_up_and_dies_by(libc::SIGINT, 8);
}

#[test]
fn sigterm_does_the_same_and_dies_by_sigterm() {
    cleans_up_and_dies_by(libc::SIGTERM, 6);
}

#[test]
fn a_second_sigint_during_a_stuck_cleanup_kills_at_once() {
    let tmp = TempDir::new("twice");
    let mut example = Example::spawn(&["--slow-cleanup-ms", "60000"], &tmp);
    let (pid, _, _) = parse_ready(&example.expect_line("ready "));
    kill(pid, libc::SIGINT);
    example.expect_stderr("cleaning up");
    kill(pid, libc::SIGINT);
    let (status, stdout) = example.release_and_wait();
    assert_eq!(status.signal(), Some(libc::SIGINT), "status {status:?}");
    assert!(
        !stdout.iter().any(|l| l.starts_with("released")),
        "the cleanup finished instead of being cut short: {stdout:?}"
    );
}

#[test]
fn fewer_than_six_descriptors_is_refused() {
    let tmp = TempDir::new("few");
    let out = Command::new(example_path())
        .args(["--open", "5"])
        .env("TMPDIR", &tmp.0)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 6"));
    assert!(out.stdout.is_empty());
}
