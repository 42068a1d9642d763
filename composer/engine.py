"""Sampling as a generator of step records.

recipe -> model adapter -> composition rule -> sampler -> records.

Each step i at timestep t:
  1. (MCMC samplers) K MCMC steps targeting the composed p_t (RRR Sec. 4);
  2. one composed model evaluation -> eps*, x0 = (x - sigma_t eps*) / sqrt(abar_t);
  3. one reverse-diffusion step of the diffusers scheduler, t -> t_prev;
  4. (VP reverse samplers) each row's log-density tracked over the step
     (composer/tracking.py), which the SuperDiff operators weigh the rows by;
  5. (smc) each particle's Feynman-Kac weight, and systematic resampling within each
     sample's K particles when their effective sample size falls below
     ESS_THRESHOLD * K; at the end each sample keeps one particle, drawn by weight.
"""
from __future__ import annotations

import contextlib
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Iterator

import torch
from diffusers.utils.torch_utils import randn_tensor

from composer.knobs import KNOBS
from composer.maps import conflict_map, density_map, grid_points
from composer.models.base import ModelAdapter
from composer.operators import Rule, compose, fk_log_weight
from composer.plan import Plan, candidates, particles, prepare, rule_of, tracks_density
from composer.recipe import AUTO, FLOW_EULER, SMC, Recipe, RecipeError, SamplerSpec
from composer.samplers import MCMC, SMC_WINDOW, Evaluation, MCMCKnobs, Particles, make_scheduler, reverse_step
from composer.tracking import equal_change_step, initial_log_density, ito_change, step_beta


class NonFiniteError(RecipeError):
    """The sample turned NaN or infinite: these settings cannot be sampled."""


class Cancelled(Exception):
    """The run's cancel flag was set; raised before the next network evaluation."""


@dataclass(frozen=True)
class StepRecord:
    index: int                       # 0-based step
    total: int
    t: float                         # scheduler timestep
    x_t: torch.Tensor                # state after this step [B, ...]
    x0: torch.Tensor                 # composed prediction of the clean sample [B, ...]
    concept_x0: torch.Tensor         # each concept's own prediction [n, B, ...]
    acceptance: float | None = None  # mean MH acceptance at this level (mala, hmc)
    step_size: float | None = None   # MCMC step at this level, as a fraction of sigma_t
    # With maps=True (composer.maps): 2D models, the composed density p_t then each
    # concept's on a grid [1 + n, G, G], beside the state as the model saw it at t;
    # image models under "and", the conflict map [B, H, W] in [0, 1].
    density: torch.Tensor | None = None
    x_model: torch.Tensor | None = None
    conflict: torch.Tensor | None = None
    # Each concept's Ito-tracked log q_t(x_t | c_i) for every sample in the batch [n, B]
    # (VP reverse samplers: ddpm, ddim, smc; None under MCMC and sigma-space schedulers).
    log_density: torch.Tensor | None = None
    ess: float | None = None         # smc: mean effective sample size / K after this step
    resampled: int = 0               # smc: samples whose particles were resampled here


def move_knobs(spec: SamplerSpec, step: float, **fixed) -> MCMCKnobs:
    """What each MCMC move takes: the scaled step h and the spec's knobs, some `fixed`."""
    return MCMCKnobs(step=step, **{k.name: getattr(spec, k.name) for k in KNOBS if k.moves} | fixed)


def alpha_bar(scheduler, index: int, t) -> float:
    """abar at the scheduler's index-th timestep (sigma-space schedulers store sigmas)."""
    sigmas = getattr(scheduler, "sigmas", None)
    if sigmas is not None and len(sigmas) > len(scheduler.timesteps):
        return float(1.0 / (1.0 + sigmas[index].item() ** 2))
    return float(scheduler.alphas_cumprod[int(t)])


# "auto" step sizes (MALA, HMC): the acceptance each aims at (MALA's optimal rate for
# high-dimensional targets is 0.574, Roberts & Rosenthal 1998; HMC's is about 0.65,
# Beskos et al. 2013) and the Robbins-Monro gain on log h per unit of acceptance error.
# On the 2D product, HMC targets of 0.65 to 0.8 land within about a point of each other
# (docs/toy2d.md), so HMC keeps the high-dimensional rate the image models need.
TARGET_ACCEPTANCE = {"mala": 0.57, "hmc": 0.65}
AUTO_START = 0.1       # the step, as a fraction of sigma_t, that an "auto" run starts from
AUTO_GAIN = 1.0


