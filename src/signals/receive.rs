//! The receives: [`Interrupts::try_recv`], which turns the counts an
//! instance's action left (`shared.rs`) and its wake-up bytes into a
//! [`Received`], and the blocking [`Interrupts::recv`],
//! [`Interrupts::recv_timeout`] and [`Interrupts::wait_readable`], one
//! `poll(2)` loop around `try_recv` behind all three.

use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use libc::c_int;

use super::close::closed_error;
use super::handler;
use super::interrupts::Interrupts;
use super::pipe::{drain, ErrnoGuard};
use super::received::Received;
use super::signal::Signal;
use crate::sys;

/// A blocked receive checks the handlers again at least this often, so a
/// signal set to `SIG_IGN` or `SIG_DFL` while it waits is reported, not
/// waited out.
const RECHECK: Duration = Duration::from_secs(1);

/// What [`Interrupts::wait_readable`] woke up for.
#[must_use = "the outcome says whether to read, clean up, or wait again"]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WaitOutcome {
    /// The descriptor is readable: data, end of file, or an error condition
    /// (`POLLIN`, `POLLHUP` or `POLLERR`), so one `read` will not block.
    Readable,
    /// A handled signal arrived first (or was already pending); reported
    /// and consumed as [`Interrupts::try_recv`] does.
    Signal(Received),
    /// Neither happened before the timeout.
    TimedOut,
}

impl Interrupts {
    /// Take one pending signal without blocking: which signal, and how many
    /// deliveries since it was last reported. Returns `None` when nothing is
    /// pending. Call it until `None` after the descriptor polls readable;
    /// draining the pipe never loses a count (counts live in atomics, and a
    /// wake-up byte is written back when other signals are still pending).
    ///
    /// In a fork child, an instance inherited from the parent reports
    /// nothing and leaves the pipe alone: `None`, without reading (see
    /// [Fork children](Interrupts#fork-children)). Once a
    /// [`CloseHandle`](crate::CloseHandle) closed the instance it reports
    /// nothing either, and leaves the pipe readable.
    ///
    /// Async-signal-safe (`read`, `write`, atomics; no allocation), and
    /// leaves `errno` as it found it.
    ///
    /// # Examples
    /// ```
    /// use fdtable::{Interrupts, Signal};
    ///
    /// let interrupts = Interrupts::builder(Signal::User2)
    ///     .second_signal_kills(false)
    ///     .install()?;
    /// assert_eq!(interrupts.try_recv(), None);
    /// // SAFETY: raise has no preconditions.
    /// unsafe { libc::raise(libc::SIGUSR2) };
    /// let got = interrupts.try_recv().expect("raise delivers before it returns");
    /// assert_eq!(got.signal(), Signal::User2);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    #[must_use = "a signal taken is reported only once: dropping the report loses it"]
    pub fn try_recv(&self) -> Option<Received> {
        if !self.shared.installer.is_current() {
            // The pipe is shared with the parent, the counts are not: a
            // byte read here would be a wake-up the parent never gets.
            return None;
        }
        if self.shared.is_closed() {
            // Closed: nothing more is reported, and the pipe keeps the
            // close's wake-up byte, so it stays readable (see `close`).
            return None;
        }
        // `read` sets EAGAIN on the empty pipe; a caller in a handler must
        // not see its interrupted code's errno change.
        let _errno = ErrnoGuard::save();
        drain(self.read.as_raw_fd());
        if self.shared.is_closed() {
            // A close between the check above and the drain: the byte just
            // drained may have been its wake-up, and another thread may be
            // blocked on this pipe waiting for it. Put it back.
            self.shared.write.wake();
            return None;
        }
        // The writer's side of the counts is `Shared::on_signal`: sender,
        // then count, then the byte just drained.
        let counts = &self.shared.counts;
        let mut handled = self.signals();
        while let Some(signal) = handled.next() {
            let count = counts[signal.index()].swap(0, Ordering::SeqCst);
            if count > 0 {
                // Read after the count: this count's latest delivery's
                // sender, or one that arrived since (counted next time).
                let sender = self.shared.senders[signal.index()].load(Ordering::SeqCst);
                // The pipe is empty now; keep it readable for the others.
                if handled.any(|s| counts[s.index()].load(Ordering::SeqCst) > 0) {
                    self.shared.write.wake();
                }
                return Some(Received {
                    signal,
                    count,
                    sender: (sender != 0).then_some(sender),
                });
            }
        }
        None
    }

