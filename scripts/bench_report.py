#!/usr/bin/env python3
"""Turn criterion's output into benches/README.md's results table and close-cost plot.

    cargo bench                      # writes target/criterion/**/new/estimates.json
    python3 scripts/bench_report.py  # prints a Markdown table, writes docs/close_cost.svg

Every ratio divides two medians measured in the same `cargo bench` run. Uses
only the Python standard library (the SVG is written by hand).
"""

import html
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CRITERION = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "criterion"
SVG_OUT = ROOT / "docs" / "close_cost.svg"


def medians():
    """full_id -> median in nanoseconds."""
    out = {}
    for bench in CRITERION.glob("**/new/benchmark.json"):
        meta = json.loads(bench.read_text())
        est = json.loads((bench.parent / "estimates.json").read_text())
        out[meta["full_id"]] = est["median"]["point_estimate"]
    return out


def fmt_ns(ns):
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} µs"
    return f"{ns:.0f} ns"


# (what, measured id, baseline id, target ratio or None, note)
ROWS = [
    ("`Tracked` drop vs close + mask pair (/dev/null)", "close_dev_null/tracked_drop", "close_dev_null/close_plus_mask_pair", "<= 1.10", ""),
    ("`Tracked` drop vs close + mask pair (pipe end)", "close_pipe/tracked_drop", "close_pipe/close_plus_mask_pair", "<= 1.10", ""),
    ("`Tracked` drop vs bare close (/dev/null)", "close_dev_null/tracked_drop", "close_dev_null/bare_close", None, ""),
    ("naive `Mutex<HashSet>` table vs close + mask pair", "close_dev_null/naive_table", "close_dev_null/close_plus_mask_pair", None, ""),
    ("`OwnedFd` drop vs bare close", "close_dev_null/owned_fd_drop", "close_dev_null/bare_close", None, ""),
    ("`track` (FD_CLOEXEC set) vs bare `fcntl(F_GETFD)`", "track/track_cloexec_already_set", "track/bare_getfd", None, ""),
    ("`track` (FD_CLOEXEC missing) vs bare `fcntl(F_GETFD)`", "track/track_cloexec_missing", "track/bare_getfd", None, ""),
    ("`close_all` 10 000 `File`s vs `dup3(placeholder, fd)` loop", "retire/close_all_files/10000", "retire/dup3_loop/10000", "<= 1.10", ""),
    ("`close_all` 10 000 `OwnedFd`s (probed) vs `dup3` loop", "close_all/close_all/10000/contiguous", "retire/dup3_loop/10000", None, ""),
    ("`dup3` loop 10 000 vs close loop", "retire/dup3_loop/10000", "close_all/close_loop/10000/contiguous", None, ""),
    ("close loop 1 000 vs one `close_range`", "close_all/close_loop/1000/contiguous", "close_all/close_range/1000/contiguous", None, ""),
    ("close loop 10 000 vs one `close_range`", "close_all/close_loop/10000/contiguous", "close_all/close_range/10000/contiguous", None, ""),
    ("`close_all_in_child` 10 000 contiguous vs one `close_range` (child)", "child_close_10000_contiguous/close_all_in_child", "child_close_10000_contiguous/raw_close_range", "<= 1.10", ""),
    ("`close_all_in_child` 1 000 contiguous vs one `close_range` (child)", "child_close_1000_contiguous/close_all_in_child", "child_close_1000_contiguous/raw_close_range", None, ""),
    ("`close_all_in_child` 10 000 scattered vs close loop (child)", "child_close_10000_scattered/close_all_in_child", "child_close_10000_scattered/close_loop", None, ""),
    ("`close_all_in_child` 10 000, `close(2)` fallback vs `close_range` (child)", "child_close_10000_contiguous/close_all_in_child_close_fallback", "child_close_10000_contiguous/raw_close_range", None, ""),
    ("Ctrl-C: `Interrupts` vs bare signal-hook pipe", "signal_to_event/interrupts", "signal_to_event/bare_signal_hook_pipe", "<= 1.15", ""),
    ("Ctrl-C in tokio: `AsyncInterrupts` vs `tokio::signal::unix`, signal to awakened task (feature `tokio`)", "signal_to_task/async_interrupts", "signal_to_task/tokio_signal", "<= 1.15", ""),
]


def table(m):
    lines = [
        "| measurement | median | baseline median | ratio | target |",
        "|---|---|---|---|---|",
    ]
    for what, a, b, target, _ in ROWS:
        if a not in m or b not in m:
            lines.append(f"| {what} | not run | | | {target or ''} |")
            continue
        lines.append(
            f"| {what} | {fmt_ns(m[a])} | {fmt_ns(m[b])} | {m[a] / m[b]:.2f} | {target or ''} |"
        )
    fe = m.get("for_each/10000_entries")
    if fe is not None:
        lines.append(f"| `for_each` per entry (10 000 entries) | {fe / 10000:.1f} ns | | | <= 25 ns |")
    one, two = m.get("track_drop_throughput/tracked/1_thread"), m.get("track_drop_throughput/tracked/2_threads")
    bone, btwo = m.get("track_drop_throughput/bare_close/1_thread"), m.get("track_drop_throughput/bare_close/2_threads")
    if one and two:
        lines.append(f"| 2 threads vs 1, track + drop (throughput) | {fmt_ns(two)} | {fmt_ns(one)} | {2 * one / two:.2f}x | >= 1.6x |")
    if bone and btwo:
        lines.append(f"| 2 threads vs 1, bare close (kernel floor) | {fmt_ns(btwo)} | {fmt_ns(bone)} | {2 * bone / btwo:.2f}x | |")
    return "\n".join(lines)


def svg(m):
    variants = [
        ("bare close(2)", "bare_close"),
        ("OwnedFd drop", "owned_fd_drop"),
        ("close + mask pair", "close_plus_mask_pair"),
        ("naive Mutex<HashSet>", "naive_table"),
        ("Tracked drop", "tracked_drop"),
    ]
    groups = [("/dev/null", "close_dev_null"), ("pipe end", "close_pipe")]
    bars = []
    for gname, gid in groups:
        for vname, vid in variants:
            v = m.get(f"{gid}/{vid}")
            if v is not None:
                bars.append((f"{gname}: {vname}", v))
    if not bars:
        return None
    width, bar_h, gap, left = 760, 22, 8, 260
    height = 40 + len(bars) * (bar_h + gap) + 30
    vmax = max(v for _, v in bars)
    scale = (width - left - 90) / vmax
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="13">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        '<text x="10" y="22" font-size="15" font-weight="bold">Cost of closing one descriptor (median ns, one cargo bench run)</text>',
    ]
    for i, (label, v) in enumerate(bars):
        y = 40 + i * (bar_h + gap)
        color = "#d9534f" if "Tracked" in label else "#5b8dd9"
        out.append(f'<text x="{left - 8}" y="{y + 16}" text-anchor="end">{html.escape(label)}</text>')
        out.append(f'<rect x="{left}" y="{y}" width="{v * scale:.1f}" height="{bar_h}" fill="{color}"/>')
        out.append(f'<text x="{left + v * scale + 6:.1f}" y="{y + 16}">{v:.0f} ns</text>')
    out.append("</svg>")
    return "\n".join(out)


def main():
    m = medians()
    if not m:
        sys.exit(f"no criterion results under {CRITERION}; run `cargo bench` first")
    print(table(m))
    picture = svg(m)
    if picture:
        SVG_OUT.parent.mkdir(exist_ok=True)
        SVG_OUT.write_text(picture)
        print(f"\nwrote {SVG_OUT.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
