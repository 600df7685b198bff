//! `close_other_fds` in the child: mark every descriptor except the kept
//! numbers close-on-exec, so the new program starts with those only.
//!
//! Marking instead of closing is what keeps `spawn`'s error reporting
//! working: std's exec-error socket is already close-on-exec and must stay
//! open until `execve` succeeds (the kernel closes it then) or fails (the
//! child writes the error to it).
//!
//! Three ways, tried in order; all allocation-free and async-signal-safe:
//! 1. Linux 5.11+: one `close_range(first, last, CLOSE_RANGE_CLOEXEC)` per
//!    gap between kept numbers: a handful of syscalls whatever the number of
//!    open descriptors.
//! 2. Where the flag or the syscall is refused (`EINVAL` on 5.9 and 5.10,
//!    `ENOSYS` before, `EPERM` under seccomp): list `/proc/self/fd` with
//!    `getdents64(2)` into a buffer on the stack (never `opendir`, which
//!    allocates) and set `FD_CLOEXEC` where it is missing, as CPython's
//!    `_posixsubprocess` does.
//! 3. Where `/proc` cannot be read (not mounted, the process is at
//!    `RLIMIT_NOFILE` so the directory cannot be opened, or a listing makes
//!    no sense): an `fcntl` sweep of every number below the soft
//!    `RLIMIT_NOFILE`, whatever the kept numbers are.

use std::os::fd::RawFd;

#[cfg(target_os = "linux")]
use super::probe::Probed;
#[cfg(target_os = "linux")]
use super::raw;
use crate::sys;

/// What this process knows about `CLOSE_RANGE_CLOEXEC`.
#[cfg(target_os = "linux")]
static CLOEXEC_RANGE: Probed = Probed::new(raw::close_range_cloexec_supported);

/// Ask the kernel once whether `CLOSE_RANGE_CLOEXEC` works (a probe that
/// marks nothing) and cache the answer. Async-signal-safe.
pub(super) fn cloexec_range_usable() -> bool {
    #[cfg(target_os = "linux")]
    {
        CLOEXEC_RANGE.usable()
    }
    #[cfg(not(target_os = "linux"))]
    {
        false
    }
}

/// Call `f(first, last)` for every maximal run of numbers `>= 3` that is not
/// in `kept` (sorted ascending), the last run ending at `c_uint::MAX`; stop
/// at the first error. Numbers 0-2 are never in a run.
fn for_each_gap<E>(
    kept: &[RawFd],
    mut f: impl FnMut(libc::c_uint, libc::c_uint) -> Result<(), E>,
) -> Result<(), E> {
    let mut next: libc::c_uint = 3;
    for &k in kept {
        let Ok(k) = libc::c_uint::try_from(k) else {
            continue;
        };
        if k < next {
            continue;
        }
        if k > next {
            f(next, k - 1)?;
        }
        match k.checked_add(1) {
            Some(n) => next = n,
            None => return Ok(()),
        }
    }
    f(next, libc::c_uint::MAX)
}

/// Mark every open descriptor close-on-exec except 0-2 and the numbers in
/// `kept` (sorted ascending, no duplicates needed). Async-signal-safe and
/// allocation-free; never fails (the last fallback cannot).
pub(super) fn mark_cloexec_except(kept: &[RawFd]) {
    #[cfg(target_os = "linux")]
    {
        if cloexec_range_usable() {
            match for_each_gap(kept, raw::close_range_cloexec) {
                Ok(()) => return,
                // Marking more than once is harmless: whatever gap was done
                // is done again by the fallback.
                Err(_) => CLOEXEC_RANGE.refuse(),
            }
        }
        if mark_listed_in_proc(kept).is_ok() {
            return;
        }
    }
    mark_by_sweep(kept);
}

