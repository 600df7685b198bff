//! Pins: how a walk (or `close_all`) keeps a number reserved while it uses
//! it, and the paths that must respect pins: the last unpin's deferred
//! close, `close_all`'s retire, and taking an entry back out of the table
//! (`into_inner`, `try_into_inner`) without closing it.
//!
//! A pin is one count in the slot word (see `slot.rs`). While an entry has
//! pins, its number is not closed (`close` defers to the last unpin) and not
//! handed back (`into_inner` waits, `try_into_inner` refuses), so a walk's
//! callback can never see it recycled. Which pins are the calling thread's
//! own is in its visit list (`visits.rs`): a thread must never wait for
//! those.

use std::os::fd::RawFd;

use crate::mask::MaskGuard;
use crate::slot::{tracked_by, Slot, SlotState, Word, MAX_PINS};
use crate::sync::backoff;
use crate::sys;
use crate::table::FdTable;
use crate::visits;

/// What [`FdTable::pin`] took: the entry's word as the pin left it (its
/// generation, kind and pins), and whether the pin is in the slot's count
/// (`false`: borrowed from an enclosing visit of this thread).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pin {
    pub(crate) word: Word,
    pub(crate) counted: bool,
}

impl FdTable {
    /// Pin the `Live` slot of `fd`, only if tracked before `epoch` when one
    /// is given.
    ///
    /// When the pin count is saturated ([`MAX_PINS`] visits at once) and a
    /// walk of the calling thread already holds a pin on this very entry,
    /// the returned pin is *borrowed* (`counted == false`): nothing is added
    /// to the slot, and the caller relies on that enclosing visit, which
    /// cannot end before the caller's use does, to keep the number reserved.
    /// Waiting instead would wait for a pin only this thread can release.
    /// Otherwise a saturated slot is waited on until some pin goes.
    pub(crate) fn pin(&self, slot: &Slot, fd: RawFd, epoch: Option<u64>) -> Option<Pin> {
        let mut round = 0;
        let mut w = slot.load();
        loop {
            let in_walk = epoch.is_none_or(|epoch| tracked_by(w.gen(), epoch));
            if w.state() != SlotState::Live || !in_walk {
                return None;
            }
            if w.pins() == MAX_PINS {
                if visits::pins_held_here(self.id(), fd, w.gen()) > 0 {
                    return Some(Pin {
                        word: w,
                        counted: false,
                    });
                }
                backoff(round);
                round += 1;
                w = slot.load();
                continue;
            }
            let pinned = w.with_pins(w.pins() + 1);
            match slot.cas(w, pinned) {
                Ok(()) => {
                    return Some(Pin {
                        word: pinned,
                        counted: true,
                    })
                }
                Err(now) => w = now,
            }
        }
    }

    /// Drop one pin of generation `gen`; the last pin of a `Closing` entry
    /// closes the number.
    pub(crate) fn unpin(&self, slot: &Slot, fd: RawFd, gen: u64) {
        let mut mask = None;
        loop {
            let w = slot.load();
            if w.state() == SlotState::Free || w.gen() != gen || w.pins() == 0 {
                // Released by `into_inner` on this thread; nothing is ours.
                return;
            }
            if w.state() == SlotState::Closing && w.pins() == 1 {
                mask.get_or_insert_with(MaskGuard::new);
                if slot.cas(w, Word::FREE).is_ok() {
                    // Unpublished; now the number may go back to the kernel.
                    if sys::close(fd).is_err() {
                        self.count_swallowed();
                    }
                    return;
                }
            } else if slot.cas(w, w.with_pins(w.pins() - 1)).is_ok() {
                return;
            }
        }
    }

    /// How many visits of `fd` (generation `gen`) the calling thread's walks
    /// have in progress. Async-signal-safe.
    pub(crate) fn visits_here(&self, fd: RawFd, gen: u64) -> u64 {
        visits::pins_held_here(self.id(), fd, gen)
    }

    /// Unregister `fd` without closing it once no walk visits it: the path
    /// behind `Tracked::into_inner`, whose caller has checked that no walk of
    /// its own thread does (that pin would never go). Waits for other
    /// threads' visits.
    pub(crate) fn forget_entry(&self, fd: RawFd, gen: u64) {
        self.forget_when_pins_at_most(fd, gen, 0);
    }

