//! The process-wide side of [`Interrupts`](crate::Interrupts): one record per
//! signal, and the decision every delivery starts with.
//!
//! Per signal, the first time this crate handles it, `handler.rs` registers
//! one permanent *fallback action* with signal-hook, [`on_delivery`], before
//! any instance's action (its registration takes the proof that the
//! fallback's returns). signal-hook runs a signal's actions in registration
//! order, so for each delivery the fallback runs first and decides, from one
//! atomic snapshot of the signal's record:
//!
//! - no `Interrupts` of *this process* handles the signal: apply the default
//!   action (if the signal had it before this crate, no instance opted out,
//!   and the program did not turn it off for the process), or do nothing;
//! - a [`ForegroundChild`](crate::ForegroundChild) scope is open and the
//!   signal is SIGINT or SIGQUIT: nothing (the instances still count it);
//! - every live instance wants "second signal kills": arm the process, or,
//!   if it was armed already, die by the signal's default action.
//!
//! Only then do the instances' actions (`shared.rs`) count the delivery and
//! write their wake-up bytes, so the process is armed before any program
//! code can see the event.
//!
//! An instance counts as live only while its action is registered: it
//! registers its action first and joins the record after, and on drop
//! leaves the record first and unregisters after (`registration.rs`). A
//! delivery in between sees the signal unhandled (default or nothing), never
//! armed with no action to count it.
//!
//! Records belong to a pid: a fork child inherits its parent's memory, but
//! not its parent's `Interrupts` (their actions ignore other processes).
//! Each record packs the pid that wrote it with its counts in one
//! `AtomicU64`, and a process that finds another pid's record treats it as
//! empty. The armed flag holds the pid that is armed, the foreground scope
//! depth is stamped the same way. A fork child clears all three at once
//! ([`forget_parent`], from the `pthread_atfork` handler `handler.rs`
//! registers), so a descendant that is handed an exited ancestor's pid does
//! not take the ancestor's records for its own; the pid stamps still cover
//! children made without atfork handlers until they `exec`.
//!
//! "Armed" is one flag for every signal of the process, cleared whenever
//! the process goes from no live instance (of any signal) to one, and when
//! its last one leaves: a later instance never starts armed by an old
//! delivery.
//!
//! The foreground scope depth is cleared when the process's last instance
//! of all is dropped, those that handle no signal included (counted in
//! [`INSTANCES`]): a scope borrows its instance, so once none is left the
//! only scopes still counted are leaked ones (`mem::forget`), which would
//! otherwise keep SIGINT and SIGQUIT from their default action, and a later
//! instance from its second-signal kill, for the life of the process.
//!
//! Install, drop and the foreground scope's setup change the records under
//! one lock, the *setup lock*; the functions that need it take a
//! [`SetupLock`] to say so. The handler side only loads.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Mutex, MutexGuard};

use libc::c_int;

use super::owner::{pid, Owner};
use super::signal::{Signal, COUNT};
use crate::sys;

/// [`Signal::bit`] set: this crate has looked at the original disposition.
static LOOKED_AT: AtomicU8 = AtomicU8::new(0);
/// [`Signal::bit`] set: the original disposition was `SIG_IGN`.
static IGNORED_AT_START: AtomicU8 = AtomicU8::new(0);
/// [`Signal::bit`] set: the original disposition was `SIG_DFL`.
static DEFAULT_AT_START: AtomicU8 = AtomicU8::new(0);
/// Per signal: a [`Record`] (pid, live instances, opt-outs, idle action).
static RECORDS: [AtomicU64; COUNT] = [const { AtomicU64::new(0) }; COUNT];
/// The pid of the process that is armed, 0 when none: a fork child starts
/// disarmed because its pid differs.
static ARMED: AtomicI32 = AtomicI32::new(0);
/// Open [`ForegroundChild`](crate::ForegroundChild) scopes: pid in the low
/// 32 bits, depth in the high 32.
static FOREGROUND: AtomicU64 = AtomicU64::new(0);
/// Live `Interrupts` of a process, whether they handle a signal or not: pid
/// in the low 32 bits, count in the high 32 (a word of another pid counts
/// none). Changed under the setup lock only.
static INSTANCES: AtomicU64 = AtomicU64::new(0);
/// The program turned the default after drop off for every instance
/// ([`Interrupts::disable_default_after_drop_globally`]); never cleared.
///
/// [`Interrupts::disable_default_after_drop_globally`]: crate::Interrupts::disable_default_after_drop_globally
static NO_DEFAULT_ANYWHERE: AtomicBool = AtomicBool::new(false);
/// Serialises install and drop (the records' read-modify-write), not the
/// handlers, which only load.
static SETUP: Mutex<()> = Mutex::new(());

