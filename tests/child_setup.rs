//! `CommandExt` with real processes (issue 10): `pass_fd` places
//! descriptors at fixed child numbers, `close_other_fds` leaves nothing
//! else, `close_tracked_fds` needs no fork when no hook is needed; in every
//! call order.
//!
//! Each test spawns `sleep`, waits until it sleeps (so `execve` is done and
//! the dynamic loader's descriptors are closed) and reads what it really has
//! open from `/proc/<pid>/fd` and `/proc/<pid>/fdinfo`: the numbers, whether
//! each is close-on-exec, and the `(st_dev, st_ino)` of the file it names.
//! Every test holds `serial()`: they place descriptors at fixed numbers and
//! count what a child inherits.

mod spawn_util;
mod util;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::process::Command;

use fdtable::{CommandExt, FdTable};
use spawn_util::{child_fds, inheritable_here, sleep_cmd, spawn_sleeping, ChildFd};
use util::{identity, serial};

/// A regular file with its own inode.
fn scratch_file(tag: &str) -> File {
    let path = std::env::temp_dir().join(format!("fdtable-setup-{tag}-{}", std::process::id()));
    let file = File::create(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    file
}

/// A close-on-exec duplicate of `fd` at exactly `n`, which must be free.
fn dup_at(fd: RawFd, n: RawFd) -> OwnedFd {
    assert!(!util::is_open(n), "number {n} is busy");
    // SAFETY: F_DUPFD_CLOEXEC makes a fresh descriptor that we own.
    let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, n) };
    assert_eq!(new, n, "could not place at {n}");
    // SAFETY: just created; nobody else owns it.
    unsafe { OwnedFd::from_raw_fd(new) }
}

/// Clear `FD_CLOEXEC`: the descriptor leaks into children, as descriptors
/// opened by careless libraries or inherited from our own parent do.
fn make_inheritable(fd: RawFd) {
    // SAFETY: F_SETFD on a descriptor the test owns.
    assert_eq!(unsafe { libc::fcntl(fd, libc::F_SETFD, 0) }, 0);
}

fn id(fd: &impl AsRawFd) -> (u64, u64) {
    identity(fd.as_raw_fd()).expect("open")
}

/// Check the child's set is exactly `expected` (number -> identity), each
/// inheritable.
fn assert_exactly(
    what: &str,
    got: &BTreeMap<RawFd, ChildFd>,
    expected: &BTreeMap<RawFd, (u64, u64)>,
) {
    let numbers: BTreeSet<RawFd> = got.keys().copied().collect();
    let wanted: BTreeSet<RawFd> = expected.keys().copied().collect();
    assert_eq!(numbers, wanted, "{what}: the child's descriptor numbers");
    for (fd, want) in expected {
        let seen = got[fd];
        assert_eq!(seen.id, *want, "{what}: descriptor {fd} names another file");
        assert!(!seen.cloexec, "{what}: descriptor {fd} is close-on-exec");
    }
}

/// What a child spawned with `sleep_cmd()` has at 0-2: `/dev/null`.
fn stdio_ids() -> BTreeMap<RawFd, (u64, u64)> {
    let null = id(&File::open("/dev/null").unwrap());
    (0..=2).map(|fd| (fd, null)).collect()
}

