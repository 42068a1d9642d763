"""Runs judged by the model's own lift, and best of N: through the facade and the CLI,
on the exact Gaussian model (tests/gaussians.py)."""
import dataclasses
import json

import numpy as np
import pytest
import torch

from composer.__main__ import main
from composer.facade import Composer, ComposerError
from composer.lift import best_of, measure_lift
from composer.plan import candidates as candidates_of
from composer.recipe import Recipe
from gaussians import GaussianModel

# "left" AND, NOT "right": the samples gather on the left Gaussian.
RECIPE = Recipe.from_dict({"model": "gaussians", "operator": "product", "steps": 20, "seed": 4,
                           "num_samples": 12, "sampler": {"name": "ddim"},
                           "concepts": [{"text": "left"},
                                        {"text": "right", "negate": True, "beta": 0.1}]})


@pytest.fixture
def composer():
    composer = Composer("cpu")
    composer._models["gaussians"] = GaussianModel()
    return composer


def test_a_judged_run_carries_each_samples_verdict_by_the_model(composer):
    result = composer.render(RECIPE)                  # judged: the model's default
    assert len(result.lift) == RECIPE.num_samples
    first = result.lift[0]
    assert [(r["row"], r["text"], r["negate"]) for r in first["rows"]] == [
        (1, "left", False), (2, "right", True)]
    for verdict in result.lift:
        assert verdict["holds"] == all(r["holds"] for r in verdict["rows"])
        for row in verdict["rows"]:
            assert row["holds"] == (row["lift"] <= 0 if row["negate"] else row["lift"] > 0)
    # Samples of left-and-not-right: none is likelier under "right" than unconditionally,
    # and most are likelier under "left" (the estimator's own accuracy: test_lift.py).
    assert all(v["rows"][1]["holds"] for v in result.lift)
    assert np.mean([v["rows"][0]["holds"] for v in result.lift]) >= 2 / 3
    assert composer.render(RECIPE, lift=False).lift == ()


def test_best_of_keeps_each_samples_best_candidate(composer):
    """The kept samples are exactly those best_of picks among the candidates the same
    seed draws, and they hold at least as often as the candidates do."""
    n = 4
    chosen = composer.render(dataclasses.replace(RECIPE, best_of=n))
    assert chosen.points.shape == (RECIPE.num_samples, 2) and len(chosen.lift) == RECIPE.num_samples
    assert chosen.recipe.best_of == n and any("Best of 4" in note for note in chosen.notes)
    assert len(chosen.frames[-1].concepts) == 2

    pool = composer.render(dataclasses.replace(RECIPE, num_samples=RECIPE.num_samples * n),
                           lift=False)
    filled = candidates_of(chosen.recipe)
    candidates = torch.as_tensor(pool.points, dtype=torch.float32)
    judged = measure_lift(composer.model("gaussians"), filled, candidates)
    keep = best_of(judged, n)
    assert np.allclose(chosen.points, pool.points[keep.numpy()])
    assert np.mean([v["holds"] for v in chosen.lift]) >= judged.satisfied.float().mean().item()
    again = composer.render(dataclasses.replace(RECIPE, best_of=n))
    assert np.array_equal(again.points, chosen.points)            # deterministic


def test_best_of_costs_n_runs_and_its_verdicts(composer):
    plain, four = RECIPE, dataclasses.replace(RECIPE, best_of=4)
    assert composer.plan(four).sampling == 4 * composer.plan(plain).sampling
    assert composer.plan(four, lift=False).judging == 4 * composer.plan(plain, lift=True).judging > 0
    assert composer.plan(plain, lift=False).judging == 0
    assert composer.plan(four, lift=False).judged          # best of N chooses by the lift
    model = composer.model("gaussians")
    model.max_samples = 40
    with pytest.raises(ComposerError, match=r"best_of: .* 12 samples x best of 4 candidates is 48; "
                                            r"lower the samples to 10 or fewer, or the best of to 3"):
        composer.render(four)


def test_cli_best_of_and_lift(composer, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("composer.__main__.Composer", lambda device=None: composer)
    path = tmp_path / "recipe.json"
    path.write_text(RECIPE.to_json())
    assert main(["render", str(path), "--out", str(tmp_path / "out"), "--best-of", "2"]) == 0
    written = json.loads((tmp_path / "out" / "recipe.json").read_text())
    verdicts = json.loads((tmp_path / "out" / "lift.json").read_text())
    assert written["best_of"] == 2 and len(verdicts) == RECIPE.num_samples
    assert "by the model (lift):" in capsys.readouterr().out
    assert main(["render", str(path), "--out", str(tmp_path / "off"), "--no-lift"]) == 0
    assert not (tmp_path / "off" / "lift.json").exists()
    assert main(["render", str(path), "--out", str(tmp_path / "bad"), "--best-of", "9"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("error: best_of:") and "8" in error[0]
