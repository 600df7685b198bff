//! The syscall layer: every raw `libc` call of the crate, and every
//! difference between operating systems, in one place.
//!
//! The rest of the crate calls the functions re-exported here and never
//! `libc` directly (it uses `libc`'s types and constants as plain data), nor
//! asks which system it runs on. This module imports nothing of the crate.
//!
//! # How it is laid out
//! This file holds the `syscall!` macro (the one place where `-1` becomes an
//! [`io::Error`](std::io::Error)) and picks one module per platform family
//! at compile time, as mio picks its selector; every family module has the
//! same items (the pipe with close-on-exec ends, the close-on-exec swap over
//! a number, `close_range(2)` where it exists, the walk of open descriptor
//! numbers, what std's exec-error channel looks like, the sender of a
//! signal, where the C library keeps `environ`). What every Unix shares
//! sits beside them, and the POSIX-only versions that a family falls back
//! to are compiled, and unit-tested, on Linux too. The file map is
//! `docs/contributing.md`.
//!
//! What holds on which system, and which parts are only type-checked (not
//! run) by this project's CI, is in `docs/platforms.md`.
//!
//! # Async-signal-safety
//! Every function here is async-signal-safe unless its doc says otherwise:
//! a few raw syscalls, no allocation, no lock. Errors come from `errno`
//! through [`std::io::Error::last_os_error`], which reads `errno` and
//! allocates nothing.

/// Call a libc function and turn a `-1` return into `Err(last_os_error)`.
macro_rules! syscall {
    ($fn:ident ( $($arg:expr),* $(,)? )) => {{
        // SAFETY: each call site passes arguments that are valid for the
        // syscall (plain integers, or pointers to live locals); the macro
        // only adds the `-1` check.
        let res = unsafe { libc::$fn($($arg),*) };
        if res == -1 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(res)
        }
    }};
}

#[cfg(any(
    target_os = "linux",
    target_os = "android",
    target_os = "freebsd",
    target_os = "dragonfly",
    target_os = "netbsd",
    target_os = "openbsd",
    target_os = "illumos",
    target_os = "solaris"
))]
mod atomic_cloexec;
mod fd;
mod posix;
mod process;
mod signal;
mod sweep;

#[cfg_attr(any(target_os = "linux", target_os = "android"), path = "linux/mod.rs")]
#[cfg_attr(target_vendor = "apple", path = "apple.rs")]
#[cfg_attr(
    any(
        target_os = "freebsd",
        target_os = "dragonfly",
        target_os = "netbsd",
        target_os = "openbsd"
    ),
    path = "bsd.rs"
)]
#[cfg_attr(
    any(target_os = "illumos", target_os = "solaris"),
    path = "solarish.rs"
)]
#[cfg_attr(
    not(any(
        target_os = "linux",
        target_os = "android",
        target_vendor = "apple",
        target_os = "freebsd",
        target_os = "dragonfly",
        target_os = "netbsd",
        target_os = "openbsd",
        target_os = "illumos",
        target_os = "solaris"
    )),
    path = "other.rs"
)]
mod os;

pub(crate) use fd::*;
pub(crate) use os::{
    async_signal_set, close_range, close_range_cloexec, for_each_open_fd, is_exec_channel, pipe,
    probe_cloexec_range, probe_close_range, replace_with_placeholder, sender_pid,
    EXEC_CHANNEL_NAMES_SPAWNER,
};
pub(crate) use process::*;
pub(crate) use signal::*;

/// Write `n` in decimal into `out`, NUL-terminated, and return how many
/// digits that is; `out` must hold 11 bytes at least. For strings built in
/// a fork child (`/proc/self/fd/<n>`, `LISTEN_PID=<pid>`): no allocation,
/// no syscall. Async-signal-safe.
pub(crate) fn write_decimal(out: &mut [u8], mut n: u32) -> usize {
    let mut digits = [0u8; 10];
    let mut len = 0;
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for (slot, digit) in out.iter_mut().zip(digits[..len].iter().rev()) {
        *slot = *digit;
    }
    out[len] = 0;
    len
}