#[test]
fn close_other_fds_leaves_exactly_stdio_and_the_passed_descriptors() {
    let _serial = serial();
    static TABLE: FdTable = FdTable::new();
    // Descriptors a child must not get: inheritable at a low and a high
    // number (as if inherited from our parent or leaked by a C library),
    // and a tracked one whose flag was cleared behind the table's back.
    let leaky_low = File::open("/dev/null").unwrap();
    make_inheritable(leaky_low.as_raw_fd());
    let leaky_high = dup_at(leaky_low.as_raw_fd(), 900);
    make_inheritable(900);
    let tracked = TABLE.track(scratch_file("tracked")).unwrap();
    make_inheritable(tracked.as_raw_fd());
    // What it must get, each at a chosen number.
    let (_reader, writer) = util::pipe();
    let (sock, _peer) = UnixStream::pair().unwrap();
    let file = scratch_file("passed");

    let mut expected = stdio_ids();
    expected.insert(3, id(&writer));
    expected.insert(7, id(&sock));
    expected.insert(40, id(&file));

    let mut cmd = sleep_cmd();
    cmd.pass_fd(writer.as_fd(), 3)
        .unwrap()
        .pass_fd(sock.as_fd(), 7)
        .unwrap()
        .pass_fd(file.as_fd(), 40)
        .unwrap()
        .close_other_fds()
        .close_tracked_fds(&TABLE);
    assert_exactly("close_other_fds", &child_fds(&mut cmd), &expected);

    // The control: without close_other_fds, every inheritable descriptor
    // of ours goes along (the passed numbers replace whatever we have there).
    let mut control = sleep_cmd();
    control
        .pass_fd(writer.as_fd(), 3)
        .unwrap()
        .pass_fd(sock.as_fd(), 7)
        .unwrap()
        .pass_fd(file.as_fd(), 40)
        .unwrap();
    let mut leaky_expected = expected.clone();
    for fd in inheritable_here() {
        leaky_expected.entry(fd).or_insert_with(|| id(&fd));
    }
    for fd in [leaky_low.as_raw_fd(), 900, tracked.as_raw_fd()] {
        assert!(leaky_expected.contains_key(&fd), "{fd} is not inheritable");
    }
    assert_exactly("pass_fd only", &child_fds(&mut control), &leaky_expected);
    drop((leaky_high, tracked));
}

/// Collisions that a `dup2` loop gets wrong: a 2-cycle and a 3-cycle of our
/// own descriptors (each passed to another's number), a command's own
/// duplicate sitting on a later mapping's target, and stdio replaced.
#[test]
fn pass_fd_places_cycles_and_collisions_by_file_identity() {
    let _serial = serial();
    let files: Vec<File> = (0..7).map(|i| scratch_file(&format!("cycle{i}"))).collect();
    let at = |i: usize, n: RawFd| dup_at(files[i].as_raw_fd(), n);
    // 2-cycle: a at 810 -> 811, b at 811 -> 810.
    let (a, b) = (at(0, 810), at(1, 811));
    // 3-cycle: c at 820 -> 821, d at 821 -> 822, e at 822 -> 820.
    let (c, d, e) = (at(2, 820), at(3, 821), at(4, 822));
    // 830 is held by someone else; 831 and up are free.
    let holder = at(5, 830);
    for n in 831..840 {
        assert!(!util::is_open(n), "{n} busy");
    }

    let mut cmd = sleep_cmd();
    cmd.pass_fd(a.as_fd(), 811).unwrap();
    cmd.pass_fd(b.as_fd(), 810).unwrap();
    cmd.pass_fd(c.as_fd(), 821).unwrap();
    cmd.pass_fd(d.as_fd(), 822).unwrap();
    cmd.pass_fd(e.as_fd(), 820).unwrap();
    // x -> 830: 830 is taken, so the command's duplicate of x lands on 831.
    let x = &files[6];
    cmd.pass_fd(x.as_fd(), 830).unwrap();
    assert_eq!(
        identity(831),
        Some(id(x)),
        "the scenario: x's duplicate at 831"
    );
    // ... which the next mapping targets.
    let z = scratch_file("z");
    cmd.pass_fd(z.as_fd(), 831).unwrap();
    // stderr replaced by a file.
    let log = scratch_file("stderr");
    cmd.pass_fd(log.as_fd(), 2).unwrap();
    cmd.close_other_fds();

    let mut expected = stdio_ids();
    expected.insert(811, id(&a));
    expected.insert(810, id(&b));
    expected.insert(821, id(&c));
    expected.insert(822, id(&d));
    expected.insert(820, id(&e));
    expected.insert(830, id(x));
    expected.insert(831, id(&z));
    expected.insert(2, id(&log));
    assert_exactly("cycles and collisions", &child_fds(&mut cmd), &expected);

    // The parent's numbers are untouched.
    assert_eq!(identity(810), Some(id(&files[0])));
    assert_eq!(identity(811), Some(id(&files[1])));
    assert_eq!(identity(830), Some(id(&files[5])));
    drop((a, b, c, d, e, holder, cmd));
    assert!(!util::is_open(831), "the command's duplicates outlived it");
}

