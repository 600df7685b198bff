//! Thin syscall wrappers: one place where `-1` becomes an `io::Error`.
//!
//! Every function here is async-signal-safe unless its doc says otherwise: each
//! is one or two raw syscalls, no allocation, no lock. Errors come from `errno`
//! through [`std::io::Error::last_os_error`], which reads `errno` and allocates
//! nothing.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

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
pub(crate) use syscall;

/// `close(2)` once, never retried.
///
/// On Linux the descriptor is released even when `close` reports `EINTR` or
/// `EIO`; retrying would close a number the kernel may already have handed to
/// another thread. The error is reported so explicit closers can see it.
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

/// Whether `fd` is an open descriptor (`fcntl(F_GETFD)` succeeds).
/// Async-signal-safe.
#[cfg(test)]
pub(crate) fn is_open(fd: RawFd) -> bool {
    syscall!(fcntl(fd, libc::F_GETFD)).is_ok()
}

/// Open a dead placeholder: a close-on-exec descriptor that resolves no path,
/// does no I/O and shares no inode with anything else, numbered 3 or above.
///
/// Linux: an `O_PATH` descriptor of a pipe of its own, made by opening
/// `/proc/self/fd/<read end>` with `O_PATH` and closing both pipe ends.
/// `read`/`write` (and `ioctl`, `fchmod`, ...) fail with `EBADF`; path
/// lookups through it (`openat`, `mkdirat`, `unlinkat`, `fchdir`) fail with
/// `ENOTDIR`, since it is not a directory. The calls that do work on an
/// `O_PATH` descriptor (`fstat`, and `fchownat`/`fchmodat`/`utimensat` with
/// `AT_EMPTY_PATH`, reopening through `/proc/self/fd`) reach only that
/// private, nameless pipe inode: nothing shared with the rest of the system
/// (an `O_PATH` descriptor of `/dev/null` would let them change the
/// machine's `/dev/null`). Where `/proc/self/fd` cannot be opened (no
/// `/proc`, or another pid namespace's), and on other systems: the read end
/// of a pipe whose write end is closed (reads see end-of-file instead of
/// `EBADF`; writes fail with `EBADF`, lookups with `ENOTDIR`).
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
    let mut fds = [-1 as libc::c_int; 2];
    #[cfg(any(target_os = "linux", target_os = "android"))]
    syscall!(pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC))?;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    syscall!(pipe(fds.as_mut_ptr()))?;
    // SAFETY: `pipe` just returned both descriptors; we own them.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(write);
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let fd = {
        let path = ProcFdPath::new(read.as_raw_fd());
        match syscall!(open(path.as_ptr(), libc::O_PATH | libc::O_CLOEXEC)) {
            Ok(fd) => {
                // SAFETY: `open` just returned this descriptor; nothing else
                // owns it.
                let opened = unsafe { OwnedFd::from_raw_fd(fd) };
                // The same pipe, or code that does not own our read end's
                // number closed and reused it: then keep the read end.
                if same_inode(opened.as_raw_fd(), read.as_raw_fd()) {
                    // `read` closes here: the pipe keeps no end open.
                    opened
                } else {
                    read
                }
            }
            Err(_) => read,
        }
    };
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let fd = {
        set_cloexec(read.as_raw_fd(), true)?;
        read
    };
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    let moved = syscall!(fcntl(
        fd.as_raw_fd(),
        libc::F_DUPFD_CLOEXEC,
        3 as libc::c_int
    ))?;
    // SAFETY: `fcntl` just returned this new descriptor; the low one closes
    // when `fd` drops.
    Ok(unsafe { OwnedFd::from_raw_fd(moved) })
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

/// Whether `a` and `b` name the same inode (`fstat` of both succeeds and
/// agrees). Async-signal-safe.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn same_inode(a: RawFd, b: RawFd) -> bool {
    let id = |fd| stat(fd).map(|st| (st.st_dev, st.st_ino));
    matches!((id(a), id(b)), (Some(x), Some(y)) if x == y)
}

/// `/proc/self/fd/<n>` as a NUL-terminated C string on the stack, built
/// without allocating (for the placeholder, which a fork child may open).
#[cfg(any(target_os = "linux", target_os = "android"))]
struct ProcFdPath {
    buf: [u8; 32],
}

