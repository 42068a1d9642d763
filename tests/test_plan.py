"""One plan per run (composer/plan.py): the recipe is prepared once, and the cost line,
the verdicts' decision, the CLI's preface, a sweep's total and the run all read it."""
import dataclasses

import pytest

from composer.__main__ import main
from composer.facade import Composer, ComposerError
from composer.lift import lift_cost
from composer.plan import LIFT_LEFT_OUT, candidates, cost, make_plan
from composer.recipe import Recipe
from gaussians import GaussianModel

RECIPE = Recipe.from_dict({"model": "gaussians", "operator": "product", "steps": 10, "seed": 1,
                           "num_samples": 6, "sampler": {"name": "hmc"},
                           "concepts": [{"text": "left"}, {"text": "up"}]})


@pytest.fixture
def composer():
    composer = Composer("cpu")
    composer._models["gaussians"] = GaussianModel()
    return composer


def test_a_run_prepares_its_recipe_once(composer, monkeypatch):
    """Following one run: the facade used to fill and check the recipe three times
    (deciding the verdicts, checking it, and again in the sampler)."""
    filled = []
    fill = Recipe.with_defaults
    monkeypatch.setattr(Recipe, "with_defaults", lambda self, d: filled.append(1) or fill(self, d))
    result = composer.render(RECIPE)
    assert len(filled) == 1
    assert result.plan == make_plan(RECIPE, composer.model("gaussians"))
    assert result.recipe == result.plan.recipe


def test_the_plan_prices_the_sampling_and_the_verdicts(composer):
    model = composer.model("gaussians")
    planned = composer.plan(RECIPE)
    assert planned.recipe == RECIPE.with_defaults(model.defaults)
    assert planned.sampling == cost(planned.recipe, model)
    assert planned.judged and planned.judging == lift_cost(planned.recipe) > 0   # the default
    assert planned.total == planned.sampling + planned.judging
    assert composer.plan(RECIPE, lift=False).judging == 0
    four = composer.plan(dataclasses.replace(RECIPE, best_of=4), lift=False)
    assert four.judged and four.judging == lift_cost(candidates(four.recipe))     # N chooses by it


def test_default_verdicts_give_way_to_the_budget_and_asked_ones_do_not(composer):
    model = composer.model("gaussians")
    sampling = composer.plan(RECIPE, lift=False).sampling
    model.max_evaluations = sampling + 1               # room for the samples, not the verdicts
    planned = composer.plan(RECIPE)
    assert not planned.judged and planned.judging == 0 and LIFT_LEFT_OUT in planned.notes
    assert composer.render(RECIPE).lift == ()
    with pytest.raises(ComposerError, match="plus the lift verdicts"):
        composer.plan(RECIPE, lift=True)
    model.max_evaluations = sampling - 1
    with pytest.raises(ComposerError, match=rf"needs {sampling:,} network evaluations"):
        composer.plan(RECIPE)


def test_the_cli_says_the_plans_price_before_it_runs(tmp_path, capsys):
    path = tmp_path / "recipe.json"
    path.write_text(Recipe.from_dict({"model": "toy2d-energy", "operator": "product", "steps": 4,
                                      "num_samples": 50, "sampler": "hmc",
                                      "concepts": [{"text": "ring"}, {"text": "bar"}]}).to_json())
    assert main(["render", str(path), "--out", str(tmp_path / "out")]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    planned = Composer("cpu").plan(Recipe.from_json(path.read_text()))
    assert first == (f"render: {planned.sampling:,} network evaluations; "
                     f"a run may use {planned.budget:,}")
