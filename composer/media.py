"""Pictures in and out: PNGs that carry their recipe, animations, grids."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, PngImagePlugin

from composer.recipe import Recipe, RecipeError

RECIPE_CHUNK = "composer-recipe"


def png_bytes(image: np.ndarray, recipe: Recipe) -> bytes:
    """Encode an RGB uint8 image as PNG with the recipe JSON in a tEXt chunk."""
    info = PngImagePlugin.PngInfo()
    info.add_text(RECIPE_CHUNK, recipe.to_json(indent=None))
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def save_png(image: np.ndarray, recipe: Recipe, path: str | Path) -> Path:
    path = Path(path)
    path.write_bytes(png_bytes(image, recipe))
    return path


def recipe_from_png(source: str | Path | bytes) -> Recipe:
    """Read the recipe a PNG of ours carries; RecipeError if there is none."""
    try:
        image = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
        text = image.text.get(RECIPE_CHUNK) if hasattr(image, "text") else None
    except (OSError, ValueError) as err:
        raise RecipeError(f"recipe: cannot read the image ({err})") from None
    if text is None:
        raise RecipeError("recipe: this image carries no recipe (only PNGs saved by this app do)")
    return Recipe.from_json(text)


def grid(images: np.ndarray, columns: int | None = None) -> np.ndarray:
    """Tile [N, H, W, 3] uint8 images into one picture, nearly square."""
    count, height, width, _ = images.shape
    columns = columns or int(np.ceil(np.sqrt(count)))
    rows = int(np.ceil(count / columns))
    canvas = np.full((rows * height, columns * width, 3), 255, np.uint8)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        canvas[r * height:(r + 1) * height, c * width:(c + 1) * width] = image
    return canvas


def to_uint8(x: np.ndarray) -> np.ndarray:
    """[-1, 1] float images [N, 3, H, W] -> uint8 [N, H, W, 3]."""
    return ((np.clip(x, -1, 1) + 1) * 127.5).round().astype(np.uint8).transpose(0, 2, 3, 1)


def enlarge(image: np.ndarray, min_side: int = 256) -> np.ndarray:
    """Nearest-neighbour upscale so small model outputs stay crisp on screen."""
    factor = max(1, int(np.ceil(min_side / min(image.shape[:2]))))
    return image.repeat(factor, axis=0).repeat(factor, axis=1) if factor > 1 else image


def save_animation(frames: list[np.ndarray], path: str | Path, seconds: float = 4.0) -> Path:
    """An animated GIF of the denoising, last frame held a little longer."""
    pictures = [Image.fromarray(f) for f in frames]
    per_frame = max(20, int(1000 * seconds / max(len(pictures), 1)))
    durations = [per_frame] * (len(pictures) - 1) + [1500]
    pictures[0].save(path, save_all=True, append_images=pictures[1:], duration=durations, loop=0)
    return Path(path)