#[cfg(any(target_os = "linux", target_os = "android"))]
impl ProcFdPath {
    fn new(fd: RawFd) -> ProcFdPath {
        const PREFIX: &[u8] = b"/proc/self/fd/";
        let mut buf = [0u8; 32];
        buf[..PREFIX.len()].copy_from_slice(PREFIX);
        let mut digits = [0u8; 10];
        let mut n = fd.unsigned_abs();
        let mut len = 0;
        loop {
            digits[len] = b'0' + (n % 10) as u8;
            len += 1;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        for (i, d) in digits[..len].iter().rev().enumerate() {
            buf[PREFIX.len() + i] = *d;
        }
        // The rest of `buf` is zero: the string is terminated.
        ProcFdPath { buf }
    }

    fn as_ptr(&self) -> *const libc::c_char {
        self.buf.as_ptr().cast()
    }
}

/// The identity tag of a dead placeholder made by [`open_placeholder`], read
/// right after opening it: the low 32 bits of its inode number (never 0),
/// or `None` if `fd` does not look like one (not a pipe opened read-only or
/// `O_PATH`) or cannot be examined. [`is_placeholder`] compares with it.
///
/// Async-signal-safe (`fstat`, `fcntl`).
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

/// Atomically make `fd` refer to `placeholder`'s file, close-on-exec.
///
/// The file `fd` referred to is released (its last reference dropped by the
/// kernel); the number `fd` stays allocated.
///
/// # References
/// `dup3(2)` on Linux; `dup2(2)` + `fcntl(2)` elsewhere.
pub(crate) fn replace_with_placeholder(placeholder: RawFd, fd: RawFd) -> io::Result<()> {
    #[cfg(any(
        target_os = "linux",
        target_os = "android",
        target_os = "freebsd",
        target_os = "netbsd",
        target_os = "openbsd"
    ))]
    {
        syscall!(dup3(placeholder, fd, libc::O_CLOEXEC)).map(drop)
    }
    #[cfg(not(any(
        target_os = "linux",
        target_os = "android",
        target_os = "freebsd",
        target_os = "netbsd",
        target_os = "openbsd"
    )))]
    {
        syscall!(dup2(placeholder, fd))?;
        syscall!(fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC)).map(drop)
    }
}

/// The soft `RLIMIT_NOFILE`: one more than the highest number `dup2`,
/// `dup3` and `open` may hand out or target. `None` when unlimited or
/// unknown.
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
    #[allow(clippy::unnecessary_cast)]
    (limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur as u64)
}

/// `shutdown(SHUT_RDWR)`, so threads blocked in `read`/`accept` on the
/// socket wake up. On anything but a socket it fails at once (`ENOTSOCK`)
/// and changes nothing, so it doubles as the probe for descriptors of
/// unknown kind; `ENOTCONN` means there was no connection to end.
///
/// # References
/// `shutdown(2)`
pub(crate) fn shutdown(fd: RawFd) -> io::Result<()> {
    syscall!(shutdown(fd, libc::SHUT_RDWR)).map(drop)
}

// ---------------------------------------------------------------------------
// Helpers for the fork/exec child path (`src/child/`). Each is one or two raw
// syscalls: async-signal-safe, no allocation, no lock.

/// `close_range(first, last, 0)`: close every open descriptor in
/// `first..=last` with one syscall (Linux 5.9+). Numbers in the range that
/// are not open are skipped by the kernel; with `flags == 0` the call either
/// closes the whole range or fails before closing anything.
///
/// Async-signal-safe. Fails with `ENOSYS` on kernels before 5.9 and often
/// `EPERM` under a seccomp filter that does not know the syscall.
///
/// # References
/// `close_range(2)`
#[cfg(target_os = "linux")]
pub(crate) fn close_range(first: RawFd, last: RawFd) -> io::Result<()> {
    // The raw syscall, not the glibc wrapper: glibc only has it since 2.34.
    // The kernel takes the bounds as `unsigned int`.
    syscall!(syscall(
        libc::SYS_close_range,
        first as libc::c_uint,
        last as libc::c_uint,
        0 as libc::c_uint
    ))
    .map(drop)
}

/// Whether the kernel offers `close_range(2)` at all, asked without closing
/// anything: `first > last` is rejected with `EINVAL` by a kernel that has the
/// syscall, before it looks at any descriptor, while an old kernel says
/// `ENOSYS` and a seccomp filter usually `EPERM`.
///
/// Async-signal-safe.
///
/// # References
/// `close_range(2)`
#[cfg(target_os = "linux")]
pub(crate) fn probe_close_range() -> bool {
    match close_range(1, 0) {
        Err(e) => e.raw_os_error() == Some(libc::EINVAL),
        // No kernel accepts first > last; be conservative if one ever does.
        Ok(()) => false,
    }
}

