//! One slot per fd number: a single atomic word and its state machine.
//!
//! ```text
//!   bit 63 ............ 18 | 17 ...... 5 | 4 .. 2 | 1 0
//!        generation (46)   |  pins (13)  |  kind  | state
//! ```
//!
//! The kind is [`FdKind`], copied from `T::KIND` at `track` time: what
//! `close_all` may do to release the descriptor. 13 pin bits allow 8 191
//! simultaneous visits of one entry. A walk (or `close_all`) that finds the
//! count saturated visits without a pin of its own if a walk of its own
//! thread already pins that entry (that visit outlasts the nested one, so
//! its pin keeps the number reserved: waiting would wait for itself), and
//! otherwise backs off until a pin goes.
//!
//! States and who owns the number in each:
//!
//! | state     | meaning                                   | owner of the number |
//! |-----------|-------------------------------------------|---------------------|
//! | `Free`    | the table claims nothing                  | not the table       |
//! | `Live`    | tracked; a `Tracked` handle holds it      | the handle          |
//! | `Closing` | handle gone while pinned by a walker      | the table: the last unpin closes it |
//! | `Retired` | `close_all` swapped in a placeholder      | the handle (closes the placeholder) |
//!
//! A `Closing` entry has no use for its kind (nothing releases it any more), so
//! its kind field says instead whether a `close_all` has counted it as released
//! ([`Word::counted`]): set when a retired entry's handle closes under a pin
//! (the `close_all` that retired it counted it), or by a `close_all` that
//! released the entry while its handle closed under that call's own pin. So
//! each entry counts in at most one [`CloseAllReport`](crate::CloseAllReport),
//! however many `close_all` calls hold it at once.
//!
//! Transitions (every one a single compare-and-swap):
//!
//! ```text
//!   Free ──track──▶ Live ──close, pins = 0──▶ Free          (then close(2))
//!                   Live ──close, pins > 0──▶ Closing ──last unpin──▶ Free (then close(2))
//!                   Live ──close_all────────▶ Retired ──drop──▶ Free / Closing (counted)
//!                         (its own pin dropped in the same step; a borrowed
//!                          pin, on a saturated slot, leaves the count alone)
//!                   Closing ──close_all released it under its pin──▶ Closing (counted)
//!                   Live/Retired ──into_inner / try_into_inner, pins = 0──▶ Free (no close)
//!   (fork child) any ──retire_all_in_child──▶ same state, pins = the forking
//!                      thread's own; Closing with none left ──▶ Free (then close(2))
//! ```
//!
//! `into_inner` never takes a pinned entry (a walk visiting it, a `close_all`
//! releasing it): the number it hands back could be closed (and recycled)
//! under the pin holder. It waits for other threads' pins and refuses
//! (panics) for a visit of its own thread; `try_into_inner` refuses any pin.
//! The pin logic lives in `pins.rs`.
//!
//! The generation is a stamp given at `track` time: the table's walk epoch,
//! which every walk increments as it starts. A walk that started at epoch `e`
//! visits only entries stamped `<= e`, so nothing tracked after it began
//! (including by its own callbacks). The same stamp makes a pin safe against
//! recycling: an entry that replaces a pinned one in the same slot was tracked
//! after the pinning walk began, so its stamp differs, and the stale unpin
//! touches nothing.

use crate::sync::{AtomicU64, Ordering};
use crate::trackable::FdKind;

const STATE_BITS: u32 = 2;
const KIND_BITS: u32 = 3;
const KIND_SHIFT: u32 = STATE_BITS;
const PIN_BITS: u32 = 13;
const PIN_SHIFT: u32 = KIND_SHIFT + KIND_BITS;
const GEN_SHIFT: u32 = PIN_SHIFT + PIN_BITS;
const STATE_MASK: u64 = (1 << STATE_BITS) - 1;
const KIND_MASK: u64 = ((1 << KIND_BITS) - 1) << KIND_SHIFT;
const PIN_MASK: u64 = ((1 << PIN_BITS) - 1) << PIN_SHIFT;
/// The kind bits of a `Closing` entry that a `close_all` counted as
/// released: all set, which no [`FdKind`] encodes to.
const COUNTED: u64 = KIND_MASK;
/// Largest pin count a slot takes. The loom build saturates at 2, so that
/// its models reach the saturated paths with a nested walk.
#[cfg(not(fdtable_loom))]
pub(crate) const MAX_PINS: u64 = (1 << PIN_BITS) - 1;
#[cfg(fdtable_loom)]
pub(crate) const MAX_PINS: u64 = 2;
/// Generations live in 46 bits and wrap; comparisons are modular.
pub(crate) const GEN_MASK: u64 = (1 << (64 - GEN_SHIFT)) - 1;

/// Who holds a slot's number, as described in the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SlotState {
    Free = 0,
    Live = 1,
    Closing = 2,
    Retired = 3,
}

/// A decoded snapshot of a slot.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Word(u64);

impl Word {
    pub(crate) const FREE: Word = Word(0);

    pub(crate) fn new(state: SlotState, kind: FdKind, pins: u64, gen: u64) -> Word {
        debug_assert!(pins <= MAX_PINS);
        Word(
            ((gen & GEN_MASK) << GEN_SHIFT)
                | (pins << PIN_SHIFT)
                | (u64::from(kind.to_bits()) << KIND_SHIFT)
                | state as u64,
        )
    }

