"""Pictures as arrays: model outputs in [-1, 1] to uint8, tiling, crisp enlarging.

It imports nothing of the project, so every layer (models included) may use it.
"""
from __future__ import annotations

import numpy as np
import torch


def to_uint8(images: torch.Tensor | np.ndarray, channels_last: bool = False) -> np.ndarray:
    """[N, C, H, W] (or [N, H, W, C] with channels_last) in [-1, 1] -> [N, H, W, C] uint8."""
    x = images.detach().float().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    # In diffusers' order of operations (VaeImageProcessor): the pipelines' very pixels.
    x = (np.clip(x * 0.5 + 0.5, 0, 1) * 255).round().astype(np.uint8)
    return x if channels_last else x.transpose(0, 2, 3, 1)


def from_uint8(values):
    """uint8 colour values (a tensor or an array) -> floats in [-1, 1]: to_uint8's inverse."""
    return values / 127.5 - 1.0


def grid(images: np.ndarray, columns: int | None = None, gutter: int = 2) -> np.ndarray:
    """Tile [N, H, W, 3] uint8 images into one picture, nearly square, with white
    gutters between them so the samples read as separate pictures."""
    count, height, width, _ = images.shape
    columns = columns or int(np.ceil(np.sqrt(count)))
    rows = int(np.ceil(count / columns))
    gutter = gutter if count > 1 else 0
    canvas = np.full((rows * (height + gutter) - gutter, columns * (width + gutter) - gutter, 3),
                     255, np.uint8)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        top, left = r * (height + gutter), c * (width + gutter)
        canvas[top:top + height, left:left + width] = image
    return canvas


def enlarge(image: np.ndarray, min_side: int = 256) -> np.ndarray:
    """Nearest-neighbour upscale so small model outputs stay crisp on screen."""
    factor = max(1, int(np.ceil(min_side / min(image.shape[:2]))))
    return image.repeat(factor, axis=0).repeat(factor, axis=1) if factor > 1 else image