class AdaptiveStep:
    """A step size adapted toward a target acceptance (Robbins-Monro on log h).

    Each MCMC move at a level is made with the current h; after it, log h moves by
    AUTO_GAIN * (acceptance - target), acceptance being the batch's mean. The step is
    a fraction of sigma_t, so carrying h to the next level scales the move by the
    ratio of the sigmas. One h for the batch, not one per sample: the samplers move
    a batch with one step length in one call, and the batch mean is a steadier signal
    than one sample's accept or reject. Deterministic for a seed, like the rest.

    "auto" is every model's default for MALA and HMC. ULA and U-HMC have no acceptance
    to steer by, and they do not borrow the step their Metropolis twin adapts: with no
    test to reject the far field's steep gradients, that step (1.3-2.2 sigma_t on the
    2D lab) made U-HMC diverge on every shipped 2D setup and ULA on the mixture and
    the negation. They keep a fixed fraction of sigma_t per model, the largest that
    stays finite on the model's examples (docs/recipe.md)."""

    def __init__(self, target: float, start: float = AUTO_START):
        self.target = target
        self.log_step = math.log(start)

    def level(self, density, x: torch.Tensor, spec: SamplerSpec, abar: float,
              generator: torch.Generator):
        """spec.mcmc_steps adapted moves at one level: (x, its evaluation, mean
        acceptance, the mean step used)."""
        sigma = math.sqrt(1.0 - abar)
        evaluation, rates, steps = None, [], []
        for _ in range(spec.mcmc_steps):
            steps.append(math.exp(self.log_step))
            knobs = move_knobs(spec, steps[-1] * sigma, mcmc_steps=1)
            moved = MCMC[spec.name](_reusing(density, x, evaluation), x, knobs, generator)
            x, evaluation = moved.x, moved.evaluation
            rates.append(float(moved.acceptance.mean()))
            self.log_step += AUTO_GAIN * (rates[-1] - self.target)
        return x, evaluation, sum(rates) / len(rates), sum(steps) / len(steps)


def _reusing(density, x: torch.Tensor, evaluation: Evaluation | None):
    """The density, answering for `x` itself from the evaluation already made there
    (one MCMC move ends where the next starts: no evaluation is made twice)."""
    def call(y: torch.Tensor) -> Evaluation:
        return evaluation if evaluation is not None and y is x else density(y)
    return call


class SharedDevice:
    """One device shared by concurrent runs, one network evaluation at a time.

    Whenever the device is free, the waiting run that has used it least so far (in
    seconds) goes next; ties go to whoever asked first. So a small job never queues
    behind large ones: it waits for at most the evaluation in progress, each step,
    while runs of equal cost alternate evaluation by evaluation. A plain lock would
    let the run that just released it take it straight back, and first-come turns
    make a small job wait one evaluation of every large job, every step."""

    def __init__(self):
        self._changed = threading.Condition()
        self._busy = False
        self._asked = 0
        self._waiting: dict[int, "Turn"] = {}

    def turn(self) -> "Turn":
        """A new run's turn: hold it (`with turn:`) for each evaluation."""
        return Turn(self)

    def _acquire(self, turn: "Turn") -> None:
        with self._changed:
            ticket, self._asked = self._asked, self._asked + 1
            self._waiting[ticket] = turn

            def next_up() -> bool:
                return not self._busy and ticket == min(
                    self._waiting, key=lambda k: (self._waiting[k].used, k))
            self._changed.wait_for(next_up)
            del self._waiting[ticket]
            self._busy = True

    def _release(self) -> None:
        with self._changed:
            self._busy = False
            self._changed.notify_all()


class Turn:
    """A run's access to its SharedDevice, with the device time it has used."""

    def __init__(self, device: SharedDevice | None = None):
        self.device = device or SharedDevice()
        self.used = 0.0
        self._start = 0.0

    def __enter__(self):
        self.device._acquire(self)
        self._start = time.perf_counter()

    def __exit__(self, *exc):
        self.used += time.perf_counter() - self._start
        self.device._release()


