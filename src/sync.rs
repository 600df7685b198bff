//! The atomics the table is built from, behind one seam.
//!
//! Normal builds use `core::sync::atomic`; `RUSTFLAGS="--cfg fdtable_loom"` swaps in
//! `loom`'s model-checked atomics so the slot state machine can be explored
//! exhaustively (see `tests/loom.rs`). Every atomic the table's state
//! machine is built from (slots, chunk pointers, the walk epoch, the seal,
//! the live count, the swallowed-error count) comes from here, and so do the
//! two `SeqCst` fences that order the seal against `track` (loom models
//! `SeqCst` fences exactly, `SeqCst` loads and stores only as `AcqRel`: the
//! seal's argument rests on the fences alone). Process-wide flags
//! that no model needs to explore name `core`/`std` atomics directly: the
//! placeholder's number (`placeholder.rs`), the counter's stripe assignment
//! (`counter.rs`), the child path's probe caches (`child/close.rs`,
//! `child/close_other.rs`), and the
//! signal side's records, counts and handler bookkeeping
//! (`signals/policy.rs`, `signals/handler.rs`, `signals/owner.rs`,
//! `signals/shared.rs`, `signals/pipe.rs`).

#[cfg(fdtable_loom)]
pub(crate) use loom::sync::atomic::{
    fence, AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering,
};

#[cfg(not(fdtable_loom))]
pub(crate) use core::sync::atomic::{
    fence, AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering,
};

/// Back off while waiting for another thread to release a pin.
///
/// Not async-signal-safe (it may sleep). Three paths wait: `into_inner`
/// (for other threads' visits), a pin of an entry whose count is saturated
/// (`MAX_PINS` visits at once, none of them this thread's), and a close or
/// drop whose conversion panicked, lost the descriptor or handed back
/// another one (the entry is unregistered once other threads' visits end).
pub(crate) fn backoff(round: u32) {
    #[cfg(fdtable_loom)]
    {
        let _ = round;
        loom::thread::yield_now();
    }
    #[cfg(not(fdtable_loom))]
    {
        if round < 64 {
            std::hint::spin_loop();
        } else if round < 128 {
            std::thread::yield_now();
        } else {
            std::thread::sleep(std::time::Duration::from_micros(50));
        }
    }
}
