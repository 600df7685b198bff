//! What spawning a program costs with `CommandExt` (issues 10 and 17, H11),
//! against a plain spawn and the two crates people use for the same jobs, in
//! the same run: `Command::status()` of `/bin/true`, the parent holding
//! 10 000 tracked descriptors, in a small parent and in one with 1 GiB
//! resident (every page touched, so `fork` has page tables to copy).
//!
//! - `plain`: `Command::new("/bin/true").status()`, the baseline;
//! - `close_tracked_fds`: with `CommandExt::close_tracked_fds` (no hook:
//!   `posix_spawn`, no per-descriptor work);
//! - `pass_fd_close_other_fds`: a `ChildFds` with `pass_fd` of two
//!   descriptors (to 3 and 4) and `close_other_fds` (one hook: `fork`);
//! - `child_fds_close_tracked_fds`: a `ChildFds` that closes the 10 000
//!   tracked descriptors in the child (`close_range` runs; one hook);
//! - `command_fds`: the `command-fds` crate's `fd_mappings` for the same two
//!   descriptors (its hook: `fork`);
//! - `close_fds`: a `pre_exec` hook calling the `close_fds` crate's
//!   `close_open_fds(3, &[the two])`, close-everything-except (`fork`);
//! - `empty_pre_exec`: an empty `pre_exec` hook, the floor of any spawn
//!   that forks.
//!
//! The forking ones differ only in what they do in the child.
//! Configuration (building the `Command`, duplicating descriptors) is part
//! of every measurement: users pay it on every spawn.
//!
//! `configure/pass_fd_1000`: building a `ChildFds` with 1 000 `pass_fd`s
//! (one descriptor to the targets 3 000..3 999), its drop not counted.
//!
//! ```text
//! cargo bench --bench spawn
//! python3 scripts/spawn_report.py     # the spawn table of benches/README.md
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
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use fdtable::{ChildFds, CommandExt, FdTable, Tracked};

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
            let fds = ChildFds::new()
                .pass_fd(passed[0].as_fd(), 3)
                .expect("pass_fd")
                .pass_fd(passed[1].as_fd(), 4)
                .expect("pass_fd")
                .close_other_fds();
            run(Command::new(PROGRAM).child_fds(fds))
        })
    });
    group.bench_function("child_fds_close_tracked_fds", |b| {
        b.iter(|| run(Command::new(PROGRAM).child_fds(ChildFds::new().close_tracked_fds(&TABLE))))
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

/// How many descriptors the parent tracks.
const TRACKED: usize = 10_000;

/// Raise the soft `RLIMIT_NOFILE` to what the benches need (the hard limit
/// permitting), so 10 000 tracked descriptors and 1 000 passes fit.
fn raise_fd_limit(wanted: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid out pointer.
    assert_eq!(
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
        0
    );
    #[allow(clippy::unnecessary_cast)]
    let (cur, max) = (limit.rlim_cur as u64, limit.rlim_max as u64);
    if cur < wanted {
        assert!(max >= wanted, "RLIMIT_NOFILE hard limit {max} < {wanted}");
        limit.rlim_cur = wanted as libc::rlim_t;
        // SAFETY: valid pointer; raising the soft limit up to the hard one.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);
    }
}

/// Both parents, `TRACKED` tracked descriptors; group names end in `suffix`.
fn bench_parents<M: Measurement>(c: &mut Criterion<M>, suffix: &str) {
    raise_fd_limit(TRACKED as u64 + 5_000);
    let null = File::open("/dev/null").expect("open");
    let tracked: Vec<Tracked<'static, File>> = (0..TRACKED)
        .map(|_| TABLE.track(null.try_clone().expect("dup")).expect("track"))
        .collect();
    bench_configure(c, suffix);
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

/// Building a `ChildFds` of 1 000 `pass_fd`s; the drop (1 000 closes) is
/// left out of the measurement.
fn bench_configure<M: Measurement>(c: &mut Criterion<M>, suffix: &str) {
    let file = File::open("/dev/null").expect("open");
    let mut group = c.benchmark_group(format!("configure{suffix}"));
    group.throughput(Throughput::Elements(1_000));
    group.bench_function("pass_fd_1000", |b| {
        // One value alive at a time (1 000 descriptors each): dropped
        // after its iteration, outside the measurement.
        b.iter_batched(
            || (),
            |()| {
                let mut fds = ChildFds::new();
                for target in 3_000..4_000 {
                    fds = fds.pass_fd(file.as_fd(), target).expect("pass_fd");
                }
                fds
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
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