/// The setup lock, held: what install, drop and the foreground scope's
/// setup take before they change the records or register with signal-hook.
/// A function that must run under the lock takes a `&SetupLock`.
pub(super) struct SetupLock {
    _held: MutexGuard<'static, ()>,
}

/// Take the setup lock. Not async-signal-safe.
pub(super) fn lock_setup() -> SetupLock {
    // The guarded data is `()`: a panic elsewhere cannot leave it broken.
    let held = SETUP
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    SetupLock { _held: held }
}

/// The most `Interrupts` that may handle one signal at once in a process.
pub(crate) const MAX_INSTANCES: u64 = FIELD;

const FIELD: u64 = 0x7fff;
const LIVE_SHIFT: u32 = 32;
const OPT_OUT_SHIFT: u32 = 47;
/// No instance handles the signal and the default action applies.
const DEFAULT_WHEN_IDLE: u64 = 1 << 62;
/// An instance that handled the signal since it was last idle asked for no
/// default after drop.
const NO_DEFAULT: u64 = 1 << 63;

/// One signal's record: `pid | live << 32 | opt_out << 47 | flags`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Record(u64);

impl Record {
    fn load(slot: &AtomicU64) -> Record {
        Record(slot.load(Ordering::SeqCst))
    }

    fn store(self, slot: &AtomicU64) {
        slot.store(self.0, Ordering::SeqCst);
    }

    fn pid(self) -> libc::pid_t {
        self.0 as u32 as libc::pid_t
    }

    /// Live instances handling the signal in the record's process.
    fn live(self) -> u64 {
        (self.0 >> LIVE_SHIFT) & FIELD
    }

    /// Live instances that do not want "second signal kills".
    fn opt_out(self) -> u64 {
        (self.0 >> OPT_OUT_SHIFT) & FIELD
    }

    fn new(pid: libc::pid_t, live: u64, opt_out: u64, flags: u64) -> Record {
        debug_assert!(live <= FIELD && opt_out <= FIELD);
        Record(u64::from(pid as u32) | live << LIVE_SHIFT | opt_out << OPT_OUT_SHIFT | flags)
    }
}

fn default_at_start(signal: Signal) -> bool {
    DEFAULT_AT_START.load(Ordering::SeqCst) & signal.bit() != 0
}

/// Whether `signal` was `SIG_IGN` when this crate first looked at it. The
/// first call per process tree (a fork child inherits what its parent saw)
/// looks, before this crate touches the signal, and records the
/// disposition. Async-signal-safe, but needs the lock.
pub(super) fn ignored_at_start(_: &SetupLock, signal: Signal) -> io::Result<bool> {
    if LOOKED_AT.load(Ordering::SeqCst) & signal.bit() == 0 {
        let handler = sys::disposition(signal.as_raw())?;
        if handler == libc::SIG_IGN {
            IGNORED_AT_START.fetch_or(signal.bit(), Ordering::SeqCst);
        } else if handler == libc::SIG_DFL {
            DEFAULT_AT_START.fetch_or(signal.bit(), Ordering::SeqCst);
        }
        LOOKED_AT.fetch_or(signal.bit(), Ordering::SeqCst);
    }
    Ok(IGNORED_AT_START.load(Ordering::SeqCst) & signal.bit() != 0)
}

