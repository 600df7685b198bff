//! Whether a signal can still reach an `Interrupts` (issue 9 item 7, issue
//! 12 item 6, review findings 7, 11 and 12): other code that replaces
//! signal-hook's handler with a raw `sigaction`, a replacement that chains
//! to it, a takeover before this crate ever looked, and an instance that
//! handles nothing at all.
//!
//! Dispositions are process-wide and some of these end a process, so each
//! runs in a helper process (this binary re-executed, single-threaded).

mod util;

use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fdtable::{Interrupts, Signal};
use util::{assert_lines, raise, say};

const HELPER_ENV: &str = "FDTABLE_HANDLERS_HELPER";
const PROMPTLY: Duration = Duration::from_secs(60);

fn helper(mode: &str) -> (ExitStatus, Vec<String>) {
    util::run_helper(HELPER_ENV, mode, PROMPTLY)
}

/// Runs only in a helper process; a no-op in the test run itself.
#[test]
fn helper_process() {
    let Ok(mode) = std::env::var(HELPER_ENV) else {
        return;
    };
    match mode.as_str() {
        "takeover" => helper_takeover(),
        "chain" => helper_chain(),
        "known_handler" => helper_known_handler(),
        "nothing_handled" => helper_nothing_handled(),
        "ignored_at_start" => helper_ignored_at_start(),
        "ignored_behind_signal_hook" => helper_ignored_behind_signal_hook(),
        _ => panic!("unknown helper mode {mode}"),
    }
    std::process::exit(0);
}

fn events(signal: Signal) -> Interrupts {
    Interrupts::builder(signal)
        .second_signal_kills(false)
        .install()
        .unwrap()
}

static CTRLC_LIKE_RAN: AtomicBool = AtomicBool::new(false);

extern "C" fn ctrlc_like_handler(_: libc::c_int) {
    CTRLC_LIKE_RAN.store(true, Ordering::SeqCst);
}

/// Install `handler` for `sig` with a raw `sigaction` (what
/// `ctrlc::set_handler` does for SIGINT); the disposition it replaced.
fn raw_sigaction(
    sig: libc::c_int,
    handler: libc::sighandler_t,
    flags: libc::c_int,
) -> libc::sigaction {
    // SAFETY: zeroed sigactions are valid; every handler passed here is an
    // async-signal-safe `extern "C"` function, SIG_IGN or SIG_DFL.
    unsafe {
        let mut new: libc::sigaction = std::mem::zeroed();
        new.sa_sigaction = handler;
        new.sa_flags = flags;
        libc::sigemptyset(&mut new.sa_mask);
        let mut old: libc::sigaction = std::mem::zeroed();
        assert_eq!(libc::sigaction(sig, &new, &mut old), 0);
        old
    }
}

fn take_over(sig: libc::c_int) -> libc::sigaction {
    let handler = ctrlc_like_handler as extern "C" fn(libc::c_int) as libc::sighandler_t;
    raw_sigaction(sig, handler, libc::SA_RESTART)
}

fn restore(sig: libc::c_int, old: &libc::sigaction) {
    // SAFETY: puts back a disposition `sigaction` handed us.
    assert_eq!(
        unsafe { libc::sigaction(sig, old, std::ptr::null_mut()) },
        0
    );
}

/// The error's message (every hexadecimal address in it as `0x?`), or
/// `ok` and the value.
fn outcome<T: std::fmt::Debug>(result: std::io::Result<T>) -> String {
    let text = match result {
        Ok(value) => return format!("ok {value:?}"),
        Err(error) => error.to_string(),
    };
    let mut out = String::new();
    let mut rest = text.as_str();
    while let Some(at) = rest.find("0x") {
        out.push_str(&rest[..at]);
        out.push_str("0x?");
        rest = rest[at + 2..].trim_start_matches(|c: char| c.is_ascii_hexdigit());
    }
    out.push_str(rest);
    out
}