@dataclass(frozen=True)
class Control:
    """How a run shares its device. `cancel`, once set, stops the run before its next
    network evaluation (inside an MCMC level too); `turn` is held for each evaluation,
    so concurrent runs interleave evaluation by evaluation (the one that has used the
    device least goes first) and a cancelled run has left the device before the next
    evaluation of another starts."""
    cancel: threading.Event = field(default_factory=threading.Event)
    turn: Turn = field(default_factory=Turn)

    @contextlib.contextmanager
    def evaluation(self):
        """Around each network evaluation: the run's turn on the device, and Cancelled
        if the run was cancelled meanwhile."""
        with self.turn:
            if self.cancel.is_set():
                raise Cancelled
            yield


def composed_density(model: ModelAdapter, rule: Rule, cond, t, abar: float, with_energy: bool,
                     control: Control, log_density: torch.Tensor | None = None,
                     native: bool = False):
    """The composed model at one noise level, as the samplers see it (the SuperDiff
    operators also read the rows' tracked log-densities at the batch's points). With
    `native`, the rows are also combined as the checkpoint predicts them (v), for the
    reverse step (`steps_natively`)."""
    sigma = math.sqrt(1.0 - abar)

    def density(x: torch.Tensor) -> Evaluation:
        with control.evaluation():
            if native:
                raw, energy = model.predict_native(x, t, cond), None
                eps = model.to_eps(raw, x, abar)
            else:
                eps, energy = model.predict(x, t, abar, cond, with_energy=with_energy)
        composed, composed_energy = compose(rule, eps, energy, log_density)
        return Evaluation(composed, sigma, composed_energy, eps,
                          native=compose(rule, raw.to(x.dtype))[0] if native else None)
    return density


def steps_natively(spec: SamplerSpec, rule: Rule, model: ModelAdapter) -> bool:
    """Whether the reverse step takes the composed v of a v-prediction checkpoint, as
    its pipeline does, rather than the composed eps: the same step in real arithmetic
    (an affine rule commutes with eps = sqrt(abar) v + sigma x), and in float32 the
    pipeline's own, so one concept is its picture to the bit. Plain reverse samplers
    only: MCMC moves, particles and SuperDiff's AND read eps."""
    return (getattr(model, "prediction_type", "epsilon") == "v_prediction"
            and rule.operator.affine and not spec.is_mcmc and spec.name != SMC)


def alpha_bar_after(scheduler, index: int) -> float:
    """abar at the level the index-th step lands on (1, or DDIM's final abar, after the last)."""
    if index + 1 < len(scheduler.timesteps):
        return alpha_bar(scheduler, index + 1, scheduler.timesteps[index + 1])
    final = getattr(scheduler, "final_alpha_cumprod", None)
    return 1.0 if final is None else float(final)


@torch.no_grad()
def sample(recipe: Recipe, model: ModelAdapter, control: Control | None = None,
           maps: bool = False) -> Iterator[StepRecord]:
    """Yield one StepRecord per reverse step of `recipe` as it is (no best-of candidates),
    after planning it. Deterministic for a seed on a device, maps on or off. Setting
    `control.cancel` raises Cancelled before the next network evaluation. `maps` adds the
    density (2D models: one more evaluation per step, on the grid) or the conflict map
    (image models under "and": no evaluation)."""
    return _records(prepare(recipe, model, maps), model, control or Control(), maps)


def run(planned: Plan, model: ModelAdapter, control: Control | None = None) -> Iterator[StepRecord]:
    """The records of a planned run: every best-of candidate, sampled in one batch."""
    return _records(candidates(planned.recipe), model, control or Control(), planned.maps)