    /// Block until a handled signal arrives, then report it as
    /// [`try_recv`](Interrupts::try_recv) does.
    ///
    /// # Errors
    /// An error of kind [`Other`](io::ErrorKind::Other), at once:
    /// - when other code set one of this instance's signals to `SIG_IGN` or
    ///   `SIG_DFL`, so that it can no longer arrive (checked before blocking
    ///   and at least once a second while blocked; a replacement by another
    ///   handler is not an error here, see
    ///   [`check_handlers`](Interrupts::check_handlers));
    /// - when this instance handles no signal at all (every signal it asked
    ///   for was ignored at start and left ignored, see
    ///   [`ignored`](Interrupts::ignored)): nothing could ever end the wait;
    /// - in a fork child, for an instance inherited from the parent (see
    ///   [Fork children](Interrupts#fork-children)).
    ///
    /// An error of kind [`BrokenPipe`](io::ErrorKind::BrokenPipe) once a
    /// [`CloseHandle`](crate::CloseHandle) of this instance was closed: at
    /// once when it blocks then, and at once afterwards
    /// ([`is_closed`](Interrupts::is_closed) tells it apart).
    ///
    /// Otherwise the OS error of `poll(2)` other than `EINTR`.
    ///
    /// # Examples
    /// ```
    /// use fdtable::{Interrupts, Signal};
    ///
    /// let interrupts = Interrupts::builder(Signal::User1).install()?;
    /// // SAFETY: raise has no preconditions.
    /// unsafe { libc::raise(libc::SIGUSR1) };
    /// assert_eq!(interrupts.recv()?.signal(), Signal::User1);
    /// Interrupts::disarm(); // the next SIGUSR1 would end this doc test
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// Not async-signal-safe (the error allocates); do not call it from a
    /// signal handler.
    pub fn recv(&self) -> io::Result<Received> {
        loop {
            // Without a descriptor or a deadline only a signal ends the wait.
            if let WaitOutcome::Signal(received) = self.wait("Interrupts::recv", None, None)? {
                return Ok(received);
            }
        }
    }

    /// Like [`recv`](Interrupts::recv), giving up after `timeout`:
    /// `Ok(None)` when nothing arrived in time. Returns no earlier than
    /// `timeout` unless a signal arrives; a `timeout` too large for
    /// `Instant` waits forever.
    ///
    /// # Errors
    /// As [`recv`](Interrupts::recv) (a closed instance included: an error,
    /// not `Ok(None)`), except that an instance that handles no signal waits
    /// out the timeout and returns `Ok(None)` (unless the timeout is too
    /// large for `Instant`: then it fails as `recv` does).
    ///
    /// # Examples
    /// ```
    /// use fdtable::Interrupts;
    /// use std::time::Duration;
    ///
    /// let interrupts = Interrupts::install()?;
    /// assert_eq!(interrupts.recv_timeout(Duration::from_millis(10))?, None);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// Not async-signal-safe.
    pub fn recv_timeout(&self, timeout: Duration) -> io::Result<Option<Received>> {
        let deadline = Instant::now().checked_add(timeout);
        match self.wait("Interrupts::recv_timeout", None, deadline)? {
            WaitOutcome::Signal(received) => Ok(Some(received)),
            WaitOutcome::Readable | WaitOutcome::TimedOut => Ok(None),
        }
    }

