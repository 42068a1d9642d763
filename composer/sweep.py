"""A sweep: one recipe run over a grid of one or two axes, under one seed.

A sweep is plain JSON, like a recipe:

    {"version": 1,
     "recipe": {...a recipe...},
     "axes": [{"field": "concepts[1].beta", "values": [0, 0.5, 1, 2]},
              {"field": "sampler.name", "values": ["ddim", "hmc"]}]}

An axis gives either `values` (a list) or `range` ({"start", "stop", "num"}:
`num` evenly spaced values, both ends included). Fields that can be swept:
`concepts[i].weight`, `concepts[i].beta`, `scale`, `sampler.name`,
`sampler.step_size`, `sampler.mcmc_steps`, `steps`, `seed`. Each cell is the
recipe with that cell's values set, validated like any recipe, and run on its
own; the first axis runs down the rows of the grid, the second across.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from composer.knobs import KNOBS
from composer.recipe import CONCEPT_PATH, SAMPLER_LABELS, SMC, Recipe, RecipeError, echo, parse_json

SWEEP_VERSION = 1
MAX_AXES = 2
MAX_CELLS = 25
MAX_VALUES = 25
TOP_FIELDS = ("scale", "steps", "seed")
SAMPLER_FIELDS = ("sampler.name", *(f"sampler.{k.name}" for k in KNOBS if k.swept))
FIELDS = ("concepts[i].weight", "concepts[i].beta") + TOP_FIELDS + SAMPLER_FIELDS


@dataclass(frozen=True)
class Axis:
    field: str
    values: tuple

    def label(self, value: Any) -> str:
        """'Row 2 NOT β = 1.5', 'sampler = U-HMC': as the page names them."""
        if self.field == "sampler.name":
            shown = SAMPLER_LABELS.get(value, str(value))
        else:
            shown = f"{value:g}" if isinstance(value, float) else str(value)
        return f"{field_label(self.field)} = {shown}"


SWEPT_LABELS = {"scale": "α (scale)", "sampler.name": "sampler",
                **{f"sampler.{k.name}": k.label for k in KNOBS if k.swept},
                "steps": "steps", "seed": "seed"}


def concept_field(field: str) -> re.Match | None:
    """'concepts[1].beta' -> its match (row, 'beta'): a row's AND weight or NOT β."""
    match = CONCEPT_PATH.fullmatch(field)
    return match if match and match.group(2) in ("weight", "beta") else None


def field_label(field: str) -> str:
    """A sweepable field as the page names it: 'concepts[1].beta' -> 'Row 2 NOT β'."""
    match = concept_field(field)
    if match:
        kind = "NOT β" if match.group(2) == "beta" else "AND weight"
        return f"Row {int(match.group(1)) + 1} {kind}"
    return SWEPT_LABELS.get(field, field)


def with_value(recipe: Recipe, field: str, value: Any) -> Recipe:
    """The recipe with one swept field set; RecipeError, naming the field by its path
    in the recipe, if the result is invalid."""
    data = recipe.to_dict()
    match = concept_field(field)
    if match:
        index, name = int(match.group(1)), match.group(2)
        if index >= len(recipe.concepts):
            raise RecipeError(f"{field}: the recipe has {len(recipe.concepts)} concepts")
        if recipe.concepts[index].negate != (name == "beta"):   # the other slider: a no-op
            kind, use = (("a NOT row", "its NOT β") if recipe.concepts[index].negate
                         else ("an AND row", "its AND weight"))
            raise RecipeError(f"{field}: row {index + 1} is {kind}, so this would change "
                              f"nothing; sweep {use}")
        data["concepts"][index][name] = value
    elif field in TOP_FIELDS:
        data[field] = value
    elif field in SAMPLER_FIELDS:
        data["sampler"][field.split(".", 1)[1]] = value
        if field == "sampler.name" and value != SMC:    # smc's K means nothing to the others
            data["sampler"].pop("particles", None)
    else:
        raise RecipeError(f"field: cannot sweep {echo(field)}; sweepable fields are {', '.join(FIELDS)}")
    return Recipe.from_dict(data)