/// Whether any signal's record counts a live instance of process `pid`.
fn any_live(pid: libc::pid_t) -> bool {
    RECORDS.iter().any(|slot| {
        let record = Record::load(slot);
        record.pid() == pid && record.live() > 0
    })
}

/// Count one more live instance for `signal` in process `pid`, after the
/// instance's action is registered. Fails (changing nothing) when
/// [`MAX_INSTANCES`] already handle it. Async-signal-safe when it succeeds
/// (the error allocates), but needs the lock.
pub(super) fn join(
    _: &SetupLock,
    signal: Signal,
    pid: libc::pid_t,
    kills: bool,
    default_after_drop: bool,
) -> io::Result<()> {
    if !any_live(pid) {
        // From no instance to one: whatever armed the process belonged to
        // instances that are gone. Cleared before the record says live, so
        // a delivery that arms from now on is this instance's.
        ARMED.store(0, Ordering::SeqCst);
    }
    join_record(
        &RECORDS[signal.index()],
        signal,
        pid,
        kills,
        default_after_drop,
    )
}

/// [`join`]'s update of one record.
fn join_record(
    slot: &AtomicU64,
    signal: Signal,
    pid: libc::pid_t,
    kills: bool,
    default_after_drop: bool,
) -> io::Result<()> {
    let old = Record::load(slot);
    let opt_out = u64::from(!kills);
    let no_default = if default_after_drop { 0 } else { NO_DEFAULT };
    let new = if old.pid() != pid || old.live() == 0 {
        // The first instance in this process (a fork child's parent's record
        // is not ours), or the first since the signal was last idle.
        Record::new(pid, 1, opt_out, no_default)
    } else if old.live() == MAX_INSTANCES {
        return Err(io::Error::other(format!(
            "{signal}: already handled by {MAX_INSTANCES} Interrupts in this process"
        )));
    } else {
        Record::new(
            pid,
            old.live() + 1,
            old.opt_out() + opt_out,
            (old.0 & NO_DEFAULT) | no_default,
        )
    };
    new.store(slot);
    Ok(())
}

/// Count one instance of process `pid` less for `signal`; the last one out
/// decides whether the default action applies while the signal is idle.
/// Only for an instance installed by `pid`, before its action is
/// unregistered. Async-signal-safe, but needs the lock.
pub(super) fn leave(_: &SetupLock, signal: Signal, pid: libc::pid_t, kills: bool) {
    leave_record(&RECORDS[signal.index()], signal, pid, kills);
    if !any_live(pid) {
        // The last instance of the process left: nothing armed is left to
        // act on. Cleared after the record says idle, so no delivery can
        // arm again in between.
        ARMED.store(0, Ordering::SeqCst);
    }
}

/// [`leave`]'s update of one record.
fn leave_record(slot: &AtomicU64, signal: Signal, pid: libc::pid_t, kills: bool) {
    let old = Record::load(slot);
    if old.pid() != pid || old.live() == 0 {
        debug_assert!(false, "leave without join");
        return;
    }
    let live = old.live() - 1;
    let opt_out = old.opt_out().saturating_sub(u64::from(!kills));
    let mut flags = old.0 & NO_DEFAULT;
    if live == 0 && flags == 0 && default_at_start(signal) {
        flags |= DEFAULT_WHEN_IDLE;
    }
    Record::new(pid, live, opt_out, flags).store(slot);
}

/// Count one more live instance of process `pid` (any instance, whether it
/// handles a signal or not), once the install succeeded. Async-signal-safe,
/// but needs the lock.
pub(super) fn instance_added(_: &SetupLock, pid: libc::pid_t) {
    let word = INSTANCES.load(Ordering::SeqCst);
    let live = if word as u32 as libc::pid_t == pid {
        word >> 32
    } else {
        0
    };
    INSTANCES.store(u64::from(pid as u32) | (live + 1) << 32, Ordering::SeqCst);
}

