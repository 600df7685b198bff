#!/usr/bin/env python3
"""Break each invariant on purpose and check that its test fails.
(The invariants I1-I10 are those of docs/guarantees.md; the T* mutants
break the `tokio` feature's promises. tests/README.md tables them all.)

    python3 scripts/invariant_mutants.py          # all mutants (a few minutes)
    python3 scripts/invariant_mutants.py I3 I4b   # some

Each mutant edits one spot in src/, runs the one test named for it, and puts
src/ back with `git checkout`. It refuses to run on a dirty src/. A mutant
that the test does not catch is printed as BAD and makes the exit status 1.
Not part of .ci/run (each mutant rebuilds the crate).
"""
import re
import subprocess
import sys

# mutant -> (file, text to replace, broken text, the test that must catch it).
# The name says which invariant it breaks (I1-I10: docs/guarantees.md;
# H7 and H11: DESIGN.md's hazards that no invariant names; T1-T5: the
# `tokio` feature's promises; S1-S2: the shutdown promises of issue 18).
# Each has a row in tests/README.md's mutant table.
M = {
 "I1": ("src/tracked.rs",
        "        if close_resource(self.table, self.fd, self.gen, resource).is_err() {",
        "        let resource = std::mem::ManuallyDrop::new(resource); self.table.forget_entry_leniently(self.fd, self.gen); if false {",
        ["--test","lifecycle","nothing_leaks_after_many_track_and_release_cycles"]),
 "I2": ("src/child/close.rs",
        "    let count = (last - first) as usize + 1;",
        "    let last = last + 1;\n    let count = (last - first) as usize;",
        ["--test","exec","spawn_of_missing_program_fails_with_not_found_every_time_under_churn"]),
 "I3": ("src/table.rs",
        "        let _mask = MaskGuard::new();\n        loop {\n            let w = slot.load();\n            let ours",
        "        let _mask = ();\n        loop {\n            let w = slot.load();\n            let ours",
        ["--test","signals","the_close_syscall_runs_with_async_signals_blocked"]),
 "I3b": ("src/table.rs",
        "        let _mask = MaskGuard::new();\n        loop {\n            let w = slot.load();\n            let ours",
        "        let _mask = ();\n        let mut early = None;\n        loop {\n            let w = slot.load();\n            if w.pins() == 0 && early.is_none() { early = Some(sys::close(raw)); }\n            let ours",
        ["--test","signals","signal_storm_never_sees_half_done_explicit_close"]),
 "I4": ("src/table.rs",
        "            let next = if w.pins() == 0 {",
        "            let next = if true {",
        ["--test","for_each","closing_the_visited_fd_in_its_callback_defers_the_close_until_return"]),
 "I4b": ("src/table.rs",
        "let Some(pin) = self.pin(slot, fd, Some(epoch)) else {",
        "let Some(pin) = self.pin(slot, fd, None) else {",
        ["--test","for_each","a_number_closed_and_retracked_during_a_walk_is_not_visited"]),
 "I2b": ("src/retire.rs",
        "        Ok(p) => sys::replace_with_placeholder(*p, fd).map_err(|e| swap_failed(fd, kind, e)),",
        "        Ok(p) => {\n            let _ = sys::replace_with_placeholder(*p, fd + 1);\n            sys::replace_with_placeholder(*p, fd).map_err(|e| swap_failed(fd, kind, e))\n        }",
        ["--test","churn","churn_under_signal_storm_leaks_nothing_and_touches_nothing_foreign"]),
 "I5": ("src/table.rs",
        "                sys::close(raw)\n            } else {",
        "                let r = sys::close(raw); if r.is_err() { let _ = slot.cas(Word::FREE, w); } r\n            } else {",
        ["--test","errors","fd_closed_behind_the_tables_back_makes_close_report_ebadf_and_leaves_no_entry"]),
 "I8": ("src/pins.rs",
        "    pub(crate) fn try_forget_entry(&self, fd: RawFd, gen: u64) -> bool {\n        self.try_forget(fd, gen, 0)",
        "    pub(crate) fn try_forget_entry(&self, fd: RawFd, gen: u64) -> bool {\n        self.try_forget(fd, gen, visits::pins_held_here(self.id(), fd, gen))",
        ["--test","visited_number","try_into_inner_of_the_visited_entry_cannot_recycle_its_number"]),
 "I8b": ("src/tracked.rs",
        "        if self.table.visits_here(self.fd, self.gen) > 0 {",
        "        if false {",
        ["--test","visited_number","into_inner_inside_its_own_visit_panics_and_the_close_is_deferred"]),
 "I9": ("src/placeholder.rs",
        "    let word = PLACEHOLDER.load(Ordering::Acquire);\n    let (fd, tag) = unpack(word);",
        "    if true {\n        return sys::open_placeholder().map(IntoRawFd::into_raw_fd);\n    }\n    let word = PLACEHOLDER.load(Ordering::Acquire);\n    let (fd, tag) = unpack(word);",
        ["--test","fd_limit","close_all_at_the_descriptor_limit_releases_every_entry"]),
 "I9b": ("src/sys/linux/mod.rs",
        "    match syscall!(open(path.as_ptr(), libc::O_PATH | libc::O_CLOEXEC)) {\n        Ok(fd) => {\n            // SAFETY: `open` just returned this descriptor; nothing else\n            // owns it.\n            let opened = unsafe { OwnedFd::from_raw_fd(fd) };\n            // The same pipe, or code that does not own our read end's\n            // number closed and reused it: then keep the read end.\n            if same_inode(opened.as_raw_fd(), read.as_raw_fd()) {",
        "    let _ = &path;\n    match syscall!(open(c\"/\".as_ptr(), libc::O_PATH | libc::O_CLOEXEC)) {\n        Ok(fd) => {\n            let opened = unsafe { OwnedFd::from_raw_fd(fd) };\n            if true || same_inode(opened.as_raw_fd(), read.as_raw_fd()) {",
        ["--test","retired_handle","a_handle_retired_by_close_all_resolves_no_path_and_does_no_io"]),
 "I9c": ("src/placeholder.rs",
        "    if fd >= 0 && (tag == 0 || sys::is_placeholder(fd, tag)) {",
        "    if fd >= 0 {",
        ["--test","retired_handle","a_placeholder_replaced_behind_the_tables_back_is_never_swapped_in"]),
 "I9d": ("src/sys/linux/mod.rs",
        "    match syscall!(open(path.as_ptr(), libc::O_PATH | libc::O_CLOEXEC)) {\n        Ok(fd) => {\n            // SAFETY: `open` just returned this descriptor; nothing else\n            // owns it.\n            let opened = unsafe { OwnedFd::from_raw_fd(fd) };\n            // The same pipe, or code that does not own our read end's\n            // number closed and reused it: then keep the read end.\n            if same_inode(opened.as_raw_fd(), read.as_raw_fd()) {",
        "    let _ = &path;\n    match syscall!(open(c\"/dev/null\".as_ptr(), libc::O_PATH | libc::O_CLOEXEC)) {\n        Ok(fd) => {\n            let opened = unsafe { OwnedFd::from_raw_fd(fd) };\n            if true || same_inode(opened.as_raw_fd(), read.as_raw_fd()) {",
        ["--test","retired_handle","a_handle_retired_by_close_all_resolves_no_path_and_does_no_io"]),
 "I9e": ("src/retire.rs",
        "    if os.raw_os_error() != Some(libc::EBADF) {",
        "    if true {",
        ["--test","fd_limit","close_all_reports_numbers_above_a_lowered_soft_limit_by_name"]),
 "I4c": ("src/pins.rs",
        "                if visits::pins_held_here(self.id(), fd, w.gen()) > 0 {",
        "                if false {",
        ["--test","visited_number","nested_walks_past_the_pin_limit_neither_hang_nor_lose_the_number"]),
 "I7c": ("src/retire.rs",
        "        let placeholder = placeholder::checked();\n",
        "        let placeholder = placeholder::checked();\n        let _mask = crate::mask::MaskGuard::new();\n",
        ["--test","signals","sigint_kills_a_process_blocked_in_close_all_at_once"]),
 "I10": ("src/child/fork.rs",
        "let own = visits::pins_held_here(self.id(), fd, w.gen()).min(w.pins());",
        "let own = w.pins();",
        ["--test","fork_child_pins","pins_of_threads_that_do_not_exist_in_the_child_are_forgotten"]),
 "I10b": ("src/child/fork.rs",
        "        self.reset_live_count(live);",
        "        let _ = live;",
        ["--test","fork_child_pins","a_fork_childs_len_matches_its_live_entries"]),
 "I6a": ("src/child/fork.rs",
        "        let _mask = MaskGuard::new();\n        close_published(self, |_| false)",
        "        let _mask = MaskGuard::new();\n        std::hint::black_box(Vec::<u8>::with_capacity(16));\n        close_published(self, |_| false)",
        ["--test","exec_alloc","close_all_in_child_allocates_nothing_under_churn"]),
 "I6b": ("src/child/fork.rs",
        "        close_published(self, |_| false)",
        "        close_published(self, |fd| fd % 2 == 0)",
        ["--test","exec","fork_during_walk_and_churn_child_closes_every_tracked_fd"]),
 "I2c": ("src/sys/linux/mod.rs",
        "        CLOSE_RANGE_CLOEXEC as libc::c_uint\n",
        "        0 as libc::c_uint\n",
        ["--test","exec","spawn_of_missing_program_fails_with_not_found_every_time_under_churn"]),
 "I2d": ("src/child/pass.rs",
        "            if now != Some(pass.file) && now != pass.occupant {",
        "            if false && now != Some(pass.file) && now != pass.occupant {",
        ["--test","child_setup","std_exec_error_socket_on_a_target_is_refused_never_overwritten"]),
 "I2e": ("src/child/pass.rs",
        "        if sys::identity(pass.source()) != Some(pass.file) {",
        "        if false {",
        ["--test","child_setup","a_duplicate_closed_by_other_code_fails_the_spawn_clearly"]),
 # Issue 17: a duplicate released by `FdTable::global().close_all()` fails
 # the spawn as such (not as a duplicate closed behind the value's back).
 "I2f": ("src/child/pass.rs",
        "        if pass.duplicate.is_retired() {",
        "        if false {",
        ["--test","child_fds","close_all_of_the_global_table_releases_the_duplicates"]),
 # Issue 17: a second value on one command fails loudly instead of undoing
 # the first one's passes.
 "I2g": ("src/child/run.rs",
        "    if plan.is_child_fds && CHILD_FDS_APPLIED.fetch_add(1, Ordering::Relaxed) > 0 {",
        "    if false {",
        ["--test","child_fds","a_second_child_fds_on_one_command_fails_every_spawn_loudly"]),
 "I6c": ("src/child/pass.rs",
        "pub(super) fn place(passes: &[Pass]) -> io::Result<()> {\n",
        "pub(super) fn place(passes: &[Pass]) -> io::Result<()> {\n    std::hint::black_box(Vec::<u8>::with_capacity(16));\n",
        ["--test","exec_alloc","command_hook_allocates_nothing_in_the_child"]),
 "I6d": ("src/child/run.rs",
        "close_published(table, |fd| fd <= 2 || plan.kept(fd));",
        "close_published(table, |fd| fd <= 2);",
        ["--test","child_setup","every_order_of_the_builder_calls_gives_the_same_child"]),
 # Issue 18.7.1: a target freed before `child_fds` is reserved then.
 "I2h": ("src/child/child_fds.rs",
        "        passes.reserve_free_targets();",
        "",
        ["--test","child_fds","a_target_freed_before_child_fds_is_reserved_then"]),
 "I8c": ("src/child/run.rs",
        "    if sys::getpid() == plan.configured_in {",
        "    if false {",
        ["--test","exec","exec_in_the_configuring_process_is_refused_before_anything_changes"]),
 # Issue 17.5: without the proof (std's exec-error channel), a fork child
 # calling `exec` would run the setup in a live process.
 "I8d": ("src/child/proof.rs",
        "    let mut found = Proof::Exec;",
        "    let mut found = Proof::Spawned;",
        ["--test","exec","exec_in_a_fork_child_of_the_configuring_process_changes_nothing"]),
 "I7b": ("src/signals/shared.rs",
        "        if !self.installer.is_current() {\n            return; // a fork child",
        "        if false {\n            return; // a fork child",
        ["--test","interrupts","the_pid_check_keeps_a_fork_childs_sigint_out_of_the_parents_pipe"]),
 # The `tokio` feature's promises (issue 11; tests need `--features tokio`).
 # T1: a cancelled receive loses no count (an await between taking a signal
 # and returning it makes a dropped future lose it).
 "T1": ("src/signals/async_recv.rs",
        "            if let Some(received) = interrupts.try_recv() {\n                return Ok(received);",
        "            if let Some(received) = interrupts.try_recv() {\n                tokio::task::yield_now().await;\n                return Ok(received);",
        ["--features","tokio","--test","async_recv","cancelled_receives_lose_no_count_under_a_storm_on_a_multi_thread_runtime"]),
 # T2: no number swapped under a registered socket.
 "T2": ("src/retire.rs",
        "        FdKind::RegisteredSocket => match sys::shutdown(fd) {",
        "        FdKind::RegisteredSocket => match sys::shutdown(fd).and_then(|()| swap()) {",
        ["--features","tokio","--test","async_close_all","close_all_never_swaps_a_socket_number_under_tokio"]),
 # T3: a datagram socket is not shut down under a waiting task (it would spin).
 "T3": ("src/tokio_types.rs",
        "    RegisteredOther: UdpSocket => into_std, UnixDatagram",
        "    RegisteredSocket: UdpSocket => into_std;\n    RegisteredOther: UnixDatagram",
        ["--features","tokio","--test","async_close_all","close_all_reports_registered_others_leaves_them_alone_and_they_close_after_cancel"]),
 # T4: a conversion that lost the descriptor is unregistered, not a panic.
 "T4": ("src/tracked.rs",
        "AssertUnwindSafe(|| resource.try_into_owned_fd())",
        "AssertUnwindSafe(|| Ok::<_, io::Error>(resource.into_owned_fd()))",
        ["--features","tokio","--test","async_tracked","a_number_replaced_behind_tokios_back_is_unregistered_not_closed_again"]),
 # Hazards whose guarantee no invariant above names (DESIGN.md H7, H11).
 "H7": ("src/table.rs",
        "        if let Err(error) = sys::set_cloexec(fd, true) {",
        "        if let Err(error) = std::io::Result::<()>::Ok(()) {",
        ["--test","errors","track_sets_cloexec_when_it_was_missing"]),
 "H11": ("src/child/hook.rs",
        "        let _ = table;\n        if mask_needs_restoring() {",
        "        let _ = table;\n        if true {",
        ["--test","child_setup","close_tracked_fds_spawns_without_fork_relying_on_close_on_exec"]),
 "T5": ("src/signals/async_recv.rs",
        "    if interrupts.shared.installer.is_current() {",
        "    if true {",
        ["--features","tokio","--test","async_recv","a_fork_child_dropping_its_inherited_instance_leaves_the_parent_receiving"]),
 # Shutdown (issue 18): the seal holds against racing tracks, and the
 # report counts what it released.
 "S1": ("src/table.rs",
        "        fence(Ordering::SeqCst);\n        if self.sealed.load(Ordering::Relaxed) {\n            return self.withdraw_sealed(slot, fd, gen, resource);\n        }",
        "",
        ["--test","seal","seal_then_close_all_releases_every_entry_that_racing_tracks_accepted"]),
 "S2": ("src/retire.rs",
        "                    Settled::ReleasedClosed => report.released += 1,",
        "                    Settled::ReleasedClosed => {}",
        ["--test","released_count","released_counts_sockets_whose_owners_drop_them_the_instant_shutdown_wakes_them"]),
 "I7": ("src/signals/policy.rs",
        "    // EINVAL for a number that is not a signal: `_exit` below handles it.",
        "    unsafe { libc::_exit(128 + sig) };\n    // EINVAL for a number that is not a signal: `_exit` below handles it.",
        ["--test","interrupts","ctrl_c_releases_every_tracked_fd_removes_temp_files_and_dies_by_sigint"]),
}

def run(name):
    f, old, new, args = M[name]
    src = open(f).read()
    assert old in src, (name, old)
    src = src.replace(old, new, 1)
    if name == "I3b":
        src = src.replace("                sys::close(raw)\n            } else {", "                early.unwrap()\n            } else {", 1)
    open(f, "w").write(src)
    try:
        r = subprocess.run(["cargo", "test", "-q", *args, "--", "--exact"], capture_output=True, text=True, timeout=900)
    finally:
        subprocess.run(["git", "checkout", "-q", "--", "src"], check=True)
    out = r.stdout + r.stderr
    caught = r.returncode != 0 and ("FAILED" in out or "panicked" in out) and "error[" not in out
    why = re.findall(r"panicked at [^\n]*\n[^\n]*", out)
    print(f"{name}: {args[-2]}::{args[-1]}: {'caught' if caught else 'BAD: not caught'}")
    if why:
        print("    " + why[0].replace("\n", " | "))
    return caught


if __name__ == "__main__":
    if subprocess.run(["git", "diff", "--quiet", "--", "src"]).returncode != 0:
        sys.exit("src/ has uncommitted changes; commit or stash them first")
    names = sys.argv[1:] or list(M)
    sys.exit(0 if all([run(n) for n in names]) else 1)
