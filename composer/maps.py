"""Diagnostics drawn beside the frames, computed inside the engine.

- density_map (2D models): the composed density p_t on a grid, and each concept's
  own, at the current noise level. With energies it is exp(-U*) exactly; from a
  score model the log density is the score integrated over the grid (least squares).
- conflict_map (image models): where the AND rows' directions eps_i - eps_u
  disagree (mean pairwise negative cosine over channels), and where NOT rows push
  hardest (their |eps_j - eps_u|). A diagnostic of the guidance, not a segmentation.
"""
from __future__ import annotations

import itertools

import numpy as np
import scipy.fft
import torch

from composer.operators import Rule
from composer.samplers import Evaluation

GRID = 64     # density points per side


def grid_points(extent: float, size: int = GRID) -> torch.Tensor:
    """[size*size, 2] cell centres over [-extent, extent]^2, row 0 at the top
    (largest y) as pictures are drawn."""
    centres = (torch.arange(size, dtype=torch.float64) + 0.5) / size * 2 * extent - extent
    y, x = torch.meshgrid(-centres, centres, indexing="ij")
    return torch.stack([x.reshape(-1), y.reshape(-1)], 1)


def density_map(evaluation: Evaluation, rule: Rule, extent: float, size: int = GRID) -> torch.Tensor:
    """[1 + n, size, size]: the composed density then each concept's, each normalised
    to integrate to 1 over the window (an evaluation at `grid_points`)."""
    cell = (2 * extent / size) ** 2
    if evaluation.energy is not None:
        composed = -evaluation.energy.double().reshape(size, size)
    else:
        composed = integrate_score(evaluation.score, extent, size)
    concepts = [integrate_score(-eps / evaluation.sigma, extent, size)
                for eps in evaluation.rows[rule.concept_rows]]
    logs = torch.stack([composed, *concepts])
    weights = torch.exp(logs - logs.amax(dim=(1, 2), keepdim=True))
    return (weights / (weights.sum(dim=(1, 2), keepdim=True) * cell)).float()


def integrate_score(score: torch.Tensor, extent: float, size: int) -> torch.Tensor:
    """log p up to a constant on the grid from grad log p [size*size, 2], by least
    squares: the phi whose differences between neighbouring cells best match the
    trapezoid integrals of the score. That is a Poisson equation with Neumann
    boundaries, which the cosine transform diagonalises. Integrating along one path
    instead carries the error made where the score turns sharply between narrow modes
    into every cell beyond it (at the product's last levels the map lost all its mass
    that way); here it stays local."""
    s = score.double().reshape(size, size, 2).cpu().numpy()
    h = 2 * extent / size
    across = h * (s[:, 1:, 0] + s[:, :-1, 0]) / 2       # phi[i, j+1] - phi[i, j]
    down = -h * (s[1:, :, 1] + s[:-1, :, 1]) / 2         # phi[i+1, j] - phi[i, j]: y falls
    divergence = np.zeros((size, size))
    divergence[:, 1:] += across
    divergence[:, :-1] -= across
    divergence[1:] += down
    divergence[:-1] -= down
    k = 2 - 2 * np.cos(np.pi * np.arange(size) / size)   # the Neumann Laplacian's eigenvalues
    eigenvalues = k[:, None] + k[None, :]
    eigenvalues[0, 0] = 1.0                              # the free constant: set to 0 below
    coefficients = scipy.fft.dctn(divergence, norm="ortho") / eigenvalues
    coefficients[0, 0] = 0.0
    return torch.from_numpy(scipy.fft.idctn(coefficients, norm="ortho")).to(score.device)


def conflict_map(concept_eps: torch.Tensor, unconditional_eps: torch.Tensor,
                 coefficients: torch.Tensor) -> torch.Tensor:
    """[B, H, W] in [0, 1] from one step's concept eps [n, B, C, H, W], the
    unconditional eps [B, C, H, W] and each concept's coefficient (> 0 AND, < 0 NOT).
    Two or more AND rows: their mean pairwise max(0, -cos) between eps_i - eps_u over
    channels (0 where they agree, 1 where they oppose). Otherwise the NOT rows' push
    |eps_j - eps_u| summed, scaled by its largest value in each sample."""
    directions = concept_eps - unconditional_eps
    positive = [k for k in range(len(coefficients)) if coefficients[k] > 0]
    negative = [k for k in range(len(coefficients)) if coefficients[k] < 0]
    if len(positive) >= 2:
        cosines = [torch.nn.functional.cosine_similarity(directions[i], directions[j], dim=1,
                                                         eps=1e-8)
                   for i, j in itertools.combinations(positive, 2)]
        return torch.stack(cosines).neg().clamp(min=0).mean(0).float()
    if negative:
        push = directions[negative].norm(dim=2).sum(0)
        return (push / push.flatten(1).amax(1).clamp(min=1e-12)[:, None, None]).float()
    return torch.zeros(concept_eps.shape[1], *concept_eps.shape[-2:])
