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


def test_the_step_benchmark_times_every_family_at_a_tiny_size(tmp_path):
    from benchmarks.sd_step import FAMILIES, main
    out = tmp_path / "sd_step.json"
    report = main(["--concepts", "1", "2", "--repeats", "1", "--latent", "8", "--out", str(out)])
    assert json.loads(out.read_text()) == report
    assert [f["family"] for f in report["families"]] == list(FAMILIES)
    for family in report["families"]:
        assert [r["rows"] for r in family["results"]] == [2, 3]
        assert all(r["engine_ms"] > 0 and r["batched_ms"] > 0 and r["sequential_ms"] > 0
                   for r in family["results"])


# Parameters of the released networks (their model cards); the benchmark keeps the small
# text encoders, so cross-attention's key and value projections are narrower.
RELEASED_PARAMETERS = {"sdxl": 2.567e9, "sd3": 2.028e9, "flux": 11.9e9}


@pytest.mark.parametrize("family", sorted(RELEASED_PARAMETERS))
def test_the_full_size_networks_are_the_released_sizes(family):
    import torch
    from benchmarks.sd_step import _replace_denoiser
    from composer.models import tiny_sd
    pipe = getattr(tiny_sd, f"tiny_{family}_pipeline")(sample_size=16)
    with torch.device("meta"):                 # shapes only: no memory, no time
        _replace_denoiser(pipe, family, 128)
    net = pipe.unet if family == "sdxl" else pipe.transformer
    count = sum(p.numel() for p in net.parameters())
    assert 0.85 < count / RELEASED_PARAMETERS[family] <= 1.0


@pytest.mark.slow
def test_the_memory_benchmark_measures_a_row_and_fills_the_gpu_table(tmp_path):
    from benchmarks.sd_memory import GPUS, main
    out = tmp_path / "sd_memory.json"
    report = main(["--family", "sd3 without T5", "--size", "8", "--out", str(out)])
    assert json.loads(out.read_text()) == report
    (family,) = report["families"]
    assert family["denoiser_parameters"] == 2_028_328_000 and family["activation_per_row_gib"] > 0
    rows = [family["holds"][gpu]["rows_per_call"] for gpu in GPUS]
    assert rows == sorted(rows) and rows[-1] > 0                # more memory, more rows


@pytest.mark.slow
def test_the_cluster_benchmark_measures_the_pool_beside_one_process(tmp_path):
    ray = pytest.importorskip("ray", reason="the cluster extra is not installed: pip install -e .[cluster]")
    from benchmarks.cluster import main
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    try:
        out = tmp_path / "cluster.json"
        report = main(["--tiny", "--repeats", "1", "--runs", "1", "--out", str(out)])
    finally:
        ray.shutdown()
    assert json.loads(out.read_text()) == report
    assert report["sweep"]["cells"] == 16
    assert [row["samples"] for row in report["overhead"]] == [20, 40]
    assert report["devices"] == {"in_process": "cpu", "engines": ["cpu", "cpu"]}
    assert all(row["ratio"] > 0 for row in report["overhead"])
    assert report["throughput"]["on_pool_runs_per_s"] > 0 and len(report["load_average_before"]) == 3
