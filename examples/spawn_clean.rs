//! What a spawned program inherits, with and without the `CommandExt` hook.
//!
//! Tracks three descriptors, makes one of them inheritable on purpose (as a
//! careless `fcntl` elsewhere in a program might), then runs
//! `ls -l /proc/self/fd` three times: plain, with `close_tracked_fds`, and
//! with `close_tracked_fds_except` keeping one. Prints each listing and
//! what differs from the plain run.
//!
//! ```text
//! cargo run --example spawn_clean
//! ```

use std::collections::BTreeSet;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::process::Command;

use fdtable::{CommandExt, FdTable};

/// `ls -l /proc/self/fd` in a child; one "N -> target" entry per descriptor,
/// ordered by number. Targets that change from run to run (the stdout pipe,
/// `ls`'s own directory) are normalised so the runs compare.
fn listing(cmd: &mut Command) -> io::Result<Listing> {
    let out = cmd.arg("-l").arg("/proc/self/fd").output()?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            // "lr-x------ 1 user group 64 Jan  1 00:00 3 -> /dev/null"
            let arrow = line.find(" -> ")?;
            let number: i32 = line[..arrow].rsplit(' ').next()?.parse().ok()?;
            let target = &line[arrow + 4..];
            let target = if target.starts_with("pipe:") {
                "pipe:[..]"
            } else if target.starts_with("/proc/") && target.ends_with("/fd") {
                "/proc/<ls>/fd"
            } else {
                target
            };
            Some((number, format!("{number} -> {target}")))
        })
        .collect())
}

type Listing = BTreeSet<(i32, String)>;

fn show(title: &str, entries: &Listing, plain: &Listing) {
    println!("{title}:");
    for (_, entry) in entries {
        println!("    {entry}");
    }
    let gone: Vec<_> = plain.difference(entries).map(|(_, e)| e).collect();
    let new: Vec<_> = entries.difference(plain).map(|(_, e)| e).collect();
    if !gone.is_empty() || !new.is_empty() {
        println!("  compared with the plain spawn: gone {gone:?}, new {new:?}");
    }
    println!();
}

fn main() -> io::Result<()> {
    let table = FdTable::global();
    let log = table.track(File::open("/etc/hostname").or_else(|_| File::open("/dev/null"))?)?;
    let config = table.track(File::open("/dev/zero")?)?;
    let leaky = table.track(File::open("/dev/null")?)?;

    // `track` set FD_CLOEXEC; undo it on one descriptor, deliberately.
    // SAFETY: F_SETFD on a descriptor we own; 0 clears FD_CLOEXEC.
    if unsafe { libc::fcntl(leaky.as_raw_fd(), libc::F_SETFD, 0) } == -1 {
        return Err(io::Error::last_os_error());
    }
    println!(
        "tracked: log = {}, config = {}, leaky = {} (inheritable)\n",
        log.as_raw_fd(),
        config.as_raw_fd(),
        leaky.as_raw_fd()
    );

    // `ls` opens /proc/self/fd itself: that directory shows up too, at the
    // lowest free number.
    let plain = listing(&mut Command::new("ls"))?;
    show("plain spawn (leaky leaks)", &plain, &plain);

    let hooked = listing(Command::new("ls").close_tracked_fds(table))?;
    show("with close_tracked_fds", &hooked, &plain);

    let kept = listing(Command::new("ls").close_tracked_fds_except(table, &[config.as_raw_fd()]))?;
    show("with close_tracked_fds_except(config)", &kept, &plain);

    Ok(())
}
