//! `ChildFds` as one explicit value (issue 17): nothing is looked up by an
//! address, nothing is remembered between calls or shared between
//! commands, the value owns its duplicates, and a command takes one value.
//!
//! The scenarios that broke the registry this replaced: a command
//! configured while another command is being dropped (std frees the dying
//! command's program buffer before its hooks, so a new command could find
//! the dying one's setup at the same address), a hook-free call on a
//! dropped command reaching a later command with the same program name.
//! Every test holds `serial()`: they count descriptors and spawn.

mod spawn_util;
mod util;

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::os::unix::process::CommandExt as _;
use std::process::Command;
use std::sync::{Arc, Mutex};

use fdtable::{ChildFds, CommandExt, FdTable};
use spawn_util::{fds_in_child, make_inheritable, scratch_file, sleep_cmd};
use util::{identity, serial};

fn id(fd: &impl AsRawFd) -> (u64, u64) {
    identity(fd.as_raw_fd()).expect("open")
}

/// What the command built inside a `Drop` saw in its child.
#[derive(Debug, Default)]
struct Seen {
    passed_at_7: Option<(u64, u64)>,
    leaky_inherited: bool,
    spawned: bool,
}

/// Captured by a `pre_exec` closure of a command that is then dropped: its
/// own `Drop` runs inside the dying command's drop, after std freed that
/// command's program buffer, and builds, configures and spawns a new
/// command there.
struct BuildsACommandWhenDropped {
    passed: Arc<File>,
    leaky: RawFd,
    seen: Arc<Mutex<Seen>>,
}

impl Drop for BuildsACommandWhenDropped {
    fn drop(&mut self) {
        let fds = ChildFds::new()
            .pass_fd(self.passed.as_fd(), 7)
            .expect("pass_fd")
            .close_other_fds();
        // Same program name and argument lengths as the dying command: the
        // allocator hands the freed buffers straight back.
        let mut cmd = sleep_cmd();
        cmd.child_fds(fds);
        let got = fds_in_child(&mut cmd);
        let mut seen = self.seen.lock().unwrap();
        seen.spawned = true;
        seen.passed_at_7 = got.get(&7).map(|f| f.id);
        seen.leaky_inherited = got.contains_key(&self.leaky);
    }
}

/// The security promise of issue 17: a command configured while another is
/// being dropped gets exactly its own setup (fd 7, and `close_other_fds`
/// keeping the inheritable descriptor out), every round.
#[test]
fn a_command_configured_while_another_is_dropped_gets_its_own_setup() {
    let _serial = serial();
    let passed = Arc::new(scratch_file("dropped-cmd"));
    let leaky = File::open("/dev/null").unwrap();
    make_inheritable(leaky.as_raw_fd());
    for round in 0..20 {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let mut dying = sleep_cmd();
        // The dying command has a setup of its own (a different file at 7,
        // no close_other_fds): a registry keyed by address would hand it
        // to the new command.
        let other = scratch_file("dying-own");
        dying.child_fds(ChildFds::new().pass_fd(other.as_fd(), 7).unwrap());
        let guard = BuildsACommandWhenDropped {
            passed: Arc::clone(&passed),
            leaky: leaky.as_raw_fd(),
            seen: Arc::clone(&seen),
        };
        // SAFETY: never run (the command is dropped, not spawned).
        unsafe {
            dying.pre_exec(move || {
                let _ = &guard;
                Ok(())
            });
        }
        drop(dying);
        let seen = seen.lock().unwrap();
        assert!(seen.spawned, "round {round}: the Drop did not run");
        assert_eq!(
            seen.passed_at_7,
            Some(id(&*passed)),
            "round {round}: the new command's child lacks its fd 7"
        );
        assert!(
            !seen.leaky_inherited,
            "round {round}: close_other_fds was dropped: the inheritable {} reached the child",
            leaky.as_raw_fd()
        );
    }
}

/// A hook-free `close_tracked_fds` remembers nothing: after 100 such calls
/// on dropped commands, a new command with the same program name gets
/// exactly what its own value says. Its `ChildFds` closes no table's
/// descriptors, so a descriptor of `OTHER` made inheritable behind that
/// table's back reaches its child (a remembered call would close it).
#[test]
fn a_hook_free_call_on_a_dropped_command_reaches_no_other_command() {
    let _serial = serial();
    static OTHER: FdTable = FdTable::new();
    let tracked = OTHER.track(scratch_file("hook-free-other")).unwrap();
    let passed = scratch_file("hook-free-passed");
    for _ in 0..100 {
        let mut cmd = sleep_cmd();
        cmd.close_tracked_fds(&OTHER);
        drop(cmd);
    }
    make_inheritable(tracked.as_raw_fd());
    let mut cmd = sleep_cmd();
    cmd.child_fds(ChildFds::new().pass_fd(passed.as_fd(), 9).unwrap());
    let got = fds_in_child(&mut cmd);
    assert_eq!(got.get(&9).map(|f| f.id), Some(id(&passed)));
    assert!(
        got.contains_key(&tracked.as_raw_fd()),
        "the child closed {}: an earlier command's call reached this one",
        tracked.as_raw_fd()
    );
    drop(tracked);
}

