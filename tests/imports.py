"""What a source file imports, read from its syntax tree (every import statement, inside functions too),
for the tests that keep layers and rooms apart (tests/workers/test_layers.py, tests/test_producer_imports.py)."""

from __future__ import annotations

import ast
from pathlib import Path


def imported(path: Path) -> set[str]:
    """Every module an import statement in `path` names (for `from a import b`: a and a.b)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def forbidden_imports(paths: list[Path], forbidden: tuple[str, ...], root: Path) -> dict[str, list[str]]:
    """{file: the forbidden modules it imports} for the files that import any (a prefix forbids a package)."""
    out = {}
    for path in sorted(paths):
        bad = sorted(n for n in imported(path) if any(n == f or n.startswith(f + ".") for f in forbidden))
        if bad:
            out[str(path.relative_to(root))] = bad
    return out
