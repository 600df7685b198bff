//! [`AsyncInterrupts`]: the receives of an [`Interrupts`] as futures on a
//! tokio runtime (feature `tokio`).
//!
//! The self-pipe's read end is registered with tokio's reactor through
//! `AsyncFd`; a receive waits for it to become readable, then takes what is
//! pending with [`Interrupts::try_recv`]. Counts live in the instance's
//! atomics and the pipe only wakes, so the pattern is the usual one for an
//! edge-triggered reactor: drain, then clear the readiness that was seen.
//! tokio clears readiness only if no newer event arrived since the guard
//! was taken (it compares the event's tick), so a byte written between the
//! drain and the clear keeps the descriptor ready: no wake-up is lost.

use std::fmt;
use std::io;
use std::mem::ManuallyDrop;
use std::os::fd::{AsRawFd, OwnedFd};
use std::task::{ready, Context, Poll};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::runtime::{Handle, Id};

use super::close::closed_error;
use super::handler;
use super::interrupts::Interrupts;
use super::received::Received;
use crate::sys;

/// The operation the receives' errors name.
const RECV: &str = "AsyncInterrupts::recv";

/// An [`Interrupts`] whose receive is a future: `interrupts.recv().await`
/// on any tokio runtime (multi-thread or current-thread). Feature `tokio`.
///
/// It owns the `Interrupts` (every convention of which still applies: a
/// second signal kills, die by the signal, the default action after drop)
/// and registers its self-pipe with the runtime's reactor. Counts are never
/// lost: every delivery is counted in the handler before the wake-up byte is
/// written, and a receive reports each signal's count since its last
/// report, exactly as [`Interrupts::try_recv`] does.
///
/// # Examples
/// The async form of the pattern in [`Interrupts`]: wait for Ctrl-C next to
/// the program's own work, clean up, die by the signal.
/// ```no_run
/// use fdtable::{AsyncInterrupts, FdTable, Interrupts};
///
/// #[tokio::main]
/// async fn main() -> std::io::Result<()> {
///     let interrupts = AsyncInterrupts::new(Interrupts::install()?)?;
///     let work = tokio::spawn(async { /* serve, copy, ... */ });
///     let received = interrupts.recv().await?;
///     eprintln!("cleaning up after {received}");
///     work.abort(); // cancel the tasks first,
///     let _ = work.await;
///     let report = FdTable::global().close_all(); // then the safety net,
///     eprintln!("released {}", report.released());
///     Interrupts::die_by_signal(received.signal()); // then die by the signal
/// }
/// ```
///
/// A signal raised at the process wakes a waiting task:
/// ```
/// use fdtable::{AsyncInterrupts, Interrupts, Signal};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let interrupts = Interrupts::builder(Signal::User1)
///     .respect_ignored(false)
///     .second_signal_kills(false)
///     .install()?;
/// let interrupts = AsyncInterrupts::new(interrupts)?;
/// // SAFETY: raise has no preconditions; SIGUSR1 is handled.
/// unsafe { libc::raise(libc::SIGUSR1) };
/// let got = interrupts.recv().await?;
/// assert_eq!((got.signal(), got.count()), (Signal::User1, 1));
/// # Ok(())
/// # }
/// ```
///
/// An `AsyncInterrupts` that is dropped at once handles nothing:
/// ```compile_fail
/// #![deny(unused_must_use)]
/// async fn setup() -> std::io::Result<()> {
///     let interrupts = fdtable::Interrupts::install()?;
///     fdtable::AsyncInterrupts::new(interrupts)?; // dropped: handlers removed
///     Ok(())
/// }
/// # fn main() {}
/// ```
///
/// # When to use `tokio::signal` instead
/// `tokio::signal::unix::signal` (or `ctrl_c`) is enough when the program
/// only needs to *notice* a signal and its default action may stay
/// replaced for the rest of the run. `AsyncInterrupts` adds the conventions
/// a program that cleans up after Ctrl-C needs: a second Ctrl-C kills a
/// stuck cleanup at once, ignored-at-start stays ignored, the default action
/// comes back when it is dropped, [`Interrupts::die_by_signal`] for the exit
/// status, counts per signal, and [`CommandExt`](crate::CommandExt) resets
/// its handlers in spawned children. Both register through signal-hook and
/// can coexist (see [`Interrupts`]'s notes on other code).
///
/// # Limitations
/// [`recv`](AsyncInterrupts::recv) checks that the instance can receive
/// (not inherited through `fork`, handles a signal, no handled signal set to
/// `SIG_IGN`/`SIG_DFL` by other code) when it starts and whenever it wakes
/// without a signal, but, unlike the blocking [`Interrupts::recv`], not
/// once a second while it waits: that would need tokio's timer. Call
/// [`Interrupts::check_handlers`] through [`get_ref`](AsyncInterrupts::get_ref)
/// on your own schedule if other code may take a handler over.
///
/// # Fork children
/// A child forked (without `exec`) while an `AsyncInterrupts` exists shares
/// the runtime's epoll instance with the parent, so deregistering the pipe
/// there would remove the *parent's* registration and its receives would
/// never wake again. Dropping (or [`into_inner`](AsyncInterrupts::into_inner))
/// an inherited instance in the child therefore first points the child's
/// copy of the read end's number at another file, so that tokio's
/// deregistration misses (and is ignored): the parent keeps receiving.
/// The inherited instance receives nothing in the child, as
/// [`Interrupts`]' [fork rules](Interrupts#fork-children) say.
#[derive(Debug)]
#[must_use = "dropping an AsyncInterrupts unregisters its handlers at once"]
pub struct AsyncInterrupts {
    /// Taken only by `drop` and `into_inner`, each of which runs once.
    pipe: ManuallyDrop<AsyncFd<Interrupts>>,
    /// The runtime whose reactor the pipe is registered with, to say which
    /// runtime is gone when the reactor fails.
    runtime: Id,
}

