//! Shared by the benches (included with `#[path]`, not a bench itself).
#![allow(dead_code)]

use std::fs::File;
use std::hint::black_box;
use std::mem::MaybeUninit;
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::BenchmarkGroup;
use fdtable::FdTable;

/// The asynchronous signal set, as `fdtable::MaskGuard` blocks it.
pub fn mask_set() -> libc::sigset_t {
    let mut set = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigfillset initialises the set; sigdelset edits it.
    unsafe {
        libc::sigfillset(set.as_mut_ptr());
        for sig in [
            libc::SIGSEGV,
            libc::SIGBUS,
            libc::SIGFPE,
            libc::SIGILL,
            libc::SIGTRAP,
            libc::SIGSYS,
        ] {
            libc::sigdelset(set.as_mut_ptr(), sig);
        }
        set.assume_init()
    }
}

/// A bare `pthread_sigmask` block/restore pair: the baseline mask cost.
pub struct MaskPair(MaybeUninit<libc::sigset_t>);

impl MaskPair {
    pub fn block(set: &libc::sigset_t) -> MaskPair {
        let mut old = MaybeUninit::uninit();
        // SAFETY: valid set; `old` is written by the call.
        unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, set, old.as_mut_ptr()) };
        MaskPair(old)
    }
}

impl Drop for MaskPair {
    fn drop(&mut self) {
        // SAFETY: `block` initialised the saved mask.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, self.0.as_ptr(), std::ptr::null_mut()) };
    }
}

/// Time `close` over `iters` values made by `setup`, in batches small enough
/// to stay far below RLIMIT_NOFILE; only the closes are timed.
pub fn timed_batches<T>(
    iters: u64,
    mut setup: impl FnMut() -> T,
    mut close: impl FnMut(T),
) -> Duration {
    const BATCH: u64 = 512;
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(BATCH);
        let inputs: Vec<T> = (0..n).map(|_| setup()).collect();
        let start = Instant::now();
        for input in inputs {
            close(black_box(input));
        }
        total += start.elapsed();
        left -= n;
    }
    total
}

/// Raise RLIMIT_NOFILE to at least 65 536 when allowed (root may raise the
/// hard limit), else the soft limit to the hard one. Returns the soft limit.
pub fn raise_nofile() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    let want = hard.max(65_536);
    if setrlimit(Resource::RLIMIT_NOFILE, want, want).is_err() {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
    let soft = getrlimit(Resource::RLIMIT_NOFILE).map_or(hard, |(soft, _)| soft);
    // `rlim_t` is `i64` on FreeBSD (never negative), `u64` elsewhere.
    #[allow(clippy::useless_conversion)]
    u64::try_from(soft).unwrap_or(u64::MAX)
}

/// Place a close-on-exec duplicate of `fd` at exactly `n`, which the
/// caller knows is free: `dup3(fd, n, O_CLOEXEC)`, or on Apple systems (no
/// `dup3`) `fcntl(fd, F_DUPFD_CLOEXEC, n)`, which lands at `n` because it
/// is free. Returns what the call returned (`n`, or -1 with `errno`).
/// Async-signal-safe.
pub fn dup_cloexec_at(fd: RawFd, n: RawFd) -> libc::c_int {
    #[cfg(not(target_vendor = "apple"))]
    {
        // SAFETY: duplicates a descriptor the caller owns onto a number it
        // knows is free.
        unsafe { libc::dup3(fd, n, libc::O_CLOEXEC) }
    }
    #[cfg(target_vendor = "apple")]
    {
        // SAFETY: as above; never replaces an open descriptor.
        unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, n) }
    }
}

/// A fresh `/dev/null` descriptor (setup).
pub fn null_fd() -> RawFd {
    File::open("/dev/null")
        .expect("open /dev/null")
        .into_raw_fd()
}

/// One end of a fresh pipe; the other end is closed at once (setup).
pub fn pipe_fd() -> RawFd {
    let (r, w) = nix::unistd::pipe().expect("pipe");
    drop(r);
    w.into_raw_fd()
}

/// Makes a fresh descriptor for a close bench (setup, not timed).
pub type MakeFd = fn() -> RawFd;

/// The descriptor kinds the close benches run over, with their makers.
pub const FD_KINDS: [(&str, MakeFd); 2] = [("dev_null", null_fd), ("pipe", pipe_fd)];

/// `bare_close`: `close(2)` on descriptors made by `make`, the floor.
pub fn bench_bare_close(group: &mut BenchmarkGroup<'_, WallTime>, make: MakeFd) {
    group.bench_function("bare_close", |b| {
        b.iter_custom(|iters| {
            timed_batches(iters, make, |fd| {
                // SAFETY: the setup handed us this descriptor.
                unsafe { libc::close(fd) };
            })
        })
    });
}

/// `tracked_drop`: dropping a `Tracked` of `table` around a descriptor made
/// by `make`.
pub fn bench_tracked_drop(
    group: &mut BenchmarkGroup<'_, WallTime>,
    table: &'static FdTable,
    make: MakeFd,
) {
    group.bench_function("tracked_drop", |b| {
        b.iter_custom(|iters| {
            timed_batches(
                iters,
                // SAFETY: the setup handed us this descriptor.
                || {
                    table
                        .track(unsafe { OwnedFd::from_raw_fd(make()) })
                        .expect("track")
                },
                drop,
            )
        })
    });
}
