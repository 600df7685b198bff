//! `Interrupts` as one process-wide policy (issue 12 items 1, 4, 6; issue 9
//! items 5b, 6, 7): several instances in one process, fork children that
//! go on running, foreground scopes, a handler taken over by other code,
//! `errno`, and `wait_readable`.
//!
//! Anything that may end a process or changes a disposition for good runs
//! in a helper process: this test binary re-executed with
//! `FDTABLE_POLICY_HELPER=<mode>`, single-threaded (`--test-threads=1`),
//! with SIGINT, SIGTERM and SIGQUIT reset to the default before `exec` (as
//! an interactive shell does) and core dumps off. The rest takes
//! `util::serial()`.

mod util;

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use fdtable::{FdTable, Interrupts, Signal, WaitOutcome};
use util::ChildEnd;

const HELPER_ENV: &str = "FDTABLE_POLICY_HELPER";
const PROMPTLY: Duration = Duration::from_secs(60);

/// Run this binary as the helper `mode`; its exit status and the lines it
/// printed. Bounded: a helper that hangs fails the test.
fn helper(mode: &str) -> (ExitStatus, Vec<String>) {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "helper_process",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HELPER_ENV, mode);
    // SAFETY: runs in the child before exec; `signal` and `setrlimit` are
    // async-signal-safe and the closure allocates nothing.
    unsafe {
        command.pre_exec(|| {
            for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGQUIT] {
                libc::signal(sig, libc::SIG_DFL);
            }
            let none = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            libc::setrlimit(libc::RLIMIT_CORE, &none);
            Ok(())
        });
    }
    let what = format!("helper {mode}");
    let out = util::within(PROMPTLY, &what, move || {
        command.output().expect("spawn helper")
    });
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    (out.status, lines)
}

fn assert_lines(lines: &[String], expected: &[&str], absent: &[&str]) {
    for want in expected {
        assert!(
            lines.iter().any(|l| l == want),
            "{want:?} missing: {lines:#?}"
        );
    }
    for not in absent {
        assert!(
            !lines.iter().any(|l| l == not),
            "{not:?} printed: {lines:#?}"
        );
    }
}

fn died_by(status: ExitStatus, sig: libc::c_int) -> bool {
    status.signal() == Some(sig)
}

/// Runs only in a helper process; a no-op in the test run itself.
#[test]
fn helper_process() {
    let Ok(mode) = std::env::var(HELPER_ENV) else {
        return;
    };
    match mode.split(':').collect::<Vec<_>>()[..] {
        ["policy", create, drop] => {
            helper_policy(create == "library_first", drop == "library_first")
        }
        ["disarm_any"] => helper_disarm_any(),
        ["fork_children"] => helper_fork_children(),
        ["takeover"] => helper_takeover(),
        ["foreground"] => helper_foreground(),
        _ => panic!("unknown helper mode {mode}"),
    }
    std::process::exit(0);
}

/// Print `line` on a line of its own (libtest has just printed
/// `test helper_process ... ` without a newline).
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "\n{line}").unwrap();
    out.flush().unwrap();
}

fn raise(sig: libc::c_int) {
    // SAFETY: raise has no preconditions; every caller has a handler (or
    // wants the default action).
    assert_eq!(unsafe { libc::raise(sig) }, 0);
}

/// Every delivery pending on `interrupts`, summed.
fn drain(interrupts: &Interrupts) -> u64 {
    std::iter::from_fn(|| interrupts.try_recv())
        .map(|r| r.count())
        .sum()
}

// ---------------------------------------------------------------------------
// Issue 12 item 1: a library's instance and the program's
// ---------------------------------------------------------------------------

