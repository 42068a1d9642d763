"""An analytic judge for shapes images, independent of the learned model.

It segments an RGB uint8 image into objects and says whether captions hold:
1. each pixel takes the nearest of the palette colours and the background; a
   pixel far (> COLOUR_TOLERANCE in RGB) from every palette colour and from the
   background is "unclear" and belongs to no object;
2. connected components (4-connectivity) per colour are candidate objects; only
   those of plausible size (MIN_AREA..MAX_AREA pixels, at most MAX_EXTENT wide
   or tall) and compactness (>= MIN_FILL of their box) count, so noise and
   smears do not;
3. shape from geometry: a triangle's centroid sits well below its bounding-box
   centre (its mass is at the base); a square fills its bounding box and its
   corners; anything else compact is a circle;
4. position from the centroid's 3x3 grid cell.
A caption holds when some object matches every word it names.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from composer.shapes.data import (BACKGROUND, CELL, COLOURS, COLUMNS, ROWS, object_matches,
                                  parse_caption)

MIN_AREA = 12               # rendered objects have 15-49 pixels
MAX_AREA = 80
MAX_EXTENT = 11
MIN_FILL = 0.4
COLOUR_TOLERANCE = 100.0    # RGB distance to the nearest palette colour
CLEAN_SHARE = 0.9           # "clean" image: this share of non-background pixels is in objects
TRIANGLE_ASYMMETRY = 0.08   # (centroid y - box centre y) / box height
SQUARE_FILL = 0.93          # area / box area
SQUARE_CORNERS_FILL = 0.85  # fill that counts as square when >= 3 box corners are set
_REFERENCE = np.array([BACKGROUND] + list(COLOURS.values()), dtype=np.float32)  # [7, 3]
_NAMES = list(COLOURS)


@dataclass(frozen=True)
class Found:
    colour: str
    shape: str
    column: str
    row: str
    area: int

    def as_dict(self) -> dict[str, str]:
        return {"colour": self.colour, "shape": self.shape, "column": self.column, "row": self.row}


def colour_labels(image: np.ndarray) -> np.ndarray:
    """[H, W] index: 0 background, 1.. palette colour (nearest in RGB), -1 unclear."""
    pixels = image.astype(np.float32)[..., None, :]                  # [H, W, 1, 3]
    distance = np.sqrt(((pixels - _REFERENCE) ** 2).sum(-1))          # [H, W, 7]
    labels = distance.argmin(-1)
    unclear = (labels > 0) & (distance.min(-1) > COLOUR_TOLERANCE)
    return np.where(unclear, -1, labels)


def classify_shape(mask: np.ndarray) -> str:
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max(), xs.min(), xs.max()
    height, width = y1 - y0 + 1, x1 - x0 + 1
    fill = len(ys) / (height * width)
    asymmetry = (ys.mean() - (y0 + y1) / 2) / height
    if asymmetry > TRIANGLE_ASYMMETRY:
        return "triangle"
    corners = int(mask[y0, x0]) + int(mask[y0, x1]) + int(mask[y1, x0]) + int(mask[y1, x1])
    if fill >= SQUARE_FILL or (corners >= 3 and fill >= SQUARE_CORNERS_FILL):
        return "square"
    return "circle"


def segment(image: np.ndarray) -> list[Found]:
    """Objects in an RGB uint8 image [H, W, 3] (32x32)."""
    return _segment(image)[0]


def _segment(image: np.ndarray) -> tuple[list[Found], float]:
    """Objects, and the share of non-background pixels that belong to them."""
    labels = colour_labels(image)
    found, covered = [], 0
    for index, name in enumerate(_NAMES, start=1):
        components, count = ndimage.label(labels == index)
        for c in range(1, count + 1):
            mask = components == c
            area = int(mask.sum())
            if not MIN_AREA <= area <= MAX_AREA:
                continue
            ys, xs = np.nonzero(mask)
            height, width = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
            if max(height, width) > MAX_EXTENT or area < MIN_FILL * height * width:
                continue
            covered += area
            column = min(2, int((xs.mean() + 0.5) // CELL))
            row = min(2, int((ys.mean() + 0.5) // CELL))
            found.append(Found(name, classify_shape(mask), COLUMNS[column], ROWS[row], area))
    foreground = int((labels != 0).sum())
    return found, (covered / foreground if foreground else 1.0)


def caption_holds(objects: list[Found], caption: str) -> bool:
    parsed = parse_caption(caption)
    return any(object_matches(o.as_dict(), parsed) for o in objects)


def judge(image: np.ndarray, positives: list[str], negatives: list[str] = ()) -> dict:
    """Whether every positive caption holds and no negative caption does."""
    objects, share = _segment(image)
    pos = [caption_holds(objects, c) for c in positives]
    neg = [caption_holds(objects, c) for c in negatives]
    return {"positives": pos, "negatives": neg,
            "correct": all(pos) and not any(neg), "objects": [o.as_dict() for o in objects],
            "clean": share >= CLEAN_SHARE}
