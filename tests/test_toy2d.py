"""The 2D lab: shipped weights, the adapter contract, ground truth and metrics."""
import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from composer.engine import generate
from composer.models import ModelError, load_model, pictures_of
from composer.models.toy2d import Toy2DModel
from composer.recipe import Concept, Recipe, RecipeError, SamplerSpec
from composer.toy2d.data import COMPONENTS, CONCEPTS, SETUPS
from composer.toy2d.lab import (ground_truth, mmd, mmd2, scatter_image, setup_of,
                                support_fraction)

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ("product", "mixture", "negation")


@pytest.fixture(scope="module")
def score_model():
    return load_model("toy2d-score", "cpu")


@pytest.fixture(scope="module")
def energy_model():
    return load_model("toy2d-energy", "cpu")


def shipped(name: str) -> Recipe:
    return Recipe.from_json((ROOT / "assets" / "recipes" / f"{name}.json").read_text())


def test_shipped_weights_load_offline(score_model, energy_model):
    assert isinstance(score_model, Toy2DModel) and isinstance(energy_model, Toy2DModel)
    assert (score_model.has_energy, energy_model.has_energy) == (False, True)
    assert score_model.concept_choices == CONCEPTS == (
        "ring", "bar", "left_bar", "right_bar", "big_box", "small_box")
    assert score_model.sample_shape == (2,) and score_model.family == "toy2d"
    assert set(score_model.defaults) >= {"scale", "steps", "mcmc_steps", "step_size",
                                         "leapfrog_steps", "damping", "line_points"}


@pytest.mark.parametrize("variant", ["score", "energy"])
def test_predict_shapes_and_batching(variant, score_model, energy_model):
    model = {"score": score_model, "energy": energy_model}[variant]
    x = torch.randn(7, 2, generator=torch.Generator().manual_seed(0))
    texts = ("", "ring", "bar")
    eps, energy = model.predict(x, 40, 0.6, model.encode(texts), with_energy=model.has_energy)
    assert eps.shape == (3, 7, 2) and not eps.requires_grad
    if model.has_energy:
        assert energy.shape == (3, 7) and not energy.requires_grad
    else:
        assert energy is None
    for row, text in enumerate(texts):       # one batched call == one call per row
        alone, alone_energy = model.predict(x, 40, 0.6, model.encode((text,)),
                                            with_energy=model.has_energy)
        torch.testing.assert_close(eps[row], alone[0], rtol=1e-4, atol=1e-5)
        if model.has_energy:
            torch.testing.assert_close(energy[row], alone_energy[0], rtol=1e-4, atol=1e-5)
    assert model.encode(texts) is model.encode(texts)      # cached


def test_score_model_has_no_energy(score_model):
    with pytest.raises(ModelError, match="no energies"):
        score_model.predict(torch.zeros(2, 2), 10, 0.9, score_model.encode(("ring",)),
                            with_energy=True)


