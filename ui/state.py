"""Plain-Python state of the page: concept rows, settings <-> recipe, share tokens.

No Gradio and no tensors here, so all of it is easy to test. A *row* is a dict
{"id", "text", "weight", "negate", "beta", "muted"}; the id is stable for the
row's life and keys every component the row renders.
"""
from __future__ import annotations

import base64
import binascii
import dataclasses
import itertools
import json
import re
from pathlib import Path
from typing import Any

from composer.recipe import MAX_CONCEPTS, Concept, Recipe, RecipeError, SamplerSpec

KNOBS = ("mcmc_steps", "step_size", "leapfrog_steps", "damping", "line_points")
INTEGER_KNOBS = ("mcmc_steps", "leapfrog_steps", "line_points")
RECIPES_DIR = Path(__file__).resolve().parent.parent / "assets" / "recipes"

_ids = itertools.count(1)


def new_id() -> str:
    return f"r{next(_ids)}"


def new_row(text: str = "", weight: float = 1.0, negate: bool = False, beta: float = 1.0,
            muted: bool = False) -> dict:
    return {"id": new_id(), "text": text, "weight": float(weight), "negate": bool(negate),
            "beta": float(beta), "muted": bool(muted)}


def rows_from_concepts(concepts) -> list[dict]:
    return [new_row(c.text, c.weight, c.negate, c.beta, c.muted) for c in concepts]


def find(rows: list[dict], row_id: str) -> int:
    for i, row in enumerate(rows):
        if row["id"] == row_id:
            return i
    raise KeyError(row_id)


def row_action(rows: list[dict], action: str, row_id: str | None = None,
               default_text: str = "") -> list[dict]:
    """A new list after add / remove / duplicate / up / down / mute (rows are copied)."""
    rows = [dict(r) for r in rows]
    if action == "add":
        if len(rows) < MAX_CONCEPTS:
            rows.append(new_row(default_text))
        return rows
    i = find(rows, row_id)
    if action == "remove":
        rows.pop(i)
    elif action == "duplicate":
        if len(rows) < MAX_CONCEPTS:
            rows.insert(i + 1, {**rows[i], "id": new_id()})
    elif action == "up" and i > 0:
        rows[i - 1], rows[i] = rows[i], rows[i - 1]
    elif action == "down" and i < len(rows) - 1:
        rows[i + 1], rows[i] = rows[i], rows[i + 1]
    elif action == "mute":
        rows[i]["muted"] = not rows[i]["muted"]
    return rows


@dataclasses.dataclass
class Settings:
    """Everything outside the rows that a recipe records; None = model default."""
    model: str
    operator: str = "and"
    scale: float | None = None
    sampler: str = "ddim"
    scheduler: str = "ddpm"
    mcmc_steps: float | None = None
    step_size: float | None = None
    leapfrog_steps: float | None = None
    damping: float | None = None
    line_points: float | None = None
    steps: float | None = None
    seed: float | None = 0
    num_samples: float | None = 1


SETTING_NAMES = tuple(f.name for f in dataclasses.fields(Settings))


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _as_int(name: str, value: Any) -> int | None:
    """Whole numbers from number boxes (which hand back floats) become ints;
    anything else is passed through for the recipe to reject with its message."""
    if _blank(value):
        return None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def row_problems(rows: list[dict], vocabulary=None, choices=None) -> list[str]:
    """Messages for rows that cannot run, numbered as the user sees them (1-based)."""
    problems = []
    for n, row in enumerate(rows, 1):
        text = (row.get("text") or "").strip()
        if not text:
            problems.append(f"Row {n}: the prompt is empty; write one or remove the row.")
            continue
        if row.get("muted"):
            continue
        if choices is not None and text not in choices:
            problems.append(f"Row {n}: {text!r} is not a concept of this model; "
                            f"choose one of {', '.join(choices)}.")
        elif vocabulary is not None:
            unknown = unknown_words(text, vocabulary)
            if unknown:
                problems.append(f"Row {n}: unknown words {', '.join(repr(w) for w in unknown)}; "
                                f"this model knows: {', '.join(vocabulary)}.")
    return problems


