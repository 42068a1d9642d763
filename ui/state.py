"""Plain-Python state of the page: concept rows, settings <-> recipe, share tokens.

No Gradio and no tensors here, so all of it is easy to test. A *row* is a dict
{"text", "weight", "negate", "beta", "muted"}: the row's AND weight and its NOT β
are both kept, so ticking NOT and back restores the weight.
"""
from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import re
from pathlib import Path
from typing import Any

from composer.knobs import BY_NAME, KNOBS
from composer.recipe import (AUTO, CONCEPT_PATH, MAX_CONCEPTS, MCMC_SAMPLERS, Recipe, RecipeError,
                             parse_json)
from composer.sweep import SWEPT_LABELS, Sweep, concept_field, field_label

# Recipe paths as the page labels them, so a message points at the box to fix.
FIELD_LABELS = {"seed": "Seed", "num_samples": "Samples", "steps": "Steps", "best_of": "Best of",
                "scale": "Global scale α", "operator": "Operator", "negation": "Negation form",
                "temperature": "OR temperature T",
                "sampler.name": "Sampler", "sampler.scheduler": "Reverse step between MCMC levels (and SMC's)",
                "concepts": "Concepts", "model": "Model",
                **{f"sampler.{k.name}": k.label for k in KNOBS}}
ROW_FIELD_LABELS = {"text": "prompt", "weight": "AND weight", "beta": "β", "negate": "NOT",
                    "muted": "mute"}
WHOLE_NUMBER_LABELS = {FIELD_LABELS[k] for k in ("seed", "num_samples", "steps", "best_of")} | {
    k.label for k in KNOBS if k.integer}
RECIPES_DIR = Path(__file__).resolve().parent.parent / "assets" / "recipes"

def new_row(text: str = "", weight: float = 1.0, negate: bool = False, beta: float = 1.0,
            muted: bool = False) -> dict:
    return {"text": text, "weight": float(weight), "negate": bool(negate), "beta": float(beta),
            "muted": bool(muted)}


def rows_from_concepts(concepts) -> list[dict]:
    return [new_row(c.text, c.weight, c.negate, c.beta, c.muted) for c in concepts]


def row_action(rows: list[dict], action: str, index: int | None = None,
               default_text: str = "") -> list[dict]:
    """A new list after add / remove / duplicate / up / down / mute of the row at
    `index` (rows are copied; an index past the end, from a stale page, changes nothing)."""
    rows = [dict(r) for r in rows]
    if action == "add":
        if len(rows) < MAX_CONCEPTS:
            rows.append(new_row(default_text))
        return rows
    i = index
    if i is None or not 0 <= i < len(rows):
        return rows
    if action == "remove":
        rows.pop(i)
    elif action == "duplicate":
        if len(rows) < MAX_CONCEPTS:
            rows.insert(i + 1, dict(rows[i]))
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
    negation: str = "ratio"
    scale: float | None = None
    sampler: str = "ddim"
    scheduler: str = "ddpm"
    knobs: dict[str, Any] = dataclasses.field(default_factory=dict)   # by composer/knobs.py name
    steps: float | None = None
    seed: float | None = 0
    num_samples: float | None = 1
    best_of: float | None = 1
    temperature: float | None = 1.0

    @classmethod
    def of(cls, model: str, values: dict[str, Any]) -> "Settings":
        """From values by field name, the knobs' among them by their own names."""
        knobs = {k: v for k, v in values.items() if k in BY_NAME}
        return cls(model=model, knobs=knobs, **{k: v for k, v in values.items() if k not in BY_NAME})



def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _as_int(value: Any) -> int | None:
    """Whole numbers from number boxes (which hand back floats) become ints;
    anything else is passed through for the recipe to reject with its message."""
    if _blank(value):
        return None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _knob_value(knob, value: Any) -> Any:
    if knob.integer:
        return _as_int(value)
    return None if _blank(value) else value


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


def plain(message: str) -> str:
    """A recipe error as the page says it: fields by their labels, rows 1-based
    ('concepts[0].weight: ...' -> 'Row 1 AND weight: ...')."""
    row = CONCEPT_PATH.match(message)
    if row and message[row.end():row.end() + 2] == ": ":
        label = ROW_FIELD_LABELS.get(row.group(2), row.group(2))
        return f"Row {int(row.group(1)) + 1} {label}: " + message[row.end() + 2:]
    field = re.match(r"([\w.]+): ", message)
    if field and field.group(1) in FIELD_LABELS:
        return f"{FIELD_LABELS[field.group(1)]}: " + message[field.end():]
    return message


