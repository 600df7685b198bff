//! The README's three recipes, run as a user runs them: each example
//! program is built and driven through its real input, signals and
//! sockets, and the README's code blocks must be those programs, word for
//! word (so the README cannot drift from what is tested).

mod util;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::Duration;

use util::{lines_of, serial, wait_child, ChildEnd};

/// The next line from `lines`, bounded.
fn next_line(lines: &Receiver<String>, what: &str) -> String {
    lines
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("no line: {what}"))
}

/// Recipe 1: type a line, get its echo; Ctrl-C (a real SIGINT) releases
/// the workers' files, removes them, and the program dies by SIGINT; the
/// end of input ends it normally, also without leftovers.
#[test]
fn the_cli_recipe_echoes_cleans_up_on_ctrl_c_and_dies_by_sigint() {
    let _serial = serial();
    let exe = util::build_example("cli_cleanup", "");
    for ctrl_c in [true, false] {
        let mut child = Command::new(&exe)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id();
        let dir = std::env::temp_dir().join(format!("fdtable-cli-{pid}"));
        let lines = lines_of(child.stdout.take().unwrap());
        assert!(next_line(&lines, "ready").starts_with("ready"));
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"hello\n").unwrap();
        assert_eq!(next_line(&lines, "the echo"), "echo: hello");
        // The workers are writing their files by now.
        std::thread::sleep(Duration::from_millis(100));
        assert!(dir.exists(), "the workers' directory");
        if ctrl_c {
            util::kill(pid, libc::SIGINT);
            let released = next_line(&lines, "released");
            let n: usize = released
                .strip_prefix("released ")
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("{released:?}"));
            assert!(n <= 4, "4 workers, one file each at most: {n}");
        } else {
            drop(stdin);
        }
        let end = wait_child(pid as libc::pid_t, Duration::from_secs(60)).unwrap();
        let _ = child.try_wait();
        let expected = if ctrl_c {
            ChildEnd::Signaled(libc::SIGINT)
        } else {
            ChildEnd::Exited(0)
        };
        assert_eq!(end, expected, "ctrl_c={ctrl_c}");
        assert!(!dir.exists(), "ctrl_c={ctrl_c}: the files were left behind");
    }
}

/// Recipe 2: five clients get their echo; SIGTERM ends every connection
/// at once (each client reads end-of-file), `released` counts the five
/// connections and the listener exactly, and the server dies by SIGTERM.
#[test]
fn the_tokio_recipe_ends_every_connection_on_sigterm() {
    let _serial = serial();
    let exe = util::build_example("tokio_server", "tokio");
    let mut child = Command::new(&exe)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let lines = lines_of(child.stdout.take().unwrap());
    let listening = next_line(&lines, "listening");
    let address = listening
        .strip_prefix("listening on ")
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_else(|| panic!("{listening:?}"))
        .to_owned();
    let mut clients: Vec<TcpStream> = (0..5)
        .map(|i| {
            let mut client = TcpStream::connect(&address).unwrap();
            client
                .set_read_timeout(Some(Duration::from_secs(30)))
                .unwrap();
            let ping = format!("ping {i}\n");
            client.write_all(ping.as_bytes()).unwrap();
            let mut echo = vec![0u8; ping.len()];
            client.read_exact(&mut echo).unwrap();
            assert_eq!(echo, ping.as_bytes());
            client
        })
        .collect();
    util::kill(pid, libc::SIGTERM);
    for (i, client) in clients.iter_mut().enumerate() {
        let mut rest = Vec::new();
        client
            .read_to_end(&mut rest)
            .unwrap_or_else(|e| panic!("client {i}: no end-of-file: {e}"));
    }
    assert_eq!(next_line(&lines, "released"), "released 6");
    let end = wait_child(pid as libc::pid_t, Duration::from_secs(60)).unwrap();
    let _ = child.try_wait();
    assert_eq!(end, ChildEnd::Signaled(libc::SIGTERM));
}

/// Recipe 3: the service finds `LISTEN_PID` equal to its own pid and its
/// socket at 3, and nothing else open but stdio and the directory it lists.
#[test]
fn the_socket_activation_recipe_gives_the_service_its_socket_only() {
    let _serial = serial();
    let exe = util::build_example("socket_activation", "");
    let out = Command::new(&exe).stdin(Stdio::null()).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("supervisor got: hello from pid ")
            && lines[0].ends_with(": socket \"http\", 5 fds open"),
        "{text}"
    );
    assert_eq!(lines[1], "service ended: exit status: 0", "{text}");
}

/// The README shows each recipe's program in full: the code block that
/// follows its heading is the example file, from its first `use` on.
#[test]
fn the_readme_recipes_are_the_tested_examples() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    for example in ["cli_cleanup", "tokio_server", "socket_activation"] {
        let source = std::fs::read_to_string(root.join(format!("examples/{example}.rs"))).unwrap();
        let body = &source[source.find("\nuse ").expect("a use line") + 1..];
        assert!(
            readme.contains(body),
            "README.md does not show examples/{example}.rs (from its first `use`) verbatim"
        );
    }
}
