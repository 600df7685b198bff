//! A line-reading CLI whose first Ctrl-C runs the cleanup even while it
//! waits for input.
//!
//! ```text
//! cargo run --example read_lines
//! ```
//!
//! It keeps a journal file in a temporary directory (tracked in
//! [`FdTable::global`]), prints `ready pid=<pid> journal=<dir>` and a `> `
//! prompt, and appends every line you type to the journal. End the input
//! (Ctrl-D) and it removes the directory and exits 0.
//!
//! Press Ctrl-C while it waits for your next line: it prints
//! `interrupted by SIGINT (1 delivery): cleaning up` and who sent it
//! (`sent by the kernel`: the terminal's Ctrl-C; `sent by process <pid>`
//! for a `kill`), releases its descriptors, removes the directory, prints
//! `cleaned up`, and dies by SIGINT (`echo $?` prints 130).
//!
//! The point: a plain `stdin().read_line()` would *not* return on Ctrl-C
//! (signal-hook installs its handler with `SA_RESTART`, and std retries
//! `EINTR`), so the first Ctrl-C would only arm the process and the second
//! would kill it with no cleanup. `--blocking-read` does exactly that, for
//! comparison. Instead the program waits with [`Interrupts::wait_readable`]
//! until standard input is readable *or* a signal arrived, and reads only
//! then.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;

use fdtable::{FdTable, Interrupts, Signal, WaitOutcome};

fn main() -> io::Result<()> {
    let blocking_read = std::env::args().any(|a| a == "--blocking-read");
    let interrupts = Interrupts::builder(Signal::Interrupt)
        .signal(Signal::Terminate)
        .install()?;
    for signal in interrupts.ignored() {
        eprintln!("note: {signal} was ignored at startup; leaving it ignored");
    }

    let dir = std::env::temp_dir().join(format!("fdtable-read-lines-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut journal = FdTable::global().track(File::create(dir.join("journal.txt"))?)?;
    // Read through our own descriptor for standard input (a duplicate):
    // `File` reads are unbuffered, so "poll says readable" and "the data is
    // in the kernel" stay the same thing; std's `Stdin` buffers.
    let mut input = File::from(io::stdin().as_fd().try_clone_to_owned()?);

    let mut out = io::stdout().lock();
    writeln!(
        out,
        "ready pid={} journal={}",
        std::process::id(),
        dir.display()
    )?;
    let mut pending = Vec::new();
    let mut buf = [0u8; 4096];
    let mut lines = 0u64;
    let received = loop {
        write!(out, "> ")?;
        out.flush()?;
        if !blocking_read {
            match interrupts.wait_readable(input.as_fd(), None)? {
                WaitOutcome::Signal(received) => break Some(received),
                WaitOutcome::Readable | WaitOutcome::TimedOut => {}
            }
        }
        // One read; it does not block after `Readable`.
        let n = input.read(&mut buf)?;
        if n == 0 {
            break None; // end of input
        }
        pending.extend_from_slice(&buf[..n]);
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            journal.write_all(&line)?;
            lines += 1;
            writeln!(out, "journaled {lines} line(s)")?;
        }
    };

    if let Some(received) = &received {
        writeln!(out, "\ninterrupted by {received}: cleaning up")?;
        match received.sender_pid() {
            Some(pid) => writeln!(out, "sent by process {pid}")?,
            None => writeln!(out, "sent by the kernel")?,
        }
    }
    let report = FdTable::global().close_all();
    std::fs::remove_dir_all(&dir)?;
    writeln!(
        out,
        "cleaned up ({} descriptor(s) released)",
        report.released()
    )?;
    out.flush()?;
    drop((out, journal));
    match received {
        Some(received) => {
            drop(interrupts);
            Interrupts::die_by_signal(received.signal())
        }
        None => Ok(()),
    }
}
