"""The 2D lab's models: a score and an energy diffusion model over the six
Reduce-Reuse-Recycle components (`composer.toy2d`), trained by this project.

    toy2d-score:  eps(x, t, c) from a residual MLP.
    toy2d-energy: E(x, t, c) = 1/2 |f(x, t, c)|^2, eps = grad_x E (autograd),
                  energy in nats U = E / sigma_t (so eps = sigma_t grad_x U).

Concepts are the component names; "" is the unconditional row (the marginal
over all six), used by the "and" operator. Weights load offline from
assets/toy2d/*.safetensors. Scatters, density pictures and scores: toy2d_outputs.py.

Defaults (`Toy2DModel.defaults`; the knobs' "toy2d" ones in composer/knobs.py), chosen on the product (ring x bar), the hardest
of the three setups, to land >= 90% of HMC's samples in its support within 10 s for
1000 samples on a 2-core CPU (docs/toy2d.md, "Defaults"):
- scale 1.0: the RRR setups compose unscaled densities;
- steps 60: with 100 training timesteps, diffusers' spacing (100 // steps) visits the
  60 lowest levels, t = 59..0, one apart; 50 steps visit every second level from 98.
  The product is decided below t = 15, where the ring's modes separate and samples
  caught at the bar's edge by the ring's off-bar modes must cross back; there 60 steps
  give 15 levels to 50 steps' 8. The levels skipped above t = 59 carry nothing of the
  components' shapes (DDPM alone: ring 99.8% on its modes at 60 steps, 98.0% at 50);
- mcmc_steps 6, leapfrog_steps 2, damping 0.5: per level, HMC runs 6 short
  trajectories of 2 leapfrog steps with momentum persistence 0.5. More, shorter
  trajectories beat RRR's L = 3 at the same cost: each is a Metropolis test, a chance
  to cross between modes;
- step_size, per sampler: h = step_size * sigma_t is the HMC leapfrog step and the
  ULA/MALA proposal std. "auto" for MALA and HMC (adapted toward acceptance 0.57 and
  0.65; composer.engine.AdaptiveStep): HMC's settles at 1.1-1.4 sigma_t mid-run and
  about 2.3 at the last levels. On the product it lands where the hand-tuned fixed 1.0
  did (91.2% vs 91.1% in support over seeds 0-5, acceptance 0.66 vs 0.91), without the
  tuning. 0.5 for ULA and 0.3 for U-HMC, the largest that stayed finite on the three
  shipped setups over seeds 0-2 (U-HMC at 0.4 diverged on one seed). Unadjusted
  samplers diverge when a point wanders into the far field (|x| > 5), where the
  networks, never trained there, have gradients several times too steep; at the
  steps MALA and HMC adapt, U-HMC diverged on all three setups;
- line_points 5: trapezoid points for score-only Metropolis tests.
A level costs mcmc_steps * leapfrog_steps + 1 batched evaluations under HMC
(780 per sample for the defaults, 7-8 s for 1000 samples on one thread), each a
forward and backward pass for the energy model.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch

from composer.knobs import family_defaults
from composer.models.base import ModelAdapter, ModelError
from composer.toy2d.data import CONCEPTS
from composer.toy2d.lab import EXTENT, setup_of
from composer.toy2d.net import SCHEDULER_CONFIG, UNCONDITIONAL, load_net

WEIGHTS = Path(__file__).resolve().parents[2] / "assets" / "toy2d"


class Toy2DModel(ModelAdapter):
    family = "toy2d"
    sample_shape = (2,)
    # The data lie in [-1, 1]^2, diffusers' clip_sample_range. Clipping x0 keeps a composed
    # eps, which no single model predicted, from being amplified ~30x by 1/sqrt(alpha-bar)
    # at the top levels (with all 100 levels the product diverged under every sampler).
    scheduler_config = {**SCHEDULER_CONFIG, "clip_sample": True}
    concept_choices = CONCEPTS
    plane = EXTENT
    max_samples = 5000
    # 2D points through a small MLP; the README's Budgets table gives the time it stands for.
    max_evaluations = 10_000_000
    # The lab shows the ground truth (support, MMD); a lift verdict is not support
    # membership (p(x|c) > p(x) differs inside the big box and at the ring's modes:
    # 5% of the product's samples "hold" ring by lift, 91% lie on it; docs/lift.md),
    # so the model's own verdicts are there on request only.
    lift_by_default = False
    defaults = {"scale": 1.0, "steps": 60, **family_defaults("toy2d")}

    def __init__(self, variant: str, device: torch.device | str = "cpu",
                 folder: str | Path = WEIGHTS):
        try:
            net, self.metadata = load_net(folder, variant)
        except FileNotFoundError as err:
            raise ModelError(f"model: toy2d-{variant} weights missing ({err})") from None
        self.variant = variant
        self.has_energy = net.energy
        self.description = f"2D lab, learned {'energy' if net.energy else 'score'} network"
        self.device = torch.device(device)
        self.net = net.to(self.device)
        self._cache: dict[tuple[str, ...], torch.Tensor] = {}

    def encode(self, texts: tuple[str, ...]) -> torch.Tensor:
        """Label indices [rows]; "" is the unconditional row."""
        texts = tuple(texts)
        if texts not in self._cache:
            for text in texts:
                if text != "":
                    self.check_concept(text)
            labels = [UNCONDITIONAL if text == "" else CONCEPTS.index(text) for text in texts]
            self._cache[texts] = torch.tensor(labels, device=self.device)
        return self._cache[texts]

    def predict(self, x: torch.Tensor, t, alpha_bar: float, cond: torch.Tensor,
                with_energy: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        if with_energy and not self.has_energy:
            raise ModelError("toy2d-score has no energies; use toy2d-energy")
        sigma = math.sqrt(1.0 - alpha_bar)
        rows = len(cond)
        timestep = torch.full((rows,), float(t), device=self.device)
        with torch.no_grad():
            embedding = self.net.embed(timestep, cond)[:, None, :]        # [rows, 1, D]
        points = x.to(self.device, self.dtype)[None].expand(rows, *x.shape).contiguous()
        if self.has_energy:
            eps, energy = self.net.eps_and_energy(points, embedding)     # grad enabled inside
        else:
            with torch.no_grad():
                eps, energy = self.net.eps_and_energy(points, embedding)
        eps = eps.detach()
        energy = energy.detach() / sigma if (with_energy and energy is not None) else None
        return eps, energy

    def recipe_notes(self, recipe) -> list[str]:
        if recipe.num_samples < 2 and setup_of(recipe) is not None:
            return ["MMD against the ground truth needs at least 2 samples; "
                    "it is skipped for this run of 1"]
        return []


def load_score(device: torch.device | str = "cpu") -> Toy2DModel:
    return Toy2DModel("score", device)


def load_energy(device: torch.device | str = "cpu") -> Toy2DModel:
    return Toy2DModel("energy", device)
