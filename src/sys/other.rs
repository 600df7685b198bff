//! Any other Unix: POSIX calls only (`pipe` and `dup2` followed by
//! `fcntl`, a sweep up to the soft `RLIMIT_NOFILE`). Neither built nor
//! run by CI: see `docs/platforms.md`.

use std::ops::ControlFlow;
use std::os::fd::RawFd;

pub(crate) use super::posix::{
    close_range, close_range_cloexec, deaden, is_exec_channel, pipe, probe_cloexec_range,
    probe_close_range, replace_with_placeholder, sender_pid, EXEC_CHANNEL_NAMES_SPAWNER,
    ROOT_PROBE_FLAGS,
};
pub(crate) use super::process::portable_environ as environ;
pub(crate) use super::signal::portable_set::async_signal_set;
use super::{fd, posix, sweep};

/// Call `f` on every number below the soft `RLIMIT_NOFILE` (2^20 when it
/// is unlimited: a descriptor above that is not seen), open or not; `f`
/// must tolerate `EBADF`. Async-signal-safe and allocation-free when `f`
/// is.
///
/// # References
/// `getrlimit(2)`
pub(crate) fn for_each_open_fd(f: impl FnMut(RawFd) -> ControlFlow<()>) -> ControlFlow<()> {
    posix::for_each_fd_below(sweep::sweep_limit(fd::soft_fd_limit()), f)
}