impl AsyncInterrupts {
    /// Register `interrupts`' self-pipe with the current tokio runtime.
    ///
    /// Call it from inside a runtime (an `async` function it runs, or under
    /// `Runtime::enter`). The registration stays with that runtime: receive
    /// on it, not on another one.
    ///
    /// Not async-signal-safe (registers with the reactor, allocates).
    ///
    /// # Errors
    /// - Outside a tokio runtime: an error of kind
    ///   [`Other`](io::ErrorKind::Other) saying so;
    /// - the OS error of registering the descriptor (`epoll_ctl(2)`;
    ///   `ENOMEM`, `ENOSPC` at the `max_user_watches` limit).
    ///
    /// On error, `interrupts` is dropped (its handlers are removed, as
    /// after any drop).
    ///
    /// # Panics
    /// In a runtime built without I/O (`Builder::enable_io` not called), as
    /// tokio's own I/O types do.
    pub fn new(interrupts: Interrupts) -> io::Result<AsyncInterrupts> {
        let runtime = match Handle::try_current() {
            Ok(handle) => handle.id(),
            Err(error) => {
                return Err(io::Error::other(format!(
                    "AsyncInterrupts::new must be called inside a tokio runtime: {error}"
                )))
            }
        };
        // SAFETY: the descriptor is the read end of the instance's
        // self-pipe, which `Interrupts` owns and closes only when it is
        // dropped; nothing reachable through `&Interrupts` closes or replaces
        // it, and `as_raw_fd` always names it. `AsyncFd` owns the instance
        // from here until `into_inner` deregisters it (this type never
        // calls `AsyncFd::get_mut`), so the number keeps naming the pipe for
        // the whole registration. The table never holds it: `close_all`
        // cannot swap it.
        let registered = unsafe { AsyncFd::register_with_interest(interrupts, Interest::READABLE) };
        match registered {
            Ok(pipe) => Ok(AsyncInterrupts {
                pipe: ManuallyDrop::new(pipe),
                runtime,
            }),
            Err(error) => Err(error.into_parts().1),
        }
    }