/// Any number of tables: the three named are closed in the child (flags
/// cleared behind their backs, so only the hook can do it), the fourth is
/// untouched; a table named twice counts once.
#[test]
fn three_tables_named_are_closed_and_the_fourth_is_untouched() {
    let _serial = serial();
    static T1: FdTable = FdTable::new();
    static T2: FdTable = FdTable::new();
    static T3: FdTable = FdTable::new();
    static T4: FdTable = FdTable::new();
    let tables: [&'static FdTable; 4] = [&T1, &T2, &T3, &T4];
    let tracked: Vec<_> = tables
        .iter()
        .map(|t| t.track(scratch_file("four-tables")).unwrap())
        .collect();
    for t in &tracked {
        make_inheritable(t.as_raw_fd());
    }
    let fds = ChildFds::new()
        .close_tracked_fds(&T1)
        .close_tracked_fds(&T2)
        .close_tracked_fds(&T1)
        .close_tracked_fds(&T3);
    assert!(
        format!("{fds:?}").contains("close_tracked_fds: 3"),
        "{fds:?}"
    );
    let mut cmd = sleep_cmd();
    cmd.child_fds(fds);
    let got = fds_in_child(&mut cmd);
    for (i, t) in tracked.iter().enumerate() {
        let fd = t.as_raw_fd();
        assert_eq!(
            got.contains_key(&fd),
            i == 3,
            "table {}: its {fd} {} the child",
            i + 1,
            if i == 3 { "must reach" } else { "reached" }
        );
    }
    // The parent's descriptors are as they were.
    for t in &tracked {
        assert!(util::is_open(t.as_raw_fd()));
    }
}

/// The value owns its duplicates: they are open while it (or the command
/// holding it) lives, and gone when it is dropped; the caller's own
/// descriptor may be closed right after `pass_fd`. A command keeps its value
/// across spawns.
#[test]
fn duplicates_are_released_when_the_value_or_its_command_is_dropped() {
    let _serial = serial();
    let baseline = util::open_fd_count();
    let file = scratch_file("owned-dups");
    let file_id = id(&file);
    let fds = ChildFds::new()
        .pass_fd(file.as_fd(), 500)
        .unwrap()
        .pass_fd(file.as_fd(), 501)
        .unwrap();
    drop(file);
    assert_eq!(identity(500), Some(file_id), "the duplicate at its target");
    assert_eq!(util::open_fd_count(), baseline + 2);
    assert!(
        FdTable::global().contains(500),
        "tracked in the global table"
    );
    drop(fds);
    assert!(!util::is_open(500) && !util::is_open(501));
    assert_eq!(util::open_fd_count(), baseline, "the value leaked");

    let file = scratch_file("owned-dups");
    let mut cmd = sleep_cmd();
    cmd.child_fds(ChildFds::new().pass_fd(file.as_fd(), 500).unwrap());
    drop(file);
    for _ in 0..2 {
        assert_eq!(
            fds_in_child(&mut cmd).get(&500).map(|f| f.id),
            Some(file_id)
        );
    }
    assert_eq!(util::open_fd_count(), baseline + 1);
    drop(cmd);
    assert_eq!(util::open_fd_count(), baseline, "the command leaked");
}

/// `FdTable::global().close_all()` (the Ctrl-C path) releases the
/// duplicates too: the files are let go at once (a pipe's reader sees
/// end-of-file), a later spawn of the command fails with `ECANCELED`, and
/// dropping the command then gives the numbers back. In a process of its
/// own: it empties the global table.
#[test]
fn close_all_of_the_global_table_releases_the_duplicates() {
    let _serial = serial();
    let report = spawn_util::run_isolated(
        "close_all_releases_duplicates_isolated",
        std::time::Duration::from_secs(60),
    );
    assert_eq!(report, "ok");
}

#[test]
#[ignore = "run by close_all_of_the_global_table_releases_the_duplicates"]
fn close_all_releases_duplicates_isolated() {
    spawn_util::isolated(|| {
        use std::io::Read;
        let baseline = util::open_fd_count();
        let (reader, writer) = util::pipe();
        let mut cmd = Command::new("true");
        cmd.child_fds(ChildFds::new().pass_fd(writer.as_fd(), 3).unwrap());
        drop(writer);
        assert!(cmd.status().unwrap().success(), "spawns before close_all");

        let report = FdTable::global().close_all();
        assert!(report.is_ok(), "{:?}", report.errors());
        assert!(report.released() >= 1, "released {}", report.released());
        // The write end is gone: the reader sees end-of-file at once.
        let mut rest = Vec::new();
        File::from(reader).read_to_end(&mut rest).unwrap();

        for _ in 0..3 {
            let err = cmd.status().unwrap_err();
            assert_eq!(err.raw_os_error(), Some(libc::ECANCELED), "{err}");
        }
        drop(cmd);
        assert_eq!(util::open_fd_count(), baseline, "numbers not given back");

        // After a seal (the Ctrl-C pattern: seal, then close_all), no new
        // duplicate is taken: `pass_fd` says why, and leaks nothing.
        FdTable::global().seal();
        let file = scratch_file("sealed");
        let err = ChildFds::new().pass_fd(file.as_fd(), 9).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("pass_fd(fd") && text.contains("sealed"),
            "{text}"
        );
        drop(file);
        assert_eq!(util::open_fd_count(), baseline, "a refused pass_fd leaked");
    });
}

