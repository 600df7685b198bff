//! A supervisor that hands a listening socket to a service the way systemd
//! does (socket activation): the socket at descriptor 3, `LISTEN_FDS`,
//! `LISTEN_FDNAMES` and `LISTEN_PID` (the service's own pid) in its
//! environment, and nothing else of the supervisor's open in it.
//!
//! The supervisor binds the socket, tracks it (so a Ctrl-C `close_all`
//! would release it too), and spawns this same program as the service; the
//! service checks what `sd_listen_fds(3)` checks, accepts one connection
//! and answers it; the supervisor connects and prints the answer.
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
        return serve();
    }
    let listener = FdTable::global().track(TcpListener::bind("127.0.0.1:0")?)?;
    let address = listener.local_addr()?;
    // Something the service must not get: a file of the supervisor's.
    let _private = FdTable::global().track(std::fs::File::open("/dev/null")?)?;

    let fds = ChildFds::new()
        .listen_fd(listener.as_fd(), "http")?
        .close_other_fds();
    let mut service = Command::new(std::env::current_exe()?)
        .arg("--serve")
        .child_fds(fds)
        .spawn()?;
    println!(
        "supervisor: listening on {address}, service pid {}",
        service.id()
    );

    let mut answer = String::new();
    TcpStream::connect(address)?.read_to_string(&mut answer)?;
    print!("supervisor got: {answer}");
    let status = service.wait()?;
    println!("supervisor: service ended with {status}");
    if !status.success() {
        return Err(io::Error::other("the service failed"));
    }
    Ok(())
}

/// The service: what a socket-activated daemon does first.
fn serve() -> io::Result<()> {
    let var = |name| std::env::var(name).unwrap_or_default();
    if var("LISTEN_PID") != std::process::id().to_string() {
        return Err(io::Error::other("LISTEN_PID is not my pid: not for me"));
    }
    if var("LISTEN_FDS") != "1" {
        return Err(io::Error::other("expected one socket"));
    }
    // SAFETY: socket activation hands this process descriptor 3, a
    // listening socket it now owns (checked above: the variables are ours).
    let listener = unsafe { TcpListener::from_raw_fd(3) };
    // Linux lists a process's descriptors in /proc/self/fd; macOS (and
    // FreeBSD with fdescfs mounted) in /dev/fd.
    let fd_dir = if cfg!(target_os = "linux") {
        "/proc/self/fd"
    } else {
        "/dev/fd"
    };
    let open: Vec<String> = std::fs::read_dir(fd_dir)
        .map(|dir| {
            dir.filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned()))
                .collect()
        })
        .unwrap_or_default();
    let (mut client, _) = listener.accept()?;
    writeln!(
        client,
        "hello from pid {} ({}), descriptors open here: {}",
        std::process::id(),
        var("LISTEN_FDNAMES"),
        open.join(" ")
    )?;
    Ok(())
}
