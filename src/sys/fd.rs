//! Descriptor calls that are the same on every Unix, and the dead
//! placeholder built on the platform's pipe.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::os;

/// `close(2)` once, never retried.
///
/// On Linux the descriptor is released even when `close` reports `EINTR` or
/// `EIO`; retrying would close a number the kernel may already have handed to
/// another thread. (POSIX leaves the state after `EINTR` unspecified; the
/// BSDs, macOS and illumos release the number too, so no system is retried.)
/// The error is reported so explicit closers can see it. Async-signal-safe.
///
/// # References
/// `close(2)`
pub(crate) fn close(fd: RawFd) -> io::Result<()> {
    syscall!(close(fd)).map(drop)
}

/// Set (`on`) or clear `FD_CLOEXEC` on `fd`, issuing `F_SETFD` only when the
/// flag is not already as wanted. The flag belongs to the descriptor, not the
/// open file description: clearing it in a fork child leaves the parent's
/// copy close-on-exec.
///
/// Fails with the OS error (`EBADF`) when `fd` is not open. Async-signal-safe.
///
/// # References
/// `fcntl(2)` (`F_GETFD`, `F_SETFD`)
pub(crate) fn set_cloexec(fd: RawFd, on: bool) -> io::Result<()> {
    let flags = syscall!(fcntl(fd, libc::F_GETFD))?;
    let wanted = if on {
        flags | libc::FD_CLOEXEC
    } else {
        flags & !libc::FD_CLOEXEC
    };
    if wanted != flags {
        syscall!(fcntl(fd, libc::F_SETFD, wanted))?;
    }
    Ok(())
}

/// Whether `fd` is close-on-exec; `None` when it is not open.
/// Async-signal-safe.
///
/// # References
/// `fcntl(2)` (`F_GETFD`)
pub(crate) fn is_cloexec(fd: RawFd) -> Option<bool> {
    let flags = syscall!(fcntl(fd, libc::F_GETFD)).ok()?;
    Some(flags & libc::FD_CLOEXEC != 0)
}

/// Whether `fd` is an open descriptor (`fcntl(F_GETFD)` succeeds).
/// Async-signal-safe.
///
/// # References
/// `fcntl(2)` (`F_GETFD`)
// The counted sweep's (FreeBSD) and the tests'.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) fn is_open(fd: RawFd) -> bool {
    syscall!(fcntl(fd, libc::F_GETFD)).is_ok()
}

/// `fcntl(fd, F_DUPFD_CLOEXEC, min)`: a close-on-exec duplicate of `fd` at
/// the lowest free number `>= min`. Never replaces an open descriptor.
///
/// Fails with `EINVAL` when `min` is not below `RLIMIT_NOFILE`, `EMFILE` at
/// the limit, `EBADF` when `fd` is not open. Async-signal-safe.
///
/// # References
/// `fcntl(2)` (`F_DUPFD_CLOEXEC`)
pub(crate) fn dup_at_least(fd: RawFd, min: RawFd) -> io::Result<RawFd> {
    syscall!(fcntl(fd, libc::F_DUPFD_CLOEXEC, min))
}

/// The lowest number that is not open, found by asking the kernel for a
/// duplicate at the lowest free number (of stdio, or failing that an open
/// of `/` with the platform's `ROOT_PROBE_FLAGS`: `O_PATH` on Linux) and
/// closing it at once. `None` when nothing can be opened (`EMFILE`).
/// Async-signal-safe.
///
/// # References
/// `fcntl(2)` (`F_DUPFD_CLOEXEC`), `open(2)` (`O_PATH`)
pub(crate) fn lowest_free_number() -> Option<RawFd> {
    let probe = [0, 1, 2]
        .into_iter()
        .find_map(|fd| dup_at_least(fd, 0).ok())
        .or_else(|| syscall!(open(c"/".as_ptr(), os::ROOT_PROBE_FLAGS)).ok())?;
    let _ = close(probe);
    Some(probe)
}

/// `dup2(source, target)`: `target` now names `source`'s open file, without
/// `FD_CLOEXEC`; whatever `target` named before is closed first (atomically).
/// `source != target` (with equal numbers `dup2` leaves the flag alone).
/// Async-signal-safe.
///
/// # References
/// `dup2(2)`
pub(crate) fn dup_onto(source: RawFd, target: RawFd) -> io::Result<()> {
    debug_assert_ne!(source, target);
    syscall!(dup2(source, target)).map(drop)
}

/// `fstat(2)` of `fd`; `None` when it fails (not open). Async-signal-safe.
///
/// # References
/// `fstat(2)`
pub(crate) fn stat(fd: RawFd) -> Option<libc::stat> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    syscall!(fstat(fd, st.as_mut_ptr())).ok()?;
    // SAFETY: `fstat` succeeded, so it initialised `st`.
    Some(unsafe { st.assume_init() })
}

