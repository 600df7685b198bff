//! One slot per fd number: a single atomic word and its state machine.
//!
//! ```text
//!   bit 63 ............ 18 | 17 ...... 2 | 1 0
//!        generation (46)   |  pins (16)  | state
//! ```
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
//! Transitions (every one a single compare-and-swap):
//!
//! ```text
//!   Free ──track──▶ Live ──close, pins = 0──▶ Free          (then close(2))
//!                   Live ──close, pins > 0──▶ Closing ──last unpin──▶ Free (then close(2))
//!                   Live ──close_all────────▶ Retired ──drop──▶ Free / Closing
//!                   Live/Retired ──into_inner, no foreign pin──▶ Free (no close)
//! ```
//!
//! The generation is a stamp given at `track` time: the table's walk epoch,
//! which every walk increments as it starts. A walk that started at epoch `e`
//! visits only entries stamped `<= e`, so nothing tracked after it began
//! (including by its own callbacks). The same stamp makes a pin safe against
//! recycling: an entry that replaces a pinned one in the same slot was tracked
//! after the pinning walk began, so its stamp differs, and the stale unpin
//! touches nothing.

use crate::sync::{AtomicU64, Ordering};

const STATE_BITS: u32 = 2;
const PIN_BITS: u32 = 16;
const GEN_SHIFT: u32 = STATE_BITS + PIN_BITS;
const STATE_MASK: u64 = (1 << STATE_BITS) - 1;
const PIN_MASK: u64 = ((1 << PIN_BITS) - 1) << STATE_BITS;
/// Largest pin count a slot can hold.
pub(crate) const MAX_PINS: u64 = (1 << PIN_BITS) - 1;
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

    pub(crate) fn new(state: SlotState, pins: u64, gen: u64) -> Word {
        debug_assert!(pins <= MAX_PINS);
        Word(((gen & GEN_MASK) << GEN_SHIFT) | (pins << STATE_BITS) | state as u64)
    }

    pub(crate) fn state(self) -> SlotState {
        match self.0 & STATE_MASK {
            0 => SlotState::Free,
            1 => SlotState::Live,
            2 => SlotState::Closing,
            _ => SlotState::Retired,
        }
    }

    pub(crate) fn pins(self) -> u64 {
        (self.0 & PIN_MASK) >> STATE_BITS
    }

    pub(crate) fn gen(self) -> u64 {
        self.0 >> GEN_SHIFT
    }

    pub(crate) fn with_state(self, state: SlotState) -> Word {
        Word::new(state, self.pins(), self.gen())
    }

    pub(crate) fn with_pins(self, pins: u64) -> Word {
        Word::new(self.state(), pins, self.gen())
    }

    /// Whether the table holds this number (any state but `Free`).
    pub(crate) fn is_published(self) -> bool {
        self.state() != SlotState::Free
    }
}

impl std::fmt::Debug for Word {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:?}(pins={}, gen={})",
            self.state(),
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
            for pins in [0, 1, 2, MAX_PINS] {
                for gen in [0, 1, 12345, GEN_MASK] {
                    let w = Word::new(state, pins, gen);
                    assert_eq!((w.state(), w.pins(), w.gen()), (state, pins, gen));
                }
            }
        }
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
