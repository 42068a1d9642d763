"""The embedded "shapes" model: 32x32 scenes of coloured shapes, offline on a CPU.

A concept is a caption naming one object by some of its attributes, e.g.
"red", "circle", "red circle", "left", "blue square top" (see
composer/shapes/data.py for the vocabulary). Weights ship in assets/shapes/
(MODEL_CARD.md there says how they were trained).

Samples are [3, 32, 32] in [-1, 1]; their pictures and the judge's scores live
beside this module, in shapes_outputs.py (shared by `shapes-exact`).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file

from composer.knobs import family_defaults
from composer.models.base import ModelAdapter, ModelError, eps_from_v
from composer.shapes.data import VOCABULARY, VocabularyError, caption_slots
from composer.shapes.model import SCHEDULER_CONFIG, ShapesConfig, ShapesDenoiser

ASSETS = Path(__file__).resolve().parents[2] / "assets" / "shapes"


def assets_dir() -> Path:
    return Path(os.environ.get("COMPOSER_SHAPES_DIR", ASSETS))


class ShapesFamily(ModelAdapter):
    """What both shapes models share: captions, sample shape, schedule and budgets
    (their pictures and judge: shapes_outputs.py)."""
    family = "shapes"
    sample_shape = (3, 32, 32)
    vocabulary = VOCABULARY
    max_samples = 16
    # The README's Budgets table gives the time it stands for on the 2-core CPU.
    max_evaluations = 100_000
    scheduler_config = dict(SCHEDULER_CONFIG)
    # The MCMC knobs' defaults (composer/knobs.py): ULA/U-HMC step 0.1 keeps moves well
    # inside the reverse step's own noise; MALA and HMC adapt theirs toward a target
    # acceptance (at a fixed 0.1 they accepted 96-100%, so the Metropolis test never acted).
    mcmc_defaults = family_defaults("shapes")

    def check_concept(self, text: str) -> None:
        try:
            caption_slots(text)
        except VocabularyError as err:
            raise ModelError(str(err)) from None


class ShapesModel(ShapesFamily):
    """The learned network (composer/shapes/model.py), weights in assets/shapes/."""
    description = "learned network"
    has_energy = False
    # The scale is chosen per checkpoint by the judge: config.json's "sampling" overrides it.
    defaults = {"scale": 5.0, "steps": 50, **ShapesFamily.mcmc_defaults}

    def __init__(self, folder: str | Path | None = None, device: torch.device | str = "cpu"):
        folder = Path(folder) if folder is not None else assets_dir()
        weights, config_path = folder / "shapes.safetensors", folder / "config.json"
        if not weights.exists() or not config_path.exists():
            raise ModelError(f"model: the shapes weights are missing from {folder} "
                             f"(expected shapes.safetensors and config.json); train them with "
                             f"`python -m composer.shapes.train --out {folder}`")
        meta = json.loads(config_path.read_text())
        self.meta = meta
        self.device = torch.device(device)
        self.scheduler_config = dict(meta["scheduler"])
        self.net = ShapesDenoiser(ShapesConfig(**meta["model"]))
        self.net.load_state_dict(load_file(str(weights)))
        self.net.to(self.device).eval().requires_grad_(False)
        self.prediction = meta.get("prediction", "epsilon")
        self.defaults = {**ShapesModel.defaults, **meta.get("sampling", {})}
        self._cache: dict[str, torch.Tensor] = {}

    # --- concepts -----------------------------------------------------------
    def encode(self, texts: tuple[str, ...]) -> torch.Tensor:
        """Text conditioning [rows, 1 + tokens, dim], one per row; cached per caption."""
        missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if missing:
            for text in missing:
                self.check_concept(text)
            slots = torch.tensor([caption_slots(t) for t in missing], device=self.device)
            with torch.no_grad():
                embedded = self.net.text(slots)
            self._cache.update(zip(missing, embedded))
        return torch.stack([self._cache[t] for t in texts])

    # --- the model ----------------------------------------------------------
    def predict(self, x, t, alpha_bar, cond, with_energy=False):
        per_sample = cond[:, None].expand(-1, x.shape[0], *cond.shape[1:])
        return self.predict_per_sample(x, t, alpha_bar, per_sample, with_energy)

    @torch.no_grad()
    def predict_per_sample(self, x, t, alpha_bar, cond, with_energy=False):
        """As `predict`, with one conditioning per row and sample: cond [rows, B, ...]."""
        if with_energy:
            raise ModelError("model: 'shapes' is score-parameterised and has no energies")
        rows, batch = cond.shape[:2]
        t = torch.as_tensor(t, dtype=torch.float32, device=self.device).reshape(-1)
        t = t.expand(batch) if t.numel() == 1 else t
        xs = x.to(self.device, self.dtype).repeat(rows, 1, 1, 1)          # row-major: [rows*B]
        eps = self.eps(xs, t.repeat(rows), alpha_bar, cond.reshape(rows * batch, *cond.shape[2:]))
        return eps.reshape(rows, batch, *self.sample_shape), None

    def eps(self, x: torch.Tensor, t: torch.Tensor, alpha_bar: float, text: torch.Tensor) -> torch.Tensor:
        """The network's output as eps (a v-prediction is converted)."""
        out = self.net(x, t, text=text)
        return eps_from_v(out, x, alpha_bar) if self.prediction == "v" else out


def load_score(device: torch.device | str = "cpu") -> ShapesModel:
    return ShapesModel(device=device)
