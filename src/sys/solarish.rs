//! illumos and Solaris: `pipe2` and `dup3` (so no close-on-exec windows),
//! no `close_range`. Open descriptors are swept up to the soft
//! `RLIMIT_NOFILE`: the crate does not read `/proc/self/fd` here (its
//! records need `getdents`, which the `libc` crate does not bind).
//!
//! Type-checked by CI for `x86_64-unknown-illumos`, never run there: see
//! `docs/platforms.md`.

use std::ops::ControlFlow;
use std::os::fd::RawFd;

pub(crate) use super::atomic_cloexec::{pipe, replace_with_placeholder};
pub(crate) use super::posix::{
    close_range, close_range_cloexec, deaden, is_exec_channel, probe_cloexec_range,
    probe_close_range, sender_pid, EXEC_CHANNEL_NAMES_SPAWNER, ROOT_PROBE_FLAGS,
};
pub(crate) use super::process::portable_environ as environ;
pub(crate) use super::signal::portable_set::async_signal_set;
use super::{fd, posix, sweep};

/// Call `f` on every number below the soft `RLIMIT_NOFILE` (2^20 when it
/// is unlimited: a descriptor above that is not seen), open or not; `f`
/// must tolerate `EBADF`. Bounded by the limit, not by what is open.
/// Async-signal-safe and allocation-free when `f` is.
///
/// # References
/// `getrlimit(2)`
pub(crate) fn for_each_open_fd(f: impl FnMut(RawFd) -> ControlFlow<()>) -> ControlFlow<()> {
    posix::for_each_fd_below(sweep::sweep_limit(fd::soft_fd_limit()), f)
}
