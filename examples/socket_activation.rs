//! Recipe: a supervisor that hands its service a listening socket at
//! descriptor 3 the way systemd does (`LISTEN_FDS`, `LISTEN_FDNAMES`, and
//! `LISTEN_PID` = the service's own pid), and nothing else of its own.
//!
//! ```text
//! cargo run --example socket_activation
//! ```
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, FromRawFd};
use std::process::Command;

use fdtable::{ChildFds, CommandExt, FdTable};

fn main() -> io::Result<()> {
    if std::env::args().nth(1).as_deref() == Some("--serve") {
        return serve(); // this same program, started as the service
    }
    let listener = FdTable::global().track(TcpListener::bind("127.0.0.1:0")?)?;
    let _private = FdTable::global().track(std::fs::File::open("/dev/null")?)?;
    let fds = ChildFds::new()
        .listen_fd(listener.as_fd(), "http")? // at 3, with LISTEN_* set
        .close_other_fds(); // and nothing else: not `_private`, not stray fds
    let mut service = Command::new(std::env::current_exe()?)
        .arg("--serve")
        .child_fds(fds)
        .spawn()?;
    let mut answer = String::new();
    TcpStream::connect(listener.local_addr()?)?.read_to_string(&mut answer)?;
    print!("supervisor got: {answer}");
    let status = service.wait()?;
    println!("service ended: {status}");
    Ok(())
}

/// What a socket-activated service checks first (`sd_listen_fds(3)`).
fn serve() -> io::Result<()> {
    let var = |name| std::env::var(name).unwrap_or_default();
    if var("LISTEN_PID") != std::process::id().to_string() || var("LISTEN_FDS") != "1" {
        return Err(io::Error::other("not socket-activated for this process"));
    }
    // SAFETY: socket activation handed this process descriptor 3, a
    // listening socket it now owns (the variables above say so).
    let listener = unsafe { TcpListener::from_raw_fd(3) };
    // Linux lists a process's descriptors in /proc/self/fd, macOS in /dev/fd.
    let fd_dir = if cfg!(target_os = "linux") {
        "/proc/self/fd"
    } else {
        "/dev/fd"
    };
    let open = std::fs::read_dir(fd_dir).map_or(0, |dir| dir.count());
    let (mut client, _) = listener.accept()?;
    let names = var("LISTEN_FDNAMES");
    writeln!(
        client,
        "hello from pid {}: socket {names:?}, {open} fds open",
        std::process::id()
    )
}
