"""Event handlers: they speak rows, settings and recipes to the Composer facade
and hand pictures (uint8 arrays) and files back to Gradio. No tensors here.

Errors a user can fix (RecipeError, ComposerError, ModelError) become gr.Error
with the engine's message; anything else is logged and shown as a generic
error, so the server keeps serving.
"""
from __future__ import annotations

import base64
import contextlib
import dataclasses
import functools
import hashlib
import inspect
import io
import logging
import os
import re
import tempfile
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path

import anyio
import gradio as gr
import numpy as np
from gradio.context import LocalContext
from gradio.utils import get_upload_folder
from PIL import Image

from composer.facade import Cancelled, Composer, ComposerError, Frame, ModelInfo, Result
from composer.lru import LRU
from composer.media import SWEEP_CHUNK, png_bytes, recipe_from_png, save_animation
from composer.models import ModelError, is_sd_reference
from composer.pictures import enlarge, grid
from composer.recipe import Recipe, RecipeError, echo
from composer.sweep import Sweep
from ui import state
from ui.disk import DiskBudget, budget_bytes
from ui.visitors import TooManyRuns, Visitors

log = logging.getLogger("ui")
USER_ERRORS = (RecipeError, ComposerError, ModelError)
GENERIC_ERROR = ("Something unexpected went wrong on the server; it was logged. "
                 "The app is still running: adjust the recipe and try again.")
DISPLAY_SIDE = 256
THUMB_SIDE = 96
EXPORT_SIDE = 512          # saved PNGs and GIFs: small models upscaled (nearest) to about this
CACHED_RUNS = 8            # finished runs of the example recipes kept for instant replay
# Inside Gradio's cache, so Gradio serves the files without copying them (ui/disk.py).
CACHE_DIR = Path(get_upload_folder())
RUNS_DIR = CACHE_DIR / "composer-runs"
PICTURES_DIR = CACHE_DIR / "composer-pictures"
DISK = DiskBudget(CACHE_DIR, budget_bytes())
KEEP_SECONDS = 3600
VISITORS = Visitors()
# Every picture streamed to a page is a file in Gradio's cache: a long run streams at
# most this many frames (evenly spaced; all stay scrubbable), and its GIF holds at most
# GIF_FRAMES (4 seconds at 25 per second).
STREAMED_FRAMES = 200
GIF_FRAMES = 100
# All sessions' scrubbable frames together (KeptFrames), in MB: COMPOSER_FRAMES_MB.
FRAMES_BUDGET = int(float(os.environ.get("COMPOSER_FRAMES_MB", "128")) * 2**20)


def user_error(err: Exception) -> gr.Error:
    # A visitor's mistake, not a server fault: no traceback in the server log.
    return gr.Error(str(err), duration=12, title="Cannot run this recipe", print_exception=False)


@contextlib.contextmanager
def _translated_errors(name: str):
    """Engine errors become gr.Error; anything unexpected is logged and masked."""
    try:
        yield
    except (gr.Error, Cancelled):
        raise
    except USER_ERRORS as err:
        raise user_error(err) from None
    except ValueError as err:  # e.g. diffusers refusing a setting: say what it said
        log.warning("value error in %s: %s", name, err)
        raise user_error(err) from None
    except Exception:
        log.exception("unexpected error in %s", name)
        raise gr.Error(GENERIC_ERROR, duration=None, print_exception=False) from None  # logged above


