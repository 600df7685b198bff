//! `ChildFds` and `CommandExt` with real processes (issues 10 and 17):
//! `pass_fd` places descriptors at fixed child numbers, `close_other_fds`
//! leaves nothing else, the hook-free `close_tracked_fds` needs no fork; in
//! every order of the builder calls.
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
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::process::Command;

use fdtable::{ChildFds, CommandExt, FdTable};
use spawn_util::{
    fds_in_child, inheritable_here, make_inheritable, scratch_file, sleep_cmd, ChildFd,
};
use util::{dup_at, fill_below, identity, serial};

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

/// Spawn `cmd` with `fds` and list what the sleeping child has open.
fn child_with(mut cmd: Command, fds: ChildFds) -> BTreeMap<RawFd, ChildFd> {
    fds_in_child(cmd.child_fds(fds))
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

    let passes = || {
        ChildFds::new()
            .pass_fd(writer.as_fd(), 3)
            .unwrap()
            .pass_fd(sock.as_fd(), 7)
            .unwrap()
            .pass_fd(file.as_fd(), 40)
            .unwrap()
    };
    let fds = passes().close_other_fds().close_tracked_fds(&TABLE);
    assert_exactly("close_other_fds", &child_with(sleep_cmd(), fds), &expected);

    // The control: without close_other_fds, every inheritable descriptor
    // of ours goes along (the passed numbers replace whatever we have there).
    let mut leaky_expected = expected.clone();
    for fd in inheritable_here() {
        leaky_expected.entry(fd).or_insert_with(|| id(&fd));
    }
    for fd in [leaky_low.as_raw_fd(), 900, tracked.as_raw_fd()] {
        assert!(leaky_expected.contains_key(&fd), "{fd} is not inheritable");
    }
    assert_exactly(
        "pass_fd only",
        &child_with(sleep_cmd(), passes()),
        &leaky_expected,
    );
    drop((leaky_high, tracked));
}

/// Collisions that a `dup2` loop gets wrong: a 2-cycle and a 3-cycle of our
/// own descriptors (each passed to another's number), the value's own
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
    // 830 is held by someone else.
    let holder = at(5, 830);

    let mut fds = ChildFds::new()
        .pass_fd(a.as_fd(), 811)
        .unwrap()
        .pass_fd(b.as_fd(), 810)
        .unwrap()
        .pass_fd(c.as_fd(), 821)
        .unwrap()
        .pass_fd(d.as_fd(), 822)
        .unwrap()
        .pass_fd(e.as_fd(), 820)
        .unwrap();
    // x -> 830: 830 is taken, so the value's duplicate of x lands
    // elsewhere ...
    let x = &files[6];
    fds = fds.pass_fd(x.as_fd(), 830).unwrap();
    let x_dup: Vec<RawFd> = (3..1000)
        .filter(|&n| n != x.as_raw_fd() && identity(n) == Some(id(x)))
        .collect();
    assert_eq!(x_dup.len(), 1, "the scenario: one duplicate of x");
    let x_dup = x_dup[0];
    // ... which the next mapping targets.
    let z = scratch_file("z");
    fds = fds.pass_fd(z.as_fd(), x_dup).unwrap();
    // stderr replaced by a file.
    let log = scratch_file("stderr");
    fds = fds.pass_fd(log.as_fd(), 2).unwrap().close_other_fds();

    let mut expected = stdio_ids();
    expected.insert(811, id(&a));
    expected.insert(810, id(&b));
    expected.insert(821, id(&c));
    expected.insert(822, id(&d));
    expected.insert(820, id(&e));
    expected.insert(830, id(x));
    expected.insert(x_dup, id(&z));
    expected.insert(2, id(&log));
    let mut cmd = sleep_cmd();
    cmd.child_fds(fds);
    assert_exactly("cycles and collisions", &fds_in_child(&mut cmd), &expected);

    // The parent's numbers are untouched.
    assert_eq!(identity(810), Some(id(&files[0])));
    assert_eq!(identity(811), Some(id(&files[1])));
    assert_eq!(identity(830), Some(id(&files[5])));
    assert_eq!(
        identity(x_dup),
        Some(id(&z)),
        "z's duplicate is reserved at its target"
    );
    drop((a, b, c, d, e, holder, cmd));
    assert!(!util::is_open(x_dup), "the value's duplicates outlived it");
}

