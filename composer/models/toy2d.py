"""The 2D lab's models: a score and an energy diffusion model over the six
Reduce-Reuse-Recycle components (`composer.toy2d`), trained by this project.

    toy2d-score:  eps(x, t, c) from a residual MLP.
    toy2d-energy: E(x, t, c) = 1/2 |f(x, t, c)|^2, eps = grad_x E (autograd),
                  energy in nats U = E / sigma_t (so eps = sigma_t grad_x U).

Concepts are the component names; "" is the unconditional row (the marginal
over all six), used by the "and" operator. Weights load offline from
assets/toy2d/*.safetensors. Scatters, density pictures and scores: toy2d_outputs.py.

Defaults (`Toy2DModel.defaults`):
- scale 1.0: the RRR setups compose unscaled densities;
- steps 50: reverse steps (noise levels) out of the 100 training timesteps. At 30,
  the coarse last steps leave 4% of the ring's samples off its modes (96.0%
  within 3 std, DDPM); at 50, 98.3-98.7%; at 100, 99.6% (MODEL_CARD.md);
- mcmc_steps 2, leapfrog_steps 3, damping 0.5: per level, HMC runs
  2 trajectories of 3 leapfrog steps with momentum persistence 0.5 (RRR's
  L = 3, d = 0.5);
- step_size, per sampler: h = step_size * sigma_t is the HMC leapfrog step and the
  ULA/MALA proposal std. 1.0 for the Metropolis samplers (MALA, HMC: the test
  rejects what a large step gets wrong; HMC acceptance 0.77 on the product);
  0.5 for ULA and 0.3 for U-HMC, the largest that stayed finite on the three
  shipped setups over seeds 0-2 (U-HMC at 0.4 diverged on one seed). Unadjusted
  samplers diverge when a point wanders into the far field (|x| > 5), where the
  networks, never trained there, have gradients several times too steep;
- line_points 5: trapezoid points for score-only Metropolis tests.
A level costs mcmc_steps * leapfrog_steps + 1 batched evaluations under HMC
(350 for the defaults), each a forward and backward pass for the energy model.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch

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
    defaults = {"scale": 1.0, "steps": 50, "mcmc_steps": 2,
                "step_size": {"ula": 0.5, "uhmc": 0.3, "mala": 1.0, "hmc": 1.0},
                "leapfrog_steps": 3, "damping": 0.5, "line_points": 5}

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
