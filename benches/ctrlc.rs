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
//! ```text
//! cargo bench --bench ctrlc -- --warm-up-time 1 --measurement-time 3
//! ```
//! Medians are in `target/criterion/signal_to_event/*/new/estimates.json`.

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
    // SAFETY: pipe2 writes two descriptors into the array.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) };
    assert_eq!(rc, 0, "pipe2");
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

criterion_group!(benches, signal_to_event);
criterion_main!(benches);
