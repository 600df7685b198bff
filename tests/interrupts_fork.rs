//! `Interrupts` in fork children that go on running, as a process of their
//! own (review findings 3 and 9): an instance inherited from the parent
//! must not touch the parent's pipe, and a descendant that is handed its
//! ancestor's pid must not take the ancestor's instances for its own.
//!
//! Runs in helper processes (this binary re-executed, single-threaded), so
//! that fork children may allocate and may die by a signal.

mod util;

use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::process::ExitStatus;
use std::time::Duration;

use fdtable::{Interrupts, Signal};
use util::{assert_lines, raise, readable_now, say, ChildEnd};

const HELPER_ENV: &str = "FDTABLE_FORK_HELPER";
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
        "inherited" => helper_inherited(),
        "pid_reuse" => helper_pid_reuse(),
        _ => panic!("unknown helper mode {mode}"),
    }
    std::process::exit(0);
}

fn helper_inherited() {
    let parent = Interrupts::builder(Signal::Terminate)
        .second_signal_kills(false)
        .install()
        .unwrap();
    // Pending for the parent: its count, and one wake-up byte in the pipe
    // the child is about to share.
    raise(libc::SIGTERM);
    let (_tx, rx) = UnixStream::pair().unwrap();
    // Shorter than the helper's own bound, so a child stuck in a receive
    // is reported as hung.
    let child = util::fork_child(Duration::from_secs(20), || {
        // A prefork worker running its master's loop on the inherited
        // instance: nothing there is the child's.
        let own = |e: std::io::Error| e.to_string().contains("inherited");
        let mut code = 0;
        if parent.try_recv().is_some() {
            code |= 1;
        }
        if !parent.recv_timeout(Duration::from_secs(5)).is_err_and(own) {
            code |= 2;
        }
        if !parent.recv().is_err_and(own) {
            code |= 4;
        }
        let wait = parent.wait_readable(rx.as_fd(), Some(Duration::from_secs(5)));
        if !wait.is_err_and(own) {
            code |= 8;
        }
        code
    });
    say(&format!("child: {child:?}"));
    say(&format!(
        "parent: readable {}, got {:?}",
        readable_now(&parent),
        parent.try_recv().map(|r| r.count())
    ));
}

/// A fork child that polls an inherited instance must not drain the
/// parent's wake-up bytes (the pipe is shared, the counts are not): its
/// `try_recv` returns `None` without reading, and its blocking receives
/// fail at once saying the instance is inherited. The parent's descriptor
/// is still readable afterwards, and its signal still pending.
#[test]
fn a_fork_child_polling_an_inherited_instance_leaves_the_parents_wake_up_alone() {
    let (status, lines) = helper("inherited");
    assert_lines(
        &lines,
        &["child: Exited(0)", "parent: readable true, got Some(1)"],
        &[],
    );
    assert!(status.success(), "{status:?} {lines:#?}");
}

/// `kill(pid, 0)`: whether `pid` names a process (or zombie) right now.
fn exists(pid: libc::pid_t) -> bool {
    // SAFETY: signal 0 only checks for existence and permission.
    unsafe { libc::kill(pid, 0) == 0 }
}

/// In the new pid namespace, as its pid 1: P (pid 2) installs an
/// `Interrupts` for SIGINT with every convention on, forks C and exits
/// without dropping it (a daemonising parent); once P is reaped, C makes
/// its next child G get pid 2 (`ns_last_pid`) and G, which never installed
/// anything, checks that P's instance is not its own, drops it, and raises
/// SIGINT. Returns C's exit code: 0 if G died by SIGINT.
fn pid_namespace_init() -> i32 {
    // SAFETY (both forks): this process is single-threaded; the children
    // leave with `_exit`.
    let p = unsafe { libc::fork() };
    if p == 0 {
        let interrupts = Interrupts::install().unwrap();
        let c = unsafe { libc::fork() };
        if c == 0 {
            // SAFETY: ends C (see `in_c`).
            unsafe { libc::_exit(in_c(2, interrupts)) };
        }
        std::mem::forget(interrupts);
        // SAFETY: ends P.
        unsafe { libc::_exit(0) };
    }
    assert_eq!(p, 2, "the first child of the namespace's init");
    assert_eq!(util::wait_child(p, PROMPTLY).unwrap(), ChildEnd::Exited(0));
    match util::wait_child(3, PROMPTLY).unwrap() {
        ChildEnd::Exited(code) => code,
        other => panic!("C: {other:?}"),
    }
}