/// A permutation of 200 numbers onto themselves (every cycle length at
/// once, the parent's own descriptors at every target): the child gets each
/// file exactly where it was sent.
#[test]
fn pass_fd_places_a_permutation_of_two_hundred_descriptors() {
    let _serial = serial();
    let files: Vec<OwnedFd> = (0..200)
        .map(|i| dup_at(scratch_file(&format!("perm{i}")).as_raw_fd(), 1000 + i))
        .collect();
    // A fixed pseudo-random permutation (xorshift), reproducible.
    let mut order: Vec<RawFd> = (1000..1200).collect();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in (1..order.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        order.swap(i, (x % (i as u64 + 1)) as usize);
    }
    let mut fds = ChildFds::new();
    let mut expected = stdio_ids();
    for (file, &target) in files.iter().zip(&order) {
        fds = fds.pass_fd(file.as_fd(), target).unwrap();
        expected.insert(target, id(file));
    }
    let fds = fds.close_other_fds();
    assert_exactly("permutation", &child_with(sleep_cmd(), fds), &expected);
    for (i, file) in files.iter().enumerate() {
        assert_eq!(
            file.as_raw_fd(),
            1000 + i as RawFd,
            "the parent's numbers moved"
        );
    }
}

#[test]
fn pass_fd_refuses_bad_numbers_at_configuration_time_with_clear_errors() {
    let _serial = serial();
    let file = scratch_file("bad");
    let n = file.as_raw_fd();
    let baseline = util::open_fd_count();

    let refused = |child_fd: RawFd| {
        let err = ChildFds::new()
            .pass_fd(file.as_fd(), 870)
            .unwrap()
            .pass_fd(file.as_fd(), child_fd)
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{child_fd}: {err}");
        let text = err.to_string();
        for fact in [
            "pass_fd",
            &format!("fd {n}"),
            &format!("child_fd {child_fd}"),
        ] {
            assert!(text.contains(fact), "{fact:?} missing: {text}");
        }
        text
    };
    assert!(refused(-1).contains("negative"));
    assert!(refused(RawFd::MIN).contains("negative"));
    let limit = soft_nofile();
    for too_big in [limit, RawFd::MAX] {
        let text = refused(too_big);
        assert!(text.contains("RLIMIT_NOFILE"), "{text}");
        assert!(text.contains(&limit.to_string()), "the limit: {text}");
    }
    let twice = refused(870);
    assert!(twice.contains("already the target"), "{twice}");

    // A descriptor that is not open.
    let closed = util::closed_number();
    let err = ChildFds::new()
        // SAFETY: a number that is not open; `pass_fd` only looks at it.
        .pass_fd(unsafe { std::os::fd::BorrowedFd::borrow_raw(closed) }, 5)
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
    assert!(
        err.to_string()
            .contains(&format!("fd {closed} is not an open")),
        "{err}"
    );

    // Every refused value released what it had made.
    assert_eq!(util::open_fd_count(), baseline, "a refused value leaked");
}

