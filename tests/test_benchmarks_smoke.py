"""Every remaining benchmark at a tiny size: it runs end to end and writes the JSON its docs quote."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _as_json(report: dict) -> dict:
    """The report as its JSON file holds it (tuples become lists)."""
    return json.loads(json.dumps(report))


def _finite(*values) -> bool:
    return all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)


@pytest.mark.slow
def test_the_budget_benchmark_prices_every_built_in_model(tmp_path):
    from benchmarks.budget import EXAMPLES, main
    out = tmp_path / "budget.json"
    report = main(["--steps", "2", "--out", str(out)])
    assert json.loads(out.read_text()) == _as_json(report)
    assert [r["model"] for r in report["models"]] == list(EXAMPLES)
    for row in report["models"]:
        assert row["evaluations"] > 0 and row["budget"] > 0
        assert _finite(row["us_per_evaluation"], row["budget_seconds"])


@pytest.mark.slow
def test_the_lift_benchmark_scores_shapes_and_the_2d_lab(tmp_path):
    from benchmarks.lift import SETUPS, main
    out = tmp_path / "lift.json"
    report = main(["--models", "shapes-exact", "--tasks", "and1", "--n", "2", "--candidates", "2",
                   "--toy2d-models", "toy2d-energy", "--points", "16", "--out", str(out)])
    assert json.loads(out.read_text()) == _as_json(report)
    [cell] = report["shapes"]
    assert cell["samples"] == 2 * 2 and 0 <= cell["agreement"] <= 1
    assert cell["best_of_evaluations"] == 2 * (cell["run_evaluations"] + cell["lift_evaluations"])
    assert {c["points"] for c in report["toy2d"]} == {"uniform", *SETUPS}
    assert all(c["n"] == 16 for c in report["toy2d"] if c["points"] == "uniform")
    assert all(0 <= c["agrees_with_support"] <= 1 for c in report["toy2d"])


@pytest.mark.slow
def test_the_load_benchmark_measures_latency_and_memory_against_the_app(tmp_path):
    from benchmarks.load import main
    out = tmp_path / "load.json"
    report = main(["--parts", "latency,memory", "--sessions", "1", "--runs", "1", "--out", str(out)])
    assert json.loads(out.read_text()) == _as_json(report)
    assert _finite(*report["latency"].values()) and report["latency"]["alone_p50_s"] > 0
    memory = report["memory"]
    assert memory["sessions"] == 1 and memory["runs_per_session"] == 1
    assert memory["samples"][0]["sessions"] == 0 and memory["samples"][0]["rss_mb"] > 0


@pytest.mark.slow
def test_the_maps_benchmark_times_every_case_with_maps_off_and_on(tmp_path):
    from benchmarks.maps import CASES, main
    out = tmp_path / "maps.json"
    report = main(["--repeats", "1", "--steps", "2", "--out", str(out)])
    assert json.loads(out.read_text()) == _as_json(report)
    assert [c["case"] for c in report["cases"]] == list(CASES)
    assert all(_finite(c["ms_per_step_off"], c["ms_per_step_on"], c["on_over_off"])
               and c["ms_per_step_off"] > 0 for c in report["cases"])


def test_the_methods_tables_render_every_part_of_the_shipped_report():
    from benchmarks.methods_tables import tables
    cells = json.loads((ROOT / "benchmarks/results/methods.json").read_text())["cells"]
    text = tables(cells)
    for title in ("2D lab", "Shapes, strict judge", "Ito density estimates against exact",
                  "Cost on a tiny random Stable Diffusion", "Where the OR's share goes wrong"):
        assert f"#### {title}\n" in text
    toy2d = text.split("#### 2D lab\n\n")[1].split("\n\n")[0].splitlines()
    assert len(toy2d) == 2 + len({(c["model"], c["method"]) for c in cells if c["part"] == "toy2d"})


@pytest.mark.slow
def test_the_ablation_benchmark_trains_an_arm_briefly_and_scores_it(tmp_path, monkeypatch):
    from benchmarks.shapes_ablation import EVAL_SET, main
    monkeypatch.setattr("benchmarks.shapes_ablation.ROOT", tmp_path)   # checkpoints: tmp/runs/
    out = tmp_path / "ablation.json"
    report = main(["--minutes", "0.05", "--runs", "noisy", "--horizon", "100", "--n", "1",
                   "--out", str(out)])
    assert json.loads(out.read_text()) == _as_json(report)
    [row] = report["runs"]
    assert row["run"] == "noisy" and row["steps"] > 0 and _finite(row["held_out_loss"])
    assert all(0 <= row[f"{family} {task}"]["strict"] <= 1 for family, task in EVAL_SET)
    assert (tmp_path / "runs/ablation/noisy/export/config.json").is_file()
    assert report["table"].count("\n| noisy |") == 1


@pytest.mark.slow
def test_the_default_seed_benchmark_judges_a_recipe_over_seeds(tmp_path):
    from benchmarks.shapes_default import main
    out = tmp_path / "default.json"
    report = main([str(ROOT / "assets/recipes/shapes_not.json"), "--seeds", "2",
                   "--model", "shapes-exact", "--out", str(out)])
    assert json.loads(out.read_text()) == _as_json(report)
    assert [r["seed"] for r in report["per_seed"]] == [0, 1]
    assert report["model"] == "shapes-exact" and 0 <= report["median_correct"] <= 1
    assert set(report["median_seeds"]) <= {0, 1} and report["median_seeds"]


@pytest.mark.slow
def test_the_shapes_eval_benchmark_fills_one_cell_per_sampler(tmp_path):
    out = tmp_path / "shapes.json"
    subprocess.run([sys.executable, "-m", "benchmarks.shapes_eval", "--models", "shapes-exact",
                    "--n", "2", "--samples", "1", "--n-mcmc", "1", "--samples-mcmc", "1",
                    "--steps", "3", "--families", "placed", "--tasks", "and1",
                    "--samplers", "ddim,hmc", "--gallery", "0", "--gallery-dir", "",
                    "--doc", "", "--out", str(out)],
                   cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"}, check=True,
                   capture_output=True)
    report = json.loads(out.read_text())
    cells = [r for r in report["results"] if r["model"] == "shapes-exact"]
    assert [(r["sampler"], r["samples"]) for r in cells] == [("ddim", 2), ("hmc", 1)]
    assert all(0 <= r["accuracy"] <= r["caption_accuracy"] <= 1 for r in cells)
    assert "| `shapes-exact` | placed | AND1 |" in report["table"]


@pytest.mark.slow
def test_the_select_benchmark_scores_the_shipped_checkpoint(tmp_path):
    from benchmarks.shapes_select import SELECTION, main
    out = tmp_path / "select.json"
    folder = str(ROOT / "assets/shapes")
    result = main(["--folders", folder, "--scales", "3", "--clip", "off", "--n", "1",
                   "--samples", "1", "--out", str(out)])
    assert json.loads(out.read_text())["rows"] == result["rows"]
    [row] = result["rows"]
    assert row["folder"] == folder and row["scale"] == 3.0 and row["step"] > 0
    assert all(0 <= row[f"{family} {task}"] <= 1 for family, task in SELECTION)
    assert result["best"] == row


@pytest.mark.slow
def test_the_speed_benchmark_times_both_shapes_models(tmp_path):
    from benchmarks.shapes_speed import main
    out = tmp_path / "speed.json"
    report = main(["--repeats", "1", "--steps", "2", "--out", str(out)])
    assert json.loads(out.read_text()) == _as_json(report)
    assert set(report["models"]) == {"shapes", "shapes-exact"} and report["steps"] == 2
    assert all(len(m["runs"]) == 1 and m["median_s"] > 0 for m in report["models"].values())
    assert _finite(report["exact_over_learned"])


@pytest.mark.slow
def test_the_2d_lab_benchmark_runs_the_default_product(tmp_path):
    from benchmarks.toy2d import main
    from benchmarks.toy2d_tables import markdown_default_product
    out = tmp_path / "toy2d_product.json"
    report = main(["--part", "product", "--seeds", "1", "--out", str(out)])
    assert json.loads(out.read_text()) == _as_json(report)
    default = report["default_product"]
    assert [r["seed"] for r in default["runs"]] == [0]
    assert 0 <= default["support_min"] <= 1 and _finite(default["seconds_min"])
    assert "| 0 |" in markdown_default_product(default)


def test_the_2d_lab_tables_render_the_shipped_report():
    from benchmarks.toy2d_tables import markdown, markdown_extra
    report = json.loads((ROOT / "benchmarks/results/toy2d.json").read_text())
    assert markdown(report).count("\n") == 1 + len(report["runs"])
    extra = markdown_extra(report)
    assert "Negation choice" in extra and "Default product run" in extra
    assert all(f"| {t['measure']} |" in extra for t in report["targets"])
