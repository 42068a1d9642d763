"""Pictures in and out: PNGs that carry their recipe, animations, grids."""
from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, PngImagePlugin

from composer.pictures import grid
from composer.recipe import MAX_RECIPE_BYTES, Recipe, RecipeError
from composer.sweep import Sweep

RECIPE_CHUNK = "composer-recipe"
SWEEP_CHUNK = "composer-sweep"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_PNG_BYTES = 16 * 2**20        # what the app accepts as an upload (launch's max_file_size)


def png_bytes(image: np.ndarray, recipe: Recipe | Sweep, chunk: str = RECIPE_CHUNK) -> bytes:
    """Encode an RGB uint8 image as PNG with the recipe (or, under SWEEP_CHUNK, the
    sweep) as JSON in a tEXt chunk."""
    info = PngImagePlugin.PngInfo()
    info.add_text(chunk, recipe.to_json(indent=None))
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def save_png(image: np.ndarray, recipe: Recipe, path: str | Path) -> Path:
    path = Path(path)
    path.write_bytes(png_bytes(image, recipe))
    return path


def recipe_from_png(source: str | Path | bytes) -> Recipe:
    """Read the recipe a PNG of ours carries; RecipeError if there is none.

    Walks the PNG's chunks and never decodes pixels, so a huge or animated
    image costs no more than its bytes; files over MAX_PNG_BYTES are refused
    unread, and compressed text is inflated only up to a recipe's size."""
    if isinstance(source, bytes):
        data = source
    else:
        try:
            with open(source, "rb") as handle:
                data = handle.read(MAX_PNG_BYTES + 1)
        except OSError as err:
            raise RecipeError(f"recipe: cannot read the image ({err.strerror})") from None
    if len(data) > MAX_PNG_BYTES:
        raise RecipeError(f"recipe: the file is larger than {MAX_PNG_BYTES // 2**20} MB")
    if not data.startswith(PNG_SIGNATURE):
        raise RecipeError("recipe: not a PNG file (only PNGs saved by this app carry a recipe)")
    position = len(PNG_SIGNATURE)
    while position + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[position:position + 8])
        body = data[position + 8:position + 8 + length]
        if kind == b"IEND" or len(body) < length:
            break
        text = _chunk_text(kind, body)
        if text is not None:
            return Recipe.from_json(text)
        position += 12 + length                       # length, type, body, CRC
    raise RecipeError("recipe: this image carries no recipe (only PNGs saved by this app do)")


def _chunk_text(kind: bytes, body: bytes) -> str | None:
    """The recipe's text if this is our text chunk (tEXt, zTXt or iTXt), else None."""
    if kind not in (b"tEXt", b"zTXt", b"iTXt"):
        return None
    key, _, rest = body.partition(b"\0")
    if key != RECIPE_CHUNK.encode():
        return None
    if kind == b"tEXt":
        return rest.decode("latin-1")
    if kind == b"zTXt":
        return _inflate(rest[1:]).decode("latin-1")
    compressed, rest = rest[:1] == b"\1", rest[2:]    # flag, method, then language and
    _, _, rest = rest.partition(b"\0")                 # translated keyword, each NUL-ended
    _, _, text = rest.partition(b"\0")
    try:
        return (_inflate(text) if compressed else text).decode("utf-8")
    except UnicodeDecodeError:
        raise RecipeError("recipe: the image's recipe is not UTF-8 text") from None


def _inflate(data: bytes) -> bytes:
    try:
        return zlib.decompressobj().decompress(data, MAX_RECIPE_BYTES + 1)
    except zlib.error:
        raise RecipeError("recipe: the image's recipe chunk is corrupt") from None


def save_animation(frames: list[np.ndarray], path: str | Path, seconds: float = 4.0) -> Path:
    """An animated GIF of the denoising, last frame held a little longer."""
    pictures = [Image.fromarray(f) for f in frames]
    per_frame = max(20, int(1000 * seconds / max(len(pictures), 1)))
    durations = [per_frame] * (len(pictures) - 1) + [1500]
    pictures[0].save(path, save_all=True, append_images=pictures[1:], duration=durations, loop=0)
    return Path(path)


def sweep_cell(images: tuple[np.ndarray, ...], metrics: dict) -> tuple[np.ndarray, str]:
    """A finished cell's picture (its images tiled) and caption (its metrics), the same
    in the app and the CLI, so a sweep saved from one re-renders alike in the other."""
    return grid(np.stack(images)), ", ".join(f"{k} {v:.2f}" for k, v in metrics.items())


# PIL's built-in font has no Greek: 'α' would be drawn as a box.
SPELLED = str.maketrans({"α": "alpha", "β": "beta", "κ": "kappa", "σ": "sigma", "ε": "eps"})


def labelled_grid(cells: list[tuple[tuple[int, int], np.ndarray, str]], row_labels: list[str],
                  column_labels: list[str], cell_side: int = 192) -> np.ndarray:
    """A sweep's picture: each cell's image (scaled to `cell_side`, nearest) with a
    caption under it, row labels on the left and column labels on top."""
    rows, columns = len(row_labels), len(column_labels)
    left, top, caption, gap = 150, 24, 28, 6
    width = left + columns * (cell_side + gap)
    height = top + rows * (cell_side + caption + gap)
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    for j, label in enumerate(column_labels):
        draw.text((left + j * (cell_side + gap) + 4, 6), label.translate(SPELLED), fill="black")
    for i, label in enumerate(row_labels):
        draw.text((4, top + i * (cell_side + caption + gap) + cell_side // 2),
                  label.translate(SPELLED), fill="black")
    for (i, j), image, text in cells:
        picture = Image.fromarray(image)
        scale = cell_side / max(picture.size)
        picture = picture.resize((max(1, round(picture.width * scale)), max(1, round(picture.height * scale))),
                                 Image.NEAREST)
        x, y = left + j * (cell_side + gap), top + i * (cell_side + caption + gap)
        canvas.paste(picture, (x, y))
        draw.text((x + 2, y + cell_side + 4), text.translate(SPELLED), fill="black")
    return np.asarray(canvas)
