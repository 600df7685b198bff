//! One configuration per [`Command`], read by one `pre_exec` hook.
//!
//! `pass_fd`, `close_other_fds` and `close_tracked_fds(_except)` may be
//! called on a command in any order and more than once, but the child needs
//! all of it at once: placing passed descriptors safely needs every mapping,
//! the close steps need every kept number, and a repeated `child_fd` must be
//! refused when it is configured, not discovered in the child. std offers no
//! per-`Command` storage and no way to read back a command's hooks, so the
//! configuration ([`Setup`]) lives in an `Arc` that the command's one hook
//! owns, and a process-wide registry of `Weak`s finds it again from the
//! command. The key is the address of the program name's heap buffer
//! (`Command::get_program`): std keeps it as a `CString` that no method
//! replaces, so the address stays put when the `Command` moves and no two
//! live commands share it (a unit test pins that).
//!
//! A hook-free `close_tracked_fds` has no setup (nothing may own one
//! without a hook), yet a hook installed later on the same command must
//! carry it out too, or the result would depend on the call order. So such
//! calls are remembered in a second, bounded list under the same key
//! ([`remember_hook_free`]), and [`create`] takes them into the new setup.
//! The list cannot know when a hook-free command is dropped: it keeps the
//! last [`HOOK_FREE_REMEMBERED`] calls and forgets the oldest. A stale entry
//! matches only a later command with the same program name at the same
//! buffer address, and then makes its hook close one more table's
//! published numbers in the child: descriptors that are close-on-exec
//! anyway, unless someone cleared a flag behind the table's back.
//!
//! # Internal details
//! The `Setup` is prepared by the caller before [`create`] hands it to the
//! hook, mutated afterwards only by [`update`], under `&mut Command`, and
//! read only by the hook in a fork child of a `spawn` (which also holds
//! `&mut Command`), so the two never overlap and no lock is needed (the
//! child may not take one). The registries' mutexes are taken in the parent
//! only.
//!
//! A dropped `Command` frees its program buffer before its hooks, so for a
//! moment the registry may still hold a live `Weak` under an address that a
//! new command now uses. [`update`] checks the program name too and
//! checks, after its change, that a hook still owns the setup; what remains
//! is a new command with the same program name configured on one thread
//! exactly while another thread is between those two steps of dropping the
//! old one, with the allocator handing the freed buffer across threads in
//! that instant.

use std::cell::UnsafeCell;
use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::process::Command;
use std::sync::{Arc, Mutex, Weak};

use super::pass::{self, Pass};
use super::raw;
use crate::sys;
use crate::table::FdTable;

/// Everything the hook does for one command, prepared in the parent so that
/// the child only reads.
#[derive(Debug, Default)]
pub(super) struct Setup {
    /// `pass_fd` mappings, arranged by [`pass::arrange`].
    pub(super) passes: Vec<Pass>,
    /// Tables whose numbers the child closes (`close_tracked_fds`).
    pub(super) tables: Vec<&'static FdTable>,
    /// Union of every `close_tracked_fds_except` keep list, sorted.
    pub(super) keep: Vec<RawFd>,
    /// `close_other_fds` was called.
    pub(super) close_other: bool,
    /// Sorted: `keep` and every pass target. The tracked close skips them,
    /// and `close_other_fds` leaves them (and 0-2) as they are.
    pub(super) not_closed: Vec<RawFd>,
    /// The process that configured the command last (0: not yet). The hook
    /// refuses to run there: that is `Command::exec`, no fork.
    pub(super) configured_in: libc::pid_t,
}

impl Setup {
    /// Add a table to close in the child, and numbers to keep.
    pub(super) fn add_table(&mut self, table: &'static FdTable, keep: &[RawFd]) {
        if !self.tables.iter().any(|t| std::ptr::eq(*t, table)) {
            self.tables.push(table);
        }
        self.keep.extend_from_slice(keep);
        self.rebuild();
    }

    /// Whether some mapping already targets `child_fd`.
    pub(super) fn targets(&self, child_fd: RawFd) -> bool {
        self.passes.iter().any(|p| p.target == child_fd)
    }

    /// Add a mapping of `fd` to `child_fd`; on error nothing changed.
    ///
    /// # Errors
    /// `InvalidInput` for a negative `child_fd`, one not below the soft
    /// `RLIMIT_NOFILE`, or one that another mapping targets already; the OS
    /// error when `fd` cannot be duplicated (`EBADF`, `EMFILE`).
    pub(super) fn add_pass(&mut self, fd: BorrowedFd<'_>, child_fd: RawFd) -> io::Result<()> {
        let refuse = |why: &str| {
            Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("pass_fd: child_fd {child_fd} {why}"),
            ))
        };
        let Ok(number) = u64::try_from(child_fd) else {
            return refuse("is negative");
        };
        if sys::soft_fd_limit().is_some_and(|limit| number >= limit) {
            return refuse("is not below RLIMIT_NOFILE");
        }
        if self.targets(child_fd) {
            return refuse("is already the target of another pass_fd");
        }
        let pass = Pass::new(fd.as_raw_fd(), child_fd, |n| {
            n == child_fd || self.targets(n)
        })?;
        self.passes.push(pass);
        if let Err(e) = pass::arrange(&mut self.passes) {
            self.passes.pop();
            return Err(e);
        }
        self.rebuild();
        Ok(())
    }

    /// `close_other_fds`.
    pub(super) fn set_close_other(&mut self) {
        self.close_other = true;
    }

    fn rebuild(&mut self) {
        self.keep.sort_unstable();
        self.keep.dedup();
        self.not_closed.clear();
        self.not_closed.extend_from_slice(&self.keep);
        self.not_closed.extend(self.passes.iter().map(|p| p.target));
        self.not_closed.sort_unstable();
        self.not_closed.dedup();
    }
}

