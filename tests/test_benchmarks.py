"""Benchmarks at a toy size: each runs end to end and writes what its docs quote."""
from __future__ import annotations

import json

import pytest


@pytest.mark.slow
def test_the_methods_benchmark_runs_every_part_at_a_tiny_size(tmp_path):
    from benchmarks.methods import main
    out = tmp_path / "methods.json"
    report = main(["--tiny", "--out", str(out)])
    parts = {cell["part"] for cell in report["cells"]}
    assert parts == {"toy2d", "shapes", "ito", "cost", "or_bias"}
    assert json.loads(out.read_text())["cells"] == report["cells"]
    smc = [c for c in report["cells"] if c["part"] == "toy2d" and c["method"] == "SMC K=4"]
    assert smc and all(c["evaluations"] == 4 * 100 for c in smc)   # K x steps calls per sample
