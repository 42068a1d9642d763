"""The 2D distributions of Reduce, Reuse, Recycle (Du et al. 2023, Sec. 5.1).

Six components, each a sampler and a support test:

- ring: 8 Gaussians on a circle of radius 0.5, std 0.03
- bar: U([-0.2, 0.2] x [-1, 1])
- left_bar: U([-0.3, -0.1] x [-1, 1]);  right_bar: U([0.1, 0.3] x [-1, 1])
- big_box: U([-0.7, 0.7]^2);  small_box: U([-0.3, 0.3]^2)

and three composed targets with exact samplers:

- product = ring x bar: the ring components inside the bar, i.e. the
  Gaussians at (0, 0.5) and (0, -0.5) (the others lie 5 std outside the bar,
  so their share is below 1e-6 and is left out);
- mixture = left_bar + right_bar, equal weights;
- negation = big_box NOT small_box: uniform on the big box minus the small box.

All samplers take a `torch.Generator` so the lab is reproducible.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

RING_RADIUS = 0.5
RING_MODES = 8
RING_STD = 0.03
# A ring mode's "support" for the support-fraction metric: a disk of this many
# standard deviations (in 2D it holds 1 - exp(-4.5) = 98.9% of the mass).
RING_SUPPORT_STDS = 3.0

Sampler = Callable[[int, torch.Generator], torch.Tensor]
Support = Callable[[torch.Tensor], torch.Tensor]


def ring_centres() -> torch.Tensor:
    angles = torch.arange(RING_MODES, dtype=torch.float64) * (2 * math.pi / RING_MODES)
    return (RING_RADIUS * torch.stack([angles.cos(), angles.sin()], 1)).float()


def _uniform_box(x_range: tuple[float, float], y_range: tuple[float, float]) -> Sampler:
    def sample(n: int, generator: torch.Generator) -> torch.Tensor:
        u = torch.rand(n, 2, generator=generator)
        lo = torch.tensor([x_range[0], y_range[0]])
        hi = torch.tensor([x_range[1], y_range[1]])
        return lo + u * (hi - lo)
    return sample


def _in_box(x_range: tuple[float, float], y_range: tuple[float, float]) -> Support:
    def inside(x: torch.Tensor) -> torch.Tensor:
        return ((x[:, 0] >= x_range[0]) & (x[:, 0] <= x_range[1])
                & (x[:, 1] >= y_range[0]) & (x[:, 1] <= y_range[1]))
    return inside


def _gaussians(centres: torch.Tensor, std: float) -> Sampler:
    def sample(n: int, generator: torch.Generator) -> torch.Tensor:
        which = torch.randint(len(centres), (n,), generator=generator)
        return centres[which] + std * torch.randn(n, 2, generator=generator)
    return sample


def _near(centres: torch.Tensor, radius: float) -> Support:
    def inside(x: torch.Tensor) -> torch.Tensor:
        return (torch.cdist(x.float(), centres) <= radius).any(1)
    return inside


@dataclass(frozen=True)
class Distribution:
    sample: Sampler
    support: Support    # bool [N]: the point lies in the (effective) support


_BAR = ((-0.2, 0.2), (-1.0, 1.0))
_LEFT = ((-0.3, -0.1), (-1.0, 1.0))
_RIGHT = ((0.1, 0.3), (-1.0, 1.0))
_BIG = ((-0.7, 0.7), (-0.7, 0.7))
_SMALL = ((-0.3, 0.3), (-0.3, 0.3))

COMPONENTS: dict[str, Distribution] = {
    "ring": Distribution(_gaussians(ring_centres(), RING_STD),
                         _near(ring_centres(), RING_SUPPORT_STDS * RING_STD)),
    "bar": Distribution(_uniform_box(*_BAR), _in_box(*_BAR)),
    "left_bar": Distribution(_uniform_box(*_LEFT), _in_box(*_LEFT)),
    "right_bar": Distribution(_uniform_box(*_RIGHT), _in_box(*_RIGHT)),
    "big_box": Distribution(_uniform_box(*_BIG), _in_box(*_BIG)),
    "small_box": Distribution(_uniform_box(*_SMALL), _in_box(*_SMALL)),
}
CONCEPTS: tuple[str, ...] = tuple(COMPONENTS)


def _product_centres() -> torch.Tensor:
    centres = ring_centres()
    return centres[_in_box(*_BAR)(centres)]


def _sample_mixture(n: int, generator: torch.Generator) -> torch.Tensor:
    left = COMPONENTS["left_bar"].sample(n, generator)
    right = COMPONENTS["right_bar"].sample(n, generator)
    pick_left = torch.rand(n, generator=generator) < 0.5
    return torch.where(pick_left[:, None], left, right)


def _in_negation(x: torch.Tensor) -> torch.Tensor:
    return _in_box(*_BIG)(x) & ~_in_box(*_SMALL)(x)


def _sample_negation(n: int, generator: torch.Generator) -> torch.Tensor:
    """Rejection from the big box (acceptance 1 - 0.36/1.96 = 82%)."""
    kept = torch.empty(0, 2)
    while len(kept) < n:
        x = COMPONENTS["big_box"].sample(2 * n, generator)
        kept = torch.cat([kept, x[_in_negation(x)]])
    return kept[:n]


def _in_product(x: torch.Tensor) -> torch.Tensor:
    return _in_box(*_BAR)(x) & _near(_product_centres(), RING_SUPPORT_STDS * RING_STD)(x)


SETUPS: dict[str, Distribution] = {
    "product": Distribution(_gaussians(_product_centres(), RING_STD), _in_product),
    "mixture": Distribution(_sample_mixture, lambda x: _in_box(*_LEFT)(x) | _in_box(*_RIGHT)(x)),
    "negation": Distribution(_sample_negation, _in_negation),
}


def sample_training_batch(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """n points with their component index (uniform over the six components)."""
    labels = torch.randint(len(CONCEPTS), (n,), generator=generator)
    x = torch.empty(n, 2)
    for k, name in enumerate(CONCEPTS):
        rows = (labels == k).nonzero().squeeze(1)
        if len(rows):
            x[rows] = COMPONENTS[name].sample(len(rows), generator)
    return x, labels