/// A command takes one value: a second `child_fds` fails every spawn with
/// `EEXIST` (`AlreadyExists`) instead of letting its `close_other_fds`
/// quietly undo the first value's passes. The mask-only hook of a
/// `close_tracked_fds` under a guard combines with one value.
#[test]
fn a_second_child_fds_on_one_command_fails_every_spawn_loudly() {
    let _serial = serial();
    let a = scratch_file("second-a");
    let b = scratch_file("second-b");
    let mut cmd = Command::new("true");
    cmd.child_fds(ChildFds::new().pass_fd(a.as_fd(), 5).unwrap())
        .child_fds(
            ChildFds::new()
                .pass_fd(b.as_fd(), 6)
                .unwrap()
                .close_other_fds(),
        );
    for _ in 0..2 {
        let err = cmd.status().unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EEXIST), "{err}");
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
    }

    // An empty value installs no hook, so it is no second value.
    let mut cmd = sleep_cmd();
    cmd.child_fds(ChildFds::new())
        .child_fds(ChildFds::new().pass_fd(a.as_fd(), 5).unwrap());
    assert_eq!(fds_in_child(&mut cmd).get(&5).map(|f| f.id), Some(id(&a)));

    // Under a guard, the hook-free call installs the mask-only hook: it
    // combines with a value, in either order.
    static TABLE: FdTable = FdTable::new();
    for guard_first in [true, false] {
        let mut cmd = sleep_cmd();
        let fds = ChildFds::new().pass_fd(a.as_fd(), 5).unwrap();
        {
            let _guard = fdtable::MaskGuard::new();
            if guard_first {
                cmd.close_tracked_fds(&TABLE).child_fds(fds);
            } else {
                cmd.child_fds(fds).close_tracked_fds(&TABLE);
            }
        }
        assert_eq!(
            fds_in_child(&mut cmd).get(&5).map(|f| f.id),
            Some(id(&a)),
            "guard_first={guard_first}"
        );
    }
}

/// 1 000 passes (the size the configuration benchmark builds) of one file
/// to 1 000 numbers: each number in the child names it, and nothing else is
/// there.
#[test]
fn a_thousand_passes_are_all_placed() {
    let _serial = serial();
    let file = scratch_file("thousand");
    let mut fds = ChildFds::new();
    for target in 2_000..3_000 {
        fds = fds.pass_fd(file.as_fd(), target).unwrap();
    }
    let got = fds_in_child(sleep_cmd().child_fds(fds.close_other_fds()));
    let numbers: Vec<RawFd> = got.keys().copied().filter(|&fd| fd > 2).collect();
    assert_eq!(numbers, (2_000..3_000).collect::<Vec<_>>());
    assert!(got
        .values()
        .skip(3)
        .all(|f| f.id == id(&file) && !f.cloexec));
}