/// Set `FD_CLOEXEC` on `fd` unless it is kept. Errors (`EBADF` for a number
/// closed meanwhile) are ignored: an unopened number reaches no program.
fn mark(fd: RawFd, kept: &[RawFd]) {
    if fd > 2 && kept.binary_search(&fd).is_err() {
        let _ = sys::set_cloexec(fd, true);
    }
}

/// Way 2: walk `/proc/self/fd` with `getdents64` into a stack buffer.
/// Fails (and the caller sweeps instead) when the directory cannot be
/// opened or read, or a record makes no sense.
#[cfg(target_os = "linux")]
fn mark_listed_in_proc(kept: &[RawFd]) -> std::io::Result<()> {
    /// `linux_dirent64` records hold `u64`s: keep the buffer aligned.
    #[repr(C, align(8))]
    struct Buffer([u8; 2048]);

    let dir = raw::open_proc_self_fd()?;
    let mut buf = Buffer([0; 2048]);
    let result = loop {
        let len = match raw::getdents64(dir, &mut buf.0) {
            Ok(0) => break Ok(()),
            Ok(len) => len.min(buf.0.len()),
            Err(e) => break Err(e),
        };
        let listed = for_each_name(&buf.0[..len], |name| {
            if let Some(fd) = parse_fd(name) {
                if fd != dir {
                    mark(fd, kept);
                }
            }
        });
        if listed.is_err() {
            break Err(std::io::Error::from_raw_os_error(libc::EIO));
        }
    };
    let _ = sys::close(dir);
    result
}

/// The smallest `linux_dirent64` record: `d_ino` u64 @0, `d_off` i64 @8,
/// `d_reclen` u16 @16, `d_type` u8 @18, then a name of at least its NUL.
#[cfg(target_os = "linux")]
const MIN_RECORD: usize = 20;

/// Call `f` with the name (NUL-terminated, maybe padded) of every
/// `linux_dirent64` record in `records`, as `getdents64` filled it. `Err`
/// for a record whose length is shorter than a record or runs past the
/// end: the listing cannot be trusted then (and must never be looped on,
/// nor sliced out of bounds). Async-signal-safe, allocation-free.
#[cfg(target_os = "linux")]
fn for_each_name(records: &[u8], mut f: impl FnMut(&[u8])) -> Result<(), ()> {
    let mut at = 0;
    while at < records.len() {
        let Some(header) = records.get(at..at + MIN_RECORD) else {
            return Err(());
        };
        let reclen = usize::from(u16::from_ne_bytes([header[16], header[17]]));
        if reclen < MIN_RECORD {
            return Err(());
        }
        let Some(record) = records.get(at..at + reclen) else {
            return Err(());
        };
        f(&record[19..]);
        at += reclen;
    }
    Ok(())
}

/// The decimal number at the start of a NUL-terminated name; `None` for
/// `.`, `..` and anything else that is not a descriptor number.
#[cfg(target_os = "linux")]
fn parse_fd(name: &[u8]) -> Option<RawFd> {
    let mut fd: RawFd = 0;
    let mut digits = 0;
    for &b in name {
        match b {
            0 => break,
            b'0'..=b'9' => {
                fd = fd.checked_mul(10)?.checked_add(RawFd::from(b - b'0'))?;
                digits += 1;
            }
            _ => return None,
        }
    }
    (digits > 0).then_some(fd)
}

/// Way 3: `fcntl` on every number of every gap below the soft descriptor
/// limit (2^20 when it is unlimited or unknown), whatever the kept numbers
/// are: a kept number far above the limit must not stretch the sweep to
/// billions of calls. A descriptor at or above the soft limit (opened
/// before the limit was lowered) is not seen.
fn mark_by_sweep(kept: &[RawFd]) {
    let limit = sweep_limit(sys::soft_fd_limit());
    let _ = for_each_gap(kept, |first, last| {
        let first = RawFd::try_from(first).unwrap_or(RawFd::MAX);
        let last = RawFd::try_from(last).unwrap_or(RawFd::MAX).min(limit - 1);
        if first > last {
            return Err(()); // past the limit: later gaps are too
        }
        for fd in first..=last {
            mark(fd, kept);
        }
        Ok(())
    });
}