/// `pthread_sigmask(how, set, &old)`: change this thread's signal mask by
/// `set` (`None`: change nothing, only read it) and return the mask in force
/// before. The result is wholly initialised: the kernel writes only the
/// first 64 bits of the C library's 1024-bit `sigset_t`, so the rest is
/// emptied first.
///
/// Async-signal-safe. Never fails for `SIG_BLOCK`, `SIG_UNBLOCK` and
/// `SIG_SETMASK`: `pthread_sigmask` fails only for another `how`.
///
/// # References
/// `pthread_sigmask(3)`, `rt_sigprocmask(2)`
#[inline]
pub(crate) fn change_sigmask(how: libc::c_int, set: Option<&libc::sigset_t>) -> libc::sigset_t {
    let set = set.map_or(std::ptr::null(), |set| set as *const libc::sigset_t);
    let mut old = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initialises all of `old`; `set` is null or an
    // initialised set; the call only writes into `old`.
    unsafe {
        libc::sigemptyset(old.as_mut_ptr());
        libc::pthread_sigmask(how, set, old.as_mut_ptr());
        old.assume_init()
    }
}

/// `pthread_sigmask(SIG_SETMASK, set, NULL)`: make `set` this thread's
/// signal mask. Async-signal-safe; never fails.
///
/// # References
/// `pthread_sigmask(3)`
#[inline]
pub(crate) fn set_sigmask(set: &libc::sigset_t) {
    // SAFETY: `set` is an initialised set; a null old set is allowed.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, set, std::ptr::null_mut()) };
}

/// Put signal `sig` back to its default disposition (`SIG_DFL`), with an
/// empty handler mask and no flags.
///
/// Async-signal-safe. Fails with `EINVAL` for `SIGKILL`, `SIGSTOP` and numbers
/// that are not signals.
///
/// # References
/// `sigaction(2)`, `signal(7)`
pub(crate) fn set_default_disposition(sig: libc::c_int) -> io::Result<()> {
    // SAFETY: `sigaction` is plain old data; all-zero is a valid value
    // (handler `SIG_DFL` == 0, no flags), and the mask is set just below.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = libc::SIG_DFL;
    // SAFETY: `sa_mask` is a valid, writable `sigset_t` inside `action`.
    unsafe { libc::sigemptyset(&mut action.sa_mask) };
    syscall!(sigaction(sig, &action, std::ptr::null_mut())).map(drop)
}

// ---------------------------------------------------------------------------
// Signal information, read in signal handlers.

/// The pid of the process that sent the signal `info` describes, when the
/// kernel says a process sent it: `si_code` is `SI_USER` (`kill(2)`),
/// `SI_QUEUE` (`sigqueue(3)`) or `SI_TKILL` (`tkill(2)`/`tgkill(2)`, which
/// `raise(3)` and `pthread_kill(3)` use). `None` for a signal the kernel
/// made (`SI_KERNEL`: a terminal's Ctrl-C, a hang-up), for a sender the
/// kernel reports as pid 0 (a process outside this one's pid namespace),
/// and on systems other than Linux and Android, whose `si_code` values this
/// crate does not decode yet.
///
/// Async-signal-safe (reads two fields of `info`).
///
/// # References
/// `sigaction(2)` (`SA_SIGINFO`, "The siginfo_t argument"), `kill(2)`,
/// `sigqueue(3)`, `tgkill(2)`
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn sender_pid(info: &libc::siginfo_t) -> Option<u32> {
    if !matches!(
        info.si_code,
        libc::SI_USER | libc::SI_QUEUE | libc::SI_TKILL
    ) {
        return None;
    }
    // SAFETY: for these three codes the kernel fills the union member that
    // starts with `si_pid` (`_kill`, or `_rt` for SI_QUEUE, which shares its
    // layout up to `si_uid`), so the field read is initialised.
    let pid = unsafe { info.si_pid() };
    u32::try_from(pid).ok().filter(|&pid| pid != 0)
}

/// See the Linux version: other systems report no sender yet.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn sender_pid(_info: &libc::siginfo_t) -> Option<u32> {
    None
}
