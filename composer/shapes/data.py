"""Procedural scenes of coloured shapes, and the captions that name one object.

A scene is 1-4 objects on a black 32x32 background, each in its own cell of a
3x3 grid (so positions are unambiguous and objects never touch). An object has
a colour, a shape, a column (left/center/right) and a row (top/middle/bottom).
A caption names ONE object of the scene by a non-empty subset of its four
attributes, e.g. "red", "circle", "red circle", "left", "blue square top".
Word order does not matter. The empty caption is the unconditional row.

Everything is deterministic from a seed (torch.Generator), and rendering is
vectorised over the batch so training never waits for data.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from composer.pictures import from_uint8

SIZE = 32
COLOURS = {  # name -> RGB 0-255, saturated and far apart, on a black background
    "red": (225, 35, 35),
    "green": (40, 190, 50),
    "blue": (45, 85, 235),
    "yellow": (235, 215, 40),
    "magenta": (215, 50, 215),
    "cyan": (40, 215, 225),
}
SHAPES = ("circle", "square", "triangle")
COLUMNS = ("left", "center", "right")
ROWS = ("top", "middle", "bottom")
BACKGROUND = (0, 0, 0)
MAX_OBJECTS = 4
# Attribute kinds, in slot order. Each word belongs to exactly one kind.
KINDS = ("colour", "shape", "column", "row")
KIND_WORDS = {"colour": tuple(COLOURS), "shape": SHAPES, "column": COLUMNS, "row": ROWS}
VOCABULARY: tuple[str, ...] = tuple(w for k in KINDS for w in KIND_WORDS[k])
WORD_KIND = {w: k for k in KINDS for w in KIND_WORDS[k]}
WORD_INDEX = {w: i for k in KINDS for i, w in enumerate(KIND_WORDS[k])}

CELL = SIZE / 3
# The finite set of placements, shared by the training data and the exact model
# (composer/shapes/exact.py): the centre moves off the cell's centre by a quarter
# pixel step in each axis, and the half-size is one of four values, all uniform:
# 7 x 7 x 4 = 196 placements per shape and cell (identical masks are merged by the
# exact model). Reach (3.75) + offset (0.75) leaves >= 1.5 px between neighbours.
OFFSETS = tuple(0.25 * i for i in range(-3, 4))
HALVES = (3.0, 3.25, 3.5, 3.75)
PALETTE = from_uint8(torch.tensor(list(COLOURS.values()), dtype=torch.float32))  # [6, 3] in [-1, 1]


class VocabularyError(ValueError):
    """A caption uses a word outside the vocabulary or repeats a kind."""


@dataclass(frozen=True)
class Scenes:
    """A batch of scenes. Object arrays are [B, MAX_OBJECTS]; `present` masks slots."""
    present: torch.Tensor   # bool
    colour: torch.Tensor    # long, index into COLOURS
    shape: torch.Tensor     # long, index into SHAPES
    cell: torch.Tensor      # long, 0..8 = row * 3 + column
    cx: torch.Tensor        # float pixel centre
    cy: torch.Tensor
    half: torch.Tensor      # float half-size

    @property
    def column(self) -> torch.Tensor:
        return self.cell % 3

    @property
    def row(self) -> torch.Tensor:
        return self.cell // 3

    def objects(self, b: int) -> list[dict]:
        """The objects of scene b as attribute dicts (for tests and the judge)."""
        out = []
        for k in range(MAX_OBJECTS):
            if self.present[b, k]:
                out.append({"colour": list(COLOURS)[int(self.colour[b, k])],
                            "shape": SHAPES[int(self.shape[b, k])],
                            "column": COLUMNS[int(self.column[b, k])],
                            "row": ROWS[int(self.row[b, k])]})
        return out


def sample_scenes(n: int, generator: torch.Generator, min_objects: int = 1,
                  max_objects: int = MAX_OBJECTS) -> Scenes:
    """n random scenes with min..max objects in distinct grid cells."""
    g = generator
    count = torch.randint(min_objects, max_objects + 1, (n,), generator=g)
    cells = torch.rand(n, 9, generator=g).argsort(dim=1)[:, :MAX_OBJECTS]
    present = torch.arange(MAX_OBJECTS)[None, :] < count[:, None]
    colour = torch.randint(0, len(COLOURS), (n, MAX_OBJECTS), generator=g)
    shape = torch.randint(0, len(SHAPES), (n, MAX_OBJECTS), generator=g)
    jitter = torch.tensor(OFFSETS)[torch.randint(0, len(OFFSETS), (n, MAX_OBJECTS, 2), generator=g)]
    half = torch.tensor(HALVES)[torch.randint(0, len(HALVES), (n, MAX_OBJECTS), generator=g)]
    cx = (cells % 3 + 0.5) * CELL + jitter[..., 0]
    cy = (cells // 3 + 0.5) * CELL + jitter[..., 1]
    return Scenes(present, colour, shape, cells, cx, cy, half)


def object_masks(scenes: Scenes) -> torch.Tensor:
    """Boolean masks [B, MAX_OBJECTS, SIZE, SIZE], sampled at pixel centres."""
    coords = torch.arange(SIZE, dtype=torch.float32) + 0.5
    x = coords[None, None, None, :]
    y = coords[None, None, :, None]
    cx, cy, h = (v[..., None, None] for v in (scenes.cx, scenes.cy, scenes.half))
    dx, dy = x - cx, y - cy
    circle = dx ** 2 + dy ** 2 <= h ** 2
    square = (dx.abs() <= h * 0.9) & (dy.abs() <= h * 0.9)
    # Upward isosceles triangle filling its 2h x 2h box: width grows from apex to base.
    rel = (dy + h) / (2 * h)                    # 0 at apex, 1 at base
    triangle = (rel >= 0) & (rel <= 1) & (dx.abs() <= h * rel)
    s = scenes.shape[..., None, None]
    mask = torch.where(s == 0, circle, torch.where(s == 1, square, triangle))
    return mask & scenes.present[..., None, None]


def render(scenes: Scenes) -> torch.Tensor:
    """Images [B, 3, SIZE, SIZE] in [-1, 1]. Objects never overlap (distinct cells)."""
    masks = object_masks(scenes).float()                      # [B, K, H, W]
    colours = PALETTE[scenes.colour]                          # [B, K, 3]
    background = from_uint8(torch.tensor(BACKGROUND, dtype=torch.float32))
    fg = torch.einsum("bkhw,bkc->bchw", masks, colours - background)
    return background[None, :, None, None] + fg


# --- captions -----------------------------------------------------------------

def sample_slots(scenes: Scenes, generator: torch.Generator, p_empty: float = 0.1) -> torch.Tensor:
    """Caption slots [B, 4] (colour, shape, column, row), -1 where a kind is left out.

    One present object is picked per scene and named by a uniformly random
    non-empty subset of its attributes; with probability p_empty the caption is
    empty (classifier-free training).
    """
    n = scenes.present.shape[0]
    g = generator
    weights = scenes.present.float()
    pick = torch.multinomial(weights, 1, generator=g)[:, 0]
    rows = torch.arange(n)
    values = torch.stack([scenes.colour[rows, pick], scenes.shape[rows, pick],
                          scenes.column[rows, pick], scenes.row[rows, pick]], dim=1)
    subset = torch.randint(1, 16, (n,), generator=g)         # non-empty subsets of 4 kinds
    keep = ((subset[:, None] >> torch.arange(4)[None, :]) & 1).bool()
    empty = torch.rand(n, generator=g) < p_empty
    keep &= ~empty[:, None]
    return torch.where(keep, values, torch.full_like(values, -1))


def parse_caption(text: str) -> dict[str, str]:
    """Caption -> {kind: word}. Raises VocabularyError listing the vocabulary."""
    words = text.lower().replace(",", " ").split()
    out: dict[str, str] = {}
    for word in words:
        if word in ("a", "an", "the", "and"):
            continue
        if word not in WORD_KIND:
            raise VocabularyError(f"unknown word {word!r}; the shapes model knows: "
                                  f"{', '.join(VOCABULARY)}")
        kind = WORD_KIND[word]
        if kind in out and out[kind] != word:
            raise VocabularyError(f"{text!r} names two {kind}s ({out[kind]!r} and {word!r}); "
                                  f"a caption describes one object, so use one word per kind "
                                  f"(colour, shape, column, row)")
        out[kind] = word
    return out


def caption_slots(text: str) -> list[int]:
    """Caption -> 4 slot indices (-1 = not named)."""
    parsed = parse_caption(text)
    return [WORD_INDEX[parsed[k]] if k in parsed else -1 for k in KINDS]


def object_matches(obj: dict[str, str], parsed: dict[str, str]) -> bool:
    return all(obj.get(kind) == word for kind, word in parsed.items())
