"""The size limits the project keeps (docs/ARCHITECTURE.md): small functions, small classes.

The emulator is a test double with a server's long tables and is exempt, as is the first
migration, whose length is the schema's text.
"""

from __future__ import annotations

import ast
from pathlib import Path

import teleport_sync

PACKAGE = Path(teleport_sync.__file__).parent
MAX_FUNCTION_LINES = 60
MAX_CLASS_LINES = 300
EXEMPT = {("journal/schema.py", "_migrate_v1")}


def _definitions() -> list[tuple[str, ast.AST]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative.startswith("emulator/"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                found.append((relative, node))
    return found


def test_no_function_over_60_lines_and_no_class_over_300() -> None:
    definitions = _definitions()
    assert len(definitions) > 500  # the walk found the package, not an empty folder
    too_long = []
    for relative, node in definitions:
        assert isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        lines = (node.end_lineno or node.lineno) - node.lineno + 1
        limit = MAX_CLASS_LINES if isinstance(node, ast.ClassDef) else MAX_FUNCTION_LINES
        if lines > limit and (relative, node.name) not in EXEMPT:
            too_long.append(f"{relative}: {node.name} has {lines} lines (limit {limit})")
    assert too_long == []
