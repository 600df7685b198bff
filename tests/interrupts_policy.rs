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
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fdtable::{FdTable, Interrupts, Signal, WaitOutcome};
use util::{assert_lines, raise, say, ChildEnd};

const HELPER_ENV: &str = "FDTABLE_POLICY_HELPER";
const PROMPTLY: Duration = Duration::from_secs(60);

/// Run this binary as the helper `mode` (see [`util::run_helper`]).
fn helper(mode: &str) -> (ExitStatus, Vec<String>) {
    util::run_helper(HELPER_ENV, mode, PROMPTLY)
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
        ["stale_armed"] => helper_stale_armed(),
        ["program_handles_it", opt_out] => helper_program_handles_it(opt_out == "opt_out"),
        ["foreground"] => helper_foreground(),
        ["forgotten_scope", then] => helper_forgotten_scope(then),
        _ => panic!("unknown helper mode {mode}"),
    }
    std::process::exit(0);
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
        Interrupts::is_armed()
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
        say(&format!("armed={}", Interrupts::is_armed()));
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
    say(&format!("armed={}", Interrupts::is_armed()));
    Interrupts::disarm();
    say(&format!("after disarm: armed={}", Interrupts::is_armed()));
    raise(libc::SIGINT);
    say(&format!(
        "survived, a saw {} b saw {}",
        drain(&a),
        drain(&b)
    ));
    Interrupts::disarm();
}

/// "Armed" is one flag for the process: `Interrupts::disarm` disarms it
/// for every instance.
#[test]
fn disarm_disarms_the_whole_process() {
    let (status, lines) = helper("disarm_any");
    assert_lines(
        &lines,
        &[
            "armed=true",
            "after disarm: armed=false",
            "survived, a saw 2 b saw 2",
        ],
        &[],
    );
    assert!(status.success(), "{status:?} {lines:#?}");
}

// ---------------------------------------------------------------------------
// Review finding 1: "armed" does not outlive every instance
// ---------------------------------------------------------------------------

fn helper_stale_armed() {
    // A command-scoped instance, twice: each sees one Ctrl-C (which arms
    // the process), handles it, and is dropped.
    for round in 0..2 {
        let interrupts = Interrupts::install().unwrap();
        say(&format!(
            "round {round}: armed at install={}",
            Interrupts::is_armed()
        ));
        raise(libc::SIGINT);
        let got = interrupts.recv_timeout(Duration::from_secs(10)).unwrap();
        say(&format!("round {round}: got {:?}", got.map(|r| r.count())));
    }
    // "Armed" is one flag for every signal: armed through SIGUSR1's
    // instance, it stays armed while any instance lives...
    let user1 = Interrupts::builder(Signal::User1).install().unwrap();
    let user2 = Interrupts::builder(Signal::User2).install().unwrap();
    raise(libc::SIGUSR1);
    drop(user1);
    say(&format!("user1 dropped: armed={}", Interrupts::is_armed()));
    drop(user2);
    // ... and is cleared once none does: a later SIGTERM instance starts
    // unarmed, and its first SIGTERM is an event.
    let term = Interrupts::builder(Signal::Terminate).install().unwrap();
    say(&format!(
        "term: armed at install={}",
        Interrupts::is_armed()
    ));
    raise(libc::SIGTERM);
    say(&format!("term: got {}", drain(&term)));
}

/// Install, receive one signal, drop, install again, raise once: the new
/// instance gets an event, the process is not killed by its first Ctrl-C.
/// "Armed" stays process-wide (any signal arms, the next of any kills)
/// while some instance lives, and is cleared when the process goes from
/// no instance to one.
#[test]
fn a_new_instance_after_every_instance_was_dropped_starts_unarmed() {
    let (status, lines) = helper("stale_armed");
    assert_lines(
        &lines,
        &[
            "round 0: armed at install=false",
            "round 0: got Some(1)",
            "round 1: armed at install=false",
            "round 1: got Some(1)",
            "user1 dropped: armed=true",
            "term: armed at install=false",
            "term: got 1",
        ],
        &[],
    );
    assert!(status.success(), "{status:?} {lines:#?}");
}

// ---------------------------------------------------------------------------
// Review finding 8: a library's default after drop vs a program that
// handles the signal itself through signal-hook
// ---------------------------------------------------------------------------

fn helper_program_handles_it(opt_out: bool) {
    // A library opens a scoped instance with every default on (SIGINT had
    // its default action before, so the default comes back after drop)...
    let library = Interrupts::install().unwrap();
    // ... while the program handles Ctrl-C itself through signal-hook
    // (tokio's `signal::ctrl_c` does the same) and, with `opt_out`, turns
    // every instance's default after drop off, for the whole process.
    let program = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(libc::SIGINT, Arc::clone(&program)).unwrap();
    if opt_out {
        Interrupts::disable_default_after_drop_globally();
    }
    raise(libc::SIGINT);
    say(&format!(
        "library alive: library saw {}, program saw {}",
        drain(&library),
        program.swap(false, Ordering::SeqCst)
    ));
    drop(library);
    raise(libc::SIGINT);
    say(&format!(
        "library dropped: survived, program saw {}",
        program.swap(false, Ordering::SeqCst)
    ));
    // A later library instance asking for the default again changes nothing.
    drop(Interrupts::install().unwrap());
    raise(libc::SIGINT);
    say(&format!(
        "second library dropped: survived, program saw {}",
        program.swap(false, Ordering::SeqCst)
    ));
}

