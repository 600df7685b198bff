//! Clean up on Ctrl-C, then die by SIGINT: the pattern this crate exists for.
//!
//! ```text
//! cargo run --example ctrlc_cleanup -- [--open N] [--slow-cleanup-ms MS] [--raise-after-ready]
//! ```
//!
//! Opens `N` descriptors (default 8): a pipe and a socket pair (two ends
//! each) when `N >= 4`, and temporary files it keeps writing to for the
//! rest. Each one is tracked in [`FdTable::global`]. It prints exactly one
//! line on stdout,
//!
//! ```text
//! ready pid=<pid> tracked=<N> fds=<comma-separated descriptor numbers>
//! ```
//!
//! then works in a `poll(2)` loop whose set includes the [`Interrupts`]
//! descriptor. Press Ctrl-C (or `kill -INT <pid>`): it seals the table
//! ([`FdTable::seal`]: no `track` succeeds any more), releases every
//! tracked descriptor with [`FdTable::close_all`], removes its temporary
//! files, prints `released <count>` and dies by SIGINT, so your shell shows
//! status 130. SIGTERM is handled the same way (and it dies by SIGTERM).
//!
//! Press Ctrl-C twice and the second one kills it at once, even while the
//! cleanup is stuck: `--slow-cleanup-ms 5000` makes the cleanup sleep first
//! so you can try. If SIGINT was ignored when it started (`nohup`, a
//! background job), it stays ignored: only SIGTERM ends the program then.
//!
//! `--raise-after-ready` sends SIGINT to itself right after the `ready`
//! line, for runs with no one at the keyboard (`.ci/run` uses it under
//! valgrind); everything else is the same.
//!
//! Progress notes go to stderr; stdout carries only the two lines above.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use fdtable::{FdTable, Interrupts, Signal, Tracked};

struct Options {
    open: usize,
    slow_cleanup: Duration,
    raise_after_ready: bool,
}