/// A [`Setup`] shared by a command's hook and the registry.
#[derive(Debug)]
pub(super) struct SetupCell {
    /// The program name, to tell a reused buffer address apart from ours.
    program: Box<[u8]>,
    setup: UnsafeCell<Setup>,
}

// SAFETY: the `Setup` inside is reached only through `update` (parent, under
// `&mut Command` of the command whose hook owns the cell: one caller at a
// time, see the module docs) and `SetupCell::in_child` (the hook, under that
// `&mut Command` too). `Setup` itself is `Send` (descriptors and
// `&'static FdTable`).
unsafe impl Sync for SetupCell {}

impl SetupCell {
    /// The setup, read in the hook.
    ///
    /// # Safety
    /// Only in the hook of the command whose hook owns this cell, which std
    /// runs in the fork child of a `spawn` (nothing else runs there) or, for
    /// `Command::exec`, in this process; either way under `&mut Command`, so
    /// no configuration call overlaps it.
    pub(super) unsafe fn in_child(&self) -> &Setup {
        // SAFETY: by the caller's contract nothing mutates it meanwhile.
        unsafe { &*self.setup.get() }
    }
}

/// Live setups, by program buffer address. Parent only.
static REGISTRY: Mutex<Vec<(usize, Weak<SetupCell>)>> = Mutex::new(Vec::new());

/// The registry key of `cmd`: where its program name lives.
pub(super) fn key(cmd: &Command) -> usize {
    cmd.get_program().as_bytes().as_ptr() as usize
}

/// Look up `cmd`'s setup, dropping dead entries on the way.
fn lookup(cmd: &Command) -> Option<Arc<SetupCell>> {
    let key = key(cmd);
    let program = cmd.get_program().as_bytes();
    let mut registry = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
    registry.retain(|(_, weak)| weak.strong_count() > 0);
    registry
        .iter()
        .filter(|(k, _)| *k == key)
        .filter_map(|(_, weak)| weak.upgrade())
        .find(|cell| &*cell.program == program)
}

/// Forget `cell` (its command is gone).
fn forget(cell: &Arc<SetupCell>) {
    let mut registry = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
    registry.retain(|(_, weak)| !std::ptr::eq(weak.as_ptr(), Arc::as_ptr(cell)));
}

/// Run `change` on `cmd`'s setup, if it has one; `None` (and nothing
/// changed that anyone reads) when it has none.
///
/// Not async-signal-safe (parent only).
pub(super) fn update<R>(cmd: &mut Command, mut change: impl FnMut(&mut Setup) -> R) -> Option<R> {
    // Twice at most: a second round only after a stale entry was found.
    for _ in 0..2 {
        let cell = lookup(cmd)?;
        // SAFETY: see `SetupCell`'s `Sync` impl: `cell` is `cmd`'s (found
        // by its program buffer) and we hold `&mut cmd`, so no other
        // configuration call and no spawn of it runs meanwhile.
        let setup = unsafe { &mut *cell.setup.get() };
        setup.configured_in = raw::own_pid();
        let result = change(setup);
        // Ours holds it, and `cmd`'s hook does unless that hook was dropped
        // meanwhile: then the entry was a dead command's, whose program
        // buffer `cmd` now reuses.
        if Arc::strong_count(&cell) > 1 {
            return Some(result);
        }
        forget(&cell);
    }
    None
}

/// Give `cmd`, which has no setup, one: `setup`, prepared by the caller,
/// plus the tables of earlier hook-free `close_tracked_fds` calls on `cmd`
/// (see the module docs), owned by the hook that `install` registers.
///
/// Not async-signal-safe (parent only).
pub(super) fn create(
    cmd: &mut Command,
    mut setup: Setup,
    install: fn(&mut Command, Arc<SetupCell>),
) {
    for table in take_hook_free(cmd) {
        setup.add_table(table, &[]);
    }
    setup.configured_in = raw::own_pid();
    let cell = Arc::new(SetupCell {
        program: cmd.get_program().as_bytes().into(),
        setup: UnsafeCell::new(setup),
    });
    REGISTRY
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push((key(cmd), Arc::downgrade(&cell)));
    install(cmd, cell);
}

/// A hook-free `close_tracked_fds` call, remembered for a hook installed
/// later on the same command.
#[derive(Debug)]
struct HookFree {
    key: usize,
    program: Box<[u8]>,
    table: &'static FdTable,
}

