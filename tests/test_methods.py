"""The 2025 methods against cases with known answers: the Ito density estimator
(composer/tracking.py), the Feynman-Kac weights and the smc sampler, SuperDiff's OR and
AND (composer/operators.py), on Gaussians whose every density is closed-form."""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from composer import engine
from composer.operators import OPERATORS, SuperDiffAnd, compose, fk_log_weight, make_rule
from composer.plan import cost, prepare
from composer.recipe import Concept, Recipe, RecipeError, SamplerSpec
from composer.samplers import effective_sample_size, make_scheduler, systematic_resample
from composer.tracking import ito_change
from gaussians import GAUSSIANS, GaussianModel

LINEAR = {"num_train_timesteps": 1000, "beta_schedule": "linear", "clip_sample": False}


@pytest.fixture
def gaussians():
    model = GaussianModel()
    model.max_samples = 100_000
    return model


def run(model, *rows, operator="product", sampler="ddpm", steps=100, samples=2000, seed=3, **knobs):
    recipe = Recipe(model="gaussians", concepts=tuple(rows), operator=operator, scale=1.0,
                    sampler=SamplerSpec(sampler, **knobs), steps=steps, num_samples=samples, seed=seed)
    return list(engine.sample(recipe, model))


def exact_log_ratio(model, x, abar, a: str, b: str) -> torch.Tensor:
    """log q_a(x) - log q_b(x) at one level, from the Gaussians' exact energies."""
    _, energy = model.predict(x, None, abar, (a, b), with_energy=True)
    return energy[1] - energy[0]


def levels(model, sampler: str, steps: int):
    scheduler = make_scheduler(sampler, model.scheduler_config)
    scheduler.set_timesteps(steps)
    return scheduler


# --- the Ito estimator ------------------------------------------------------------

def tracking_errors(model, sampler: str, steps: int) -> tuple[float, float]:
    """Mean |tracked - exact| of log q_left - log q_up over every level, and the exact
    differences' spread, along a product run."""
    model.scheduler_config = LINEAR
    records = run(model, Concept("left"), Concept("up"), sampler=sampler, steps=steps, samples=500)
    scheduler = levels(model, sampler, steps)
    errors, spread = [], []
    for record in records[:-1]:
        k = record.index + 1
        exact = exact_log_ratio(model, record.x_t, engine.alpha_bar(scheduler, k, scheduler.timesteps[k]),
                                "left", "up")
        tracked = record.log_density[0] - record.log_density[1]
        errors.append(float((tracked - exact).abs().mean()))
        spread.append(float(exact.std()))
    return sum(errors) / len(errors), sum(spread) / len(spread)


def test_ito_estimator_follows_the_exact_log_density_differences(gaussians):
    """Two Gaussians of unequal variance: the rows' tracked log q_t(x_t) differences
    match the closed form at every level on DDPM steps, and the error shrinks with
    more steps. A wrong sign or a missing sigma on any term gives errors of the size of
    the differences themselves."""
    error_100, spread = tracking_errors(gaussians, "ddpm", 100)
    error_25, _ = tracking_errors(gaussians, "ddpm", 25)
    assert error_100 < 0.1 * spread, (error_100, spread)
    assert error_100 < error_25


def test_ito_estimator_on_a_deterministic_step_misses_the_laplacian(gaussians):
    """DDIM injects no noise, so the estimate misses -(beta / 2) Laplacian(log q_i),
    which differs between rows of unequal variance: larger error than DDPM's."""
    ddpm, _ = tracking_errors(gaussians, "ddpm", 100)
    ddim, _ = tracking_errors(gaussians, "ddim", 100)
    assert ddim > 2 * ddpm, (ddim, ddpm)


def test_one_ito_step_matches_the_closed_form_change():
    """A single small step of a 1D Gaussian q = N(0, v): the expected change over the
    step's noise equals d/dtau log q along the reverse SDE, which for the VP process is
    <u, s> + div f + <f, s> - (g^2 / 2)|s|^2 with u = -f + g^2 s."""
    v, sigma, beta = 0.6, 0.8, 1e-3
    x = torch.linspace(-2, 2, 9)[:, None].double()
    eps = (sigma * x / v)[None]                         # -sigma * score
    score = -x / v
    drift = 0.5 * beta * x + beta * score               # u dtau, the reverse drift
    change = ito_change(x, x + drift, eps, sigma, beta)[0]
    expected = (drift * score).sum(1) - 0.5 * beta * (1 + (x * score).sum(1) + score.pow(2).sum(1))
    torch.testing.assert_close(change, expected)


# --- Feynman-Kac weights ----------------------------------------------------------