    pub(crate) fn state(self) -> SlotState {
        match self.0 & STATE_MASK {
            0 => SlotState::Free,
            1 => SlotState::Live,
            2 => SlotState::Closing,
            _ => SlotState::Retired,
        }
    }

    pub(crate) fn kind(self) -> FdKind {
        FdKind::from_bits(((self.0 & KIND_MASK) >> KIND_SHIFT) as u8)
    }

    pub(crate) fn pins(self) -> u64 {
        (self.0 & PIN_MASK) >> PIN_SHIFT
    }

    pub(crate) fn gen(self) -> u64 {
        self.0 >> GEN_SHIFT
    }

    pub(crate) fn with_state(self, state: SlotState) -> Word {
        Word((self.0 & !STATE_MASK) | state as u64)
    }

    /// Whether this `Closing` entry was counted as released by a
    /// `close_all` (see the module docs). Meaningless in other states.
    pub(crate) fn counted(self) -> bool {
        self.0 & KIND_MASK == COUNTED
    }

    /// This `Closing` word, marked as counted by a `close_all`.
    pub(crate) fn with_counted(self) -> Word {
        debug_assert_eq!(self.state(), SlotState::Closing);
        Word((self.0 & !KIND_MASK) | COUNTED)
    }

    pub(crate) fn with_pins(self, pins: u64) -> Word {
        debug_assert!(pins <= MAX_PINS);
        Word((self.0 & !PIN_MASK) | (pins << PIN_SHIFT))
    }

    /// Whether the table holds this number (any state but `Free`).
    pub(crate) fn is_published(self) -> bool {
        self.state() != SlotState::Free
    }

    /// Whether this is still the entry of generation `gen` with its handle
    /// alive (`Live` or `Retired`): what a handle's close or take-back may
    /// unregister.
    pub(crate) fn is_handle_of(self, gen: u64) -> bool {
        self.gen() == gen && matches!(self.state(), SlotState::Live | SlotState::Retired)
    }
}

impl std::fmt::Debug for Word {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.state() == SlotState::Closing && self.counted() {
            return write!(
                f,
                "Closing(counted, pins={}, gen={})",
                self.pins(),
                self.gen()
            );
        }
        write!(
            f,
            "{:?}({:?}, pins={}, gen={})",
            self.state(),
            self.kind(),
            self.pins(),
            self.gen()
        )
    }
}

/// Whether an entry stamped `gen` belongs to a walk that started at `epoch`
/// (stamps `<= epoch`). Modular, so it survives wrap-around as long as fewer
/// than 2^45 walks start while one entry lives.
pub(crate) fn tracked_by(gen: u64, epoch: u64) -> bool {
    let distance = epoch.wrapping_sub(gen) & GEN_MASK;
    distance < (1 << 45)
}

/// One fd number's slot.
#[repr(transparent)]
pub(crate) struct Slot(AtomicU64);

impl Slot {
    #[cfg(fdtable_loom)]
    pub(crate) fn new() -> Slot {
        Slot(AtomicU64::new(0))
    }

    /// Async-signal-safe: one atomic load.
    pub(crate) fn load(&self) -> Word {
        Word(self.0.load(Ordering::Acquire))
    }

    /// Replace `current` with `new`, or return what is there instead.
    pub(crate) fn cas(&self, current: Word, new: Word) -> Result<(), Word> {
        self.0
            .compare_exchange(current.0, new.0, Ordering::AcqRel, Ordering::Acquire)
            .map(drop)
            .map_err(Word)
    }
}

#[cfg(all(test, not(fdtable_loom)))]
mod tests {
    use super::*;

    #[test]
    fn word_round_trips_every_field() {
        for state in [
            SlotState::Free,
            SlotState::Live,
            SlotState::Closing,
            SlotState::Retired,
        ] {
            for kind in FdKind::ALL {
                for pins in [0, 1, 2, MAX_PINS] {
                    for gen in [0, 1, 12345, GEN_MASK] {
                        let w = Word::new(state, kind, pins, gen);
                        assert_eq!(
                            (w.state(), w.kind(), w.pins(), w.gen()),
                            (state, kind, pins, gen)
                        );
                        // The setters touch their own field only.
                        let moved = w.with_pins(MAX_PINS - pins).with_state(SlotState::Closing);
                        assert_eq!(
                            (moved.kind(), moved.pins(), moved.gen()),
                            (kind, MAX_PINS - pins, gen)
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn the_counted_mark_is_no_kind_and_touches_nothing_else() {
        for kind in FdKind::ALL {
            let w = Word::new(SlotState::Closing, kind, 3, 77);
            assert!(!w.counted(), "{kind:?} reads as counted");
            let marked = w.with_counted();
            assert!(marked.counted());
            assert_eq!(
                (marked.state(), marked.pins(), marked.gen()),
                (SlotState::Closing, 3, 77)
            );
            assert!(marked.with_pins(2).counted());
        }
    }

    #[test]
    fn the_free_word_is_all_zero_and_the_generation_keeps_46_bits() {
        assert_eq!(Word::FREE.0, 0);
        assert_eq!(Word::FREE.kind(), FdKind::Unknown);
        assert_eq!(GEN_MASK, (1 << 46) - 1);
        assert_eq!(MAX_PINS, 8191);
    }

    #[test]
    fn generation_order_survives_wraparound() {
        assert!(tracked_by(1, 2));
        assert!(tracked_by(2, 2));
        assert!(!tracked_by(3, 2));
        assert!(tracked_by(GEN_MASK, 1));
        assert!(!tracked_by(1, GEN_MASK));
    }
}