fn parse_options() -> Result<Options, String> {
    let mut options = Options {
        open: 8,
        slow_cleanup: Duration::ZERO,
        raise_after_ready: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = |name: &str| -> Result<u64, String> {
            let value = args.next().ok_or(format!("{name} needs a number"))?;
            value
                .parse()
                .map_err(|_| format!("{name}: not a number: {value}"))
        };
        match arg.as_str() {
            "--open" => options.open = number("--open")? as usize,
            "--slow-cleanup-ms" => {
                options.slow_cleanup = Duration::from_millis(number("--slow-cleanup-ms")?)
            }
            "--raise-after-ready" => options.raise_after_ready = true,
            "-h" | "--help" => {
                return Err(
                    "usage: ctrlc_cleanup [--open N] [--slow-cleanup-ms MS] [--raise-after-ready]"
                        .into(),
                )
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(options)
}

/// A pipe whose ends are close-on-exec from birth.
fn cloexec_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
    let pipe = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC);
    // Elsewhere `track` sets FD_CLOEXEC right after (fine in one thread).
    #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
    let pipe = nix::unistd::pipe();
    pipe.map_err(io::Error::from)
}

/// Everything the program opened. The handles stay alive until cleanup is
/// over: after `close_all` they hold dead placeholders, so their numbers are
/// not recycled under them while anything may still use them.
struct Resources {
    files: Vec<Tracked<'static, File>>,
    pipe: Option<(Tracked<'static, File>, Tracked<'static, File>)>,
    sockets: Option<(Tracked<'static, UnixStream>, Tracked<'static, UnixStream>)>,
    dir: PathBuf,
}

fn open_resources(n: usize) -> io::Result<Resources> {
    let table = FdTable::global();
    let dir = std::env::temp_dir().join(format!("fdtable-ctrlc-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut resources = Resources {
        files: Vec::new(),
        pipe: None,
        sockets: None,
        dir,
    };
    let mut files = n;
    if n >= 4 {
        files = n - 4;
        let (read, write) = cloexec_pipe()?;
        let (read, write) = (File::from(read), File::from(write));
        resources.pipe = Some((table.track(read)?, table.track(write)?));
        let (a, b) = UnixStream::pair()?;
        a.set_nonblocking(true)?;
        resources.sockets = Some((table.track(a)?, table.track(b)?));
    }
    for i in 0..files {
        let file = File::create(resources.dir.join(format!("work-{i}.log")))?;
        resources.files.push(table.track(file)?);
    }
    Ok(resources)
}

impl Resources {
    fn fds(&self) -> Vec<i32> {
        let mut fds = Vec::new();
        if let Some((r, w)) = &self.pipe {
            fds.extend([r.as_raw_fd(), w.as_raw_fd()]);
        }
        if let Some((a, b)) = &self.sockets {
            fds.extend([a.as_raw_fd(), b.as_raw_fd()]);
        }
        fds.extend(self.files.iter().map(|f| f.as_raw_fd()));
        fds
    }

    /// One unit of "work": a line in every file, a byte through the pipe
    /// and the socket pair.
    fn work(&mut self, tick: u64) -> io::Result<()> {
        for file in &mut self.files {
            writeln!(file, "tick {tick}")?;
        }
        if let Some((_, w)) = &mut self.pipe {
            w.write_all(b".")?;
        }
        if let Some((_, b)) = &mut self.sockets {
            b.write_all(b".")?;
        }
        Ok(())
    }

    fn read_ready(&mut self, fd: i32) {
        let mut buf = [0u8; 64];
        if let Some((r, _)) = &mut self.pipe {
            if r.as_raw_fd() == fd {
                let _ = r.read(&mut buf);
            }
        }
        if let Some((a, _)) = &mut self.sockets {
            if a.as_raw_fd() == fd {
                let _ = a.read(&mut buf);
            }
        }
    }
}

fn main() {
    let options = parse_options().unwrap_or_else(|message| {
        eprintln!("{message}");
        std::process::exit(2);
    });

    // Install before opening anything, so a Ctrl-C during setup is an event
    // too. Every convention is on: ignored-at-start stays ignored, a second
    // signal kills at once.
    let interrupts = Interrupts::builder(Signal::Interrupt)
        .signal(Signal::Terminate)
        .install()
        .expect("install signal handlers");
    for signal in interrupts.ignored() {
        eprintln!("note: {signal} was ignored at startup (nohup?); leaving it ignored");
    }

    let mut resources = open_resources(options.open).expect("open resources");
    let fds = resources.fds();
    let list: Vec<String> = fds.iter().map(i32::to_string).collect();
    let mut stdout = io::stdout().lock();
    writeln!(
        stdout,
        "ready pid={} tracked={} fds={}",
        std::process::id(),
        FdTable::global().len(),
        list.join(",")
    )
    .and_then(|()| stdout.flush())
    .expect("stdout");
    if options.raise_after_ready {
        // SAFETY: raise is always safe to call; SIGINT is handled (or was
        // ignored at startup, and then stays ignored: see `ignored()`).
        unsafe { libc::raise(libc::SIGINT) };
    }

    // The event loop: the Interrupts descriptor is just one more fd to poll.
    let mut watched = vec![interrupts.as_raw_fd()];
    if let Some((r, _)) = &resources.pipe {
        watched.push(r.as_raw_fd());
    }
    if let Some((a, _)) = &resources.sockets {
        watched.push(a.as_raw_fd());
    }
    let mut tick = 0u64;
    let received = loop {
        let mut pollfds: Vec<libc::pollfd> = watched
            .iter()
            .map(|&fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        // SAFETY: `pollfds` is a live, correctly sized array of pollfd.
        let ready = unsafe { libc::poll(pollfds.as_mut_ptr(), pollfds.len() as libc::nfds_t, 200) };
        if ready == 0 {
            tick += 1;
            resources.work(tick).expect("work");
            continue;
        }
        if ready < 0 {
            continue; // EINTR: the signal's byte is in the pipe; poll again
        }
        if pollfds[0].revents != 0 {
            if let Some(received) = interrupts.try_recv() {
                break received;
            }
        }
        for pfd in &pollfds[1..] {
            if pfd.revents != 0 {
                resources.read_ready(pfd.fd);
            }
        }
    };

    // From here on a second SIGINT/SIGTERM kills the process at once.
    eprintln!("cleaning up after {received}");
    std::thread::sleep(options.slow_cleanup); // a cleanup that may get stuck

    // Seal first: a `track` from now on (another thread's, in a bigger
    // program) fails instead of slipping past `close_all`.
    FdTable::global().seal();
    let report = FdTable::global().close_all();
    let _ = std::fs::remove_dir_all(&resources.dir);
    writeln!(stdout, "released {}", report.released())
        .and_then(|()| stdout.flush())
        .expect("stdout");
    drop(stdout);
    // Nothing else runs now, so the handles may close their placeholders and
    // the signal pipe may go: the process dies holding only what it
    // inherited (`.ci/run` checks that under `valgrind --track-fds=yes`).
    // A second SIGINT still kills at once: dropping the last `Interrupts`
    // restores the default action.
    drop(resources);
    drop(interrupts);
    Interrupts::die_by_signal(received.signal());
}
