"""The recipe: one versioned, JSON-serialisable description of a composition.

The schema is a set of frozen pydantic (v2) dataclasses, and validation lives here
and only here. Every scalar field is strict: a bool is not a number, a number is
not a string, NaN and infinity are refused, and so are unknown fields. The one
conversion is a whole float in an integer field (5.0 -> 5), which JSON Schema itself
counts as an integer. Every error is a `RecipeError` whose message starts with the
dotted path of the bad field and says what is allowed. Fields left as ``None`` take
the model's defaults (see `Recipe.with_defaults`).
"""
import dataclasses
import functools
import json
import re
from typing import Annotated, Any, Literal

from pydantic import (AfterValidator, BeforeValidator, ConfigDict, Field, Strict, StrictBool,
                      StrictStr, TypeAdapter, ValidationError, ValidationInfo, field_validator)
from pydantic.dataclasses import dataclass

from composer.knobs import AUTO, BY_NAME, KNOBS, Knob
from composer.operators import OPERATORS as OPERATOR_REGISTRY

RECIPE_VERSION = 1
MAX_CONCEPTS = 8
MAX_TEXT_CHARS = 400
MAX_MODEL_CHARS = 400
MAX_RECIPE_BYTES = 64 * 1024       # a full recipe is about 1 kB
ECHO_CHARS = 40                    # how much of a bad value an error message repeats
OPERATORS = tuple(OPERATOR_REGISTRY)      # composer/operators.py says what each does
# How the product operator applies NOT: RRR's unbounded ratio, or squashed (operators.py).
NEGATIONS = ("ratio", "bounded")
# flow_euler: a flow-matching model's own scheduler (SD3, FLUX), on its velocities.
FLOW_EULER = "flow_euler"
REVERSE_SAMPLERS = ("ddpm", "ddim", "euler", "euler_ancestral", "dpmpp", FLOW_EULER)
MCMC_SAMPLERS = ("ula", "uhmc", "mala", "hmc")
# Sequential Monte Carlo: K particles per sample, Feynman-Kac weights (composer/engine.py).
SMC = "smc"
SAMPLERS = REVERSE_SAMPLERS + MCMC_SAMPLERS + (SMC,)
METROPOLIS_SAMPLERS = ("mala", "hmc")
# How pages, grids and messages name the samplers.
SAMPLER_LABELS = {"ddim": "DDIM", "ddpm": "DDPM", "euler": "Euler",
                  "euler_ancestral": "Euler ancestral", "dpmpp": "DPM-Solver++",
                  FLOW_EULER: "Flow Euler (SD3, FLUX)",
                  "ula": "ULA (annealed Langevin)", "uhmc": "U-HMC", "mala": "MALA (Metropolis)",
                  "hmc": "HMC (Metropolis)", "smc": "SMC (Feynman-Kac particles)"}
# MCMC (and SMC) runs between steps of a variance-preserving reverse process.
MCMC_PREDICTORS = ("ddpm", "ddim")
# Every numeric field's range; the fields and the error messages both read it.
RANGES = {"weight": (0, 10), "beta": (0, 10), "scale": (0, 50), "steps": (1, 1000),
          "seed": (0, 2**32 - 1), "num_samples": (1, 4096), "best_of": (1, 8),
          "temperature": (0, 10), **{k.name: (k.low, k.high) for k in KNOBS}}
OPEN_BELOW = ("temperature", *(k.name for k in KNOBS if k.open_below))   # T = 0 ignores q
# Strictness is on each scalar type (Strict()): pydantic's model-wide strict=True would
# also refuse the dicts and lists that the nested rows and sampler arrive as.
CONFIG = ConfigDict(extra="forbid")


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


# --- field types ----------------------------------------------------------------

def _whole_float_as_int(value: Any) -> Any:
    """5.0 -> 5 (JSON Schema's integer; sweep ranges produce such floats); 2.5 stays and is refused."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _integer(name: str) -> Any:
    low, high = RANGES[name]
    return Annotated[int, Strict(), Field(ge=low, le=high), BeforeValidator(_whole_float_as_int)]


def _real(name: str) -> Any:
    """A finite float in the field's range; an int is a fine float (2 -> 2.0)."""
    low, high = RANGES[name]
    below = {"gt": low} if name in OPEN_BELOW else {"ge": low}
    return Annotated[float, Strict(), Field(le=high, allow_inf_nan=False, **below)]