/// The builder calls in every order give the same child. One target is a
/// number the table tracks in the parent (the tracked close must leave the
/// passed descriptor there), one tracked descriptor is kept at its own
/// number (`pass_fd(fd, fd)`), one is left to the tracked close.
#[test]
fn every_order_of_the_builder_calls_gives_the_same_child() {
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

    type Op<'a> = &'a dyn Fn(ChildFds) -> ChildFds;
    let ops: [Op<'_>; 5] = [
        &|f| f.pass_fd(p1.as_fd(), 860).unwrap(),
        &|f| f.pass_fd(p2.as_fd(), 850).unwrap(),
        &|f| f.pass_fd(kept.as_fd(), 851).unwrap(),
        &|f| f.close_other_fds(),
        &|f| f.close_tracked_fds(&TABLE),
    ];
    let mut orders = 0;
    for order in permutations(ops.len()) {
        // Each run starts with every flag cleared behind our back.
        for fd in [850, 851, 852, 853] {
            make_inheritable(fd);
        }
        let fds = order.iter().fold(ChildFds::new(), |f, &i| ops[i](f));
        assert_exactly(
            &format!("order {order:?}"),
            &child_with(sleep_cmd(), fds),
            &expected,
        );
        orders += 1;
    }
    assert_eq!(orders, 120);

    // Without close_other_fds, a flag cleared behind the table's back
    // before or after configuration does not matter either: the hook
    // closes the table's numbers in the child, whatever their flags. The
    // hook-free `close_tracked_fds` on the same command changes nothing
    // (in either order).
    for hook_free_first in [true, false] {
        for fd in [850, 852] {
            make_inheritable(fd);
        }
        let mut cmd = sleep_cmd();
        if hook_free_first {
            cmd.close_tracked_fds(&TABLE);
        }
        cmd.child_fds(
            ChildFds::new()
                .pass_fd(p1.as_fd(), 860)
                .unwrap()
                .close_tracked_fds(&TABLE),
        );
        if !hook_free_first {
            cmd.close_tracked_fds(&TABLE);
        }
        for fd in [850, 851, 852] {
            make_inheritable(fd);
        }
        let got = fds_in_child(&mut cmd);
        for fd in [850, 851, 852] {
            assert!(
                !got.contains_key(&fd),
                "hook_free_first={hook_free_first}: {fd} leaked"
            );
        }
        assert_eq!(got.get(&860).map(|f| f.id), Some(id(&p1)));
    }
    drop((tracked_at_target, kept, dropped, leaky));
}

/// Every permutation of `0..n`, in lexicographic order.
fn permutations(n: usize) -> Vec<Vec<usize>> {
    if n == 0 {
        return vec![Vec::new()];
    }
    let mut out = Vec::new();
    for rest in permutations(n - 1) {
        for at in 0..=rest.len() {
            let mut p = rest.clone();
            p.insert(at, n - 1);
            out.push(p);
        }
    }
    out.sort();
    out
}

/// No fork without a hook: the hook-free `close_tracked_fds`, and a
/// `ChildFds` that asks for nothing, spawn through `posix_spawn` (glibc:
/// `clone` with `CLONE_VM | CLONE_VFORK`). Shown on a thread whose seccomp
/// filter refuses every other way to create a process (`fork`, `vfork`,
/// `clone` without `CLONE_VM`; `clone3`, whose flags a filter cannot read,
/// says `ENOSYS` so glibc falls back to `clone`): a spawn that forks fails
/// there with `EPERM`. Tracked descriptors do not reach the child; one whose
/// flag was cleared behind the table's back does (the documented limit of
/// the hook-free call), and the hook version closes it.
#[test]
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
fn close_tracked_fds_spawns_without_fork_relying_on_close_on_exec() {
    use spawn_util::NO_FORK;
    let _serial = serial();
    static TABLE: FdTable = FdTable::new();
    let tracked = TABLE.track(scratch_file("nofork")).unwrap();
    let cleared = TABLE.track(scratch_file("nofork-cleared")).unwrap();
    let (fd, cleared_fd) = (tracked.as_raw_fd(), cleared.as_raw_fd());

    let got = std::thread::spawn(move || {
        assert!(spawn_util::install(&NO_FORK), "seccomp filter refused");

        // The filter works: anything with a hook forks, and fails.
        let forked = Command::new("true")
            .child_fds(ChildFds::new().close_other_fds())
            .status()
            .unwrap_err();
        assert_eq!(forked.raw_os_error(), Some(libc::EPERM), "{forked}");

        // A value that asks for nothing installs no hook.
        let status = Command::new("true").child_fds(ChildFds::new()).status();
        assert!(status.expect("an empty ChildFds forked").success());

        make_inheritable(cleared_fd);
        fds_in_child(sleep_cmd().close_tracked_fds(&TABLE))
    })
    .join()
    .unwrap();
    assert!(!got.contains_key(&fd), "{fd} reached the child: {got:?}");
    assert!(
        got.contains_key(&cleared_fd),
        "the flag-cleared {cleared_fd} should reach the hook-free child: {got:?}"
    );
    let hooked = child_with(sleep_cmd(), ChildFds::new().close_tracked_fds(&TABLE));
    assert!(!hooked.contains_key(&cleared_fd), "{hooked:?}");
    drop((tracked, cleared));
}

