"""The package's import graph has no cycle (issue 13: cli/main.py and every subcommand
imported each other; the shared parts now live in cli/args.py), and production code
never imports the pure-Python test reader (ring/pyring.py).

Every import counts, at module level or inside a function: a lazy import in a cycle
is still a cycle for whoever reads the code.
"""

from __future__ import annotations

import ast
from pathlib import Path

import kindlyguard_monitor

PACKAGE = Path(kindlyguard_monitor.__file__).resolve().parent


def _modules() -> dict[str, Path]:
    mods = {}
    for f in PACKAGE.rglob("*.py"):
        parts = f.relative_to(PACKAGE.parent).with_suffix("").parts
        mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return mods


def _imports(name: str, path: Path, mods: dict[str, Path]) -> set[str]:
    """The package's modules that `name` imports (a package's __init__ only when named itself)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                here = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
                up = here.split(".")[: len(here.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
    return {m for m in found if m in mods and m != name}


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    return {name: _imports(name, path, mods) for name, path in mods.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            for w in children:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    component = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        component.append(w)
                        if w == v:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def test_the_finder_sees_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_imports_itself_back():
    graph = _graph()
    assert "kindlyguard_monitor.cli.args" in graph["kindlyguard_monitor.cli.tail"]
    assert _cycles(graph) == []


def test_production_code_does_not_import_the_test_reader():
    graph = _graph()
    users = sorted(m for m, deps in graph.items() if "kindlyguard_monitor.ring.pyring" in deps)
    assert users == []


def test_poll_items_are_imported_from_their_own_module():
    """Batch, ShieldStatus and the other items poll() returns live in transport/items.py;
    nothing takes them through transport/manager.py, which only uses them (issue 13)."""
    items = PACKAGE / "transport" / "items.py"
    defined = {n.name for n in ast.parse(items.read_text(encoding="utf-8")).body
               if isinstance(n, (ast.ClassDef, ast.FunctionDef))}
    assert {"Batch", "ShieldStatus", "TransportUnavailable"} <= defined
    through_manager = []
    for f in [*PACKAGE.rglob("*.py"), *(PACKAGE.parent / "tests").rglob("*.py")]:
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module == "kindlyguard_monitor.transport.manager":
                through_manager += [f"{f.name}: {a.name}" for a in node.names if a.name in defined]
    assert through_manager == []