def scores_of(x, texts, abar):
    """Each text's exact score at one level, [rows, B, 2]."""
    out = []
    for text in texts:
        mean, std = GAUSSIANS[text]
        var = abar * std ** 2 + 1 - abar
        out.append(-(x - math.sqrt(abar) * torch.tensor(mean)) / var)
    return torch.stack(out)


def test_fk_weight_of_a_product_of_two_experts_is_g2_times_the_scores_inner_product():
    """FKC's product of experts at beta = 1: dlog w = g^2 <s_1, s_2> dtau."""
    abar, beta = 0.4, 0.02
    sigma = math.sqrt(1 - abar)
    x = torch.randn(50, 2, generator=torch.Generator().manual_seed(0))
    s = scores_of(x, ("left", "up"), abar)
    rule = make_rule((Concept("left"), Concept("up")), "product", 1.0)
    eps = -sigma * s
    composed, _ = compose(rule, eps)
    got = fk_log_weight(rule, eps, composed, sigma, beta)
    torch.testing.assert_close(got, beta * (s[0] * s[1]).sum(1).double(), rtol=1e-5, atol=1e-7)


def test_fk_weight_of_guidance_is_the_cfg_correction():
    """FKC's Prop. 3.1: classifier-free guidance at weight w weighs particles by
    (g^2 / 2) w (w - 1) |s_c - s_u|^2 dtau; "and" with one row at scale w is CFG."""
    abar, beta, w = 0.7, 0.01, 3.0
    sigma = math.sqrt(1 - abar)
    x = torch.randn(50, 2, generator=torch.Generator().manual_seed(1))
    s = scores_of(x, ("", "left"), abar)
    rule = make_rule((Concept("left"),), "and", w)
    eps = -sigma * s
    composed, _ = compose(rule, eps)
    expected = 0.5 * beta * w * (w - 1) * (s[1] - s[0]).pow(2).sum(1)
    torch.testing.assert_close(fk_log_weight(rule, eps, composed, sigma, beta), expected.double(),
                               rtol=1e-5, atol=1e-7)
    plain = make_rule((Concept("left"),), "and", 1.0)     # the conditional model alone: no weight
    assert plain.texts == ("left",)                       # and the empty row is not even asked
    assert fk_log_weight(plain, eps[1:], compose(plain, eps[1:])[0], sigma, beta).abs().max() < 1e-6


def test_fk_weights_refuse_a_rule_that_is_no_product():
    rule = make_rule((Concept("left"), Concept("up")), "mixture", 1.0)
    with pytest.raises(ValueError, match="no Feynman-Kac weight"):
        fk_log_weight(rule, torch.zeros(2, 3, 2), torch.zeros(3, 2), 0.5, 0.01)


def test_systematic_resampling_keeps_heavy_particles_in_proportion():
    log_w = torch.tensor([[0.0, math.log(3.0), -math.inf, 0.0]]).repeat(2000, 1)
    picked = systematic_resample(log_w, torch.Generator().manual_seed(0))
    counts = torch.stack([(picked == k).sum(1) for k in range(4)], 1)
    assert (counts[:, 2] == 0).all()
    # Systematic: each particle gets floor or ceil of K * its weight (here 0.8, 2.4, 0.8).
    assert set(counts[:, 1].tolist()) <= {2, 3} and counts.sum(1).eq(4).all()
    assert abs(counts[:, 1].float().mean().item() - 2.4) < 0.05
    assert effective_sample_size(torch.zeros(1, 4)).item() == pytest.approx(4.0)


def test_smc_moves_a_product_of_gaussians_toward_the_exact_product(gaussians, monkeypatch):
    """Reverse diffusion on summed scores does not sample the product of experts: it
    draws N(-0.61, 0.10) on the first axis where the product is N(-0.66, 0.166). SMC's
    weights pull the variance toward the exact product and the mean closer with more
    particles; with the weight's sign flipped they push the variance down."""
    gaussians.scheduler_config = LINEAR
    (m1, s1), (m2, s2) = GAUSSIANS["left"], GAUSSIANS["up"]
    precision = 1 / s1 ** 2 + 1 / s2 ** 2
    mean = torch.tensor([(a / s1 ** 2 + b / s2 ** 2) / precision for a, b in zip(m1, m2)])

    def moments(sampler, **knobs):
        x = run(gaussians, Concept("left"), Concept("up"), sampler=sampler, **knobs)[-1].x_t
        return (x.mean(0) - mean).norm().item(), x.var(0).mean().item()
    plain, eight, sixteen = moments("ddpm"), moments("smc", particles=8), moments("smc", particles=16)
    truth = 1 / precision
    assert plain[1] + 0.015 < min(eight[1], sixteen[1]) and max(eight[1], sixteen[1]) < truth, (
        plain, eight, sixteen, truth)
    assert sixteen[0] < eight[0] < plain[0]
    monkeypatch.setattr(engine, "fk_log_weight", lambda *args: -fk_log_weight(*args))
    flipped = moments("smc", particles=8)
    assert flipped[1] < plain[1] - 0.01, (flipped, plain)


