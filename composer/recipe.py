"""The recipe: one versioned, JSON-serialisable description of a composition.

Validation lives here and only here. Every error is a `RecipeError` whose
message starts with the dotted path of the bad field and says what is allowed.
Fields left as ``None`` take the model's defaults (see `Recipe.with_defaults`).
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any

RECIPE_VERSION = 1
MAX_CONCEPTS = 8
MAX_TEXT_CHARS = 400
MAX_MODEL_CHARS = 400
MAX_RECIPE_BYTES = 64 * 1024       # a full recipe is about 1 kB
ECHO_CHARS = 40                    # how much of a bad value an error message repeats
OPERATORS = ("and", "product", "mixture")
# How the product operator applies NOT: RRR's unbounded ratio, or squashed (operators.py).
NEGATIONS = ("ratio", "bounded")
REVERSE_SAMPLERS = ("ddpm", "ddim", "euler", "euler_ancestral", "dpmpp")
MCMC_SAMPLERS = ("ula", "uhmc", "mala", "hmc")
SAMPLERS = REVERSE_SAMPLERS + MCMC_SAMPLERS
METROPOLIS_SAMPLERS = ("mala", "hmc")
AUTO = "auto"          # a step size adapted during the run (MALA, HMC)
# How pages, grids and messages name the samplers.
SAMPLER_LABELS = {"ddim": "DDIM", "ddpm": "DDPM", "euler": "Euler",
                  "euler_ancestral": "Euler ancestral", "dpmpp": "DPM-Solver++",
                  "ula": "ULA (annealed Langevin)", "uhmc": "U-HMC", "mala": "MALA (Metropolis)",
                  "hmc": "HMC (Metropolis)"}
# MCMC runs between steps of a variance-preserving reverse process.
MCMC_PREDICTORS = ("ddpm", "ddim")


class RecipeError(ValueError):
    """A recipe field is missing, of the wrong type or out of range."""


def echo(value: Any) -> str:
    """A value as an error message may repeat it: escaped (repr) and cut short, so
    a user's text can neither forge log lines nor flood them."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        return "a very large integer"
    text = repr(value)
    return text if len(text) <= ECHO_CHARS else text[:ECHO_CHARS] + "..."


def parse_json(text: str | bytes, what: str) -> Any:
    """JSON from a user; every failure (size, encoding, syntax, nesting depth, huge
    numbers) is a RecipeError starting with `what`. A UTF-8 byte-order mark is fine."""
    if not isinstance(text, (str, bytes)):
        raise RecipeError(f"{what}: must be JSON text (a string), got {type(text).__name__}")
    if len(text) > MAX_RECIPE_BYTES:
        raise RecipeError(f"{what}: larger than {MAX_RECIPE_BYTES // 1024} kB")
    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8-sig")
        return json.loads(text.removeprefix("\ufeff"))
    except UnicodeDecodeError:
        raise RecipeError(f"{what}: not UTF-8 text") from None
    except RecursionError:
        raise RecipeError(f"{what}: nested too deeply") from None
    except ValueError as err:      # JSONDecodeError, and integers past Python's digit limit
        raise RecipeError(f"{what}: not valid JSON ({str(err)[:80]})") from None


def _number(path: str, value: Any, lo: float, hi: float, *, integer: bool = False,
            open_lo: bool = False) -> float | int:
    """The value as an int (a whole float such as 1.0 is accepted) or a float;
    booleans are not numbers."""
    kind = "an integer" if integer else "a finite number"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RecipeError(f"{path}: must be {kind}, got {echo(value)}")
    if not math.isfinite(value) or (integer and isinstance(value, float) and not value.is_integer()):
        raise RecipeError(f"{path}: must be {kind}, got {echo(value)}")
    bracket = "(" if open_lo else "["
    if value < lo or value > hi or (open_lo and value == lo):
        raise RecipeError(f"{path}: must be in {bracket}{lo:g}, {hi:g}], got {echo(value)}")
    return int(value) if integer else float(value)


def _keep(obj: Any, name: str, value: Any) -> None:
    """Store the checked form of a field on a frozen dataclass (1.0 -> 1 for ints)."""
    object.__setattr__(obj, name, value)