def number_or_text(value):
    """A number box's value as a float, or as it was typed when it is not one, so the
    recipe can say what is wrong with it."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


def as_shown(rows: list[dict], shown: list[dict]) -> list[dict]:
    """The rows with each prompt and weight as the page showed them when a run was
    asked for (an edit's own event may still be on its way). A row whose NOT box
    disagrees is mid-toggle, and a page with another number of rows mid-change:
    those keep the server's copy."""
    if len(shown) != len(rows):
        return rows
    merged = []
    for row, seen in zip(rows, shown):
        if seen.get("negate") is not None and bool(seen["negate"]) != row["negate"]:
            merged.append(row)
            continue
        row = dict(row)
        if seen.get("text") is not None:
            row["text"] = seen["text"]
        if seen.get("weight") is not None:
            row["beta" if row["negate"] else "weight"] = number_or_text(seen["weight"])
        merged.append(row)
    return merged


def build_recipe(rows: list[dict], settings: Settings, unreadable: list[str] = ()) -> Recipe:
    """Exactly the recipe the page shows, or a RecipeError in the page's words.

    Nothing is rounded, clamped or filled in silently: a blank seed or sample
    count, 3.7 as a seed, a weight outside its slider and a box the browser could
    not read as a number (`unreadable`, their labels) are all refused. Blank
    steps, scale and knobs mean the model's default, as their placeholders say."""
    if unreadable:
        label = unreadable[0]
        example = "20" if label in WHOLE_NUMBER_LABELS else "0.5"
        raise RecipeError(f"{label}: not a number; type digits (for example {example})")
    if _blank(settings.seed):
        raise RecipeError("Seed: is empty; enter a whole number, or press Random seed")
    if _blank(settings.num_samples):
        raise RecipeError("Samples: is empty; enter how many samples to draw")
    concepts = []
    for n, row in enumerate(rows, 1):
        text = (row.get("text") or "").strip()
        if not text:
            raise RecipeError(f"Row {n}: the prompt is empty; write one or remove the row")
        number = "beta" if row["negate"] else "weight"
        if _blank(row[number]):      # what a number box hands back for letters typed into it
            raise RecipeError(f"Row {n}: the {ROW_FIELD_LABELS[number]} is empty; type a number "
                              "(for example 1.5)")
        # plain dicts: the Recipe validates them and names a bad one by its row (concepts[i])
        concepts.append(dict(text=text, weight=row["weight"], negate=row["negate"],
                             beta=row["beta"], muted=row["muted"]))
    knobs = {k.name: _knob_value(k, settings.knobs.get(k.name)) for k in KNOBS
             # a box stays filled while a sampler that does not take it is picked
             if not k.only or settings.sampler in k.only}
    try:
        return Recipe(
            model=settings.model,
            concepts=tuple(concepts),
            operator=settings.operator,
            negation=settings.negation or "ratio",
            scale=None if _blank(settings.scale) else settings.scale,
            sampler=dict(name=settings.sampler, scheduler=settings.scheduler or "ddpm",
                         **knobs),
            steps=_as_int(settings.steps),
            seed=_as_int(settings.seed),
            num_samples=_as_int(settings.num_samples),
            best_of=1 if _blank(settings.best_of) else _as_int(settings.best_of),
            temperature=(1.0 if _blank(settings.temperature) or settings.operator != "superdiff_or"
                         else settings.temperature),
        )
    except RecipeError as err:
        raise RecipeError(plain(str(err))) from None


def settings_from_recipe(recipe: Recipe) -> Settings:
    s = recipe.sampler
    # "auto" is every model's default for MALA and HMC; the number box shows it as its
    # placeholder ("default auto (mala, hmc)")
    knobs = {k.name: None if getattr(s, k.name) == AUTO else getattr(s, k.name) for k in KNOBS}
    return Settings(model=recipe.model, operator=recipe.operator, negation=recipe.negation,
                    scale=recipe.scale, sampler=s.name, scheduler=s.scheduler, knobs=knobs,
                    steps=recipe.steps,
                    seed=recipe.seed, num_samples=recipe.num_samples, best_of=recipe.best_of,
                    temperature=recipe.temperature)


# --- share links -----------------------------------------------------------------

CONCEPT_DEFAULTS = {"weight": 1.0, "negate": False, "beta": 1.0, "muted": False}
RECIPE_DEFAULTS = {"negation": "ratio", "temperature": 1.0}


def compact_dict(recipe: Recipe) -> dict:
    """The recipe without None knobs or default row fields, so links stay short.
    `Recipe.from_dict` fills the same defaults back."""
    data = recipe.to_dict()
    data["sampler"] = {k: v for k, v in data["sampler"].items() if v is not None}
    data["concepts"] = [{k: v for k, v in c.items() if CONCEPT_DEFAULTS.get(k, object()) != v}
                        for c in data["concepts"]]
    return {k: v for k, v in data.items() if v is not None and RECIPE_DEFAULTS.get(k) != v}


def share_token(recipe: Recipe) -> str:
    """urlsafe base64 (no padding) of the compact JSON of the recipe."""
    text = json.dumps(compact_dict(recipe), separators=(",", ":"), ensure_ascii=False)
    return base64.urlsafe_b64encode(text.encode("utf-8")).decode("ascii").rstrip("=")


BROKEN_LINK = ("This link's recipe could not be read: it may have been cut short or changed "
               "when it was copied. Showing the default recipe; ask for the link again.")


def recipe_from_token(token: str) -> Recipe:
    """The recipe in a share link; RecipeError in plain words when it is empty,
    damaged or not a valid recipe (what exactly is wrong is added for the last)."""
    token = (token or "").strip()
    if not token:
        raise RecipeError("This link has an empty recipe. Showing the default recipe.")
    try:
        data = parse_json(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)), "recipe")
    except (binascii.Error, ValueError):       # not base64, or not JSON (a RecipeError)
        raise RecipeError(BROKEN_LINK) from None
    try:
        return Recipe.from_dict(data)
    except RecipeError as err:
        raise RecipeError(f"This link's recipe cannot run here ({plain(str(err))}). "
                          f"Showing the default recipe.") from None


