//! The errors of `Interrupts` name the operation, the number and the cause
//! (issue 18 item 7): `wait_readable` on a descriptor that is not open, and
//! `install` at the descriptor limit. (`AsyncInterrupts::recv` after its
//! runtime is gone is in `tests/async_recv.rs`.)
//!
//! The descriptor limit is process-wide: that test runs in a helper process
//! (this binary re-executed, single-threaded). The rest takes
//! `util::serial()`.

mod util;

use std::io::{self, ErrorKind};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Duration;

use fdtable::{Interrupts, Signal};
use util::{assert_lines, say};

const HELPER_ENV: &str = "FDTABLE_ERRORS_HELPER";
const PROMPTLY: Duration = Duration::from_secs(60);

/// The OS error an error carries as its source.
fn os_source(error: &io::Error) -> Option<i32> {
    std::error::Error::source(error)?
        .downcast_ref::<io::Error>()?
        .raw_os_error()
}

/// Before: `Bad file descriptor (os error 9)`, naming neither the call nor
/// the number.
#[test]
fn wait_readable_on_a_closed_descriptor_names_the_call_and_the_number() {
    let _serial = util::serial();
    let interrupts = Interrupts::builder(Signal::User1)
        .respect_ignored(false)
        .second_signal_kills(false)
        .install()
        .unwrap();
    let closed = util::dev_null().as_raw_fd(); // closed at the end of the statement
    assert!(!util::is_open(closed));
    // SAFETY: deliberately a number that is not open (the serial lock keeps
    // other tests from opening it meanwhile): `poll` reports it POLLNVAL,
    // nothing else touches it. It is not -1 (BorrowedFd's niche).
    let fd = unsafe { BorrowedFd::borrow_raw(closed) };
    let error = util::within(PROMPTLY, "wait_readable", move || {
        let error = interrupts
            .wait_readable(fd, Some(Duration::from_secs(600)))
            .unwrap_err();
        (error.kind(), error.to_string(), os_source(&error))
    });
    let (kind, message, source) = error;
    assert_eq!(kind, ErrorKind::InvalidInput, "{message}");
    assert!(
        message.starts_with("Interrupts::wait_readable: "),
        "{message}"
    );
    assert!(message.contains(&format!("fd {closed} ")), "{message}");
    assert!(message.contains("not an open descriptor"), "{message}");
    assert_eq!(source, Some(libc::EBADF), "{message}");
}

// ---------------------------------------------------------------------------
// Helper processes
// ---------------------------------------------------------------------------

#[test]
fn helper_process() {
    let Ok(mode) = std::env::var(HELPER_ENV) else {
        return;
    };
    match mode.as_str() {
        "descriptor_limit" => helper_descriptor_limit(),
        _ => panic!("unknown helper mode {mode}"),
    }
    std::process::exit(0);
}

/// Install instances at a soft limit of 64 descriptors until `install`
/// fails; report the error's facts, that the failed install left no
/// descriptor behind, and that dropping one instance makes room again.
fn helper_descriptor_limit() {
    let limit = libc::rlimit {
        rlim_cur: 64,
        rlim_max: 64,
    };
    // SAFETY: a valid rlimit; lowering our own limit.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);
    let base = util::open_fd_count();
    // Counting needs a descriptor of its own (`/proc/self/fd`): keep two in
    // reserve while filling the table, free them to count.
    let reserve = [util::dev_null(), util::dev_null()];
    let mut instances = Vec::new();
    let error = loop {
        assert!(instances.len() < 64, "64 instances fit in 64 descriptors?");
        match Interrupts::builder(Signal::User1)
            .second_signal_kills(false)
            .install()
        {
            Ok(interrupts) => instances.push(interrupts),
            Err(error) => break error,
        }
    };
    drop(reserve);
    let leaked = util::open_fd_count() as i64 - (base + 2 * instances.len()) as i64;
    say(&format!("failed install leaked {leaked}"));
    say(&format!("installed {}", instances.len()));
    say(&format!(
        "kind as EMFILE's {}",
        error.kind() == io::Error::from_raw_os_error(libc::EMFILE).kind()
    ));
    say(&format!(
        "source EMFILE {}",
        os_source(&error) == Some(libc::EMFILE)
    ));
    say(&format!("message {error}"));
    instances.pop();
    let again = Interrupts::builder(Signal::User1)
        .second_signal_kills(false)
        .install();
    say(&format!("after a drop: ok {}", again.is_ok()));
}

/// Before: `Too many open files (os error 24)`, saying neither what an
/// instance costs nor that `MAX_INSTANCES` is out of reach.
#[test]
fn install_at_the_descriptor_limit_says_each_instance_costs_two_descriptors() {
    // Spawning opens descriptors here: not while another test relies on a
    // number staying closed.
    let _serial = util::serial();
    let (status, lines) = util::run_helper(HELPER_ENV, "descriptor_limit", PROMPTLY);
    assert_lines(
        &lines,
        &[
            "failed install leaked 0",
            "kind as EMFILE's true",
            "source EMFILE true",
            "after a drop: ok true",
        ],
        &[],
    );
    let message = lines
        .iter()
        .find_map(|l| l.strip_prefix("message "))
        .unwrap_or_else(|| panic!("no message: {lines:#?}"));
    for fact in [
        "Interrupts::install: pipe2(2)",
        "Too many open files",
        "each Interrupts holds two descriptors",
        "soft RLIMIT_NOFILE of 64 descriptors",
        "room for at most 32 instances",
        "Interrupts::MAX_INSTANCES, 32767, is out of reach",
    ] {
        assert!(message.contains(fact), "{fact:?} missing: {message}");
    }
    let installed: usize = lines
        .iter()
        .find_map(|l| l.strip_prefix("installed "))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count: {lines:#?}"));
    assert!((20..32).contains(&installed), "{installed}: {lines:#?}");
    assert!(status.success(), "{status:?} {lines:#?}");
}