/// Count one live instance of process `pid` less; when it was the last,
/// close every foreground scope still counted: they were leaked (see the
/// module docs). For an instance that [`instance_added`] counted in this
/// process, after it left its records. Async-signal-safe, but needs the
/// lock.
pub(super) fn instance_removed(_: &SetupLock, pid: libc::pid_t) {
    let word = INSTANCES.load(Ordering::SeqCst);
    if word as u32 as libc::pid_t != pid || word >> 32 == 0 {
        debug_assert!(false, "instance_removed without instance_added");
        return;
    }
    let live = (word >> 32) - 1;
    INSTANCES.store(u64::from(pid as u32) | live << 32, Ordering::SeqCst);
    if live == 0 {
        FOREGROUND.store(0, Ordering::SeqCst);
    }
}

/// In a fork child: forget the parent's records, its armed flag, its
/// instance count and its foreground scopes (none of them is the child's).
/// Async-signal-safe (atomic stores only); runs in the `pthread_atfork`
/// child handler.
pub(super) fn forget_parent() {
    // Pid 0 is no process's: the child finds every record empty.
    for slot in &RECORDS {
        slot.store(0, Ordering::SeqCst);
    }
    ARMED.store(0, Ordering::SeqCst);
    INSTANCES.store(0, Ordering::SeqCst);
    FOREGROUND.store(0, Ordering::SeqCst);
}

/// Turn the default after drop off for every instance of this process, now
/// and later. Async-signal-safe.
pub(super) fn disable_default_after_drop_globally() {
    NO_DEFAULT_ANYWHERE.store(true, Ordering::SeqCst);
}

/// Whether this process is armed. Async-signal-safe.
pub(super) fn is_armed() -> bool {
    ARMED.load(Ordering::SeqCst) == pid()
}

/// Disarm this process. Async-signal-safe.
pub(super) fn disarm() {
    ARMED.store(0, Ordering::SeqCst);
}

/// The depth of process `pid`'s foreground scopes in the [`FOREGROUND`]
/// word `word`: 0 when the word is another process's.
fn foreground_depth(word: u64, pid: libc::pid_t) -> u64 {
    if word as u32 as libc::pid_t == pid {
        word >> 32
    } else {
        0
    }
}

/// The [`FOREGROUND`] word for `depth` scopes of process `pid`.
fn foreground_word(pid: libc::pid_t, depth: u64) -> u64 {
    u64::from(pid as u32) | depth << 32
}

/// Open a foreground scope in process `pid`. Async-signal-safe.
pub(super) fn foreground_enter(pid: libc::pid_t) {
    let _ = FOREGROUND.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |word| {
        let depth = foreground_depth(word, pid);
        Some(foreground_word(
            pid,
            depth.saturating_add(1).min(u32::MAX.into()),
        ))
    });
}

/// Close a foreground scope opened by `owner`; a scope inherited from
/// another process (a fork parent, or an exited process whose pid this one
/// was handed) changes nothing. Async-signal-safe.
pub(super) fn foreground_leave(owner: Owner) {
    if !owner.is_current() {
        return;
    }
    let pid = owner.pid();
    let _ = FOREGROUND.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |word| {
        let depth = foreground_depth(word, pid);
        (depth > 0).then(|| foreground_word(pid, depth - 1))
    });
}

/// Whether a foreground scope of process `pid` takes `signal` out of the
/// arm/kill/default decisions. Async-signal-safe.
fn foreground_covers(signal: Signal, pid: libc::pid_t) -> bool {
    if !matches!(signal, Signal::Interrupt | Signal::Quit) {
        return false;
    }
    foreground_depth(FOREGROUND.load(Ordering::SeqCst), pid) > 0
}

