"""Pictures and files the page hands out, all inside Gradio's cache (so Gradio
serves them without copying) and under its disk budget (ui/disk.py)."""
from __future__ import annotations

import base64
import hashlib
import io
import os
import re
import tempfile
import threading
from pathlib import Path

import numpy as np
from gradio.utils import get_upload_folder
from PIL import Image

from composer.facade import Result
from composer.media import SWEEP_CHUNK, png_bytes, save_animation
from composer.pictures import enlarge, grid
from composer.recipe import Recipe
from composer.sweep import Sweep
from ui.disk import DiskBudget, budget_bytes
from ui.frames import spread

DISPLAY_SIDE = 256
THUMB_SIDE = 96
EXPORT_SIDE = 512          # saved PNGs and GIFs: small models upscaled (nearest) to about this
CACHE_DIR = Path(get_upload_folder())
RUNS_DIR = CACHE_DIR / "composer-runs"
PICTURES_DIR = CACHE_DIR / "composer-pictures"
DISK = DiskBudget(CACHE_DIR, budget_bytes())
# Every picture streamed to a page is a file in Gradio's cache: a long run streams at
# most this many frames (evenly spaced; all stay scrubbable), and its GIF holds at most
# GIF_FRAMES (4 seconds at 25 per second).
STREAMED_FRAMES = 200
GIF_FRAMES = 100


def display(image: np.ndarray, side: int = DISPLAY_SIDE) -> np.ndarray:
    return enlarge(image, side)


def page_picture(image: np.ndarray, side: int = DISPLAY_SIDE) -> str:
    """A picture for the page, as a file of ours: see picture_file."""
    return picture_file(display(image, side))


def picture_file(image: np.ndarray) -> str:
    """The picture as a PNG in Gradio's cache, named by its content and written once.

    Handed an array, Gradio rewrites its content-named file every time the same
    picture is sent again; a browser still downloading the first copy then gets
    fewer bytes than announced ("Too little data for declared Content-Length") and
    shows the alt text. The landing page's stored example run sends the same frames
    to every visitor, so two loads at once did this. Here a file that exists is only
    touched (the disk budget trims the oldest first), and a new one appears whole
    (written aside, then renamed)."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", compress_level=1)
    data = buffer.getvalue()
    PICTURES_DIR.mkdir(parents=True, exist_ok=True)
    path = PICTURES_DIR / f"{hashlib.sha256(data).hexdigest()[:32]}.png"
    try:
        os.utime(path)
    except FileNotFoundError:
        staging = path.with_name(f".{path.name}.{threading.get_ident()}")
        staging.write_bytes(data)
        os.replace(staging, path)
    return str(path)


def data_uri(image: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def final_picture(result: Result) -> np.ndarray:
    images = result.images
    if len(images) == 1:
        return images[0]
    if len({im.shape for im in images}) == 1:
        return grid(np.stack(images))
    return images[0]


def file_stem(recipe: Recipe, what: str | None = None) -> str:
    """'shapes_uhmc_seed1': what a saved file shows (model, `what` or the sampler, seed),
    safe in any file system: a hub id or a folder never becomes a path."""
    model = re.sub(r"[^A-Za-z0-9.-]+", "-", recipe.model.strip("/")).strip("-")[-40:] or "model"
    return f"{model}_{what or recipe.sampler.name}_seed{recipe.seed}"


def run_folder() -> Path:
    """A fresh folder for a run's files; the disk budget is enforced first, so the
    cache (streamed frames included) stays bounded however many runs there are."""
    DISK.trim()
    RUNS_DIR.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="run-", dir=RUNS_DIR))


def save_png(result: Result, folder: Path | None = None) -> str:
    """The final picture, upscaled (nearest), with the recipe in a text chunk;
    named by model, sampler and seed."""
    path = (folder or run_folder()) / f"{file_stem(result.recipe)}.png"
    path.write_bytes(png_bytes(enlarge(final_picture(result), EXPORT_SIDE), result.recipe))
    return str(path)


def save_outputs(result: Result, frames: list[np.ndarray]) -> tuple[str, str]:
    """The GIF of the frames and the PNG of a run."""
    folder = run_folder()
    png = save_png(result, folder)
    frames = spread(frames, GIF_FRAMES - 1)
    gif = save_animation([display(f) for f in frames] + [display(final_picture(result))],
                         folder / f"{file_stem(result.recipe)}_frames.gif")
    return str(gif), png


def save_sweep(plan: Sweep, picture: np.ndarray) -> list[str]:
    """The sweep's grid as a PNG carrying the sweep, and the sweep as JSON: either
    re-runs with `python -m composer sweep`."""
    folder = run_folder()
    stem = file_stem(plan.recipe, "sweep")
    grid_png, plan_json = folder / f"{stem}.png", folder / f"{stem}.json"
    grid_png.write_bytes(png_bytes(picture, plan, SWEEP_CHUNK))
    plan_json.write_text(plan.to_json() + "\n")
    return [str(grid_png), str(plan_json)]
