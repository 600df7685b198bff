//! Signal calls that are the same on every Unix: the thread's mask,
//! dispositions, `raise`, `pause`, `pthread_atfork`; and the portable
//! signal set of a `MaskGuard`, for systems whose `sigset_t` layout the
//! crate does not assume.

use std::io;
use std::mem::MaybeUninit;
use std::ptr;

/// Signals that are raised by the instruction being executed: a
/// `MaskGuard` never blocks them, since blocking them would turn a crash
/// into a hang or undefined behaviour.
pub(crate) const SYNCHRONOUS: [libc::c_int; 6] = [
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGFPE,
    libc::SIGILL,
    libc::SIGTRAP,
    libc::SIGSYS,
];

/// `pthread_sigmask(how, set, &old)`: change this thread's signal mask by
/// `set` (`None`: change nothing, only read it) and return the mask in force
/// before. The result is wholly initialised: the kernel may write only part
/// of the C library's `sigset_t` (on Linux the first 64 of glibc's 1024
/// bits), so all of it is emptied first.
///
/// Async-signal-safe. Never fails for `SIG_BLOCK`, `SIG_UNBLOCK` and
/// `SIG_SETMASK`: `pthread_sigmask` fails only for another `how`.
///
/// # References
/// `pthread_sigmask(3)`, `rt_sigprocmask(2)`, `sigprocmask(2)`
#[inline]
pub(crate) fn change_sigmask(how: libc::c_int, set: Option<&libc::sigset_t>) -> libc::sigset_t {
    let set = set.map_or(ptr::null(), |set| set as *const libc::sigset_t);
    let mut old = MaybeUninit::<libc::sigset_t>::uninit();
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
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, set, ptr::null_mut()) };
}

/// Unblock the one signal `sig` on this thread. Async-signal-safe; an
/// invalid number changes nothing.
///
/// # References
/// `sigemptyset(3)`, `sigaddset(3)`, `pthread_sigmask(3)`
pub(crate) fn unblock(sig: libc::c_int) {
    let mut set = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initialises the set, sigaddset edits it (and
    // fails harmlessly for an invalid number); pthread_sigmask reads it.
    unsafe {
        libc::sigemptyset(set.as_mut_ptr());
        libc::sigaddset(set.as_mut_ptr(), sig);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, set.as_ptr(), ptr::null_mut());
    }
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
    syscall!(sigaction(sig, &action, ptr::null_mut())).map(drop)
}

/// The current disposition's handler word of `sig` (`SIG_DFL`, `SIG_IGN`
/// or a function address). Async-signal-safe (one `sigaction` query).
///
/// # References
/// `sigaction(2)`
pub(crate) fn disposition(sig: libc::c_int) -> io::Result<libc::sighandler_t> {
    let mut current = MaybeUninit::<libc::sigaction>::uninit();
    syscall!(sigaction(sig, ptr::null(), current.as_mut_ptr()))?;
    // SAFETY: sigaction succeeded, so it wrote the whole struct.
    Ok(unsafe { current.assume_init() }.sa_sigaction)
}

/// Whether a handler function is installed for `sig` (neither `SIG_DFL`
/// nor `SIG_IGN`); `false` for a number that is not a signal.
/// Async-signal-safe.
///
/// # References
/// `sigaction(2)`
pub(crate) fn handler_function_installed(sig: libc::c_int) -> bool {
    disposition(sig).is_ok_and(|handler| handler != libc::SIG_DFL && handler != libc::SIG_IGN)
}

/// `raise(3)`: send `sig` to the calling thread. Async-signal-safe.
///
/// # References
/// `raise(3)`
pub(crate) fn raise(sig: libc::c_int) {
    // SAFETY: raise has no preconditions; an invalid number fails with
    // EINVAL and changes nothing.
    unsafe { libc::raise(sig) };
}

/// `pthread_atfork(NULL, NULL, child)`: run `child` in the child of every
/// later `fork(2)` (not in children made without the C library's `fork`).
/// `child` must be async-signal-safe and must not unwind.
///
/// # Errors
/// The error `pthread_atfork` returns (`ENOMEM`).
///
/// # References
/// `pthread_atfork(3)`
pub(crate) fn at_fork_in_child(child: extern "C" fn()) -> io::Result<()> {
    // SAFETY: registers a function pointer; the caller's contract above is
    // what a handler run in a fork child of a threaded process needs.
    let rc = unsafe { libc::pthread_atfork(None, None, Some(child)) };
    match rc {
        0 => Ok(()),
        rc => Err(io::Error::from_raw_os_error(rc)),
    }
}

/// The signal set of a `MaskGuard` where the crate does not assume the
/// layout of `sigset_t`: built at run time. The platform modules re-export
/// it unless they know better (64-bit Linux does: there this is compiled
/// for its tests only).
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) mod portable_set {
    use super::SYNCHRONOUS;
    use std::mem::MaybeUninit;

    /// Every signal but the [`SYNCHRONOUS`] ones. Async-signal-safe.
    ///
    /// # References
    /// `sigfillset(3)`, `sigdelset(3)`
    pub(crate) fn async_signal_set() -> libc::sigset_t {
        let mut set = MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: sigfillset initialises the whole set; sigdelset only edits
        // it. Both are async-signal-safe and cannot fail for valid numbers.
        unsafe {
            libc::sigfillset(set.as_mut_ptr());
            for sig in SYNCHRONOUS {
                libc::sigdelset(set.as_mut_ptr(), sig);
            }
            set.assume_init()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The portable set (every system but 64-bit Linux) holds every
    /// asynchronous signal this crate cares about and none of the
    /// synchronous ones.
    #[test]
    fn the_portable_set_leaves_out_exactly_the_synchronous_signals() {
        let set = portable_set::async_signal_set();
        // SAFETY: `set` is an initialised set; sigismember only reads it.
        let member = |sig| unsafe { libc::sigismember(&set, sig) } == 1;
        for sig in SYNCHRONOUS {
            assert!(!member(sig), "synchronous signal {sig} blocked");
        }
        for sig in [
            libc::SIGINT,
            libc::SIGTERM,
            libc::SIGHUP,
            libc::SIGQUIT,
            libc::SIGUSR1,
            libc::SIGUSR2,
            libc::SIGALRM,
            libc::SIGCHLD,
            libc::SIGPIPE,
            libc::SIGWINCH,
        ] {
            assert!(member(sig), "asynchronous signal {sig} left out");
        }
    }
}
