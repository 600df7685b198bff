//! The mask as the kernel sees it, on 64-bit Linux: 64 signals, the first
//! 64 bits of the C library's 1024-bit `sigset_t`. Knowing the layout lets
//! a `MaskGuard`'s set be built at compile time. The target list is in `mod.rs`, next to its
//! negation (the portable set of `signal.rs`).

use crate::sys::signal::SYNCHRONOUS;

/// The set of signals a `MaskGuard` blocks. Async-signal-safe.
pub(crate) fn async_signal_set() -> libc::sigset_t {
    // Built at compile time: the guard's hot path pays no sigfillset
    // and no sigdelset calls.
    ASYNC_SET
}

/// The C library's internal signals, as bits of the kernel's mask
/// (signal `n` at bit `n - 1`): never blocked by a guard.
///
/// glibc keeps 32 (SIGCANCEL) and 33 (SIGSETXID) and strips them from a
/// copy of every set passed to `pthread_sigmask`. musl keeps 32, 33 and
/// 34 (SIGSYNCCALL, which `setuid`, `setgroups` and friends send to
/// every thread and wait for), passes the set to the kernel as it is,
/// and clears all three from the old mask it reports. So on musl 34 must
/// stay out of the set (a held guard would stall `setuid` in other
/// threads until it drops). On
/// glibc, 34 is SIGRTMIN, the program's own, and is blocked like any
/// other.
///
/// Only the glibc value is built and tested on this project's CI (no
/// musl target there); the musl value follows musl's `pthread_sigmask`
/// and `sigfillset` sources.
const LIBC_INTERNAL: u64 = if cfg!(target_env = "musl") {
    1 << 31 | 1 << 32 | 1 << 33
} else {
    1 << 31 | 1 << 32
};

/// Signals 1-64 (the kernel's whole mask, the first 64 bits of the set)
/// minus the synchronous ones and the C library's internal ones
/// ([`LIBC_INTERNAL`]), which glibc's `pthread_sigmask` would otherwise
/// strip from a copy of the set on every call.
const ASYNC_SET: libc::sigset_t = {
    const WORDS: usize = std::mem::size_of::<libc::sigset_t>() / 8;
    let mut synchronous = 0u64;
    let mut i = 0;
    while i < SYNCHRONOUS.len() {
        synchronous |= 1 << (SYNCHRONOUS[i] - 1);
        i += 1;
    }
    let mut words = [0u64; WORDS];
    words[0] = !synchronous & !LIBC_INTERNAL;
    // SAFETY: `sigset_t` is plain data, exactly `WORDS` 64-bit words on
    // these 64-bit Linux targets (glibc and musl: 1024 bits), with
    // signal `n` at bit `n - 1` of the first word (their kernels have 64
    // signals); any bit pattern is a valid value.
    unsafe { std::mem::transmute::<[u64; WORDS], libc::sigset_t>(words) }
};

/// Signals 1-64 of a set: the part the kernel reads and writes; the
/// rest of the 1024-bit `sigset_t` is never read or written by it.
#[cfg(test)]
fn kernel_word(set: &libc::sigset_t) -> u64 {
    // SAFETY: `sigset_t` is at least 8 bytes of plain, initialised data.
    unsafe {
        (set as *const libc::sigset_t)
            .cast::<u64>()
            .read_unaligned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A guard must never block the C library's own signals: glibc's 32 and
    /// 33, and on musl also 34 (SIGSYNCCALL: a guard held on one thread
    /// would stall `setuid` on every other). On glibc, 34 is SIGRTMIN, an
    /// application signal, and is blocked. (The musl branch is compiled
    /// only for a musl target, which this project's CI does not build.)
    #[test]
    fn the_guard_set_leaves_the_c_librarys_internal_signals_alone() {
        let word = kernel_word(&async_signal_set());
        let bit = |sig: u32| word & (1u64 << (sig - 1)) != 0;
        assert!(!bit(32) && !bit(33));
        if cfg!(target_env = "musl") {
            assert!(!bit(34), "musl's SIGSYNCCALL is in the guard's set");
        } else {
            assert!(bit(34), "glibc's SIGRTMIN is not in the guard's set");
        }
        assert!(bit(64) && bit(libc::SIGINT as u32) && !bit(libc::SIGSEGV as u32));
    }
}