def _records(recipe: Recipe, model: ModelAdapter, control: Control,
             maps: bool) -> Iterator[StepRecord]:
    spec = recipe.sampler
    if spec.name == FLOW_EULER:
        yield from _flow_records(recipe, model, control, maps)
        return
    rule = rule_of(recipe)
    cond = model.encode(rule.texts)
    native = steps_natively(spec, rule, model)
    scheduler = make_scheduler(spec.reverse, model.scheduler_config,
                               prediction_type="v_prediction" if native else "epsilon")
    scheduler.set_timesteps(recipe.steps, device=model.device)
    # On the CPU whatever the model's device: a share link reproduces everywhere.
    generator = torch.Generator("cpu").manual_seed(recipe.seed)
    x, swarm = _start(recipe, model, rule, scheduler, generator)
    log_q = initial_log_density(x, len(rule.texts)) if tracks_density(spec) else None
    # Energies are needed for mixture, and make Metropolis tests exact.
    with_energy = model.has_energy and (rule.needs_energy or spec.is_metropolis)
    adapt = AdaptiveStep(TARGET_ACCEPTANCE[spec.name]) if spec.step_size == AUTO else None
    total = len(scheduler.timesteps)
    for index, t in enumerate(scheduler.timesteps):
        abar = alpha_bar(scheduler, index, t)
        density = composed_density(model, rule, cond, t, abar, with_energy, control, log_q, native)
        x, evaluation, acceptance, step_size = _moves(spec, adapt, density, x, abar, generator)
        model_input = scheduler.scale_model_input(x, t)
        if evaluation is None:
            evaluation = density(model_input)
        sigma, beta = math.sqrt(1.0 - abar), step_beta(abar, alpha_bar_after(scheduler, index))
        if rule.operator.solves_step:          # SuperDiff's AND (tracking.equal_change_step)
            x_prev, evaluation = equal_change_step(rule, scheduler, evaluation, t, x, generator, beta)
        else:
            x_prev = reverse_step(scheduler, evaluation.eps if evaluation.native is None
                                  else evaluation.native, t, x, generator)
        x0 = _predict_x0(model_input, evaluation.eps, abar)
        concept_x0 = _predict_x0(model_input[None], evaluation.rows[rule.concept_rows], abar)
        views = _maps(model, rule, cond, t, abar, control, evaluation, model_input) if maps else {}
        if log_q is not None:
            log_q = log_q + ito_change(model_input, x_prev, evaluation.rows, sigma, beta)
        x, ess, resampled = x_prev, None, 0
        if swarm is not None and abar >= SMC_WINDOW:
            swarm.reweigh(fk_log_weight(rule, evaluation.rows, evaluation.eps, sigma, beta))
        if swarm is not None:
            ess = swarm.ess
            if index + 1 < total:
                order, resampled = swarm.resample(generator)
                x, log_q = x[order], log_q[:, order]
            else:                          # the end: each sample keeps one particle
                keep = swarm.pick(generator)
                x, x0, concept_x0, log_q = x[keep], x0[keep], concept_x0[:, keep], log_q[:, keep]
                if "conflict" in views:
                    views["conflict"] = views["conflict"][keep]
        if not torch.isfinite(x).all():
            raise NonFiniteError(_not_finite(spec, index, total))
        tracked = None if log_q is None else log_q[rule.concept_rows]
        yield StepRecord(index, total, float(t), x, x0, concept_x0, acceptance, step_size, **views,
                         log_density=tracked, ess=ess, resampled=resampled)


def _flow_records(recipe: Recipe, model: ModelAdapter, control: Control,
                  maps: bool) -> Iterator[StepRecord]:
    """flow_euler: a flow model's own scheduler on its own state x_s = (1 - s) x0 + s eps,
    stepped as StableDiffusion3Pipeline and FluxPipeline step it, from noise drawn as they
    draw it. The rule combines the rows' velocities v_i: with eps_i = x_s + (1 - s) v_i,
    an affine rule (coefficients summing to 1, as "and"'s do) gives the same combination
    of eps and of v (plan._check_flow_euler refuses the others), and a one-concept run is
    the pipeline's classifier-free guidance, its latents to the bit."""
    rule = rule_of(recipe)
    cond = model.encode(rule.texts)
    scheduler = model.flow_scheduler(recipe.steps)
    generator = torch.Generator("cpu").manual_seed(recipe.seed)
    x = randn_tensor((recipe.num_samples, *model.sample_shape), generator=generator,
                     device=model.device, dtype=model.dtype)
    total = len(scheduler.timesteps)
    for index, t in enumerate(scheduler.timesteps):
        with control.evaluation():
            rows = model.velocity(x, t, cond).float()   # the state stays float32 (fp16 nets)
        velocity, _ = compose(rule, rows)
        s = float(scheduler.sigmas[index])
        x0, concept_x0 = x - s * velocity, x[None] - s * rows[rule.concept_rows]
        # The conflict map reads directions eps_i - eps_u = (1 - s)(v_i - v_u): their
        # cosines and each sample's largest push are the velocities'.
        views = ({"conflict": conflict_map(rows[rule.concept_rows], rows[rule.unconditional],
                                           rule.coefficients[rule.concept_rows])}
                 if maps and rule.unconditional is not None else {})
        x = scheduler.step(velocity, t, x, return_dict=False)[0]
        if not torch.isfinite(x).all():
            raise NonFiniteError(_not_finite(recipe.sampler, index, total))
        yield StepRecord(index, total, float(t), x, x0, concept_x0, **views)


