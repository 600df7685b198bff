//! Issue 18, item 2: `CloseAllReport::released` is exact.
//!
//! The bug it had: `close_all` pins an entry, shuts its socket down, swaps
//! the placeholder in and then marks it retired; a thread woken by the
//! shutdown that dropped its handle in between (the close deferred behind
//! the pin, the entry `Closing`) made the last step fail, and the entry,
//! released all the same, was not counted. A tokio echo server with five
//! clients printed `released 3`. The tokio form of this test is in
//! `tests/async_close_all.rs`; the loom models
//! `close_all_counts_an_entry_whose_handle_closes_under_its_pin` and
//! `two_close_alls_count_an_entry_once_when_its_handle_closes_under_them`
//! (`tests/loom.rs`) explore the interleavings one by one.

mod util;

use std::io::{ErrorKind, Read};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::Barrier;
use std::thread;
use std::time::Duration;

use fdtable::FdTable;

/// Socket owners per round: half of them spin on a non-blocking read (they
/// see the shutdown within a few hundred nanoseconds, inside `close_all`'s
/// window), half block in `read` (woken by the shutdown itself).
const OWNERS: usize = 6;

/// One round: `OWNERS` tracked sockets, each owned by a thread that waits
/// for `close_all` to end its connection and then drops its handle at
/// once. Every entry is live when `close_all` reaches it (no owner lets go
/// before its socket is shut down), so every one must be counted. Returns
/// the tracked numbers.
fn round(table: &FdTable) -> Vec<RawFd> {
    let mut owned = Vec::new();
    let mut peers = Vec::new();
    for i in 0..OWNERS {
        let (mine, peer) = UnixStream::pair().expect("socketpair");
        let spins = i % 2 == 0;
        mine.set_nonblocking(spins).expect("set_nonblocking");
        owned.push((table.track(mine).expect("track"), spins));
        peers.push(peer);
    }
    let fds: Vec<RawFd> = owned.iter().map(|(h, _)| h.as_raw_fd()).collect();
    assert_eq!(table.len(), OWNERS);
    let ready = Barrier::new(OWNERS + 1);
    let report = thread::scope(|s| {
        for (handle, spins) in owned {
            let ready = &ready;
            s.spawn(move || {
                ready.wait();
                let mut buf = [0u8; 16];
                loop {
                    match (&handle).read(&mut buf) {
                        Err(e) if spins && e.kind() == ErrorKind::WouldBlock => {
                            std::hint::spin_loop();
                        }
                        Ok(n) => {
                            assert_eq!(n, 0, "nothing was sent");
                            break; // shut down
                        }
                        Err(_) => break, // the placeholder: EBADF
                    }
                }
                drop(handle); // the instant it is woken
            });
        }
        ready.wait();
        table.close_all()
    });
    assert!(report.is_ok(), "{:?}", report.errors());
    assert_eq!(
        report.released(),
        OWNERS,
        "every entry was live when close_all reached it and was released"
    );
    assert!(table.is_empty(), "len {}", table.len());
    for peer in &mut peers {
        assert_eq!(peer.read(&mut [0u8; 8]).expect("peer read"), 0, "no EOF");
    }
    fds
}

#[test]
fn released_counts_sockets_whose_owners_drop_them_the_instant_shutdown_wakes_them() {
    let _serial = util::serial();
    let baseline = util::open_fd_count();
    let sentinels = util::Sentinels::open(2);
    let rounds = util::within(Duration::from_secs(120), "released-count rounds", || {
        let mut deadline = util::Deadline::new(Duration::from_secs(3), 400);
        let mut rounds = 0;
        while deadline.tick() {
            let table = FdTable::new();
            let fds = round(&table);
            for fd in fds {
                assert!(!table.contains(fd), "fd {fd} still published");
            }
            rounds += 1;
        }
        rounds
    });
    eprintln!("{rounds} rounds of {OWNERS} sockets");
    assert!(rounds > 0);
    sentinels.check_and_close();
    assert_eq!(util::open_fd_count(), baseline, "/proc/self/fd");
}

/// The count in the common, unraced case, kind by kind: every kind that
/// `close_all` releases counts once, and the one it leaves alone does not.
#[test]
fn released_counts_each_kind_once() {
    let _serial = util::serial();
    let table = FdTable::new();
    let (r, w) = std::io::pipe().expect("pipe");
    let (a, b) = UnixStream::pair().expect("socketpair");
    let file = table.track(util::dev_null()).expect("track file"); // NotSocket
    let r = table.track(r).expect("track pipe"); // NotSocket
    let a = table.track(a).expect("track socket"); // Socket
    let w = table
        .track(std::os::fd::OwnedFd::from(w))
        .expect("track fd"); // Unknown
    let report = table.close_all();
    assert!(report.is_ok(), "{:?}", report.errors());
    assert_eq!(report.released(), 4);
    assert!(table.is_empty());
    // A second call finds nothing live: nothing to count.
    assert_eq!(table.close_all().released(), 0);
    drop((file, r, a, w, b));
}
