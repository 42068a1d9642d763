"""The import graph has no cycle and no upward arrow (docs/architecture.md)."""
from __future__ import annotations

import runpy
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_no_import_cycle_and_no_upward_arrow(capsys):
    check = runpy.run_path(str(ROOT / "scripts" / "import_graph.py"))["main"]
    status = check([str(ROOT)])
    assert status == 0, capsys.readouterr().out


def _functions(tree):
    import ast
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node, node.end_lineno - node.lineno + 1


def test_functions_read_in_one_sitting():
    """No function in composer/ or ui/ over 60 lines, and no event handler (a method of
    a ui `...Events` class) over 40."""
    import ast
    long, handlers = [], []
    for path in [*(ROOT / "composer").rglob("*.py"), *(ROOT / "ui").rglob("*.py")]:
        tree = ast.parse(path.read_text())
        long += [f"{path.relative_to(ROOT)}:{f.lineno} {f.name} ({n})"
                 for f, n in _functions(tree) if n > 60]
        for cls in (c for c in ast.walk(tree) if isinstance(c, ast.ClassDef)
                    and c.name.endswith("Events")):
            handlers += [f"{path.relative_to(ROOT)}:{f.lineno} {cls.name}.{f.name} ({n})"
                         for f, n in _functions(cls) if n > 40]
    assert not long, f"over 60 lines: {long}"
    assert not handlers, f"handlers over 40 lines: {handlers}"
