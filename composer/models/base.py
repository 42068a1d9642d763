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

Pictures and scores of the samples are not the adapter's: each family's live beside
it (outputs.py says where; `composer.models.pictures_of` / `scoring_of` find them).
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any

import torch


def eps_from_v(v: torch.Tensor, x: torch.Tensor, alpha_bar: float) -> torch.Tensor:
    """eps from a v-prediction (Salimans & Ho 2022): with x = sqrt(abar) x0 + sigma eps
    and v = sqrt(abar) eps - sigma x0, eps = sqrt(abar) v + sigma x."""
    return math.sqrt(alpha_bar) * v + math.sqrt(1.0 - alpha_bar) * x


class ModelError(ValueError):
    """A model cannot be loaded or cannot do what the recipe asks. `detail` says what was
    found (a folder's pipeline class, the library's words) for the server's own user, the
    CLI and the log, never for a visitor: the model box is no way to probe the server's
    folders."""

    def __init__(self, message: str, detail: str = ""):
        super().__init__(message)
        self.detail = detail


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
    # Whether a run judges its samples by the model's own lift (composer.lift) unless
    # asked otherwise: a few percent more evaluations on the small models; off where a
    # network evaluation is expensive (Stable Diffusion).
    lift_by_default: bool = True
    # 2D models: the half-width of the square their pictures show (density maps).
    plane: float | None = None
    # Recipe defaults: scale, steps, and the MCMC knobs of SamplerSpec.
    defaults: dict[str, Any] = {}
    device: torch.device = torch.device("cpu")
    dtype: torch.dtype = torch.float32
    # Flow-matching models (SD3, FLUX): their own scheduler's config, which the sampler
    # flow_euler steps with on their velocities (`flow_scheduler`, `velocity`); None elsewhere.
    flow_scheduler_config: dict[str, Any] | None = None

    def check_concept(self, text: str) -> None:
        """Raise ModelError naming what is allowed when `text` cannot be used."""
        if self.concept_choices is not None and text not in self.concept_choices:
            raise ModelError(f"unknown concept {text!r}; valid concepts are "
                             f"{', '.join(self.concept_choices)}")

    # Most models have nothing to say: these two defaults ignore their input.
    def concept_warnings(self, text: str) -> list[str]:  # noqa: ARG002
        """Things worth telling the user about a usable concept (e.g. truncation)."""
        return []

    def recipe_notes(self, recipe: Any) -> list[str]:  # noqa: ARG002
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
