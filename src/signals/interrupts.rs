//! [`Interrupts`]: the type, its process-wide functions, and what one
//! instance holds from install to drop. Making one is `builder.rs`'s,
//! receiving `receive.rs`'s, the foreground scope `foreground.rs`'s.

use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::Arc;

use super::close::CloseHandle;
use super::handler;
use super::policy;
use super::registration::Registration;
use super::shared::Shared;
use super::signal::Signal;

/// SIGINT (and chosen others) delivered as self-pipe events.
///
/// A signal handler may only make async-signal-safe calls: no allocation,
/// no lock, no `println!`, no cleanup. So the handler here only counts the
/// signal in an atomic and writes one byte to a pipe; the program sees the
/// read end become readable (in `poll(2)`, mio, an event loop, or one of
/// the receives) and runs its cleanup as ordinary code.
///
/// Install with [`Interrupts::install`] (SIGINT only) or
/// [`Interrupts::builder`]. Then either poll the descriptor
/// ([`AsFd`]/[`AsRawFd`]) for readability in your own loop and call
/// [`try_recv`](Interrupts::try_recv) until it returns `None`, or block in
/// [`recv`](Interrupts::recv) / [`recv_timeout`](Interrupts::recv_timeout),
/// or wait for "this descriptor is readable, or a signal arrived" with
/// [`wait_readable`](Interrupts::wait_readable). In a tokio program, wrap
/// it in `AsyncInterrupts` (feature `tokio`) and `recv().await`. A thread
/// blocked in a receive is released by a [`CloseHandle`]
/// ([`close_handle`](Interrupts::close_handle)), when the program ends
/// without a signal. Each [`Received`] says which process sent the signal
/// ([`sender_pid`](crate::Received::sender_pid)). The conventions of
/// well-behaved Unix programs are on by default (see below).
///
/// # Examples
/// ```
/// use fdtable::{Interrupts, Signal};
/// use std::time::Duration;
///
/// let interrupts = Interrupts::builder(Signal::Interrupt)
///     .respect_ignored(false) // this doc test may run under `nohup`
///     .second_signal_kills(false)
///     .install()?;
/// // SAFETY: raise has no preconditions. "Ctrl-C", delivered to ourselves:
/// unsafe { libc::raise(libc::SIGINT) };
/// let got = interrupts.recv_timeout(Duration::from_secs(10))?.expect("SIGINT");
/// assert_eq!((got.signal(), got.count()), (Signal::Interrupt, 1));
/// assert_eq!(got.to_string(), "SIGINT (1 delivery)");
/// # Ok::<(), std::io::Error>(())
/// ```
/// A real program ends the other way: clean up, then
/// [`Interrupts::die_by_signal`] so its parent shell sees the real cause
/// (exit status 130 for SIGINT). See `examples/ctrlc_cleanup.rs` and
/// `examples/read_lines.rs`.
///
/// An `Interrupts` that is dropped at once handles nothing:
/// ```compile_fail
/// #![deny(unused_must_use)]
/// fn main() -> std::io::Result<()> {
///     fdtable::Interrupts::install()?; // dropped here: handlers removed
///     Ok(())
/// }
/// ```
///
/// # Conventions (each on by default)
/// - **Ignored stays ignored** ([`InterruptsBuilder::respect_ignored`]): a
///   signal whose disposition was `SIG_IGN` when this crate first looked at
///   it (a program started by `nohup`, or as a background job by a shell
///   without job control) is left ignored and reported by
///   [`Interrupts::ignored`].
/// - **A second signal kills at once**
///   ([`InterruptsBuilder::second_signal_kills`]): the first delivery *arms*
///   the process, in the handler, before the wake-up byte is written (so
///   before the program can start cleaning up). The next delivery of a
///   signal handled that way restores the signal's default action and
///   re-raises it: a second Ctrl-C ends a stuck cleanup.
///   [`Interrupts::disarm`] undoes the arming ("do you really want to
///   quit? no").
/// - **Die by the signal** ([`Interrupts::die_by_signal`]): after cleanup,
///   restore the default action, unblock the signal and raise it, so the
///   parent sees `WIFSIGNALED` rather than a faked `exit(130)`.
/// - **The default comes back** ([`InterruptsBuilder::default_after_drop`]):
///   when the last `Interrupts` that handles a signal is dropped, the
///   signal's default action (terminate) applies again, as if no handler had
///   ever been installed.
///
/// # Several instances: one process-wide policy
/// Any number of `Interrupts` may exist at once (a library's and the
/// program's), for the same or different signals. Each has its own pipe and
/// its own counts, and every one sees every delivery of the signals it
/// handles; dropping one unregisters only its own actions. What they decide
/// together is defined per signal, for the whole process:
///
/// - **Arming and killing**: a delivery arms the process, and a delivery
///   while armed kills it, only while *every* live instance handling that
///   signal asked for [`second_signal_kills`](crate::InterruptsBuilder::second_signal_kills).
///   A library's defaults cannot override the program's opt-out, in either
///   creation or drop order.
/// - **Armed is one flag for the process**, for every signal: a delivery
///   of one signal arms, the next of any signal handled that way kills.
///   [`Interrupts::is_armed`] and [`Interrupts::disarm`], functions of the
///   process rather than of an instance, read and clear it. It lasts while
///   any instance lives: once the last one is dropped it is cleared, so a
///   later instance (the next command of a REPL, a library's scoped
///   instance) never starts armed by an old delivery.
/// - **The default after drop**: applies once no instance of this process
///   handles the signal, unless one that handled it since it was last
///   unhandled asked for [`default_after_drop(false)`](crate::InterruptsBuilder::default_after_drop),
///   or the program turned it off for the whole process with
///   [`disable_default_after_drop_globally`](Interrupts::disable_default_after_drop_globally).
///   The latter is the program's opt-out when it handles the signal itself
///   through signal-hook (tokio's `signal`) while a library uses
///   `Interrupts` with the defaults: otherwise the library's last drop
///   gives the signal its default action back, and the next delivery ends
///   the program.
///
/// # A thread blocked in `read` does not see Ctrl-C
/// signal-hook installs its handler with `SA_RESTART`, and std retries
/// reads interrupted by a signal (`EINTR`), so a thread blocked in
/// `stdin().read_line()` (or any blocking read) stays blocked when Ctrl-C
/// arrives: the event sits in the pipe unread, the process is armed, and the
/// *second* Ctrl-C kills it with no cleanup. Wait for input and interrupts
/// together instead: [`wait_readable`](Interrupts::wait_readable), or poll
/// this instance's descriptor next to yours. `examples/read_lines.rs` is a
/// line-reading CLI written that way.
///
/// # Interactive children in the foreground
/// While a program waits for an editor, pager or REPL it runs in the
/// foreground, Ctrl-C belongs to that child (the terminal sends it to the
/// whole foreground process group). Open
/// [`foreground_child`](Interrupts::foreground_child) around the wait: SIGINT
/// and SIGQUIT are then counted but neither arm nor kill the parent, as
/// `system(3)` ignores them while it waits.
///
/// # Other code that installs a handler later
/// signal-hook's handler must stay the process's handler for the signal.
/// Code that later calls `sigaction` for the same signal directly (the
/// `ctrlc` crate's `set_handler` does, for SIGINT) silently takes it over:
/// `Interrupts` then never sees the signal again, unless the new handler
/// calls the one it replaced (crash reporters and language runtimes often
/// do). [`check_handlers`](Interrupts::check_handlers) reports any such
/// replacement (the signal "may no longer reach" `Interrupts`).
/// [`recv`](Interrupts::recv), [`recv_timeout`](Interrupts::recv_timeout) and
/// [`wait_readable`](Interrupts::wait_readable) check before they block, and
/// at least once a second while blocked, whether a handled signal was set
/// to `SIG_IGN` or `SIG_DFL`, so that certainly nothing can arrive, and
/// then return an error naming it instead of waiting; a replacement by
/// another function does not make them fail (it may chain). Code that
/// registers through signal-hook (tokio's `signal`, signal-hook's iterator)
/// coexists with `Interrupts`.
///
/// # Fork children
/// A child forked while `Interrupts` exist inherits them, but not as
/// its own: their actions check the installer's pid and do nothing in
/// another process, so the child's signals never wake the parent's loop.
/// The inherited instance's pipe is the parent's, though, so in the child
/// it reports nothing and never reads it (a read there would eat the
/// parent's wake-up): [`try_recv`](Interrupts::try_recv) returns `None`, and
/// [`recv`](Interrupts::recv), [`recv_timeout`](Interrupts::recv_timeout) and
/// [`wait_readable`](Interrupts::wait_readable) return an error at once
/// ("inherited from process N"). Do not poll its descriptor in the child
/// either (it is readable whenever the parent has a signal pending); a
/// prefork worker that runs its master's loop installs its own instance.
///
/// A child that goes on running (no `exec`) gets the default action for the
/// signals it did not install an `Interrupts` for (so Ctrl-C still ends
/// it), may install its own (after
/// [`FdTable::retire_all_in_child`](crate::FdTable::retire_all_in_child)
/// too) and receive signals as events, and gets the default action back when
/// its own last one drops. Dropping an inherited instance in the child
/// changes nothing for the child's own. Each child of `fork(2)` forgets the
/// parent's process-wide state in a `pthread_atfork` handler, so a
/// descendant that is later handed the pid of an exited ancestor (a double
/// fork, pid wrap-around) does not take that ancestor's instances for its
/// own. Children made without atfork handlers (glibc's `_Fork`, a raw
/// `clone`, the `clone3`/`vfork` of std's `Command::spawn`) must `exec` or
/// `_exit`, as they do.
///
/// # Drop
/// Dropping unregisters this instance's actions; other instances keep
/// working. When it was the last one handling a signal, that signal's
/// default action comes back (see
/// [`default_after_drop`](crate::InterruptsBuilder::default_after_drop));
/// a signal that was left ignored stays ignored. signal-hook's handler
/// itself stays installed for good (signal-hook never uninstalls it), with
/// this crate's fallback action that applies the default; programs spawned
/// through [`CommandExt`](crate::CommandExt) get the default disposition
/// back before `exec`, as `exec` itself would give them.
///
/// ```
/// use fdtable::{Interrupts, Signal};
/// use std::time::Duration;
///
/// let events = || Interrupts::builder(Signal::User1).second_signal_kills(false);
/// let (a, b) = (events().install()?, events().install()?);
/// // SAFETY: raise has no preconditions.
/// unsafe { libc::raise(libc::SIGUSR1) };
/// assert!(a.try_recv().is_some() && b.try_recv().is_some()); // both see it
/// drop(a);
/// // SAFETY: as above.
/// unsafe { libc::raise(libc::SIGUSR1) };
/// assert_eq!(b.recv_timeout(Duration::from_secs(10))?.map(|r| r.count()), Some(1));
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// # Resources
/// Each instance holds two descriptors, the read and write ends of its
/// self-pipe, both close-on-exec, from
/// [`install`](crate::InterruptsBuilder::install) until it is dropped (a
/// [`CloseHandle`] that outlives it holds neither). So the descriptor limit
/// (`RLIMIT_NOFILE`, commonly 1024) bounds the number of live instances
/// long before [`MAX_INSTANCES`](Interrupts::MAX_INSTANCES) does: share
/// one instance rather than install one per task.
///
/// The pipe is made with `pipe2(2)`, close-on-exec from the start, except
/// on Apple systems, which have no `pipe2`: there it is `pipe(2)` and then
/// `fcntl(2)`, and a `fork` + `exec` by another thread in between passes
/// the new pipe's ends to that program (as std's own pipes there can be).
/// See `docs/platforms.md` for what holds on which system.
///
/// # Limitations
/// - Only signals whose default action ends the process are accepted (see
///   [`Signal`]). SIGQUIT's default action also dumps core.
/// - Standard signals coalesce: ten `kill`s in a row may be delivered as
///   one. [`Received::count`] counts deliveries, not `kill` calls.
/// - After the last `Interrupts` for a signal is dropped with
///   [`default_after_drop`](crate::InterruptsBuilder::default_after_drop)
///   on, the default action runs even if another part of the program registered its
///   own signal-hook action for that signal (tokio's `signal`, signal-hook's
///   iterator). Such a program turns it off for every instance, a
///   library's included, with
///   [`disable_default_after_drop_globally`](Interrupts::disable_default_after_drop_globally).
/// - A fork made while another thread installs or drops an `Interrupts` may
///   leave a lock held in the child: the child then must not install or
///   drop one (the same holds for signal-hook's own registry).
///
/// [`Received`]: crate::Received
/// [`Received::count`]: crate::Received::count
/// [`InterruptsBuilder::respect_ignored`]: crate::InterruptsBuilder::respect_ignored
/// [`InterruptsBuilder::second_signal_kills`]: crate::InterruptsBuilder::second_signal_kills
/// [`InterruptsBuilder::default_after_drop`]: crate::InterruptsBuilder::default_after_drop
#[must_use = "dropping an Interrupts unregisters its handlers at once"]
pub struct Interrupts {
    /// What the instance's actions and close handles reach: counts,
    /// senders, the closed flag, the self-pipe's write end.
    pub(super) shared: Arc<Shared>,
    /// Non-blocking, close-on-exec read end of the self-pipe.
    pub(super) read: OwnedFd,
    /// [`Signal::bit`]s of the handled signals.
    pub(super) handled: u8,
    /// [`Signal::bit`]s of the signals asked for but left ignored.
    pub(super) ignored: u8,
    /// The actions and record counts that drop undoes.
    pub(super) registration: Registration,
}

