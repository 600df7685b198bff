//! I8 (issue 9, item 1): no safe call inside a `for_each` callback can close
//! or recycle the number the callback is visiting before it returns.
//! `try_into_inner` refuses any visit, this thread's included; `into_inner`
//! panics on a visit of its own thread (it cannot wait for itself) and the
//! walk cleans up after the panic; a conversion that panics inside its own
//! visit still unregisters without closing and without a second panic.

mod util;

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::panic::{catch_unwind, AssertUnwindSafe};

use fdtable::{FdTable, Tracked};
use util::{identity, is_open, PanickingInto};

static TABLE: FdTable = FdTable::new();

/// How long a call that must not wait may take before the test calls it a
/// hang (generous: a hang detector, not a timing assertion).
const WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Open `n` files, so that a number just freed would be reused by one.
fn open_some(n: usize) -> Vec<File> {
    (0..n).map(|_| File::open("/dev/zero").unwrap()).collect()
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

fn assert_clean() {
    assert!(TABLE.is_empty(), "entries left: {}", TABLE.len());
    let mut left = 0;
    TABLE.for_each(|_| left += 1);
    assert_eq!(left, 0);
    assert_eq!(TABLE.swallowed_close_errors(), 0);
}

/// The attack: inside the callback, take the visited entry back,
/// drop it, open files. The callback's `BorrowedFd` must still name the
/// original pipe (and a `try_clone_to_owned` of it duplicate that pipe).
#[test]
fn try_into_inner_of_the_visited_entry_cannot_recycle_its_number() {
    let _serial = util::serial();
    let (r, _w) = util::pipe();
    let fd = r.as_raw_fd();
    let id = identity(fd).unwrap();
    let mut handle = Some(TABLE.track(r).unwrap());
    let mut refused = 0;
    TABLE.for_each(|visited| {
        assert_eq!(visited.as_raw_fd(), fd);
        match handle.take().unwrap().try_into_inner() {
            // Before the fix: the pipe comes back and its number is closed
            // right here, under the walk.
            Ok(pipe) => drop(pipe),
            Err(still_tracked) => {
                refused += 1;
                drop(still_tracked); // the close is deferred instead
            }
        }
        let files = open_some(8);
        assert_eq!(
            identity(visited.as_raw_fd()),
            Some(id),
            "the visited number now names another file"
        );
        let dup = visited.try_clone_to_owned().expect("dup the visited fd");
        assert_eq!(identity(dup.as_raw_fd()), Some(id), "dup of the wrong file");
        assert!(TABLE.contains(fd));
        drop(files);
    });
    assert_eq!(refused, 1);
    assert!(!is_open(fd), "the deferred close did not happen");
    assert!(!TABLE.contains(fd));
    assert_clean();
}

/// `try_into_inner` succeeds again once the visit is over.
#[test]
fn try_into_inner_refuses_during_the_own_visit_and_succeeds_after() {
    let _serial = util::serial();
    let (r, _w) = util::pipe();
    let fd = r.as_raw_fd();
    let mut handle = Some(TABLE.track(r).unwrap());
    TABLE.for_each(|_| {
        let h = handle.take().unwrap();
        match h.try_into_inner() {
            Ok(_) => panic!("try_into_inner took the entry its own walk visits"),
            Err(h) => handle = Some(h),
        }
    });
    let pipe: OwnedFd = match handle.take().unwrap().try_into_inner() {
        Ok(pipe) => pipe,
        Err(_) => panic!("refused with no walk running"),
    };
    assert_eq!(pipe.as_raw_fd(), fd);
    assert!(!TABLE.contains(fd) && is_open(fd));
    drop(pipe);
    assert_clean();
}

/// `into_inner` on the entry its own walk is visiting panics with a message
/// that says what to do instead. Caught inside the callback: the unwinding
/// dropped the handle, so the close is deferred, and the visited number
/// stays the original file until the callback returns.
#[test]
fn into_inner_inside_its_own_visit_panics_and_the_close_is_deferred() {
    let _serial = util::serial();
    let (r, _w) = util::pipe();
    let fd = r.as_raw_fd();
    let id = identity(fd).unwrap();
    let handle = TABLE.track(r).unwrap();
    // On a helper thread: an `into_inner` that waited for its own visit
    // would hang.
    let message = util::within(WAIT, "into_inner inside its own visit", move || {
        let mut handle = Some(handle);
        let mut message = String::new();
        TABLE.for_each(|visited| {
            let h = handle.take().unwrap();
            match catch_unwind(AssertUnwindSafe(move || h.into_inner())) {
                Ok(pipe) => drop(pipe), // before the fix: closes the visited number
                Err(payload) => message = panic_message(&*payload),
            }
            let files = open_some(8);
            assert_eq!(identity(visited.as_raw_fd()), Some(id), "recycled");
            assert!(TABLE.contains(fd), "unregistered during its visit");
            drop(files);
        });
        message
    });
    assert!(
        message.contains(&format!("fd {fd}"))
            && message.contains("Tracked::close")
            && message.contains("try_into_inner"),
        "into_inner did not refuse clearly: {message:?}"
    );
    assert!(!is_open(fd), "the deferred close did not happen");
    assert_clean();
}

/// The same panic left uncaught unwinds out of the walk: the walk unpins on
/// the way out and performs the close the unwinding deferred.
#[test]
fn into_inner_panic_unwinding_out_of_the_walk_leaves_nothing_behind() {
    let _serial = util::serial();
    let (r, _w) = util::pipe();
    let (other, _w2) = util::pipe();
    let fd = r.as_raw_fd();
    let other_fd = other.as_raw_fd();
    let handle = TABLE.track(r).unwrap();
    let other = TABLE.track(other).unwrap();
    let outcome = util::within(WAIT, "into_inner inside its own visit", move || {
        let mut handle = Some(handle);
        catch_unwind(AssertUnwindSafe(|| {
            TABLE.for_each(|visited| {
                if visited.as_raw_fd() == fd {
                    drop(handle.take().unwrap().into_inner());
                }
            });
        }))
        .is_err()
    });
    assert!(outcome, "into_inner inside its own visit returned");
    assert!(!is_open(fd) && !TABLE.contains(fd));
    // No pin left on the other entry: `into_inner` (which waits for pins)
    // returns at once.
    let back = util::within(WAIT, "into_inner after the walk unwound", move || {
        other.into_inner()
    });
    assert_eq!(back.as_raw_fd(), other_fd);
    drop(back);
    assert_clean();
}

/// "Visited by this thread" means any frame of its walk stack: from a nested
/// walk's callback, `into_inner` on the entry the *outer* walk visits panics
/// too, and `try_into_inner` refuses it.
#[test]
fn into_inner_from_a_nested_walk_on_the_outer_visit_panics() {
    let _serial = util::serial();
    let (a, _wa) = util::pipe();
    let (b, _wb) = util::pipe();
    let (fa, fb) = (a.as_raw_fd(), b.as_raw_fd());
    let id_a = identity(fa).unwrap();
    let ha = TABLE.track(a).unwrap();
    let hb = TABLE.track(b).unwrap();
    let panicked = util::within(WAIT, "into_inner inside an outer visit", move || {
        let mut ha = Some(ha);
        let mut panicked = false;
        TABLE.for_each(|outer| {
            if outer.as_raw_fd() != fa.min(fb) {
                return;
            }
            TABLE.for_each(|inner| {
                if inner.as_raw_fd() != fa.max(fb) || ha.is_none() {
                    return;
                }
                // The inner walk visits the other entry; the outer one visits `a`
                // only when `a` has the lower number: arrange for that below.
                let h = ha.take().unwrap();
                let h = match h.try_into_inner() {
                    Ok(_) => panic!("try_into_inner took the outer walk's visit"),
                    Err(h) => h,
                };
                panicked = catch_unwind(AssertUnwindSafe(move || h.into_inner())).is_err();
            });
            assert_eq!(
                identity(outer.as_raw_fd()),
                Some(id_a),
                "recycled under the outer visit"
            );
        });
        panicked
    });
    assert!(fa < fb, "the test needs `a` below `b` ({fa}, {fb})");
    assert!(panicked, "into_inner took the entry an outer walk visits");
    assert!(!is_open(fa), "the deferred close did not happen");
    drop(hb);
    assert_clean();
}

/// A [`PanickingInto`] dropped inside its own visit: the table must
/// unregister it without closing anything, neither panic a second time
/// (that would abort) nor wait for its own visit; and the stale unpin of
/// the walk must not touch a new entry that reuses the number.
#[test]
fn a_conversion_panicking_inside_its_own_visit_unregisters_once_and_the_stale_unpin_is_harmless() {
    let _serial = util::serial();
    let errors = TABLE.swallowed_close_errors();
    let tracked = TABLE.track(PanickingInto(util::dev_null().into())).unwrap();
    let fd = tracked.as_raw_fd();
    // On a helper thread: a release that waited for its own visit would hang.
    let reborn = util::within(
        WAIT,
        "release of a panicking conversion inside its own visit",
        move || {
            let mut tracked = Some(tracked);
            let mut reborn: Option<Tracked<'static, OwnedFd>> = None;
            TABLE.for_each(|visited| {
                assert_eq!(visited.as_raw_fd(), fd);
                let outcome = catch_unwind(AssertUnwindSafe(|| drop(tracked.take())));
                assert!(
                    outcome.is_err(),
                    "the conversion's panic must reach the caller"
                );
                assert!(!TABLE.contains(fd), "a stale entry stayed published");
                // The conversion closed the number; a new entry may take it.
                let (r, w) = util::pipe();
                drop(w);
                assert_eq!(
                    r.as_raw_fd(),
                    fd,
                    "serialised test: the lowest number is reused"
                );
                reborn = Some(TABLE.track(r).unwrap());
            });
            reborn.unwrap()
        },
    );
    // The walk's unpin of the old generation left the new entry alone.
    assert!(TABLE.contains(fd) && is_open(fd));
    assert_eq!(TABLE.len(), 1);
    let mut seen: Vec<RawFd> = Vec::new();
    TABLE.for_each(|b| seen.push(b.as_raw_fd()));
    assert_eq!(seen, vec![fd]);
    reborn.close().unwrap();
    assert_eq!(
        TABLE.swallowed_close_errors(),
        errors,
        "a number was closed twice"
    );
    assert_clean();
}

/// One more than a slot's pin count can hold (13 bits: 8 191 visits).
const PAST_SATURATION: usize = 8193;

/// A table of its own: a failing run leaves a hung thread pinning it.
static SATURATED: FdTable = FdTable::new();

/// Walk `SATURATED` nested `depth` deep, all on the one entry `fd`; in the
/// innermost callback run `innermost`; after each inner walk returns,
/// check that `fd` is still open and published. Returns how deep it got.
fn nest(depth: usize, fd: RawFd, innermost: &mut dyn FnMut()) -> usize {
    if depth == 0 {
        innermost();
        return 0;
    }
    let mut reached = 0;
    SATURATED.for_each(|visited| {
        assert_eq!(visited.as_raw_fd(), fd);
        reached = 1 + nest(depth - 1, fd, innermost);
        assert!(
            is_open(fd) && SATURATED.contains(fd),
            "closed under an outer visit"
        );
    });
    reached
}

/// Table review finding 6: 8 191 nested walks of one entry on one thread
/// saturate its pin count. The next nested walk, and a `close_all` in the
/// innermost callback, used to wait for a pin that only this thread could
/// release: a self-deadlock (with signals blocked, for `close_all`). They
/// now visit (and retire) on the pins this thread already holds, which keep
/// the number reserved until the outermost callback returns.
#[test]
fn nested_walks_past_the_pin_limit_neither_hang_nor_lose_the_number() {
    let _serial = util::serial();
    let (r, _w) = util::pipe();
    let fd = r.as_raw_fd();
    let id = identity(fd).unwrap();
    let placeholder = util::placeholder_identity();
    let handle = SATURATED.track(r).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    // Deep recursion: a thread with a stack to match (reserved, not used).
    std::thread::Builder::new()
        .stack_size(1 << 30)
        .spawn(move || {
            let mut handle = Some(handle);
            let mut released = None;
            let reached = nest(PAST_SATURATION, fd, &mut || {
                assert_eq!(identity(fd), Some(id), "recycled under the visit");
                let h = handle.take().unwrap();
                // Refused: this thread's walks visit it.
                let h = h.try_into_inner().unwrap_err();
                released = Some(SATURATED.close_all().released());
                assert_eq!(identity(fd), Some(placeholder), "not retired");
                drop(h); // deferred until the outermost callback returns
                assert!(is_open(fd) && SATURATED.contains(fd));
            });
            let _ = tx.send((reached, released));
        })
        .unwrap();
    let (reached, released) = rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("nested walks past the pin limit hang (or panicked)");
    assert_eq!(reached, PAST_SATURATION);
    assert_eq!(released, Some(1), "close_all did not retire the entry");
    assert!(!is_open(fd), "the deferred close did not happen");
    assert!(!SATURATED.contains(fd) && SATURATED.is_empty());
    assert_eq!(SATURATED.swallowed_close_errors(), 0);
}

/// Table review finding 9: walks are not the only pins. A `close_all`
/// releasing an entry pins it too: meanwhile `try_into_inner` is refused
/// and `into_inner` waits (here for as long as the release blocks in the
/// kernel: the last close of a socket with `SO_LINGER` and unsent data),
/// as their docs say, with no `for_each` anywhere.
#[cfg(target_os = "linux")]
#[test]
fn close_all_in_progress_pins_the_entry_it_releases() {
    let _serial = util::serial();
    let (client, peer) = util::lingering_socket(3);
    let fd = client.as_raw_fd();
    let handle = TABLE.track(client).unwrap();
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    let releaser = std::thread::spawn(move || {
        // SAFETY: gettid has no preconditions.
        tid_tx.send(unsafe { libc::gettid() }).unwrap();
        TABLE.close_all()
    });
    let tid = tid_rx.recv().unwrap();
    let mut deadline = util::Deadline::new(std::time::Duration::from_secs(30), u64::MAX);
    while util::blocked_in_syscall(tid) != Some(libc::SYS_dup3) {
        assert!(
            deadline.tick() && !releaser.is_finished(),
            "close_all never blocked in dup3"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let handle = handle
        .try_into_inner()
        .expect_err("try_into_inner took an entry close_all is releasing");
    // Waits for close_all's pin, then hands back the retired resource.
    let back = util::within(WAIT * 6, "into_inner after close_all", move || {
        handle.into_inner()
    });
    let report = releaser.join().unwrap();
    assert_eq!((report.released(), report.is_ok()), (1, true), "{report:?}");
    assert_eq!(
        identity(back.as_raw_fd()),
        Some(util::placeholder_identity())
    );
    assert!(!TABLE.contains(fd));
    drop((back, peer));
    assert_clean();
}