def test_smc_is_deterministic_and_records_ess(gaussians):
    first = run(gaussians, Concept("left"), Concept("up"), sampler="smc", particles=4, samples=50)
    again = run(gaussians, Concept("left"), Concept("up"), sampler="smc", particles=4, samples=50)
    other = run(gaussians, Concept("left"), Concept("up"), sampler="smc", particles=4, samples=50,
                seed=4)
    assert torch.equal(first[-1].x_t, again[-1].x_t) and not torch.equal(first[-1].x_t, other[-1].x_t)
    assert first[0].x_t.shape == (200, 2) and first[-1].x_t.shape == (50, 2)
    assert all(0 < r.ess <= 1 for r in first) and sum(r.resampled for r in first) > 0


def test_smc_costs_k_runs(gaussians):
    recipe = Recipe(model="gaussians", concepts=(Concept("left"), Concept("up")), operator="product",
                    sampler=SamplerSpec("smc", particles=4), steps=10, num_samples=3)
    filled = prepare(recipe, gaussians)
    assert cost(filled, gaussians) == 4 * cost(
        dataclasses.replace(filled, sampler=SamplerSpec("ddpm")), gaussians)
    before = gaussians.calls
    list(engine.sample(recipe, gaussians))
    assert gaussians.calls - before == 10


# --- SuperDiff ----------------------------------------------------------------------

def test_superdiff_or_splits_samples_in_the_weights_proportions(gaussians):
    """left OR right at weights 1 : 3 on a score-only model: the exact mixture puts a
    quarter of the samples in "left"; so do the tracked densities."""
    score_only = GaussianModel(energy=False)
    score_only.max_samples = 100_000
    x = run(score_only, Concept("left"), Concept("right", weight=3.0), operator="superdiff_or",
            samples=4000)[-1].x_t
    assert abs((x[:, 0] < 0).float().mean().item() - 0.25) < 0.03
    # At T -> 0 the softmax ignores the densities: the plain weighted sum of scores,
    # which draws between the two modes instead.
    x_flat = run(score_only, Concept("left"), Concept("right", weight=3.0), operator="and",
                 samples=4000)[-1].x_t
    assert (x_flat[:, 0].abs() < 0.5).float().mean() > (x[:, 0].abs() < 0.5).float().mean() + 0.2


def test_superdiff_or_with_exact_densities_is_rrr_mixture():
    """With exact log-densities in place of the tracked ones, SuperDiff's OR at T = 1 and
    scale 1 is the mixture's composed eps."""
    model = GaussianModel()
    x = torch.randn(30, 2, generator=torch.Generator().manual_seed(2))
    eps, energy = model.predict(x, None, 0.5, ("left", "right"), with_energy=True)
    rows = (Concept("left"), Concept("right", weight=3.0))
    mixture, _ = compose(make_rule(rows, "mixture", 1.0), eps, energy)
    superdiff, _ = compose(make_rule(rows, "superdiff_or", 1.0), eps, log_density=-energy.double())
    torch.testing.assert_close(superdiff, mixture)


def test_superdiff_and_keeps_the_rows_log_densities_changing_alike(gaussians):
    """SuperDiff AND solves kappa per step so that every row's tracked log-density
    changes by the same amount: their differences stay at their start, 0."""
    records = run(gaussians, Concept("left"), Concept("up"), Concept("right"),
                  operator="superdiff_and", steps=40, samples=200)
    gaps = records[-1].log_density - records[-1].log_density[0]
    assert gaps.abs().max() < 1e-2          # float32 eps: the solve is exact to rounding
    liu = run(gaussians, Concept("left"), Concept("up"), Concept("right"), operator="and",
              steps=40, samples=200)
    assert (liu[-1].log_density - liu[-1].log_density[0]).abs().max() > 1.0


def test_equal_change_weights_solve_the_system():
    g = torch.Generator().manual_seed(0)
    changes, base = torch.randn(3, 3, 5, generator=g), torch.randn(3, 5, generator=g)
    kappa = SuperDiffAnd.equal_change_weights(changes, base)
    total = base + torch.einsum("ijb,jb->ib", changes, kappa)
    torch.testing.assert_close(kappa.sum(0), torch.ones(5))
    torch.testing.assert_close(total - total[:1], torch.zeros(3, 5), atol=1e-5, rtol=0)


