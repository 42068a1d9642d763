"""Stable Diffusion's pictures: the cheap linear latent -> RGB preview during a run,
and the VAE decode (through the adapter, which holds the VAE) for results.
No scoring: there is no ground truth for a prompt.
"""
from __future__ import annotations

import numpy as np
import torch

from composer.models.outputs import Pictures
from composer.pictures import grid, to_uint8

# SD 1.x latent channels 0-3 (rows) -> R, G, B (columns): the linear preview widely used
# by SD front ends (docs/sd.md).
LATENT_RGB = ((0.3512, 0.2297, 0.3227),
              (0.3250, 0.4974, 0.2350),
              (-0.2829, 0.1762, 0.2721),
              (-0.2120, -0.2616, -0.7177))


class SDPictures(Pictures):
    def preview_tiles(self, x0: torch.Tensor) -> np.ndarray:
        """Linear latent -> RGB of each sample, uint8 [B, h, w, 3] at latent size."""
        weights = torch.tensor(LATENT_RGB, dtype=torch.float32)
        rgb = torch.einsum("bchw,cr->bhwr", x0.detach().float().cpu()[:, :4], weights)
        return to_uint8(rgb, channels_last=True)

    def preview(self, x0: torch.Tensor) -> np.ndarray:
        """The latent previews tiled in a grid, uint8 [H, W, 3]."""
        return grid(self.preview_tiles(x0))

    def decode(self, x0: torch.Tensor) -> list[np.ndarray]:
        """VAE decode, one uint8 RGB image per sample."""
        return list(to_uint8(self.model.vae_decode(x0)))
