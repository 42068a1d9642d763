"""What a model's samples look like and how they score: the interface each family fills.

An adapter (base.py) only predicts and describes its model. Beside each adapter, one
module per family holds its pictures and its scoring:

    toy2d_outputs.py   scatters and density maps over the plane; MMD and supports
    shapes_outputs.py  the scenes as images; the analytic judge (composer/shapes/judge.py)
    sd_outputs.py      the linear latent preview and the VAE decode; no scoring

`composer.models.pictures_of(model)` and `scoring_of(model)` find them by family.
The defaults below are what a family without the feature answers, so they ignore
their input (hence the noqa: ARG002).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np
import torch

from composer.pictures import grid

CONFLICT_COLOUR, CONFLICT_OPACITY = (230, 30, 30), 0.7     # a conflict of 1 over a tile

class Pictures(ABC):
    """A model's samples as RGB uint8 pictures, for frames and results."""

    def __init__(self, model: Any):
        self.model = model          # the adapter (SD decodes through its VAE)

    @abstractmethod
    def preview(self, x0: torch.Tensor) -> np.ndarray:
        """Cheap RGB uint8 picture [H, W, 3] of a batch of predicted clean samples."""

    def preview_tiles(self, x0: torch.Tensor) -> np.ndarray | None:  # noqa: ARG002
        """Image models: each sample's cheap picture [B, H, W, 3] uint8, on the grid
        the network works on (what a conflict map is drawn over)."""
        return None

    def conflict_picture(self, x0: torch.Tensor, conflict: torch.Tensor) -> np.ndarray | None:
        """The samples with the conflict map [B, h, w] in [0, 1] laid over them in red
        (None for a model that has no per-sample tiles to lay it over)."""
        tiles = self.preview_tiles(x0)
        if tiles is None:
            return None
        heat = torch.nn.functional.interpolate(conflict[:, None].float().cpu(),
                                               size=tiles.shape[1:3], mode="bilinear")
        alpha = CONFLICT_OPACITY * heat[:, 0, :, :, None].numpy()
        red = np.array(CONFLICT_COLOUR, np.float32)
        return grid((tiles * (1 - alpha) + red * alpha).round().astype(np.uint8))

    def density_pictures(self, recipe: Any, density: torch.Tensor,
                         x: torch.Tensor) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        """2D models: the composed density (density[0], with the points x) and each
        active concept's own (density[1:]) as heat maps over the plane."""
        raise NotImplementedError

    def decode(self, x0: torch.Tensor) -> list[np.ndarray]:
        """Final RGB uint8 pictures, one per sample (toy2d: one scatter of all)."""
        return [self.preview(x0)]

    def result_images(self, recipe: Any, x0: torch.Tensor) -> list[np.ndarray]:  # noqa: ARG002
        """Pictures of a finished run; the recipe lets a model draw its ground truth."""
        return self.decode(x0)

    def points(self, x0: torch.Tensor) -> np.ndarray | None:  # noqa: ARG002
        """Samples as plain numbers where that is the natural output (toy2d)."""
        return None


class Scoring:
    """Scores of a finished run's samples, where the family knows the ground truth."""

    def metrics(self, recipe: Any, x0: torch.Tensor) -> dict[str, float]:  # noqa: ARG002
        """Named scores of the final samples against ground truth."""
        return {}

    def verdicts(self, recipe: Any, x0: torch.Tensor) -> list[dict] | None:  # noqa: ARG002
        """Per sample, whether each active row holds, where the family has a judge."""
        return None
