//! Minimal operation sequences kept as plain tests.
//!
//! When `tests/proptest_ops.rs` (or the fuzz target in `fuzz/`) finds a
//! failure, proptest shrinks it to a minimal sequence and prints it as
//! `ops = [...]` (it is also persisted in `proptest-regressions/`, which only
//! replays the seed). Paste that sequence here as a `#[test]` named after what
//! it exercises, with a line on the bug it caught, so it runs on every
//! `cargo test` forever, independent of proptest's seeds and strategies.
//! Sequences written by hand for paths that random generation reaches only
//! rarely belong here too.
//!
//! Each test runs the same checked interpreter as the property test
//! (`tests/ops/mod.rs`): after every step `len`, `contains`, the kernel's view
//! of every number (`fcntl`, `fstat`), released files and walk visit sets are
//! compared with the model. Tests share one process, so they run one at a
//! time (`SERIAL`): the checker needs no other thread opening descriptors.

mod ops;

use std::sync::Mutex;

use fdtable::FdTable;
use ops::{Harness, Op};
use Op::*;

static SERIAL: Mutex<()> = Mutex::new(());

fn run(ops: &[Op]) -> usize {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let table = FdTable::new();
    let h = Harness::run(&table, ops);
    h.visited
}

/// Walk → drop the visited entry (deferred close) → nested walk → `close_all`
/// from inside the nested callback. The dropped entry is `Closing`, so
/// `close_all` must leave it to the outer walk (released = 2, not 3), the
/// nested walk must not visit it, and neither walk may visit what `close_all`
/// retired; the deferred close happens when the outer callback returns, and
/// the retired placeholders are closed when their handles drop.
#[test]
fn drop_visited_then_nested_walk_closes_all() {
    let visited = run(&[
        TrackPipe,
        TrackSocket,
        TrackFile,
        Walk(vec![
            vec![DropVisited, Walk(vec![vec![CloseAll]])],
            vec![TrackPipe], // never runs: nothing else is visited
        ]),
        Walk(vec![]),
    ]);
    // Outer visits the first entry, nested visits the second; the rest are
    // retired before the walks reach them.
    assert_eq!(visited, 2);
}

/// `into_inner` on the visited entry must refuse (it panics; the unwinding
/// drops the handle, so its close is deferred behind the walk), and
/// `try_into_inner` on it must hand it back. A pipe tracked afterwards gets a
/// new number (the visited one is still reserved), which the nested walk
/// visits and the outer one does not.
#[test]
fn taking_the_visited_entry_back_is_refused() {
    let visited = run(&[
        TrackPipe,
        Walk(vec![vec![
            TryIntoInnerVisited,
            IntoInnerVisited,
            DropReturned(0),
            TrackPipe,
            Walk(vec![vec![DropVisited]]),
            TrackPipe,
        ]]),
        Close(0),
    ]);
    assert_eq!(visited, 2);
}

/// Close a later entry from inside a callback and track a fresh pipe, which
/// gets the freed number: the slot is reused with a new generation under
/// the running walk. The outer walk must not visit it (tracked after it
/// began); a nested walk started afterwards does.
#[test]
fn recycled_number_under_a_running_walk() {
    let visited = run(&[
        TrackPipe,
        TrackPipe,
        Walk(vec![vec![
            Close(1),
            TrackPipe,
            Walk(vec![vec![], vec![TryIntoInner(0)]]),
        ]]),
        Close(0),
    ]);
    // Outer: the first entry only. Nested: the first and the newcomer.
    assert_eq!(visited, 3);
}

/// A panic in a nested callback unwinds only the nested walk; the entry the
/// outer walk visits was dropped before the panic, and the nested walk had
/// pinned a second entry that it dropped too: both deferred closes must
/// happen during the unwind (nested) and on return (outer).
#[test]
fn panic_in_nested_walk_completes_deferred_closes() {
    run(&[
        TrackPipe,
        TrackPipe,
        TrackSocket,
        Walk(vec![vec![
            DropVisited,
            Walk(vec![vec![DropVisited, Panic, TrackPipe]]),
            TrackFile,
        ]]),
        Walk(vec![vec![Panic]]),
    ]);
}

/// `close_all` inside a callback retires the visited entry under its pin;
/// dropping it afterwards makes it `Closing` with the placeholder in place,
/// and the last unpin closes the placeholder's number exactly once. Also a
/// second visit of the same number by a nested walk (two pins) before that.
#[test]
fn retire_visited_then_drop_it() {
    run(&[
        TrackPipe,
        TrackFile,
        Walk(vec![vec![
            Walk(vec![vec![CloseAll, DropVisited]]),
            TrackDuplicate(0),
            IntoInner(0),
        ]]),
        DropReturned(0),
    ]);
}

/// The checker is not vacuous: a tracked number closed behind the table's
/// back (what a table that closed the wrong number would leave) fails the
/// very next check.
#[test]
#[should_panic(expected = "held fd")]
fn checker_notices_a_number_closed_behind_the_tables_back() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let table = FdTable::new();
    let mut h = Harness::new(&table);
    h.apply(&TrackFile);
    let fd = (0..1024)
        .rev()
        .find(|&fd| table.contains(fd))
        .expect("tracked");
    // SAFETY: deliberately breaks the table's ownership to test the checker;
    // the handle's later close then fails with EBADF, which is never reached
    // because `check` panics first.
    unsafe { libc::close(fd) };
    h.check();
}