/// Socket activation (issue 17.7): the receiver checks what
/// `sd_listen_fds(3)` checks: `LISTEN_PID` is its own pid, `LISTEN_FDS`
/// counts the sockets at 3 and 4, `LISTEN_FDNAMES` names them; the sockets
/// are the ones passed (same inode), the command's `env`/`env_remove` are
/// applied, inherited `LISTEN_*` replaced, and nothing else is open.
#[test]
fn socket_activation_gives_the_program_its_own_pid_and_its_sockets() {
    let _serial = serial();
    let http = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let admin = std::os::unix::net::UnixListener::bind(
        std::env::temp_dir().join(format!("fdtable-activation-{}", std::process::id())),
    )
    .unwrap();
    let ino = |fd: RawFd| identity(fd).unwrap().1;
    let script = r#"
        test "$LISTEN_PID" = "$$" || { echo "LISTEN_PID=$LISTEN_PID, pid $$"; exit 1; }
        echo "fds=$LISTEN_FDS names=$LISTEN_FDNAMES extra=$FDTABLE_EXTRA home=${HOME-unset}"
        readlink /proc/self/fd/3 /proc/self/fd/4
        ls /proc/self/fd | tr '\n' ' '
    "#;
    for round in 0..3 {
        let fds = ChildFds::new()
            .listen_fd(http.as_fd(), "http")
            .unwrap()
            .listen_fd(admin.as_fd(), "admin")
            .unwrap()
            .close_other_fds();
        let out = Command::new("sh")
            .args(["-c", script])
            .env("FDTABLE_EXTRA", "yes")
            .env("LISTEN_PID", "1")
            .env_remove("HOME")
            .child_fds(fds)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "round {round}: {text}");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0], "fds=2 names=http:admin extra=yes home=unset",
            "{text}"
        );
        assert_eq!(lines[1], format!("socket:[{}]", ino(http.as_raw_fd())));
        assert_eq!(lines[2], format!("socket:[{}]", ino(admin.as_raw_fd())));
        // 0-2, the two sockets, and the directory `ls` opened.
        assert_eq!(lines[3].trim(), "0 1 2 3 4 5", "{text}");
    }
    let _ = std::fs::remove_file(
        std::env::temp_dir().join(format!("fdtable-activation-{}", std::process::id())),
    );
}

/// The hook execs the program itself: a missing one is still `NotFound`,
/// `PATH` is searched, and names `sd_listen_fds` would refuse are refused
/// when the value is built.
#[test]
fn socket_activation_reports_a_missing_program_and_refuses_bad_names() {
    let _serial = serial();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let fds = || ChildFds::new().listen_fd(listener.as_fd(), "web").unwrap();
    let err = Command::new("/nonexistent/fdtable-activation")
        .child_fds(fds())
        .status()
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
    // `true` found through PATH.
    assert!(Command::new("true")
        .child_fds(fds())
        .status()
        .unwrap()
        .success());
    for bad in ["", "a:b", "caf\u{e9}", &"x".repeat(256)] {
        let err = ChildFds::new()
            .listen_fd(listener.as_fd(), bad)
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{bad:?}: {err}");
        assert!(err.to_string().contains("listen_fd"), "{err}");
    }
    // A pass_fd already at 3: listen_fd says so.
    let err = ChildFds::new()
        .pass_fd(listener.as_fd(), 3)
        .unwrap()
        .listen_fd(listener.as_fd(), "web")
        .unwrap_err();
    assert!(err.to_string().contains("listen_fd(fd"), "{err}");
    assert!(err.to_string().contains("child_fd 3"), "{err}");
}

/// A target that another descriptor held when `pass_fd` was called, freed
/// before the value is handed to the command, is reserved then: std's
/// exec-error channel cannot land on it at the spawn (every lower number
/// taken), and the program gets its file there.
#[test]
fn a_target_freed_before_child_fds_is_reserved_then() {
    let _serial = serial();
    let target: RawFd = 350;
    let passed = scratch_file("freed-before");
    for round in 0..3 {
        let holder = util::dup_at(scratch_file("holder").as_raw_fd(), target);
        let fds = ChildFds::new().pass_fd(passed.as_fd(), target).unwrap();
        drop(holder);
        let mut cmd = Command::new("sh");
        cmd.args(["-c", &format!("test -e /proc/self/fd/{target}")])
            .child_fds(fds);
        assert_eq!(
            identity(target),
            Some(id(&passed)),
            "round {round}: not reserved"
        );
        let fillers = util::fill_below(target, target - 1);
        let status = cmd.status();
        drop(fillers);
        let status = status.unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert!(status.success(), "round {round}: {status}");
    }
}

/// Issue 18.7.2: a duplicate closed behind the value's back (an I/O-safety
/// bug elsewhere) fails the spawn with `EBADF`, and dropping the command
/// afterwards is no abort ("IO Safety violation"): the close error is
/// counted in the global table's swallowed errors.
#[test]
fn a_duplicate_closed_behind_the_values_back_fails_the_spawn_and_drops_quietly() {
    let _serial = serial();
    let target: RawFd = 777;
    let passed = scratch_file("behind-back");
    let mut cmd = Command::new("true");
    cmd.child_fds(ChildFds::new().pass_fd(passed.as_fd(), target).unwrap());
    // SAFETY: deliberately closing the value's duplicate behind its back;
    // nothing reuses 777 in this serialised test.
    unsafe { libc::close(target) };
    let err = cmd.status().unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EBADF), "{err}");
    let swallowed = FdTable::global().swallowed_close_errors();
    drop(cmd);
    assert_eq!(FdTable::global().swallowed_close_errors(), swallowed + 1);
    assert!(!FdTable::global().contains(target));
}
