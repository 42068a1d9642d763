"""Lift verdicts (composer/lift.py) against exact log-density ratios, the exact shapes
model on clean renders, the tiny Stable Diffusion end to end, and best-of-n picks."""
from __future__ import annotations

import math
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from composer.engine import generate
from composer.lift import (DRAWS, LEVEL_FRACTIONS, Lift, best_of, lift_cost, lift_of_texts, measure_lift,
                           timesteps, verdicts)
from composer.models import load_model
from composer.recipe import Concept, Recipe
from composer.shapes import data
from gaussians import GAUSSIANS, GaussianModel


def gaussian_log_density(name: str, x: torch.Tensor) -> torch.Tensor:
    mean, std = GAUSSIANS[name]
    return (-((x - torch.tensor(mean)) ** 2).sum(1) / (2 * std ** 2)
            - math.log(2 * math.pi * std ** 2))


# Points near each Gaussian's mean, between them and far out.
CLEAR_POINTS = torch.tensor([[-1.0, 0.0], [1.0, 0.0], [-1.2, 0.2], [1.1, -0.1],
                             [0.0, 1.3], [2.5, 2.5], [0.0, -1.5]])


def test_sign_matches_the_exact_log_density_ratio():
    recipe = Recipe(model="gaussians", concepts=tuple(Concept(n) for n in ("left", "right", "up")))
    result = measure_lift(GaussianModel(), recipe, CLEAR_POINTS)
    truth = torch.stack([gaussian_log_density(n, CLEAR_POINTS) - gaussian_log_density("", CLEAR_POINTS)
                         for n in result.texts], dim=1)
    clear = truth.abs() > 1                            # |log ratio| > 1 nat
    assert clear.sum() >= 15
    assert torch.equal(result.values[clear] > 0, truth[clear] > 0), (result.values, truth)
    assert torch.equal(result.holds, result.values > 0)


def test_not_rows_hold_when_the_lift_is_not_positive():
    recipe = Recipe(model="gaussians", concepts=(Concept("left"), Concept("right", negate=True)))
    result = measure_lift(GaussianModel(), recipe, CLEAR_POINTS[:2])      # (-1, 0) and (1, 0)
    assert result.negated == (False, True)
    assert result.holds.tolist() == [[True, True], [False, False]]
    assert torch.equal(result.margins, result.values * torch.tensor([1.0, -1.0], dtype=torch.float64))


def test_empty_caption_lifts_to_exactly_zero():
    values = lift_of_texts(GaussianModel(), ("", "left", ""), CLEAR_POINTS, seed=3)
    assert (values[:, 0] == 0).all() and (values[:, 2] == 0).all()
    assert (values[:, 1] != 0).all()


def test_deterministic_for_a_seed_and_independent_of_the_batch():
    model = GaussianModel()
    recipe = Recipe(model="gaussians", concepts=(Concept("left"), Concept("up")), seed=5)
    whole = measure_lift(model, recipe, CLEAR_POINTS).values
    assert torch.equal(whole, measure_lift(model, recipe, CLEAR_POINTS).values)
    one_by_one = torch.cat([measure_lift(model, recipe, x[None]).values for x in CLEAR_POINTS])
    assert torch.allclose(whole, one_by_one, rtol=1e-6, atol=1e-9)
    chunked = measure_lift(model, recipe, CLEAR_POINTS, max_rows=3).values    # one point per call
    assert torch.allclose(whole, chunked, rtol=1e-6, atol=1e-9)
    other_seed = measure_lift(model, Recipe(model="gaussians", concepts=recipe.concepts, seed=6), CLEAR_POINTS)
    assert not torch.equal(whole, other_seed.values)


