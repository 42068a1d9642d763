"""The exact shapes model against brute force, autograd, clean renders and its own statistics."""
from __future__ import annotations

import dataclasses
import itertools
import math

import pytest
import torch

from composer.engine import generate
from composer.models import load_model, scoring_of
from composer.recipe import Concept, Recipe, SamplerSpec
from composer.pictures import to_uint8
from composer.samplers import alphas_cumprod
from composer.shapes import data
from composer.shapes.exact import DTYPE, denoise, make_world, matches, shapes_world
from composer.shapes.judge import look
from composer.shapes.model import SCHEDULER_CONFIG

# A reduced world: a 2x2 grid of 2x2-pixel cells on a 4x4 image, 2 colours, 2 shapes
# with 2 placements each (unequal priors), at most 2 objects.
SIDE, CELLS, COLUMNS = 4, 4, 2
PALETTE = torch.tensor([[0.9, -0.2, 0.1], [-0.5, 0.7, 0.8]], dtype=DTYPE)
BACKGROUND = torch.tensor([-1.0, -0.8, -0.9], dtype=DTYPE)
COUNT_PRIOR = torch.tensor([0.0, 0.4, 0.6], dtype=DTYPE)
SHAPE_PIXELS = {0: [[(0, 0), (0, 1), (1, 0), (1, 1)], [(0, 0)]],       # shape 0: full cell, one pixel
                1: [[(0, 0), (0, 1)], [(1, 0), (1, 1), (0, 1)]]}       # shape 1: a bar, an L
PLACEMENT_PRIOR = torch.tensor([0.3, 0.7], dtype=DTYPE)


