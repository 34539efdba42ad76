"""The import rules of docs/ARCHITECTURE.md, measured from the code: no circles, no upward import.

Every import of the package (at the top of a module, inside a function, or for type checking
only) is an arrow from one module to another. Modules are grouped into units (a subpackage, or
one helper module at the top) and units into layers; an arrow may only point to a lower layer,
or stay inside its unit. The few arrows that cross within a layer are named in `CROSSINGS`, each
with the reason it is allowed, so a new one fails here with the two modules' names.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import teleport_sync

PACKAGE = Path(teleport_sync.__file__).parent
ROOT = "teleport_sync"

# Lower number = lower layer. A unit is a subpackage or a top-level module.
LAYERS: dict[str, int] = {
    # helpers: pure, import nothing of ours
    "teleport_sync": 0,  # the package face: the version
    "timestamps": 0,
    "limits": 0,
    "models": 0,
    "retry": 0,
    "logging": 0,
    "config": 0,
    "private": 0,
    "commands": 0,
    "children": 0,
    # adapters: the API, what a file is, the journal
    "api": 1,
    "inputs": 1,
    "journal": 1,
    # behaviour
    "engine": 2,
    "watch": 2,
    "preflight": 2,
    "results": 2,
    "events": 2,
    "status": 2,
    "control": 2,
    # wiring
    "daemon": 3,
    "web": 3,
    # commands and the process
    "cli": 4,
    "entry": 5,
    "__main__": 6,
}
# A separate world: the local Teleport API imports nothing of the client side.
ISOLATED = {"emulator"}
# Imports that cross between units of one layer, allowed by name (importer, imported): why.
CROSSINGS: dict[tuple[str, str], str] = {
    ("teleport_sync.config", "teleport_sync.limits"): "settings validate `bwlimit` by its parser",
    ("teleport_sync.control.holds", "teleport_sync.watch.lostjournal"): (
        "one `approve` releases budget holds and lost-journal holds"
    ),
    ("teleport_sync.status.report", "teleport_sync.control.holds"): (
        "status shows the hold and pause reasons as control words them"
    ),
    ("teleport_sync.daemon.root", "teleport_sync.web.server"): (
        "the composition root starts the console (imported only when [web] listen is set)"
    ),
}


def _module_name(path: Path) -> str:
    parts = [ROOT, *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _package_of(module: str, path: Path) -> str:
    return module if path.name == "__init__.py" else module.rsplit(".", 1)[0]


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(path: Path, module: str, known: set[str]) -> Iterator[str]:
    """Every module of ours that `path` imports, wherever the import statement stands."""
    package = _package_of(module, path)
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # `from pkg import submodule` imports the submodule.
            targets = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in known]
            targets = targets or [target]
        else:
            continue
        for target in targets:
            if target == ROOT or target.startswith(ROOT + "."):
                yield target


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        graph[module] = {t for t in _imports(path, module, known) if t in known and t != module}
    return graph


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ROOT


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = counter
                counter += 1
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph[child]))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return found


def test_the_graph_is_read_from_the_whole_package() -> None:
    graph = _graph()
    assert len(graph) > 80
    assert "teleport_sync.api.client" in graph["teleport_sync.engine.parts"] or any(
        t.startswith("teleport_sync.api") for t in graph["teleport_sync.engine.parts"]
    )


def test_no_import_circles() -> None:
    assert _circles(_graph()) == []


def test_every_unit_has_a_layer() -> None:
    units = {_unit(m) for m in _graph()}
    assert units - set(LAYERS) - ISOLATED == set()


def test_imports_point_down_the_layers() -> None:
    wrong = []
    for importer, targets in sorted(_graph().items()):
        for target in sorted(targets):
            a, b = _unit(importer), _unit(target)
            if a == b or (importer, target) in CROSSINGS:
                continue
            if a in ISOLATED or b in ISOLATED:
                if a in ISOLATED and b != ROOT:
                    wrong.append(f"{importer} -> {target}: the emulator imports nothing of ours")
                continue
            if LAYERS[b] >= LAYERS[a]:
                how = "upward" if LAYERS[b] > LAYERS[a] else "across its layer"
                wrong.append(
                    f"{importer} -> {target}: imports {how} ({a} {LAYERS[a]}, {b} {LAYERS[b]})"
                )
    assert wrong == []


def test_every_named_crossing_is_still_there() -> None:
    graph = _graph()
    assert [pair for pair in CROSSINGS if pair[1] not in graph.get(pair[0], set())] == []


def test_every_subpackage_says_what_it_owns() -> None:
    missing = []
    for init in sorted(PACKAGE.glob("*/__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))) or ""
        if len(doc.split()) < 12 or "import" not in doc.lower():
            missing.append(init.parent.name)
    assert missing == []