def guard(fn):
    """Wrap a handler (plain or streaming) in `_translated_errors`."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def stream(*args, **kwargs):
            with _translated_errors(fn.__name__):
                yield from fn(*args, **kwargs)
        return stream

    @functools.wraps(fn)
    def call(*args, **kwargs):
        with _translated_errors(fn.__name__):
            return fn(*args, **kwargs)
    return call


def cancellable(fn):
    """Run a blocking handler (plain or streaming) in a worker thread, passing it a
    `cancel` flag. When Gradio cancels the event (Stop, a client's cancel, a closed
    page) the flag is set, and the engine stops before its next network evaluation
    instead of computing to the end of the step or the run."""
    signature = inspect.signature(fn)
    shown = signature.replace(parameters=[p for p in signature.parameters.values()
                                          if p.name != "cancel"])  # not an API input
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        async def stream(*args):
            cancel = threading.Event()
            with visitor_slot(), STOPPABLE.running(cancel):
                items = fn(*args, cancel=cancel)
                try:
                    while (item := await anyio.to_thread.run_sync(
                            next, items, _END, abandon_on_cancel=True)) is not _END:
                        yield item
                except Cancelled:       # the page's Stop set the flag: end quietly, no error
                    return
                finally:
                    cancel.set()
                    with contextlib.suppress(ValueError):  # still running: it stops at the flag
                        items.close()
        stream.__signature__ = shown
        return stream

    @functools.wraps(fn)
    async def call(*args):
        cancel = threading.Event()
        try:
            with visitor_slot():
                return await anyio.to_thread.run_sync(functools.partial(fn, *args, cancel=cancel),
                                                      abandon_on_cancel=True)
        finally:
            cancel.set()
    call.__signature__ = shown
    return call


class Stoppable:
    """The cancel flags of each session's running streams, so the page's Stop ends them
    through the engine's own flag. Cancelling the Gradio event instead (`cancels=`)
    left a red "Error" badge on the status line in 3 of 4 Stops."""

    def __init__(self):
        self._flags: dict[str, set[threading.Event]] = {}
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def running(self, cancel: threading.Event):
        session = getattr(LocalContext.request.get(None), "session_hash", None)
        with self._lock:
            self._flags.setdefault(session, set()).add(cancel)
        try:
            yield
        finally:
            with self._lock:
                flags = self._flags.get(session, set())
                flags.discard(cancel)
                if not flags:
                    self._flags.pop(session, None)

    def stop(self, session: str | None) -> int:
        """Set the flags of a session's running streams; returns how many."""
        with self._lock:
            flags = list(self._flags.get(session, ())) if session is not None else []
        for flag in flags:
            flag.set()
        return len(flags)


STOPPABLE = Stoppable()


@contextlib.contextmanager
def visitor_slot():
    """One of the calling visitor's run slots (ui/visitors.py), or a clear refusal."""
    try:
        with VISITORS.slot(LocalContext.request.get(None)):
            yield
    except TooManyRuns as err:
        raise user_error(err) from None


_END = object()


def info_dict(info: ModelInfo) -> dict:
    return {"name": info.name, "family": info.family, "has_energy": info.has_energy,
            "choices": list(info.concept_choices) if info.concept_choices else None,
            "vocabulary": list(info.vocabulary) if info.vocabulary else None,
            "max_samples": info.max_samples, "defaults": dict(info.defaults),
            "description": info.description}


def flag(value, field: str) -> bool:
    """An API yes/no: a boolean, 0/1, or the text true/false/yes/no/on/off/1/0 (a
    non-empty string is not simply true: "false" means false)."""
    if isinstance(value, bool) or value is None:
        return bool(value)
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in FLAG_WORDS:
        return FLAG_WORDS[value.strip().lower()]
    raise RecipeError(f"{field}: must be true or false, got {echo(value)}")


FLAG_WORDS = {"true": True, "yes": True, "on": True, "1": True,
              "false": False, "no": False, "off": False, "0": False, "": False}


def default_text(value) -> str:
    """A knob's default as the page says it: 'default 1.0', or per sampler
    'default 0.5 (ula), 0.3 (uhmc), 1.0 (mala, hmc)'."""
    if not isinstance(value, dict):
        return f"default {value}"
    groups: dict = {}
    for name, v in value.items():
        groups.setdefault(v, []).append(name)
    return "default " + ", ".join(f"{v} ({', '.join(names)})" for v, names in groups.items())


def model_label(info: ModelInfo) -> str:
    """'shapes-exact · the world's exact score and energy': the picker's label."""
    return f"{info.name} · {info.description}" if info.description else info.name


def model_summary(info: dict) -> str:
    kind = "energy" if info["has_energy"] else "score"
    d = info["defaults"]
    defaults = ", ".join(f"{k} {default_text(v).removeprefix('default ')}" for k, v in d.items())
    what = f" ({info['description']})" if info.get("description") else ""
    text = f"**{info['name']}** loaded{what}: {info['family']} family, {kind} model"
    if info["choices"]:
        text += f"; concepts: {', '.join(info['choices'])}"
    if info["vocabulary"]:
        text += f"; vocabulary: {', '.join(info['vocabulary'])}"
    return text + (f". Defaults: {defaults}." if defaults else ".")


