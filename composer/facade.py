"""The one entry point the UI and the CLI use. It speaks recipes and pictures;
tensors stay inside.
"""
from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import torch

from composer import engine
from composer.lift import best_of, lift_rows, measure_lift
from composer.lift import verdicts as lift_verdicts
from composer.lru import LRU
from composer.models import (
    BUILTIN_MODELS,
    ModelAdapter,
    ModelError,
    Pictures,
    default_device,
    load_model,
    pictures_of,
    scoring_of,
)
from composer.operators import OPERATORS
from composer.plan import Plan, budget, candidates, make_plan
from composer.recipe import Recipe, RecipeError
from composer.sweep import Sweep

log = logging.getLogger(__name__)
SD_MODEL_ENV = "COMPOSER_SD_MODEL"
MAX_MODELS_ENV = "COMPOSER_MAX_MODELS"
DEFAULT_MAX_MODELS = 4


Cancelled = engine.Cancelled


class ComposerError(ValueError):
    """Anything a user can fix: a bad recipe, a model that cannot load, no memory.
    `detail`, as ModelError's, is for the server's own user only (the CLI prints it)."""

    def __init__(self, message: str, detail: str = ""):
        super().__init__(message)
        self.detail = detail


@dataclass(frozen=True)
class Frame:
    index: int
    total: int
    t: float
    preview: np.ndarray                 # predicted x0, RGB uint8 [H, W, 3]
    noisy: np.ndarray                   # the current x_t, same kind of picture
    concepts: tuple[np.ndarray, ...]    # each active concept's own predicted x0
    acceptance: float | None            # mean MH acceptance at this level (mala, hmc)
    step_size: float | None = None      # MCMC step at this level, as a fraction of sigma_t
    # With maps: the composed density and x_t (2D) or the conflict map over the
    # preview (image models under "and"); 2D models also each concept's density.
    map: np.ndarray | None = None
    concept_maps: tuple[np.ndarray, ...] = ()
    # Each active concept's tracked log q_t(x_t | c_i) (engine.StepRecord), minus the
    # concepts' mean, averaged over the samples: which concept the samples lean to, in
    # nats (empty where nothing is tracked).
    log_density: tuple[float, ...] = ()
    ess: float | None = None            # smc: mean effective sample size / K
    resampled: int = 0                  # smc: samples resampled at this step


@dataclass(frozen=True)
class Result:
    recipe: Recipe                      # every default filled in
    images: tuple[np.ndarray, ...]      # final pictures (toy2d: one scatter)
    points: np.ndarray | None           # toy2d samples [N, 2]
    frames: tuple[Frame, ...]
    notes: tuple[str, ...] = ()
    metrics: dict = field(default_factory=dict)
    verdicts: tuple[dict, ...] = ()     # per sample, each row's verdict (models with a judge)
    # Per sample, each row's verdict by the model's own lift (composer.lift), when judged.
    lift: tuple[dict, ...] = ()
    # Image models with maps: each level's conflict map averaged over the run, laid over
    # the last frame's candidates (a single level's fades as the predictions agree).
    conflict_map: np.ndarray | None = None
    plan: Plan | None = None            # what the run was planned to do and cost


@dataclass(frozen=True)
class SweepCell:
    position: tuple[int, int]           # (row, column) in the sweep's grid
    labels: tuple[str, ...]             # "field = value" per axis
    result: Result


@dataclass(frozen=True)
class SweepPlan:
    sweep: Sweep
    cells: tuple[tuple[tuple[int, int], tuple[str, ...], Plan], ...]   # (position, labels, plan)
    budget: int | None                  # the most the whole sweep may cost

    @property
    def total(self) -> int:
        return sum(planned.total for *_, planned in self.cells)


@dataclass(frozen=True)
class ModelInfo:
    name: str
    family: str
    has_energy: bool
    concept_choices: tuple[str, ...] | None
    vocabulary: tuple[str, ...] | None
    max_samples: int
    defaults: dict
    description: str = ""
    lift_by_default: bool = True        # runs are judged by the model's lift unless asked not to
    flow: bool = False                  # a flow-matching model: the sampler flow_euler runs on it


def model_key(name: str) -> str:
    """One cache key per model, however it is spelled: a folder by its resolved
    path (`/x`, `/x/`, `//x/.` are one folder), anything else by its name."""
    expanded = os.path.expanduser(name)
    if name not in BUILTIN_MODELS and os.path.isdir(expanded):
        return os.path.realpath(expanded)
    return name