#[test]
fn pass_fd_refuses_bad_numbers_at_configuration_time_without_a_panic() {
    let _serial = serial();
    let file = scratch_file("bad");
    let mut cmd = sleep_cmd();

    let negative = cmd.pass_fd(file.as_fd(), -1).unwrap_err();
    assert_eq!(negative.kind(), io::ErrorKind::InvalidInput, "{negative}");
    let min = cmd.pass_fd(file.as_fd(), RawFd::MIN).unwrap_err();
    assert_eq!(min.kind(), io::ErrorKind::InvalidInput, "{min}");

    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid out pointer.
    assert_eq!(
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
        0
    );
    for too_big in [limit.rlim_cur.min(RawFd::MAX as u64) as RawFd, RawFd::MAX] {
        let err = cmd.pass_fd(file.as_fd(), too_big).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{too_big}: {err}");
    }

    cmd.pass_fd(file.as_fd(), 880).unwrap();
    let twice = cmd.pass_fd(file.as_fd(), 880).unwrap_err();
    assert_eq!(twice.kind(), io::ErrorKind::InvalidInput, "{twice}");
    assert!(twice.to_string().contains("880"), "{twice}");

    // None of the refusals changed the command: exactly 0-2 and 880.
    cmd.close_other_fds();
    let mut expected = stdio_ids();
    expected.insert(880, id(&file));
    assert_exactly("after refusals", &child_fds(&mut cmd), &expected);
}

/// The guard against std's exec-error socket: a target that another
/// descriptor held at configuration time and that names a different file at
/// spawn time (closed and reused, possibly by std's socket) is refused with
/// `EBUSY`, never overwritten; one still held as configured is replaced.
#[test]
fn a_target_that_changed_hands_after_configuration_is_refused_not_overwritten() {
    let _serial = serial();
    let passed = scratch_file("passed");
    let original = scratch_file("original");
    let holder = dup_at(original.as_raw_fd(), 870);

    // Still held by the same file at spawn: the child gets `passed` there.
    let mut cmd = sleep_cmd();
    cmd.pass_fd(passed.as_fd(), 870).unwrap().close_other_fds();
    let mut expected = stdio_ids();
    expected.insert(870, id(&passed));
    assert_exactly("held as configured", &child_fds(&mut cmd), &expected);

    // Closed and reused by another file before the spawn: refused.
    let mut cmd = sleep_cmd();
    cmd.pass_fd(passed.as_fd(), 870).unwrap().close_other_fds();
    drop(holder);
    let other = scratch_file("other");
    let reused = dup_at(other.as_raw_fd(), 870);
    let err = spawn_sleeping(&mut cmd)
        .map(spawn_util::finish)
        .unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EBUSY), "{err}");
    assert_eq!(err.kind(), io::ErrorKind::ResourceBusy);
    assert_eq!(identity(870), Some(id(&other)), "the parent's 870 changed");
    drop(reused);
}

/// `pass_fd`, `close_other_fds` and `close_tracked_fds(_except)` in every
/// order give the same child. One target is a number the table tracks in
/// the parent: the tracked close must leave the passed descriptor there.
#[test]
fn every_call_order_gives_the_same_child() {
    let _serial = serial();
    static TABLE: FdTable = FdTable::new();
    let tracked_at_target = TABLE
        .track(dup_at(scratch_file("t850").as_raw_fd(), 850))
        .unwrap();
    let kept = TABLE
        .track(dup_at(scratch_file("t851").as_raw_fd(), 851))
        .unwrap();
    let dropped = TABLE
        .track(dup_at(scratch_file("t852").as_raw_fd(), 852))
        .unwrap();
    let leaky = dup_at(scratch_file("leaky").as_raw_fd(), 853);
    let p1 = scratch_file("p1");
    let p2 = scratch_file("p2");

    let mut expected = stdio_ids();
    expected.insert(860, id(&p1));
    expected.insert(850, id(&p2));
    expected.insert(851, id(&kept));

    let ops: [&dyn Fn(&mut Command); 4] = [
        &|c| {
            c.pass_fd(p1.as_fd(), 860).unwrap();
        },
        &|c| {
            c.pass_fd(p2.as_fd(), 850).unwrap();
        },
        &|c| {
            c.close_other_fds();
        },
        &|c| {
            c.close_tracked_fds_except(&TABLE, &[851]);
        },
    ];
    let mut orders = 0;
    for a in 0..4 {
        for b in 0..4 {
            for c in 0..4 {
                for d in 0..4 {
                    let order = [a, b, c, d];
                    if BTreeSet::from(order).len() < 4 {
                        continue;
                    }
                    // Each run starts with every flag cleared behind our back.
                    for fd in [850, 851, 852, 853] {
                        make_inheritable(fd);
                    }
                    let mut cmd = sleep_cmd();
                    for i in order {
                        ops[i](&mut cmd);
                    }
                    assert_exactly(&format!("order {order:?}"), &child_fds(&mut cmd), &expected);
                    orders += 1;
                }
            }
        }
    }
    assert_eq!(orders, 24);

    // Without close_other_fds, a flag cleared behind the table's back
    // before configuration does not matter either, whether the tracked
    // close comes before the hook (no hook yet: the flags are set again in
    // the parent) or after (the hook closes them in the child).
    for tracked_first in [true, false] {
        for fd in [850, 851, 852] {
            make_inheritable(fd);
        }
        let mut cmd = sleep_cmd();
        if tracked_first {
            cmd.close_tracked_fds(&TABLE);
        }
        cmd.pass_fd(p1.as_fd(), 860).unwrap();
        if !tracked_first {
            cmd.close_tracked_fds(&TABLE);
        }
        let got = child_fds(&mut cmd);
        for fd in [850, 851, 852] {
            assert!(
                !got.contains_key(&fd),
                "tracked_first={tracked_first}: {fd} leaked"
            );
        }
        assert_eq!(got.get(&860).map(|f| f.id), Some(id(&p1)));
    }
    drop((tracked_at_target, kept, dropped, leaky));
}