    /// Wait until a handled signal arrives, then report it as
    /// [`Interrupts::try_recv`] does: which signal, and how many deliveries
    /// since it was last reported. Returns at once when one is pending.
    ///
    /// Any number of tasks may wait on one instance at once (share it with
    /// an `Arc`); each signal's count is reported to exactly one of them.
    ///
    /// Not async-signal-safe.
    ///
    /// # Cancel safety
    /// This method is cancel safe. If `recv` is used as the event in a
    /// `tokio::select!` statement and some other branch completes first,
    /// or the future is dropped by a timeout, no signal has been taken: the
    /// counts stay pending for the next receive.
    ///
    /// # Errors
    /// As [`Interrupts::recv`], at once: the instance was inherited through
    /// `fork`, it handles no signal, or other code set one of its signals
    /// to `SIG_IGN` or `SIG_DFL` (checked when it starts and on every
    /// wake-up that finds no signal; see [Limitations](AsyncInterrupts#limitations)).
    /// A [`CloseHandle`](crate::CloseHandle) of the instance
    /// (`interrupts.get_ref().close_handle()`) that was closed ends a
    /// waiting receive, and every later one at once, with an error of kind
    /// [`BrokenPipe`](io::ErrorKind::BrokenPipe).
    ///
    /// When the runtime the instance was registered with (the one
    /// [`new`](AsyncInterrupts::new) ran in) shuts down, its reactor can no
    /// longer wake a receive: an error of kind [`Other`](io::ErrorKind::Other)
    /// that says so, with tokio's error as its source. Awaited from another
    /// runtime after the first one was dropped, the message says to make a
    /// new `AsyncInterrupts` in the running one:
    /// `AsyncInterrupts::new(old.into_inner())` (pending signals are kept).
    ///
    /// # Examples
    /// Cancelled by a timeout, it takes nothing:
    /// ```
    /// use fdtable::{AsyncInterrupts, Interrupts, Signal};
    /// use std::time::Duration;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// let interrupts = Interrupts::builder(Signal::User2)
    ///     .respect_ignored(false)
    ///     .second_signal_kills(false)
    ///     .install()?;
    /// let interrupts = AsyncInterrupts::new(interrupts)?;
    /// let timed_out = tokio::time::timeout(Duration::from_millis(10), interrupts.recv()).await;
    /// assert!(timed_out.is_err()); // nothing arrived; nothing was taken
    /// // SAFETY: raise has no preconditions; SIGUSR2 is handled.
    /// unsafe { libc::raise(libc::SIGUSR2) };
    /// assert_eq!(interrupts.recv().await?.signal(), Signal::User2);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn recv(&self) -> io::Result<Received> {
        let interrupts = self.pipe.get_ref();
        interrupts.check_can_wait(RECV, true)?;
        if let Some(received) = interrupts.try_recv() {
            return Ok(received);
        }
        loop {
            interrupts
                .signals()
                .try_for_each(handler::check_reachable)?;
            // The only await: dropping the future here has taken nothing.
            let mut guard = self
                .pipe
                .readable()
                .await
                .map_err(|e| self.reactor_failed(e))?;
            if interrupts.is_closed() {
                // Before the clear: the close's byte stays, so every other
                // waiting receive wakes up too.
                return Err(closed_error(RECV));
            }
            if let Some(received) = interrupts.try_recv() {
                return Ok(received);
            }
            // Drained and nothing pending: forget the readiness we saw (a
            // newer event survives the clear, see the module docs).
            guard.clear_ready();
        }
    }

    /// The poll form of [`recv`](AsyncInterrupts::recv), for hand-written
    /// futures and streams: `Poll::Ready` with what `recv` would return, or
    /// `Poll::Pending` with `cx`'s waker registered.
    ///
    /// Only the waker of the most recent call is woken (tokio's rule for
    /// `AsyncFd::poll_read_ready`), so use it from one task; several tasks
    /// waiting at once use `recv`. Cancel safe like `recv`: `Pending` has
    /// taken nothing.
    ///
    /// Not async-signal-safe.
    ///
    /// # Errors
    /// As [`recv`](AsyncInterrupts::recv).
    pub fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<io::Result<Received>> {
        let interrupts = self.pipe.get_ref();
        interrupts.check_can_wait(RECV, true)?;
        if let Some(received) = interrupts.try_recv() {
            return Poll::Ready(Ok(received));
        }
        loop {
            interrupts
                .signals()
                .try_for_each(handler::check_reachable)?;
            let mut guard =
                ready!(self.pipe.poll_read_ready(cx)).map_err(|e| self.reactor_failed(e))?;
            if interrupts.is_closed() {
                return Poll::Ready(Err(closed_error(RECV)));
            }
            if let Some(received) = interrupts.try_recv() {
                return Poll::Ready(Ok(received));
            }
            // As in `recv`; the next `poll_read_ready` registers the waker
            // and returns `Pending` unless a newer event arrived.
            guard.clear_ready();
        }
    }

    /// Explain a failed readiness wait. tokio fails it only once the
    /// reactor the pipe is registered with has shut down, and says "A Tokio
    /// 1.x context was found, but it is being shutdown" even when the
    /// runtime running the receive is healthy and the gone one is another.
    #[cold]
    fn reactor_failed(&self, tokio_error: io::Error) -> io::Error {
        let here = Handle::try_current().ok().map(|handle| handle.id());
        io::Error::new(
            tokio_error.kind(),
            ReactorGone {
                this_runtime: here == Some(self.runtime),
                tokio_error,
            },
        )
    }

    /// Take one pending signal without waiting: [`Interrupts::try_recv`].
    /// `None` when nothing is pending.
    ///
    /// Async-signal-safe.
    #[must_use = "a signal taken is reported only once: dropping the report loses it"]
    pub fn try_recv(&self) -> Option<Received> {
        self.pipe.get_ref().try_recv()
    }

    /// The `Interrupts`, for everything but receiving:
    /// [`signals`](Interrupts::signals), [`ignored`](Interrupts::ignored),
    /// [`check_handlers`](Interrupts::check_handlers),
    /// [`close_handle`](Interrupts::close_handle),
    /// [`foreground_child`](Interrupts::foreground_child). Do not call its
    /// blocking receives from a task: they block the runtime's thread.
    /// (The process-wide [`Interrupts::is_armed`] and
    /// [`Interrupts::disarm`] need no instance.)
    ///
    /// Async-signal-safe.
    pub fn get_ref(&self) -> &Interrupts {
        self.pipe.get_ref()
    }

    /// Deregister from the runtime and hand the `Interrupts` back, with
    /// every pending signal still pending.
    ///
    /// Not async-signal-safe.
    ///
    /// In a fork child, the inherited instance is handed back inert, as
    /// after [`drop`](AsyncInterrupts#fork-children), and the parent's
    /// registration is left alone.
    pub fn into_inner(self) -> Interrupts {
        let mut this = ManuallyDrop::new(self);
        // SAFETY: `this` is never used again and, inside `ManuallyDrop`, its
        // destructor never runs, so the field is taken exactly once.
        let pipe = unsafe { ManuallyDrop::take(&mut this.pipe) };
        let saved = detach_in_fork_child(pipe.get_ref());
        let interrupts = pipe.into_inner();
        if let Detached::Swapped(Some(read)) = saved {
            // Back to the pipe's read end, now that the deregistration has
            // missed. Best effort: failing leaves the number on the write
            // end, which an inherited instance never reads either.
            let _ = sys::replace_with_placeholder(read.as_raw_fd(), interrupts.read.as_raw_fd());
        }
        interrupts
    }
}

