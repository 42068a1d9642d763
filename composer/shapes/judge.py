"""An analytic judge for shapes images, independent of the learned model.

It segments an RGB uint8 image into objects, says whether the image is a
clean scene of the kind the model was trained on, and whether captions hold:
1. each pixel takes the nearest of the palette colours and the background; a
   pixel far (> COLOUR_TOLERANCE in RGB) from every palette colour and from the
   background is "unclear" and belongs to no object;
2. connected components (4-connectivity) per colour are candidate objects; only
   those of plausible size (MIN_AREA..MAX_AREA pixels, at most MAX_EXTENT wide
   or tall) and compactness (>= MIN_FILL of their box) are objects;
3. shape from geometry: a triangle's centroid sits well below its bounding-box
   centre (its mass is at the base); a square fills its bounding box and its
   corners; anything else compact is a circle;
4. position from the centroid's 3x3 grid cell.

A scene is clean when it holds 1..MAX_OBJECTS objects and at most MAX_STRAY
foreground pixels lie outside them (unclear pixels, fragments, smears, merged
blobs). A caption holds when some object matches every word it names. A
composition is correct only when the scene is clean, every positive caption
holds and no negative one does (`judge`'s "correct"); "captions_hold" is the
looser caption-only verdict, kept so the difference can be reported.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from composer.shapes.data import (BACKGROUND, CELL, COLOURS, COLUMNS, MAX_OBJECTS, ROWS,
                                  object_matches, parse_caption)

MIN_AREA = 12               # rendered objects have 15-49 pixels
MAX_AREA = 80
MAX_EXTENT = 11
MIN_FILL = 0.4
COLOUR_TOLERANCE = 100.0    # RGB distance to the nearest palette colour
# Foreground pixels allowed outside objects in a clean scene. Calibrated in
# tests/test_shapes.py: renders softened by a 0.5 px blur plus noise (sigma 8/255)
# leave at most 4 such pixels; three 2x2 fragments add 12.
MAX_STRAY = 6
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


@dataclass(frozen=True)
class Scene:
    """What the judge sees in one image."""
    objects: list[Found]
    stray: int              # foreground pixels outside every object

    @property
    def clean(self) -> bool:
        return 1 <= len(self.objects) <= MAX_OBJECTS and self.stray <= MAX_STRAY


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


def look(image: np.ndarray) -> Scene:
    """The objects and stray pixels of an RGB uint8 image [H, W, 3] (32x32)."""
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
    return Scene(found, int((labels != 0).sum()) - covered)


def caption_holds(objects: list[Found], caption: str) -> bool:
    parsed = parse_caption(caption)
    return any(object_matches(o.as_dict(), parsed) for o in objects)


def judge(image: np.ndarray, positives: list[str], negatives: list[str] = ()) -> dict:
    """The verdict on one image: per caption, clean scene, caption-only and strict."""
    scene = look(image)
    pos = [caption_holds(scene.objects, c) for c in positives]
    neg = [caption_holds(scene.objects, c) for c in negatives]
    captions_hold = all(pos) and not any(neg)
    return {"positives": pos, "negatives": neg, "clean": scene.clean, "stray": scene.stray,
            "captions_hold": captions_hold, "correct": captions_hold and scene.clean,
            "objects": [o.as_dict() for o in scene.objects]}