/// The fallback action: every decision of one delivery (module docs).
/// Async-signal-safe.
pub(super) fn on_delivery(signal: Signal) {
    let pid = pid();
    let record = Record::load(&RECORDS[signal.index()]);
    if foreground_covers(signal, pid) {
        return;
    }
    let ours = record.pid() == pid;
    if !ours || record.live() == 0 {
        // No `Interrupts` of this process handles the signal. In a process
        // that never installed one (a fork child), give it the default
        // action it would have had without this crate.
        let default = if ours {
            record.0 & DEFAULT_WHEN_IDLE != 0
        } else {
            default_at_start(signal)
        };
        if default && !NO_DEFAULT_ANYWHERE.load(Ordering::SeqCst) {
            die_by_default(signal.as_raw());
        }
        return;
    }
    if record.opt_out() == 0 && ARMED.swap(pid, Ordering::SeqCst) == pid {
        // Armed by an earlier delivery: this is the second Ctrl-C.
        die_by_default(signal.as_raw());
    }
}

/// Restore the default action of `sig`, unblock it on this thread and raise
/// it; `_exit(128 + sig)` if the process is somehow still alive.
/// Async-signal-safe.
pub(super) fn die_by_default(sig: c_int) -> ! {
    // EINVAL for a number that is not a signal: `_exit` below handles it.
    let _ = sys::set_default_disposition(sig);
    sys::unblock(sig);
    // With the default action and the signal unblocked on this thread,
    // POSIX delivers it before `raise` returns, and the process ends.
    sys::raise(sig);
    // Only reached if the signal could not end the process: wrap instead of
    // overflowing, the status keeps 8 bits anyway.
    sys::exit_now(128i32.wrapping_add(sig))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_keeps_pid_counts_and_flags_apart() {
        let r = Record::new(i32::MAX, FIELD, 3, NO_DEFAULT);
        assert_eq!((r.pid(), r.live(), r.opt_out()), (i32::MAX, FIELD, 3));
        assert_eq!(r.0 & (NO_DEFAULT | DEFAULT_WHEN_IDLE), NO_DEFAULT);
        let r = Record::new(1, 0, FIELD, DEFAULT_WHEN_IDLE);
        assert_eq!((r.pid(), r.live(), r.opt_out()), (1, 0, FIELD));
        assert_eq!(r.0 & (NO_DEFAULT | DEFAULT_WHEN_IDLE), DEFAULT_WHEN_IDLE);
    }

    /// `MAX_INSTANCES` instances fit in one record (its 15-bit fields), the
    /// next one is refused with a clear error and changes nothing, and a
    /// place freed by a leave can be taken again. On a record of its own
    /// (a slot that is not one of the process's), so the process's real
    /// records and the fd limit (two descriptors per instance) stay out of
    /// it.
    #[test]
    fn a_record_holds_max_instances_and_refuses_one_more_without_changing() {
        let slot = AtomicU64::new(0);
        let pid = libc::pid_t::MAX; // above PID_MAX_LIMIT: no process's record
        let signal = Signal::User1;
        // Every other instance opts out of "second signal kills".
        for i in 0..MAX_INSTANCES {
            join_record(&slot, signal, pid, i % 2 == 0, true).unwrap();
        }
        let full = Record::load(&slot);
        assert_eq!((full.pid(), full.live()), (pid, MAX_INSTANCES));
        assert_eq!(full.opt_out(), MAX_INSTANCES / 2);
        let error = join_record(&slot, signal, pid, true, false).unwrap_err();
        assert_eq!(
            error.to_string(),
            "SIGUSR1: already handled by 32767 Interrupts in this process"
        );
        assert_eq!(
            Record::load(&slot),
            full,
            "a refused join changed the record"
        );

        leave_record(&slot, signal, pid, false);
        join_record(&slot, signal, pid, false, true).unwrap();
        assert_eq!(Record::load(&slot), full);
        assert!(join_record(&slot, signal, pid, true, true).is_err());

        for i in 0..MAX_INSTANCES {
            leave_record(&slot, signal, pid, i % 2 == 0);
        }
        let idle = Record::load(&slot);
        assert_eq!((idle.live(), idle.opt_out()), (0, 0));
    }
}
