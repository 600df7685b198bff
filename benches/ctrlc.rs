//! Signal → readable event latency: `Interrupts` against a bare signal-hook
//! self-pipe (`signal_hook::low_level::pipe::register`), in the same run.
//!
//! Each iteration raises the signal at the current thread (delivered
//! synchronously, so the handler has run when `raise` returns), polls the
//! read end for readability, and consumes the event: `try_recv` for
//! `Interrupts` (drain + count), one `read` for the bare pipe. The difference
//! is what `Interrupts` adds: the fallback action's policy decision (pid,
//! one record load), the instance's pid check and atomic count, and the
//! drain loop with its `errno` save.
//!
//! With the `tokio` feature, a second group, `signal_to_task`, measures
//! signal → awakened tokio task: a task on a one-worker multi-thread
//! runtime waits for the signal and acknowledges it over a channel; each
//! round raises the signal at the bench thread (so the handler has run
//! when `raise` returns) and waits for the acknowledgement. The two
//! variants' rounds alternate, each timing only its own.
//! `async_interrupts` waits in [`AsyncInterrupts::recv`] (the handler's byte
//! wakes the task's `AsyncFd` on the self-pipe); `tokio_signal` waits in
//! `tokio::signal::unix::Signal::recv` (the handler's byte wakes tokio's
//! signal driver, which then notifies the task), the baseline. The group
//! runs pinned to one CPU (see `PinnedToOneCpu`).
//!
//! ```text
//! cargo bench --bench ctrlc -- --warm-up-time 1 --measurement-time 3
//! cargo bench --features tokio --bench ctrlc -- signal_to_task
//! ```
//! Medians are in `target/criterion/<group>/*/new/estimates.json`.

use std::hint::black_box;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use criterion::{criterion_group, criterion_main, Criterion};
use fdtable::{Interrupts, Signal};

fn raise(sig: libc::c_int) {
    // SAFETY: a handler is registered for `sig` before every call.
    unsafe { libc::raise(sig) };
}

fn poll_readable(fd: RawFd) {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd. The byte is already there, so this returns
    // at once; the timeout only bounds a broken run.
    let ready = unsafe { libc::poll(&mut pfd, 1, 10_000) };
    assert_eq!(ready, 1, "no event within 10 s");
}

fn bare_pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [-1; 2];
    #[cfg(not(target_vendor = "apple"))]
    {
        // SAFETY: pipe2 writes two descriptors into the array.
        let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) };
        assert_eq!(rc, 0, "pipe2");
    }
    // No `pipe2` on Apple systems: `pipe`, then the flags.
    #[cfg(target_vendor = "apple")]
    // SAFETY: pipe writes two descriptors into the array; fcntl sets flags
    // on them.
    unsafe {
        assert_eq!(libc::pipe(fds.as_mut_ptr()), 0, "pipe");
        for fd in fds {
            assert_eq!(libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC), 0);
            assert_eq!(libc::fcntl(fd, libc::F_SETFL, libc::O_NONBLOCK), 0);
        }
    }
    // SAFETY: fresh descriptors that we own.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

fn signal_to_event(c: &mut Criterion) {
    let mut group = c.benchmark_group("signal_to_event");

    let interrupts = Interrupts::builder(Signal::User1)
        .respect_ignored(false)
        .second_signal_kills(false)
        .install()
        .expect("install Interrupts");
    group.bench_function("interrupts", |b| {
        b.iter(|| {
            raise(libc::SIGUSR1);
            poll_readable(interrupts.as_raw_fd());
            black_box(interrupts.try_recv().expect("event"))
        })
    });

    let (read, write) = bare_pipe();
    let id = signal_hook::low_level::pipe::register(libc::SIGUSR2, write).expect("register pipe");
    group.bench_function("bare_signal_hook_pipe", |b| {
        b.iter(|| {
            raise(libc::SIGUSR2);
            poll_readable(read.as_raw_fd());
            let mut byte = 0u8;
            // SAFETY: reads one byte into a local from a descriptor we own.
            let n = unsafe { libc::read(read.as_raw_fd(), (&mut byte as *mut u8).cast(), 1) };
            black_box(n)
        })
    });
    signal_hook::low_level::unregister(id);
    group.finish();
}

