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
//!   `close_open_fds(3, &[the two])`, close-everything-except (`fork`);
//! - `empty_pre_exec`: an empty `pre_exec` hook, the floor of any spawn
//!   that forks.
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
//! Each group is measured twice: in wall-clock time (`spawn_*`), and in CPU
//! time (`spawn_*_cpu`: user + system time of this process and of its
//! reaped children, from `getrusage`), which other processes competing for
//! the cores barely disturb: the ratio to trust on a shared, busy machine.
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
use criterion::measurement::{Measurement, ValueFormatter};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fdtable::{CommandExt, FdTable, Tracked};

static TABLE: FdTable = FdTable::new();

const PROGRAM: &str = "/bin/true";

fn run(cmd: &mut Command) {
    let status = cmd.status().expect("spawn /bin/true");
    assert!(status.success());
}

fn bench_group<M: Measurement>(c: &mut Criterion<M>, name: &str, passed: &[File; 2]) {
    let mut group = c.benchmark_group(name);
    group.bench_function("plain", |b| b.iter(|| run(&mut Command::new(PROGRAM))));
    group.bench_function("close_tracked_fds", |b| {
        b.iter(|| run(Command::new(PROGRAM).close_tracked_fds(&TABLE)))
    });
    // The floor of every spawn with a hook: std forks, the hook does
    // nothing. First of the forking functions on purpose: whichever comes
    // first after the non-forking ones measures about 5 % slower (seen with
    // each of the others placed first), so the floor takes that place.
    group.bench_function("empty_pre_exec", |b| {
        b.iter(|| {
            let mut cmd = Command::new(PROGRAM);
            // SAFETY: an empty hook: it only makes std fork.
            unsafe { cmd.pre_exec(|| Ok(())) };
            run(&mut cmd)
        })
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

/// Both parents, 100 tracked descriptors; group names end in `suffix`.
fn bench_parents<M: Measurement>(c: &mut Criterion<M>, suffix: &str) {
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
    bench_group(c, &format!("spawn_small_parent{suffix}"), &passed);

    let real_run = std::env::args().any(|a| a == "--bench");
    let size = if real_run { 1 << 30 } else { 64 << 20 };
    let resident = ballast(size);
    bench_group(c, &format!("spawn_1GiB_parent{suffix}"), &passed);
    drop(resident);
    drop(tracked);
}

fn bench_wall(c: &mut Criterion) {
    bench_parents(c, "");
}

fn bench_cpu(c: &mut Criterion<CpuTime>) {
    bench_parents(c, "_cpu");
}

/// CPU time used by this process and its reaped children (user + system),
/// as criterion measures it in the `_cpu` groups.
struct CpuTime;

fn cpu_now() -> Duration {
    let of = |who| {
        // SAFETY: all-zero rusage is valid; getrusage fills it.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: valid out pointer.
        assert_eq!(unsafe { libc::getrusage(who, &mut usage) }, 0);
        let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
        tv(usage.ru_utime) + tv(usage.ru_stime)
    };
    of(libc::RUSAGE_SELF) + of(libc::RUSAGE_CHILDREN)
}

impl Measurement for CpuTime {
    type Intermediate = Duration;
    type Value = Duration;
    fn start(&self) -> Duration {
        cpu_now()
    }
    fn end(&self, start: Duration) -> Duration {
        cpu_now().saturating_sub(start)
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, value: &Duration) -> f64 {
        value.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &CpuTimeFormatter
    }
}

/// Nanoseconds of CPU time, scaled like wall time.
struct CpuTimeFormatter;

impl ValueFormatter for CpuTimeFormatter {
    fn scale_values(&self, typical: f64, values: &mut [f64]) -> &'static str {
        let (factor, unit) = match typical {
            t if t < 1e3 => (1.0, "ns cpu"),
            t if t < 1e6 => (1e-3, "µs cpu"),
            t if t < 1e9 => (1e-6, "ms cpu"),
            _ => (1e-9, "s cpu"),
        };
        for v in values.iter_mut() {
            *v *= factor;
        }
        unit
    }
    fn scale_throughputs(
        &self,
        _: f64,
        throughput: &Throughput,
        values: &mut [f64],
    ) -> &'static str {
        // Elements (or bytes) per CPU second.
        let per = match *throughput {
            Throughput::Bytes(n) | Throughput::BytesDecimal(n) | Throughput::Elements(n) => {
                n as f64
            }
        };
        for v in values.iter_mut() {
            *v = per * 1e9 / *v;
        }
        "/cpu s"
    }
    fn scale_for_machines(&self, _: &mut [f64]) -> &'static str {
        "ns"
    }
}

criterion_group! {
    name = wall;
    // A forking spawn of a 1 GiB parent takes tens of milliseconds: keep
    // the sample count small and give each function a few seconds.
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    targets = bench_wall
}
criterion_group! {
    name = cpu;
    config = Criterion::default()
        .with_measurement(CpuTime)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    targets = bench_cpu
}
criterion_main!(wall, cpu);