def _choice(path: str, value: Any, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise RecipeError(f"{path}: must be one of {', '.join(allowed)}; got {echo(value)}")
    return value


def _flag(path: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise RecipeError(f"{path}: must be true or false, got {echo(value)}")
    return value


def _known_keys(path: str, data: Any, cls: type) -> dict:
    if not isinstance(data, dict):
        raise RecipeError(f"{path or 'recipe'}: must be an object, got {type(data).__name__}")
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [key for key in data if key not in names]
    if unknown:
        where = f"{path}." if path else ""
        name = unknown[0] if isinstance(unknown[0], str) and unknown[0].isidentifier() else echo(unknown[0])
        raise RecipeError(f"{where}{name[:ECHO_CHARS]}: unknown field; allowed fields are "
                          f"{', '.join(names)}")
    return data


@dataclass(frozen=True)
class Concept:
    """One row: a prompt that is ANDed with `weight`, or NOT-ed with `beta`.

    Muted rows stay in the recipe (so a shared link restores them) but take no
    part in the composition.
    """
    text: str
    weight: float = 1.0
    negate: bool = False
    beta: float = 1.0
    muted: bool = False

    def validate(self, path: str) -> None:
        if not isinstance(self.text, str):
            raise RecipeError(f"{path}.text: must be a string, got {echo(self.text)}")
        if not self.text.strip():
            raise RecipeError(f"{path}.text: is empty; write a prompt or remove the row")
        if len(self.text) > MAX_TEXT_CHARS:
            raise RecipeError(f"{path}.text: longer than {MAX_TEXT_CHARS} characters")
        _keep(self, "weight", _number(f"{path}.weight", self.weight, 0.0, 10.0))
        _flag(f"{path}.negate", self.negate)
        _keep(self, "beta", _number(f"{path}.beta", self.beta, 0.0, 10.0))
        _flag(f"{path}.muted", self.muted)

    @property
    def coefficient(self) -> float:
        """Signed weight: +w for AND, -beta for NOT."""
        return -self.beta if self.negate else self.weight


@dataclass(frozen=True)
class SamplerSpec:
    """A sampler and its knobs. `None` knobs take the model's defaults.

    - name: a reverse-diffusion scheduler (ddpm, ddim, euler, euler_ancestral,
      dpmpp) or an annealed MCMC sampler (ula, uhmc, mala, hmc).
    - scheduler: for MCMC samplers, the reverse step taken between levels.
    - mcmc_steps: MCMC steps at each noise level.
    - step_size: MCMC step length as a fraction of the noise level sigma_t
      (ULA/MALA proposal std, HMC leapfrog step), or "auto" (MALA and HMC): adapted
      during the run toward a target acceptance (composer/engine.py, `adapt_step`).
    - leapfrog_steps, damping: HMC trajectory length and momentum persistence.
    - line_points: trapezoid points for the log-density difference on
      score-only models (Sjoberg et al. 2023).
    """
    name: str = "ddim"
    scheduler: str = "ddpm"
    mcmc_steps: int | None = None
    step_size: float | str | None = None
    leapfrog_steps: int | None = None
    damping: float | None = None
    line_points: int | None = None

    def validate(self, path: str) -> None:
        _choice(f"{path}.name", self.name, SAMPLERS)
        _choice(f"{path}.scheduler", self.scheduler, MCMC_PREDICTORS)
        checks = {
            "mcmc_steps": (0, 50, True), "step_size": (0.0, 2.0, False),
            "leapfrog_steps": (1, 20, True), "damping": (0.0, 1.0, False),
            "line_points": (2, 33, True),
        }
        if self.step_size == AUTO:
            if self.name not in METROPOLIS_SAMPLERS:
                raise RecipeError(f"{path}.step_size: 'auto' adapts the step to the Metropolis "
                                  f"acceptance, so it needs mala or hmc; got {self.name!r}")
            checks.pop("step_size")
        for name, (lo, hi, integer) in checks.items():
            value = getattr(self, name)
            if value is not None:
                _keep(self, name, _number(f"{path}.{name}", value, lo, hi, integer=integer,
                                          open_lo=(name == "step_size")))

    @property
    def is_mcmc(self) -> bool:
        return self.name in MCMC_SAMPLERS

    @property
    def is_metropolis(self) -> bool:
        return self.name in METROPOLIS_SAMPLERS


@dataclass(frozen=True)
class Recipe:
    model: str = "shapes"
    concepts: tuple[Concept, ...] = ()
    operator: str = "and"
    negation: str = "ratio"
    scale: float | None = None
    sampler: SamplerSpec = field(default_factory=SamplerSpec)
    steps: int | None = None
    seed: int = 0
    num_samples: int = 1
    version: int = RECIPE_VERSION

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        version = _number("version", self.version, 1, 2**31, integer=True)
        if version != RECIPE_VERSION:
            raise RecipeError(f"version: this app reads version {RECIPE_VERSION}, got {echo(version)}")
        _keep(self, "version", version)
        if not isinstance(self.model, str) or not self.model.strip():
            raise RecipeError(f"model: must name a model, got {echo(self.model)}")
        if len(self.model) > MAX_MODEL_CHARS:
            raise RecipeError(f"model: longer than {MAX_MODEL_CHARS} characters")
        if not isinstance(self.concepts, tuple):
            raise RecipeError("concepts: must be a list")
        if len(self.concepts) > MAX_CONCEPTS:
            raise RecipeError(f"concepts: at most {MAX_CONCEPTS} rows, got {len(self.concepts)}")
        for i, concept in enumerate(self.concepts):
            concept.validate(f"concepts[{i}]")
        active = self.active_concepts
        if not active:
            raise RecipeError("concepts: add at least one concept that is not muted")
        positives = [c for c in active if not c.negate]
        if not positives:
            raise RecipeError("concepts: NOT needs at least one positive (AND) concept; "
                              "negation alone has nothing to subtract from")
        if all(c.weight == 0 for c in positives):
            raise RecipeError("concepts: every AND weight is 0, so no concept takes part; "
                              "raise a weight above 0 or mute the row")
        _choice("operator", self.operator, OPERATORS)
        if self.operator == "mixture" and any(c.negate for c in active):
            raise RecipeError("operator: mixture takes no NOT rows; use 'product' or 'and' for negation")
        _choice("negation", self.negation, NEGATIONS)
        if self.negation != "ratio" and self.operator != "product":
            raise RecipeError(f"negation: {self.negation!r} is a form of the product operator's NOT; "
                              f"the {self.operator!r} operator takes negation 'ratio' (its own form)")
        if self.scale is not None:
            _keep(self, "scale", _number("scale", self.scale, 0.0, 50.0))
        if not isinstance(self.sampler, SamplerSpec):
            raise RecipeError("sampler: must be an object or a sampler name")
        self.sampler.validate("sampler")
        if self.steps is not None:
            _keep(self, "steps", _number("steps", self.steps, 1, 1000, integer=True))
        _keep(self, "seed", _number("seed", self.seed, 0, 2**32 - 1, integer=True))
        _keep(self, "num_samples", _number("num_samples", self.num_samples, 1, 4096, integer=True))

    @property
    def active_concepts(self) -> tuple[Concept, ...]:
        return tuple(c for c in self.concepts if not c.muted)

    def with_defaults(self, defaults: dict[str, Any]) -> "Recipe":
        """Fill every `None` field from a model's defaults (keys: scale, steps,
        and the SamplerSpec knob names). A knob's default may depend on the
        sampler: a dict from sampler name to value (samplers it leaves out keep None)."""
        def pick(value):
            return value.get(self.sampler.name) if isinstance(value, dict) else value
        knobs = {k: pick(defaults[k]) for k in ("mcmc_steps", "step_size", "leapfrog_steps",
                                                "damping", "line_points")
                 if getattr(self.sampler, k) is None}
        top = {k: defaults[k] for k in ("scale", "steps") if getattr(self, k) is None}
        return dataclasses.replace(self, sampler=dataclasses.replace(self.sampler, **knobs), **top)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["concepts"] = list(data["concepts"])
        return data

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: Any) -> "Recipe":
        data = dict(_known_keys("", data, cls))
        concepts = data.get("concepts", [])
        if not isinstance(concepts, list):
            raise RecipeError("concepts: must be a list")
        rows = []
        for i, row in enumerate(concepts):
            row = _known_keys(f"concepts[{i}]", row, Concept)
            if "text" not in row:
                raise RecipeError(f"concepts[{i}].text: is missing")
            rows.append(Concept(**row))
        data["concepts"] = tuple(rows)
        sampler = data.get("sampler", {})
        if isinstance(sampler, str):
            sampler = {"name": sampler}
        data["sampler"] = SamplerSpec(**_known_keys("sampler", sampler, SamplerSpec))
        return cls(**data)

    @classmethod
    def from_json(cls, text: str | bytes) -> "Recipe":
        """Parse a recipe; every failure (size, encoding, syntax, nesting depth,
        huge numbers) is a RecipeError. A UTF-8 byte-order mark is allowed."""
        return cls.from_dict(parse_json(text, "recipe"))
