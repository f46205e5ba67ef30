#!/usr/bin/env python3
"""Fails when files of one crate import each other in a circle.

Usage: scripts/import-circles.py [crates/NAME/src ...]   (default: every crate of the workspace)

A file is a module (`a/b.rs` and `a/b/mod.rs` are `a::b`); it depends on every module it names
through `crate::` or `super::` outside comments and its inline `mod tests`. A parent declaring
its children with `mod` is structure, not an import. Prints each circle with its edges.
"""
import glob
import os
import re
import sys


def modules(root):
    found = {}
    for path in glob.glob(os.path.join(root, "**", "*.rs"), recursive=True):
        parts = os.path.relpath(path, root)[:-3].split(os.sep)
        if parts[-1] in ("mod", "lib", "main"):
            parts = parts[:-1]
        found[tuple(parts)] = path
    return found


def edges(found):
    def resolve(path):
        for i in range(len(path), 0, -1):
            if tuple(path[:i]) in found:
                return tuple(path[:i])
        return None

    graph = {m: set() for m in found}
    for module, path in found.items():
        with open(path, encoding="utf-8") as f:
            src = f.read()
        src = re.sub(r"^\s*//.*$", "", src, flags=re.M)
        src = re.sub(r"#\[cfg\(test\)\]\s*mod tests \{.*", "", src, flags=re.S)
        for m in re.finditer(r"\b(crate|super)((?:::\w+)+)", src):
            base = [] if m.group(1) == "crate" else list(module[:-1])
            target = resolve(base + m.group(2).split("::")[1:])
            if target is not None and target != module:
                graph[module].add(target)
    return graph


def circles(graph):
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(component)

    sys.setrecursionlimit(10_000)
    for v in graph:
        if v not in index:
            visit(v)
    return found


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    roots = sys.argv[1:] or sorted(glob.glob(os.path.join(here, "..", "crates", "*", "src")))
    bad = 0
    for root in roots:
        graph = edges(modules(root))
        found = circles(graph)
        bad += len(found)
        name = os.path.basename(os.path.dirname(os.path.normpath(root)))
        for component in found:
            names = lambda m: "::".join(m)
            print(f"{name}: import circle: {', '.join(sorted(map(names, component)))}")
            for a in component:
                for b in sorted(graph[a]):
                    if b in component:
                        print(f"    {names(a)} -> {names(b)}")
        print(f"{name}: {len(graph)} modules, {len(found)} import circles")
    sys.exit(1 if bad else 0)


main()