def _knob_type(knob: Knob) -> Any:
    number = _integer(knob.name) if knob.integer else _real(knob.name)
    return (number | Literal[AUTO] if knob.auto else number) | None


def _with_knobs(cls):
    """One field per declared knob (composer/knobs.py), after the class's own; None
    takes the model's default."""
    for knob in KNOBS:
        cls.__annotations__[knob.name] = _knob_type(knob)
        setattr(cls, knob.name, None)
    return cls


def _prompt(text: str) -> str:
    if not text.strip():
        raise ValueError("is empty; write a prompt or remove the row")
    return text


def _model_name(name: Any) -> Any:
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"must name a model, got {echo(name)}")
    return name


def _readable_version(version: int) -> int:
    if version != RECIPE_VERSION:
        raise ValueError(f"this app reads version {RECIPE_VERSION}, got {echo(version)}")
    return version


def _sampler_by_name(value: Any) -> Any:
    """`"sampler": "hmc"` is short for `{"name": "hmc"}`."""
    return {"name": value} if isinstance(value, str) else value


def _raising_recipe_errors(where: str):
    """Constructing (and `dataclasses.replace`) raises RecipeError, not pydantic's
    ValidationError; `where` is the class's own path in a recipe."""
    def decorate(cls):
        validate = cls.__init__

        @functools.wraps(validate)
        def __init__(self, *args, **kwargs):
            try:
                validate(self, *args, **kwargs)
            except ValidationError as err:
                raise RecipeError(_message(err, where)) from None
        cls.__init__ = __init__
        return cls
    return decorate


# --- the schema -----------------------------------------------------------------

@_raising_recipe_errors("concept")
@dataclass(frozen=True, config=CONFIG)
class Concept:
    """One row: a prompt that is ANDed with `weight`, or NOT-ed with `beta`.

    Muted rows stay in the recipe (so a shared link restores them) but take no
    part in the composition.
    """
    text: Annotated[StrictStr, Field(max_length=MAX_TEXT_CHARS), AfterValidator(_prompt)]
    weight: _real("weight") = 1.0
    negate: StrictBool = False
    beta: _real("beta") = 1.0
    muted: StrictBool = False

    @property
    def coefficient(self) -> float:
        """Signed weight: +w for AND, -beta for NOT."""
        return -self.beta if self.negate else self.weight


@_raising_recipe_errors("sampler")
@dataclass(frozen=True, config=CONFIG)
@_with_knobs
class SamplerSpec:
    """A sampler and its knobs. `None` knobs take the model's defaults.

    - name: a reverse-diffusion scheduler (ddpm, ddim, euler, euler_ancestral,
      dpmpp; flow_euler on flow-matching models) or an annealed MCMC sampler (ula,
      uhmc, mala, hmc).
    - scheduler: for MCMC samplers, the reverse step taken between levels.
    - the knobs of composer/knobs.py, one field each (docs/recipe.md's table): step_size
      may be "auto" (MALA and HMC), adapted during the run toward a target acceptance
      (composer/engine.py, `AdaptiveStep`); particles is smc's K, left out of to_dict
      when None.
    """
    name: Literal[SAMPLERS] = "ddim"
    scheduler: Literal[MCMC_PREDICTORS] = "ddpm"

    @field_validator(*(k.name for k in KNOBS if k.only))
    @classmethod
    def _knob_of_its_samplers(cls, value: Any, info: ValidationInfo) -> Any:
        name, only = info.data.get("name"), BY_NAME[info.field_name].only
        if value is not None and name is not None and name not in only:
            raise ValueError(f"{info.field_name} are the {'/'.join(only)} sampler's; "
                             f"{name!r} takes none")
        return value

    @field_validator("step_size")
    @classmethod
    def _auto_needs_metropolis(cls, step_size: Any, info: ValidationInfo) -> Any:
        name = info.data.get("name")            # absent when the name itself was refused
        if step_size == AUTO and name is not None and name not in METROPOLIS_SAMPLERS:
            raise ValueError(f"'auto' adapts the step to the Metropolis acceptance, so it "
                             f"needs mala or hmc; got {name!r}")
        return step_size

    @property
    def is_mcmc(self) -> bool:
        return self.name in MCMC_SAMPLERS

    @property
    def is_metropolis(self) -> bool:
        return self.name in METROPOLIS_SAMPLERS

    @property
    def reverse(self) -> str:
        """The scheduler of the reverse steps: its own name, or `scheduler` for MCMC and SMC."""
        return self.scheduler if self.is_mcmc or self.name == SMC else self.name


