"""The streaming engine on an analytic model whose every level is known."""
import pytest
import torch

from composer.engine import generate, sample
from composer.plan import prepare
from composer.models import ModelError, load_model
from composer.recipe import Recipe, RecipeError
from composer.samplers import SCHEDULERS
from gaussians import GaussianModel


def recipe(**fields):
    base = {"model": "gaussians", "concepts": [{"text": "left"}, {"text": "right"}],
            "operator": "product", "steps": 10, "num_samples": 64, "seed": 3}
    return Recipe.from_dict({**base, **fields})


@pytest.mark.parametrize("name", list(SCHEDULERS) + ["ula", "uhmc", "mala", "hmc"])
def test_every_sampler_streams_typed_records(name):
    records = list(sample(recipe(sampler={"name": name, "mcmc_steps": 1}), GaussianModel()))
    assert [r.index for r in records] == list(range(10))
    last = records[-1]
    assert last.total == 10 and last.x_t.shape == (64, 2) and last.x0.shape == (64, 2)
    assert last.concept_x0.shape == (2, 64, 2)
    assert torch.isfinite(last.x_t).all()
    assert (last.acceptance is not None) == (name in ("mala", "hmc"))


def test_same_recipe_and_seed_give_the_same_samples():
    for name in ("euler_ancestral", "hmc"):
        a = generate(recipe(sampler={"name": name}), GaussianModel()).x_t
        b = generate(recipe(sampler={"name": name}), GaussianModel()).x_t
        c = generate(recipe(sampler={"name": name}, seed=4), GaussianModel()).x_t
        assert torch.equal(a, b) and not torch.equal(a, c)


def test_single_expert_is_sampled_exactly():
    x = generate(recipe(concepts=[{"text": "left"}], sampler={"name": "ddim"}, steps=50,
                        num_samples=4000), GaussianModel()).x_t
    torch.testing.assert_close(x.mean(0), torch.tensor([-1.0, 0.0]), atol=0.05, rtol=0)
    torch.testing.assert_close(x.var(0), torch.tensor([0.25, 0.25]), atol=0.03, rtol=0)


def test_mcmc_recovers_the_product_that_reverse_diffusion_misses():
    """RRR's point on an analytic product: N(-1, .25) x N(1, .25) = N(0, .125)."""
    def variance(sampler):
        x = generate(recipe(sampler=sampler, steps=50, num_samples=4000), GaussianModel()).x_t
        return float(x.var(0).mean())
    reverse = variance({"name": "ddpm"})
    hmc = variance({"name": "hmc", "mcmc_steps": 5})
    assert abs(reverse - 0.125) > 0.05
    assert abs(hmc - 0.125) < 0.015


def test_metropolis_without_energies_uses_the_score_integral():
    model = GaussianModel(energy=False)
    record = generate(recipe(sampler={"name": "mala", "mcmc_steps": 2}), model)
    assert 0.5 < record.acceptance <= 1.0


def test_unknown_concept_lists_the_valid_ones():
    with pytest.raises(RecipeError, match=r"concepts\[1\].text: unknown concept 'dog'; valid concepts are left, right, up"):
        prepare(recipe(concepts=[{"text": "left"}, {"text": "dog"}]), GaussianModel())


def test_mixture_on_a_score_only_model_says_it_needs_energies():
    with pytest.raises(RecipeError, match="mixture needs an energy-parameterised model"):
        prepare(recipe(operator="mixture"), GaussianModel(energy=False))


def test_too_many_samples_for_the_model():
    with pytest.raises(RecipeError, match="num_samples: .gaussians. takes at most 100, got 4096"):
        prepare(recipe(num_samples=4096).__class__.from_dict(
            {**recipe().to_dict(), "num_samples": 4096}), _small_model())


def _small_model():
    model = GaussianModel()
    model.max_samples = 20000
    model.max_samples = 100
    return model


def test_unknown_model_names_the_choices():
    with pytest.raises(ModelError, match="unknown model 'nope'; built-in models are shapes"):
        load_model("nope")


@pytest.mark.parametrize("name,per_step", [("ula", 3), ("mala", 3), ("uhmc", 7), ("hmc", 7)])
def test_mcmc_costs_the_documented_evaluations(name, per_step):
    """K = 2, L = 3: the reverse step reuses the evaluation MALA and HMC end on."""
    model = GaussianModel()
    generate(recipe(sampler={"name": name, "mcmc_steps": 2, "leapfrog_steps": 3}), model)
    assert model.calls == 10 * per_step


def test_more_steps_than_training_levels_is_refused():
    with pytest.raises(RecipeError, match="steps: 'gaussians' was trained with 100 noise levels"):
        prepare(recipe(steps=500), GaussianModel())


@pytest.mark.parametrize("name,energy", [("ddim", True), ("ula", True), ("mala", True),
                                         ("mala", False), ("uhmc", True), ("hmc", False)])
def test_cost_counts_the_evaluations_a_run_makes(name, energy):
    from composer.plan import cost
    model = GaussianModel(energy=energy)
    filled = prepare(recipe(sampler={"name": name, "mcmc_steps": 2, "leapfrog_steps": 3,
                                     "line_points": 4}), model)
    generate(filled, model)
    rows, samples = 2, 64                        # product: no unconditional row
    assert cost(filled, model) == model.calls * rows * samples


def test_runs_over_the_budget_are_refused_with_cost_and_limit(monkeypatch):
    model = GaussianModel()
    model.max_evaluations = 10 * 2 * 64 - 1     # one row short of a 10-step DDIM run
    with pytest.raises(RecipeError, match=r"cost: this run needs 1,280 network evaluations.*may use 1,279"):
        prepare(recipe(sampler={"name": "ddim"}), model)
    monkeypatch.setenv("COMPOSER_BUDGET_SCALE", "2")
    prepare(recipe(sampler={"name": "ddim"}), model)


