//! Every descriptor number a process may have open, in ascending order,
//! without allocating: what `close_other_fds` marks and where the hook looks
//! for std's exec-error channel.
//!
//! Two ways, tried in order; both async-signal-safe and allocation-free:
//! 1. Linux: list `/proc/self/fd` with `getdents64(2)` into a buffer on the
//!    stack (never `opendir`, which allocates), as CPython's
//!    `_posixsubprocess` does. Bounded by what is really open.
//! 2. Where `/proc` cannot be read (not mounted, the process is at
//!    `RLIMIT_NOFILE` so the directory cannot be opened, a listing that
//!    makes no sense, or not Linux): every number below the soft
//!    `RLIMIT_NOFILE` (2^20 when it is unlimited or unknown). A descriptor
//!    at or above the soft limit (opened before the limit was lowered) is
//!    not seen.
//!
//! The numbers are candidates: one may be closed by the time the callback
//! runs (in a fork child nothing else runs, but the sweep yields numbers
//! that were never open). Callbacks must tolerate `EBADF`.

use std::ops::ControlFlow;
use std::os::fd::RawFd;

#[cfg(target_os = "linux")]
use super::raw;
use crate::sys;

/// Call `f` on every open descriptor number (and, in the sweep, every
/// number below the limit), ascending, until it breaks. A listing that
/// fails part way is replaced by the sweep from the start, so `f` may see a
/// number twice: it must be idempotent.
///
/// Async-signal-safe and allocation-free when `f` is.
pub(super) fn for_each_number(mut f: impl FnMut(RawFd) -> ControlFlow<()>) -> ControlFlow<()> {
    #[cfg(target_os = "linux")]
    if let Ok(flow) = listed_in_proc(&mut f) {
        return flow;
    }
    for fd in 0..sweep_limit(sys::soft_fd_limit()) {
        f(fd)?;
    }
    ControlFlow::Continue(())
}

/// Way 1: walk `/proc/self/fd` with `getdents64` into a stack buffer. `Err`
/// (and the caller sweeps instead) when the directory cannot be opened or
/// read, or a record makes no sense.
#[cfg(target_os = "linux")]
fn listed_in_proc(f: &mut impl FnMut(RawFd) -> ControlFlow<()>) -> Result<ControlFlow<()>, ()> {
    /// `linux_dirent64` records hold `u64`s: keep the buffer aligned.
    #[repr(C, align(8))]
    struct Buffer([u8; 2048]);

    let dir = raw::open_proc_self_fd().map_err(drop)?;
    let mut buf = Buffer([0; 2048]);
    let result = loop {
        let len = match raw::getdents64(dir, &mut buf.0) {
            Ok(0) => break Ok(ControlFlow::Continue(())),
            Ok(len) => len.min(buf.0.len()),
            Err(_) => break Err(()),
        };
        let mut flow = ControlFlow::Continue(());
        let listed = for_each_name(&buf.0[..len], |name| {
            if flow.is_break() {
                return;
            }
            if let Some(fd) = parse_fd(name) {
                if fd != dir {
                    flow = f(fd);
                }
            }
        });
        if listed.is_err() {
            break Err(());
        }
        if flow.is_break() {
            break Ok(flow);
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

    /// The walk sees this process's descriptors, ascending, and stops when
    /// told to.
    #[test]
    fn the_walk_lists_open_descriptors_in_order_and_stops() {
        let file = std::fs::File::open("/dev/null").unwrap();
        let n = std::os::fd::AsRawFd::as_raw_fd(&file);
        let mut seen = Vec::new();
        let flow = for_each_number(|fd| {
            seen.push(fd);
            if fd == n {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        assert!(flow.is_break(), "{n} not listed: {seen:?}");
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    }
}