/// The `(st_dev, st_ino)` of what `fd` names, or `None` when it is not open.
/// Async-signal-safe.
///
/// # References
/// `fstat(2)`
pub(crate) fn identity(fd: RawFd) -> Option<(u64, u64)> {
    let st = stat(fd)?;
    // The field types differ between targets (u32 / u64, signed on some).
    #[allow(clippy::unnecessary_cast)]
    Some((st.st_dev as u64, st.st_ino as u64))
}

/// Whether `fd` names a pipe or FIFO. Async-signal-safe.
///
/// # References
/// `fstat(2)`, `inode(7)`
pub(crate) fn is_fifo(fd: RawFd) -> bool {
    stat(fd).is_some_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFIFO)
}

/// Open a dead placeholder: a close-on-exec descriptor that resolves no path,
/// does no I/O and shares no inode with anything else, numbered 3 or above.
///
/// Everywhere it starts as the read end of a fresh pipe (both ends
/// close-on-exec, see the platform's `pipe`) whose write end is closed at
/// once. Then:
///
/// - Linux: reopened as an `O_PATH` descriptor of that pipe, through
///   `/proc/self/fd/<read end>`, and the read end closed.
///   `read`/`write` (and `ioctl`, `fchmod`, ...) fail with `EBADF`; path
///   lookups through it (`openat`, `mkdirat`, `unlinkat`, `fchdir`) fail
///   with `ENOTDIR`, since it is not a directory. The calls that do work on
///   an `O_PATH` descriptor (`fstat`, and `fchownat`/`fchmodat`/`utimensat`
///   with `AT_EMPTY_PATH`, reopening through `/proc/self/fd`) reach only
///   that private, nameless pipe inode: nothing shared with the rest of the
///   system (an `O_PATH` descriptor of `/dev/null` would let them change
///   the machine's `/dev/null`). Where `/proc/self/fd` cannot be opened (no
///   `/proc`, or another pid namespace's), the read end stays.
/// - Elsewhere (no `O_PATH`, no `/proc`): the read end stays. Reads see
///   end-of-file instead of `EBADF`; writes fail with `EBADF` (not open for
///   writing), lookups with `ENOTDIR`. It still names only that private
///   pipe, which nothing else can reach.
///
/// A number below 3 is moved up (`F_DUPFD_CLOEXEC`): a process started with
/// stdio closed must not find the placeholder as its stdin, nor lose the
/// number 0-2 that a later `open` was meant to get.
///
/// Async-signal-safe (a few syscalls, the path built on the stack, no
/// allocation).
///
/// # References
/// `pipe(2)`, `open(2)` (`O_PATH`), `proc(5)` (`/proc/pid/fd`), `fcntl(2)`
/// (`F_DUPFD_CLOEXEC`)
pub(crate) fn open_placeholder() -> io::Result<OwnedFd> {
    let (read, write) = os::pipe(false)?;
    drop(write);
    let fd = os::deaden(read);
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    let moved = dup_at_least(fd.as_raw_fd(), 3)?;
    // SAFETY: `fcntl` just returned this new descriptor; the low one closes
    // when `fd` drops.
    Ok(unsafe { OwnedFd::from_raw_fd(moved) })
}

/// The identity tag of a dead placeholder made by [`open_placeholder`], read
/// right after opening it: the low 32 bits of its inode number (never 0),
/// or `None` if `fd` does not look like one (not a pipe opened read-only or
/// `O_PATH`) or cannot be examined. [`is_placeholder`] compares with it.
///
/// Async-signal-safe (`fstat`, `fcntl`).
///
/// # References
/// `fstat(2)`, `fcntl(2)` (`F_GETFL`)
pub(crate) fn placeholder_tag(fd: RawFd) -> Option<u32> {
    let st = stat(fd)?;
    let flags = syscall!(fcntl(fd, libc::F_GETFL)).ok()?;
    // An `O_PATH` descriptor reports the `O_RDONLY` access mode too.
    let dead =
        st.st_mode & libc::S_IFMT == libc::S_IFIFO && flags & libc::O_ACCMODE == libc::O_RDONLY;
    // Pipe inode numbers are 32-bit on Linux (`get_next_ino`); elsewhere the
    // low half is a tag, not an identity. 0 is kept for "unchecked".
    #[allow(clippy::unnecessary_cast)]
    dead.then_some((st.st_ino as u64 as u32).max(1))
}

/// Whether `fd` is still the placeholder whose [`placeholder_tag`] was
/// `tag`: a number that other code closed and reopened, or `dup2`ed over,
/// fails the check (short of a read-only pipe with the same inode tag).
///
/// Async-signal-safe (`fstat`, `fcntl`).
///
/// # References
/// `fstat(2)`, `fcntl(2)` (`F_GETFL`)
pub(crate) fn is_placeholder(fd: RawFd, tag: u32) -> bool {
    placeholder_tag(fd) == Some(tag)
}

