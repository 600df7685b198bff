//! `MaskGuard` against handlers that interrupt it (review finding 6) and
//! guards dropped out of order. The storm and I3 tests of the guard in use
//! by the table are in `tests/signals.rs`.

mod util;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use fdtable::MaskGuard;
use signal_hook::consts::{SIGUSR1, SIGUSR2};
use util::{block_by_hand, Deadline, RestoreMask};

/// Guards are values: dropped in another order than made, the mask comes
/// back only when the last one drops, and it is the mask from before the
/// first.
#[test]
fn guards_dropped_out_of_order_restore_the_mask_when_the_last_one_drops() {
    let _serial = util::serial();
    let _restore = RestoreMask::save();
    block_by_hand(&[SIGUSR1], libc::SIG_UNBLOCK);
    block_by_hand(&[SIGUSR2], libc::SIG_BLOCK);
    let before = util::members(&util::current_mask());
    let first = MaskGuard::new();
    let second = MaskGuard::new();
    drop(first);
    assert!(
        util::has(&util::current_mask(), SIGUSR1),
        "the first guard's drop unblocked signals while the second lives"
    );
    assert!(MaskGuard::is_active());
    // A guard made now is nested, and leaves the restore to the last one.
    drop(MaskGuard::new());
    assert!(util::has(&util::current_mask(), SIGUSR1));
    drop(second);
    assert!(!MaskGuard::is_active());
    assert_eq!(util::members(&util::current_mask()), before);
    // And the next outermost guard starts afresh.
    let again = MaskGuard::new();
    drop(again);
    assert_eq!(util::members(&util::current_mask()), before);
}

/// SIGTRAP handlers run here, on the thread under test, and make a guard.
static TRAPS_HANDLED: AtomicU64 = AtomicU64::new(0);

extern "C" fn trap_handler(_: libc::c_int) {
    // A guard in a handler, as the docs allow; SIGTRAP is synchronous, so
    // the guard of the interrupted code leaves it deliverable.
    drop(MaskGuard::new());
    TRAPS_HANDLED.fetch_add(1, SeqCst);
}

/// A handler for a signal a guard leaves deliverable (SIGTRAP here; also
/// SIGSEGV, SIGBUS, SIGSYS, ... and anything `kill` sends of those) may
/// interrupt the outermost guard of the thread anywhere in `new` or
/// `drop`, and make a guard of its own: the interrupted guard must still
/// restore the mask it found. A storm of SIGTRAP aimed at this thread
/// with `tgkill` while it makes and drops guards; after every drop the
/// thread's mask must be open again.
#[test]
fn a_guard_made_in_a_handler_never_leaves_the_interrupted_guard_unrestored() {
    let _serial = util::serial();
    let _restore = RestoreMask::save();
    block_by_hand(&[SIGUSR1], libc::SIG_UNBLOCK);
    TRAPS_HANDLED.store(0, SeqCst);
    // SAFETY: a zeroed sigaction is valid; the handler only makes and
    // drops a guard (async-signal-safe) and adds to an atomic.
    let old = unsafe {
        let mut new: libc::sigaction = std::mem::zeroed();
        new.sa_sigaction = trap_handler as extern "C" fn(libc::c_int) as libc::sighandler_t;
        libc::sigemptyset(&mut new.sa_mask);
        let mut old: libc::sigaction = std::mem::zeroed();
        assert_eq!(libc::sigaction(libc::SIGTRAP, &new, &mut old), 0);
        old
    };
    // Linux: `tgkill` to this thread's id; elsewhere `pthread_kill`.
    #[cfg(target_os = "linux")]
    // SAFETY: getpid and gettid have no preconditions.
    let (pid, tid) = unsafe { (libc::getpid(), libc::gettid()) };
    #[cfg(not(target_os = "linux"))]
    let this = util::pthread_self() as usize;
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut sent = 0u64;
            while !stop.load(SeqCst) {
                #[cfg(target_os = "linux")]
                // SAFETY: tgkill to a thread of this process, which has a
                // handler for SIGTRAP until this thread is joined.
                unsafe {
                    libc::syscall(libc::SYS_tgkill, pid, tid, libc::SIGTRAP)
                };
                #[cfg(not(target_os = "linux"))]
                // SAFETY: as above, by its pthread id.
                unsafe {
                    libc::pthread_kill(this as libc::pthread_t, libc::SIGTRAP)
                };
                sent += 1;
                // A varying gap, so deliveries land all over the guard's code.
                for _ in 0..sent % 500 {
                    std::hint::spin_loop();
                }
            }
        })
    };
    let mut deadline = Deadline::new(Duration::from_secs(5), 2_000_000);
    let mut guards = 0u64;
    let mut left_blocked = false;
    while deadline.tick() {
        let guard = MaskGuard::new();
        drop(guard);
        guards += 1;
        if util::has(&util::current_mask(), SIGUSR1) {
            left_blocked = true;
            break;
        }
    }
    stop.store(true, SeqCst);
    sender.join().unwrap();
    // Deliver anything still pending (on the way out of this syscall)
    // before SIGTRAP gets its old disposition back.
    // SAFETY: getpid has no preconditions.
    unsafe { libc::getpid() };
    // SAFETY: puts back the disposition saved above.
    unsafe { libc::sigaction(libc::SIGTRAP, &old, std::ptr::null_mut()) };
    let handled = TRAPS_HANDLED.load(SeqCst);
    assert!(
        !left_blocked,
        "after {guards} guards ({handled} SIGTRAPs handled) the thread's \
         asynchronous signals stayed blocked"
    );
    assert!(
        handled >= 1000,
        "only {handled} SIGTRAPs reached the thread in {guards} guards: the storm \
         cannot have hit the guard's code"
    );
}