@_raising_recipe_errors("")
@dataclass(frozen=True, config=CONFIG)
class Recipe:
    """One composition: its rows, how they combine, the sampler and the run. `None`
    fields take the model's defaults; docs/recipe.md describes every field."""
    model: Annotated[StrictStr, Field(max_length=MAX_MODEL_CHARS), BeforeValidator(_model_name)] = "shapes"
    # validate_default: an empty recipe must be refused for having nothing to compose
    concepts: Annotated[tuple[Concept, ...], Field(max_length=MAX_CONCEPTS, validate_default=True)] = ()
    operator: Literal[OPERATORS] = "and"
    negation: Literal[NEGATIONS] = "ratio"
    scale: _real("scale") | None = None
    sampler: Annotated[SamplerSpec, BeforeValidator(
        _sampler_by_name, json_schema_input_type=SamplerSpec | Literal[SAMPLERS])] = SamplerSpec()
    steps: _integer("steps") | None = None
    seed: _integer("seed") = 0
    num_samples: _integer("num_samples") = 1
    version: Annotated[int, Strict(), AfterValidator(_readable_version),
                       BeforeValidator(_whole_float_as_int),
                       Field(json_schema_extra={"const": RECIPE_VERSION})] = RECIPE_VERSION
    # Draw this many candidates per sample and keep the one whose rows all hold by the
    # model's own lift verdict (composer/lift.py); 1: off. Left out of to_dict when 1.
    best_of: _integer("best_of") = 1
    # SuperDiff OR's temperature T (composer/operators.py). Left out of to_dict when 1.
    temperature: _real("temperature") = 1.0

    @field_validator("concepts")
    @classmethod
    def _something_to_compose(cls, concepts: tuple[Concept, ...]) -> tuple[Concept, ...]:
        active = [c for c in concepts if not c.muted]
        if not active:
            raise ValueError("add at least one concept that is not muted")
        positives = [c for c in active if not c.negate]
        if not positives:
            raise ValueError("NOT needs at least one positive (AND) concept; "
                             "negation alone has nothing to subtract from")
        if all(c.weight == 0 for c in positives):
            raise ValueError("every AND weight is 0, so no concept takes part; "
                             "raise a weight above 0 or mute the row")
        return concepts

    @field_validator("operator")
    @classmethod
    def _operator_takes_the_rows(cls, operator: str, info: ValidationInfo) -> str:
        if (not OPERATOR_REGISTRY[operator].takes_not
                and any(c.negate and not c.muted for c in info.data.get("concepts", ()))):
            raise ValueError(f"{operator} takes no NOT rows; use 'product' or 'and' for negation")
        return operator

    @field_validator("temperature")
    @classmethod
    def _temperature_of_or(cls, temperature: float, info: ValidationInfo) -> float:
        operator = info.data.get("operator")
        if temperature != 1.0 and operator is not None and operator != "superdiff_or":
            raise ValueError(f"the temperature weighs superdiff_or's tracked densities; "
                             f"{operator!r} takes none (leave it at 1)")
        return temperature

    @field_validator("negation")
    @classmethod
    def _negation_of_product(cls, negation: str, info: ValidationInfo) -> str:
        operator = info.data.get("operator")
        if negation != "ratio" and operator not in (None, "product"):
            raise ValueError(f"{negation!r} is a form of the product operator's NOT; the "
                             f"{operator!r} operator takes negation 'ratio' (its own form)")
        return negation

    @property
    def active_concepts(self) -> tuple[Concept, ...]:
        return tuple(c for c in self.concepts if not c.muted)

    def with_defaults(self, defaults: dict[str, Any]) -> "Recipe":
        """Fill every `None` field from a model's defaults (keys: scale, steps,
        and the SamplerSpec knob names). A knob's default may depend on the
        sampler: a dict from sampler name to value (samplers it leaves out keep None)."""
        def pick(value):
            return value.get(self.sampler.name) if isinstance(value, dict) else value
        knobs = {k.name: pick(defaults.get(k.name, k.default)) for k in KNOBS
                 if getattr(self.sampler, k.name) is None}
        top = {k: defaults[k] for k in ("scale", "steps") if getattr(self, k) is None}
        return dataclasses.replace(self, sampler=dataclasses.replace(self.sampler, **knobs), **top)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["concepts"] = list(data["concepts"])
        # Fields at their "off" value are left out: links and PNGs stay byte-identical
        # to those made before the fields existed.
        if self.best_of == 1:
            del data["best_of"]
        if self.temperature == 1.0:
            del data["temperature"]
        for knob in KNOBS:
            if not knob.always_written and getattr(self.sampler, knob.name) is None:
                del data["sampler"][knob.name]
        return data

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: Any) -> "Recipe":
        try:
            return RECIPE.validate_python(data)
        except ValidationError as err:
            raise RecipeError(_message(err, "")) from None

    @classmethod
    def from_json(cls, text: str | bytes) -> "Recipe":
        """Parse a recipe; every failure (size, encoding, syntax, nesting depth,
        huge numbers) is a RecipeError. A UTF-8 byte-order mark is allowed."""
        return cls.from_dict(parse_json(text, "recipe"))