/// The soft `RLIMIT_NOFILE`.
fn soft_nofile() -> RawFd {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid out pointer.
    assert_eq!(
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
        0
    );
    limit.rlim_cur.min(1 << 20) as RawFd
}

/// A scratch file holding `text`, its offset back at the start.
fn file_with(tag: &str, text: &str) -> File {
    use std::io::{Seek, Write};
    let path = std::env::temp_dir().join(format!("fdtable-setup-{tag}-{}", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    let _ = std::fs::remove_file(&path);
    file.write_all(text.as_bytes()).unwrap();
    file.rewind().unwrap();
    file
}

/// Review finding 2a: `pass_fd(f.as_fd(), f.as_raw_fd())` and then
/// `drop(f)`, which the docs allow ("`fd` itself may be closed right after
/// this call"). At the spawn std opens its own descriptors (a `/dev/null`
/// stdin, stdout and stderr pipes) at the lowest free numbers, the freed
/// one first: the child must overwrite that in its own descriptor table,
/// not refuse.
#[test]
fn passing_a_file_at_its_own_number_then_dropping_it_still_passes_it() {
    let _serial = serial();
    for stdin_null in [false, true] {
        let file = file_with("own-number", "the passed file\n");
        let n = file.as_raw_fd();
        let fds = ChildFds::new().pass_fd(file.as_fd(), n).unwrap();
        drop(file);
        let mut cmd = Command::new("sh");
        cmd.args(["-c", &format!("cat <&{n}")]).child_fds(fds);
        if stdin_null {
            cmd.stdin(std::process::Stdio::null());
        }
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("stdin_null={stdin_null}: spawn failed: {e}"));
        assert!(out.status.success(), "stdin_null={stdin_null}: {out:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "the passed file\n",
            "stdin_null={stdin_null}"
        );
    }
}

/// Commands built up front (a batch, a pipeline), each passing a file to
/// the same number, run one after another and dropped after they ran.
/// Only the first value finds the number free and reserves it; the others'
/// duplicates sit elsewhere. Nothing is shared between the values, so once
/// the first is dropped the number is free at the others' spawns: each
/// child still gets its own file there, and where std's exec-error channel
/// lands on the number (every number below it taken), the spawn refuses
/// (`EBUSY`) rather than overwrite it. Once the last is gone, nothing of
/// theirs stays open.
#[test]
fn commands_sharing_a_target_each_get_their_file_or_refuse_never_overwrite() {
    let _serial = serial();
    let baseline = util::open_fd_count();
    let files: Vec<File> = (0..3).map(|i| scratch_file(&format!("share{i}"))).collect();
    let target: RawFd = 400;
    assert!(!util::is_open(target), "{target} is busy");
    for with_sleep in [true, false] {
        let mut cmds: Vec<Command> = files
            .iter()
            .map(|f| {
                let mut c = if with_sleep {
                    sleep_cmd()
                } else {
                    Command::new("true")
                };
                c.child_fds(ChildFds::new().pass_fd(f.as_fd(), target).unwrap());
                c
            })
            .collect();
        for (i, mut cmd) in cmds.drain(..).enumerate() {
            if with_sleep {
                let got = fds_in_child(&mut cmd);
                assert_eq!(
                    got.get(&target).map(|f| f.id),
                    Some(id(&files[i])),
                    "command {i}: the child's {target}"
                );
            } else {
                // std's socket pair takes the two lowest free numbers:
                // leave `target - 1` and `target` (when it is free) only.
                let fillers = fill_below(target, target - 1);
                let status = cmd.status();
                drop(fillers);
                match (i, status) {
                    // The first value reserved the number: it works.
                    (0, status) => {
                        let status = status.unwrap_or_else(|e| panic!("spawn failed: {e}"));
                        assert!(status.success(), "command 0: {status}");
                    }
                    (i, Ok(status)) => panic!("command {i}: spawned ({status}) over std's channel"),
                    (i, Err(e)) => {
                        assert_eq!(e.raw_os_error(), Some(libc::EBUSY), "command {i}: {e}")
                    }
                }
            }
            drop(cmd);
        }
        assert!(!util::is_open(target), "{target} outlived every command");
    }
    drop(files);
    assert_eq!(util::open_fd_count(), baseline, "descriptors leaked");
}

/// Review finding 3a: a reserved target (the value's own duplicate sits at
/// the number) closed by other code before the spawn; std's exec-error
/// socket then lands there. The child must notice that its duplicate is
/// gone and fail the spawn (`EBADF`), not clear `FD_CLOEXEC` on std's
/// socket (the program would inherit it, and `spawn` would block until it
/// exits).
#[test]
fn a_duplicate_closed_by_other_code_fails_the_spawn_clearly() {
    let _serial = serial();
    let target: RawFd = 200;
    let passed = scratch_file("reserved");
    let mut cmd = Command::new("sleep");
    cmd.arg("5")
        .child_fds(ChildFds::new().pass_fd(passed.as_fd(), target).unwrap());
    assert_eq!(identity(target), Some(id(&passed)), "not reserved");
    // std's socketpair takes the two lowest free numbers: leave exactly
    // `target - 1` and `target` free, so its child end lands on `target`.
    let fillers = fill_below(target, target - 1);
    // Foreign code closes "its" descriptor: an I/O-safety bug elsewhere.
    // SAFETY: deliberately closing the value's duplicate behind its back.
    unsafe { libc::close(target) };
    let spawned = cmd.spawn();
    drop(fillers);
    // The value's duplicate is gone: its drop must not close `target`
    // again (whatever holds it by then is not the value's).
    std::mem::forget(cmd);
    match spawned {
        Ok(child) => {
            spawn_util::finish(child);
            panic!("spawn returned Ok: the program got std's socket at {target}");
        }
        Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EBADF), "{e}"),
    }
}