/// Without the program's opt-out, a library's instance with the default
/// `default_after_drop` ends a program that handles SIGINT through
/// signal-hook once the library drops it (documented); with
/// `Interrupts::disable_default_after_drop_globally()` the program keeps
/// getting its Ctrl-C, also after later library instances come and go.
#[test]
fn the_programs_global_opt_out_keeps_a_librarys_default_from_killing_it() {
    let (status, lines) = helper("program_handles_it:default");
    assert_lines(
        &lines,
        &["library alive: library saw 1, program saw true"],
        &["library dropped: survived, program saw true"],
    );
    assert!(died_by(status, libc::SIGINT), "{status:?} {lines:#?}");

    let (status, lines) = helper("program_handles_it:opt_out");
    assert_lines(
        &lines,
        &[
            "library alive: library saw 1, program saw true",
            "library dropped: survived, program saw true",
            "second library dropped: survived, program saw true",
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
    util::fork_child(PROMPTLY, child)
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
    // Issue 9 item 6 as a real child does it: the parent's inherited SIGINT
    // instance stays alive (it is never dropped before `_exit`), and the
    // child's own last instance is dropped. A live count shared with the
    // parent would still see one instance and keep SIGINT caught.
    let parent_int = events(Signal::Interrupt);
    let parent_kept = fork_child(|| {
        let own = events(Signal::Interrupt);
        raise(libc::SIGINT);
        match own.try_recv() {
            Some(r) if r.signal() == Signal::Interrupt => {
                drop(own);
                raise(libc::SIGINT); // must kill: the default is back
                2
            }
            _ => 1,
        }
    });
    say(&format!(
        "retired alone: {retired_alone:?}; retired with its own: {retired_with_own:?}; \
         own installed then dropped: {installed_then_dropped:?}; \
         SIGINT, parent's kept: {parent_kept:?}"
    ));
    // The parent's instances saw none of their children's signals.
    say(&format!(
        "parent saw {}",
        drain(&parent) + drain(&parent_int)
    ));
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
    let (term, int) = (libc::SIGTERM, libc::SIGINT);
    let expected = format!(
        "retired alone: Signaled({term}); retired with its own: Exited(0); \
         own installed then dropped: Signaled({term}); \
         SIGINT, parent's kept: Signaled({int})"
    );
    assert_lines(&lines, &[&expected, "parent saw 0"], &[]);
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
        Interrupts::is_armed()
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
        Interrupts::is_armed()
    ));
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _scope = interrupts.foreground_child().unwrap();
        panic!("a panic while the child runs");
    }));
    raise(libc::SIGINT); // the scope ended with the panic: this arms
    say(&format!(
        "after panic={}: armed={}",
        panicked.is_err(),
        Interrupts::is_armed()
    ));
    Interrupts::disarm();
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
// Issue 18 item 5: a forgotten foreground scope
// ---------------------------------------------------------------------------

/// `mem::forget` a scope, drop the instance (the last), then: `default`
/// raises SIGINT (the default action must be back), `later_instance`
/// installs a new instance and raises SIGINT twice (the second must kill),
/// `nothing_handled` does the same with an instance that handles no signal
/// (SIGINT ignored at start, so no per-signal record counts it) and raises
/// SIGQUIT, which the scope had covered.
fn helper_forgotten_scope(then: &str) {
    if then == "nothing_handled" {
        // SAFETY: SIG_IGN is a valid disposition for SIGINT.
        unsafe { libc::signal(libc::SIGINT, libc::SIG_IGN) };
    }
    let interrupts = Interrupts::install().unwrap(); // SIGINT, kills
    std::mem::forget(interrupts.foreground_child().unwrap());
    raise(libc::SIGQUIT); // inside the (forgotten) scope: swallowed
    say(&format!(
        "scope forgotten, survived SIGQUIT, handled {:?}",
        interrupts.signals().collect::<Vec<_>>()
    ));
    drop(interrupts);
    say("dropped");
    match then {
        "default" => raise(libc::SIGINT),
        "later_instance" => {
            let _later = Interrupts::install().unwrap();
            raise(libc::SIGINT);
            say(&format!("later: armed={}", Interrupts::is_armed()));
            raise(libc::SIGINT); // the second Ctrl-C kills
        }
        "nothing_handled" => raise(libc::SIGQUIT),
        _ => panic!("unknown forgotten_scope mode {then}"),
    }
    say("survived");
}

/// A forgotten `ForegroundChild` does not outlive the last instance: the
/// default action comes back when it is dropped (SIGINT, and SIGQUIT which
/// the scope covered even without a per-signal record), and a later
/// instance kills on the second Ctrl-C as documented.
#[test]
fn a_forgotten_foreground_scope_ends_with_the_last_instance() {
    let (status, lines) = helper("forgotten_scope:default");
    assert_lines(
        &lines,
        &[
            "scope forgotten, survived SIGQUIT, handled [Interrupt]",
            "dropped",
        ],
        &["survived"],
    );
    assert!(died_by(status, libc::SIGINT), "{status:?} {lines:#?}");

    let (status, lines) = helper("forgotten_scope:later_instance");
    assert_lines(&lines, &["dropped", "later: armed=true"], &["survived"]);
    assert!(died_by(status, libc::SIGINT), "{status:?} {lines:#?}");

    let (status, lines) = helper("forgotten_scope:nothing_handled");
    assert_lines(
        &lines,
        &["scope forgotten, survived SIGQUIT, handled []", "dropped"],
        &["survived"],
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
