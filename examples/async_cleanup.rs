//! Clean up on Ctrl-C in a multi-threaded tokio program, then die by the
//! signal: the async form of `ctrlc_cleanup`. Needs the `tokio` feature.
//!
//! ```text
//! cargo run --features tokio --example async_cleanup -- [--open N] [--slow-cleanup-ms MS]
//! ```
//!
//! Tracks `N` descriptors (default 8, at least 6) in [`FdTable::global`]: a
//! TCP listener on 127.0.0.1, a tokio pipe and a tokio Unix socket pair (two
//! ends each), and `N - 5` temporary files. Three tasks block: one in
//! `accept` on the listener, one reading the pipe, one reading the socket;
//! a fourth holds the other ends and sends a byte through each now and
//! then, and a blocking-pool thread keeps writing to the temporary files.
//! Stdout carries exactly
//!
//! ```text
//! ready pid=<pid> tracked=<N> fds=<comma-separated descriptor numbers>
//! released <N>
//! tasks finished <K>
//! ```
//!
//! the first once everything is set up, the other two after cleanup.
//! Press Ctrl-C (or `kill -INT`/`-TERM <pid>`) and it cleans up in the
//! order `docs/guide.md` ("Async programs (tokio)") recommends:
//!
//! 1. **Cancel the tasks** and wait for them (bounded): their handles drop
//!    with them, which closes the listener, the pipe and the sockets. `K`
//!    counts the three blocked tasks that ended.
//! 2. **`seal`, then `close_all` as the safety net** for what cancelling
//!    cannot reach: the blocking-pool writer cannot be aborted, so its files
//!    are released under it (its next write fails and it stops); the seal
//!    makes sure nothing tracked after that point escapes.
//! 3. Remove the temporary files, print `released <N>` (tracked entries
//!    released by the cleanup: every one) and `tasks finished <K>`.
//! 4. **Die by the signal**: status 130 for SIGINT, 143 for SIGTERM.
//!
//! A second Ctrl-C during the cleanup kills it at once:
//! `--slow-cleanup-ms 5000` makes the cleanup sleep first, so you can try.
//! `--hold` waits for a line on stdin (or its end) before dying, so a test
//! can look at `/proc/<pid>/fd` after the cleanup. Notes go to stderr.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::time::Duration;

use fdtable::{AsyncInterrupts, FdTable, Interrupts, Signal, Tracked};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::net::{TcpListener, UnixStream};
use tokio::task::JoinHandle;

/// How long a cancelled task may take to end before cleanup goes on
/// without it.
const CANCEL_BOUND: Duration = Duration::from_secs(5);

struct Options {
    open: usize,
    slow_cleanup: Duration,
    hold: bool,
}

fn parse_options() -> Result<Options, String> {
    let usage = "usage: async_cleanup [--open N (>= 6)] [--slow-cleanup-ms MS] [--hold]";
    let mut options = Options {
        open: 8,
        slow_cleanup: Duration::ZERO,
        hold: false,
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
            "--hold" => options.hold = true,
            "-h" | "--help" => return Err(usage.into()),
            other => return Err(format!("unknown argument {other}\n{usage}")),
        }
    }
    if options.open < 6 {
        return Err(format!(
            "--open {}: at least 6 (listener, pipe, socket pair, a file)\n{usage}",
            options.open
        ));
    }
    Ok(options)
}

type Handle<T> = Tracked<'static, T>;

/// Everything the program tracks, before it is handed to the tasks.
struct Resources {
    listener: Handle<TcpListener>,
    pipe: (Handle<pipe::Sender>, Handle<pipe::Receiver>),
    sockets: (Handle<UnixStream>, Handle<UnixStream>),
    files: Vec<Handle<File>>,
    dir: PathBuf,
}