fn helper_takeover() {
    let interrupts = events(Signal::Interrupt);
    say(&format!("before: {}", outcome(interrupts.check_handlers())));

    // A raw handler that does not chain: the signal may no longer arrive,
    // but this crate cannot know, so only `check_handlers` reports it.
    let old = take_over(libc::SIGINT);
    say(&format!(
        "replaced, check: {}",
        outcome(interrupts.check_handlers())
    ));
    say(&format!(
        "replaced, recv_timeout: {}",
        outcome(interrupts.recv_timeout(Duration::from_millis(50)))
    ));
    raise(libc::SIGINT);
    say(&format!(
        "the other handler ran: {}",
        CTRLC_LIKE_RAN.load(Ordering::SeqCst)
    ));
    restore(libc::SIGINT, &old);

    // SIG_IGN (or SIG_DFL): certainly nothing arrives any more, so every
    // blocking receive fails at once instead of waiting.
    let old = raw_sigaction(libc::SIGINT, libc::SIG_IGN, 0);
    say(&format!(
        "ignored, check: {}",
        outcome(interrupts.check_handlers())
    ));
    say(&format!(
        "ignored, recv_timeout: {}",
        outcome(interrupts.recv_timeout(Duration::from_secs(30)))
    ));
    say(&format!("ignored, recv: {}", outcome(interrupts.recv())));
    let (_tx, rx) = UnixStream::pair().unwrap();
    say(&format!(
        "ignored, wait_readable: {}",
        outcome(interrupts.wait_readable(rx.as_fd(), None))
    ));
    restore(libc::SIGINT, &old);

    // signal-hook's handler is back: everything works again.
    say(&format!(
        "restored: {}",
        outcome(interrupts.check_handlers())
    ));
    raise(libc::SIGINT);
    say(&format!(
        "restored, recv_timeout: {}",
        outcome(
            interrupts
                .recv_timeout(Duration::from_secs(10))
                .map(|r| r.map(|r| r.count()))
        )
    ));

    // SIG_IGN set while `recv` is already blocked is reported too.
    let taker = std::thread::spawn(|| {
        std::thread::sleep(Duration::from_millis(200));
        raw_sigaction(libc::SIGINT, libc::SIG_IGN, 0);
    });
    let result = interrupts.recv();
    taker.join().unwrap();
    say(&format!("blocked recv: {}", outcome(result)));
}

/// A raw `sigaction` that replaces signal-hook's handler is reported by
/// `check_handlers` ("may no longer reach"), without failing the blocking
/// receives (the new handler may call the old one); a disposition that
/// certainly delivers nothing (`SIG_IGN`, `SIG_DFL`) makes every blocking
/// receive fail at once, also one that is already blocked.
#[test]
fn a_replaced_handler_is_reported_and_an_ignored_signal_fails_every_blocking_receive() {
    let (status, lines) = helper("takeover");
    let replaced = "SIGINT: the signal-hook handler Interrupts relies on was replaced by \
                    other code (the handler at 0x?; a raw sigaction, e.g. the ctrlc crate): \
                    SIGINT may no longer reach Interrupts (it still does if that handler calls \
                    the one it replaced)";
    let dead = "SIGINT: the signal-hook handler Interrupts relies on was set to SIG_IGN by \
                other code, so no SIGINT can reach Interrupts";
    assert_lines(
        &lines,
        &[
            "before: ok ()",
            &format!("replaced, check: {replaced}"),
            "replaced, recv_timeout: ok None",
            "the other handler ran: true",
            &format!("ignored, check: {dead}"),
            &format!("ignored, recv_timeout: {dead}"),
            &format!("ignored, recv: {dead}"),
            &format!("ignored, wait_readable: {dead}"),
            "restored: ok ()",
            "restored, recv_timeout: ok Some(1)",
            &format!("blocked recv: {dead}"),
        ],
        &[],
    );
    assert!(status.success(), "{status:?} {lines:#?}");
}

/// The handler a chaining replacement (a crash reporter, a language
/// runtime) calls after its own work: signal-hook's.
static PREVIOUS: std::sync::OnceLock<libc::sigaction> = std::sync::OnceLock::new();

extern "C" fn chaining_handler(
    sig: libc::c_int,
    info: *mut libc::siginfo_t,
    ctx: *mut libc::c_void,
) {
    if let Some(previous) = PREVIOUS.get() {
        type Action = extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void);
        // SAFETY: signal-hook installs its handler with SA_SIGINFO, so the
        // saved address is a three-argument `extern "C"` handler.
        let action: Action = unsafe { std::mem::transmute(previous.sa_sigaction) };
        action(sig, info, ctx);
    }
}

fn helper_chain() {
    let interrupts = events(Signal::Interrupt);
    let handler = chaining_handler
        as extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void)
        as libc::sighandler_t;
    let old = raw_sigaction(libc::SIGINT, handler, libc::SA_SIGINFO | libc::SA_RESTART);
    PREVIOUS.set(old).unwrap();
    say(&format!(
        "check names SIGINT: {}",
        outcome(interrupts.check_handlers()).starts_with("SIGINT: ")
    ));
    say(&format!(
        "nothing pending, recv_timeout: {}",
        outcome(interrupts.recv_timeout(Duration::from_millis(20)))
    ));
    raise(libc::SIGINT);
    say(&format!(
        "recv_timeout: {}",
        outcome(
            interrupts
                .recv_timeout(Duration::from_secs(10))
                .map(|r| r.map(|r| r.count()))
        )
    ));
    let (mut tx, rx) = UnixStream::pair().unwrap();
    tx.write_all(b"line\n").unwrap();
    say(&format!(
        "wait_readable with data: {}",
        outcome(interrupts.wait_readable(rx.as_fd(), Some(Duration::from_secs(10))))
    ));
    raise(libc::SIGINT);
    say(&format!(
        "recv: {}",
        outcome(interrupts.recv().map(|r| r.count()))
    ));
}