def test_cost_is_counted_up_front_and_one_call_answers_every_row():
    model = GaussianModel()
    recipe = Recipe(model="gaussians", concepts=(Concept("left"), Concept("up", negate=True),
                                                 Concept("left", weight=2.0),
                                                 Concept("right", muted=True)), num_samples=7)
    result = measure_lift(model, recipe, CLEAR_POINTS)
    # Rows: left, NOT up, left again (answered once); plus "": 3 texts per point.
    assert result.texts == ("left", "up", "left")
    assert result.evaluations == lift_cost(recipe) == len(LEVEL_FRACTIONS) * DRAWS * 3 * 7
    assert torch.equal(result.values[:, 0], result.values[:, 2])
    assert model.calls == len(LEVEL_FRACTIONS) * DRAWS
    assert timesteps(model) == tuple(round(f * 99) for f in LEVEL_FRACTIONS)


def test_bad_samples_are_named():
    recipe = Recipe(model="gaussians", concepts=(Concept("left"),))
    with pytest.raises(ValueError, match=r"x0: must be \[B, 2\].*got \[4, 3\]"):
        measure_lift(GaussianModel(), recipe, torch.zeros(4, 3))
    with pytest.raises(ValueError, match="max_rows: must be at least 1, got 0"):
        measure_lift(GaussianModel(), recipe, torch.zeros(4, 2), max_rows=0)


def render_scene(objects: list[tuple[str, str, int]]) -> torch.Tensor:
    """One clean render [1, 3, 32, 32] of (colour, shape, cell) objects, centred in their cells."""
    present = torch.zeros(1, data.MAX_OBJECTS, dtype=torch.bool)
    colour, shape, cell = (torch.zeros(1, data.MAX_OBJECTS, dtype=torch.long) for _ in range(3))
    for k, (colour_name, shape_name, where) in enumerate(objects):
        present[0, k] = True
        colour[0, k] = list(data.COLOURS).index(colour_name)
        shape[0, k] = data.SHAPES.index(shape_name)
        cell[0, k] = where
    cx, cy = (cell % 3 + 0.5).float() * data.CELL, (cell // 3 + 0.5).float() * data.CELL
    half = torch.full((1, data.MAX_OBJECTS), data.HALVES[2])
    return data.render(data.Scenes(present, colour, shape, cell, cx, cy, half))


def test_exact_shapes_lift_a_red_circle_scene_for_its_caption_only():
    model = load_model("shapes-exact", "cpu")
    scenes = torch.cat([render_scene([("red", "circle", 4)]),
                        render_scene([("red", "circle", 0), ("blue", "square", 8)])])
    concepts = (Concept("red circle"), Concept("green triangle"), Concept("red square"),
                Concept("yellow", negate=True), Concept("red", negate=True))
    result = measure_lift(model, Recipe(model="shapes-exact", concepts=concepts), scenes)
    assert (result.values[:, 0] > 0).all(), result.values       # "red circle" holds
    assert (result.values[:, 1:3] < 0).all(), result.values     # captions it does not satisfy
    assert result.holds[:, 3].all()                              # NOT yellow holds
    assert not result.holds[0, 4]                                # NOT red fails on a lone red circle


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory):
    from composer.models.tiny_sd import save_tiny_sd
    threads = torch.get_num_threads()
    torch.set_num_threads(1)            # the tiny UNet gains nothing from threads
    yield load_model(save_tiny_sd(tmp_path_factory.mktemp("sd") / "tiny"), "cpu")
    torch.set_num_threads(threads)


def test_tiny_stable_diffusion_runs_the_lift_on_latents(tiny_sd):
    recipe = Recipe(model="tiny", concepts=(Concept("a red cube"), Concept("blue", negate=True)),
                    steps=2, seed=4, num_samples=2)
    latents = generate(recipe, tiny_sd).x_t
    calls = tiny_sd.unet_calls
    result = measure_lift(tiny_sd, recipe, latents)
    assert tiny_sd.unet_calls - calls == len(LEVEL_FRACTIONS) * DRAWS    # every row in one call
    assert result.values.shape == result.holds.shape == (2, 2)
    assert torch.isfinite(result.values).all() and (result.values != 0).all()
    assert result.evaluations == lift_cost(recipe) == len(LEVEL_FRACTIONS) * DRAWS * 3 * 2
    assert torch.equal(result.values, measure_lift(tiny_sd, recipe, latents).values)