fn helper_policy(library_first: bool, drop_library_first: bool) {
    // The library keeps every default ("second signal kills"); the program
    // opts out.
    let library = || Interrupts::install().unwrap();
    let program = || {
        Interrupts::builder(Signal::Interrupt)
            .second_signal_kills(false)
            .install()
            .unwrap()
    };
    let (library, program) = if library_first {
        let l = library();
        (l, program())
    } else {
        let p = program();
        (library(), p)
    };
    for _ in 0..3 {
        raise(libc::SIGINT);
    }
    say(&format!(
        "both alive: survived 3, library saw {} program saw {} armed={}",
        drain(&library),
        drain(&program),
        library.is_armed()
    ));
    if drop_library_first {
        drop(library);
        for _ in 0..3 {
            raise(libc::SIGINT);
        }
        say(&format!(
            "library dropped: survived 3, program saw {}",
            drain(&program)
        ));
        drop(program);
        say("both dropped");
        raise(libc::SIGINT); // the default action is back
        say("survived after both dropped");
    } else {
        drop(program);
        say("program dropped");
        raise(libc::SIGINT);
        say(&format!("armed={}", library.is_armed()));
        raise(libc::SIGINT); // the library alone wants the kill now
        say("survived the second");
    }
}

/// Both creation orders and both drop orders: while the program's instance
/// lives, its opt-out wins; once only the library's is left, the library's
/// choice applies; once none is left, the default action is back.
#[test]
fn a_librarys_instance_never_overrides_the_programs_opt_out_in_any_creation_or_drop_order() {
    for create in ["library_first", "program_first"] {
        for drop in ["library_first", "program_first"] {
            let (status, lines) = helper(&format!("policy:{create}:{drop}"));
            let both = "both alive: survived 3, library saw 3 program saw 3 armed=false";
            if drop == "library_first" {
                assert_lines(
                    &lines,
                    &[
                        both,
                        "library dropped: survived 3, program saw 3",
                        "both dropped",
                    ],
                    &["survived after both dropped"],
                );
            } else {
                assert_lines(
                    &lines,
                    &[both, "program dropped", "armed=true"],
                    &["survived the second"],
                );
            }
            assert!(
                died_by(status, libc::SIGINT),
                "create {create}, drop {drop}: {status:?} {lines:#?}"
            );
        }
    }
}

fn helper_disarm_any() {
    let a = Interrupts::install().unwrap();
    let b = Interrupts::builder(Signal::Interrupt)
        .signal(Signal::Terminate)
        .install()
        .unwrap();
    raise(libc::SIGINT);
    say(&format!("armed={},{}", a.is_armed(), b.is_armed()));
    b.disarm();
    say(&format!("after disarm on b: a armed={}", a.is_armed()));
    raise(libc::SIGINT);
    say(&format!(
        "survived, a saw {} b saw {}",
        drain(&a),
        drain(&b)
    ));
    a.disarm();
}

/// "Armed" is one flag for the process: `disarm` on any instance disarms.
#[test]
fn disarm_on_any_instance_disarms_the_whole_process() {
    let (status, lines) = helper("disarm_any");
    assert_lines(
        &lines,
        &[
            "armed=true,true",
            "after disarm on b: a armed=false",
            "survived, a saw 2 b saw 2",
        ],
        &[],
    );
    assert!(status.success(), "{status:?} {lines:#?}");
}

// ---------------------------------------------------------------------------
// Issue 9 items 5b and 6: fork children that go on running
// ---------------------------------------------------------------------------

static TABLE: FdTable = FdTable::new();

fn events(signal: Signal) -> Interrupts {
    Interrupts::builder(signal)
        .second_signal_kills(false)
        .install()
        .unwrap()
}

/// Fork, run `child` there (it returns an exit code), reap it.
fn fork_child(child: impl FnOnce() -> i32) -> ChildEnd {
    // SAFETY: this helper process is single-threaded (libtest runs the one
    // test with --test-threads=1 and nothing else started a thread), so the
    // child may allocate; it leaves with `_exit`.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork");
    if pid == 0 {
        let code = child();
        // SAFETY: ends the child without running the parent's destructors.
        unsafe { libc::_exit(code) };
    }
    util::wait_child(pid, PROMPTLY).unwrap()
}

