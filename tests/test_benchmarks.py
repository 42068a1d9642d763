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


@pytest.mark.slow
@pytest.mark.browser
def test_the_first_frame_benchmark_times_a_first_and_a_later_visit(tmp_path, chromium):
    from benchmarks.first_frame import main
    out = tmp_path / "first_frame.json"
    report = main(["--model", "toy2d-energy", "--visits", "2", "--out", str(out)], browser=chromium)
    assert json.loads(out.read_text()) == report
    for seen in (report["first_visit"], *report["later_visits"]):
        assert 0 < seen["page_loaded_ms"] and 0 < seen["first_frame_ms"] <= seen["done_ms"]


@pytest.mark.slow
def test_the_landing_lift_benchmark_splits_the_lift_by_level(tmp_path):
    from benchmarks.lift_landing import main
    report = main(["--seeds", "1", "--steps", "4", "--samples", "2", "--out", str(tmp_path / "l.json")])
    assert len(report["samples"]) == 2 * 3                      # samples x rows
    assert report["largest_gap_mean_minus_lift"] < 1e-3         # the levels add up to the lift
    assert all(len(s["exact_ratio_per_level"]) == 5 for s in report["samples"])