FILLER_WORDS = ("a", "an", "the", "and")


def unknown_words(text: str, vocabulary) -> list[str]:
    """Words of `text` outside `vocabulary` (articles are ignored)."""
    known = {w.lower() for w in vocabulary} | set(FILLER_WORDS)
    words = re.findall(r"[A-Za-z0-9_\-']+", text.lower())
    return [w for w in dict.fromkeys(words) if w not in known]


def build_recipe(rows: list[dict], settings: Settings) -> Recipe:
    """The recipe the page describes; RecipeError names the bad field or row."""
    concepts = []
    for n, row in enumerate(rows, 1):
        text = (row.get("text") or "").strip()
        if not text:
            raise RecipeError(f"Row {n}: the prompt is empty; write one or remove the row")
        concepts.append(Concept(text=text, weight=row["weight"], negate=row["negate"],
                                beta=row["beta"], muted=row["muted"]))
    knobs = {k: (_as_int(k, getattr(settings, k)) if k in INTEGER_KNOBS
                 else (None if _blank(getattr(settings, k)) else getattr(settings, k)))
             for k in KNOBS}
    seed = _as_int("seed", settings.seed)
    samples = _as_int("num_samples", settings.num_samples)
    return Recipe(
        model=settings.model,
        concepts=tuple(concepts),
        operator=settings.operator,
        scale=None if _blank(settings.scale) else settings.scale,
        sampler=SamplerSpec(name=settings.sampler, scheduler=settings.scheduler or "ddpm", **knobs),
        steps=_as_int("steps", settings.steps),
        seed=0 if seed is None else seed,
        num_samples=1 if samples is None else samples,
    )


def settings_from_recipe(recipe: Recipe) -> Settings:
    s = recipe.sampler
    return Settings(model=recipe.model, operator=recipe.operator, scale=recipe.scale,
                    sampler=s.name, scheduler=s.scheduler, mcmc_steps=s.mcmc_steps,
                    step_size=s.step_size, leapfrog_steps=s.leapfrog_steps, damping=s.damping,
                    line_points=s.line_points, steps=recipe.steps, seed=recipe.seed,
                    num_samples=recipe.num_samples)


# --- share links -----------------------------------------------------------------

CONCEPT_DEFAULTS = {"weight": 1.0, "negate": False, "beta": 1.0, "muted": False}


def compact_dict(recipe: Recipe) -> dict:
    """The recipe without None knobs or default row fields, so links stay short.
    `Recipe.from_dict` fills the same defaults back."""
    data = recipe.to_dict()
    data["sampler"] = {k: v for k, v in data["sampler"].items() if v is not None}
    data["concepts"] = [{k: v for k, v in c.items() if CONCEPT_DEFAULTS.get(k, object()) != v}
                        for c in data["concepts"]]
    return {k: v for k, v in data.items() if v is not None}


def share_token(recipe: Recipe) -> str:
    """urlsafe base64 (no padding) of the compact JSON of the recipe."""
    text = json.dumps(compact_dict(recipe), separators=(",", ":"), ensure_ascii=False)
    return base64.urlsafe_b64encode(text.encode("utf-8")).decode("ascii").rstrip("=")


def recipe_from_token(token: str) -> Recipe:
    token = (token or "").strip()
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise RecipeError("recipe: the link's recipe parameter is not valid base64") from None
    return Recipe.from_json(raw)


def share_url(base: str, recipe: Recipe) -> str:
    return f"{base.split('?')[0]}?recipe={share_token(recipe)}"


# --- examples --------------------------------------------------------------------

def example_files(folder: Path = RECIPES_DIR) -> list[Path]:
    return sorted(folder.glob("*.json")) if folder.is_dir() else []


def example_label(path: Path) -> str:
    return path.stem.replace("_", " ").replace("-", " ")