fn helper_fork_children() {
    let parent = events(Signal::Terminate);
    let journal = TABLE.track(File::open("/dev/null").unwrap()).unwrap();
    // SAFETY (each child): `retire_all_in_child` runs right after fork, in
    // a single-threaded child, before anything else uses TABLE.
    let retired_alone = fork_child(|| {
        let _ = unsafe { TABLE.retire_all_in_child(&[]) };
        raise(libc::SIGTERM); // no Interrupts of its own: the default
        0
    });
    let retired_with_own = fork_child(|| {
        let _ = unsafe { TABLE.retire_all_in_child(&[]) };
        let own = events(Signal::Terminate);
        raise(libc::SIGTERM);
        match own.recv_timeout(Duration::from_secs(10)) {
            Ok(Some(r)) if r.signal() == Signal::Terminate && r.count() == 1 => 0,
            _ => 1,
        }
    });
    // SAFETY: as in `fork_child`; this branch ends with `_exit`, so
    // `parent` is moved only in the child.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        let own = events(Signal::Terminate);
        drop(parent); // inherited: must not touch the child's own count
        raise(libc::SIGTERM);
        let code = match own.try_recv() {
            Some(r) if r.signal() == Signal::Terminate => {
                drop(own); // the child's last: the default comes back
                raise(libc::SIGTERM);
                2
            }
            _ => 1,
        };
        // SAFETY: ends the child.
        unsafe { libc::_exit(code) };
    }
    let installed_then_dropped = util::wait_child(pid, PROMPTLY).unwrap();
    say(&format!(
        "retired alone: {retired_alone:?}; retired with its own: {retired_with_own:?}; \
         own installed then dropped: {installed_then_dropped:?}"
    ));
    // The parent's instance saw none of its children's signals.
    say(&format!("parent saw {}", drain(&parent)));
    drop(journal);
}

/// A fork child that goes on running: after `retire_all_in_child` it still
/// dies by the default action without an `Interrupts` of its own, receives
/// the signal as an event with one, and after dropping its own last one
/// (and its parent's inherited one, which must not count) dies by the
/// default action again.
#[test]
fn fork_children_install_their_own_interrupts_and_get_the_default_back_after_dropping_them() {
    let (status, lines) = helper("fork_children");
    let term = libc::SIGTERM;
    let expected = format!(
        "retired alone: Signaled({term}); retired with its own: Exited(0); \
         own installed then dropped: Signaled({term})"
    );
    assert_lines(&lines, &[&expected, "parent saw 0"], &[]);
    assert!(status.success(), "{status:?} {lines:#?}");
}

// ---------------------------------------------------------------------------
// Issue 9 item 7 / issue 12 item 6: another crate takes the handler over
// ---------------------------------------------------------------------------

static CTRLC_LIKE_RAN: AtomicBool = AtomicBool::new(false);

extern "C" fn ctrlc_like_handler(_: libc::c_int) {
    CTRLC_LIKE_RAN.store(true, Ordering::SeqCst);
}

/// What `ctrlc::set_handler` does: a raw `sigaction` for SIGINT with its
/// own handler. Returns the disposition it replaced.
fn take_sigint_over() -> libc::sigaction {
    // SAFETY: zeroed sigactions are valid; the handler is an `extern "C"`
    // function that only stores an atomic.
    unsafe {
        let mut new: libc::sigaction = std::mem::zeroed();
        new.sa_sigaction = ctrlc_like_handler as extern "C" fn(libc::c_int) as libc::sighandler_t;
        new.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut new.sa_mask);
        let mut old: libc::sigaction = std::mem::zeroed();
        assert_eq!(libc::sigaction(libc::SIGINT, &new, &mut old), 0);
        old
    }
}

fn restore_sigint(old: &libc::sigaction) {
    // SAFETY: puts back a disposition `sigaction` handed us.
    assert_eq!(
        unsafe { libc::sigaction(libc::SIGINT, old, std::ptr::null_mut()) },
        0
    );
}

