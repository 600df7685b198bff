//! `/proc/self/fd`: its paths built on the stack (for the placeholder), and
//! its listing read with `getdents64(2)` into a stack buffer, as CPython's
//! `_posixsubprocess` does (never `opendir`, which allocates).

use std::ops::ControlFlow;
use std::os::fd::RawFd;

use crate::sys::fd;

/// `/proc/self/fd/<n>` as a NUL-terminated C string on the stack, built
/// without allocating (for the placeholder, which a fork child may open).
/// Building and reading it is async-signal-safe (no syscall, no
/// allocation).
pub(super) struct ProcFdPath {
    buf: [u8; 32],
}

impl ProcFdPath {
    pub(super) fn new(fd: RawFd) -> ProcFdPath {
        const PREFIX: &[u8] = b"/proc/self/fd/";
        let mut buf = [0u8; 32];
        buf[..PREFIX.len()].copy_from_slice(PREFIX);
        crate::sys::write_decimal(&mut buf[PREFIX.len()..], fd.unsigned_abs());
        ProcFdPath { buf }
    }

    pub(super) fn as_ptr(&self) -> *const libc::c_char {
        self.buf.as_ptr().cast()
    }
}

/// `open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC)`.
///
/// # References
/// `open(2)`, `proc(5)`
fn open_proc_self_fd() -> std::io::Result<RawFd> {
    syscall!(open(
        c"/proc/self/fd".as_ptr(),
        libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC
    ))
}

/// `getdents64(dir, buf)`: fill `buf` with `linux_dirent64` records; the
/// number of bytes used, 0 at the end of the directory. The raw syscall:
/// glibc's `readdir` allocates.
///
/// # References
/// `getdents64(2)`
fn getdents64(dir: RawFd, buf: &mut [u8]) -> std::io::Result<usize> {
    let n = syscall!(syscall(
        libc::SYS_getdents64,
        dir,
        buf.as_mut_ptr(),
        buf.len()
    ))?;
    Ok(n as usize)
}

/// Walk `/proc/self/fd` with `getdents64` into a stack buffer, calling `f`
/// on each number but the directory's own. `Err` (and the caller sweeps
/// instead) when the directory cannot be opened or read, or a record makes
/// no sense. Async-signal-safe and allocation-free when `f` is.
///
/// # References
/// `proc(5)` (`/proc/pid/fd`), `open(2)`, `getdents64(2)`
pub(super) fn listed_in_proc(
    f: &mut impl FnMut(RawFd) -> ControlFlow<()>,
) -> Result<ControlFlow<()>, ()> {
    /// `linux_dirent64` records hold `u64`s: keep the buffer aligned.
    #[repr(C, align(8))]
    struct Buffer([u8; 2048]);

    let dir = open_proc_self_fd().map_err(drop)?;
    let mut buf = Buffer([0; 2048]);
    let result = loop {
        let len = match getdents64(dir, &mut buf.0) {
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
    let _ = fd::close(dir);
    result
}

/// The smallest `linux_dirent64` record: `d_ino` u64 @0, `d_off` i64 @8,
/// `d_reclen` u16 @16, `d_type` u8 @18, then a name of at least its NUL.
const MIN_RECORD: usize = 20;

/// Call `f` with the name (NUL-terminated, maybe padded) of every
/// `linux_dirent64` record in `records`, as `getdents64` filled it. `Err`
/// for a record whose length is shorter than a record or runs past the
/// end: the listing cannot be trusted then (and must never be looped on,
/// nor sliced out of bounds). Async-signal-safe, allocation-free.
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Records as `getdents64` writes them: `(d_reclen, name)`.
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
    fn names_parse_as_descriptor_numbers_only() {
        assert_eq!(parse_fd(b"17\0"), Some(17));
        assert_eq!(parse_fd(b"0\0\0\0"), Some(0));
        assert_eq!(parse_fd(b".\0"), None);
        assert_eq!(parse_fd(b"..\0"), None);
        assert_eq!(parse_fd(b"\0"), None);
        assert_eq!(parse_fd(b"99999999999\0"), None);
    }

    #[test]
    fn proc_fd_paths_are_nul_terminated_decimal() {
        let path = ProcFdPath::new(1017);
        // SAFETY: the buffer is NUL-terminated (checked by CStr).
        let s = unsafe { std::ffi::CStr::from_ptr(path.as_ptr()) };
        assert_eq!(s.to_bytes(), b"/proc/self/fd/1017");
        let path = ProcFdPath::new(0);
        // SAFETY: as above.
        let s = unsafe { std::ffi::CStr::from_ptr(path.as_ptr()) };
        assert_eq!(s.to_bytes(), b"/proc/self/fd/0");
    }
}