    /// Wait until `fd` is readable or a handled signal arrives, for at most
    /// `timeout` (`None`: no limit). A signal that is already pending, or
    /// arrives together with the data, wins: the caller cleans up first.
    ///
    /// This is the tool for a program that would otherwise block in
    /// `read`, where Ctrl-C goes unnoticed (see
    /// [A thread blocked in `read`](Interrupts#a-thread-blocked-in-read-does-not-see-ctrl-c)):
    /// wait here, then read once (it will not block).
    ///
    /// # Read unbuffered after the wait (standard input)
    /// "Readable" is about the kernel's side of `fd`: data a reader has
    /// already pulled into a buffer of its own does not count. std's
    /// [`Stdin`](std::io::Stdin) buffers: `stdin().read_line` after a
    /// `Readable` may read two lines from the kernel, return the first and
    /// keep the second in its buffer. The next wait then sees nothing
    /// readable (the kernel's side is empty) and blocks with a whole line
    /// already typed, until the user types another. Two correct patterns:
    /// - Read from a descriptor of your own, unbuffered: a
    ///   [`File`](std::fs::File) made from a duplicate of standard input,
    ///   `File::from(stdin().as_fd().try_clone_to_owned()?)`, and one `read`
    ///   per `Readable` (below; `examples/read_lines.rs` is a full program).
    ///   Do not mix it with reads through `Stdin`, whose buffer would keep
    ///   what it took.
    /// - Or keep one [`StdinLock`](std::io::StdinLock) and make its buffer
    ///   empty before every wait: after `Readable`, call
    ///   [`fill_buf`](std::io::BufRead::fill_buf) once (with the buffer
    ///   empty it makes one `read`, which does not block), take *all* the
    ///   bytes it returns (split the lines yourself, keep a partial last
    ///   line) and [`consume`](std::io::BufRead::consume) them all.
    ///   `read_line` and `lines` do not do that: they stop at the first
    ///   newline and leave the rest in the buffer.
    ///
    /// ```no_run
    /// use fdtable::{Interrupts, WaitOutcome};
    /// use std::fs::File;
    /// use std::io::{stdin, Read};
    /// use std::os::fd::AsFd;
    ///
    /// let interrupts = Interrupts::install()?;
    /// // Unbuffered: after `Readable`, one `read` gets what the kernel has.
    /// let mut input = File::from(stdin().as_fd().try_clone_to_owned()?);
    /// let mut buf = [0u8; 4096];
    /// loop {
    ///     match interrupts.wait_readable(input.as_fd(), None)? {
    ///         WaitOutcome::Signal(received) => break eprintln!("stopping after {received}"),
    ///         WaitOutcome::Readable | WaitOutcome::TimedOut => {}
    ///     }
    ///     let n = input.read(&mut buf)?; // does not block
    ///     if n == 0 {
    ///         break; // end of input
    ///     }
    ///     // ... split `buf[..n]` into lines, keep a partial last line ...
    /// }
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// The catch, and the buffered pattern, on a socket read through a
    /// [`BufReader`](std::io::BufReader) (which is what `Stdin` holds):
    /// ```
    /// use fdtable::{Interrupts, WaitOutcome};
    /// use std::io::{BufRead, BufReader, Write};
    /// use std::os::fd::AsFd;
    /// use std::os::unix::net::UnixStream;
    /// use std::time::Duration;
    ///
    /// let interrupts = Interrupts::install()?;
    /// let (mut tx, rx) = UnixStream::pair()?;
    /// let mut input = BufReader::new(&rx);
    /// let wait = || interrupts.wait_readable(rx.as_fd(), Some(Duration::from_millis(10)));
    /// tx.write_all(b"one\ntwo\n")?;
    /// assert_eq!(wait()?, WaitOutcome::Readable);
    /// let mut line = String::new();
    /// input.read_line(&mut line)?; // "one\n", and "two\n" goes into the buffer:
    /// assert_eq!(wait()?, WaitOutcome::TimedOut); // a wait now misses "two"
    /// // The pattern: take all that one `fill_buf` gives, consume all of it.
    /// let taken = input.fill_buf()?.to_vec(); // the buffer's, no `read`
    /// input.consume(taken.len());
    /// assert_eq!(taken, b"two\n");
    /// tx.write_all(b"three\n")?;
    /// assert_eq!(wait()?, WaitOutcome::Readable); // empty buffer: the wait is truthful
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`recv`](Interrupts::recv) (a closed instance included), except
    /// that an instance that handles no signal still waits for `fd` (a
    /// program started under `nohup` keeps reading its input). When
    /// `poll(2)` reports `fd` invalid (`POLLNVAL`: not an open descriptor),
    /// an error of kind [`InvalidInput`](io::ErrorKind::InvalidInput) whose
    /// message names `wait_readable` and the number, with the `EBADF` as
    /// its [`source`](std::error::Error::source).
    ///
    /// # Examples
    /// ```
    /// use fdtable::{Interrupts, WaitOutcome};
    /// use std::io::Write;
    /// use std::os::fd::AsFd;
    /// use std::os::unix::net::UnixStream;
    /// use std::time::Duration;
    ///
    /// let interrupts = Interrupts::install()?;
    /// let (mut tx, rx) = UnixStream::pair()?;
    /// let wait = || interrupts.wait_readable(rx.as_fd(), Some(Duration::from_millis(10)));
    /// assert_eq!(wait()?, WaitOutcome::TimedOut);
    /// tx.write_all(b"line\n")?;
    /// assert_eq!(wait()?, WaitOutcome::Readable);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// Not async-signal-safe.
    pub fn wait_readable(
        &self,
        fd: BorrowedFd<'_>,
        timeout: Option<Duration>,
    ) -> io::Result<WaitOutcome> {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        self.wait("Interrupts::wait_readable", Some(fd), deadline)
    }

    /// Whether a wait may start here: not in a fork child for an inherited
    /// instance (polling the pipe would steal the parent's wake-ups, and no
    /// delivery in this process is ever counted for it), not on a closed
    /// instance (the error names `op`), and not forever
    /// (`only_a_signal_ends_it`) on an instance that handles no signal.
    /// Async-signal-safe when it succeeds; the error allocates.
    pub(super) fn check_can_wait(&self, op: &str, only_a_signal_ends_it: bool) -> io::Result<()> {
        let installer = self.shared.installer;
        if !installer.is_current() {
            return Err(io::Error::other(format!(
                "this Interrupts was inherited from process {} through fork: it receives \
                 nothing in this process (install one here)",
                installer.pid()
            )));
        }
        if self.shared.is_closed() {
            return Err(closed_error(op));
        }
        if self.handled == 0 && only_a_signal_ends_it {
            let ignored: Vec<_> = self.ignored().map(Signal::name).collect();
            return Err(io::Error::other(format!(
                "this Interrupts handles no signal ({} ignored at start and left ignored), \
                 so nothing can end the wait",
                ignored.join(", ")
            )));
        }
        Ok(())
    }

    /// The loop behind the three (`op` names the one called, for errors):
    /// whether anything can end the wait, then pending signal first, then
    /// the reachability check, then `poll` on the pipe (and `fd`) until the
    /// deadline. A close ends it at any of these steps: the close's byte
    /// wakes the `poll`, and the pipe stays readable.
    fn wait(
        &self,
        op: &str,
        fd: Option<BorrowedFd<'_>>,
        deadline: Option<Instant>,
    ) -> io::Result<WaitOutcome> {
        self.check_can_wait(op, fd.is_none() && deadline.is_none())?;
        loop {
            if self.shared.is_closed() {
                return Err(closed_error(op));
            }
            if let Some(received) = self.try_recv() {
                return Ok(WaitOutcome::Signal(received));
            }
            self.signals().try_for_each(handler::check_reachable)?;
            let mut slice = RECHECK;
            if let Some(deadline) = deadline {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(WaitOutcome::TimedOut);
                }
                slice = slice.min(left);
            }
            let mut pfds = [
                libc::pollfd {
                    fd: self.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: fd.map_or(-1, |fd| fd.as_raw_fd()),
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            let n = if fd.is_some() { 2 } else { 1 };
            // Round up so we never wake a hair early and spin.
            let ms = slice.as_nanos().div_ceil(1_000_000);
            let ms = c_int::try_from(ms).unwrap_or(c_int::MAX);
            if let Err(error) = sys::poll(&mut pfds[..n], ms) {
                if error.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(error);
            }
            if self.shared.is_closed() {
                return Err(closed_error(op)); // before whatever `fd` says
            }
            let theirs = pfds[1].revents;
            if fd.is_some() && theirs != 0 {
                if theirs & libc::POLLNVAL != 0 {
                    return Err(not_open(op, pfds[1].fd));
                }
                // A signal that came with the data still wins.
                if let Some(received) = self.try_recv() {
                    return Ok(WaitOutcome::Signal(received));
                }
                return Ok(WaitOutcome::Readable);
            }
        }
    }
}

/// `wait_readable`'s error for a descriptor `poll(2)` reports invalid
/// (`POLLNVAL`): kind `InvalidInput` (the argument is bad, as `track` says
/// of such a number), naming the operation and the number, with `EBADF` as
/// its source.
#[cold]
fn not_open(op: &str, fd: RawFd) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        NotOpen {
            op: op.to_owned(),
            fd,
            os: io::Error::from_raw_os_error(libc::EBADF),
        },
    )
}

/// See [`not_open`].
#[derive(Debug)]
struct NotOpen {
    op: String,
    fd: RawFd,
    os: io::Error,
}

impl fmt::Display for NotOpen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let NotOpen { op, fd, os } = self;
        write!(
            f,
            "{op}: fd {fd} is not an open descriptor (poll(2) reported POLLNVAL: {os}); it was \
             closed before or during the wait"
        )
    }
}

impl std::error::Error for NotOpen {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.os)
    }
}
