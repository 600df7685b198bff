//! [`StripedCount`]: a counter that threads update without sharing a cache
//! line.
//!
//! `FdTable::len` must be cheap to read and cheap to keep: a single atomic
//! that every `track` and every close increments or decrements would bounce
//! one cache line between all threads that churn descriptors. Each thread
//! instead adds to one of a few padded stripes, picked once per thread; a read
//! sums them.

use crate::sync::{AtomicUsize, Ordering};

#[cfg(not(fdtable_loom))]
const STRIPES: usize = 16;
#[cfg(fdtable_loom)]
const STRIPES: usize = 1;

/// One stripe, alone on its cache line (128 bytes covers adjacent-line
/// prefetching on x86 and the 128-byte lines of some ARM cores).
#[repr(align(128))]
struct Stripe(AtomicUsize);

/// A wrapping sum of per-stripe deltas.
pub(crate) struct StripedCount {
    stripes: [Stripe; STRIPES],
}

#[cfg(not(fdtable_loom))]
fn my_stripe() -> usize {
    use std::cell::Cell;
    static NEXT: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);
    thread_local! {
        // `const` and destructor-free: usable from TLS destructors and
        // signal handlers, never lazily registered.
        static STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    STRIPE.with(|s| {
        let mut i = s.get();
        if i == usize::MAX {
            i = NEXT.fetch_add(1, core::sync::atomic::Ordering::Relaxed) % STRIPES;
            s.set(i);
        }
        i
    })
}

#[cfg(fdtable_loom)]
fn my_stripe() -> usize {
    0
}

impl StripedCount {
    #[cfg(not(fdtable_loom))]
    pub(crate) const fn new() -> StripedCount {
        StripedCount {
            stripes: [const { Stripe(AtomicUsize::new(0)) }; STRIPES],
        }
    }

    #[cfg(fdtable_loom)]
    pub(crate) fn new() -> StripedCount {
        StripedCount {
            stripes: std::array::from_fn(|_| Stripe(AtomicUsize::new(0))),
        }
    }

    /// Async-signal-safe.
    pub(crate) fn add(&self) {
        self.stripes[my_stripe()].0.fetch_add(1, Ordering::Relaxed);
    }

    /// Async-signal-safe.
    pub(crate) fn sub(&self) {
        self.sub_n(1);
    }

    /// Subtract `n` at once (one atomic operation for a whole batch).
    /// Async-signal-safe.
    pub(crate) fn sub_n(&self, n: usize) {
        if n > 0 {
            self.stripes[my_stripe()].0.fetch_sub(n, Ordering::Relaxed);
        }
    }

    /// Make the sum exactly `n`: the fork-child reset, where the calling
    /// thread is the only one (a concurrent update could be lost).
    /// Async-signal-safe.
    pub(crate) fn reset_to(&self, n: usize) {
        for (i, stripe) in self.stripes.iter().enumerate() {
            stripe
                .0
                .store(if i == 0 { n } else { 0 }, Ordering::Relaxed);
        }
    }

    /// The sum, clamped at zero: stripes are read one by one, so a snapshot
    /// taken while other threads update may be transiently off, never absurd.
    /// Async-signal-safe.
    pub(crate) fn get(&self) -> usize {
        let sum = self.stripes.iter().fold(0usize, |acc, s| {
            acc.wrapping_add(s.0.load(Ordering::Relaxed))
        });
        if (sum as isize) < 0 {
            0
        } else {
            sum
        }
    }
}
