//! [`Registration`]: one instance's actions, registered with signal-hook
//! after each signal's fallback, and its place in the process-wide records.
//!
//! Install adds the instance signal by signal: the action first, then the
//! record counts it live; drop (or a failed install) undoes it the other
//! way round, the record first, then the action. So a delivery never finds
//! a signal counted as handled with no action to count it (see `policy.rs`).

use std::io;
use std::sync::Arc;

use signal_hook::SigId;

use super::handler;
use super::owner::Owner;
use super::policy::{self, SetupLock};
use super::shared::Shared;
use super::signal::{Signal, COUNT};

/// An instance's registered actions and its counts in the records.
pub(super) struct Registration {
    /// The process that registered; only it has records to leave.
    installer: Owner,
    /// Per [`Signal::index`]: the instance's action for the signal.
    actions: [Option<SigId>; COUNT],
    /// The instance asked for "second signal kills".
    kills: bool,
    /// Counted among the process's live instances
    /// ([`policy::instance_added`]), which a successful install does last.
    counted: bool,
}

impl Registration {
    /// Nothing registered yet, for an instance of `installer`.
    /// Async-signal-safe (no allocation).
    pub(super) fn new(installer: Owner, kills: bool) -> Registration {
        Registration {
            installer,
            actions: [None; COUNT],
            kills,
            counted: false,
        }
    }

    /// Whether the instance asked for "second signal kills".
    /// Async-signal-safe.
    pub(super) fn kills(&self) -> bool {
        self.kills
    }

    /// Register the instance's action for `signal` (after the signal's
    /// fallback: registering the action takes its proof), then count the
    /// instance live in the signal's record, with its choice of the default
    /// after drop (which only the record keeps). On error nothing of this
    /// call stays registered or counted. Not async-signal-safe.
    pub(super) fn add(
        &mut self,
        setup: &SetupLock,
        signal: Signal,
        shared: &Arc<Shared>,
        default_after_drop: bool,
    ) -> io::Result<()> {
        let fallback = handler::register_fallback(setup, signal)?;
        let shared = Arc::clone(shared);
        // SAFETY: `on_signal` makes only async-signal-safe calls, never
        // allocates, takes no lock and never panics (indexes are `Signal`
        // indexes).
        let id = unsafe {
            handler::register_action(fallback, move |info| shared.on_signal(signal, info))
        }?;
        // Live only once the action exists: a delivery before this line
        // finds the signal unhandled (and this action counts it as an
        // event); none finds it handled with no action to count it.
        let pid = self.installer.pid();
        if let Err(error) = policy::join(setup, signal, pid, self.kills, default_after_drop) {
            handler::unregister_action(id);
            return Err(error);
        }
        self.actions[signal.index()] = Some(id);
        Ok(())
    }

    /// Count the instance among the process's live instances: the last
    /// step of a successful install. Async-signal-safe, but needs the lock.
    pub(super) fn count_instance(&mut self, setup: &SetupLock) {
        policy::instance_added(setup, self.installer.pid());
        self.counted = true;
    }

    /// In the installing process: leave every record and unregister every
    /// action (in that order, per signal), then stop counting the instance.
    /// Leaves nothing to do for a later call. Not async-signal-safe
    /// (signal-hook's unregister locks and frees).
    pub(super) fn withdraw(&mut self, setup: &SetupLock) {
        debug_assert!(self.installer.is_current(), "withdraw in another process");
        let pid = self.installer.pid();
        for signal in Signal::ALL {
            let Some(id) = self.actions[signal.index()].take() else {
                continue;
            };
            // Leave before unregistering: once the action is gone, the
            // signal must no longer count this instance as live.
            policy::leave(setup, signal, pid, self.kills);
            handler::unregister_action(id);
        }
        if std::mem::take(&mut self.counted) {
            policy::instance_removed(setup, pid);
        }
    }

    /// What the instance's drop does: [`withdraw`](Registration::withdraw)
    /// under the setup lock in the installing process; in a fork child that
    /// drops its parent's instance, only unregister the actions (the child
    /// has no record of it to update, and takes no lock that another parent
    /// thread may have held at fork time). Takes no lock when nothing is
    /// registered (a failed install's drop, under the lock it holds). Not
    /// async-signal-safe.
    pub(super) fn end(&mut self) {
        if !self.counted && self.actions.iter().all(Option::is_none) {
            return;
        }
        if self.installer.is_current() {
            let setup = policy::lock_setup();
            self.withdraw(&setup);
        } else {
            for id in self.actions.iter_mut().filter_map(Option::take) {
                handler::unregister_action(id);
            }
            self.counted = false;
        }
    }
}
