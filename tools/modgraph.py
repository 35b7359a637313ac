#!/usr/bin/env python3
"""The graph of rtmpd's top-level modules, and a check that it has no cycle (`make lint` runs it).

Every `crate::X` path in src/**/*.rs (a `use`, a path in code, a `use crate::{X::.., Y}` group,
and a `super::..::X` that climbs to the crate root) is an edge from the file's top-level module
to X; src/main.rs is the node `main` and its `rtmpd::X` paths count the same way. Comments and
string literals are skipped. Tests count too: a module whose tests need another one depends on
it (a cycle through test code fails too), but the listing names apart what only `#[cfg(test)]`
code imports. Prints one line per module with its layer and what it imports (leaves first), then
exits 1 naming every cycle, or 0.

    python3 tools/modgraph.py [SRC_DIR]     # default: src/ next to this file's folder
"""

import os
import re
import sys


def strip(text):
    """Text with comments and string/char literals blanked (newlines kept)."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    if text[i] == "\n":
                        out.append("\n")
                    i += 1
        elif (c == "r" or c == "b") and re.match(r'(br|r)#*"', text[i:i + 260]) and (
            i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")
        ):
            m = re.match(r'(br|r)(#*)"', text[i:])
            end = '"' + m.group(2)
            j = text.find(end, i + m.end())
            j = n if j < 0 else j + len(end)
            out.append('""' + "\n" * text.count("\n", i, j))
            i = j
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append('""' + "\n" * text.count("\n", i, j))
            i = j + 1
        elif c == "'":
            # A char literal ('a', '\n', '\u{..}', '"') or a lifetime ('a): only the former is skipped.
            m = re.match(r"'(\\u\{[0-9a-fA-F]+\}|\\.|[^\\'])'", text[i:])
            if m:
                out.append("' '")
                i += m.end()
            else:
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def group_heads(body):
    """The first name of each item of a `{a::b, c, d::{e, f}}` group body (without the braces)."""
    heads, depth, item = [], 0, []
    for ch in body + ",":
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if ch == "," and depth == 0:
            m = re.match(r"\s*([A-Za-z_][A-Za-z0-9_]*)", "".join(item))
            if m:
                heads.append(m.group(1))
            item = []
        else:
            item.append(ch)
    return heads


def refs(code, root):
    """(X, offset) of every `root::X` and `root::{X.., ..}` in stripped code."""
    names = []
    for m in re.finditer(r"\b" + root + r"\s*::\s*(\{|[A-Za-z_][A-Za-z0-9_]*)", code):
        if m.group(1) != "{":
            names.append((m.group(1), m.start()))
            continue
        depth, j = 1, m.end()
        while j < len(code) and depth:
            depth += {"{": 1, "}": -1}.get(code[j], 0)
            j += 1
        names.extend((h, m.start()) for h in group_heads(code[m.end():j - 1]))
    return names


def file_depth(src, path):
    """How deep the file's module is: src/a.rs and src/a/mod.rs are 1, src/a/b.rs is 2."""
    parts = os.path.relpath(path, src).replace(os.sep, "/").split("/")
    return len(parts) - (1 if parts[-1] == "mod.rs" else 0)


def super_refs(code, depth):
    """Names X of `super::...::X` paths that climb to the crate root (inline `mod m { .. }`
    blocks count as one level each)."""
    opens = [m.end() for m in re.finditer(r"\bmod\s+[A-Za-z_][A-Za-z0-9_]*\s*\{", code)]
    names = []
    for m in re.finditer(r"\b((?:super\s*::\s*)+)([A-Za-z_][A-Za-z0-9_]*)", code):
        inline = 0
        for o in opens:
            if o <= m.start():
                level, j = 1, o
                while j < m.start() and level:
                    level += {"{": 1, "}": -1}.get(code[j], 0)
                    j += 1
                inline += 1 if level else 0
        if m.group(1).count("super") == depth + inline:
            names.append((m.group(2), m.start()))
    return names


TEST_MOD = re.compile(
    r"#\s*\[\s*cfg\s*\((?:\s*all\s*\()?\s*test\b[^\]]*\]\s*(?:#\s*\[[^\]]*\]\s*)*"
    r"(?:pub(?:\s*\([^)]*\))?\s+)?mod\s+([A-Za-z_][A-Za-z0-9_]*)\s*([;{])"
)


