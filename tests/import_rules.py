"""The import rules of docs/architecture.md, checked on source text (AST), so nothing is imported to check.

* the core (`harness`) never imports a plugin;
* the shared layer (`harness_plugins.shared`) imports only the core and itself;
* a plugin family (`harness_plugins.methods`, `.datasets`, `.metrics`, `.executors`) imports the core,
  the shared layer and itself, never a sibling family;
* no import circle, counting imports inside functions too (a lazy import hides a circle, it does not
  remove it).
"""

from __future__ import annotations

import ast
from pathlib import Path

PLUGINS = "harness_plugins"
SHARED = f"{PLUGINS}.shared"


def modules(packages: dict[str, Path]) -> dict[str, Path]:
    """Dotted module name → file, for each top-level package name → its folder."""
    found = {}
    for package, folder in packages.items():
        for path in sorted(folder.rglob("*.py")):
            parts = [package, *path.relative_to(folder).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Known modules that ``name`` imports anywhere in its file (relative imports resolved)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            # `from package import module` names a module; `from module import name` names the module
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # `import a.b.c` where only a.b is ours
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def graph(packages: dict[str, Path]) -> dict[str, set[str]]:
    known = modules(packages)
    return {name: imports(name, path, known) for name, path in known.items()}


def room(module: str) -> str:
    """``harness`` (core), ``harness_plugins.shared`` or the family ``harness_plugins.<family>``."""
    if not module.startswith(PLUGINS + "."):
        return module.split(".")[0]
    return ".".join(module.split(".")[:2])


def forbidden(edges: dict[str, set[str]]) -> list[str]:
    """``importer -> imported`` for every import that crosses a rule, sorted."""
    bad = []
    for importer, targets in edges.items():
        own = room(importer)
        for target in targets:
            other = room(target)
            if other in (own, "harness") or other == SHARED and own != "harness":
                continue
            if own == "harness":
                bad.append(f"{importer} -> {target} (the core imports a plugin)")
            elif own == SHARED:
                bad.append(f"{importer} -> {target} (the shared layer imports a family)")
            else:
                bad.append(f"{importer} -> {target} (a family imports its sibling {other})")
    return sorted(bad)


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return sorted(found)