/// Review finding 11: std's exec-error socket landing on a `pass_fd`
/// target. The target was held by another descriptor at configuration time
/// (so the value could not reserve it) and closed before the spawn; std's
/// socket then lands on it. The child must refuse (`ResourceBusy`), never
/// `dup2` over it: a missing program would then look like a successful
/// spawn. With any other file there, the child overwrites its copy.
#[test]
fn std_exec_error_socket_on_a_target_is_refused_never_overwritten() {
    let _serial = serial();
    let target: RawFd = 300;
    let passed = scratch_file("over-socket");
    for round in 0..3 {
        let holder = dup_at(scratch_file("holder").as_raw_fd(), target);
        let mut cmd = Command::new("/nonexistent/fdtable-test");
        cmd.child_fds(ChildFds::new().pass_fd(passed.as_fd(), target).unwrap());
        drop(holder);
        let fillers = fill_below(target, target - 1);
        let spawned = cmd.spawn();
        drop(fillers);
        match spawned {
            Ok(mut child) => {
                let status = child.wait();
                panic!("round {round}: spawn returned Ok ({status:?}): std's socket overwritten");
            }
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(libc::EBUSY), "round {round}: {e}");
                assert_eq!(e.kind(), io::ErrorKind::ResourceBusy);
            }
        }
        assert!(!util::is_open(target), "the parent's {target} changed");
    }

    // Any other file there (reused since configuration): replaced in the
    // child only, and a missing program is still reported.
    let holder = dup_at(scratch_file("holder").as_raw_fd(), target);
    let mut cmd = sleep_cmd();
    cmd.child_fds(ChildFds::new().pass_fd(passed.as_fd(), target).unwrap());
    let mut missing = Command::new("/nonexistent/fdtable-test");
    missing.child_fds(ChildFds::new().pass_fd(passed.as_fd(), target).unwrap());
    // Opened while the holder's file still exists, so it cannot get the
    // same inode number.
    let other = scratch_file("other");
    drop(holder);
    let reused = dup_at(other.as_raw_fd(), target);
    let got = fds_in_child(&mut cmd);
    assert_eq!(got.get(&target).map(|f| f.id), Some(id(&passed)));
    let err = missing.spawn().map(spawn_util::finish).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
    assert_eq!(
        identity(target),
        Some(id(&other)),
        "the parent's {target} changed"
    );
    drop(reused);
}

