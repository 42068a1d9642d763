"""MCMC samplers against targets with exact scores and energies."""
import dataclasses
import math

import pytest
import torch

from composer.samplers import MCMC, Evaluation, MCMCKnobs, _line_log_ratio

MEAN = torch.tensor([0.5, -1.0])
COV = torch.tensor([[1.0, 0.6], [0.6, 0.5]])
PRECISION = torch.linalg.inv(COV)


def gaussian(x, with_energy=True):
    """The anisotropic Gaussian N(MEAN, COV) as a level density with sigma = 1."""
    diff = x - MEAN
    grad = diff @ PRECISION
    energy = 0.5 * (grad * diff).sum(1) if with_energy else None
    return Evaluation(eps=grad, sigma=1.0, energy=energy)


MIX_MEANS = torch.tensor([[-1.5, 0.0], [1.5, 0.0]])
MIX_STD = 0.6


def mixture(x, with_energy=True):
    """Equal mixture of two isotropic Gaussians."""
    diffs = x[None] - MIX_MEANS[:, None]                       # [2, B, 2]
    logits = -(diffs ** 2).sum(-1) / (2 * MIX_STD ** 2)         # [2, B]
    weights = torch.softmax(logits, 0)
    grad = (weights[..., None] * diffs).sum(0) / MIX_STD ** 2
    energy = -torch.logsumexp(logits, 0) if with_energy else None
    return Evaluation(eps=grad, sigma=1.0, energy=energy)


def run(name, density, step, steps=300, chains=3000, seed=0, start=None):
    generator = torch.Generator().manual_seed(seed)
    x = start if start is not None else torch.randn(chains, 2, generator=generator)
    knobs = MCMCKnobs(mcmc_steps=steps, step=step, leapfrog_steps=3, damping=0.5, line_points=5)
    result = MCMC[name](density, x, knobs, generator)
    return result.x, result.acceptance


@pytest.mark.parametrize("name,step", [("mala", 0.5), ("hmc", 0.4)])
@pytest.mark.parametrize("with_energy", [True, False])
def test_metropolis_samplers_reproduce_a_gaussian(name, step, with_energy):
    x, acceptance = run(name, lambda x: gaussian(x, with_energy), step)
    # 3000 chains: standard errors are about 0.02 for a mean and 0.026 for a
    # covariance entry; the tolerances are about 3 of them.
    torch.testing.assert_close(x.mean(0), MEAN, atol=0.06, rtol=0)
    torch.testing.assert_close(torch.cov(x.T), COV, atol=0.1, rtol=0)
    assert 0.3 < acceptance.mean() < 1.0


@pytest.mark.parametrize("name,step", [("mala", 0.9), ("hmc", 0.5)])
def test_metropolis_samplers_reproduce_a_mixture(name, step):
    x, _ = run(name, mixture, step, steps=200)
    torch.testing.assert_close(x.mean(0), torch.zeros(2), atol=0.12, rtol=0)
    expected_var = torch.tensor([MIX_STD ** 2 + 1.5 ** 2, MIX_STD ** 2])
    torch.testing.assert_close(x.var(0), expected_var, rtol=0.1, atol=0)
    right = (x[:, 0] > 0).float().mean()
    assert abs(right - 0.5) < 0.06


def test_unadjusted_langevin_is_biased_by_a_large_step_and_mala_corrects_it():
    step = 0.6  # eta * largest precision = 1.5: ULA stays stable but inflates the spread
    ula_x, _ = run("ula", gaussian, step, steps=100)
    mala_x, _ = run("mala", gaussian, step, steps=100)
    ula_error = (torch.cov(ula_x.T) - COV).abs().max()
    mala_error = (torch.cov(mala_x.T) - COV).abs().max()
    assert ula_error > 0.2 and mala_error < 0.1


@pytest.mark.parametrize("name", ["mala", "hmc"])
def test_acceptance_is_near_one_for_tiny_steps(name):
    _, acceptance = run(name, mixture, 1e-3, steps=20)
    assert acceptance.mean() > 0.99


@pytest.mark.parametrize("name", list(MCMC))
def test_fixed_seed_gives_identical_output(name):
    a, _ = run(name, mixture, 0.5, steps=10, chains=64)
    b, _ = run(name, mixture, 0.5, steps=10, chains=64)
    c, _ = run(name, mixture, 0.5, steps=10, chains=64, seed=1)
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("name", list(MCMC))
def test_samplers_leave_the_callers_tensor_alone(name):
    start = torch.randn(32, 2)
    copy = start.clone()
    run(name, mixture, 0.5, steps=3, start=start)
    assert torch.equal(start, copy)


def test_acceptance_is_decided_per_sample():
    """Chains far out in the tails reject big moves while central ones accept."""
    start = torch.cat([torch.zeros(200, 2), torch.full((200, 2), 6.0)])
    _, acceptance = run("mala", mixture, 1.5, steps=1, start=start)
    assert 0.0 < acceptance.mean() < 1.0
    assert acceptance[:200].mean() != acceptance[200:].mean()


def test_score_line_integral_matches_the_exact_log_density_difference():
    x0, x1 = torch.randn(500, 2), torch.randn(500, 2)
    e0, e1 = mixture(x0, False), mixture(x1, False)
    exact = mixture(x0).energy - mixture(x1).energy
    coarse = _line_log_ratio(lambda x: mixture(x, False), x0, e0, x1, e1, points=5)
    fine = _line_log_ratio(lambda x: mixture(x, False), x0, e0, x1, e1, points=33)
    assert (fine - exact).abs().max() < (coarse - exact).abs().max() + 1e-6
    assert (fine - exact).abs().max() < 0.05
    # Gaussian scores are linear, so the trapezoid rule is exact there.
    g = _line_log_ratio(lambda x: gaussian(x, False), x0, gaussian(x0, False), x1, gaussian(x1, False), 2)
    torch.testing.assert_close(g, gaussian(x0).energy - gaussian(x1).energy, rtol=1e-4, atol=1e-4)
    assert math.isfinite(float(coarse.sum()))


