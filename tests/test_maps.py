"""Density and conflict maps (composer.maps) against analytic cases."""
from __future__ import annotations

import math

import pytest
import torch

from composer.engine import Control, composed_density, generate, sample
from composer.maps import conflict_map, density_map, grid_points, integrate_score
from composer.operators import make_rule
from composer.recipe import Concept, Recipe, RecipeError, SamplerSpec
from gaussians import GAUSSIANS, GaussianModel

EXTENT = 4.0   # wide enough that the window holds all but ~1e-6 of the mass


class Plane(GaussianModel):
    plane = EXTENT


def product_pdf(points: torch.Tensor, abar: float) -> torch.Tensor:
    """left x right at noise level abar, normalised: a Gaussian in closed form."""
    sigma2 = 1 - abar
    precision, weighted = 0.0, torch.zeros(2, dtype=torch.float64)
    for name in ("left", "right"):
        mean, std = GAUSSIANS[name]
        var = abar * std ** 2 + sigma2
        precision += 1 / var
        weighted += math.sqrt(abar) * torch.tensor(mean, dtype=torch.float64) / var
    mu, var = weighted / precision, 1 / precision
    return torch.exp(-((points - mu) ** 2).sum(1) / (2 * var)) / (2 * math.pi * var)


@pytest.mark.parametrize("energy", [True, False])
def test_the_density_map_is_the_normalised_product(energy):
    """Energies give it exactly; a score model by integrating the score on the grid."""
    abar = 0.6
    rule = make_rule((Concept("left"), Concept("right")), "product", 1.0)
    points = grid_points(EXTENT)
    evaluation = composed_density(Plane(energy), rule, rule.texts, 50, abar, energy,
                                  Control())(points.float())
    maps = density_map(evaluation, rule, EXTENT).double()
    cell = (2 * EXTENT / 64) ** 2
    truth = product_pdf(points, abar).reshape(64, 64)
    assert truth.sum() * cell == pytest.approx(1, abs=1e-3)          # the window holds it all
    assert maps[0].sum() * cell == pytest.approx(1, abs=1e-4)
    assert (maps[0] - truth).abs().max() < 0.02 * truth.max()
    left = GAUSSIANS["left"]
    var = abar * left[1] ** 2 + 1 - abar
    left_pdf = torch.exp(-((points - math.sqrt(abar) * torch.tensor(left[0], dtype=torch.float64))
                           ** 2).sum(1) / (2 * var)) / (2 * math.pi * var)
    assert (maps[1] - left_pdf.reshape(64, 64)).abs().max() < 0.02 * left_pdf.max()


def test_scores_of_narrow_modes_integrate_to_mass_in_the_right_place():
    """Two modes of std 0.03 (the ring's) on the lab's 64-cell grid, as at the last
    levels, and in the margin (x < -1), where a network never saw data at this noise
    level, a score that is no gradient: noise of std 30. The map keeps each mode's
    half of the mass where it is. (Integrating along one path carried the margin's
    errors into whole rows: balanced on 1 of 20 noise seeds, against 20 of 20 now.)"""
    extent, std = 1.25, 0.03
    means = torch.tensor([[0.0, 0.5], [0.0, -0.5]], dtype=torch.float64)
    points = grid_points(extent)
    offsets = points[:, None] - means[None]                          # [cells, modes, 2]
    distance2 = (offsets ** 2).sum(-1)
    responsibility = torch.softmax(-distance2 / (2 * std ** 2), dim=1)
    score = -(responsibility[..., None] * offsets).sum(1) / std ** 2
    margin = points[:, 0] < -1
    score[margin] += 30 * torch.randn(int(margin.sum()), 2, dtype=torch.float64,
                                      generator=torch.Generator().manual_seed(0))
    log_p = integrate_score(score, extent, 64).reshape(-1)
    mass = torch.exp(log_p - log_p.max())
    mass = mass / mass.sum()
    near = distance2 <= 0.1 ** 2                                     # within ~2.5 cells
    assert float(mass[near.any(1)].sum()) > 0.95
    for mode in range(2):
        assert 0.4 < float(mass[near[:, mode]].sum()) < 0.6


