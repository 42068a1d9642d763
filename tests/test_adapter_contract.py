"""The contract every model adapter keeps (composer/models/base.py), checked on each.

A new adapter gets every check by adding one line to ADAPTERS: its name, how to
build it, and two concepts it knows.
"""
from __future__ import annotations

import math

import pytest
import torch

from composer.models import BUILTIN_MODELS, load_model
from composer.models.tiny_sd import save_tiny_flux, save_tiny_sd, save_tiny_sd3, save_tiny_sdxl
from composer.plan import cost, prepare
from composer.recipe import RANGES, Concept, Recipe, RecipeError
from composer.samplers import alphas_cumprod
from gaussians import GaussianModel

ADAPTERS = {
    "shapes-exact": (lambda tmp: load_model("shapes-exact", "cpu"), ("red circle", "blue")),
    "shapes": (lambda tmp: load_model("shapes", "cpu"), ("red circle", "blue")),
    "toy2d-score": (lambda tmp: load_model("toy2d-score", "cpu"), ("ring", "bar")),
    "toy2d-energy": (lambda tmp: load_model("toy2d-energy", "cpu"), ("ring", "bar")),
    "tiny-sd": (lambda tmp: load_model(save_tiny_sd(tmp / "tiny-sd"), "cpu"), ("a cat", "a dog")),
    "tiny-sdxl": (lambda tmp: load_model(save_tiny_sdxl(tmp / "tiny-sdxl"), "cpu"), ("a cat", "a dog")),
    "tiny-sd3": (lambda tmp: load_model(save_tiny_sd3(tmp / "tiny-sd3"), "cpu"), ("a cat", "a dog")),
    "tiny-flux": (lambda tmp: load_model(save_tiny_flux(tmp / "tiny-flux"), "cpu"), ("a cat", "a dog")),
    "gaussians": (lambda tmp: GaussianModel(), ("left", "right")),
}
LEVEL = 0.4          # a point of the schedule where every model's outputs are informative


def test_every_built_in_model_is_checked():
    assert set(BUILTIN_MODELS) <= set(ADAPTERS)


@pytest.fixture(scope="module", params=list(ADAPTERS))
def adapter(request, tmp_path_factory):
    build, texts = ADAPTERS[request.param]
    return request.param, build(tmp_path_factory.mktemp(request.param)), texts


def point(model, batch: int = 3, seed: int = 0):
    """x_t [batch, *sample_shape] at LEVEL of the training schedule, its t and abar."""
    abars = alphas_cumprod(model.scheduler_config)
    t = round(LEVEL * (len(abars) - 1))
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((batch, *model.sample_shape), generator=g).to(model.device, model.dtype)
    return x, t, float(abars[t])


def test_outputs_are_one_detached_batch_per_row_in_the_encoded_order(adapter):
    name, model, (a, b) = adapter
    x, t, abar = point(model)
    eps, energy = model.predict(x, t, abar, model.encode(("", a, b)), with_energy=model.has_energy)
    assert eps.shape == (3, 3, *model.sample_shape), name
    assert not eps.requires_grad and torch.isfinite(eps).all()
    if model.has_energy:
        assert energy.shape == (3, 3) and not energy.requires_grad
    else:
        assert energy is None
    # The rows come back in the order they were encoded, each as it is alone.
    swapped, _ = model.predict(x, t, abar, model.encode((b, "", a)))
    torch.testing.assert_close(swapped, eps[[2, 0, 1]], rtol=1e-4, atol=1e-5)
    alone, _ = model.predict(x, t, abar, model.encode(("",)))
    torch.testing.assert_close(alone[0], eps[0], rtol=1e-4, atol=1e-5)
    assert not torch.allclose(eps[1], eps[0])                  # a concept is not ""


def test_predictions_are_deterministic(adapter):
    name, model, (a, b) = adapter
    x, t, abar = point(model)
    cond = model.encode(("", a, b))
    first, _ = model.predict(x, t, abar, cond)
    again, _ = model.predict(x.clone(), t, abar, model.encode(("", a, b)))
    assert torch.equal(first, again), name


