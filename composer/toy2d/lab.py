"""Scoring and drawing for the 2D lab.

- `ground_truth(recipe, n)`: exact samples of what a recipe should produce, for
  the three RRR setups (`setup_of` names which one), else None.
- `mmd2` / `mmd`: maximum mean discrepancy with a Gaussian RBF kernel
  k(x, y) = exp(-|x - y|^2 / (2 h^2)), fixed bandwidth h = 0.1 (`BANDWIDTH`),
  unbiased U-statistic estimate of MMD^2 (Gretton et al. 2012, eq. 3); `mmd` is
  sqrt(max(MMD^2, 0)).
- `support_fraction`: the share of samples inside the target's support (for the
  ring, disks of 3 std around the modes).
- `scatter_image`: an RGB uint8 scatter of samples over the target's support.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image, ImageDraw

from composer.toy2d.data import COMPONENTS, SETUPS, Distribution

BANDWIDTH = 0.1
EXTENT = 1.25          # images show [-EXTENT, EXTENT]^2
SUPPORT_COLOUR = (255, 224, 178)
OUTLINE_COLOUR = (230, 120, 0)
DENSITY_COLOUR = (120, 60, 160)

# setup -> (operators, frozenset of (text, negate)) that reproduce it.
_SIGNATURES = {
    "product": (("product",), frozenset({("ring", False), ("bar", False)})),
    "mixture": (("mixture",), frozenset({("left_bar", False), ("right_bar", False)})),
    "negation": (("product", "and"), frozenset({("big_box", False), ("small_box", True)})),
}


def setup_of(recipe) -> str | None:
    """Which RRR setup a recipe is ('product', 'mixture', 'negation'), or None.

    The ground truth is exact only for the weights the setup uses: for the
    product, scale * weight = 1 on both rows (q_ring^w has a different std);
    for the mixture, equal weights; for the negation any weight and beta > 0,
    under every negation form (the product's ratio q_big^(1+beta) / q_small^beta
    and its bounded form, and the 'and' operator's q_big (q_u / q_small)^beta):
    for exact uniforms each is the big box minus the small one, which is what
    the user asks for.
    """
    concepts = recipe.active_concepts
    signature = frozenset((c.text, c.negate) for c in concepts)
    if len(signature) != len(concepts):
        return None
    scale = 1.0 if recipe.scale is None else recipe.scale
    for name, (operators, wanted) in _SIGNATURES.items():
        if recipe.operator not in operators or signature != wanted:
            continue
        if name == "product" and any(not math.isclose(scale * c.weight, 1.0) for c in concepts):
            return None
        if name == "mixture" and not math.isclose(concepts[0].weight, concepts[1].weight):
            return None
        if name == "negation" and (scale == 0 or any(c.coefficient == 0 for c in concepts)):
            return None
        return name
    return None


def ground_truth(recipe, n: int = 1000, seed: int = 0) -> torch.Tensor | None:
    """n exact samples of the recipe's target, or None if it is not a known setup."""
    name = setup_of(recipe)
    if name is None:
        return None
    return SETUPS[name].sample(n, torch.Generator().manual_seed(seed))


def _as_tensor(x) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x, dtype=np.float64) if not torch.is_tensor(x) else x
                           ).double().reshape(-1, 2)