# --- what recipes may ask ----------------------------------------------------------------

@pytest.mark.parametrize("sampler", ["hmc", "euler"])
def test_superdiff_needs_variance_preserving_reverse_steps(gaussians, sampler):
    recipe = Recipe(model="gaussians", concepts=(Concept("left"), Concept("up")),
                    operator="superdiff_or", sampler=SamplerSpec(sampler))
    with pytest.raises(RecipeError, match="use the sampler ddpm, ddim or smc"):
        prepare(recipe, gaussians)


def test_smc_refuses_operators_that_are_no_product(gaussians):
    recipe = Recipe(model="gaussians", concepts=(Concept("left"), Concept("up")),
                    operator="mixture", sampler=SamplerSpec("smc"))
    with pytest.raises(RecipeError, match="smc weighs particles toward the product"):
        prepare(recipe, gaussians)


def test_or_runs_on_score_only_models_and_refuses_not_rows():
    score_only = GaussianModel(energy=False)
    rows = (Concept("left"), Concept("up"))
    with pytest.raises(RecipeError, match="mixture needs an energy-parameterised model"):
        prepare(Recipe(model="g", concepts=rows, operator="mixture"), score_only)
    prepare(Recipe(model="g", concepts=rows, operator="superdiff_or"), score_only)
    with pytest.raises(RecipeError, match="superdiff_or takes no NOT rows"):
        Recipe(model="g", concepts=(Concept("left"), Concept("up", negate=True)),
               operator="superdiff_or")


def test_new_fields_stay_out_of_old_links():
    """particles and temperature are left out at their defaults: old links are unchanged."""
    plain = Recipe(model="g", concepts=(Concept("left"),))
    assert "temperature" not in plain.to_json() and "particles" not in plain.to_json()
    with pytest.raises(RecipeError, match="particles are the smc sampler's"):
        SamplerSpec("ddpm", particles=4)
    with pytest.raises(RecipeError, match="temperature weighs superdiff_or"):
        Recipe(model="g", concepts=(Concept("left"),), temperature=2.0)
    hot = Recipe(model="g", concepts=(Concept("left"),), operator="superdiff_or", temperature=2.0,
                 sampler=SamplerSpec("smc", particles=3))
    assert Recipe.from_json(hot.to_json()) == hot


def test_every_operator_declares_how_it_is_judged():
    assert {name for name, op in OPERATORS.items() if op.any_row} == {"mixture", "superdiff_or"}
    assert OPERATORS["superdiff_or"].satisfied([False, True], [True])
    assert not OPERATORS["and"].satisfied([False, True], [True])
    assert not OPERATORS["superdiff_or"].satisfied([True, True], [False])


def test_smc_streams_maps_and_keeps_one_particle_per_sample():
    """With the maps on, the last frame's conflict map follows the kept particles."""
    from composer.facade import Composer
    composer = Composer("cpu")
    recipe = Recipe(model="shapes-exact", concepts=(Concept("red circle"), Concept("blue square")),
                    sampler=SamplerSpec("smc", particles=3), steps=4, num_samples=2)
    result = composer.render(recipe, maps=True, lift=False)
    assert len(result.images) == 2 and result.frames[-1].map is not None
    assert all(0 < f.ess <= 1 for f in result.frames)


def test_an_or_task_is_judged_as_an_or_and_still_refuses_what_matches_neither():
    """The evaluation harness's OR task: a sample counts when one caption holds in a
    clean scene, whichever operator drew it; a model that predicts a blank grey picture
    matches neither caption and is counted a failure."""
    from composer.evaluation import run_task
    from composer.models import load_model
    model = load_model("shapes-exact", "cpu")

    class Grey(type(model)):
        def predict_per_sample(self, x, t, alpha_bar, cond, with_energy=False):
            eps = (x / math.sqrt(1 - alpha_bar))[None].expand(cond.shape[0], *x.shape)
            return eps.contiguous(), None                    # x0 = 0: mid-grey everywhere
    grey = Grey("cpu")
    blank = run_task(grey, "free", "or", SamplerSpec("ddim"), 2, 5, 1.0, operator="and")
    assert blank["accuracy"] == 0.0 and blank["caption_shares"] == [0.0, 0.0]
    drawn = run_task(model, "free", "or", SamplerSpec("ddpm"), 2, 30, 1.0)
    assert drawn["operator"] == "superdiff_or" and drawn["accuracy"] > 0.0
    assert all(0.0 <= share <= 1.0 for share in drawn["caption_shares"])