RECIPE = TypeAdapter(Recipe)


def recipe_json_schema() -> dict:
    """The recipe's JSON Schema (draft 2020-12); docs/recipe.md carries a copy."""
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **RECIPE.json_schema()}


# --- pydantic's errors in the recipe's words --------------------------------------------

OWNERS = {"": Recipe, "concept": Concept, "sampler": SamplerSpec}
NESTED = {"concepts": Concept, "sampler": SamplerSpec}
FIELD_NAMES = {f.name for cls in OWNERS.values() for f in dataclasses.fields(cls)}
UNKNOWN_FIELD = ("unexpected_keyword_argument", "extra_forbidden", "invalid_key")
MUST_BE = {"int_type": "an integer", "float_type": "a finite number",
           "finite_number": "a finite number", "bool_type": "true or false", "string_type": "a string"}
# A concept's field as messages and sweeps name it: 'concepts[1].beta' (0-based row).
CONCEPT_PATH = re.compile(r"concepts\[(\d+)\]\.(\w+)")
OUT_OF_RANGE = ("greater_than", "greater_than_equal", "less_than", "less_than_equal")


def _path(where: str, loc: tuple) -> str:
    """('concepts', 1, 'beta') -> 'concepts[1].beta'; pydantic's tags for the members
    of a union ('constrained-float', ...) are left out."""
    path = where
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part in FIELD_NAMES:
            path += f".{part}" if path else part
    return path


def _message(err: ValidationError, where: str) -> str:
    """One line for the first problem: unknown fields first, then the version (a recipe
    from another version fails for that reason), then in field order."""
    error = min(err.errors(), key=lambda e: (e["type"] not in UNKNOWN_FIELD, e["loc"][:1] != ("version",)))
    kind, loc, value, ctx = error["type"], error["loc"], error["input"], error.get("ctx", {})
    owner = OWNERS[where]
    if kind in UNKNOWN_FIELD:
        for part in loc[:-1]:
            owner = NESTED.get(part, owner)
        name = loc[-1] if isinstance(loc[-1], str) and loc[-1].isidentifier() else echo(loc[-1])
        parent = _path(where, loc[:-1])
        return (f"{parent + '.' if parent else ''}{name[:ECHO_CHARS]}: unknown field; allowed fields "
                f"are {', '.join(f.name for f in dataclasses.fields(owner))}")
    names = [f.name for f in dataclasses.fields(owner)]
    if loc and isinstance(loc[0], int) and loc[0] < len(names):
        loc = (names[loc[0]],) + loc[1:]        # a positional argument: Concept("ring", 99.0)
    path = _path(where, loc) or "recipe"
    if kind in MUST_BE:
        return f"{path}: must be {MUST_BE[kind]}, got {echo(value)}"
    if kind in OUT_OF_RANGE:
        name = next(part for part in reversed(loc) if part in RANGES)
        low, high = RANGES[name]
        return f"{path}: must be in {'(' if name in OPEN_BELOW else '['}{low:g}, {high:g}], got {echo(value)}"
    if kind == "literal_error":
        allowed = ctx["expected"].replace("'", "").replace(" or ", ", ")
        return f"{path}: must be one of {allowed}; got {echo(value)}"
    if kind == "value_error":                   # raised by the validators above, in our words
        return f"{path}: {ctx['error']}"
    if kind == "too_long":
        return f"{path}: at most {ctx['max_length']} rows, got {ctx['actual_length']}"
    if kind == "string_too_long":
        return f"{path}: longer than {ctx['max_length']} characters"
    if kind == "dataclass_type":
        return f"{path}: must be an object, got {type(value).__name__}"
    if kind == "tuple_type":
        return f"{path}: must be a list"
    if kind == "missing":
        return f"{path}: is missing"
    return f"{path}: {error['msg']}"