/// C: wait until `p` is reaped, then fork G with pid `p`. `inherited` is
/// P's instance, in C's and then G's memory.
fn in_c(p: libc::pid_t, inherited: Interrupts) -> i32 {
    let mut deadline = util::Deadline::new(PROMPTLY, u64::MAX);
    while exists(p) {
        if !deadline.tick() {
            return 20;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    if std::fs::write("/proc/sys/kernel/ns_last_pid", format!("{}", p - 1)).is_err() {
        return 21;
    }
    // SAFETY: C is single-threaded; G leaves with `_exit`.
    let g = unsafe { libc::fork() };
    if g == 0 {
        // SAFETY: getpid has no preconditions.
        if unsafe { libc::getpid() } != p {
            // SAFETY: ends G.
            unsafe { libc::_exit(22) };
        }
        // P's instance is not G's although the pid matches: it must refuse
        // to wait, and dropping it must change nothing in G.
        if inherited.recv_timeout(Duration::from_millis(100)).is_ok() {
            // SAFETY: ends G.
            unsafe { libc::_exit(24) };
        }
        drop(inherited);
        // G never installed an `Interrupts`: SIGINT's default action.
        raise(libc::SIGINT);
        // SAFETY: ends G, which survived.
        unsafe { libc::_exit(3) };
    }
    match util::wait_child(g, PROMPTLY) {
        Ok(ChildEnd::Signaled(libc::SIGINT)) => 0,
        Ok(ChildEnd::Exited(code)) => code,
        _ => 23,
    }
}

/// Put this process's next children in a pid namespace of their own;
/// whether that worked (it says SKIPPED when not).
#[cfg(target_os = "linux")]
fn new_pid_namespace() -> bool {
    // SAFETY: unshare only changes which pid namespace this process's
    // next children are created in.
    if unsafe { libc::unshare(libc::CLONE_NEWPID) } != 0 {
        say(&format!(
            "SKIPPED: unshare(CLONE_NEWPID): {} (needs CAP_SYS_ADMIN)",
            std::io::Error::last_os_error()
        ));
        return false;
    }
    true
}

/// Pid namespaces are Linux's: SKIPPED.
#[cfg(not(target_os = "linux"))]
fn new_pid_namespace() -> bool {
    say("SKIPPED: pid namespaces (unshare(CLONE_NEWPID)) are Linux's");
    false
}

fn helper_pid_reuse() {
    if !new_pid_namespace() {
        return;
    }
    let end = util::fork_child(PROMPTLY, pid_namespace_init);
    say(&format!("grandchild with its grandparent's pid: {end:?}"));
}

/// A grandchild that gets its exited grandparent's pid (a double fork)
/// must not take the grandparent's inherited records and instances for its
/// own: the inherited instance refuses to wait ("inherited"), dropping it
/// changes nothing, and with no `Interrupts` of its own SIGINT ends it by
/// the default action instead of only arming it. Needs a pid namespace of its own (root or
/// CAP_SYS_ADMIN); says SKIPPED otherwise.
#[test]
fn a_grandchild_with_its_grandparents_pid_dies_by_the_default_action() {
    let (status, lines) = helper("pid_reuse");
    assert!(status.success(), "{status:?} {lines:#?}");
    if let Some(skipped) = lines.iter().find(|l| l.starts_with("SKIPPED")) {
        eprintln!("{skipped}");
        return;
    }
    assert_lines(
        &lines,
        &["grandchild with its grandparent's pid: Exited(0)"],
        &[],
    );
}
