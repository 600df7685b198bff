//! What a spawned program inherits, with and without `CommandExt`.
//!
//! Tracks three descriptors and makes one of them inheritable on purpose (as
//! a careless `fcntl` elsewhere in a program might), opens one more that is
//! not tracked and inheritable (as a C library or our own parent might leave
//! one), then runs `ls -l /proc/self/fd` four times: plain; with the
//! hook-free `close_tracked_fds` (no fork: it relies on `FD_CLOEXEC`, so the
//! descriptor made inheritable behind the table's back still leaks); with a
//! `ChildFds` that closes the table's descriptors in the child; and with a
//! `ChildFds` that passes the config file at descriptor 3 of the child and
//! nothing else. Prints each listing and what differs from the plain run.
//!
//! ```text
//! cargo run --example spawn_clean
//! ```

use std::collections::BTreeSet;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::process::Command;

use fdtable::{ChildFds, CommandExt, FdTable};

/// Where a process lists its own descriptors: `/proc/self/fd` on Linux,
/// whose `ls -l` shows each one's target; `/dev/fd` elsewhere (macOS, and
/// FreeBSD with `fdescfs` mounted), where `ls -l` shows numbers only.
const FD_DIR: &str = if cfg!(target_os = "linux") {
    "/proc/self/fd"
} else {
    "/dev/fd"
};

/// `ls -l` of [`FD_DIR`] in a child; one "N -> target" entry per descriptor
/// (just "N" where the listing shows no targets), ordered by number.
/// Targets that change from run to run (the stdout pipe, `ls`'s own
/// directory) are normalised so the runs compare.
fn listing(cmd: &mut Command) -> io::Result<Listing> {
    let out = cmd.arg("-l").arg(FD_DIR).output()?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            // "lr-x------ 1 user group 64 Jan  1 00:00 3 -> /dev/null"
            let Some(arrow) = line.find(" -> ") else {
                // "crw--w---- 1 user tty 16, 1 Jan  1 00:00 3": numbers only
                // (and "total 0", which is not an entry).
                if line.starts_with("total") {
                    return None;
                }
                let number: i32 = line.rsplit(' ').next()?.parse().ok()?;
                return Some((number, number.to_string()));
            };
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

/// Clear `FD_CLOEXEC`, deliberately: the descriptor leaks into children.
fn make_inheritable(fd: RawFd) -> io::Result<()> {
    // SAFETY: F_SETFD on a descriptor we own; 0 clears FD_CLOEXEC.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn main() -> io::Result<()> {
    let table = FdTable::global();
    let log = table.track(File::open("/etc/hostname").or_else(|_| File::open("/dev/null"))?)?;
    let config = table.track(File::open("/dev/zero")?)?;
    let leaky = table.track(File::open("/dev/null")?)?;
    // `track` set FD_CLOEXEC; undo it on one descriptor.
    make_inheritable(leaky.as_raw_fd())?;
    // Not tracked at all, and inheritable.
    let stray = File::open("/dev/urandom")?;
    make_inheritable(stray.as_raw_fd())?;
    println!(
        "tracked: log = {}, config = {}, leaky = {} (inheritable); \
         untracked: stray = {} (inheritable)\n",
        log.as_raw_fd(),
        config.as_raw_fd(),
        leaky.as_raw_fd(),
        stray.as_raw_fd()
    );

    // `ls` opens /proc/self/fd itself: that directory shows up too, at the
    // lowest free number.
    let plain = listing(&mut Command::new("ls"))?;
    show("plain spawn (leaky leaks)", &plain, &plain);

    // No hook, no fork (posix_spawn): tracked descriptors are close-on-exec,
    // so the program gets none of them, except `leaky`, whose flag was
    // cleared behind the table's back.
    let hook_free = listing(Command::new("ls").close_tracked_fds(table))?;
    show(
        "with close_tracked_fds (no hook: leaky still leaks)",
        &hook_free,
        &plain,
    );

    // The hook closes every number the table holds in the child, whatever
    // its flag.
    let closed = listing(Command::new("ls").child_fds(ChildFds::new().close_tracked_fds(table)))?;
    show(
        "with ChildFds::close_tracked_fds (one hook)",
        &closed,
        &plain,
    );

    // The config file at descriptor 3 of the child, whatever its number
    // here, and nothing else but stdio: not `stray`, not `leaky`.
    let fds = ChildFds::new()
        .pass_fd(config.as_fd(), 3)?
        .close_other_fds();
    let passed = listing(Command::new("ls").child_fds(fds))?;
    show(
        "with ChildFds: pass_fd(config, 3) + close_other_fds",
        &passed,
        &plain,
    );

    Ok(())
}
