//! Shared by the benches (included with `#[path]`, not a bench itself).
#![allow(dead_code)]

use std::hint::black_box;
use std::mem::MaybeUninit;
use std::time::{Duration, Instant};

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
    getrlimit(Resource::RLIMIT_NOFILE).map_or(hard, |(soft, _)| soft)
}
