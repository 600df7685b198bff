#!/usr/bin/env python3
"""Check the crate's import rules, and print the graphs they are about.

    python3 scripts/module_layers.py

1. `src/signals/` has one way down: its files import each other without a
   cycle. An import is `use super::x`, a `super::x::` path or a
   `crate::signals::x` path in code (comments, doc links and unit tests do
   not count),
   or a call of a method that a sibling file adds to `Interrupts` (only
   method names defined once in `src/signals/`). Prints what each file
   imports and the layers (0: imports no sibling).
2. Crate-wide, between the top-level modules (`crate::x` paths, and
   `super::x` in `src/*.rs`; paths only, so a method one module adds to
   another's type is not an edge): no cycle but `table <-> tracked`; the core
   never imports the front (`signals`, `child`); `sys` imports nothing of
   the crate outside `sys`.

Exit status 1 when a rule is broken. Run by .ci/run.
"""
import os
import re
import sys

FRONT = {"signals", "child"}
ALLOWED_CYCLE = {"table", "tracked"}


def code_lines(path):
    """The lines of `path` with comments (and so doc comments) cut off, up
    to its unit tests (`#[cfg(test)]` then `mod`: the test module, last in
    the file, may use any layer)."""
    lines = open(path).read().split("\n")
    for i, line in enumerate(lines):
        if line.startswith("#[cfg(test)]") and i + 1 < len(lines) and lines[i + 1].startswith("mod "):
            return
        yield line.split("//")[0]


def names_in(code, prefix):
    """Module names after `prefix` (`super::`, `crate::`), groups included."""
    found = re.findall(prefix + r"(\w+)", code)
    for group in re.findall(prefix + r"\{([^}]*)\}", code):
        found += re.findall(r"(?:^|,)\s*(\w+)", group)
    return found


def cycle(graph):
    """One cycle of `graph` as a list of nodes, or None."""
    state = {}

    def visit(node, path):
        if state.get(node) == 1:
            return path[path.index(node):] + [node]
        if state.get(node) == 2:
            return None
        state[node] = 1
        for dep in sorted(graph[node]):
            found = visit(dep, path + [node])
            if found:
                return found
        state[node] = 2
        return None

    for node in sorted(graph):
        found = visit(node, [])
        if found:
            return found
    return None


def signals_graph(root="src/signals"):
    mods = sorted(f[:-3] for f in os.listdir(root) if f.endswith(".rs") and f != "mod.rs")
    graph = {m: {} for m in mods}  # module -> {dependency: how}
    defined, added_to_interrupts = {}, {}
    for m in mods:
        path = os.path.join(root, m + ".rs")
        impl = None
        for code in code_lines(path):
            for dep in names_in(code, r"\bsuper::") + names_in(code, r"crate::signals::"):
                if dep in graph and dep != m:
                    graph[m].setdefault(dep, "use")
            if re.match(r"impl\b", code):
                impl = "Interrupts" if re.match(r"impl Interrupts \{", code) else "other"
            f = re.match(r"\s*(?:pub(?:\(\w+\))? )?(?:const )?(?:async )?(?:unsafe )?fn (\w+)", code)
            if f:
                defined.setdefault(f.group(1), set()).add(m)
                if impl == "Interrupts" and code.startswith("    "):
                    added_to_interrupts[f.group(1)] = m
    for name, home in added_to_interrupts.items():
        if len(defined[name]) != 1:
            continue  # also defined elsewhere: a call cannot be attributed
        for m in mods:
            if m != home and any(re.search(rf"[.:]{name}\(", c) for c in code_lines(os.path.join(root, m + ".rs"))):
                graph[m].setdefault(home, "method")
    return graph


def layers(graph):
    depth = {}

    def of(node):
        if node not in depth:
            depth[node] = 1 + max((of(d) for d in graph[node]), default=-1)
        return depth[node]

    for node in graph:
        of(node)
    return depth


def crate_graph(root="src"):
    top = {}
    for entry in os.listdir(root):
        if entry.endswith(".rs") and entry != "lib.rs":
            top[entry[:-3]] = [os.path.join(root, entry)]
        elif os.path.isdir(os.path.join(root, entry)):
            top[entry] = [
                os.path.join(d, f) for d, _, fs in os.walk(os.path.join(root, entry)) for f in fs if f.endswith(".rs")
            ]
    graph = {m: set() for m in top}
    for m, files in top.items():
        for path in files:
            flat = os.path.dirname(path) == root
            for code in code_lines(path):
                deps = names_in(code, r"\bcrate::") + (names_in(code, r"\bsuper::") if flat else [])
                graph[m].update(d for d in deps if d in top and d != m)
    return graph


def main():
    ok = True
    print("src/signals: file -> files it imports")
    graph = signals_graph()
    plain = {m: set(v) for m, v in graph.items()}
    found = cycle(plain)
    depth = {m: 0 for m in graph} if found else layers(plain)
    for m in sorted(graph, key=lambda m: (depth[m], m)):
        deps = ", ".join(d + (" (method)" if how == "method" else "") for d, how in sorted(graph[m].items()))
        print(f"  {m:13} -> {deps or '(nothing)'}")
    if found:
        ok = False
        print("  BAD: cycle " + " -> ".join(found))
    else:
        print("  no cycle; layers:")
        for level in sorted(set(depth.values())):
            print(f"    {level}: {', '.join(m for m in sorted(depth) if depth[m] == level)}")

    print("crate: top-level module -> modules it imports")
    graph = crate_graph()
    for m in sorted(graph):
        print(f"  {m:13} -> {', '.join(sorted(graph[m])) or '(nothing)'}")
    for m in sorted(graph):
        if m not in FRONT and graph[m] & FRONT:
            ok = False
            print(f"  BAD: core module {m} imports the front: {', '.join(sorted(graph[m] & FRONT))}")
    if graph.get("sys"):
        ok = False
        print(f"  BAD: sys imports {', '.join(sorted(graph['sys']))}")
    pruned = {m: {d for d in deps if {m, d} != ALLOWED_CYCLE} for m, deps in graph.items()}
    found = cycle(pruned)
    if found:
        ok = False
        print("  BAD: cycle " + " -> ".join(found))
    else:
        print("  no cycle but table <-> tracked; the core never imports signals or child; sys imports nothing")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