def test_energy_gradient_matches_eps():
    """eps = sigma_t * grad_x U, checked by central differences in float64."""
    model = Toy2DModel("energy")
    model.net.double()
    model.dtype = torch.float64
    x = torch.randn(5, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 0.6
    abar, cond, delta = 0.7, model.encode(("ring", "small_box")), 1e-5
    sigma = math.sqrt(1 - abar)
    eps, _ = model.predict(x, 30, abar, cond, with_energy=True)
    for axis in range(2):
        step = torch.zeros_like(x)
        step[:, axis] = delta
        up = model.predict(x + step, 30, abar, cond, with_energy=True)[1]
        down = model.predict(x - step, 30, abar, cond, with_energy=True)[1]
        numeric = sigma * (up - down) / (2 * delta)
        torch.testing.assert_close(numeric, eps[..., axis], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", list(COMPONENTS) + list(SETUPS))
def test_ground_truth_samples_lie_in_support(name):
    target = COMPONENTS.get(name) or SETUPS[name]
    x = target.sample(2000, torch.Generator().manual_seed(3))
    assert x.shape == (2000, 2)
    # Uniforms are inside by construction; Gaussians hold 98.9% within 3 std.
    assert support_fraction(x, name) >= (0.97 if name in ("ring", "product") else 1.0)


def test_product_ground_truth_is_the_two_modes_in_the_bar():
    x = SETUPS["product"].sample(4000, torch.Generator().manual_seed(0))
    assert x[:, 0].abs().max() < 0.2
    assert ((x[:, 1] - 0.5).abs() < 0.15).float().mean() == pytest.approx(0.5, abs=0.03)
    assert ((x[:, 1] + 0.5).abs() < 0.15).float().mean() == pytest.approx(0.5, abs=0.03)


def test_mmd_separates_distributions():
    g = torch.Generator().manual_seed(5)
    a, b = SETUPS["mixture"].sample(800, g), SETUPS["mixture"].sample(800, g)
    assert abs(mmd2(a, b)) < 0.005
    assert mmd2(a, SETUPS["product"].sample(800, g)) > 0.1
    assert mmd2(a, SETUPS["negation"].sample(800, g)) > 0.02
    assert mmd(a.numpy(), a.numpy()) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("name", RECIPES)
def test_shipped_recipes_are_the_known_setups(name):
    recipe = shipped(name)
    assert recipe.model == "toy2d-energy" and recipe.sampler.name == "hmc"
    assert recipe.num_samples == 1000
    assert setup_of(recipe) == name
    assert ground_truth(recipe, 50).shape == (50, 2)


def test_unknown_setups_have_no_ground_truth():
    ring_and_bar = shipped("product")
    assert ground_truth(dataclasses.replace(ring_and_bar, operator="and")) is None
    assert ground_truth(dataclasses.replace(ring_and_bar, scale=2.0)) is None
    other = dataclasses.replace(ring_and_bar, concepts=(Concept("ring"), Concept("big_box")))
    assert ground_truth(other) is None


def test_unknown_concept_lists_valid_ones(score_model):
    with pytest.raises(ModelError) as err:
        score_model.encode(("circle",))
    for name in CONCEPTS:
        assert name in str(err.value)
    recipe = dataclasses.replace(shipped("product"), concepts=(Concept("circle"),))
    with pytest.raises(RecipeError, match=r"concepts\[0\]\.text.*ring, bar"):
        generate(recipe, score_model)


def _short(name: str, **changes) -> Recipe:
    return dataclasses.replace(shipped(name), steps=4, num_samples=64, **changes)


def test_fixed_seed_run_is_deterministic(energy_model):
    recipe = _short("product", seed=7)
    first, second = generate(recipe, energy_model), generate(recipe, energy_model)
    torch.testing.assert_close(first.x_t, second.x_t, rtol=0, atol=0)
    other = generate(dataclasses.replace(recipe, seed=8), energy_model)
    assert not torch.equal(first.x_t, other.x_t)


@pytest.mark.parametrize("name", RECIPES)
def test_shipped_recipe_renders(name, energy_model):
    record = generate(_short(name), energy_model)
    assert record.x_t.shape == (64, 2) and torch.isfinite(record.x_t).all()
    assert record.acceptance is not None and 0.0 <= record.acceptance <= 1.0
    image = pictures_of(energy_model).preview(record.x0)
    assert image.dtype == np.uint8 and image.shape == (256, 256, 3)
    assert pictures_of(energy_model).points(record.x_t).shape == (64, 2)


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "ula", "hmc"])
def test_the_product_stays_finite_on_all_100_levels(sampler, energy_model):
    """The top level has alpha-bar 2e-4: before x0 was clipped to the data's [-1, 1]^2, the
    product's composed eps was amplified ~30x there and every sampler diverged at steps 100."""
    recipe = dataclasses.replace(shipped("product"), steps=100, num_samples=200,
                                 sampler=dataclasses.replace(shipped("product").sampler,
                                                             name=sampler, mcmc_steps=1))
    x = generate(recipe, energy_model).x_t
    assert torch.isfinite(x).all() and x.abs().max() < 2
    assert support_fraction(x, "product") > 0.4      # reverse diffusion alone reaches ~0.5-0.6


def test_score_model_runs_the_and_operator(score_model):
    recipe = _short("product", model="toy2d-score", operator="and",
                    sampler=SamplerSpec(name="ddim"))
    assert generate(recipe, score_model).x_t.shape == (64, 2)


def test_mixture_on_score_model_is_refused(score_model):
    with pytest.raises(RecipeError, match="mixture needs an energy"):
        generate(_short("mixture", model="toy2d-score"), score_model)


def test_scatter_image_shades_the_support():
    image = scatter_image(np.zeros((0, 2)), "negation", size=64)
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8
    centre, ring = image[26, 26], image[26, 17]        # small box (excluded) vs big box
    assert tuple(centre) == (255, 255, 255) and tuple(ring) != (255, 255, 255)
    dots = scatter_image(np.array([[0.0, 0.5]]), size=64)
    assert (dots[:, :, 2] > dots[:, :, 0]).any()       # a blue dot


def test_negation_scores_flag_known_failures():
    """Noise over the plane, and a run that leaks out of the big box, are caught by
    the in-the-hole / outside shares and refused by the benchmark's choice rule."""
    from benchmarks.toy2d import choose_negation
    g = torch.Generator().manual_seed(0)
    noise = torch.rand(20000, 2, generator=g) * 2.5 - 1.25       # uniform on [-1.25, 1.25]^2
    assert support_fraction(noise, "small_box") == pytest.approx(0.36 / 6.25, abs=0.01)
    assert 1 - support_fraction(noise, "big_box") == pytest.approx(1 - 1.96 / 6.25, abs=0.01)
    assert support_fraction(noise, "negation") < 0.3
    exact = SETUPS["negation"].sample(5000, g)
    assert support_fraction(exact, "small_box") == 0 and support_fraction(exact, "big_box") == 1
    leaky = {"form": "ratio", "beta": 1.0, "sampler": "hmc", "mmd": 0.01, "mmd2": 0.0001,
             "in_hole": 0.0, "outside_big_box": 0.7}
    unemptied = {**leaky, "form": "and", "in_hole": 0.09, "outside_big_box": 0.0}
    honest = {**leaky, "form": "bounded", "mmd": 0.04, "mmd2": 0.0016, "outside_big_box": 0.001}
    choice = choose_negation([leaky, unemptied, honest])
    assert choice["form"] == "bounded" and choice["qualified"] == 1