def judged(margins, holds=None, negated=(False, True), any_row=False) -> Lift:
    """A Lift with these margins (lift for AND rows, -lift for NOT rows)."""
    sign = torch.tensor([-1.0 if n else 1.0 for n in negated], dtype=torch.float64)
    margins = torch.as_tensor(margins, dtype=torch.float64)
    return Lift(margins * sign, margins > 0 if holds is None else holds,
                tuple(f"row{i}" for i in range(len(negated))), negated, 0, any_row)


def test_best_of_takes_the_holding_candidate_with_the_widest_margin():
    # Two outputs of four candidates; rows: an AND row, then a NOT row (margin = -lift).
    margins = [[-0.1, 5.0], [0.2, 0.3], [1.0, 0.5], [-3.0, 9.0],
               [-0.5, 1.0], [-0.1, 2.0], [-2.0, 3.0], [1.0, -0.3]]
    assert best_of(judged(margins), 4).tolist() == [2, 5]     # holds with 0.5; least-failing -0.1
    assert best_of(judged(margins), 1).tolist() == list(range(8))


def test_best_of_prefers_a_holding_candidate_on_a_tied_margin():
    # Both smallest margins are 0: a NOT row at lift 0 holds, an AND row at lift 0 does not.
    holds = torch.tensor([[False, True], [True, True]])
    assert best_of(judged([[0.0, 1.0], [1.0, 0.0]], holds), 2).tolist() == [1]


def test_an_or_is_satisfied_by_one_positive_row_and_chosen_by_it():
    """Two positive rows: under AND a candidate needs both, under OR either one (the
    mixture's verdict was read as AND: 0 of 8 held on a correct OR result)."""
    margins = [[2.0, -1.0], [0.3, 0.2], [-0.5, -0.1], [-3.0, 4.0]]
    both = judged(margins, negated=(False, False))
    either = judged(margins, negated=(False, False), any_row=True)
    assert both.satisfied.tolist() == [False, True, False, False]
    assert either.satisfied.tolist() == [True, True, False, True]
    assert best_of(both, 4).tolist() == [1]
    assert best_of(either, 4).tolist() == [3]                 # the widest winning row: 4.0
    # A NOT row still has to hold under OR.
    with_not = judged([[2.0, 1.0, -0.5], [0.1, 0.1, 0.2]], negated=(False, False, True),
                      any_row=True)
    assert with_not.satisfied.tolist() == [False, True]


def test_lift_verdicts_follow_the_operator():
    candidates = torch.tensor([[-1.0, 0.0], [1.0, 0.0]])       # one in "left", one in "right"
    rows = (Concept("left"), Concept("right"))
    for operator, expected in (("product", [False, False]), ("mixture", [True, True]),
                               ("superdiff_or", [True, True]), ("superdiff_and", [False, False])):
        recipe = Recipe(model="gaussians", concepts=rows, operator=operator)
        result = measure_lift(GaussianModel(), recipe, candidates)
        assert [v["holds"] for v in verdicts(result, recipe)] == expected, operator


def test_best_of_on_real_lifts_keeps_the_point_in_the_concept():
    candidates = torch.tensor([[2.5, 2.5], [1.0, 0.0], [-1.0, 0.0], [0.0, -1.5]])
    recipe = Recipe(model="gaussians", concepts=(Concept("left"), Concept("right", negate=True)))
    result = measure_lift(GaussianModel(), recipe, candidates)
    assert best_of(result, 4).tolist() == [2]


def test_best_of_names_bad_groups():
    margins = torch.zeros(6, 2)
    with pytest.raises(ValueError, match="n: 6 candidates do not split into groups of 4"):
        best_of(judged(margins), 4)
    with pytest.raises(ValueError, match="n: must be a whole number of candidates >= 1, got 0"):
        best_of(judged(margins), 0)
    with pytest.raises(ValueError, match=r"result: must judge \[B, rows\] with rows >= 1, got \[6, 0\]"):
        best_of(judged(torch.zeros(6, 0), negated=()), 2)