/// Review finding 3b: a 0-2 target while this process's stdio is closed:
/// std's exec-error socket then sits at 0 and 1 in the child, and `pass_fd`
/// to 1 must refuse rather than `dup2` over it (the 8 bytes of std's error
/// report would go into the passed pipe and `spawn` would return `Ok`).
#[test]
fn a_stdio_target_holding_std_exec_error_socket_is_refused() {
    let _serial = serial();
    let report = spawn_util::run_isolated(
        "stdio_target_with_stdio_closed_isolated",
        std::time::Duration::from_secs(60),
    );
    assert_eq!(report, "ok");
}

#[test]
#[ignore = "run by a_stdio_target_holding_std_exec_error_socket_is_refused"]
fn stdio_target_with_stdio_closed_isolated() {
    spawn_util::isolated(|| {
        use std::io::Read;
        let (reader, writer) = util::pipe();
        // SAFETY: this process uses neither from here on (the report goes
        // to a file, and `isolated` leaves with `exit`).
        unsafe {
            libc::close(0);
            libc::close(1);
        }
        let fds = ChildFds::new().pass_fd(writer.as_fd(), 1).unwrap();
        let spawned = Command::new("/nonexistent/fdtable-test")
            .child_fds(fds)
            .spawn();
        drop(writer);
        let mut got = Vec::new();
        File::from(reader).read_to_end(&mut got).unwrap();
        match spawned {
            Ok(mut child) => {
                let status = child.wait();
                panic!("spawn returned Ok ({status:?}); the pipe got {got:?}");
            }
            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EBUSY), "{e}"),
        }
        assert!(
            got.is_empty(),
            "std's error report went into the pipe: {got:?}"
        );
    });
}

/// A command configured once and spawned three times: each child gets the
/// same setup, and `ChildFds::close_tracked_fds` covers a flag cleared
/// after configuration, before each spawn.
#[test]
fn a_command_spawned_three_times_gets_its_setup_every_time() {
    let _serial = serial();
    static TABLE: FdTable = FdTable::new();
    let tracked = TABLE.track(scratch_file("thrice")).unwrap();
    let fd = tracked.as_raw_fd();
    let passed = scratch_file("thrice-passed");
    for also_close_other in [false, true] {
        let mut fds = ChildFds::new()
            .pass_fd(passed.as_fd(), 860)
            .unwrap()
            .close_tracked_fds(&TABLE);
        if also_close_other {
            fds = fds.close_other_fds();
        }
        let mut cmd = sleep_cmd();
        cmd.close_tracked_fds(&TABLE).child_fds(fds);
        for spawn in 0..3 {
            make_inheritable(fd);
            let got = fds_in_child(&mut cmd);
            assert!(
                !got.contains_key(&fd),
                "close_other={also_close_other}, spawn {spawn}: tracked {fd} reached the child"
            );
            assert_eq!(got.get(&860).map(|f| f.id), Some(id(&passed)));
        }
    }
    drop(tracked);
}

