"""The page's session service: it speaks rows, settings and recipes to the Composer
facade and hands back results. Model picker, examples and their stored runs, the
page's recipe checks. No Gradio and no tensors here."""
from __future__ import annotations

import dataclasses
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from composer.cluster import CLUSTER_ENV, RemoteComposer
from composer.facade import Composer, ComposerError, Frame, ModelInfo, Result
from composer.lru import LRU
from composer.media import recipe_from_png
from composer.models import is_sd_reference
from composer.recipe import SMC, Recipe, RecipeError
from ui import state
from ui.frames import KeptFrames, timed
from ui.words import model_label

log = logging.getLogger("ui")
CACHED_RUNS = 8            # finished runs of the example recipes kept for instant replay


def info_dict(info: ModelInfo) -> dict:
    return {"name": info.name, "family": info.family, "has_energy": info.has_energy,
            "choices": list(info.concept_choices) if info.concept_choices else None,
            "vocabulary": list(info.vocabulary) if info.vocabulary else None,
            "max_samples": info.max_samples, "defaults": dict(info.defaults),
            "description": info.description, "lift_by_default": info.lift_by_default,
            "flow": info.flow}


def default_composer() -> Composer:
    """This process's Composer, or with COMPOSER_CLUSTER=auto|ADDRESS one whose plans and
    runs are on a pool of engines on a Ray cluster (docs/scaling.md); the page and its
    per-visitor caps stay here, and this process's budget settings travel to the engines."""
    address = os.environ.get(CLUSTER_ENV, "").strip()
    return RemoteComposer(address, CLUSTER_ENV) if address else Composer()


class Service:
    """All server-side behaviour of the page, around one Composer."""

    def __init__(self, composer: Composer | None = None, fallback_model: str = "toy2d-energy",
                 preferred_model: str = "shapes-exact"):
        self.composer = composer or default_composer()
        self.preferred_model = preferred_model
        self.fallback_model = fallback_model
        self._default: str | None = None
        self._available: list[str] | None = None
        # Finished runs of the shipped example recipes, replayed to every visitor
        # who lands on one (same recipe and seed give the same output).
        self.examples = self._read_examples()          # read once, at start-up
        self._examples = {recipe.to_json() for _, recipe in self.examples}
        self._replays = LRU(CACHED_RUNS)
        self.kept = KeptFrames()

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
        def label(name: str) -> str:
            if is_sd_reference(name):
                return name
            return model_label(name, self.composer.info(name).description)
        return [(label(name), name) for name in self.available_models()]

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
            self.composer.plan(recipe)
        except ComposerError as err:
            words = state.row_problems(rows, vocabulary=vocabulary) if vocabulary else []
            raise ComposerError("\n".join(words) or state.plain(str(err))) from None
        return recipe

    def landing(self) -> Result | None:
        """The default model's example, run once as the page would run it: its result is
        the page's first picture (no event to wait for), and the first visitor's run is
        a stored replay. None when there is no cheap example to run."""
        info = self.info(self.default_model())
        recipe = self.default_recipe(info)
        if recipe is None or not self.fast(recipe):
            return None
        *_, result = self.stream(recipe, lift=info["lift_by_default"])
        return result

    def fast(self, recipe: Recipe) -> bool:
        """Cheap enough to render unasked when a page opens (built-in models only)."""
        if is_sd_reference(recipe.model):
            return False
        try:
            planned = self.composer.plan(recipe)
        except ComposerError:
            return False
        return planned.budget is not None and planned.sampling <= planned.budget // 2

    def cost_line(self, recipe: Recipe) -> str:
        """'Running… 1,200 network evaluations; this model allows 1,000,000 per run.'
        (the sampling's; the lift verdicts' are said when the run is done)"""
        planned = self.composer.plan(recipe)
        allowed = "" if planned.budget is None else f"; this model allows {planned.budget:,} per run"
        return f"Running… {planned.sampling:,} network evaluations{allowed}."

    # --- runs ---------------------------------------------------------------------
    def stream(self, recipe: Recipe, replay: bool = False, cancel: threading.Event | None = None,
               maps: bool = False, lift: bool | None = None) -> Iterator[Frame | Result]:
        """The run's frames, then its Result. Runs of the shipped example recipes are
        stored, and with `replay` a stored run is streamed again instead of computed."""
        planned = self.composer.plan(recipe, maps, lift)
        key = (recipe.to_json(), planned.judged)
        stored = self._replays.get(key) if replay else None
        if stored is not None:
            yield from stored[0].frames
            yield stored[0]
            return
        sampling = 0.0
        for item, seconds in timed(self.composer.run(planned, cancel)):
            if isinstance(item, Frame):
                sampling = seconds
            elif key[0] in self._examples and not maps:  # as replayed
                self._replays.put(key, (item, (sampling, seconds - sampling)))
            yield item

    def stored_seconds(self, recipe: Recipe, lift: bool | None = None) -> tuple[float, float] | None:
        """(sampling, verdicts) seconds of the stored run of this recipe, if one is stored."""
        stored = self._replays.get((recipe.to_json(), self.composer.plan(recipe, lift=lift).judged))
        return None if stored is None else stored[1]

    def compare_recipes(self, recipe: Recipe, samplers: list[str], models: list[str] = (),
                        operators: list[str] = ()) -> list[Recipe]:
        """Each sampler on each model under each operator (none ticked: the recipe's
        own), under one seed."""
        models, operators = list(models) or [recipe.model], list(operators) or [recipe.operator]
        runs = len(samplers) * len(models) * len(operators)
        if not 2 <= runs <= 4:
            what = ("samplers" if len(models) == len(operators) == 1
                    else "runs (samplers × models × operators)")
            raise RecipeError(f"compare: choose 2 to 4 {what}, got {runs}")
        return [dataclasses.replace(recipe, model=m, operator=o, temperature=(
                    recipe.temperature if o == "superdiff_or" else 1.0),
                    negation=recipe.negation if o == "product" else "ratio",
                    sampler=dataclasses.replace(recipe.sampler, name=s, particles=(
                        recipe.sampler.particles if s == SMC else None)))
                for m in models for o in operators for s in samplers]

    @staticmethod
    def recipe_from_upload(path: str | None) -> Recipe:
        if not path:
            raise RecipeError("recipe: drop a PNG saved by this app first")
        return recipe_from_png(Path(path))
