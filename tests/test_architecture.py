"""The import graph has no cycle and no upward arrow (docs/architecture.md)."""
from __future__ import annotations

import runpy
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_no_import_cycle_and_no_upward_arrow(capsys):
    check = runpy.run_path(str(ROOT / "scripts" / "import_graph.py"))["main"]
    status = check([str(ROOT)])
    assert status == 0, capsys.readouterr().out
