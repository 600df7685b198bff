//! What spawning a program costs with `CommandExt` (issue 10, H11), against
//! a plain spawn and the two crates people use for the same jobs, in the
//! same run: `Command::status()` of `/bin/true`, the parent holding 100
//! tracked descriptors, in a small parent and in one with 1 GiB resident
//! (every page touched, so `fork` has page tables to copy).
//!
//! - `plain`: `Command::new("/bin/true").status()`, the baseline;
//! - `close_tracked_fds`: with `close_tracked_fds` (no hook: `posix_spawn`);
//! - `pass_fd_close_other_fds`: `pass_fd` of two descriptors (to 3 and 4)
//!   and `close_other_fds` (one hook: `fork`);
//! - `command_fds`: the `command-fds` crate's `fd_mappings` for the same two
//!   descriptors (its hook: `fork`);
//! - `close_fds`: a `pre_exec` hook calling the `close_fds` crate's
//!   `close_open_fds(3, &[the two])`, close-everything-except (`fork`).
//!
//! The last three all fork, so what they do in the child is all that
//! differs. Configuration (building the `Command`, duplicating descriptors)
//! is part of every measurement: users pay it on every spawn.
//!
//! ```text
//! cargo bench --bench spawn
//! python3 scripts/spawn_report.py     # the README's spawn table
//! ```
//!
//! Under `cargo test --benches` (criterion's test mode: each function runs
//! once) the ballast is 64 MiB instead of 1 GiB.

use std::fs::File;
use std::hint::black_box;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::process::CommandExt as _;
use std::process::Command;
use std::time::Duration;

use command_fds::{CommandFdExt, FdMapping};
use criterion::{criterion_group, criterion_main, Criterion};
use fdtable::{CommandExt, FdTable, Tracked};

static TABLE: FdTable = FdTable::new();

const PROGRAM: &str = "/bin/true";

fn run(cmd: &mut Command) {
    let status = cmd.status().expect("spawn /bin/true");
    assert!(status.success());
}

fn bench_group(c: &mut Criterion, name: &str, passed: &[File; 2]) {
    let mut group = c.benchmark_group(name);
    group.bench_function("plain", |b| b.iter(|| run(&mut Command::new(PROGRAM))));
    group.bench_function("close_tracked_fds", |b| {
        b.iter(|| run(Command::new(PROGRAM).close_tracked_fds(&TABLE)))
    });
    group.bench_function("pass_fd_close_other_fds", |b| {
        b.iter(|| {
            let mut cmd = Command::new(PROGRAM);
            cmd.pass_fd(passed[0].as_fd(), 3)
                .expect("pass_fd")
                .pass_fd(passed[1].as_fd(), 4)
                .expect("pass_fd")
                .close_other_fds();
            run(&mut cmd)
        })
    });
    group.bench_function("command_fds", |b| {
        b.iter(|| {
            let mappings = passed
                .iter()
                .zip([3, 4])
                .map(|(file, child_fd)| FdMapping {
                    parent_fd: file.as_fd().try_clone_to_owned().expect("dup"),
                    child_fd,
                })
                .collect();
            let mut cmd = Command::new(PROGRAM);
            cmd.fd_mappings(mappings).expect("fd_mappings");
            run(&mut cmd)
        })
    });
    group.bench_function("close_fds", |b| {
        let keep = [passed[0].as_raw_fd(), passed[1].as_raw_fd()];
        b.iter(|| {
            let mut cmd = Command::new(PROGRAM);
            // SAFETY: the close_fds crate documents its functions as
            // async-signal-safe on Linux; the hook runs in the fork child
            // only, and closing every descriptor but two there harms nothing
            // of the parent's (std's error socket goes too: fine for a
            // program that exists).
            unsafe {
                cmd.pre_exec(move || {
                    close_fds::close_open_fds(3, &keep);
                    Ok(())
                });
            }
            run(&mut cmd)
        })
    });
    group.finish();
}

/// `bytes` of heap with every page written, so it is resident.
fn ballast(bytes: usize) -> Vec<u8> {
    let mut v = vec![0u8; bytes];
    for page in v.chunks_mut(4096) {
        page[0] = 1;
    }
    black_box(v)
}

fn bench(c: &mut Criterion) {
    let tracked: Vec<Tracked<'static, File>> = (0..100)
        .map(|_| {
            TABLE
                .track(File::open("/dev/null").expect("open"))
                .expect("track")
        })
        .collect();
    let passed = [
        File::open("/dev/null").expect("open"),
        File::open("/dev/zero").expect("open"),
    ];
    bench_group(c, "spawn_small_parent", &passed);

    let real_run = std::env::args().any(|a| a == "--bench");
    let size = if real_run { 1 << 30 } else { 64 << 20 };
    let resident = ballast(size);
    bench_group(c, "spawn_1GiB_parent", &passed);
    drop(resident);
    drop(tracked);
}

criterion_group! {
    name = benches;
    // A forking spawn of a 1 GiB parent takes tens of milliseconds: keep
    // the sample count small and give each function a few seconds.
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    targets = bench
}
criterion_main!(benches);