/// A later handler that chains to signal-hook's keeps the signals flowing:
/// `check_handlers` says they *may* no longer reach the instance, but the
/// receives and `wait_readable` keep working.
#[test]
fn a_replacement_that_chains_to_signal_hooks_handler_does_not_break_the_receives() {
    let (status, lines) = helper("chain");
    assert_lines(
        &lines,
        &[
            "check names SIGINT: true",
            "nothing pending, recv_timeout: ok None",
            "recv_timeout: ok Some(1)",
            "wait_readable with data: ok Readable",
            "recv: ok 1",
        ],
        &[],
    );
    assert!(status.success(), "{status:?} {lines:#?}");
}

fn helper_known_handler() {
    // The program handles SIGUSR2 through signal-hook first (tokio's way),
    // so signal-hook's handler is installed for it; then other code takes
    // SIGUSR2 over with a raw sigaction; only then is `Interrupts`
    // installed, for SIGUSR1 and SIGUSR2.
    let program = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(libc::SIGUSR2, Arc::clone(&program)).unwrap();
    let _old = take_over(libc::SIGUSR2);
    let interrupts = Interrupts::builder(Signal::User1)
        .signal(Signal::User2)
        .second_signal_kills(false)
        .install()
        .unwrap();
    say(&format!(
        "check: {}",
        outcome(interrupts.check_handlers())
            .split(':')
            .next()
            .unwrap_or_default()
    ));
}

/// The handler found right after this crate registered for a signal is not
/// trusted to be signal-hook's: a takeover that happened before (or in
/// between) is still reported, because the check compares with
/// signal-hook's handler, the same function for every signal.
#[test]
fn a_takeover_before_install_is_reported_not_taken_for_signal_hooks_handler() {
    let (status, lines) = helper("known_handler");
    assert_lines(&lines, &["check: SIGUSR2"], &["check: ok ()"]);
    assert!(status.success(), "{status:?} {lines:#?}");
}

fn helper_nothing_handled() {
    // As under `nohup`: SIGINT ignored before the crate first looks at it.
    raw_sigaction(libc::SIGINT, libc::SIG_IGN, 0);
    let interrupts = Interrupts::install().unwrap();
    say(&format!(
        "signals {:?}, ignored {:?}",
        interrupts.signals().collect::<Vec<_>>(),
        interrupts.ignored().collect::<Vec<_>>()
    ));
    // Must fail at once, not block forever.
    let result = util::within(Duration::from_secs(30), "recv", move || {
        let result = interrupts.recv().map_err(|e| (e.kind(), e.to_string()));
        (interrupts, result)
    });
    let (interrupts, result) = result;
    match result {
        Ok(received) => say(&format!("recv: ok {received:?}")),
        Err((kind, message)) => say(&format!(
            "recv: {kind:?}, names SIGINT: {}",
            message.contains("SIGINT")
        )),
    }
    // With a deadline or a descriptor the wait can end, so those work.
    say(&format!(
        "recv_timeout: {}",
        outcome(interrupts.recv_timeout(Duration::from_millis(20)))
    ));
    let (mut tx, rx) = UnixStream::pair().unwrap();
    tx.write_all(b"x").unwrap();
    say(&format!(
        "wait_readable: {}",
        outcome(interrupts.wait_readable(rx.as_fd(), None))
    ));
}

/// An instance whose every signal was ignored at start handles nothing:
/// `recv` returns an error at once instead of blocking forever, while the
/// waits that can end by themselves (a timeout, a descriptor) still work.
#[test]
fn recv_on_an_instance_that_handles_nothing_fails_instead_of_blocking_forever() {
    let (status, lines) = helper("nothing_handled");
    assert_lines(
        &lines,
        &[
            "signals [], ignored [Interrupt]",
            "recv: Other, names SIGINT: true",
            "recv_timeout: ok None",
            "wait_readable: ok Readable",
        ],
        &[],
    );
    assert!(status.success(), "{status:?} {lines:#?}");
}

