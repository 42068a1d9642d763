"""What every model family answers to the engine.

Conventions shared by all adapters:
- The forward process is variance preserving: x_t = sqrt(abar_t) x_0 + sigma_t eps,
  sigma_t = sqrt(1 - abar_t). Adapters always return epsilon predictions
  (v-prediction checkpoints convert inside their adapter).
- `predict` returns detached tensors (energy adapters enable grad inside) and
  answers every conditioning row in ONE batched call: the result has a
  leading axis of len(texts), the rows in the order they were encoded.
- Energies are in nats: U(x, t) = -log p_t(x) + const, so eps = sigma_t * grad_x U.
- The empty text "" is the unconditional row.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any

import numpy as np
import torch

from composer.pictures import grid


def eps_from_v(v: torch.Tensor, x: torch.Tensor, alpha_bar: float) -> torch.Tensor:
    """eps from a v-prediction (Salimans & Ho 2022): with x = sqrt(abar) x0 + sigma eps
    and v = sqrt(abar) eps - sigma x0, eps = sqrt(abar) v + sigma x."""
    return math.sqrt(alpha_bar) * v + math.sqrt(1.0 - alpha_bar) * x


class ModelError(ValueError):
    """A model cannot be loaded or cannot do what the recipe asks."""


class ModelAdapter(ABC):
    family: str = ""                   # "toy2d", "shapes" or "sd"
    description: str = ""              # what it is, in a few words, for the model picker
    has_energy: bool = False           # exact energies (mixture, exact Metropolis)
    sample_shape: tuple[int, ...] = ()
    scheduler_config: dict[str, Any] = {}
    concept_choices: tuple[str, ...] | None = None   # fixed names, e.g. toy2d components
    vocabulary: tuple[str, ...] | None = None        # allowed words, e.g. shapes
    max_samples: int = 16
    # Network rows (one sample through the network for one conditioning row) one
    # run may cost, sized for a CPU; None: no cap. See engine.cost and docs/recipe.md.
    max_evaluations: int | None = None
    # 2D models: the half-width of the square their pictures show (density maps).
    plane: float | None = None
    # Recipe defaults: scale, steps, and the MCMC knobs of SamplerSpec.
    defaults: dict[str, Any] = {}
    device: torch.device = torch.device("cpu")
    dtype: torch.dtype = torch.float32

    def check_concept(self, text: str) -> None:
        """Raise ModelError naming what is allowed when `text` cannot be used."""
        if self.concept_choices is not None and text not in self.concept_choices:
            raise ModelError(f"unknown concept {text!r}; valid concepts are "
                             f"{', '.join(self.concept_choices)}")

    def concept_warnings(self, text: str) -> list[str]:
        """Things worth telling the user about a usable concept (e.g. truncation)."""
        return []

    def recipe_notes(self, recipe: Any) -> list[str]:
        """Things worth telling the user about a filled-in recipe before it runs
        (e.g. a metric that this run is too small for)."""
        return []

    @abstractmethod
    def encode(self, texts: tuple[str, ...]) -> Any:
        """Conditioning for these rows (cached by the adapter)."""

    @abstractmethod
    def predict(self, x: torch.Tensor, t: torch.Tensor | float, alpha_bar: float, cond: Any,
                with_energy: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """eps of shape [rows, B, *sample_shape], and energies [rows, B] in nats
        when `with_energy` (only if has_energy)."""

    @abstractmethod
    def preview(self, x0: torch.Tensor) -> np.ndarray:
        """Cheap RGB uint8 picture [H, W, 3] of a batch of predicted clean samples."""

    def preview_tiles(self, x0: torch.Tensor) -> np.ndarray | None:
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
        alpha = 0.7 * heat[:, 0, :, :, None].numpy()
        red = np.array([230, 30, 30], np.float32)
        return grid((tiles * (1 - alpha) + red * alpha).round().astype(np.uint8))

    def density_pictures(self, recipe: Any, density: torch.Tensor,
                         x: torch.Tensor) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        """2D models: the composed density (density[0], with the points x) and each
        active concept's own (density[1:]) as heat maps over the plane."""
        raise NotImplementedError

    def decode(self, x0: torch.Tensor) -> list[np.ndarray]:
        """Final RGB uint8 pictures, one per sample (toy2d: one scatter of all)."""
        return [self.preview(x0)]

    def result_images(self, recipe: Any, x0: torch.Tensor) -> list[np.ndarray]:
        """Pictures of a finished run; the recipe lets a model draw its ground truth."""
        return self.decode(x0)

    def metrics(self, recipe: Any, x0: torch.Tensor) -> dict[str, float]:
        """Scores of final samples against ground truth, where the model knows it."""
        return {}

    def verdicts(self, recipe: Any, x0: torch.Tensor) -> list[dict] | None:
        """Per sample, whether each active row holds, where the model has a judge."""
        return None

    def points(self, x0: torch.Tensor) -> np.ndarray | None:
        """Samples as plain numbers where that is the natural output (toy2d)."""
        return None
