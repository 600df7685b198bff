//! `Interrupts` in a real terminal: the examples run in a shell inside a
//! detached tmux session, Ctrl-C is typed with `send-keys C-c`, the screen
//! is read with `capture-pane`, and the exit status with a separate
//! `echo status=$?` command, as a person at the keyboard would see it.
//!
//! Each test uses its own tmux server (`tmux -L <unique socket>`), killed
//! when the test ends. Without tmux the tests print why they are skipped
//! (`.ci/run` installs it), except under CI (`CI` set), where they fail.

mod util;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Generous bound for anything that should show on the screen "promptly".
const PROMPTLY: Duration = Duration::from_secs(30);

/// One tmux server with one session running an interactive shell.
struct Tmux {
    socket: String,
}

impl Tmux {
    /// Start the session, or `None` (with the reason printed) when tmux is
    /// not installed. Under CI (the `CI` environment variable is set, as
    /// `.ci/run` and hosted CI services do) a missing tmux fails the test
    /// instead: a skipped terminal test must not pass as a green run.
    fn start(tag: &str) -> Option<Tmux> {
        if Command::new("tmux").arg("-V").output().is_err() {
            assert!(
                std::env::var_os("CI").is_none(),
                "tmux is not installed but CI is set: {tag} must run in CI \
                 (apt-get install -y tmux)"
            );
            eprintln!("SKIPPED: tmux is not installed (apt-get install -y tmux); {tag} not run");
            return None;
        }
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let tmux = Tmux {
            socket: format!(
                "fdtable-{tag}-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ),
        };
        // A plain interactive bash: job control on, so the program runs in
        // the terminal's foreground process group and gets the terminal's
        // Ctrl-C, as in a real terminal.
        let out = tmux.run(&[
            "new-session",
            "-d",
            "-s",
            "t",
            "-x",
            "200",
            "-y",
            "50",
            "env PS1='$ ' bash --norc --noprofile -i",
        ]);
        assert!(out.status.success(), "tmux new-session: {out:?}");
        tmux.wait_for("$ ");
        Some(tmux)
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(args)
            .output()
            .expect("run tmux")
    }

    /// Type `text` literally, then Enter.
    fn type_line(&self, text: &str) {
        assert!(self
            .run(&["send-keys", "-t", "t", "-l", text])
            .status
            .success());
        self.key("Enter");
    }

    /// Press a key (`C-c`, `Enter`).
    fn key(&self, key: &str) {
        assert!(self.run(&["send-keys", "-t", "t", key]).status.success());
    }

    fn screen(&self) -> String {
        let out = self.run(&["capture-pane", "-p", "-J", "-t", "t", "-S", "-500"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Wait (bounded) until the screen shows `needle`; the screen then.
    fn wait_for(&self, needle: &str) -> String {
        let deadline = Instant::now() + PROMPTLY;
        loop {
            let screen = self.screen();
            if screen.contains(needle) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "{needle:?} not on screen within {PROMPTLY:?}:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The exit status of the last command, read with a separate command.
    fn last_status(&self) -> i32 {
        self.type_line("echo \"status=$?\"");
        let screen = self.wait_for("\nstatus=");
        let line = screen
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("status="))
            .expect("status line");
        line.trim().parse().expect("a number")
    }
}

impl Tmux {
    /// The server's socket file: where the server says it is, or where tmux
    /// puts one by default (`$TMUX_TMPDIR`, else `/tmp`, then
    /// `tmux-<uid>/<name>`) when the server cannot answer.
    fn socket_path(&self) -> PathBuf {
        let out = self.run(&["display-message", "-p", "#{socket_path}"]);
        let said = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if out.status.success() && !said.is_empty() {
            return PathBuf::from(said);
        }
        let dir = std::env::var_os("TMUX_TMPDIR")
            .filter(|dir| !dir.is_empty())
            .map_or_else(|| PathBuf::from("/tmp"), PathBuf::from);
        // SAFETY: getuid(2) has no preconditions and cannot fail.
        let uid = unsafe { libc::getuid() };
        dir.join(format!("tmux-{uid}")).join(&self.socket)
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        // tmux leaves the socket file behind when its server exits, and
        // every test run names a new one: remove it, or they pile up.
        let socket = self.socket_path();
        let _ = self.run(&["kill-server"]);
        let _ = std::fs::remove_file(socket);
    }
}

/// The shell line that runs `exe`: SIGINT reset to the default first, in
/// case the test runs as a background job whose SIGINT starts ignored.
fn command_line(exe: &Path, args: &str) -> String {
    format!("env --default-signal=INT {} {args}", exe.display())
}

fn journal_dir(screen: &str) -> PathBuf {
    let line = screen
        .lines()
        .find(|l| l.starts_with("ready pid="))
        .expect("ready line");
    PathBuf::from(line.split("journal=").nth(1).expect("journal=").trim())
}

/// Issue 12 item 3: the first Ctrl-C while the CLI waits for input runs the
/// cleanup, and the process dies by SIGINT (status 130).
#[test]
fn read_lines_first_ctrl_c_while_waiting_for_input_cleans_up_and_dies_by_sigint() {
    let exe = util::build_example("read_lines", "");
    let Some(tmux) = Tmux::start("read-lines") else {
        return;
    };
    tmux.type_line(&command_line(&exe, ""));
    let screen = tmux.wait_for("\n> ");
    let dir = journal_dir(&screen);
    assert!(dir.join("journal.txt").exists(), "{screen}");
    tmux.type_line("hello");
    tmux.wait_for("journaled 1 line(s)");
    tmux.key("C-c"); // once, while it waits for the next line
    let screen = tmux.wait_for("cleaned up");
    assert!(
        screen.contains("interrupted by SIGINT (1 delivery): cleaning up"),
        "{screen}"
    );
    // Issue 18 item 4: the terminal driver sent it (`SI_KERNEL`), no process.
    assert!(screen.contains("\nsent by the kernel\n"), "{screen}");
    assert_eq!(tmux.last_status(), 130, "{}", tmux.screen());
    assert!(!dir.exists(), "the cleanup left {}", dir.display());
    assert_eq!(
        std::fs::read_dir(std::env::temp_dir())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name() == dir.file_name().unwrap())
            .count(),
        0
    );
}

/// The hazard the test above defends against, shown with the same program
/// reading the plain blocking way: the first Ctrl-C goes unnoticed (only
/// arms the process), the second kills it and the cleanup never runs.
#[test]
fn control_a_blocking_read_misses_the_first_ctrl_c_and_the_second_kills_without_cleanup() {
    let exe = util::build_example("read_lines", "");
    let Some(tmux) = Tmux::start("blocking-read") else {
        return;
    };
    tmux.type_line(&command_line(&exe, "--blocking-read"));
    let screen = tmux.wait_for("\n> ");
    let dir = journal_dir(&screen);
    tmux.key("C-c");
    std::thread::sleep(Duration::from_millis(500));
    assert!(!tmux.screen().contains("cleaning up"), "{}", tmux.screen());
    tmux.key("C-c");
    // Type the next command only once the shell is back: typed while the
    // program still runs, it would be the program's input (a flaky race).
    let deadline = Instant::now() + PROMPTLY;
    while !tmux.screen().trim_end().ends_with('$') {
        assert!(
            Instant::now() < deadline,
            "no prompt after the second Ctrl-C:\n{}",
            tmux.screen()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(tmux.last_status(), 130, "{}", tmux.screen());
    assert!(!tmux.screen().contains("cleaned up"));
    assert!(
        dir.exists(),
        "no cleanup ran, so the journal is still there"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 12 item 4: an interactive child catches Ctrl-C twice and exits by
/// itself; under `foreground_child` the parent only counts both and
/// survives, then reports them.
#[test]
fn an_interactive_child_gets_both_ctrl_c_and_the_parent_survives_and_reports_them() {
    let exe = util::build_example("foreground_child", "");
    let Some(tmux) = Tmux::start("foreground") else {
        return;
    };
    tmux.type_line(&command_line(&exe, ""));
    tmux.wait_for("child: running");
    tmux.key("C-c");
    tmux.wait_for("child: caught SIGINT 1");
    // The parent saw it too (wait, so the second press cannot coalesce
    // with the first in the parent).
    tmux.wait_for("parent: counted SIGINT (1 delivery) while the child runs");
    tmux.key("C-c");
    let screen = tmux.wait_for("parent: child exited with");
    assert!(screen.contains("child: caught SIGINT 2"), "{screen}");
    assert!(screen.contains("child: leaving by myself"), "{screen}");
    assert!(
        screen.contains("parent: child exited with exit status: 0; 2 SIGINT counted"),
        "{screen}"
    );
    assert_eq!(tmux.last_status(), 0, "{}", tmux.screen());
}

/// Without the scope the same parent is killed by the second Ctrl-C (which
/// was meant for the child): what the scope prevents.
#[test]
fn control_without_the_scope_the_second_ctrl_c_kills_the_parent() {
    let exe = util::build_example("foreground_child", "");
    let Some(tmux) = Tmux::start("no-scope") else {
        return;
    };
    tmux.type_line(&command_line(&exe, "--no-scope"));
    tmux.wait_for("child: running");
    tmux.key("C-c");
    tmux.wait_for("child: caught SIGINT 1");
    tmux.wait_for("parent: counted SIGINT (1 delivery) while the child runs");
    tmux.key("C-c");
    tmux.wait_for("child: leaving by myself");
    assert_eq!(tmux.last_status(), 130, "{}", tmux.screen());
    assert!(!tmux.screen().contains("parent: child exited"));
}

/// The README's first command, as a person runs it: `cli_cleanup` in a
/// terminal, a line typed and echoed, then Ctrl-C: the workers' files are
/// released and removed, and the shell sees SIGINT (status 130).
#[test]
fn the_cli_recipe_in_a_terminal_echoes_then_ctrl_c_cleans_up_and_exits_130() {
    let exe = util::build_example("cli_cleanup", "");
    let Some(tmux) = Tmux::start("cli-recipe") else {
        return;
    };
    let cli_dirs = || -> Vec<PathBuf> {
        std::fs::read_dir(std::env::temp_dir())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("fdtable-cli-"))
            .map(|e| e.path())
            .collect()
    };
    let before = cli_dirs();
    tmux.type_line(&command_line(&exe, ""));
    tmux.wait_for("ready: type a line, or press Ctrl-C");
    let new: Vec<PathBuf> = cli_dirs()
        .into_iter()
        .filter(|d| !before.contains(d))
        .collect();
    assert_eq!(new.len(), 1, "the workers' directory: {new:?}");
    let dir = new[0].clone();
    tmux.type_line("hello terminal");
    tmux.wait_for("echo: hello terminal");
    tmux.key("C-c");
    let screen = tmux.wait_for("released ");
    assert_eq!(tmux.last_status(), 130, "{screen}");
    assert!(!dir.exists(), "the cleanup left {}", dir.display());
}