@dataclass(frozen=True)
class Sweep:
    recipe: Recipe
    axes: tuple[Axis, ...]
    version: int = SWEEP_VERSION

    def __post_init__(self) -> None:
        if not 1 <= len(self.axes) <= MAX_AXES:
            raise RecipeError(f"axes: give 1 or {MAX_AXES} axes, got {len(self.axes)}")
        if len({a.field for a in self.axes}) != len(self.axes):
            raise RecipeError("axes: the two axes sweep the same field")
        cells = 1
        for axis in self.axes:
            cells *= len(axis.values)
        if cells > MAX_CELLS:
            raise RecipeError(f"axes: {cells} cells; a sweep has at most {MAX_CELLS}")
        self.cells()                                    # every cell must be a valid recipe

    @property
    def shape(self) -> tuple[int, int]:
        rows = len(self.axes[0].values)
        return rows, (len(self.axes[1].values) if len(self.axes) > 1 else 1)

    def labels(self) -> tuple[list[str], list[str]]:
        """The grid's row labels and column labels ("" for a single column)."""
        second = self.axes[1] if len(self.axes) > 1 else None
        return ([self.axes[0].label(v) for v in self.axes[0].values],
                [second.label(v) for v in second.values] if second else [""])

    def cells(self) -> list[tuple[tuple[int, int], Recipe, tuple[str, ...]]]:
        """(row, column), the cell's recipe and its labels, row by row."""
        second = self.axes[1] if len(self.axes) > 1 else None
        out = []
        for i, a in enumerate(self.axes[0].values):
            for j, b in enumerate(second.values if second else (None,)):
                try:
                    recipe = with_value(self.recipe, self.axes[0].field, a)
                    labels = (self.axes[0].label(a),)
                    if second:
                        recipe = with_value(recipe, second.field, b)
                        labels += (second.label(b),)
                except RecipeError as err:
                    raise RecipeError(f"axes: cell ({i + 1}, {j + 1}): {err}") from None
                out.append(((i, j), recipe, labels))
        return out

    def to_dict(self) -> dict:
        return {"version": self.version, "recipe": self.recipe.to_dict(),
                "axes": [{"field": a.field, "values": list(a.values)} for a in self.axes]}

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: Any) -> "Sweep":
        if not isinstance(data, dict):
            raise RecipeError("sweep: must be an object with 'recipe' and 'axes'")
        unknown = [k for k in data if k not in ("version", "recipe", "axes")]
        if unknown:
            raise RecipeError(f"sweep: unknown field {echo(unknown[0])}; allowed: version, recipe, axes")
        if data.get("version", SWEEP_VERSION) != SWEEP_VERSION or isinstance(data.get("version"), bool):
            raise RecipeError(f"version: this app reads sweep version {SWEEP_VERSION}, "
                              f"got {echo(data.get('version'))}")
        recipe = Recipe.from_dict(data.get("recipe"))
        axes = data.get("axes")
        if not isinstance(axes, list):
            raise RecipeError("axes: must be a list of 1 or 2 axes")
        return cls(recipe, tuple(_axis(f"axes[{i}]", a) for i, a in enumerate(axes)))

    @classmethod
    def from_json(cls, text: str | bytes) -> "Sweep":
        return cls.from_dict(parse_json(text, "sweep"))


def _axis(path: str, data: Any) -> Axis:
    if not isinstance(data, dict) or set(data) - {"field", "values", "range"}:
        raise RecipeError(f"{path}: must be {{'field': ..., 'values': [...]}} or "
                          f"{{'field': ..., 'range': {{'start', 'stop', 'num'}}}}")
    field = data.get("field")
    if not isinstance(field, str) or not (concept_field(field) or field in TOP_FIELDS
                                          or field in SAMPLER_FIELDS):
        raise RecipeError(f"{path}.field: cannot sweep {echo(field)}; sweepable fields are "
                          f"{', '.join(FIELDS)}")
    if ("values" in data) == ("range" in data):
        raise RecipeError(f"{path}: give either 'values' or 'range'")
    values = data["values"] if "values" in data else _range(f"{path}.range", data["range"])
    if not isinstance(values, list) or not 1 <= len(values) <= MAX_VALUES:
        raise RecipeError(f"{path}.values: must be a list of 1 to {MAX_VALUES} values")
    return Axis(field, tuple(values))


def _range(path: str, data: Any) -> list[float]:
    if not isinstance(data, dict) or set(data) != {"start", "stop", "num"}:
        raise RecipeError(f"{path}: must be {{'start': a, 'stop': b, 'num': n}}")
    start, stop, num = data["start"], data["stop"], data["num"]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (start, stop, num)):
        raise RecipeError(f"{path}: start, stop and num must be numbers")
    if not (isinstance(num, int) or float(num).is_integer()) or not 1 <= num <= MAX_VALUES:
        raise RecipeError(f"{path}.num: must be an integer from 1 to {MAX_VALUES}, got {echo(num)}")
    num = int(num)
    try:   # a huge int (10**400) overflows float; inf and nan are not values
        start, stop = float(start), float(stop)
    except OverflowError:
        raise RecipeError(f"{path}: start and stop must be finite numbers, got "
                          f"{echo(data['start'])} and {echo(data['stop'])}") from None
    if not (math.isfinite(start) and math.isfinite(stop)):
        raise RecipeError(f"{path}: start and stop must be finite numbers, got "
                          f"{echo(start)} and {echo(stop)}")
    if num == 1:
        return [start]
    return [round(start + (stop - start) * k / (num - 1), 10) for k in range(num)]