/// H11: `close_tracked_fds` with nothing that needs a hook spawns through
/// `posix_spawn` (glibc: `clone` with `CLONE_VM | CLONE_VFORK`). Shown on a
/// thread whose seccomp filter refuses every other way to create a process
/// (`fork`, `vfork`, `clone` without `CLONE_VM`; `clone3`, whose flags a
/// filter cannot read, says `ENOSYS` so glibc falls back to `clone`): a
/// spawn that forks fails there with `EPERM`. And no tracked descriptor
/// reaches the child, not even one whose flag was cleared behind the
/// table's back.
#[test]
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
fn close_tracked_fds_spawns_without_fork_and_still_closes_a_flag_cleared_descriptor() {
    use spawn_util::Refuse;
    let _serial = serial();
    static TABLE: FdTable = FdTable::new();
    let tracked = TABLE.track(scratch_file("nofork")).unwrap();
    let fd = tracked.as_raw_fd();

    std::thread::spawn(move || {
        let rules = [
            Refuse::always(libc::SYS_clone3, libc::ENOSYS),
            Refuse::unless(libc::SYS_clone, 0, libc::CLONE_VM as u32, libc::EPERM),
            Refuse::always(libc::SYS_fork, libc::EPERM),
            Refuse::always(libc::SYS_vfork, libc::EPERM),
        ];
        assert!(spawn_util::install(&rules), "seccomp filter refused");

        // The filter works: anything with a hook forks, and fails.
        let forked = Command::new("true").close_other_fds().status().unwrap_err();
        assert_eq!(forked.raw_os_error(), Some(libc::EPERM), "{forked}");
        make_inheritable(fd);
        let hooked = Command::new("true")
            .close_tracked_fds_except(&TABLE, &[fd])
            .status()
            .unwrap_err();
        assert_eq!(hooked.raw_os_error(), Some(libc::EPERM), "{hooked}");

        // Plain: the flag-cleared descriptor leaks (the control).
        make_inheritable(fd);
        assert!(
            child_fds(&mut sleep_cmd()).contains_key(&fd),
            "control: {fd} should leak"
        );

        // Hook-free close_tracked_fds: no fork, and nothing tracked arrives;
        // a foreign inheritable descriptor keeps its flag (and arrives).
        let foreign = scratch_file("foreign");
        make_inheritable(foreign.as_raw_fd());
        make_inheritable(fd);
        let got = child_fds(sleep_cmd().close_tracked_fds(&TABLE));
        assert!(!got.contains_key(&fd), "{fd} reached the child: {got:?}");
        assert!(got.contains_key(&foreign.as_raw_fd()), "{got:?}");
        assert_eq!(util::fd_flags(foreign.as_raw_fd()).unwrap(), 0);
    })
    .join()
    .unwrap();
    drop(tracked);
}