// ---------------------------------------------------------------------------
// Issue 18 item 6: `respect_ignored(false)` on an ignored signal
// ---------------------------------------------------------------------------

/// SIGUSR2 ignored before anything handled it: `respect_ignored(false)`
/// installs signal-hook's handler over `SIG_IGN`, and the signal arrives.
fn helper_ignored_at_start() {
    raw_sigaction(libc::SIGUSR2, libc::SIG_IGN, 0);
    let interrupts = Interrupts::builder(Signal::User2)
        .respect_ignored(false)
        .second_signal_kills(false)
        .install()
        .unwrap();
    raise(libc::SIGUSR2);
    say(&format!(
        "handled {:?}, ignored {:?}, received {}",
        interrupts.signals().collect::<Vec<_>>(),
        interrupts.ignored().collect::<Vec<_>>(),
        outcome(
            interrupts
                .recv_timeout(Duration::from_secs(10))
                .map(|r| r.map(|r| (r.signal(), r.count())))
        )
    ));
}

/// SIGUSR2 set to `SIG_IGN` after signal-hook installed its handler for it
/// (for other code here: signal-hook's `flag`; for an earlier instance
/// next): signal-hook never installs it again, so an instance could never
/// receive, and `install` must refuse instead of returning an instance
/// that waits forever. Putting the replaced handler back makes it work.
fn helper_ignored_behind_signal_hook() {
    let flag = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(libc::SIGUSR2, Arc::clone(&flag)).unwrap();
    let hook = raw_sigaction(libc::SIGUSR2, libc::SIG_IGN, 0); // this crate's first look: SIG_IGN
    let refused = Interrupts::builder(Signal::User2)
        .respect_ignored(false)
        .second_signal_kills(false)
        .install();
    say(&format!(
        "respect_ignored(false): {}",
        outcome(refused.map(drop))
    ));
    // The default keeps the signal ignored, as it was at this crate's
    // first look: nothing to refuse.
    let kept = Interrupts::builder(Signal::User2).install().unwrap();
    say(&format!(
        "respect_ignored(true): handled {:?}, ignored {:?}",
        kept.signals().collect::<Vec<_>>(),
        kept.ignored().collect::<Vec<_>>()
    ));
    drop(kept);
    // The remedy the message names: put signal-hook's handler back.
    restore(libc::SIGUSR2, &hook);
    let interrupts = Interrupts::builder(Signal::User2)
        .respect_ignored(false)
        .second_signal_kills(false)
        .default_after_drop(false)
        .install()
        .unwrap();
    raise(libc::SIGUSR2);
    say(&format!(
        "restored: received {}, flag {}",
        outcome(
            interrupts
                .recv_timeout(Duration::from_secs(10))
                .map(|r| r.map(|r| r.signal()))
        ),
        flag.load(Ordering::SeqCst)
    ));
    // The same with an instance of this crate before: SIG_IGN behind
    // signal-hook's handler, then a new install.
    drop(interrupts);
    raw_sigaction(libc::SIGUSR2, libc::SIG_IGN, 0);
    let refused = Interrupts::builder(Signal::User2)
        .respect_ignored(false)
        .install();
    say(&format!(
        "after an instance: {}",
        outcome(refused.map(drop))
    ));
}

#[test]
fn respect_ignored_false_receives_a_signal_ignored_at_start() {
    let (status, lines) = helper("ignored_at_start");
    assert_lines(
        &lines,
        &["handled [User2], ignored [], received ok Some((User2, 1))"],
        &[],
    );
    assert!(status.success(), "{status:?} {lines:#?}");
}

/// Before the fix `install` returned `Ok` here and the instance's
/// `recv_timeout` returned `Ok(None)` forever: `check_handlers` even
/// took `SIG_IGN` for signal-hook's handler.
#[test]
fn install_refuses_a_signal_that_signal_hook_can_no_longer_handle() {
    let (status, lines) = helper("ignored_behind_signal_hook");
    let refusal = "Interrupts::install: SIGUSR2 is set to SIG_IGN, not to signal-hook's \
                   handler: signal-hook handled SIGUSR2 in this process before and installs \
                   its handler only for a signal's first registration, and other code set \
                   SIG_IGN since, so no SIGUSR2 could reach this Interrupts (restore the \
                   handler that code replaced; sigaction(2) returns it)";
    assert_lines(
        &lines,
        &[
            &format!("respect_ignored(false): {refusal}"),
            "respect_ignored(true): handled [], ignored [User2]",
            "restored: received ok Some(User2), flag true",
            &format!("after an instance: {refusal}"),
        ],
        &[],
    );
    assert!(status.success(), "{status:?} {lines:#?}");
}
