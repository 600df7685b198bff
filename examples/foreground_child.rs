//! Run an interactive child in the foreground and let it have Ctrl-C, as
//! `git commit` lets `$EDITOR` have it.
//!
//! ```text
//! cargo run --example foreground_child            # the child: this program in --child mode
//! cargo run --example foreground_child -- -- python3   # any interactive program
//! ```
//!
//! The parent installs [`Interrupts`] (every convention on: a second Ctrl-C
//! would normally kill it), opens [`Interrupts::foreground_child`] and runs
//! the child. The terminal sends Ctrl-C to the whole foreground process
//! group, parent included; inside the scope the parent only counts it
//! (printing `parent: counted SIGINT (1 delivery) while the child runs`).
//! The default child catches two Ctrl-C (`child: caught SIGINT 1`, `... 2`)
//! and then exits 0 by itself. The parent reports what it counted
//! (`parent: child exited with exit status: 0; 2 SIGINT counted`) and exits 0.
//!
//! `--no-scope` runs the child without the scope, for comparison: the
//! parent's first Ctrl-C arms it and the second kills it, orphaning the
//! child on the terminal.

use std::io::{self, Write};
use std::process::Command;
use std::time::Duration;

use fdtable::{Interrupts, Signal};

/// The interactive child: catch Ctrl-C twice, then leave by itself.
fn child() -> io::Result<()> {
    let interrupts = Interrupts::builder(Signal::Interrupt)
        .respect_ignored(false)
        .second_signal_kills(false)
        .install()?;
    println!("child: running; press Ctrl-C twice");
    let mut caught = 0;
    while caught < 2 {
        caught += interrupts.recv()?.count();
        println!("child: caught SIGINT {caught}");
    }
    println!("child: leaving by myself");
    Ok(())
}

fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        return child();
    }
    let no_scope = args.iter().any(|a| a == "--no-scope");
    let command: Vec<String> = match args.iter().position(|a| a == "--") {
        Some(i) => args[i + 1..].to_vec(),
        None => vec![
            std::env::current_exe()?.display().to_string(),
            "--child".into(),
        ],
    };

    let interrupts = Interrupts::install()?;
    println!("parent: pid {}, running {:?}", std::process::id(), command);
    io::stdout().flush()?;
    let scope = if no_scope {
        None
    } else {
        Some(interrupts.foreground_child()?)
    };
    let mut child = Command::new(&command[0]).args(&command[1..]).spawn()?;
    let mut counted = 0;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if let Some(received) = interrupts.recv_timeout(Duration::from_millis(50))? {
            counted += received.count();
            println!("parent: counted {received} while the child runs");
        }
    };
    drop(scope);
    while let Some(received) = interrupts.try_recv() {
        counted += received.count();
    }
    println!("parent: child exited with {status}; {counted} SIGINT counted");
    Ok(())
}