/// Signal → awakened task, `AsyncInterrupts` against `tokio::signal::unix`
/// on the same runtime, in the same run.
#[cfg(feature = "tokio")]
fn signal_to_task(c: &mut Criterion) {
    use fdtable::AsyncInterrupts;
    use std::sync::mpsc;
    use tokio::signal::unix::{signal, SignalKind};

    // One CPU for the bench thread and the worker (which inherits it): on a
    // shared VM a wake-up across CPUs takes either ~10 µs or ~45 µs from
    // one run to the next, for both variants alike, which drowns what this
    // compares. On one CPU both take the same path every time.
    let pinned = PinnedToOneCpu::new();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("signal_to_task");

    // Each waiting task acknowledges its wake-ups on a channel the bench
    // thread blocks on, so one round is: raise, handler, wake-up, task,
    // acknowledgement. Both tasks wait on the same runtime at once.
    let (ack, ours) = mpsc::sync_channel::<u64>(1);
    let interrupts = Interrupts::builder(Signal::User1)
        .respect_ignored(false)
        .second_signal_kills(false)
        .install()
        .expect("install Interrupts");
    let interrupts = {
        let _enter = runtime.enter();
        AsyncInterrupts::new(interrupts).expect("register with tokio")
    };
    let our_waiter = runtime.spawn(async move {
        while let Ok(got) = interrupts.recv().await {
            if ack.send(got.count()).is_err() {
                break;
            }
        }
    });
    let (ack, theirs) = mpsc::sync_channel::<u64>(1);
    let mut stream = {
        let _enter = runtime.enter();
        signal(SignalKind::user_defined2()).expect("tokio signal")
    };
    let their_waiter = runtime.spawn(async move {
        while stream.recv().await.is_some() {
            if ack.send(1).is_err() {
                break;
            }
        }
    });
    let round_ours = || {
        raise(libc::SIGUSR1);
        black_box(ours.recv().expect("ack"))
    };
    let round_theirs = || {
        raise(libc::SIGUSR2);
        black_box(theirs.recv().expect("ack"))
    };

    // Interleaved: every timed round of one variant is followed by an
    // untimed round of the other, so a noisy neighbour taking the CPU for a
    // while slows both alike instead of whichever ran at that moment.
    group.bench_function("async_interrupts", |b| {
        b.iter_custom(|iters| interleaved(iters, &round_ours, &round_theirs))
    });
    group.bench_function("tokio_signal", |b| {
        b.iter_custom(|iters| interleaved(iters, &round_theirs, &round_ours))
    });
    our_waiter.abort();
    their_waiter.abort();
    group.finish();
    drop(runtime);
    drop(pinned);
}

/// `iters` rounds of `timed`, each followed by an untimed round of `other`;
/// the time spent in `timed`.
#[cfg(feature = "tokio")]
fn interleaved(
    iters: u64,
    timed: &impl Fn() -> u64,
    other: &impl Fn() -> u64,
) -> std::time::Duration {
    let mut total = std::time::Duration::ZERO;
    for _ in 0..iters {
        let start = std::time::Instant::now();
        timed();
        total += start.elapsed();
        other();
    }
    total
}

/// The calling thread's CPU affinity narrowed to the CPU it runs on, until
/// dropped (threads it creates meanwhile keep the narrow one). Linux only
/// (`sched_setaffinity`); elsewhere it pins nothing.
#[cfg(all(feature = "tokio", target_os = "linux"))]
struct PinnedToOneCpu(libc::cpu_set_t);

/// See the Linux version: nothing is pinned here.
#[cfg(all(feature = "tokio", not(target_os = "linux")))]
struct PinnedToOneCpu;

#[cfg(all(feature = "tokio", not(target_os = "linux")))]
impl PinnedToOneCpu {
    fn new() -> PinnedToOneCpu {
        PinnedToOneCpu
    }
}

#[cfg(all(feature = "tokio", target_os = "linux"))]
impl PinnedToOneCpu {
    fn new() -> PinnedToOneCpu {
        let size = std::mem::size_of::<libc::cpu_set_t>();
        // SAFETY: zeroed `cpu_set_t`s are valid empty sets; every pointer is
        // to a local of the size passed; pid 0 is the calling thread.
        unsafe {
            let mut old: libc::cpu_set_t = std::mem::zeroed();
            assert_eq!(
                libc::sched_getaffinity(0, size, &mut old),
                0,
                "sched_getaffinity"
            );
            let cpu = libc::sched_getcpu();
            assert!(cpu >= 0, "sched_getcpu");
            let mut one: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu as usize, &mut one);
            assert_eq!(
                libc::sched_setaffinity(0, size, &one),
                0,
                "sched_setaffinity"
            );
            PinnedToOneCpu(old)
        }
    }
}

#[cfg(all(feature = "tokio", target_os = "linux"))]
impl Drop for PinnedToOneCpu {
    fn drop(&mut self) {
        // SAFETY: restores the set saved in `new` for the calling thread.
        unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &self.0) };
    }
}

#[cfg(not(feature = "tokio"))]
fn signal_to_task(_: &mut Criterion) {}

criterion_group!(benches, signal_to_event, signal_to_task);
criterion_main!(benches);
