"""Model registry: a recipe's `model` string -> a loaded adapter, and an adapter's
family -> its pictures and scoring (the <family>_outputs.py modules beside it).

Built-in names map to loaders; anything that looks like a hub id
("org/name") or a local folder is a Stable Diffusion checkpoint.
"""
from __future__ import annotations

import importlib
import os

import torch

from composer.models.base import ModelAdapter, ModelError
from composer.models.outputs import Pictures, Scoring
from composer.models.sd_outputs import SDPictures
from composer.models.shapes_outputs import ShapesPictures, ShapesScoring
from composer.models.toy2d_outputs import Toy2DPictures, Toy2DScoring

# name -> (module, loader function); modules import lazily so startup stays fast.
BUILTIN_MODELS: dict[str, tuple[str, str]] = {
    "shapes-exact": ("composer.models.shapes_exact", "load_exact"),
    "shapes": ("composer.models.shapes", "load_score"),
    "toy2d-score": ("composer.models.toy2d", "load_score"),
    "toy2d-energy": ("composer.models.toy2d", "load_energy"),
}


def is_sd_reference(name: str) -> bool:
    """A hub id, a folder, or a single-file checkpoint (composer/models/single_file.py)."""
    from composer.models.single_file import SUFFIXES as SINGLE_FILE_SUFFIXES
    return "/" in name or os.path.isdir(name) or name.lower().endswith(SINGLE_FILE_SUFFIXES)


def load_model(name: str, device: torch.device | str | None = None) -> ModelAdapter:
    device = torch.device(device) if device is not None else default_device()
    if name in BUILTIN_MODELS:
        module, loader = BUILTIN_MODELS[name]
        return getattr(importlib.import_module(module), loader)(device)
    if is_sd_reference(name):
        from composer.models.sd import load_sd
        return load_sd(name, device)
    raise ModelError(f"model: unknown model {name!r}; built-in models are "
                     f"{', '.join(BUILTIN_MODELS)}, or give a Stable Diffusion hub id "
                     f"('org/name'), a local folder or a .safetensors file")


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# family -> how its samples are drawn, and scored (Scoring(): nothing to score against).
PICTURES: dict[str, type[Pictures]] = {"toy2d": Toy2DPictures, "shapes": ShapesPictures,
                                       "sd": SDPictures}
SCORING: dict[str, Scoring] = {"toy2d": Toy2DScoring(), "shapes": ShapesScoring(), "sd": Scoring()}


def pictures_of(model: ModelAdapter) -> Pictures:
    """The pictures of this model's samples (previews, maps, final images)."""
    return PICTURES[model.family](model)


def scoring_of(model: ModelAdapter) -> Scoring:
    """The scores of this model's final samples (metrics, per-row verdicts)."""
    return SCORING[model.family]


__all__ = ["BUILTIN_MODELS", "ModelAdapter", "ModelError", "Pictures", "Scoring", "load_model",
           "default_device", "is_sd_reference", "pictures_of", "scoring_of"]
