"""Samplers.

Reverse diffusion is diffusers' schedulers (`make_scheduler`). The annealed MCMC
samplers of Reduce, Reuse, Recycle (Du et al. 2023, Sec. 4) are written here, one
short function each, all with the same arguments:

    sampler(density, x, knobs, generator) -> MCMCResult(x, acceptance, evaluation)

`density(x)` evaluates the composed model at one fixed noise level and returns an
`Evaluation`. The samplers never see concepts, operators or models. They never
modify the caller's tensors. Every draw comes from the run's CPU generator
(`gaussian`, `uniform`; diffusers' schedulers do the same with it).

Step sizes follow the noise level: with h = step_size * sigma_t,
ULA/MALA use eta = h^2 / 2 (proposal noise std h), HMC uses leapfrog step h.
Where the model has no energy, Metropolis tests use a log-density difference
estimated from scores (Sjoberg et al. 2023, arXiv 2307.14012): a trapezoid rule
along the straight line for MALA, and along the leapfrog path for HMC (free).
"""
from __future__ import annotations

from dataclasses import dataclass, make_dataclass
from typing import Callable

import torch
from diffusers import (DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler,
                       EulerAncestralDiscreteScheduler, EulerDiscreteScheduler)
from diffusers.utils.torch_utils import randn_tensor

from composer.knobs import KNOBS

SCHEDULERS = {
    "ddpm": DDPMScheduler,
    "ddim": DDIMScheduler,
    "euler": EulerDiscreteScheduler,
    "euler_ancestral": EulerAncestralDiscreteScheduler,
    "dpmpp": DPMSolverMultistepScheduler,
}


def alphas_cumprod(config: dict) -> torch.Tensor:
    """abar_t of the diffusers schedule a config names (what training noises with)."""
    return DDPMScheduler.from_config(config).alphas_cumprod.float()


def make_scheduler(name: str, config: dict, prediction_type: str = "epsilon"):
    """A fresh scheduler per run: several keep state between steps.

    Adapters return epsilon, so the scheduler is told so, unless the engine hands it the
    checkpoint's own prediction (`Evaluation.native`).
    """
    if name not in SCHEDULERS:
        raise ValueError(f"sampler.name: no scheduler {name!r}; choose one of {', '.join(SCHEDULERS)}")
    extra = {"algorithm_type": "dpmsolver++"} if name == "dpmpp" else {}
    return SCHEDULERS[name].from_config(config, prediction_type=prediction_type, **extra)