/// How many hook-free `close_tracked_fds` calls are remembered (the
/// oldest is forgotten first).
pub(super) const HOOK_FREE_REMEMBERED: usize = 64;

/// The last hook-free calls, oldest first. Parent only.
static HOOK_FREE: Mutex<VecDeque<HookFree>> = Mutex::new(VecDeque::new());

/// Remember that `cmd` had a hook-free `close_tracked_fds(table)`.
///
/// Not async-signal-safe (parent only).
pub(super) fn remember_hook_free(cmd: &Command, table: &'static FdTable) {
    let key = key(cmd);
    let program = cmd.get_program().as_bytes();
    let mut list = HOOK_FREE.lock().unwrap_or_else(|p| p.into_inner());
    let known = list
        .iter()
        .any(|e| e.key == key && std::ptr::eq(e.table, table) && &*e.program == program);
    if known {
        return;
    }
    if list.len() >= HOOK_FREE_REMEMBERED {
        list.pop_front();
    }
    list.push_back(HookFree {
        key,
        program: program.into(),
        table,
    });
}

/// Take the tables of the remembered hook-free calls on `cmd`.
fn take_hook_free(cmd: &Command) -> Vec<&'static FdTable> {
    let key = key(cmd);
    let program = cmd.get_program().as_bytes();
    let mut taken = Vec::new();
    HOOK_FREE
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .retain(|e| {
            let ours = e.key == key && &*e.program == program;
            if ours {
                taken.push(e.table);
            }
            !ours
        });
    taken
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The registry's key must survive moves of the `Command` and every
    /// builder call, and differ between live commands. If a std release ever
    /// stores the program differently, this fails before anything else does.
    #[test]
    fn the_program_buffer_address_is_stable_and_unique_per_command() {
        let mut cmd = Command::new("fdtable-key-test");
        let before = key(&cmd);
        cmd.arg("a")
            .args(["b", "c"])
            .env("K", "V")
            .env_remove("X")
            .current_dir("/")
            .stdin(std::process::Stdio::null());
        std::os::unix::process::CommandExt::arg0(&mut cmd, "other-name");
        assert_eq!(key(&cmd), before, "builder calls moved the program name");
        let boxed = Box::new(cmd);
        assert_eq!(key(&boxed), before, "moving into a Box moved it");
        let mut list = vec![*boxed];
        list.reserve(100);
        assert_eq!(key(&list[0]), before, "moving into a Vec moved it");
        let twin = Command::new("fdtable-key-test");
        assert_ne!(key(&twin), key(&list[0]), "two live commands share a key");
    }

    #[test]
    fn update_without_a_setup_finds_nothing_and_changes_nothing() {
        let mut cmd = Command::new("fdtable-configure-test");
        let mut ran = false;
        assert!(update(&mut cmd, |_| ran = true).is_none());
        assert!(!ran);
    }

    fn install(cmd: &mut Command, cell: Arc<SetupCell>) {
        // A stand-in for the hook: something the command owns.
        // SAFETY: never run (the command is not spawned).
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(cmd, move || {
                let _ = &cell;
                Ok(())
            })
        };
    }

    #[test]
    fn update_finds_the_created_setup_again_and_it_drops_with_the_command() {
        let mut cmd = Command::new("fdtable-configure-test");
        let mut setup = Setup::default();
        setup.keep.push(7);
        create(&mut cmd, setup, install);
        // Moved into a box and out again: the setup is still found.
        let mut cmd = *Box::new(cmd);
        let seen = update(&mut cmd, |s| (s.keep.clone(), s.configured_in));
        assert_eq!(seen, Some((vec![7], raw::own_pid())));
        let weak = Arc::downgrade(&lookup(&cmd).expect("registered"));
        drop(cmd);
        assert_eq!(weak.strong_count(), 0, "the setup outlived its command");
    }

    /// Hook-free calls are taken into a hook created later for the same
    /// command (and only that command), and the list stays bounded.
    #[test]
    fn hook_free_calls_are_taken_into_the_hook_and_the_list_is_bounded() {
        static A: FdTable = FdTable::new();
        static B: FdTable = FdTable::new();
        let mut cmd = Command::new("fdtable-hook-free-test");
        let other = Command::new("fdtable-hook-free-test");
        remember_hook_free(&cmd, &A);
        remember_hook_free(&cmd, &A);
        remember_hook_free(&other, &B);
        create(&mut cmd, Setup::default(), install);
        let tables = update(&mut cmd, |s| s.tables.clone()).unwrap();
        assert_eq!(tables.len(), 1);
        assert!(std::ptr::eq(tables[0], &A));
        assert_eq!(take_hook_free(&other).len(), 1, "the other command's call");

        let many: Vec<Command> = (0..HOOK_FREE_REMEMBERED + 5)
            .map(|_| Command::new("fdtable-hook-free-test"))
            .collect();
        for c in &many {
            remember_hook_free(c, &A);
        }
        let len = HOOK_FREE.lock().unwrap().len();
        assert!(len <= HOOK_FREE_REMEMBERED, "{len} remembered");
    }
}