TEST_PATH_MOD = re.compile(
    r"#\s*\[\s*cfg\s*\((?:\s*all\s*\()?\s*test\b[^\]]*\]\s*(?:#\s*\[[^\]]*\]\s*)*?"
    r"#\s*\[\s*path\s*=\s*\"([^\"]+)\"\s*\]\s*(?:#\s*\[[^\]]*\]\s*)*"
    r"(?:pub(?:\s*\([^)]*\))?\s+)?mod\s+[A-Za-z_][A-Za-z0-9_]*\s*;"
)


def test_path_files(raw, path):
    """The files of `#[cfg(test)] #[path = "f.rs"] mod m;` (relative to the file's folder)."""
    base = os.path.dirname(path)
    return [os.path.join(base, m.group(1))[:-3] for m in TEST_PATH_MOD.finditer(raw)]


def test_parts(code, path):
    """The offset ranges of `#[cfg(test)] mod m { .. }` blocks, and the files of the
    `#[cfg(test)] mod m;` declarations (their whole subtree is test code too)."""
    ranges, files = [], []
    base = os.path.dirname(path)
    stem = os.path.basename(path)[:-3]
    child_dir = base if stem in ("mod", "lib", "main") else os.path.join(base, stem)
    for m in TEST_MOD.finditer(code):
        if m.group(2) == "{":
            level, j = 1, m.end()
            while j < len(code) and level:
                level += {"{": 1, "}": -1}.get(code[j], 0)
                j += 1
            ranges.append((m.start(), j))
        else:
            files.append(os.path.join(child_dir, m.group(1)))
    return ranges, files


def top_module(src, path):
    rel = os.path.relpath(path, src).replace(os.sep, "/")
    if rel == "main.rs":
        return "main"
    if rel == "lib.rs":
        return None
    head = rel.split("/")[0]
    return head[:-3] if head.endswith(".rs") else head


def graph(src):
    modules = set()
    for entry in os.listdir(src):
        full = os.path.join(src, entry)
        if os.path.isdir(full) or (entry.endswith(".rs") and entry != "lib.rs"):
            modules.add(top_module(src, full))
    # edges[a][b]: True while every path from a to b is in test code.
    edges = {m: {} for m in modules}
    paths = sorted(
        os.path.join(d, f) for d, _, fs in os.walk(src) for f in fs if f.endswith(".rs")
    )
    codes, test_files = {}, []
    for path in paths:
        with open(path, encoding="utf-8") as fh:
            raw = fh.read()
        codes[path] = strip(raw)
        test_files += test_parts(codes[path], path)[1] + test_path_files(raw, path)

    def test_file(path):
        return any(path == t + ".rs" or path.startswith(t + os.sep) for t in test_files)

    for path in paths:
        me = top_module(src, path)
        if me is None:
            continue
        code = codes[path]
        ranges = test_parts(code, path)[0]
        names = refs(code, "rtmpd" if me == "main" else "crate")
        if me != "main":
            names += super_refs(code, file_depth(src, path))
        whole_test = test_file(path) or me == "testutil"
        for name, at in names:
            if name in modules and name != me:
                in_test = whole_test or any(a <= at < b for a, b in ranges)
                edges[me][name] = edges[me].get(name, True) and in_test
    return edges


def cycles(edges):
    """Tarjan's strongly connected components of more than one module."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def layers(edges):
    """Each module's layer: 0 for a leaf, else one more than the highest module it imports."""
    level = {}

    def depth(v, seen):
        if v in level:
            return level[v]
        if v in seen:
            return 0
        seen.add(v)
        d = 1 + max((depth(w, seen) for w in edges[v]), default=-1)
        seen.discard(v)
        level[v] = d
        return d

    for v in edges:
        depth(v, set())
    return level


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "src")
    edges = graph(src)
    level = layers(edges)
    for v in sorted(edges, key=lambda v: (level[v], v)):
        code = ", ".join(sorted(w for w, t in edges[v].items() if not t)) or "(nothing)"
        tests = sorted(w for w, t in edges[v].items() if t)
        print(f"{level[v]:2} {v:8} -> {code}" + (f"; tests only: {', '.join(tests)}" if tests else ""))
    found = cycles(edges)
    sys.stdout.flush()
    for comp in found:
        inner = [f"{v} -> {w}" for v in comp for w in sorted(edges[v]) if w in comp]
        print(f"modgraph: cycle among {', '.join(comp)}: {'; '.join(inner)}", file=sys.stderr)
    if found:
        return 1
    print("modgraph: no cycle between top-level modules")
    return 0


if __name__ == "__main__":
    sys.exit(main())