def concept_label(concept) -> str:
    if concept.negate:
        return f"NOT β={concept.beta:g} · {concept.text}"
    return f"AND w={concept.weight:g} · {concept.text}"


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


def progress_html(index: int, total: int, extra: str = "") -> str:
    pct = 100.0 * index / max(total, 1)
    return (f"<div id='progress-text'>Step {index} / {total}{extra}</div>"
            f"<div style='background:#ddd;height:8px;border-radius:4px'>"
            f"<div style='width:{pct:.1f}%;background:#f97316;height:8px;border-radius:4px'>"
            f"</div></div>")


def metrics_text(metrics: dict) -> str:
    return ", ".join(f"{k} = {v:.4g}" if isinstance(v, (int, float)) else f"{k} = {v}"
                     for k, v in metrics.items())


def data_uri(image: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def spread(items: list, count: int) -> list:
    """`count` items evenly spaced over the list, always keeping the last."""
    if count <= 0 or not items:
        return []
    if count >= len(items):
        return list(items)
    picks = np.linspace(0, len(items) - 1, count).round().astype(int)
    return [items[i] for i in dict.fromkeys(picks.tolist())]


def kept_frame(frame: Frame, final: np.ndarray | None = None) -> dict:
    """A frame as a session keeps it for the scrubber: PNG bytes at the fastest
    setting, about 1/70 of the pixels' memory for a 2D scatter (2.6 KB for 196 KB).
    `final` stands for the preview and x_t of the run's last picture."""
    return {"preview": packed(frame.preview if final is None else final),
            "noisy": packed(frame.noisy if final is None else final),
            "concepts": [packed(c) for c in frame.concepts],
            "map": None if frame.map is None else packed(frame.map),
            "concept_maps": [packed(m) for m in frame.concept_maps]}


class Run(dict):
    """A run's scrubbable frames as a session holds them (a dict that can be weakly
    referenced, so a session's older runs are freed as soon as it drops them)."""


class KeptFrames:
    """The scrubbable frames of every session's last run share one budget (bytes of
    PNG, FRAMES_BUDGET): past it, the oldest finished runs' frames are released first,
    so the server's memory is bounded however many sessions stay open."""

    def __init__(self, budget: int):
        self.budget = budget
        self._runs: OrderedDict[int, tuple[weakref.ref, int]] = OrderedDict()
        self._lock = threading.Lock()

    def stop(self, live: Run) -> int:
        """End a run's frames where they are (its thread may finish one more step before
        it sees the cancel); returns how many there are."""
        with self._lock:
            live["stopped"] = True
            return len(live["frames"])

    def keep(self, live: Run, frame: dict) -> None:
        size = sum(len(v) for key in ("preview", "noisy", "map") if (v := frame[key])) + sum(
            len(v) for key in ("concepts", "concept_maps") for v in frame[key])
        with self._lock:
            if live.get("released") or live.get("stopped"):   # a stopped run's frames are final
                return
            live["frames"].append(frame)
            for key in [k for k, (ref, _) in self._runs.items() if ref() is None]:
                del self._runs[key]                      # dropped by its session: already freed
            ref, held = self._runs.pop(id(live), (None, 0))
            if ref is None or ref() is not live:         # a new run, whatever its address
                ref, held = weakref.ref(live), 0
            self._runs[id(live)] = (ref, held + size)
            total = sum(held for _, held in self._runs.values())
            for old_key, (old_ref, freed) in list(self._runs.items()):
                if total <= self.budget:
                    break
                old = old_ref()
                if old is None or old is live or not old.get("ended"):
                    continue                            # still streaming: its frames are step k
                del self._runs[old_key]
                old["released"] = True
                old["frames"].clear()
                total -= freed


def chosen_view(preview, noisy, map_picture, concepts, concept_maps, show_noisy: bool,
          show_maps: bool):
    """The picture and thumbnails a view shows: the maps where asked for and made."""
    if show_maps and map_picture is not None:
        return map_picture, (concept_maps or concepts)
    return (noisy if show_noisy else preview), concepts


def packed(picture: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def unpacked(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def timed(stream):
    """(item, seconds spent inside the stream so far) for each item: compute time,
    not the time the consumer spends sending frames to a browser."""
    total = 0.0
    while True:
        start = time.perf_counter()
        try:
            item = next(stream)
        except StopIteration:
            return
        total += time.perf_counter() - start
        yield item, total


class Handlers:
    """All server-side behaviour of the page, around one Composer."""

    def __init__(self, composer: Composer | None = None, fallback_model: str = "toy2d-energy",
                 preferred_model: str = "shapes-exact"):
        self.composer = composer or Composer()
        self.preferred_model = preferred_model
        self.fallback_model = fallback_model
        self._default: str | None = None
        self._available: list[str] | None = None
        # Finished runs of the shipped example recipes, replayed to every visitor
        # who lands on one (same recipe and seed give the same output).
        self.examples = self._read_examples()          # read once, at start-up
        self._examples = {recipe.to_json() for _, recipe in self.examples}
        self._replays = LRU(CACHED_RUNS)
        self.kept = KeptFrames(FRAMES_BUDGET)

    # --- models ----------------------------------------------------------------
    def default_model(self) -> str:
        """The preferred model when it loads ('shapes-exact': it draws the default recipe best,
        docs/shapes.md), else the fast 2D model (decided once)."""
        if self._default is None:
            for name in (self.preferred_model, self.fallback_model):
                try:
                    self.composer.info(name)
                    self._default = name
                    break
                except Exception as err:  # noqa: BLE001 - any failure: try the next
                    log.warning("model %s unavailable: %s", name, err)
            else:
                self._default = self.fallback_model
        return self._default

    def available_models(self) -> list[str]:
        """The picker: built-in models whose weights load here (checked once), and a
        configured Stable Diffusion checkpoint (loaded only when chosen)."""
        if self._available is None:
            names = []
            for name in self.composer.model_names():
                if is_sd_reference(name):
                    names.append(name)
                    continue
                try:
                    self.composer.info(name)
                    names.append(name)
                except Exception as err:  # noqa: BLE001 - left out of the picker
                    log.warning("model %s is not offered: %s", name, err)
            self._available = names
        return list(self._available)

    def model_choices(self) -> list[tuple[str, str]]:
        """The picker's (label, name) pairs: each model labelled by what it is."""
        return [(model_label(self.composer.info(name)) if not is_sd_reference(name) else name, name)
                for name in self.available_models()]

    @staticmethod
    def _read_examples() -> list[tuple[Path, Recipe]]:
        found = []
        for path in state.example_files():
            try:
                found.append((path, Recipe.from_json(path.read_text())))
            except (OSError, RecipeError) as err:
                log.warning("example %s skipped: %s", path.name, err)
        return found

    def default_recipe(self, info: dict) -> Recipe | None:
        """The first shipped example on this model: its rows, sampler and seed."""
        return next((r for _, r in self.examples if r.model == info["name"]), None)

    def info(self, name: str) -> dict:
        name = (name or "").strip()
        if not name:
            raise ComposerError("model: enter a model name, a hub id ('org/name') or a folder")
        return info_dict(self.composer.info(name))

    def default_rows(self, info: dict) -> list[dict]:
        recipe = self.default_recipe(info)
        if recipe is not None:
            return state.rows_from_concepts(recipe.concepts)
        if info["choices"]:
            return [state.new_row(info["choices"][0])]
        if info["vocabulary"]:
            return [state.new_row(" ".join(info["vocabulary"][:2]))]
        return [state.new_row("a red circle")]

    # --- recipe -------------------------------------------------------------------
    def recipe(self, rows: list[dict], info: dict | None, settings: state.Settings,
               unreadable: list[str] = ()) -> Recipe:
        """Validate the page; RecipeError/ComposerError in the page's words, each
        problem once, rows numbered from 1.

        Empty rows and fixed-choice concepts are checked here; free text is left to
        the model (it knows its own grammar), and when the model refuses a row the
        words outside its vocabulary are listed per row instead of its message."""
        choices = info.get("choices") if info else None
        vocabulary = info.get("vocabulary") if info else None
        problems = state.row_problems(rows, choices=choices)
        if problems:
            raise RecipeError("\n".join(problems))
        recipe = state.build_recipe(rows, settings, unreadable)
        try:
            self.composer.check(recipe)
        except ComposerError as err:
            words = state.row_problems(rows, vocabulary=vocabulary) if vocabulary else []
            raise ComposerError("\n".join(words) or state.plain(str(err))) from None
        return recipe

    def fast(self, recipe: Recipe) -> bool:
        """Cheap enough to render unasked when a page opens (built-in models only)."""
        if is_sd_reference(recipe.model):
            return False
        try:
            limit = self.composer.budget(recipe.model)
            return limit is not None and self.composer.cost(recipe) <= limit // 2
        except ComposerError:
            return False

    # --- runs ---------------------------------------------------------------------
    def stream(self, recipe: Recipe, decode_every: int = 0, replay: bool = False,
               cancel: threading.Event | None = None,
               maps: bool = False) -> Iterator[Frame | Result]:
        """The run's frames, then its Result. Runs of the shipped example recipes are
        stored, and with `replay` a stored run is streamed again instead of computed."""
        key = recipe.to_json()
        stored = self._replays.get(key) if replay else None
        if stored is not None:
            yield from stored[0].frames
            yield stored[0]
            return
        seconds = 0.0
        for item, seconds in timed(self.composer.stream(recipe, decode_every, cancel, maps)):
            if isinstance(item, Result) and key in self._examples and not maps:  # as replayed
                self._replays.put(key, (item, seconds))
            yield item

    def stored_seconds(self, recipe: Recipe) -> float | None:
        """Compute time of the stored run of this recipe, if one is stored."""
        stored = self._replays.get(recipe.to_json())
        return None if stored is None else stored[1]

    def render(self, recipe: Recipe, cancel: threading.Event | None = None,
               maps: bool = False) -> Result:
        return self.composer.render(recipe, cancel, maps)

    def compare_recipes(self, recipe: Recipe, samplers: list[str],
                        models: list[str] = ()) -> list[Recipe]:
        """Each sampler on each model (none ticked: the recipe's own), under one seed."""
        models = list(models) or [recipe.model]
        runs = len(samplers) * len(models)
        if not 2 <= runs <= 4:
            what = "samplers" if len(models) == 1 else "runs (samplers × models)"
            raise RecipeError(f"compare: choose 2 to 4 {what}, got {runs}")
        return [dataclasses.replace(recipe, model=m,
                                    sampler=dataclasses.replace(recipe.sampler, name=s))
                for m in models for s in samplers]

    # --- files --------------------------------------------------------------------
    @staticmethod
    def _run_folder() -> Path:
        """A fresh folder for a run's files; the disk budget is enforced first, so the
        cache (streamed frames included) stays bounded however many runs there are."""
        DISK.trim()
        RUNS_DIR.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix="run-", dir=RUNS_DIR))

    @classmethod
    def save_png(cls, result: Result, folder: Path | None = None) -> str:
        """The final picture, upscaled (nearest), with the recipe in a text chunk;
        named by model, sampler and seed."""
        path = (folder or cls._run_folder()) / f"{file_stem(result.recipe)}.png"
        path.write_bytes(png_bytes(enlarge(final_picture(result), EXPORT_SIDE), result.recipe))
        return str(path)

    @classmethod
    def save_outputs(cls, result: Result, frames: list[np.ndarray]) -> tuple[str, str]:
        """The GIF of the frames and the PNG of a run."""
        folder = cls._run_folder()
        png = cls.save_png(result, folder)
        frames = spread(frames, GIF_FRAMES - 1)
        gif = save_animation([display(f) for f in frames] + [display(final_picture(result))],
                             folder / f"{file_stem(result.recipe)}_frames.gif")
        return str(gif), png

    @classmethod
    def save_sweep(cls, plan: Sweep, picture: np.ndarray) -> list[str]:
        """The sweep's grid as a PNG carrying the sweep, and the sweep as JSON: either
        re-runs with `python -m composer sweep`."""
        folder = cls._run_folder()
        stem = file_stem(plan.recipe, "sweep")
        grid_png, plan_json = folder / f"{stem}.png", folder / f"{stem}.json"
        grid_png.write_bytes(png_bytes(picture, plan, SWEEP_CHUNK))
        plan_json.write_text(plan.to_json() + "\n")
        return [str(grid_png), str(plan_json)]

    @staticmethod
    def recipe_from_upload(path: str | None) -> Recipe:
        if not path:
            raise RecipeError("recipe: drop a PNG saved by this app first")
        return recipe_from_png(Path(path))
