"""The samplers' knobs, declared once.

Each knob's type, range, label, help and default per model family live here. The
recipe's schema (`SamplerSpec`), the moves' arguments (`samplers.MCMCKnobs`), the
page's boxes and labels, the models' defaults and the table in docs/recipe.md are
all derived from `KNOBS`. Adding a knob is one `Knob(...)` line plus its use.

A default is a value, or a dict from sampler name to value: samplers it leaves
out get none (the knob does not apply to them).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

AUTO = "auto"          # a step size adapted during the run (MALA, HMC)
ADAPTED = {"ula": 0.1, "uhmc": 0.1, "mala": AUTO, "hmc": AUTO}


@dataclass(frozen=True)
class Knob:
    name: str
    label: str                    # the page's box
    help: str                     # docs/recipe.md's table
    low: float
    high: float
    integer: bool = False
    open_below: bool = False      # low itself is refused (a step of 0 would not move)
    auto: bool = False            # "auto" is allowed: adapted during the run (mala, hmc)
    only: tuple[str, ...] = ()    # the samplers that take it; () = every MCMC sampler
    moves: bool = True            # handed to each MCMC move as is (samplers.MCMCKnobs)
    swept: bool = False           # offered as a sweep axis (composer/sweep.py)
    # Written into a recipe's JSON even when unset (null). Knobs added after
    # version 1 are left out when unset, so older links and PNGs stay byte-identical.
    always_written: bool = True
    default: Any = None           # where a model's family says nothing
    defaults: dict[str, Any] = field(default_factory=dict)   # family -> its default

    def parse(self, text: str) -> Any:
        """A value typed on a command line."""
        if self.auto and text == AUTO:
            return AUTO
        return int(text) if self.integer else float(text)

    def range_text(self) -> str:
        if self.integer:
            text = f"{self.low:g} to {self.high:g}"
        else:
            text = f"{'(' if self.open_below else '['}{self.low:g}, {self.high:g}]"
        if self.auto:
            text += ', or `"auto"` (mala, hmc)'
        if self.only:
            text += f", {', '.join(self.only)} only"
        return text

    def default_text(self) -> str:
        values = list(self.defaults.values()) or [self.default]
        if any(v != values[0] for v in values):
            return "model's"
        value = values[0]
        return ", ".join(f"{v}" for v in value.values()) if isinstance(value, dict) else f"{value}"


KNOBS: tuple[Knob, ...] = (
    Knob("mcmc_steps", "MCMC steps per level", "MCMC steps K at each level", 0, 50,
         integer=True, swept=True, defaults={"sd": 2, "shapes": 1, "toy2d": 6}),
    Knob("step_size", "Step size (× σ_t)",
         "MCMC step as a fraction of σ_t: ULA/MALA proposal std, HMC leapfrog step; "
         '`"auto"` adapts it during the run (below)', 0, 2, open_below=True, auto=True, swept=True,
         moves=False,     # the engine scales it by σ_t into the move's step h
         defaults={"sd": ADAPTED, "shapes": ADAPTED,
                   "toy2d": {"ula": 0.5, "uhmc": 0.3, "mala": AUTO, "hmc": AUTO}}),
    Knob("leapfrog_steps", "Leapfrog steps (HMC)", "HMC/U-HMC leapfrog steps L", 1, 20,
         integer=True, defaults={"sd": 3, "shapes": 2, "toy2d": 2}),
    Knob("damping", "Momentum damping (U-HMC/HMC)",
         "momentum persistence d in v ← d·v + √(1−d²)·z", 0, 1,
         defaults={"sd": 0.5, "shapes": 0.5, "toy2d": 0.5}),
    Knob("line_points", "Line points (score-only Metropolis)",
         "trapezoid points for log-density differences on score-only models (MALA)", 2, 33,
         integer=True, defaults={"sd": 5, "shapes": 3, "toy2d": 5}),
    Knob("particles", "Particles per sample K (SMC)", "particles K per sample; left out of "
         "the JSON when not set", 1, 16, integer=True, only=("smc",), moves=False,
         always_written=False, default={"smc": 4}),
)
BY_NAME = {knob.name: knob for knob in KNOBS}


def family_defaults(family: str) -> dict[str, Any]:
    """Every knob's default for one model family, as a model's `defaults` holds them."""
    return {knob.name: knob.defaults.get(family, knob.default) for knob in KNOBS}


def docs_rows() -> list[str]:
    """The knobs' rows of the field table in docs/recipe.md."""
    return [f"| `sampler.{k.name}` | {k.range_text()} | {k.default_text()} | {k.help} |"
            for k in KNOBS]


def add_arguments(parser) -> None:
    """Every knob as a command-line option (--mcmc-steps, --step-size, ...)."""
    for k in KNOBS:
        parser.add_argument("--" + k.name.replace("_", "-"), type=k.parse, default=None,
                            help=f"{k.help}: {k.range_text()}; default: the model's")


def from_arguments(args) -> dict[str, Any]:
    """The knobs given on a command line parsed by `add_arguments`."""
    return {k.name: getattr(args, k.name) for k in KNOBS if getattr(args, k.name) is not None}