fn helper_takeover() {
    let interrupts = events(Signal::Interrupt);
    say(&format!(
        "before: {:?}",
        interrupts.check_handlers().map_err(|e| e.to_string())
    ));
    let old = take_sigint_over();
    let error = interrupts
        .recv_timeout(Duration::from_secs(5))
        .expect_err("recv_timeout waited for a signal that cannot arrive");
    say(&format!("recv_timeout: {error}"));
    let error = interrupts.recv().expect_err("recv");
    say(&format!("recv kind: {:?}", error.kind()));
    let (_tx, rx) = UnixStream::pair().unwrap();
    let error = interrupts
        .wait_readable(rx.as_fd(), None)
        .expect_err("wait_readable");
    say(&format!(
        "wait_readable: {}",
        error.to_string().starts_with("SIGINT:")
    ));
    raise(libc::SIGINT);
    say(&format!(
        "the other handler ran: {}",
        CTRLC_LIKE_RAN.load(Ordering::SeqCst)
    ));

    // Put signal-hook's handler back: everything works again.
    restore_sigint(&old);
    interrupts.check_handlers().unwrap();
    raise(libc::SIGINT);
    say(&format!(
        "restored: {:?}",
        interrupts
            .recv_timeout(Duration::from_secs(10))
            .unwrap()
            .map(|r| r.count())
    ));

    // A takeover while `recv` is already blocked is reported too.
    let taker = std::thread::spawn(|| {
        std::thread::sleep(Duration::from_millis(200));
        take_sigint_over();
    });
    let error = interrupts.recv().expect_err("blocked recv");
    taker.join().unwrap();
    say(&format!(
        "blocked recv: {}",
        error.to_string().starts_with("SIGINT:")
    ));
}

/// A later raw `sigaction` on SIGINT (the `ctrlc` crate's way) makes every
/// blocking receive fail at once with an error naming SIGINT instead of
/// waiting for a signal that can no longer arrive, also when it happens
/// while a receive is blocked.
#[test]
fn a_handler_taken_over_by_a_raw_sigaction_is_reported_by_every_blocking_receive() {
    let (status, lines) = helper("takeover");
    assert_lines(
        &lines,
        &[
            "before: Ok(())",
            "recv kind: Other",
            "wait_readable: true",
            "the other handler ran: true",
            "restored: Some(1)",
            "blocked recv: true",
        ],
        &[],
    );
    let line = lines
        .iter()
        .find(|l| l.starts_with("recv_timeout: "))
        .unwrap_or_else(|| panic!("{lines:#?}"));
    assert!(
        line.starts_with("recv_timeout: SIGINT: ") && line.contains("replaced"),
        "{line}"
    );
    assert!(status.success(), "{status:?} {lines:#?}");
}

// ---------------------------------------------------------------------------
// Issue 12 item 4: foreground scopes (semantics; the terminal test is in
// tests/terminal.rs)
// ---------------------------------------------------------------------------

fn helper_foreground() {
    let interrupts = Interrupts::install().unwrap(); // SIGINT, kills
    {
        let _scope = interrupts.foreground_child().unwrap();
        for _ in 0..3 {
            raise(libc::SIGINT);
        }
        raise(libc::SIGQUIT); // no instance handles it: ignored in the scope
    }
    say(&format!(
        "scope: counted {} armed={}",
        drain(&interrupts),
        interrupts.is_armed()
    ));
    {
        let _outer = interrupts.foreground_child().unwrap();
        {
            let _inner = interrupts.foreground_child().unwrap();
            raise(libc::SIGINT);
        }
        raise(libc::SIGINT); // the outer scope is still open
    }
    say(&format!(
        "nested: counted {} armed={}",
        drain(&interrupts),
        interrupts.is_armed()
    ));
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _scope = interrupts.foreground_child().unwrap();
        panic!("a panic while the child runs");
    }));
    raise(libc::SIGINT); // the scope ended with the panic: this arms
    say(&format!(
        "after panic={}: armed={}",
        panicked.is_err(),
        interrupts.is_armed()
    ));
    interrupts.disarm();
    drain(&interrupts);
    raise(libc::SIGQUIT); // outside a scope: SIGQUIT's default action
    say("survived SIGQUIT outside the scope");
}