async fn open_resources(n: usize) -> io::Result<Resources> {
    let table = FdTable::global();
    let dir = std::env::temp_dir().join(format!("fdtable-async-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let listener = table.track(TcpListener::bind("127.0.0.1:0").await?)?;
    let (tx, rx) = pipe::pipe()?;
    let pipe = (table.track(tx)?, table.track(rx)?);
    let (a, b) = UnixStream::pair()?;
    let sockets = (table.track(a)?, table.track(b)?);
    let files = (0..n - 5)
        .map(|i| Ok(table.track(File::create(dir.join(format!("work-{i}.log")))?)?))
        .collect::<io::Result<_>>()?;
    Ok(Resources {
        listener,
        pipe,
        sockets,
        files,
        dir,
    })
}

impl Resources {
    fn fds(&self) -> Vec<i32> {
        let mut fds = vec![
            self.listener.as_raw_fd(),
            self.pipe.0.as_raw_fd(),
            self.pipe.1.as_raw_fd(),
            self.sockets.0.as_raw_fd(),
            self.sockets.1.as_raw_fd(),
        ];
        fds.extend(self.files.iter().map(|f| f.as_raw_fd()));
        fds
    }
}

/// The running program: the tasks and where their resources went.
struct Running {
    /// Blocked in `accept`, reading the pipe, reading the socket.
    blocked: Vec<JoinHandle<()>>,
    /// Sends a byte through the pipe and the socket now and then.
    peer: JoinHandle<()>,
    /// The blocking-pool writer: cannot be aborted.
    writer: JoinHandle<()>,
    dir: PathBuf,
}

fn start(resources: Resources) -> Running {
    let Resources {
        listener,
        pipe: (mut tx, mut rx),
        sockets: (mut a, mut b),
        files,
        dir,
    } = resources;
    let accept = tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((peer, _)) => drop(peer),
                Err(error) => return eprintln!("accept ended: {error}"),
            }
        }
    });
    let pipe_reader = tokio::spawn(async move {
        let mut buf = [0u8; 64];
        while let Ok(n @ 1..) = rx.read(&mut buf).await {
            let _ = n;
        }
        eprintln!("pipe reader ended");
    });
    let socket_reader = tokio::spawn(async move {
        let mut buf = [0u8; 64];
        while let Ok(n @ 1..) = a.read(&mut buf).await {
            let _ = n;
        }
        eprintln!("socket reader ended");
    });
    let peer = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let _ = tx.write_all(b".").await;
            let _ = b.write_all(b".").await;
        }
    });
    let writer = tokio::task::spawn_blocking(move || {
        for tick in 0u64.. {
            for file in &files {
                // `&Tracked<File>` writes, like `&File`.
                let mut file: &Handle<File> = file;
                if let Err(error) = writeln!(file, "tick {tick}") {
                    // EBADF once `close_all` swapped the placeholder in.
                    return eprintln!("writer stopped: {error}");
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    Running {
        blocked: vec![accept, pipe_reader, socket_reader],
        peer,
        writer,
        dir,
    }
}

/// Abort `task` and wait for it to end, at most [`CANCEL_BOUND`]. Whether
/// it ended.
async fn cancel(task: JoinHandle<()>) -> bool {
    task.abort();
    tokio::time::timeout(CANCEL_BOUND, task).await.is_ok()
}

#[tokio::main]
async fn main() {
    let options = parse_options().unwrap_or_else(|message| {
        eprintln!("{message}");
        std::process::exit(2);
    });

    // Installed first, so a Ctrl-C during setup is an event too.
    let interrupts = Interrupts::builder(Signal::Interrupt)
        .signal(Signal::Terminate)
        .install()
        .expect("install signal handlers");
    for signal in interrupts.ignored() {
        eprintln!("note: {signal} was ignored at startup (nohup?); leaving it ignored");
    }
    let interrupts = AsyncInterrupts::new(interrupts).expect("register with tokio");

    let resources = open_resources(options.open).await.expect("open resources");
    let fds = resources.fds();
    let table = FdTable::global();
    let list: Vec<String> = fds.iter().map(i32::to_string).collect();
    say(&format!(
        "ready pid={} tracked={} fds={}",
        std::process::id(),
        table.len(),
        list.join(",")
    ));
    let running = start(resources);

    let received = interrupts.recv().await.expect("receive a signal");
    // From here on a second SIGINT/SIGTERM kills the process at once.
    eprintln!("cleaning up after {received}");
    tokio::time::sleep(options.slow_cleanup).await; // a cleanup that may get stuck
    let live_before = table.len();

    // 1. Cancel the tasks; their handles close as they drop.
    let mut finished = 0;
    for task in running.blocked {
        finished += usize::from(cancel(task).await);
    }
    cancel(running.peer).await;
    // 2. The safety net, for what no cancel reaches (the blocking writer);
    //    sealed first, so that no `track` from now on slips past it.
    table.seal();
    let report = table.close_all();
    for (fd, error) in report.errors() {
        eprintln!("close_all: fd {fd}: {error}");
    }
    // Its next write fails; then it drops the files (closing the
    // placeholders close_all swapped in).
    let _ = tokio::time::timeout(CANCEL_BOUND, running.writer).await;
    // 3. Temporary files, the report.
    let _ = std::fs::remove_dir_all(&running.dir);
    eprintln!(
        "close_all released {}; cancelling released the rest",
        report.released()
    );
    say(&format!("released {}", live_before - table.len()));
    say(&format!("tasks finished {finished}"));
    if options.hold {
        let mut line = String::new();
        let _ = io::stdin().read_line(&mut line);
    }
    // 4. Die by the signal (a second one would have killed us already).
    drop(interrupts);
    Interrupts::die_by_signal(received.signal());
}

/// One line on stdout, flushed: `die_by_signal` does not flush.
fn say(line: &str) {
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "{line}")
        .and_then(|()| stdout.flush())
        .expect("stdout");
}