    /// Unregister `fd` without closing it once other threads' walks no longer
    /// visit it, even if a walk of this thread does (that walk's unpin then
    /// finds the slot gone and touches nothing). For the paths that must
    /// neither panic nor wait for themselves: a panicking `into_owned_fd` and
    /// a `Trackable` that handed back another descriptor. The number may stay
    /// open under this thread's callback or be closed under it: either way
    /// the table no longer acts on it.
    pub(crate) fn forget_entry_leniently(&self, fd: RawFd, gen: u64) {
        let own = visits::pins_held_here(self.id(), fd, gen);
        self.forget_when_pins_at_most(fd, gen, own);
    }

    fn forget_when_pins_at_most(&self, fd: RawFd, gen: u64, allowed: u64) {
        let mut round = 0;
        while !self.try_forget(fd, gen, allowed) {
            backoff(round);
            round = round.saturating_add(1);
        }
    }

    /// Unregister `fd` without closing it unless any walk (this thread's
    /// included) is visiting it; returns `false` and changes nothing in that
    /// case. The path behind `Tracked::try_into_inner`.
    pub(crate) fn try_forget_entry(&self, fd: RawFd, gen: u64) -> bool {
        self.try_forget(fd, gen, 0)
    }

    /// Unregister `fd` (generation `gen`) without closing it if it has at
    /// most `allowed` pins. Returns whether the entry is gone.
    fn try_forget(&self, fd: RawFd, gen: u64, allowed: u64) -> bool {
        let Some(slot) = self.slot(fd) else {
            return true;
        };
        loop {
            let w = slot.load();
            if !w.is_handle_of(gen) {
                return true;
            }
            if w.pins() > allowed {
                return false;
            }
            if slot.cas(w, Word::FREE).is_ok() {
                if w.state() == SlotState::Live {
                    self.count_unpublished_live();
                }
                return true;
            }
        }
    }

    /// Drop `close_all`'s pin on an entry it tried to release, and settle
    /// how the entry counts in its report.
    ///
    /// If `release` succeeded (the file is released) and the entry is still
    /// `Live`, mark it `Retired` in the same step as the unpin. If its
    /// handle was closed while the pin held it (`Closing`, its close
    /// deferred behind the pin), the file was released all the same: mark
    /// it counted (see `slot.rs`), unless another `close_all` already did,
    /// then unpin, which performs the deferred close if this was the last
    /// pin. Any other case is a plain [`unpin`](Self::unpin). A borrowed pin
    /// (see [`pin`](Self::pin)) is not in the slot: only the state changes,
    /// and nothing is unpinned.
    ///
    /// `pin.word` is the word as the pin left it: the likely current value,
    /// so the common case is one compare-and-swap and no extra load.
    pub(crate) fn retire_and_unpin(
        &self,
        slot: &Slot,
        fd: RawFd,
        pin: Pin,
        released: bool,
    ) -> Settled {
        let pinned = pin.word;
        let mut settled = Settled::NotCounted;
        if released {
            let mut w = pinned;
            loop {
                // The pin keeps the entry ours, so this holds, except in a
                // fork child made by a signal handler that interrupted this
                // very call between its pin and here (`retire_all_in_child`
                // documents that as unsupported): then leave the slot alone.
                let ours = w.gen() == pinned.gen() && (w.pins() > 0 || !pin.counted);
                if !ours {
                    break;
                }
                let next = match w.state() {
                    SlotState::Live => {
                        let pins = if pin.counted { w.pins() - 1 } else { w.pins() };
                        w.with_state(SlotState::Retired).with_pins(pins)
                    }
                    SlotState::Closing if !w.counted() => w.with_counted(),
                    // Retired, or counted, by another `close_all`.
                    _ => break,
                };
                match slot.cas(w, next) {
                    Ok(()) if w.state() == SlotState::Live => return Settled::Retired,
                    Ok(()) => {
                        settled = Settled::ReleasedClosed;
                        break;
                    }
                    Err(now) => w = now,
                }
            }
        }
        if pin.counted {
            self.unpin(slot, fd, pinned.gen());
        }
        settled
    }
}

/// How [`FdTable::retire_and_unpin`] settled an entry `close_all` held: what
/// the entry adds to the report and to the live count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Settled {
    /// Released and retired by this call (`Live` to `Retired`): one more
    /// released, and one the caller takes off the live count
    /// ([`count_retired_live`](FdTable::count_retired_live), batched).
    Retired,
    /// Released by this call while its handle closed it under the call's
    /// pin: one more released; the close already took it off the live
    /// count.
    ReleasedClosed,
    /// Not this call's to count: its release failed, or another `close_all`
    /// retired or counted it first.
    NotCounted,
}