def _start(recipe: Recipe, model: ModelAdapter, rule: Rule, scheduler,
           generator: torch.Generator) -> tuple[torch.Tensor, Particles | None]:
    """The first x_T (smc: K particles per sample, and their swarm)."""
    spec = recipe.sampler
    shape = (recipe.num_samples * particles(spec), *model.sample_shape)
    x = randn_tensor(shape, generator=generator, device=model.device, dtype=model.dtype)
    x = x * scheduler.init_noise_sigma
    if spec.name != SMC:
        return x, None
    # The weights correct toward prod_i q_i^{c_i} from its own start: each q_i is
    # N(0, I) at the first level, so their product is N(0, I / sum_i c_i).
    return (x / math.sqrt(float(rule.coefficients.sum())),
            Particles(recipe.num_samples, spec.particles, x.device))


def _moves(spec: SamplerSpec, adapt: AdaptiveStep | None, density, x: torch.Tensor, abar: float,
           generator: torch.Generator):
    """One level's MCMC moves (none for reverse samplers): x, the density's evaluation
    there when known, the mean acceptance and the step used (a fraction of sigma_t)."""
    if not spec.is_mcmc or spec.mcmc_steps == 0:
        return x, None, None, None
    if adapt is not None:
        return adapt.level(density, x, spec, abar, generator)
    moved = MCMC[spec.name](density, x, move_knobs(spec, spec.step_size * math.sqrt(1.0 - abar)),
                            generator)
    acceptance = None if moved.acceptance is None else float(moved.acceptance.mean())
    return moved.x, moved.evaluation, acceptance, spec.step_size  # inputs left unscaled


def _not_finite(spec: SamplerSpec, index: int, total: int) -> str:
    return (f"steps: the sample stopped being finite (NaN or infinity) at step {index + 1} "
            f"of {total}; likely causes: a sampler that overshoots on this composition "
            f"({spec.name!r}: try another sampler, or another number of steps), "
            f"or a scale or weights so large that the composed prediction overflows")


def _maps(model: ModelAdapter, rule: Rule, cond, t, abar: float, control: Control,
          evaluation: Evaluation, model_input: torch.Tensor) -> dict:
    if model.plane is not None:
        grid = grid_points(model.plane).to(model.device, model.dtype)
        at_grid = composed_density(model, rule, cond, t, abar, model.has_energy, control)(grid)
        return {"density": density_map(at_grid, rule, model.plane), "x_model": model_input}
    if rule.unconditional is not None:          # images under "and": where concepts disagree
        rows = evaluation.rows
        return {"conflict": conflict_map(rows[rule.concept_rows], rows[rule.unconditional],
                                         rule.coefficients[rule.concept_rows])}
    return {}


def _predict_x0(x: torch.Tensor, eps: torch.Tensor, abar: float) -> torch.Tensor:
    return (x - math.sqrt(1.0 - abar) * eps) / math.sqrt(abar)


def generate(recipe: Recipe, model: ModelAdapter, control: Control | None = None,
             maps: bool = False) -> StepRecord:
    """Drain the sampler; return the last record (its x_t is the final sample)."""
    record = None
    for record in sample(recipe, model, control, maps):
        pass
    return record