/// Inside the scope SIGINT is counted but neither arms nor kills, and
/// SIGQUIT (handled by no instance) is ignored; scopes nest and end on
/// panic; outside them the usual policy and SIGQUIT's default are back.
#[test]
fn foreground_scopes_count_without_arming_nest_end_on_panic_and_cover_sigquit() {
    let (status, lines) = helper("foreground");
    assert_lines(
        &lines,
        &[
            "scope: counted 3 armed=false",
            "nested: counted 2 armed=false",
            "after panic=true: armed=true",
        ],
        &["survived SIGQUIT outside the scope"],
    );
    assert!(died_by(status, libc::SIGQUIT), "{status:?} {lines:#?}");
}

// ---------------------------------------------------------------------------
// In-process (serialised)
// ---------------------------------------------------------------------------

/// `try_recv` is documented async-signal-safe: called from a handler, it
/// must not change the `errno` of the code it interrupted (its `read` on
/// the empty pipe sets `EAGAIN`).
#[test]
fn try_recv_leaves_errno_as_it_found_it() {
    let _serial = util::serial();
    let interrupts = Interrupts::builder(Signal::User1)
        .respect_ignored(false)
        .second_signal_kills(false)
        .install()
        .unwrap();
    nix::errno::Errno::set_raw(4242);
    assert_eq!(interrupts.try_recv(), None);
    assert_eq!(nix::errno::Errno::last_raw(), 4242, "empty pipe");
    raise(libc::SIGUSR1);
    nix::errno::Errno::set_raw(4343);
    assert_eq!(interrupts.try_recv().map(|r| r.count()), Some(1));
    assert_eq!(nix::errno::Errno::last_raw(), 4343, "after a drain");
}

/// A pending signal wins over readable data; then the data; a timeout when
/// neither; end of file counts as readable; and a signal sent from another
/// thread wakes a wait with no timeout.
#[test]
fn wait_readable_reports_a_pending_signal_first_then_the_data() {
    let _serial = util::serial();
    let interrupts = Interrupts::builder(Signal::User2)
        .respect_ignored(false)
        .second_signal_kills(false)
        .install()
        .unwrap();
    let (mut tx, mut rx) = UnixStream::pair().unwrap();
    let short = Some(Duration::from_millis(20));
    assert_eq!(
        interrupts.wait_readable(rx.as_fd(), short).unwrap(),
        WaitOutcome::TimedOut
    );

    tx.write_all(b"line\n").unwrap();
    raise(libc::SIGUSR2);
    match interrupts.wait_readable(rx.as_fd(), None).unwrap() {
        WaitOutcome::Signal(r) => assert_eq!((r.signal(), r.count()), (Signal::User2, 1)),
        other => panic!("the pending signal must win, got {other:?}"),
    }
    assert_eq!(
        interrupts.wait_readable(rx.as_fd(), None).unwrap(),
        WaitOutcome::Readable
    );
    let mut buf = [0u8; 16];
    assert_eq!(rx.read(&mut buf).unwrap(), 5);
    assert_eq!(
        interrupts.wait_readable(rx.as_fd(), short).unwrap(),
        WaitOutcome::TimedOut
    );

    // A signal from another thread ends a wait without a timeout.
    let sender = std::thread::spawn(|| {
        std::thread::sleep(Duration::from_millis(100));
        // SAFETY: a process-directed SIGUSR2; handled above.
        unsafe { libc::kill(libc::getpid(), libc::SIGUSR2) };
    });
    let outcome = util::within(PROMPTLY, "wait_readable(None)", {
        let fd = rx.as_fd().try_clone_to_owned().unwrap();
        move || {
            interrupts
                .wait_readable(fd.as_fd(), None)
                .map(|o| (o, interrupts))
        }
    });
    sender.join().unwrap();
    let (outcome, interrupts) = outcome.unwrap();
    assert!(matches!(outcome, WaitOutcome::Signal(r) if r.signal() == Signal::User2));

    drop(tx); // end of file: a read will not block
    assert_eq!(
        interrupts.wait_readable(rx.as_fd(), short).unwrap(),
        WaitOutcome::Readable
    );
}