/// The soft `RLIMIT_NOFILE`: one more than the highest number `dup2`,
/// `dup3` and `open` may hand out or target. `None` when unlimited or
/// unknown (macOS and the BSDs allow an unlimited soft limit; the kernel
/// then caps descriptors at its own per-process maximum).
///
/// Async-signal-safe.
///
/// # References
/// `getrlimit(2)`, `dup(2)` (`EBADF`)
pub(crate) fn soft_fd_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    syscall!(getrlimit(libc::RLIMIT_NOFILE, &mut limit)).ok()?;
    // `rlim_t` is `u64` on most targets and `i64` on FreeBSD and DragonFly,
    // whose `RLIM_INFINITY` is `i64::MAX`: never negative either way.
    #[allow(clippy::unnecessary_cast)]
    (limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur as u64)
}

/// `shutdown(SHUT_RDWR)`, so threads blocked in `read`/`accept` on the
/// socket wake up. On anything but a socket it fails at once (`ENOTSOCK`)
/// and changes nothing, so it doubles as the probe for descriptors of
/// unknown kind; `ENOTCONN` means there was no connection to end.
/// Async-signal-safe.
///
/// # References
/// `shutdown(2)`
pub(crate) fn shutdown(fd: RawFd) -> io::Result<()> {
    syscall!(shutdown(fd, libc::SHUT_RDWR)).map(drop)
}

/// `poll(2)` on `fds` for up to `timeout_ms` milliseconds (-1: no limit):
/// how many have events. Blocks; `EINTR` is the caller's to retry.
/// Async-signal-safe (POSIX lists `poll`), though a handler should not block.
///
/// # References
/// `poll(2)`
pub(crate) fn poll(fds: &mut [libc::pollfd], timeout_ms: libc::c_int) -> io::Result<usize> {
    // At most a handful of entries: the count fits any `nfds_t`.
    let n = fds.len() as libc::nfds_t;
    let ready = syscall!(poll(fds.as_mut_ptr(), n, timeout_ms))?;
    Ok(ready as usize)
}

/// `read(2)` into `buf`: the number of bytes read, 0 at end-of-file.
/// Async-signal-safe.
///
/// # References
/// `read(2)`
pub(crate) fn read(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    let n = syscall!(read(fd, buf.as_mut_ptr().cast(), buf.len()))?;
    Ok(n as usize)
}

/// `write(2)` of `buf`: the number of bytes written. Async-signal-safe.
///
/// # References
/// `write(2)`
pub(crate) fn write(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    let n = syscall!(write(fd, buf.as_ptr().cast(), buf.len()))?;
    Ok(n as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::IntoRawFd;

    /// Whether the kernel has `close_range(2)` is asked without closing
    /// anything, and the answer agrees with a real call on a scratch
    /// descriptor (on systems without the syscall: "no", and the call
    /// fails with `ENOSYS`).
    #[test]
    fn close_range_probe_closes_nothing_and_agrees_with_the_kernel() {
        let (r, w) = std::os::unix::net::UnixStream::pair().unwrap();
        let supported = os::probe_close_range();
        assert!(is_open(r.as_raw_fd()), "the probe closed something");
        assert!(is_open(w.as_raw_fd()), "the probe closed something");
        // Ask the kernel for real, on a scratch descriptor of our own.
        let scratch = std::fs::File::open("/dev/null").unwrap().into_raw_fd();
        match os::close_range(scratch, scratch) {
            Ok(()) => {
                assert!(supported, "close_range works but the probe said no");
                assert!(!is_open(scratch));
            }
            Err(e) => {
                assert!(!supported, "the probe said yes but close_range failed: {e}");
                eprintln!("close_range unavailable here ({e}); the fallback is in use");
                close(scratch).unwrap();
            }
        }
    }

    /// The platform's walk sees this process's descriptors, ascending, and
    /// stops when told to.
    #[test]
    fn the_walk_lists_open_descriptors_in_order_and_stops() {
        let file = std::fs::File::open("/dev/null").unwrap();
        let n = file.as_raw_fd();
        let mut seen = Vec::new();
        let flow = os::for_each_open_fd(|fd| {
            seen.push(fd);
            if fd == n {
                std::ops::ControlFlow::Break(())
            } else {
                std::ops::ControlFlow::Continue(())
            }
        });
        assert!(flow.is_break(), "{n} not listed: {seen:?}");
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    }

    /// The placeholder is a read-only pipe (or `O_PATH` of one), numbered
    /// above stdio, close-on-exec, recognised by its own tag.
    #[test]
    fn the_placeholder_is_a_dead_close_on_exec_pipe_above_stdio() {
        let fd = open_placeholder().unwrap();
        let raw = fd.as_raw_fd();
        assert!(raw > 2);
        assert_eq!(is_cloexec(raw), Some(true));
        assert!(is_fifo(raw));
        let tag = placeholder_tag(raw).expect("a placeholder has a tag");
        assert!(is_placeholder(raw, tag));
        assert_eq!(
            write(raw, b"x").unwrap_err().raw_os_error(),
            Some(libc::EBADF)
        );
    }
}