impl Interrupts {
    /// How many `Interrupts` may handle one signal at once in a process:
    /// 32 767.
    ///
    /// Out of reach at common descriptor limits: each instance holds two
    /// descriptors (its self-pipe, see [Resources](Interrupts#resources)),
    /// so a process at the usual soft `RLIMIT_NOFILE` of 1024 runs out of
    /// descriptors after about 500 instances, and even one at 65 536 stays
    /// below it. [`install`](crate::InterruptsBuilder::install) then fails
    /// with `EMFILE`, in a message that says so.
    pub const MAX_INSTANCES: usize = policy::MAX_INSTANCES as usize;

    /// The signals this instance handles and reports, in the order of
    /// [`Signal`]'s variants. Async-signal-safe.
    pub fn signals(&self) -> impl ExactSizeIterator<Item = Signal> + '_ {
        Signal::in_set(self.handled)
    }

    /// The signals that were asked for but left ignored because they were
    /// ignored at startup (see
    /// [`respect_ignored`](crate::InterruptsBuilder::respect_ignored)), in
    /// the order of [`Signal`]'s variants. Async-signal-safe.
    ///
    /// # Examples
    /// ```
    /// let interrupts = fdtable::Interrupts::install()?;
    /// for signal in interrupts.ignored() {
    ///     eprintln!("{signal} was ignored at start: Ctrl-C will not stop this program");
    /// }
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn ignored(&self) -> impl ExactSizeIterator<Item = Signal> + '_ {
        Signal::in_set(self.ignored)
    }

    /// Whether this process is armed: a delivery already arrived of a
    /// signal for which every live instance asked for
    /// [`second_signal_kills`](crate::InterruptsBuilder::second_signal_kills),
    /// so the next such delivery (of that signal or another handled that
    /// way) ends the process.
    ///
    /// Process-wide: one flag for every instance and every signal, so this
    /// is a function of the process, not of an instance. The arming lasts
    /// while any instance lives: it is undone when the last one is dropped,
    /// so an instance installed when none exists starts unarmed (and with
    /// no instance alive this returns `false`).
    ///
    /// Async-signal-safe (`getpid`, one atomic load).
    ///
    /// # Examples
    /// ```
    /// use fdtable::{Interrupts, Signal};
    ///
    /// let interrupts = Interrupts::builder(Signal::User1).install()?;
    /// assert!(!Interrupts::is_armed());
    /// // SAFETY: raise has no preconditions; SIGUSR1 is handled.
    /// unsafe { libc::raise(libc::SIGUSR1) };
    /// assert!(Interrupts::is_armed()); // a second SIGUSR1 would end the process
    /// Interrupts::disarm(); // "really quit? no"
    /// assert_eq!(interrupts.try_recv().map(|r| r.count()), Some(1));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    #[must_use]
    pub fn is_armed() -> bool {
        policy::is_armed()
    }

    /// Undo the arming, for the whole process (every instance, every
    /// signal): the next signal is an event again, and arms anew. Doing it
    /// when the process is not armed changes nothing.
    ///
    /// Async-signal-safe (one atomic store).
    pub fn disarm() {
        policy::disarm();
    }

    /// Turn
    /// [`default_after_drop`](crate::InterruptsBuilder::default_after_drop)
    /// off for every `Interrupts` of this process, those installed before
    /// and after, for good: once no instance handles a signal, a delivery
    /// runs only the actions other code registered through signal-hook.
    /// Process-wide, like [`is_armed`](Interrupts::is_armed) and
    /// [`disarm`](Interrupts::disarm).
    ///
    /// This is the program's switch for a program that handles a signal
    /// itself through signal-hook (tokio's `signal`, signal-hook's `flag`
    /// or iterator) while a library it uses installs short-lived
    /// `Interrupts` with the defaults: without it, the signal's default
    /// action ends the program as soon as the library's last instance is
    /// dropped, before the program's own action can matter. Libraries
    /// should not call it; a program calls it once, early, in `main`.
    /// Fork children inherit it.
    ///
    /// Async-signal-safe (one atomic store).
    ///
    /// # Examples
    /// ```
    /// use fdtable::{Interrupts, Signal};
    /// use std::sync::atomic::{AtomicBool, Ordering};
    /// use std::sync::Arc;
    ///
    /// // A library's scoped instance, every default on:
    /// let library = Interrupts::builder(Signal::User2).install()?;
    /// // The program handles SIGUSR2 itself and keeps it that way:
    /// let flag = Arc::new(AtomicBool::new(false));
    /// signal_hook::flag::register(libc::SIGUSR2, Arc::clone(&flag))?;
    /// Interrupts::disable_default_after_drop_globally();
    /// drop(library);
    /// // SAFETY: raise has no preconditions.
    /// unsafe { libc::raise(libc::SIGUSR2) }; // not the default action
    /// assert!(flag.load(Ordering::SeqCst));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn disable_default_after_drop_globally() {
        policy::disable_default_after_drop_globally();
    }

    /// End the process by `signal` the conventional way: restore the
    /// default action, unblock the signal on this thread and raise it, so
    /// the parent sees death by that signal (a shell reports status
    /// `128 + signal`, 130 for SIGINT). Falls back to `_exit(128 + signal)`
    /// only if the process is still alive after the re-raise (it cannot be,
    /// short of a seccomp filter refusing `kill`).
    ///
    /// Call it after cleanup, with the
    /// [`Received::signal`](crate::Received::signal) that started it.
    /// Neither destructors nor `atexit` handlers run, and Rust's stdout
    /// buffer is not flushed: flush what you printed first. For
    /// [`Signal::Quit`] the default action also dumps core.
    ///
    /// Async-signal-safe.
    ///
    /// # Examples
    /// In a fork child, so that this doc test survives it:
    /// ```
    /// use fdtable::{Interrupts, Signal};
    ///
    /// // SAFETY: the child only calls die_by_signal (async-signal-safe).
    /// let pid = unsafe { libc::fork() };
    /// if pid == 0 {
    ///     Interrupts::die_by_signal(Signal::Terminate);
    /// }
    /// let mut status = 0;
    /// // SAFETY: our own child; `status` is a valid out pointer.
    /// assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    /// assert!(libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGTERM);
    /// ```
    pub fn die_by_signal(signal: Signal) -> ! {
        policy::die_by_default(signal.as_raw())
    }

    /// A handle that ends this instance's receives from another thread or a
    /// signal handler: see [`CloseHandle`].
    ///
    /// Not async-signal-safe (clones an `Arc`); the handle's `close` is.
    #[must_use = "a CloseHandle does nothing until its `close` is called"]
    pub fn close_handle(&self) -> CloseHandle {
        CloseHandle::new(Arc::clone(&self.shared))
    }

    /// Whether a [`CloseHandle`] of this instance was closed: the receives
    /// then fail at once and [`try_recv`](Interrupts::try_recv) returns
    /// `None`. Async-signal-safe.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.shared.is_closed()
    }

    /// Check that signal-hook's handler is still the process's handler for
    /// every signal this instance handles (see
    /// [Other code that installs a handler later](Interrupts#other-code-that-installs-a-handler-later)).
    ///
    /// Stricter than the blocking receives, which fail only when a signal
    /// certainly cannot arrive (`SIG_IGN`, `SIG_DFL`): this reports any
    /// replacement, including a handler that still calls signal-hook's
    /// after its own work (crash reporters and language runtimes chain like
    /// that), since this crate cannot tell whether it does.
    ///
    /// # Errors
    /// An error of kind [`Other`](io::ErrorKind::Other) whose message names
    /// the first signal whose handler was replaced: by `SIG_IGN` or
    /// `SIG_DFL` (`signal(SIGINT, SIG_IGN)`; no delivery can reach this
    /// instance any more), or by another function (a raw `sigaction`, the
    /// `ctrlc` crate; deliveries "may no longer reach" it).
    ///
    /// # Examples
    /// ```
    /// use fdtable::{Interrupts, Signal};
    ///
    /// let interrupts = Interrupts::builder(Signal::Alarm).install()?;
    /// interrupts.check_handlers()?;
    /// // Other code takes SIGALRM over behind signal-hook's back:
    /// // SAFETY: SIG_IGN is a valid disposition for SIGALRM.
    /// let old = unsafe { libc::signal(libc::SIGALRM, libc::SIG_IGN) };
    /// let error = interrupts.check_handlers().unwrap_err();
    /// assert!(error.to_string().starts_with("SIGALRM"));
    /// // SAFETY: puts signal-hook's handler back.
    /// unsafe { libc::signal(libc::SIGALRM, old) };
    /// interrupts.check_handlers()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// Async-signal-safe when it succeeds (one `sigaction` query per
    /// signal); the error allocates.
    pub fn check_handlers(&self) -> io::Result<()> {
        self.signals().try_for_each(handler::check_handler)
    }
}

impl Drop for Interrupts {
    fn drop(&mut self) {
        // Unregister first: then no action of ours runs any more, and close
        // handles that outlive us find the end closed: the descriptors go
        // now.
        self.registration.end();
        self.shared.write.close();
    }
}

impl AsFd for Interrupts {
    /// The read end of the self-pipe: poll it for readability.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.read.as_fd()
    }
}

impl AsRawFd for Interrupts {
    fn as_raw_fd(&self) -> RawFd {
        self.read.as_raw_fd()
    }
}

impl fmt::Debug for Interrupts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Interrupts")
            .field("fd", &self.read.as_raw_fd())
            .field("signals", &self.signals().collect::<Vec<_>>())
            .field("ignored", &self.ignored().collect::<Vec<_>>())
            .field("second_signal_kills", &self.registration.kills())
            .field("armed", &Interrupts::is_armed())
            .finish()
    }
}