def small_world():
    masks = torch.zeros(CELLS, 2, 2, SIDE * SIDE, dtype=DTYPE)
    for cell, shape, placement in itertools.product(range(CELLS), range(2), range(2)):
        top, left = 2 * (cell // COLUMNS), 2 * (cell % COLUMNS)
        for dy, dx in SHAPE_PIXELS[shape][placement]:
            masks[cell, shape, placement, (top + dy) * SIDE + left + dx] = 1.0
    log_prior = PLACEMENT_PRIOR.log().expand(CELLS, 2, 2)
    world = make_world(masks, log_prior, PALETTE, BACKGROUND, COUNT_PRIOR, (3, SIDE, SIDE), COLUMNS)
    return world, masks


def brute_force(masks, x, alpha_bar, slots):
    """Posterior mean and log density by summing over every scene explicitly."""
    root, var = math.sqrt(alpha_bar), 1 - alpha_bar
    flat = x.to(DTYPE).reshape(3, -1)
    caption_match = matches(small_world()[0], torch.tensor(slots))      # [cells, shapes, colours]
    log_terms, log_priors, images = [], [], []
    kinds = list(itertools.product(range(2), range(2), range(2)))          # shape, placement, colour
    for k in (1, 2):
        for cells in itertools.combinations(range(CELLS), k):
            for choice in itertools.product(kinds, repeat=k):
                image = BACKGROUND[:, None].expand(3, SIDE * SIDE).clone()
                log_p = COUNT_PRIOR[k].log() - math.log(math.comb(CELLS, k))
                m = 0
                for cell, (shape, placement, colour) in zip(cells, choice):
                    mask = masks[cell, shape, placement]
                    image = image + mask[None] * (PALETTE[colour] - BACKGROUND)[:, None]
                    log_p = log_p + PLACEMENT_PRIOR[placement].log() - math.log(4)
                    m += int(caption_match[cell, shape, colour])
                if m == 0:
                    continue
                log_p = log_p + math.log(m / k)
                gauss = (-((flat - root * image) ** 2).sum() / (2 * var)
                         - 0.5 * flat.numel() * math.log(2 * math.pi * var))
                log_priors.append(log_p)
                log_terms.append(log_p + gauss)
                images.append(image)
    log_terms, log_priors = torch.stack(log_terms), torch.stack(log_priors)
    weights = torch.softmax(log_terms, 0)
    mean = torch.einsum("n,ncp->cp", weights, torch.stack(images)).reshape(3, SIDE, SIDE)
    return mean, torch.logsumexp(log_terms, 0) - torch.logsumexp(log_priors, 0)


CAPTIONS = {"empty": [-1, -1, -1, -1], "partial": [1, -1, -1, -1], "two kinds": [-1, 1, -1, 0],
            "full": [0, 1, 1, 0], "not-style (a colour)": [0, -1, -1, -1]}


@pytest.mark.parametrize("alpha_bar", [0.999, 0.9, 0.5, 0.05])
def test_dp_matches_brute_force(alpha_bar):
    world, masks = small_world()
    g = torch.Generator().manual_seed(int(alpha_bar * 1000))
    scene = BACKGROUND[:, None].expand(3, SIDE * SIDE) + masks[1, 1, 1][None] * (PALETTE[0] - BACKGROUND)[:, None]
    x = (math.sqrt(alpha_bar) * scene.reshape(1, 3, SIDE, SIDE)
         + math.sqrt(1 - alpha_bar) * torch.randn(1, 3, SIDE, SIDE, generator=g, dtype=DTYPE))
    slots = torch.tensor(list(CAPTIONS.values()))[:, None]
    x0, log_density = denoise(world, x, alpha_bar, slots)
    for row, (name, caption) in enumerate(CAPTIONS.items()):
        mean, log_p = brute_force(masks, x[0], alpha_bar, caption)
        assert torch.allclose(x0[row, 0], mean, atol=1e-6, rtol=0), name
        assert abs(float(log_density[row, 0] - log_p)) < 1e-6, name


def test_score_is_the_gradient_of_the_energy():
    world = shapes_world()
    g = torch.Generator().manual_seed(0)
    clean = data.render(data.sample_scenes(2, g)).to(DTYPE)
    slots = torch.tensor([[-1, -1, -1, -1], [0, 0, -1, -1], [2, -1, 0, -1]])[:, None]
    for alpha_bar in (0.98, 0.6, 0.1):
        x = (math.sqrt(alpha_bar) * clean + math.sqrt(1 - alpha_bar)
             * torch.randn(clean.shape, generator=g, dtype=DTYPE)).requires_grad_(True)
        x0, log_density = denoise(world, x, alpha_bar, slots)
        for row in range(slots.shape[0]):
            grad, = torch.autograd.grad(log_density[row].sum(), x, retain_graph=True)
            tweedie = (math.sqrt(alpha_bar) * x0[row] - x) / (1 - alpha_bar)
            assert torch.allclose(grad, tweedie.detach(), atol=1e-8 / (1 - alpha_bar), rtol=1e-7)


def test_clean_renders_come_back_unchanged():
    model = load_model("shapes-exact", "cpu")
    lowest = float(model_alphas()[0])
    g = torch.Generator().manual_seed(3)
    clean = data.render(data.sample_scenes(8, g))
    slots = model.encode(("", "red", "circle left top"))
    x = math.sqrt(lowest) * clean
    x0, _ = denoise(model.world, x, lowest, slots[:, None])
    assert torch.allclose(x0[0].float(), clean, atol=1e-6)


def model_alphas():
    return alphas_cumprod(SCHEDULER_CONFIG)


def test_not_captions_are_finite_at_the_lowest_noise():
    model = load_model("shapes-exact", "cpu")
    lowest = float(model_alphas()[0])
    g = torch.Generator().manual_seed(4)
    clean = data.render(data.sample_scenes(4, g))
    x = math.sqrt(lowest) * clean + math.sqrt(1 - lowest) * torch.randn(clean.shape, generator=g)
    # "blue" is absent from most of these scenes: its matching channel is e^{-1e6}.
    cond = model.encode(("", "blue circle", "magenta", "yellow triangle right bottom"))
    eps, energy = model.predict(x, 0, lowest, cond, with_energy=True)
    assert torch.isfinite(eps).all() and torch.isfinite(energy).all()


def test_counts_follow_the_formula():
    """One caption at scale 1 samples p(x | c): the number of objects k and of those
    matching the caption m follow p(k, m | c) = p(k) Binom(m; k, 1/6) (m/k) / Z."""
    model = load_model("shapes-exact", "cpu")
    n = 192
    recipe = Recipe(model="shapes-exact", concepts=(Concept("red"),), scale=1.0,
                    sampler=SamplerSpec(name="ddpm"), steps=50, seed=7, num_samples=16)
    found = []
    for seed in range(n // 16):
        record = generate(_with_seed(recipe, seed), model)
        for image in to_uint8(record.x_t):
            objects = look(image).objects
            found.append((len(objects), sum(o.colour == "red" for o in objects)))
    expected = {}
    for k in range(1, 5):
        for m in range(1, k + 1):
            expected[(k, m)] = 0.25 * math.comb(k, m) * (1 / 6) ** m * (5 / 6) ** (k - m) * m / k
    total = sum(expected.values())
    observed_k = [sum(1 for kk, _ in found if kk == k) / n for k in range(1, 5)]
    expected_k = [sum(v for (kk, _), v in expected.items() if kk == k) / total for k in range(1, 5)]
    # Each share is a binomial proportion over n = 192: 4 standard errors is <= 0.125.
    for obs, exp in zip(observed_k, expected_k):
        assert abs(obs - exp) <= 4 * math.sqrt(exp * (1 - exp) / n), (observed_k, expected_k)
    one_match = sum(1 for _, m in found if m == 1) / n
    expected_one = sum(v for (_, m), v in expected.items() if m == 1) / total
    assert abs(one_match - expected_one) <= 4 * math.sqrt(expected_one * (1 - expected_one) / n)


def _with_seed(recipe, seed):
    return dataclasses.replace(recipe, seed=seed)


@pytest.mark.parametrize("operator", ["mixture", "superdiff_or"])
def test_mixture_draws_each_caption_in_its_share(operator):
    """OR on images, by RRR's mixture (exact energies) and by SuperDiff (densities
    tracked from the scores alone): with weights 1 and 3, samples belong to "red circle"
    with probability pi_1 = 1/4. The exact model tells, at the lowest noise level, each
    sample's responsibility pi_1 p_1(x) / p*(x), whose mean under the mixture is exactly
    pi_1."""
    model = load_model("shapes-exact", "cpu")
    recipe = Recipe(model="shapes-exact", concepts=(Concept("red circle"), Concept("blue square", weight=3.0)),
                    operator=operator, scale=1.0, sampler=SamplerSpec(name="ddpm"), steps=50,
                    num_samples=16)
    lowest = float(model_alphas()[0])
    cond = model.encode(("red circle", "blue square"))
    shares = []
    for seed in range(8):
        x = generate(_with_seed(recipe, seed), model).x_t
        _, energy = model.predict(math.sqrt(lowest) * x.clamp(-1, 1), 0, lowest, cond, with_energy=True)
        logits = -energy + torch.tensor([0.25, 0.75], dtype=DTYPE).log()[:, None]
        shares.append(torch.softmax(logits, 0)[0])
    share = float(torch.cat(shares).mean())
    n = 128
    assert abs(share - 0.25) <= 4 * math.sqrt(0.25 * 0.75 / n), share


@pytest.mark.parametrize("operator", ["mixture", "superdiff_or"])
def test_mixture_verdicts_take_either_caption_and_still_refuse_clutter(operator):
    """An OR (RRR's mixture, SuperDiff's OR) holds when one positive caption does; a
    scene with neither, or a cluttered one, is not correct."""
    model = load_model("shapes-exact", "cpu")
    recipe = Recipe(model="shapes-exact", concepts=(Concept("red"), Concept("blue")),
                    operator=operator)
    g = torch.Generator().manual_seed(5)
    scenes = data.sample_scenes(64, g, min_objects=1, max_objects=1)
    images = data.render(scenes)
    colours = [list(data.COLOURS)[int(c)] for c in scenes.colour[:, 0]]
    verdicts = scoring_of(model).verdicts(recipe, images)
    for colour, verdict in zip(colours, verdicts):
        assert verdict["correct"] == (colour in ("red", "blue")), (colour, verdict)
    cluttered = images.clone()
    cluttered[:, :, 0:2, 0:2] = 1.0                  # a 2x2 white fragment in every corner
    cluttered[:, :, 30:32, 0:2] = 1.0
    cluttered[:, :, 0:2, 30:32] = 1.0
    assert not any(v["correct"] for v in scoring_of(model).verdicts(recipe, cluttered))
    anded = dataclasses.replace(recipe, operator="and")
    assert not any(v["correct"] for v in scoring_of(model).verdicts(anded, images))   # AND needs both