/// Review finding 7: targets near the soft `RLIMIT_NOFILE` are ordinary
/// targets: the last allowed number held by another descriptor, and a
/// source that must move off a later target while that last number is
/// reserved.
#[test]
fn targets_near_the_descriptor_limit_are_placed() {
    let _serial = serial();
    let top = soft_nofile() - 1;
    assert!(
        top > 1000,
        "soft RLIMIT_NOFILE too low for this test: {top}"
    );
    let (a, b, c) = (scratch_file("a"), scratch_file("b"), scratch_file("c"));

    // The last number the limit allows, held by another descriptor.
    let holder = dup_at(scratch_file("holder").as_raw_fd(), top);
    let fds = ChildFds::new()
        .pass_fd(a.as_fd(), top)
        .unwrap()
        .close_other_fds();
    let mut expected = stdio_ids();
    expected.insert(top, id(&a));
    assert_exactly("held top", &child_with(sleep_cmd(), fds), &expected);
    drop(holder);

    // 890 held (the first source goes elsewhere), the top reserved, then a
    // target wherever the first source sits.
    let holder = dup_at(scratch_file("holder").as_raw_fd(), 890);
    for n in 891..900 {
        assert!(!util::is_open(n), "{n} busy");
    }
    // (The value's duplicate of `a` lands at the first free number from
    // 890 up.)
    let mut fds = ChildFds::new()
        .pass_fd(a.as_fd(), 890)
        .unwrap()
        .pass_fd(b.as_fd(), top)
        .unwrap();
    let mut expected = stdio_ids();
    expected.insert(890, id(&a));
    expected.insert(top, id(&b));
    // Wherever the value keeps its duplicate of `a`, that number and the
    // next one become targets too.
    let sources: Vec<RawFd> = (3..top)
        .filter(|&n| n != 890 && n != a.as_raw_fd() && identity(n) == Some(id(&a)))
        .collect();
    assert_eq!(sources.len(), 1, "one duplicate of a: {sources:?}");
    fds = fds.pass_fd(c.as_fd(), sources[0]).unwrap();
    expected.insert(sources[0], id(&c));
    let next = sources[0] + 1;
    fds = fds.pass_fd(c.as_fd(), next).unwrap().close_other_fds();
    expected.insert(next, id(&c));
    assert_exactly("moved source", &child_with(sleep_cmd(), fds), &expected);
    drop(holder);
}

/// Review finding 9: the hook-free `close_tracked_fds` pins nothing (it
/// does nothing per descriptor at all). Shown with an entry pinned to the
/// maximum by nested walks on this very thread: a walk that pins would
/// wait for a pin to be freed, forever.
#[test]
fn hook_free_close_tracked_fds_pins_nothing() {
    let _serial = serial();
    static TABLE: FdTable = FdTable::new();
    /// 13 pin bits per slot (`src/slot.rs`).
    const MAX_PINS: usize = (1 << 13) - 1;
    fn nest(depth: usize, bottom: &mut dyn FnMut()) {
        if depth == 0 {
            bottom();
        } else {
            TABLE.for_each(|_| nest(depth - 1, bottom));
        }
    }
    let tracked = TABLE.track(scratch_file("pins")).unwrap();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let walker = std::thread::Builder::new()
        .stack_size(1 << 30)
        .spawn(move || {
            let mut reached = false;
            nest(MAX_PINS, &mut || {
                reached = true;
                let mut cmd = Command::new("true");
                cmd.close_tracked_fds(&TABLE);
                let _ = done_tx.send(());
            });
            assert!(reached);
        })
        .unwrap();
    done_rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("close_tracked_fds waited for a pin: it walks with pins");
    walker.join().unwrap();
    drop(tracked);
}