def gaussian(like: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """N(0, I) noise shaped like `like`, drawn from the run's CPU generator and moved to
    `like`'s device: one seed gives the same noise on a GPU and on a laptop."""
    return randn_tensor(like.shape, generator=generator, device=like.device, dtype=like.dtype)


def uniform(shape, generator: torch.Generator, device, dtype=torch.float32) -> torch.Tensor:
    """U(0, 1) from the run's CPU generator, moved to `device` (as `gaussian`)."""
    return torch.rand(shape, generator=generator, dtype=dtype).to(device)


def reverse_step(scheduler, eps: torch.Tensor, t, x: torch.Tensor,
                 generator: torch.Generator) -> torch.Tensor:
    """x_{t-1} from x_t. Where x0 is clipped, DDIM re-derives eps from the clipped x0 (as
    GLIDE does): stepping along the raw composed eps would push x outwards instead."""
    extra = ({"use_clipped_model_output": True}
             if isinstance(scheduler, DDIMScheduler) and scheduler.config.clip_sample else {})
    return scheduler.step(eps, t, x, generator=generator, **extra).prev_sample


@dataclass(frozen=True)
class Evaluation:
    """The composed model at one point and one noise level. `rows` keeps every row the
    model answered (the rule says which is which); the samplers only carry it along."""
    eps: torch.Tensor                  # composed eps [B, ...]
    sigma: float
    energy: torch.Tensor | None = None  # composed U in nats [B], when the model has energies
    rows: torch.Tensor | None = None    # each row's own eps [rows, B, ...]
    # The composed prediction in the checkpoint's own terms (v), when the reverse step
    # takes that rather than eps (composer/engine.py, `steps_natively`).
    native: torch.Tensor | None = None

    @property
    def score(self) -> torch.Tensor:
        return -self.eps / self.sigma


Density = Callable[[torch.Tensor], Evaluation]


# A move's arguments: h = step_size * sigma_t, already scaled, and the knobs that
# moves take as they are (composer/knobs.py: mcmc_steps, leapfrog_steps, damping, ...).
MCMCKnobs = make_dataclass("MCMCKnobs", [("step", float)] + [
    (k.name, int if k.integer else float) for k in KNOBS if k.moves], frozen=True)


@dataclass(frozen=True)
class MCMCResult:
    x: torch.Tensor
    acceptance: torch.Tensor | None = None   # per sample, Metropolis samplers only
    evaluation: Evaluation | None = None     # the density at the returned x, when known


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-sample inner product over all but the batch axis."""
    return (a * b).flatten(1).sum(1)


def _expand(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return mask.reshape(-1, *([1] * (like.dim() - 1)))


def _line_log_ratio(density: Density, x0: torch.Tensor, e0: Evaluation, x1: torch.Tensor,
                    e1: Evaluation, points: int) -> torch.Tensor:
    """log p(x1) - log p(x0): exact from energies, else the trapezoid rule on
    integral_0^1 score(x0 + tau (x1 - x0)) . (x1 - x0) dtau."""
    if e0.energy is not None and e1.energy is not None:
        return e0.energy - e1.energy
    delta = x1 - x0
    taus = torch.linspace(0.0, 1.0, points).tolist()
    total = 0.5 * (_dot(e0.score, delta) + _dot(e1.score, delta))
    for tau in taus[1:-1]:
        total = total + _dot(density(x0 + tau * delta).score, delta)
    return total / (points - 1)


def ula(density: Density, x: torch.Tensor, knobs: MCMCKnobs, generator: torch.Generator
        ) -> MCMCResult:
    """Unadjusted Langevin: x <- x + eta * score(x) + sqrt(2 eta) z."""
    eta = knobs.step ** 2 / 2
    for _ in range(knobs.mcmc_steps):
        x = x + eta * density(x).score + knobs.step * gaussian(x, generator)
    return MCMCResult(x)


def mala(density: Density, x: torch.Tensor, knobs: MCMCKnobs, generator: torch.Generator
         ) -> MCMCResult:
    """Metropolis-adjusted Langevin: the ULA proposal with an MH test per sample.

    The proposal is N(x + eta * score(x), 2 eta I), so log q divides by 4 eta.
    """
    eta = knobs.step ** 2 / 2
    current = density(x)
    accepted = torch.zeros(x.shape[0], device=x.device)
    for _ in range(knobs.mcmc_steps):
        proposal = x + eta * current.score + knobs.step * gaussian(x, generator)
        proposed = density(proposal)
        forward = -_dot(proposal - x - eta * current.score, proposal - x - eta * current.score)
        backward = -_dot(x - proposal - eta * proposed.score, x - proposal - eta * proposed.score)
        log_alpha = (_line_log_ratio(density, x, current, proposal, proposed, knobs.line_points)
                     + (backward - forward) / (4 * eta))
        accept = uniform(x.shape[0], generator, x.device).log() < log_alpha
        x = torch.where(_expand(accept, x), proposal, x)
        current = _select(accept, proposed, current)
        accepted += accept.float()
    return MCMCResult(x, accepted / max(knobs.mcmc_steps, 1), current)


def _select(mask: torch.Tensor, new: Evaluation, old: Evaluation) -> Evaluation:
    """Per-sample choice between two evaluations, so nothing is evaluated twice."""
    energy = rows = None
    picked = _expand(mask, new.eps)
    if new.energy is not None and old.energy is not None:
        energy = torch.where(mask, new.energy, old.energy)
    if new.rows is not None and old.rows is not None:
        rows = torch.where(picked[None], new.rows, old.rows)
    return Evaluation(eps=torch.where(picked, new.eps, old.eps), sigma=new.sigma, energy=energy,
                      rows=rows)


def _leapfrog(density: Density, x: torch.Tensor, v: torch.Tensor, start: Evaluation,
              knobs: MCMCKnobs) -> tuple[torch.Tensor, torch.Tensor, Evaluation, torch.Tensor]:
    """L leapfrog steps for H = U + |v|^2 / 2. Also returns the trapezoid
    estimate of log p(end) - log p(start) along the path (score-only models)."""
    h = knobs.step
    current, path_log_ratio = start, torch.zeros(x.shape[0], device=x.device, dtype=x.dtype)
    for _ in range(knobs.leapfrog_steps):
        v = v + 0.5 * h * current.score
        moved = x + h * v
        after = density(moved)
        path_log_ratio = path_log_ratio + 0.5 * _dot(current.score + after.score, moved - x)
        x, current = moved, after
        v = v + 0.5 * h * current.score
    return x, v, current, path_log_ratio


def _refresh(v: torch.Tensor, damping: float, generator: torch.Generator) -> torch.Tensor:
    """Partial momentum refresh v <- d v + sqrt(1 - d^2) z; keeps v ~ N(0, I)."""
    return damping * v + (1 - damping ** 2) ** 0.5 * gaussian(v, generator)


def uhmc(density: Density, x: torch.Tensor, knobs: MCMCKnobs, generator: torch.Generator
         ) -> MCMCResult:
    """Unadjusted HMC: partial momentum refresh, then L leapfrog steps, no test."""
    v = gaussian(x, generator)
    current = density(x)
    for _ in range(knobs.mcmc_steps):
        v = _refresh(v, knobs.damping, generator)
        x, v, current, _ = _leapfrog(density, x, v, current, knobs)
    return MCMCResult(x, None, current)


def hmc(density: Density, x: torch.Tensor, knobs: MCMCKnobs, generator: torch.Generator
        ) -> MCMCResult:
    """HMC with partial refresh and an MH test on the Hamiltonian per sample.

    On rejection x is restored and the momentum negated (Horowitz 1991), which
    keeps the partially refreshed chain reversible.
    """
    v = gaussian(x, generator)
    current = density(x)
    accepted = torch.zeros(x.shape[0], device=x.device)
    for _ in range(knobs.mcmc_steps):
        v = _refresh(v, knobs.damping, generator)
        x_new, v_new, proposed, path_log_ratio = _leapfrog(density, x, v, current, knobs)
        log_ratio = (current.energy - proposed.energy
                     if current.energy is not None and proposed.energy is not None
                     else path_log_ratio)
        log_alpha = log_ratio + 0.5 * (_dot(v, v) - _dot(v_new, v_new))
        accept = uniform(x.shape[0], generator, x.device).log() < log_alpha
        mask = _expand(accept, x)
        x = torch.where(mask, x_new, x)
        v = torch.where(mask, v_new, -v)
        current = _select(accept, proposed, current)
        accepted += accept.float()
    return MCMCResult(x, accepted / max(knobs.mcmc_steps, 1), current)


MCMC = {"ula": ula, "uhmc": uhmc, "mala": mala, "hmc": hmc}


# --- particles (the smc sampler) ---------------------------------------------------

def effective_sample_size(log_weights: torch.Tensor) -> torch.Tensor:
    """[G]: Kish's ESS (sum w)^2 / sum w^2 of each group's K particles [G, K]."""
    w = torch.softmax(log_weights.double(), dim=1)
    # At most K, which equal weights reach exactly: their squares' sum may round below 1/K
    return (1.0 / w.pow(2).sum(1)).clamp(max=log_weights.shape[1])


def systematic_resample(log_weights: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """[G, K] indices within each group: systematic resampling (one uniform per group,
    K evenly spaced points through the cumulative weights; Kitagawa 1996), as FKC's
    code resamples."""
    groups, k = log_weights.shape
    cumulative = torch.softmax(log_weights.double(), dim=1).cumsum(1)
    cumulative[:, -1] = 1.0                             # no point falls past the end by rounding
    start = uniform((groups, 1), generator, cumulative.device, torch.float64)
    points = (start + torch.arange(k, dtype=torch.float64, device=cumulative.device)) / k
    return torch.searchsorted(cumulative, points).clamp(max=k - 1)


def pick_by_weight(log_weights: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """[G] one particle index per group, drawn with probability its normalised weight."""
    point = uniform((log_weights.shape[0], 1), generator, log_weights.device, torch.float64)
    cumulative = torch.softmax(log_weights.double(), dim=1).cumsum(1)
    cumulative[:, -1] = 1.0
    return torch.searchsorted(cumulative, point)[:, 0].clamp(max=log_weights.shape[1] - 1)


ESS_THRESHOLD = 0.5    # resample a sample's particles when their ESS falls below K / 2
# smc weighs and resamples at the levels with abar_t >= SMC_WINDOW (0: all of them). On
# the 2D product, windows from 0 to 0.3 land within a point of each other (docs/methods.md).
SMC_WINDOW = 0.0


class Particles:
    """smc's log-weights, K particles per sample (sample i's at i*K .. i*K + K - 1)."""

    def __init__(self, samples: int, k: int, device: torch.device):
        self.k = k
        self.log_weights = torch.zeros(samples, k, dtype=torch.float64, device=device)

    def reweigh(self, increment: torch.Tensor) -> None:
        self.log_weights = self.log_weights + increment.reshape(self.log_weights.shape)

    @property
    def ess(self) -> float:
        return float(effective_sample_size(self.log_weights).mean()) / self.k

    def resample(self, generator: torch.Generator) -> tuple[torch.Tensor, int]:
        """Batch indices that resample the samples whose ESS < ESS_THRESHOLD * K (the
        others keep their particles), and how many samples were resampled; the weights
        of resampled samples start again from equal."""
        low = effective_sample_size(self.log_weights) < ESS_THRESHOLD * self.k
        within = systematic_resample(self.log_weights, generator)
        keep = torch.arange(self.k, device=within.device).expand_as(within)
        within = torch.where(low[:, None], within, keep)
        self.log_weights = torch.where(low[:, None], torch.zeros_like(self.log_weights),
                                       self.log_weights)
        offsets = self.k * torch.arange(within.shape[0], device=within.device)[:, None]
        return (within + offsets).reshape(-1), int(low.sum())

    def pick(self, generator: torch.Generator) -> torch.Tensor:
        """One batch index per sample, drawn by weight."""
        return pick_by_weight(self.log_weights, generator) + self.k * torch.arange(
            self.log_weights.shape[0], device=self.log_weights.device)
