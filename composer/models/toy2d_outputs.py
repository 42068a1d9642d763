"""The 2D lab's pictures and scores (composer/toy2d/lab.py draws and measures).

Pictures are scatters over the plane, the target's support shaded (or outlined
under a density map) where the recipe is one of the RRR setups; scores are MMD
against exact samples and the share of samples on each support.
"""
from __future__ import annotations

import numpy as np
import torch

from composer.models.outputs import Pictures, Scoring
from composer.toy2d.lab import ground_truth, mmd2, scatter_image, setup_of, support_fraction


def as_points(x0: torch.Tensor) -> np.ndarray:
    """Samples [B, 2] as plain numbers."""
    return x0.detach().reshape(-1, 2).cpu().numpy()


class Toy2DPictures(Pictures):
    def preview(self, x0: torch.Tensor) -> np.ndarray:
        return scatter_image(as_points(x0))

    def density_pictures(self, recipe, density: torch.Tensor,
                         x: torch.Tensor) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        """Each over its own support outlined: the recipe's target where it is one of
        the RRR setups, each concept's component."""
        maps = density.cpu().numpy()
        composed = scatter_image(as_points(x), setup_of(recipe), density=maps[0])
        return composed, tuple(scatter_image(None, c.text, density=m)
                               for c, m in zip(recipe.active_concepts, maps[1:]))

    def result_images(self, recipe, x0: torch.Tensor) -> list[np.ndarray]:
        """The final scatter over the shaded support of the recipe's target, if known."""
        return [scatter_image(as_points(x0), setup_of(recipe))]

    def points(self, x0: torch.Tensor) -> np.ndarray:
        return as_points(x0)


class Toy2DScoring(Scoring):
    def metrics(self, recipe, x0: torch.Tensor) -> dict[str, float]:
        """For the three RRR setups, MMD (RBF, h = 0.1) against 1000 exact samples and
        the fraction in the target's support; for every composition, the fraction of
        samples in each active concept's own support ("in <concept>")."""
        xy = as_points(x0)
        per_concept = {f"in {c.text}": support_fraction(xy, c.text)
                       for c in recipe.active_concepts}
        truth = ground_truth(recipe, n=1000, seed=recipe.seed + 1)
        if truth is None:
            return per_concept
        if len(xy) < 2:      # MMD needs two samples; the adapter's recipe_notes says so up front
            return {"in_support": support_fraction(xy, setup_of(recipe)), **per_concept}
        value = mmd2(xy, truth)
        return {"mmd": max(value, 0.0) ** 0.5, "mmd2": value,
                "in_support": support_fraction(xy, setup_of(recipe)), **per_concept}
