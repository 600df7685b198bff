#!/usr/bin/env python3
"""Print benches/README.md's spawn-cost table from `cargo bench --bench spawn`.

    cargo bench --bench spawn        # writes target/criterion/spawn_*/**/estimates.json
    python3 scripts/spawn_report.py  # prints the Markdown table

Every ratio divides two medians measured in the same run (benches/spawn.rs
explains each measurement): wall-clock time, then CPU time (this process and
its reaped children), which competing processes on a shared machine barely
disturb. Standard library only.
"""

import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CRITERION = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "criterion"

PARENTS = [
    ("small parent", "spawn_small_parent"),
    ("1 GiB resident", "spawn_1GiB_parent"),
    ("small parent, CPU time", "spawn_small_parent_cpu"),
    ("1 GiB resident, CPU time", "spawn_1GiB_parent_cpu"),
]

# (what, measured, baseline, target)
ROWS = [
    ("`close_tracked_fds` vs plain spawn", "close_tracked_fds", "plain", "<= 1.10"),
    ("`pass_fd` x2 + `close_other_fds` vs command-fds `fd_mappings`", "pass_fd_close_other_fds", "command_fds", "<= 1.05"),
    ("`pass_fd` x2 + `close_other_fds` vs close_fds in `pre_exec`", "pass_fd_close_other_fds", "close_fds", "<= 1.05"),
    ("`pass_fd` x2 + `close_other_fds` vs an empty `pre_exec` hook (the fork floor)", "pass_fd_close_other_fds", "empty_pre_exec", None),
    ("`pass_fd` x2 + `close_other_fds` (forks) vs plain spawn", "pass_fd_close_other_fds", "plain", None),
    ("`ChildFds::close_tracked_fds` (forks, closes 10 000) vs an empty `pre_exec` hook", "child_fds_close_tracked_fds", "empty_pre_exec", None),
]


def median(group, function):
    path = CRITERION / group / function / "new" / "estimates.json"
    return json.loads(path.read_text())["median"]["point_estimate"]


def fmt(ns):
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.0f} µs"
    return f"{ns:.0f} ns"


def main():
    print("| parent | measurement | median | baseline median | ratio | target |")
    print("|---|---|---|---|---|---|")
    for label, group in PARENTS:
        for what, measured, baseline, target in ROWS:
            try:
                m, b = median(group, measured), median(group, baseline)
            except FileNotFoundError as e:
                sys.exit(f"missing {e.filename}: run `cargo bench --bench spawn` first")
            print(f"| {label} | {what} | {fmt(m)} | {fmt(b)} | {m / b:.2f} | {target or ''} |")
    print()
    for label, group in [("wall", "configure"), ("CPU", "configure_cpu")]:
        try:
            m = median(group, "pass_fd_1000")
        except FileNotFoundError:
            continue
        print(f"`ChildFds` with 1 000 `pass_fd`s ({label} time): {fmt(m)} (target <= 1 ms)")


if __name__ == "__main__":
    main()