@pytest.mark.parametrize("name,target", [("mala", 0.57), ("hmc", 0.65)])
@pytest.mark.parametrize("energy", [True, False])
def test_an_auto_step_reaches_its_target_acceptance_and_samples_stay_right(name, target, energy):
    """'auto' adapts the step toward the sampler's target acceptance; the samples are
    still those of the model (here N((-1, 0), 0.5^2 I), exact at every level), with
    exact energies or, as on score-only models, log-density differences from scores."""
    from composer.engine import TARGET_ACCEPTANCE, sample
    from composer.recipe import Concept, Recipe, SamplerSpec
    from gaussians import GaussianModel
    recipe = Recipe(model="gaussians", concepts=(Concept("left"),), operator="product", scale=1.0,
                    sampler=SamplerSpec(name=name, step_size="auto", mcmc_steps=4, leapfrog_steps=3),
                    steps=50, seed=0, num_samples=4000)
    assert TARGET_ACCEPTANCE[name] == target
    records = list(sample(recipe, GaussianModel(energy)))
    late = [r.acceptance for r in records[-25:]]
    assert abs(sum(late) / len(late) - target) < 0.08, late          # within 0.08 of target
    steps = [r.step_size for r in records]
    assert min(steps) > 0 and max(steps) / min(steps) > 1.5            # it did adapt
    x = records[-1].x_t.double()
    assert torch.allclose(x.mean(0), torch.tensor([-1.0, 0.0], dtype=torch.float64), atol=0.05)
    assert torch.allclose(x.std(0), torch.tensor([0.5, 0.5], dtype=torch.float64), atol=0.05)
    again = list(sample(recipe, GaussianModel(energy)))                 # deterministic
    assert torch.equal(again[-1].x_t, records[-1].x_t)
    assert [r.step_size for r in again] == steps
    other_seed = list(sample(dataclasses.replace(recipe, seed=1), GaussianModel(energy)))
    assert not torch.equal(other_seed[-1].x_t, records[-1].x_t)


def test_every_built_in_model_adapts_the_metropolis_step_and_fixes_the_unadjusted_one(tmp_path):
    """'auto' is the default step of MALA and HMC on every model; ULA and U-HMC, with no
    acceptance to steer by, keep a fixed fraction of sigma_t (engine.AdaptiveStep)."""
    from composer.models import load_model
    from composer.models.shapes import ShapesFamily
    from composer.models.tiny_sd import save_tiny_sd
    from composer.models.toy2d import Toy2DModel
    from composer.recipe import AUTO
    sd = load_model(save_tiny_sd(tmp_path / "tiny-sd"), "cpu")     # SD sets its defaults on load
    for defaults in (Toy2DModel.defaults, ShapesFamily.mcmc_defaults, sd.defaults):
        steps = defaults["step_size"]
        assert steps["mala"] == steps["hmc"] == AUTO
        assert all(0 < steps[name] <= 2 for name in ("ula", "uhmc"))


def test_auto_needs_a_metropolis_sampler():
    from composer.recipe import Recipe, RecipeError
    for name in ("ula", "uhmc", "ddim"):
        with pytest.raises(RecipeError, match="'auto' adapts the step"):
            Recipe.from_dict({"model": "shapes", "concepts": [{"text": "red"}],
                              "sampler": {"name": name, "step_size": "auto"}})
    recipe = Recipe.from_dict({"model": "shapes", "concepts": [{"text": "red"}],
                               "sampler": {"name": "hmc", "step_size": "auto"}})
    assert Recipe.from_json(recipe.to_json()).sampler.step_size == "auto"
    with pytest.raises(RecipeError, match="step_size"):
        Recipe.from_dict({"model": "shapes", "concepts": [{"text": "red"}],
                          "sampler": {"name": "hmc", "step_size": "fast"}})


def test_every_sampler_name_has_one_implementation_and_one_label():
    """The recipe's names are the list; samplers.py implements each once, and each has
    the label pages and grids show."""
    from composer.recipe import FLOW_EULER, MCMC_SAMPLERS, REVERSE_SAMPLERS, SAMPLER_LABELS, SAMPLERS
    from composer.samplers import SCHEDULERS
    # flow_euler is a flow model's own scheduler, which its adapter builds (flow_scheduler)
    assert tuple(SCHEDULERS) + (FLOW_EULER,) == REVERSE_SAMPLERS and tuple(MCMC) == MCMC_SAMPLERS
    assert set(SAMPLER_LABELS) == set(SAMPLERS)


@pytest.mark.parametrize("name", list(MCMC))
def test_proposals_and_momenta_come_from_the_cpu_generator_on_any_device(name):
    """Chains on another device ('meta': every machine has it) draw from the run's CPU
    generator exactly as chains on the CPU do, so a seed means the same noise on a GPU
    Space and on a laptop (the draws were made on the chains' device)."""
    def standard(x):
        return Evaluation(eps=x, sigma=1.0, energy=0.5 * (x * x).sum(1))
    knobs = MCMCKnobs(mcmc_steps=3, step=0.5, leapfrog_steps=2, damping=0.5, line_points=3)
    on_cpu, on_meta = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    MCMC[name](standard, torch.zeros(16, 2), knobs, on_cpu)
    moved = MCMC[name](standard, torch.zeros(16, 2, device="meta"), knobs, on_meta)
    assert moved.x.device.type == "meta"
    assert torch.equal(on_cpu.get_state(), on_meta.get_state()), "other draws than on the CPU"