# --- examples --------------------------------------------------------------------

def example_files(folder: Path = RECIPES_DIR) -> list[Path]:
    return sorted(folder.glob("*.json")) if folder.is_dir() else []


def example_label(path: Path) -> str:
    """'shapes not (shapes)': the file's name and the model it runs on."""
    name = path.stem.replace("_", " ").replace("-", " ")
    try:
        return f"{name} ({Recipe.from_json(path.read_text()).model})"
    except (OSError, RecipeError):
        return name


# --- sweeps -------------------------------------------------------------------------
SWEEP_DEFAULT = "concepts[0].weight"
SWEEP_EXAMPLE = "0.5:2:4"      # an AND weight of 0 is refused (every row would be off)


def sweep_choices(recipe: Recipe | None = None) -> list[tuple[str, str]]:
    """(label, sweep field) for the axis pickers: what applies to `recipe` (each active
    row's AND weight or NOT β; the MCMC knobs when its sampler has them), then the
    recipe-wide knobs. Without a recipe, everything a sweep may name (the API's)."""
    if recipe is None:
        rows = [f"concepts[{n}].{kind}" for n in range(MAX_CONCEPTS) for kind in ("weight", "beta")]
    else:
        rows = [f"concepts[{n}].{'beta' if c.negate else 'weight'}"
                for n, c in enumerate(recipe.concepts) if not c.muted]
    knobs = [f for f in SWEPT_LABELS if recipe is None or _applies(f, recipe.sampler.name)]
    return [(field_label(f), f) for f in rows + knobs]


def _applies(field: str, sampler: str) -> bool:
    """Whether a swept field means anything under `sampler` (a knob only for its samplers)."""
    knob = BY_NAME.get(field.removeprefix("sampler."))
    return knob is None or sampler in (knob.only or MCMC_SAMPLERS)
SWEEP_PATH = re.compile(r"axes\[(\d+)\]((?:\.\w+)*): ")
SWEEP_PARTS = {".range.num": "the number of values ", ".values": "", ".range": "the range "}


def sweep_words(message: str) -> str:
    """A sweep error as the page says it: 'axes[0].range.num: must be …' -> 'Sweep axis 1:
    the number of values must be …'; 'axes: cell (1, 2): concepts[0].weight: …' ->
    'Cell (1, 2): Row 1 AND weight: …'; 'cost: …' -> '…'."""
    axis = SWEEP_PATH.match(message)
    if axis:
        part = SWEEP_PARTS.get(axis.group(2), "")
        return f"Sweep axis {int(axis.group(1)) + 1}: {part}{message[axis.end():]}"
    cell = re.match(r"axes: cell \((\d+), (\d+)\): ", message)
    if cell:
        return f"Cell ({cell.group(1)}, {cell.group(2)}): {plain(message[cell.end():])}"
    rest = message.removeprefix("axes: ").removeprefix("cost: ")
    return rest[:1].upper() + rest[1:]


def build_sweep(recipe: Recipe, axes: list[tuple[str | None, str]]) -> Sweep:
    """A Sweep from the picker: per axis a field ("none" leaves it out) and values
    typed as a list ("0, 0.5, 1", "ddim, hmc") or a range "start:stop:num"."""
    given = []
    for k, (field, text) in enumerate(axes, 1):
        if not field or field == "none":
            continue
        text = (text or "").strip()
        if not text:
            raise RecipeError(f"Sweep axis {k}: give values, e.g. 0, 0.5, 1 or 0.5:2:4")
        row = concept_field(field)
        if row and int(row.group(1)) >= len(recipe.concepts):   # the picker lists 8 rows
            raise RecipeError(f"Sweep axis {k}: the recipe has {len(recipe.concepts)} "
                              f"row(s); there is no row {int(row.group(1)) + 1}")
        if ":" in text:
            parts = text.split(":")
            if len(parts) != 3:
                raise RecipeError(f"Sweep axis {k}: a range is start:stop:num, got {text[:40]!r}")
            start, stop, num = (_sweep_value(p.strip()) for p in parts)
            given.append({"field": field, "range": {"start": start, "stop": stop, "num": num}})
        else:
            given.append({"field": field,
                          "values": [_sweep_value(v.strip()) for v in text.split(",") if v.strip()]})
    try:
        return Sweep.from_dict({"recipe": recipe.to_dict(), "axes": given})
    except RecipeError as err:
        raise RecipeError(sweep_words(str(err))) from None


def _sweep_value(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text