def test_a_second_encode_runs_no_network(adapter, monkeypatch):
    """encode is cached: the same rows again cost no network call (a text encoder on SD)."""
    name, model, (a, b) = adapter
    first = model.encode(("", a, b))
    calls = []
    original = torch.nn.Module.__call__
    monkeypatch.setattr(torch.nn.Module, "__call__",
                        lambda self, *args, **kw: calls.append(type(self)) or original(self, *args, **kw))
    again = model.encode(("", a, b))
    assert calls == [], name
    if isinstance(first, torch.Tensor):
        assert torch.equal(first, again)


def test_an_energy_models_eps_is_sigma_times_the_energys_gradient(adapter):
    """eps = sigma_t grad_x U, checked along random directions by central differences
    of U (float64 where the model computes in it)."""
    name, model, (a, _) = adapter
    if not model.has_energy:
        pytest.skip(f"{name} has scores only")
    x, t, abar = point(model, batch=2, seed=1)
    sigma, cond = math.sqrt(1 - abar), model.encode((a,))
    eps, _ = model.predict(x, t, abar, cond, with_energy=True)
    g = torch.Generator().manual_seed(2)
    for _ in range(3):
        v = torch.randn(x.shape, generator=g).to(x.dtype)
        v = v / v.flatten(1).norm(dim=1).view(-1, *[1] * (x.dim() - 1))
        h = 1e-3
        _, up = model.predict(x + h * v, t, abar, cond, with_energy=True)
        _, down = model.predict(x - h * v, t, abar, cond, with_energy=True)
        slope = (up - down)[0].double() / (2 * h)                              # grad U . v
        expected = (eps[0].double() * v.double()).flatten(1).sum(1) / sigma
        torch.testing.assert_close(slope, expected, rtol=2e-2, atol=2e-2 * expected.abs().max().item()), name


def test_its_sample_and_evaluation_limits_are_honoured(adapter):
    name, model, (a, b) = adapter
    recipe = Recipe(model=name, concepts=(Concept(a), Concept(b)), steps=4)
    if model.max_samples < RANGES["num_samples"][1]:          # else the recipe's own cap
        too_many = Recipe.from_dict({**recipe.to_dict(), "num_samples": model.max_samples + 1})
        with pytest.raises(RecipeError, match="num_samples"):
            prepare(too_many, model)
    filled = prepare(recipe, model)
    needed = cost(filled, model)
    model_limit = model.max_evaluations
    try:
        model.max_evaluations = needed - 1
        with pytest.raises(RecipeError, match="cost"):
            prepare(recipe, model)
        model.max_evaluations = needed
        prepare(recipe, model)                                    # exactly at the limit
    finally:
        model.max_evaluations = model_limit


def test_an_out_of_memory_halves_the_chunk_and_gives_the_same_prediction(adapter, monkeypatch):
    """Every Stable Diffusion family: a forced CUDA OOM whenever more than 2 rows go in at
    once splits the call (6 rows -> 3 -> 1 a call) and answers as the unsplit call does."""
    name, model, (a, b) = adapter
    if not hasattr(model, "_run_unet"):
        pytest.skip(f"{name} has no network calls to split")
    real, sizes = model._forward, []

    def forward(latents, timestep, inputs):
        sizes.append(latents.shape[0])
        if latents.shape[0] > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (forced by the test)")
        return real(latents, timestep, inputs)

    x, t, abar = point(model, batch=2)
    cond = model.encode(("", a, b))
    expected, _ = model.predict(x, t, abar, cond)
    monkeypatch.setattr(model, "max_batch", None)
    monkeypatch.setattr(model, "_forward", forward)
    eps, _ = model.predict(x, t, abar, cond)
    assert sizes == [6, 3] + [1] * 6 and model.max_batch == 1, name
    torch.testing.assert_close(eps, expected, rtol=1e-4, atol=1e-5)