/// Where the sweep stops: the soft limit, or 2^20 without one.
fn sweep_limit(soft: Option<u64>) -> RawFd {
    soft.map_or(1 << 20, |limit| {
        RawFd::try_from(limit).unwrap_or(RawFd::MAX)
    })
    .max(3)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gaps(kept: &[RawFd]) -> Vec<(libc::c_uint, libc::c_uint)> {
        let mut out = Vec::new();
        let _ = for_each_gap::<()>(kept, |a, b| {
            out.push((a, b));
            Ok(())
        });
        out
    }

    #[test]
    fn gaps_skip_stdio_and_every_kept_number() {
        let max = libc::c_uint::MAX;
        assert_eq!(gaps(&[0, 1, 2]), [(3, max)]);
        assert_eq!(gaps(&[]), [(3, max)]);
        assert_eq!(gaps(&[0, 1, 2, 3, 4]), [(5, max)]);
        assert_eq!(gaps(&[0, 1, 2, 5, 6, 9]), [(3, 4), (7, 8), (10, max)]);
        assert_eq!(gaps(&[-1, 1, 7]), [(3, 6), (8, max)]);
        assert_eq!(
            gaps(&[RawFd::MAX]),
            [(3, RawFd::MAX as u32 - 1), (1 << 31, max)]
        );
    }

    /// Records as `getdents64` writes them: `(d_reclen, name)`.
    #[cfg(target_os = "linux")]
    fn records(list: &[(u16, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for &(reclen, name) in list {
            let start = out.len();
            out.extend_from_slice(&[0; 16]);
            out.extend_from_slice(&reclen.to_ne_bytes());
            out.push(libc::DT_LNK);
            out.extend_from_slice(name);
            out.resize(start + usize::from(reclen).max(out.len() - start), 0);
        }
        out
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn well_formed_records_yield_every_name() {
        let buf = records(&[(24, b".\0"), (24, b"..\0"), (24, b"0\0"), (32, b"1017\0")]);
        let mut names = Vec::new();
        assert_eq!(for_each_name(&buf, |n| names.push(parse_fd(n))), Ok(()));
        assert_eq!(names, [None, None, Some(0), Some(1017)]);
    }

    /// Review finding 10: a record length shorter than a record (the name
    /// would be sliced out of bounds: a panic, in a fork child) or running
    /// past the buffer makes the listing malformed, never a panic or a loop.
    #[test]
    #[cfg(target_os = "linux")]
    fn malformed_records_are_refused_not_a_panic() {
        for reclen in [0u16, 8, 18, 19] {
            let buf = records(&[(24, b"3\0"), (reclen, b"4\0\0\0\0")]);
            assert_eq!(for_each_name(&buf, |_| {}), Err(()), "reclen {reclen}");
        }
        let mut past_the_end = records(&[(24, b"3\0")]);
        past_the_end[16..18].copy_from_slice(&64u16.to_ne_bytes());
        assert_eq!(for_each_name(&past_the_end, |_| {}), Err(()));
        assert_eq!(for_each_name(&[0; 7], |_| {}), Err(()), "a torn header");
    }

    #[test]
    fn the_sweep_stops_at_the_soft_limit() {
        assert_eq!(sweep_limit(Some(1024)), 1024);
        assert_eq!(sweep_limit(None), 1 << 20);
        assert_eq!(sweep_limit(Some(0)), 3);
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn names_parse_as_descriptor_numbers_only() {
        assert_eq!(parse_fd(b"17\0"), Some(17));
        assert_eq!(parse_fd(b"0\0\0\0"), Some(0));
        assert_eq!(parse_fd(b".\0"), None);
        assert_eq!(parse_fd(b"..\0"), None);
        assert_eq!(parse_fd(b"\0"), None);
        assert_eq!(parse_fd(b"99999999999\0"), None);
    }
}