impl Drop for AsyncInterrupts {
    fn drop(&mut self) {
        // SAFETY: `drop` runs once, and `pipe` is not used afterwards.
        let pipe = unsafe { ManuallyDrop::take(&mut self.pipe) };
        if let Detached::Failed = detach_in_fork_child(pipe.get_ref()) {
            // The number still names the parent's registered pipe: leaking
            // two descriptors in the child beats silencing the parent.
            std::mem::forget(pipe);
        }
    }
}

/// In a fork child (the instance is inherited), point the child's copy of
/// the read end's number at the pipe's write end, a file the shared epoll
/// instance has no registration for under that number, so tokio's
/// `EPOLL_CTL_DEL` fails (tokio ignores it) instead of removing the
/// parent's registration (epoll keys it by file *and* number, not by
/// process).
fn detach_in_fork_child(interrupts: &Interrupts) -> Detached {
    if interrupts.shared.installer.is_current() {
        return Detached::NotInherited;
    }
    let read = interrupts.read.as_raw_fd();
    let saved = interrupts.read.try_clone().ok();
    match sys::replace_with_placeholder(interrupts.shared.write.as_raw_fd(), read) {
        Ok(()) => Detached::Swapped(saved),
        Err(_) => Detached::Failed,
    }
}

/// See [`AsyncInterrupts::reactor_failed`].
#[derive(Debug)]
struct ReactorGone {
    /// The receive runs on the runtime that is shutting down.
    this_runtime: bool,
    tokio_error: io::Error,
}

impl fmt::Display for ReactorGone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.this_runtime {
            write!(
                f,
                "{RECV}: this tokio runtime is shutting down, and its reactor, which the \
                 AsyncInterrupts' pipe is registered with, can no longer wake a receive"
            )
        } else {
            write!(
                f,
                "{RECV}: the tokio runtime this AsyncInterrupts was registered with (the one \
                 AsyncInterrupts::new ran in) is gone, and its reactor with it, so nothing can \
                 wake this receive; make a new AsyncInterrupts in the running runtime: \
                 AsyncInterrupts::new(old.into_inner()) keeps the pending signals"
            )
        }
    }
}

impl std::error::Error for ReactorGone {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.tokio_error)
    }
}

/// What [`detach_in_fork_child`] did.
enum Detached {
    /// In the installing process: nothing to do, deregister as usual.
    NotInherited,
    /// The number names the write end now; a copy of the read end, if one
    /// could be made, to put back.
    Swapped(Option<OwnedFd>),
    /// The number still names the registered read end.
    Failed,
}
