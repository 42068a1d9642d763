"""An analytic model for tests: each concept is an isotropic Gaussian in 2D.

Under the VP forward process N(mu, s^2 I) becomes N(sqrt(abar) mu, (abar s^2 + sigma^2) I),
so eps and the energy are exact at every noise level.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from composer.models import PICTURES, SCORING, Pictures, Scoring
from composer.models.base import ModelAdapter

GAUSSIANS = {  # name -> (mean, std)
    "left": ((-1.0, 0.0), 0.5),
    "right": ((1.0, 0.0), 0.5),
    "up": ((0.0, 1.0), 0.7),
    "": ((0.0, 0.0), 1.5),  # the unconditional row
}


class GaussianModel(ModelAdapter):
    family = "gaussians"
    has_energy = True
    sample_shape = (2,)
    scheduler_config = {"num_train_timesteps": 100, "beta_schedule": "squaredcos_cap_v2",
                        "clip_sample": False}
    concept_choices = tuple(k for k in GAUSSIANS if k)
    max_samples = 20000
    defaults = {"scale": 1.0, "steps": 50, "mcmc_steps": 2, "step_size": 0.3,
                "leapfrog_steps": 3, "damping": 0.5, "line_points": 5}

    def __init__(self, energy: bool = True):
        self.has_energy = energy
        self.calls = 0

    def encode(self, texts):
        return texts

    def predict(self, x, t, alpha_bar, cond, with_energy=False):
        self.calls += 1
        sigma = math.sqrt(1 - alpha_bar)
        eps, energy = [], []
        for text in cond:
            mean, std = GAUSSIANS[text]
            mu = math.sqrt(alpha_bar) * torch.tensor(mean, dtype=x.dtype)
            var = alpha_bar * std ** 2 + sigma ** 2
            diff = x - mu
            eps.append(sigma * diff / var)          # sigma * grad U
            energy.append((diff ** 2).sum(1) / (2 * var) + math.log(2 * math.pi * var))
        return torch.stack(eps), (torch.stack(energy) if with_energy else None)


class GaussianPictures(Pictures):
    """Blank previews (the tests look at the samples) and the samples as points."""

    def preview(self, x0):
        return np.zeros((8, 8, 3), np.uint8)

    def points(self, x0):
        return x0.numpy()


PICTURES["gaussians"], SCORING["gaussians"] = GaussianPictures, Scoring()