def test_a_run_that_turns_non_finite_stops_with_the_step():
    class Exploding(GaussianModel):
        def predict(self, x, t, alpha_bar, cond, with_energy=False):
            eps, energy = super().predict(x, t, alpha_bar, cond, with_energy)
            return (eps * float("inf") if self.calls >= 4 else eps), energy
    with pytest.raises(RecipeError, match="stopped being finite .* at step 4 of 10"):
        generate(recipe(sampler={"name": "ddim"}), Exploding())


@pytest.mark.parametrize("name", ["ddim", "hmc"])
def test_a_cancel_stops_the_run_before_its_next_evaluation(name):
    """Set mid-evaluation (as another thread would): that evaluation finishes, no
    other starts, even inside an HMC level (7 evaluations per step here)."""
    from composer.engine import Cancelled, Control
    control = Control()

    class Watched(GaussianModel):
        def predict(self, *args, **kwargs):
            out = super().predict(*args, **kwargs)
            if self.calls == 5:
                control.cancel.set()
            return out
    model = Watched()
    with pytest.raises(Cancelled):
        generate(recipe(sampler={"name": name, "mcmc_steps": 2, "leapfrog_steps": 3}), model,
                 control)
    assert model.calls == 5


def test_bounded_negation_samples_its_own_density():
    """HMC on left NOT up (bounded form) against the density integrated on a grid."""
    from composer.operators import NEGATION_BOUND
    from gaussians import GAUSSIANS
    x = generate(recipe(concepts=[{"text": "left"}, {"text": "up", "negate": True, "beta": 1.5}],
                        negation="bounded", sampler={"name": "hmc", "mcmc_steps": 4}, steps=50,
                        num_samples=4000), GaussianModel()).x_t
    axis = torch.linspace(-5, 5, 801, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2)

    def energy(name):
        mean, std = GAUSSIANS[name]
        return ((grid - torch.tensor(mean, dtype=grid.dtype)) ** 2).sum(1) / (2 * std ** 2) \
            + torch.log(torch.tensor(2 * torch.pi * std ** 2, dtype=grid.dtype))
    u1, u2 = energy("left"), energy("up")
    density = torch.exp(-(u1 + 1.5 * NEGATION_BOUND * torch.tanh((u1 - u2) / NEGATION_BOUND)))
    density = density / density.sum()
    mean = (density[:, None] * grid).sum(0)
    var = (density[:, None] * (grid - mean) ** 2).sum(0)
    torch.testing.assert_close(x.mean(0).double(), mean, atol=0.04, rtol=0)
    torch.testing.assert_close(x.var(0).double(), var, atol=0.03, rtol=0.1)


def test_bounded_negation_on_a_score_only_model_is_refused():
    with pytest.raises(RecipeError, match="negation: the bounded form needs an energy"):
        prepare(recipe(concepts=[{"text": "left"}, {"text": "up", "negate": True}],
                       negation="bounded"), GaussianModel(energy=False))


def test_runs_of_equal_cost_alternate_on_the_device(monkeypatch):
    """Runs sharing a device alternate evaluation by evaluation: a thread that just had
    its turn has used more than the other, so the other goes next. The device time is
    read from a clock that only the evaluations advance, so jitter in the machine's
    scheduling cannot change the order (time.sleep did, under load)."""
    import threading
    import time
    import types
    import composer.engine as engine
    from composer.engine import SharedDevice

    now = [0.0]
    monkeypatch.setattr(engine, "time", types.SimpleNamespace(perf_counter=lambda: now[0]))
    device, order, finished = SharedDevice(), [], set()

    def evaluate(name: str, turn) -> None:
        other = "b" if name == "a" else "a"
        for _ in range(100):
            with turn:
                order.append(name)
                now[0] += 1.0                      # equal cost per evaluation (exact in floats)
                # A thread the OS holds back between two turns has not asked again yet:
                # the order is the device's only once the other run is back in its queue.
                while other not in finished and not device._waiting:
                    time.sleep(0.0005)
        finished.add(name)

    holder = device.turn()
    with holder:                                   # both runs queue while the device is busy
        workers = [threading.Thread(target=evaluate, args=(name, device.turn())) for name in "ab"]
        for worker in workers:
            worker.start()
            while len(device._waiting) < 1 + workers.index(worker):   # it is waiting
                time.sleep(0.001)
    for worker in workers:
        worker.join()
    assert order == ["a", "b"] * 100               # a plain Lock: one switch


def test_a_small_run_goes_before_runs_that_used_the_device_more():
    """The waiting run that has used the device least is served first, whatever the
    order of asking: a small job never queues behind large ones."""
    import threading
    import time
    from composer.engine import SharedDevice

    device, order = SharedDevice(), []
    turns = {name: device.turn() for name in ("large 1", "large 2", "large 3", "small")}
    for name in ("large 1", "large 2", "large 3"):
        turns[name].used = 60.0                    # a minute of device time each
    holder = device.turn()

    def evaluate(name: str) -> None:
        with turns[name]:
            order.append(name)

    with holder:
        threads = []
        for name in ("large 1", "large 2", "large 3", "small"):      # the small job asks last
            threads.append(threading.Thread(target=evaluate, args=(name,)))
            threads[-1].start()
            while len(device._waiting) < len(threads):
                time.sleep(0.001)
    for thread in threads:
        thread.join()
    assert order == ["small", "large 1", "large 2", "large 3"]