def test_the_maps_grid_counts_toward_the_budget(monkeypatch):
    """Every row is evaluated at each of the 64x64 grid points every step, and that
    counts toward the model's budget (here scaled down to 1M evaluations)."""
    from composer.plan import cost, prepare
    from composer.models import load_model
    model = load_model("toy2d-energy", "cpu")
    recipe = Recipe(model="toy2d-energy", concepts=(Concept("ring"), Concept("bar")),
                    operator="and", sampler=SamplerSpec("ddim"), steps=100, num_samples=10)
    filled = prepare(recipe, model)
    assert cost(filled, model, maps=True) - cost(filled, model) == 100 * 3 * 64 * 64
    monkeypatch.setenv("COMPOSER_BUDGET_SCALE", "0.1")
    prepare(recipe, model)                                   # 3,000 evaluations
    with pytest.raises(RecipeError, match="plus the density maps' grid"):
        prepare(recipe, model, maps=True)                    # 1,231,800


def test_maps_leave_the_samples_unchanged():
    recipe = Recipe(model="gaussians", concepts=(Concept("left"), Concept("up")),
                    operator="product", sampler=SamplerSpec("hmc", mcmc_steps=1),
                    steps=8, seed=2, num_samples=64)
    plain = generate(recipe, Plane())
    records = list(sample(recipe, Plane(), maps=True))
    assert torch.equal(records[-1].x_t, plain.x_t)
    assert records[-1].density.shape == (3, 64, 64) and plain.density is None


def directions(pattern: torch.Tensor) -> torch.Tensor:
    """[B=1, C=3, H, W] with the same vector (1, 2, 0) scaled by `pattern` [H, W]."""
    return torch.tensor([1.0, 2.0, 0.0])[None, :, None, None] * pattern[None, None]


def test_the_conflict_map_is_zero_for_agreeing_rows_and_one_where_they_oppose():
    unconditional = torch.randn(1, 3, 8, 8)
    same = unconditional + directions(torch.ones(8, 8))
    agree = conflict_map(torch.stack([same, same]), unconditional, torch.tensor([1.0, 1.0]))
    assert agree.shape == (1, 8, 8) and agree.abs().max() == 0
    sign = torch.ones(8, 8)
    sign[:, :4] = -1                                   # the rows oppose in the left half
    other = unconditional + directions(sign)
    clash = conflict_map(torch.stack([same, other]), unconditional, torch.tensor([1.0, 1.0]))
    assert torch.allclose(clash[0, :, :4], torch.ones(8, 4)) and clash[0, :, 4:].abs().max() == 0


def test_a_not_row_map_shows_where_it_pushes_hardest():
    unconditional = torch.zeros(1, 3, 8, 8)
    push = torch.zeros(8, 8)
    push[2, 3] = 4.0
    push[5, 5] = 1.0
    eps = torch.stack([unconditional + directions(torch.full((8, 8), 0.5)),
                       unconditional + directions(push)])
    heat = conflict_map(eps, unconditional, torch.tensor([1.0, -1.0]))
    assert heat[0, 2, 3] == 1 and heat[0, 5, 5] == pytest.approx(0.25) and heat[0, 0, 0] == 0


def test_shapes_streams_a_conflict_map_under_and_only():
    from composer.facade import Composer
    composer = Composer("cpu")
    recipe = Recipe(model="shapes", concepts=(Concept("a red circle"), Concept("a blue square")),
                    operator="and", sampler=SamplerSpec("ddim"), steps=4, seed=1, num_samples=2)
    frames = composer.render(recipe, maps=True).frames
    assert all(f.map is not None and f.map.dtype.name == "uint8" and f.map.shape[-1] == 3
               for f in frames)
    assert not frames[-1].concept_maps                       # image models: one map
    product = Recipe.from_dict({**recipe.to_dict(), "operator": "product"})
    assert composer.render(product, maps=True).frames[-1].map is None