def mmd2(x, y, bandwidth: float = BANDWIDTH) -> float:
    """Unbiased MMD^2 between samples x [n, 2] and y [m, 2] (RBF kernel, bandwidth h)."""
    x, y = _as_tensor(x), _as_tensor(y)
    n, m = len(x), len(y)
    if n < 2 or m < 2:
        raise ValueError(f"mmd2: needs at least 2 samples on each side, got {n} and {m}")

    def kernel(a, b):
        return torch.exp(-torch.cdist(a, b).pow(2) / (2 * bandwidth ** 2))
    kxx, kyy, kxy = kernel(x, x), kernel(y, y), kernel(x, y)
    xx = (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
    yy = (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    return float(xx + yy - 2 * kxy.mean())


def mmd(x, y, bandwidth: float = BANDWIDTH) -> float:
    """sqrt(max(MMD^2, 0)): the unbiased estimate on the distance scale."""
    return math.sqrt(max(mmd2(x, y, bandwidth), 0.0))


def support_fraction(x, target: str | Distribution) -> float:
    """Share of samples x [n, 2] inside the support of a setup or component name."""
    if isinstance(target, str):
        if target not in SETUPS and target not in COMPONENTS:
            raise ValueError(f"target: unknown {target!r}; choose one of "
                             f"{', '.join(list(SETUPS) + list(COMPONENTS))}")
        target = SETUPS.get(target) or COMPONENTS[target]
    x = _as_tensor(x).float()
    x = x[torch.isfinite(x).all(1)] if len(x) else x
    return float(target.support(x).float().mean()) if len(x) else 0.0


def scatter_image(points, target: str | Distribution | None = None, size: int = 256,
                  extent: float = EXTENT, density: np.ndarray | None = None) -> np.ndarray:
    """RGB uint8 [size, size, 3]: samples (blue dots) over the target's support
    (shaded), with the [-1, 1]^2 frame and the axes drawn faintly, and a legend.
    With `density` ([G, G] over the same square, row 0 at the top) the density is the
    shading, relative to its peak, and the target's support is outlined."""
    image = np.full((size, size, 3), 255, np.uint8)
    if density is not None:
        relative = np.asarray(Image.fromarray((density / max(density.max(), 1e-30)).astype(
            np.float32)).resize((size, size), Image.BILINEAR))[..., None]
        image = (255 - relative * (255 - np.array(DENSITY_COLOUR))).round().astype(np.uint8)
    if target is not None:
        if isinstance(target, str):
            target = SETUPS.get(target) or COMPONENTS[target]
        centres = (np.arange(size) + 0.5) / size * 2 * extent - extent
        gx, gy = np.meshgrid(centres, -centres)          # row 0 is the top (largest y)
        grid = torch.from_numpy(np.stack([gx.ravel(), gy.ravel()], 1)).float()
        inside = target.support(grid).numpy().reshape(size, size)
        if density is None:
            image[inside] = SUPPORT_COLOUR
        else:
            edge = inside & ~(np.roll(inside, 1, 0) & np.roll(inside, -1, 0)
                              & np.roll(inside, 1, 1) & np.roll(inside, -1, 1))
            image[edge] = OUTLINE_COLOUR
    canvas = Image.fromarray(image)
    draw = ImageDraw.Draw(canvas)

    def to_pixel(px, py):
        return ((px + extent) / (2 * extent) * size, (extent - py) / (2 * extent) * size)
    grey = (200, 200, 200)
    draw.line([to_pixel(-extent, 0), to_pixel(extent, 0)], fill=grey)
    draw.line([to_pixel(0, -extent), to_pixel(0, extent)], fill=grey)
    draw.rectangle([to_pixel(-1, 1), to_pixel(1, -1)], outline=grey)
    xy = np.zeros((0, 2)) if points is None else _as_tensor(points).numpy()
    xy = xy[np.isfinite(xy).all(1)]
    radius = max(1.0, size / 256)
    for px, py in xy:
        cx, cy = to_pixel(px, py)
        if -radius <= cx <= size + radius and -radius <= cy <= size + radius:
            draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=(31, 90, 200))
    entries = [((31, 90, 200), "samples")] if points is not None else []
    if density is not None:
        entries.append((DENSITY_COLOUR, "density (rel. to peak)"))
    if target is not None:
        entries.append((SUPPORT_COLOUR if density is None else OUTLINE_COLOUR, "target support"))
    _legend(draw, size, entries)
    return np.asarray(canvas, dtype=np.uint8).copy()


def _legend(draw: ImageDraw.ImageDraw, size: int, entries: list[tuple[tuple, str]]) -> None:
    """Bottom-left key: what the dots and the shading are."""
    line = 12
    top = size - 4 - line * len(entries)
    for k, (colour, text) in enumerate(entries):
        y = top + k * line
        draw.rectangle([4, y + 2, 12, y + 10], fill=colour, outline=(120, 120, 120))
        draw.text((16, y), text, fill=(60, 60, 60))
