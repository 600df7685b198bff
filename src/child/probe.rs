//! A kernel feature asked about once per process and remembered.

use std::sync::atomic::{AtomicU8, Ordering};

/// Not asked yet.
const UNKNOWN: u8 = 0;
/// The probe said yes and no real call was refused since.
const AVAILABLE: u8 = 1;
/// The probe said no, or a real call was refused (`ENOSYS`, `EPERM`).
const UNAVAILABLE: u8 = 2;

/// Whether a kernel feature may be tried: asked once with a probe that
/// touches no descriptor, then cached. Asked in the parent when a command
/// is configured, so fork children inherit the answer; a child that is
/// refused anyway (a seccomp filter installed by an earlier hook) records
/// it in its own copy with [`refuse`](Probed::refuse).
pub(super) struct Probed {
    state: AtomicU8,
    probe: fn() -> bool,
}

impl Probed {
    /// A feature not asked about yet; `probe` asks the kernel.
    pub(super) const fn new(probe: fn() -> bool) -> Probed {
        Probed {
            state: AtomicU8::new(UNKNOWN),
            probe,
        }
    }

    /// The cached answer, or the probe's, cached. Async-signal-safe when
    /// the probe is.
    pub(super) fn usable(&self) -> bool {
        match self.state.load(Ordering::Relaxed) {
            AVAILABLE => true,
            UNAVAILABLE => false,
            _ => {
                let ok = (self.probe)();
                let state = if ok { AVAILABLE } else { UNAVAILABLE };
                self.state.store(state, Ordering::Relaxed);
                ok
            }
        }
    }

    /// A real call was refused: never try again in this process.
    /// Async-signal-safe (one atomic store).
    pub(super) fn refuse(&self) {
        self.state.store(UNAVAILABLE, Ordering::Relaxed);
    }
}
