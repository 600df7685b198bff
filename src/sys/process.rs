//! The process itself: its ids, anonymous memory, `execvp` and `_exit`.

use std::io;
use std::ptr;

use super::os;

/// This process's id. Async-signal-safe.
///
/// # References
/// `getpid(2)`
pub(crate) fn getpid() -> libc::pid_t {
    // SAFETY: getpid has no preconditions and cannot fail.
    unsafe { libc::getpid() }
}

/// The parent's process id. Async-signal-safe.
///
/// # References
/// `getppid(2)`
pub(crate) fn getppid() -> libc::pid_t {
    // SAFETY: getppid has no preconditions and cannot fail.
    unsafe { libc::getppid() }
}

/// `_exit(2)`: end the process now, running no `atexit` handler and no
/// destructor. Async-signal-safe.
///
/// # References
/// `_exit(2)`
pub(crate) fn exit_now(code: libc::c_int) -> ! {
    // SAFETY: _exit has no preconditions and does not return.
    unsafe { libc::_exit(code) }
}

/// A fresh private anonymous mapping of `bytes` bytes, readable and
/// writable, every byte zero until written. Not from the heap: see
/// `chunks.rs` for why. Async-signal-safe in practice (one syscall), though
/// `mmap` is not on POSIX's list.
///
/// # References
/// `mmap(2)` (`MAP_PRIVATE | MAP_ANON`)
// The model-checking build (`--cfg fdtable_loom`) takes chunks from the heap.
#[cfg_attr(fdtable_loom, allow(dead_code))]
pub(crate) fn map_zeroed(bytes: usize) -> io::Result<*mut u8> {
    // SAFETY: a fresh private anonymous mapping; no existing memory is
    // touched.
    let ptr = unsafe {
        libc::mmap(
            ptr::null_mut(),
            bytes,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANON,
            -1,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(ptr.cast())
}

/// Undo [`map_zeroed`]. Async-signal-safe in practice (one syscall), though
/// `munmap` is not on POSIX's list.
///
/// # Safety
/// `ptr` and `bytes` must be exactly a mapping returned by [`map_zeroed`],
/// and nothing may use its memory afterwards.
///
/// # References
/// `munmap(2)`
#[cfg_attr(fdtable_loom, allow(dead_code))]
pub(crate) unsafe fn unmap(ptr: *mut u8, bytes: usize) {
    // SAFETY: guaranteed by the caller: the mapping of exactly this size.
    unsafe { libc::munmap(ptr.cast(), bytes) };
}

/// Point `environ` at `envp` and `execvp(program, argv)`; returns only on
/// failure, with the error and `environ` put back. `execvp` reads `PATH`
/// from `environ`, so from `envp`, and hands `envp` to the program.
/// Async-signal-safe where `execvp` is allocation-free (glibc searches
/// `PATH` on the stack).
///
/// # Safety
/// Only in a process with one thread (a fork child): `environ` is process
/// state that other threads may read meanwhile. `program` must be a
/// NUL-terminated string; `argv` and `envp` NULL-terminated arrays of
/// NUL-terminated strings, all alive for the call.
///
/// # References
/// `execvp(3)`, `environ(7)`
pub(crate) unsafe fn exec_with_environ(
    program: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
) -> io::Error {
    let environ = os::environ();
    // SAFETY: the caller guarantees one thread and valid arrays; `environ`
    // is the address of the C library's environment pointer.
    unsafe {
        let saved = *environ;
        *environ = envp;
        libc::execvp(program, argv);
        let error = io::Error::last_os_error();
        *environ = saved;
        error
    }
}

/// Where the C library keeps the environment pointer: the POSIX `environ`
/// variable. Apple's module has its own (`_NSGetEnviron`).
/// Async-signal-safe (takes an address).
///
/// # References
/// `environ(7)`
#[cfg_attr(target_vendor = "apple", allow(dead_code))]
pub(crate) fn portable_environ() -> *mut *const *const libc::c_char {
    extern "C" {
        static mut environ: *const *const libc::c_char;
    }
    // Only the address is taken; no reference is made.
    std::ptr::addr_of_mut!(environ)
}
