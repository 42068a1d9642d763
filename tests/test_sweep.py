"""Sweeps: one recipe over a grid of one or two axes, run cell by cell."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from composer.plan import cost, prepare
from composer.__main__ import main
from composer.facade import Composer
from composer.media import SWEEP_CHUNK, recipe_from_png
from composer.recipe import Concept, Recipe, RecipeError, SamplerSpec
from composer.sweep import MAX_CELLS, Sweep

SHAPES = {"model": "shapes", "concepts": [{"text": "red circle"}, {"text": "blue", "negate": True}],
          "sampler": "ddim", "steps": 3, "seed": 4, "num_samples": 2}
TOY = {"model": "toy2d-energy", "concepts": [{"text": "ring"}, {"text": "bar"}], "operator": "product",
       "sampler": "ddpm", "steps": 4, "seed": 1, "num_samples": 50}


@pytest.fixture(scope="module")
def composer():
    return Composer("cpu")


def test_a_beta_sweep_reproduces_the_individual_runs_bit_for_bit(composer):
    plan = Sweep.from_dict({"recipe": SHAPES, "axes": [{"field": "concepts[1].beta",
                                                        "values": [0, 1.5, 3]}]})
    cells = list(composer.sweep(composer.sweep_plan(plan)))
    assert [c.position for c in cells] == [(0, 0), (1, 0), (2, 0)]
    assert cells[1].labels == ("Row 2 NOT β = 1.5",)
    for cell, beta in zip(cells, (0, 1.5, 3)):
        alone = dict(SHAPES, concepts=[SHAPES["concepts"][0], {"text": "blue", "negate": True, "beta": beta}])
        single = composer.render(Recipe.from_dict(alone))
        assert cell.result.recipe.concepts[1].beta == beta
        assert all(np.array_equal(a, b) for a, b in zip(cell.result.images, single.images))
        assert set(cell.result.metrics) == {"correct", "rows_hold", "clean"}
    assert not np.array_equal(cells[0].result.images[0], cells[2].result.images[0])


def test_cost_is_the_sum_of_the_cells(composer):
    plan = Sweep.from_dict({"recipe": TOY, "axes": [
        {"field": "sampler.name", "values": ["ddpm", "hmc"]},
        {"field": "steps", "range": {"start": 2, "stop": 6, "num": 3}}]})
    assert plan.shape == (2, 3) and plan.axes[1].values == (2.0, 4.0, 6.0)
    model = composer.model("toy2d-energy")
    expected = sum(cost(prepare(r, model), model) for _, r, _ in plan.cells())
    planned = composer.sweep_plan(plan)
    assert planned.total == expected and all(not cell.judged for *_, cell in planned.cells)
    assert [r.steps for _, r, _ in plan.cells()][:3] == [2, 4, 6]


@pytest.mark.parametrize("data,message", [
    ({"recipe": TOY, "axes": []}, "axes: give 1 or 2 axes"),
    ({"recipe": TOY, "axes": [{"field": "model", "values": ["shapes"]}]}, "cannot sweep 'model'"),
    ({"recipe": TOY, "axes": [{"field": "scale", "values": list(range(6))},
                              {"field": "seed", "values": list(range(5))}]}, f"at most {MAX_CELLS}"),
    ({"recipe": TOY, "axes": [{"field": "scale", "values": [1, 99]}]}, r"cell \(2, 1\): scale: must be in"),
    ({"recipe": TOY, "axes": [{"field": "concepts[5].weight", "values": [1]}]}, "has 2 concepts"),
    ({"recipe": TOY, "axes": [{"field": "steps", "range": {"start": 1, "stop": 2, "num": 2.5}}]},
     "num: must be an integer"),
    ({"recipe": TOY, "axes": [{"field": "seed", "values": [1], "range": {}}]}, "either 'values' or 'range'"),
    ({"recipe": TOY, "axes": [{"field": "seed", "values": [1]}, {"field": "seed", "values": [2]}]},
     "same field"),
    ({"recipe": TOY, "axes": [{"field": "seed", "values": [1]}], "extra": 1}, "unknown field 'extra'"),
    ({"recipe": TOY, "axes": [{"field": "seed", "values": [1]}], "version": True}, "sweep version"),
    ([1], "sweep: must be an object"),
])
def test_bad_sweeps_are_recipe_errors_naming_the_problem(data, message):
    with pytest.raises(RecipeError, match=message):
        Sweep.from_dict(data)


def test_a_cell_the_model_refuses_is_named_before_anything_runs(composer):
    from composer.facade import ComposerError
    plan = Sweep.from_dict({"recipe": TOY, "axes": [{"field": "steps", "values": [2, 500]}]})
    with pytest.raises(ComposerError, match=r"axes: cell \(2, 1\): steps"):
        composer.sweep_plan(plan)


def test_cli_sweep_writes_a_grid_that_carries_the_sweep(tmp_path, capsys):
    plan = {"recipe": TOY, "axes": [{"field": "sampler.name", "values": ["ddpm", "ula"]},
                                    {"field": "seed", "values": [1, 2]}]}
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps(plan))
    assert main(["sweep", str(path), "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("sweep: 4 cells, ") and "network evaluations" in printed
    grid = Image.open(tmp_path / "out" / "grid.png")
    assert Sweep.from_json(grid.text[SWEEP_CHUNK]) == Sweep.from_dict(plan)
    cells = json.loads((tmp_path / "out" / "cells.json").read_text())
    assert len(cells) == 4 and "mmd" in cells[0]["metrics"]
    cell = recipe_from_png(tmp_path / "out" / "cell_2_2.png")
    assert cell.sampler.name == "ula" and cell.seed == 2
    again = tmp_path / "again.json"
    again.write_text((tmp_path / "out" / "sweep.json").read_text())
    assert main(["sweep", str(again), "--out", str(tmp_path / "out2")]) == 0
    assert torch.equal(torch.from_numpy(np.asarray(Image.open(tmp_path / "out2" / "grid.png"))),
                       torch.from_numpy(np.asarray(grid)))


def test_the_shipped_sweep_example_is_valid(composer):
    from pathlib import Path
    plan = Sweep.from_json((Path(__file__).resolve().parents[1] / "assets/sweeps/shapes_not_beta.json")
                           .read_text())
    assert plan.shape == (4, 2) and composer.sweep_plan(plan).total > 0


def test_the_sweep_tab_defaults_run_on_every_example(composer):
    """The tab's own defaults ("Row 1 AND weight" over its example range) used to start
    at 0, a cell with every AND weight off, so the default sweep showed "Error"."""
    from ui import state
    for path in state.example_files():
        recipe = Recipe.from_json(path.read_text())
        if recipe.concepts[0].negate:
            continue
        plan = state.build_sweep(recipe, [(state.SWEEP_DEFAULT, state.SWEEP_EXAMPLE), ("none", "")])
        assert composer.sweep_plan(plan).total > 0, path.name


def test_sweep_labels_name_fields_and_samplers_as_the_page_does():
    plan = Sweep.from_dict({"recipe": SHAPES, "axes": [
        {"field": "concepts[1].beta", "values": [0, 1]},
        {"field": "sampler.name", "values": ["uhmc", "ddim"]}]})
    rows, columns = plan.labels()
    assert rows == ["Row 2 NOT β = 0", "Row 2 NOT β = 1"]
    assert columns == ["sampler = U-HMC", "sampler = DDIM"]
    assert not any("concepts[" in label or "uhmc" in label for label in rows + columns)


def test_the_grid_spells_out_the_greek_its_font_lacks():
    """PIL's built-in font has no α or β: 'α (scale) = 1' came out as '▯ (scale) = 1',
    the same picture as a label that is a box."""
    import numpy as np
    from composer.media import labelled_grid
    cell = [((0, 0), np.zeros((8, 8, 3), np.uint8), "")]

    def drawn(label: str) -> np.ndarray:
        return labelled_grid(cell, [label], [""])
    assert not np.array_equal(drawn("α (scale) = 1"), drawn("▯ (scale) = 1"))
    assert np.array_equal(drawn("α (scale) = 1"), drawn("alpha (scale) = 1"))
    assert np.array_equal(drawn("Row 2 NOT β = 0"), drawn("Row 2 NOT beta = 0"))


def test_the_axis_menus_offer_only_what_applies_to_the_recipe():
    """A 3-row recipe was offered rows 4-8 and "NOT β" for AND rows; choosing them only
    gave an error."""
    from ui import state
    recipe = Recipe(model="shapes-exact", concepts=(
        Concept("red circle"), Concept("blue", negate=True), Concept("square", muted=True)),
        sampler=SamplerSpec("ddim"))
    fields = [f for _, f in state.sweep_choices(recipe)]
    assert fields == ["concepts[0].weight", "concepts[1].beta", "scale", "sampler.name",
                      "steps", "seed"]
    mcmc = Recipe.from_dict({**recipe.to_dict(), "sampler": {"name": "hmc"}})
    assert {"sampler.step_size", "sampler.mcmc_steps"} <= {f for _, f in state.sweep_choices(mcmc)}
    every = [f for _, f in state.sweep_choices()]                 # the API's: everything
    assert "concepts[7].beta" in every and "sampler.step_size" in every


@pytest.mark.parametrize("axes, said", [
    ([("concepts[0].weight", "0:2:30"), ("none", "")],
     "Sweep axis 1: the number of values must be an integer from 1 to 25, got 30"),
    ([("concepts[0].weight", "0.5, 1"), ("concepts[0].weight", "1, 2")],
     "The two axes sweep the same field"),
    ([("concepts[0].weight", "0:2:5"), ("seed", "0:5:6")], "30 cells; a sweep has at most 25"),
    ([("concepts[0].weight", "0, 1"), ("none", "")], "Cell (1, 1): "),
])
def test_sweep_errors_are_in_the_pages_words(axes, said):
    """They used the recipe's paths: "axes[0].range.num: must be an integer from 1 to 25"."""
    from ui import state
    recipe = Recipe(model="shapes-exact", concepts=(Concept("red circle"),))
    with pytest.raises(RecipeError) as caught:
        state.build_sweep(recipe, axes)
    assert str(caught.value).startswith(said)
    assert "axes[" not in str(caught.value) and "axes:" not in str(caught.value)
    assert "concepts[" not in str(caught.value)
