#!/usr/bin/env python3
"""Checks the layering of src/: no import circle between source files (SeaORM's
paired relations excepted) and no layer importing one above it.

Layers, top to bottom: main → startup → {api, ws, guard, access_log, routes} →
state → auth → service → {storage, outbox, events, entity, domain, …}.
An import is a `use crate::…`/`use super::…` path, a `crate::…` or `super::…`
path in code, or a parent module naming a child's item (`child::Item`).
Run from the project root; exits 1 listing what is wrong.
"""
import os
import re
import sys

ROOT = "src"
# SeaORM relations name each other by design.
ALLOWED_CIRCLES = [{"entity::channel", "entity::channel_member"}]
# Modules (and their children) that the lower layers must never import.
HTTP_LAYER = {"startup", "state", "api", "ws", "guard", "access_log", "routes", "auth", "ui"}
LOW_LAYERS = ("service", "storage", "outbox", "events", "entity", "domain", "photo_metadata", "config", "metrics",
              "ratelimit", "wire", "error")


def modules():
    found = {}
    for folder, _, names in os.walk(ROOT):
        for name in names:
            if not name.endswith(".rs"):
                continue
            path = os.path.join(folder, name)
            module = os.path.relpath(path, ROOT)[:-3].replace("/", "::")
            if module.endswith("::mod"):
                module = module[: -len("::mod")]
            found["" if module in ("lib", "main") else module] = path
    return found


def code_of(path):
    text = open(path, encoding="utf-8").read()
    tests = text.find("#[cfg(test)]\nmod tests")
    if tests >= 0:
        text = text[:tests]
    return re.sub(r"//[^\n]*", "", text)


def expand(prefix, body):
    """`a::{b, c::{d}}` → [[a, b], [a, c, d]]."""
    body = body.strip()
    if body.startswith("{") and body.endswith("}"):
        items, depth, current = [], 0, ""
        for ch in body[1:-1]:
            depth += ch == "{"
            depth -= ch == "}"
            if ch == "," and depth == 0:
                items.append(current)
                current = ""
            else:
                current += ch
        items.append(current)
        return [path for item in items if item.strip() for path in expand(prefix, item)]
    brace = body.find("::{")
    if brace >= 0:
        return expand(prefix + body[:brace].split("::"), body[brace + 2:])
    return [prefix + [part.strip() for part in body.split("::")]]


def imports(found):
    def resolve(parts):
        parts = [p.split(" as ")[0].strip() for p in parts if p and p.strip() not in ("self", "*")]
        for end in range(len(parts), 0, -1):
            name = "::".join(parts[:end])
            if name in found:
                return name
        return None

    edges = {}
    for module, path in found.items():
        code, parent, targets = code_of(path), module.split("::")[:-1], set()
        for m in re.finditer(r"\buse\s+(crate|super)::([^;]+);", code, re.S):
            for parts in expand([], m.group(2)):
                targets.add(resolve(parts if m.group(1) == "crate" else parent + parts))
        for m in re.finditer(r"\bcrate::((?:\w+::)*\w+)", code):
            targets.add(resolve(m.group(1).split("::")))
        for m in re.finditer(r"\bsuper::((?:\w+::)*\w+)", code):
            targets.add(resolve(parent + m.group(1).split("::")))
        declarations_removed = re.sub(r"\bmod\s+\w+\s*;", "", code)
        depth = module.count("::") + 1 if module else 0
        for child in (c for c in found if c != module and c.count("::") == depth and
                      (not module or c.startswith(module + "::"))):
            name = child.split("::")[-1]
            for m in re.finditer(r"(?<![:\w])" + name + r"::((?:\w+::)*\w+|\{)", declarations_removed):
                targets.add(child if m.group(1) == "{" else resolve([child] + m.group(1).split("::")))
        edges[module] = {t for t in targets if t is not None and t != module}
    return edges


def circles(edges):
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(component)

    sys.setrecursionlimit(10_000)
    for v in edges:
        if v not in index:
            visit(v)
    return found


def main():
    edges = imports(modules())
    problems = []
    for component in circles(edges):
        if component not in ALLOWED_CIRCLES:
            lines = [f"  {m or 'lib'} → {', '.join(sorted(t for t in edges[m] if t in component))}"
                     for m in sorted(component)]
            problems.append("import circle:\n" + "\n".join(lines))
    for module, targets in sorted(edges.items()):
        if module.split("::")[0] in LOW_LAYERS:
            for target in sorted(targets):
                if target.split("::")[0] in HTTP_LAYER:
                    problems.append(f"{module} imports {target}, a layer above it")
    if problems:
        print("\n".join(problems))
        return 1
    print(f"layering: {len(edges)} source files, no import circle, no upward import")
    return 0


if __name__ == "__main__":
    sys.exit(main())