# A whole sweep may cost this many of the model's largest runs (README, Budgets).
SWEEP_RUNS = 4


class Composer:
    """Loads models lazily and runs recipes on one device.

    At most `max_models` (env COMPOSER_MAX_MODELS, default 4) stay loaded; the
    least recently used one is dropped first. Each model loads under its own
    lock, so runs on loaded models never wait for another model's load. Runs take
    turns on the device one network evaluation at a time (engine.Control), so
    concurrent runs share it fairly and a cancelled run leaves it at once.
    """

    def __init__(self, device: str | torch.device | None = None, max_models: int | None = None):
        self.device = torch.device(device) if device is not None else default_device()
        self.max_models = max_models or int(os.environ.get(MAX_MODELS_ENV, DEFAULT_MAX_MODELS))
        self._models = LRU(self.max_models)
        self._lock = threading.Lock()                       # guards the loading locks
        self._loading: dict[str, threading.Lock] = {}
        self._device = engine.SharedDevice()                # one network evaluation at a time

    @staticmethod
    def model_names() -> list[str]:
        """Built-in models, plus the Stable Diffusion checkpoint a Space configured."""
        names = list(BUILTIN_MODELS)
        if os.environ.get(SD_MODEL_ENV):
            names.append(os.environ[SD_MODEL_ENV])
        return names

    def model(self, name: str) -> ModelAdapter:
        key = model_key(name)
        model = self._models.get(key)
        if model is not None:
            return model
        with self._lock:
            loading = self._loading.setdefault(key, threading.Lock())
        with loading:
            model = self._models.get(key)         # another request loaded it meanwhile
            if model is not None:
                return model
            try:
                model = load_model(name, self.device)
            except (ModelError, OSError, ValueError) as err:
                raise ComposerError(str(err), getattr(err, "detail", "")) from None
            if self._models.put(key, model) and self.device.type == "cuda":
                torch.cuda.empty_cache()          # an evicted model's memory goes back
            return model

    def info(self, name: str) -> ModelInfo:
        m = self.model(name)
        return ModelInfo(name, m.family, m.has_energy, m.concept_choices, m.vocabulary,
                         m.max_samples, dict(m.defaults), m.description, m.lift_by_default,
                         flow=m.flow_scheduler_config is not None)

    def plan(self, recipe: Recipe, maps: bool = False, lift: bool | None = None) -> Plan:
        """What one run of the recipe will do and cost (composer/plan.py): its filled
        recipe, notes, verdicts and price, worked out once; ComposerError if it cannot run.
        `lift` judges the samples by the model's own lift (None: the model's default,
        left out with a note when it would take the run over its budget)."""
        try:
            return make_plan(recipe, self.model(recipe.model), maps, lift)
        except (RecipeError, ModelError) as err:
            raise ComposerError(str(err), getattr(err, "detail", "")) from None

    def stream(self, recipe: Recipe, cancel: threading.Event | None = None, maps: bool = False,
               lift: bool | None = None) -> Iterator[Frame | Result]:
        """Yield a Frame per step, then the Result. Setting `cancel` stops the run
        before its next network evaluation (raises Cancelled). `maps` adds each
        frame's density or conflict map (composer.maps); samples are the same. `lift`
        as in `plan`; with best_of > 1 the frames show every candidate and the Result
        keeps the chosen."""
        yield from self.run(self.plan(recipe, maps, lift), cancel)

    def run(self, planned: Plan, cancel: threading.Event | None = None) -> Iterator[Frame | Result]:
        """`stream` of a run already planned."""
        filled, notes, model = planned.recipe, planned.notes, self.model(planned.recipe.model)
        pictures, scoring = pictures_of(model), scoring_of(model)
        batch = candidates(filled)
        frames: list[Frame] = []
        control = engine.Control(cancel or threading.Event(), self._device.turn())
        record, conflict, levels = None, None, 0
        try:
            for record in engine.run(planned, model, control):
                frame = self._frame(pictures, batch, record)
                frames.append(frame)
                if record.conflict is not None:       # summed: 1,000 levels of maps add up
                    # smc's last level keeps one particle per sample: a new batch, a new sum
                    same = conflict is not None and conflict.shape == record.conflict.shape
                    conflict, levels = ((conflict + record.conflict, levels + 1) if same
                                        else (record.conflict, 1))
                yield frame
            final, by_model = self._judge(model, filled, batch, record.x_t, control, planned.judged)
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            raise ComposerError("out of GPU memory: try fewer samples or fewer concepts") from None
        except engine.NonFiniteError as err:
            raise ComposerError(str(err)) from None
        if filled.best_of > 1:
            kept = sum(v["holds"] for v in by_model)
            words = OPERATORS[filled.operator].verdict_words()
            notes += (f"Best of {filled.best_of}: {kept} of {filled.num_samples} samples have a "
                      f"candidate that, by the model's lift, {words}s; the others keep "
                      f"their least-failing candidate.",)
        conflict = None if conflict is None else pictures.conflict_picture(record.x0,
                                                                           conflict / levels)
        yield Result(filled, tuple(pictures.result_images(filled, final)), pictures.points(final),
                     tuple(frames), notes, scoring.metrics(filled, final),
                     tuple(scoring.verdicts(filled, final) or ()), tuple(by_model), conflict,
                     planned)

    @staticmethod
    def _judge(model: ModelAdapter, recipe: Recipe, batch: Recipe, final: torch.Tensor,
               control: engine.Control, judged: bool) -> tuple[torch.Tensor, list[dict]]:
        """The samples a run keeps (best of N: each sample's chosen candidate) and, when
        judged, their lift verdicts; a recipe with no row to judge keeps each first."""
        if not judged or not lift_rows(recipe):
            return final[::recipe.best_of], []
        verdict = measure_lift(model, batch, final, around=control.evaluation)
        if recipe.best_of > 1:
            keep = best_of(verdict, recipe.best_of)
            final, verdict = final[keep], verdict.take(keep)
        return final, lift_verdicts(verdict, recipe)

    def render(self, recipe: Recipe, cancel: threading.Event | None = None, maps: bool = False,
               lift: bool | None = None) -> Result:
        """Run to the end; return the Result."""
        *_, result = self.stream(recipe, cancel=cancel, maps=maps, lift=lift)
        return result

    def budget(self, name: str) -> int | None:
        """The most network evaluations one run of this model may make."""
        return budget(self.model(name))

    def sweep_plan(self, sweep: Sweep) -> SweepPlan:
        """Every cell's plan and the whole sweep's price; raises ComposerError naming the
        first cell that cannot run, or the total over the sweep budget, before anything
        runs. A sweep may cost SWEEP_RUNS times one run's budget (each cell is also held
        to one run's)."""
        cells = []
        for (i, j), recipe, labels in sweep.cells():
            try:
                cells.append(((i, j), labels, self.plan(recipe)))
            except ComposerError as err:
                raise ComposerError(f"axes: cell ({i + 1}, {j + 1}): {err}", err.detail) from None
        limit = self.budget(sweep.recipe.model)
        planned = SweepPlan(sweep, tuple(cells), None if limit is None else SWEEP_RUNS * limit)
        if planned.budget is not None and planned.total > planned.budget:
            raise ComposerError(
                f"cost: this sweep needs {planned.total:,} network evaluations in all; a sweep of "
                f"{sweep.recipe.model!r} may use {planned.budget:,} ({SWEEP_RUNS} times one run's "
                f"budget). Use fewer cells, steps, samples or MCMC steps")
        return planned

    def sweep(self, planned: SweepPlan, cancel: threading.Event | None = None) -> Iterator[SweepCell]:
        """Run every cell of a planned sweep, row by row, yielding each as it finishes."""
        for position, labels, cell in planned.cells:
            *_, result = self.run(cell, cancel)
            yield SweepCell(position, labels, result)

    @staticmethod
    def _frame(pictures: Pictures, recipe: Recipe, record: engine.StepRecord) -> Frame:
        picture, concept_maps = None, ()
        if record.density is not None:
            picture, concept_maps = pictures.density_pictures(recipe, record.density, record.x_model)
        elif record.conflict is not None:
            picture = pictures.conflict_picture(record.x0, record.conflict)
        return Frame(index=record.index, total=record.total, t=record.t,
                     preview=pictures.preview(record.x0), noisy=pictures.preview(record.x_t),
                     concepts=tuple(pictures.preview(x0) for x0 in record.concept_x0),
                     acceptance=record.acceptance, step_size=record.step_size, map=picture,
                     concept_maps=concept_maps, log_density=_leaning(record.log_density),
                     ess=record.ess, resampled=record.resampled)


def _leaning(log_density: torch.Tensor | None) -> tuple[float, ...]:
    if log_density is None:
        return ()
    centred = log_density - log_density.mean(0, keepdim=True)
    return tuple(float(v) for v in centred.mean(1))
