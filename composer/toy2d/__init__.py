"""The 2D lab: the Reduce-Reuse-Recycle 2D setups, small diffusion models
trained on them, and ground truth to score every sampler against.

- `data`: the six component distributions and the three composed targets.
- `net`: the conditional residual MLP (score and energy variants).
- `train`: ``python -m composer.toy2d.train --out assets/toy2d``.
- `lab`: metrics (MMD, support fraction), recipe -> ground truth, scatter images.
"""
from composer.toy2d.data import COMPONENTS, SETUPS
from composer.toy2d.lab import (ground_truth, mmd, mmd2, scatter_image, setup_of,
                                support_fraction)

__all__ = ["COMPONENTS", "SETUPS", "ground_truth", "mmd", "mmd2", "scatter_image", "setup_of",
           "support_fraction"]
