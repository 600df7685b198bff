//! Recipe: a command-line program with worker threads and a prompt that
//! cleans up on Ctrl-C and dies by the signal.
//!
//! ```text
//! cargo run --example cli_cleanup     # type lines; Ctrl-C cleans up; echo $? prints 130
//! ```
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::time::Duration;

use fdtable::{FdTable, Interrupts, WaitOutcome};

fn main() -> io::Result<()> {
    let table = FdTable::global();
    let ctrl_c = Interrupts::install()?;
    for signal in ctrl_c.ignored() {
        // A background job of a non-interactive shell starts with SIGINT ignored.
        eprintln!("{signal} was ignored at start: Ctrl-C will not stop this program");
    }
    let dir = std::env::temp_dir().join(format!("fdtable-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    for worker in 0..4 {
        let dir = dir.clone();
        std::thread::spawn(move || write_files(table, dir, worker));
    }
    // std's `Stdin` buffers: a line already in its buffer would not wake a
    // wait. Read the descriptor itself, one `read` per wait.
    let mut input = File::from(io::stdin().as_fd().try_clone_to_owned()?);
    let mut line = [0u8; 1024];
    println!("ready: type a line, or press Ctrl-C");
    loop {
        if let WaitOutcome::Signal(received) = ctrl_c.wait_readable(input.as_fd(), None)? {
            table.seal(); // from now on `track` refuses: no worker escapes
            let report = table.close_all(); // every file released, under the workers
            println!("released {}", report.released());
            std::fs::remove_dir_all(&dir)?;
            Interrupts::die_by_signal(received.signal()); // the shell sees SIGINT
        }
        let n = input.read(&mut line)?;
        if n == 0 {
            return std::fs::remove_dir_all(&dir); // end of input
        }
        print!("echo: {}", String::from_utf8_lossy(&line[..n]));
        io::stdout().flush()?;
    }
}

/// A worker: file after file, each tracked, until `track` or a write fails.
fn write_files(table: &'static FdTable, dir: PathBuf, worker: usize) -> io::Result<()> {
    for n in 0u64.. {
        let file = File::create(dir.join(format!("{worker}-{n}.log")))?;
        let mut file = table.track(file)?; // refused once sealed: the worker stops
        for _ in 0..50 {
            file.write_all(b"data\n")?; // fails once close_all released the file
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    Ok(())
}
