"""Lift verdicts: does a finished sample satisfy each row, in the model's own opinion?

CompLift (Yu & Gao, ICML 2025). Per sample x and per row c,

    lift(x | c) = E_{t,z} [ |z - eps(x_t, "")|^2 - |z - eps(x_t, c)|^2 ],
    x_t = sqrt(abar_t) x + sigma_t z,

the unconditional model's denoising loss minus the conditional one's. Each loss is
a term of the diffusion ELBO, so the average estimates log p(x | c) - log p(x) up to
the weighting over noise levels: positive when the model finds x likelier under c.
An AND row holds when its lift > 0; a NOT row holds when its lift <= 0. It is the
model's opinion of its own sample, never ground truth (docs/lift.md measures how
often it agrees with the shapes judge and the 2D lab's supports).

The estimate, fixed so that verdicts are comparable and deterministic:
- noise levels: LEVEL_FRACTIONS of the model's training schedule (timestep
  round(f * (num_train_timesteps - 1)) of `scheduler_config`): the midpoints of five
  equal slices of the schedule, a stratified version of CompLift's uniform t. The
  evidence sits at different levels in different worlds (the 2D lab's thin bars and
  ring show only at low noise, a shapes caption mostly at high noise; docs/lift.md),
  so the levels cover the whole schedule rather than one part of it;
- DRAWS noise draws z per level;
- common random numbers: every row and every sample sees the same t and z, so one
  batched `predict` answers all rows at a point (as in the engine), the empty
  caption's lift is exactly 0, and a sample's lift does not depend on the batch it
  came in (which is what lets `best_of` compare candidates fairly);
- the draws come from the lift's own torch.Generator, seeded from the recipe's
  seed (shifted by SEED_OFFSET, so z is never the run's own starting noise).

The rows are the active concepts that take part (muted rows and weight or beta 0
are left out, as the shapes judge leaves them out), each compared with the
unconditional row ""; rows sharing a text are evaluated once. Cost: levels x draws
x (distinct texts + 1) x samples network rows (`lift_cost`).

Stable Diffusion's samples are latents: the lift works on them directly (CompLift
does the same), so no VAE pass is needed.

How a caller uses it (`recipe` filled by composer.plan.prepare; x0 as the engine returns it):

    print(lift_cost(recipe))                       # network rows, before running
    result = measure_lift(model, recipe, record.x_t)       # record = engine.generate(...)
    result.values[b, i], result.holds[b, i]        # sample b, row i (result.texts[i])
    result.evaluations                             # what it cost

Values are means over levels and draws, in units of |eps|^2 (not nats). `holds`
is per row; `Lift.satisfied` reads them as the recipe's operator does (every row for
AND and product; one positive row and every NOT row for an OR, operators.py), and so
do the verdicts' "holds" and `best_of`.

Best of n: run the recipe with n x num_samples samples (candidate j of output i at
index i * n + j), then keep x0[best_of(result, n)].
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, replace

import torch

from composer.models.base import ModelAdapter
from composer.operators import OPERATORS
from composer.recipe import Concept, Recipe
from composer.samplers import alphas_cumprod

LEVEL_FRACTIONS = (0.1, 0.3, 0.5, 0.7, 0.9)
DRAWS = 8
SEED_OFFSET = 2 ** 32          # recipe seeds are below 2**32, so the streams never meet
MAX_ROWS_PER_CALL = 512        # network rows per predict call (rows x samples)


@dataclass(frozen=True)
class Lift:
    """Per-sample, per-row lifts of a batch: row i is texts[i] (NOT when negated[i])."""
    values: torch.Tensor            # [B, rows] float64, in the units of |eps|^2
    holds: torch.Tensor             # [B, rows] bool: lift > 0 (AND), lift <= 0 (NOT)
    texts: tuple[str, ...]
    negated: tuple[bool, ...]
    evaluations: int                # network rows it cost
    any_row: bool = False           # an OR: one positive row suffices (operators.Operator)

    @property
    def margins(self) -> torch.Tensor:
        """[B, rows]: lift for AND rows, -lift for NOT rows (positive: holds by that much)."""
        sign = torch.tensor([-1.0 if n else 1.0 for n in self.negated], dtype=self.values.dtype)
        return self.values * sign

    @property
    def satisfied(self) -> torch.Tensor:
        """[B] bool: the sample satisfies the composition (every row; for an OR, one
        positive row and every NOT row)."""
        positive = ~torch.tensor(self.negated, dtype=torch.bool)
        wanted = (self.holds | ~positive).all(1)
        if self.any_row:
            wanted = (self.holds & positive).any(1)
        return wanted & (self.holds | positive).all(1)

    @property
    def score(self) -> torch.Tensor:
        """[B]: by how much the composition holds (positive) or fails: the smallest
        margin; for an OR the best positive row's margin, capped by every NOT row's."""
        positive = ~torch.tensor(self.negated, dtype=torch.bool)
        inf = torch.tensor(math.inf, dtype=self.values.dtype)
        nots = torch.where(positive, inf, self.margins).min(1).values
        if self.any_row:
            return torch.minimum(torch.where(positive, self.margins, -inf).max(1).values, nots)
        return torch.minimum(torch.where(positive, self.margins, inf).min(1).values, nots)

    def take(self, keep: torch.Tensor) -> Lift:
        """The lifts of the samples `keep` (indices), e.g. those best_of chose."""
        return replace(self, values=self.values[keep], holds=self.holds[keep])


def lift_rows(recipe: Recipe) -> tuple[Concept, ...]:
    """The rows a lift judges: active concepts with a nonzero weight or beta."""
    return tuple(c for c in recipe.active_concepts if c.coefficient != 0)


def _answered(texts: tuple[str, ...]) -> tuple[str, ...]:
    """What the model answers for these texts: "" first, then each distinct text."""
    return ("",) + tuple(dict.fromkeys(t for t in texts if t != ""))


def timesteps(model: ModelAdapter) -> tuple[int, ...]:
    """The training timesteps the lift noises at."""
    levels = model.scheduler_config.get("num_train_timesteps", 1000)
    return tuple(round(f * (levels - 1)) for f in LEVEL_FRACTIONS)


def lift_cost(recipe: Recipe, num_samples: int | None = None) -> int:
    """Network rows `lift` costs for the recipe's samples (or num_samples of them)."""
    samples = recipe.num_samples if num_samples is None else num_samples
    return len(LEVEL_FRACTIONS) * DRAWS * len(_answered(tuple(c.text for c in lift_rows(recipe)))) * samples


def lift_cost_per_row() -> int:
    """Network rows per sample and row (the unconditional row costs as much again)."""
    return len(LEVEL_FRACTIONS) * DRAWS


def verdicts(result: Lift, recipe: Recipe) -> list[dict]:
    """Per sample, {"rows": [{"row" (1-based, as the page numbers it), "text", "negate",
    "lift", "holds"}], "holds": the sample satisfies the composition as its operator
    reads the rows (`Lift.satisfied`)}: the Result's and the API's form."""
    numbers = [n for n, c in enumerate(recipe.concepts, 1) if not c.muted and c.coefficient != 0]
    return [{"rows": [{"row": numbers[i], "text": result.texts[i], "negate": result.negated[i],
                       "lift": float(values[i]), "holds": bool(holds[i])}
                      for i in range(len(numbers))],
             "holds": bool(satisfied)}
            for values, holds, satisfied in zip(result.values, result.holds, result.satisfied)]


def measure_lift(model: ModelAdapter, recipe: Recipe, x0: torch.Tensor,
         max_rows: int = MAX_ROWS_PER_CALL, around=contextlib.nullcontext) -> Lift:
    """Lift of every sample x0 [B, *sample_shape] under every row of the recipe
    (`lift_rows`), with draws seeded from recipe.seed. `around()` is entered around
    each network evaluation (the engine's device turn and cancel check)."""
    rows = lift_rows(recipe)
    texts = tuple(c.text for c in rows)
    values = lift_of_texts(model, texts, x0, recipe.seed, max_rows, around)
    negated = tuple(c.negate for c in rows)
    holds = torch.where(torch.tensor(negated), values <= 0, values > 0)
    return Lift(values, holds, texts, negated, evaluations=lift_cost(recipe, x0.shape[0]),
                any_row=OPERATORS[recipe.operator].any_row)


def lift_of_texts(model: ModelAdapter, texts: tuple[str, ...], x0: torch.Tensor, seed: int,
                  max_rows: int = MAX_ROWS_PER_CALL, around=contextlib.nullcontext) -> torch.Tensor:
    """[B, len(texts)] float64: the lift of each sample under each text, against "".

    Samples go through `predict` in chunks of at most `max_rows` network rows (an
    adapter whose conditioning is per sample, composer.evaluation.PerSample, must
    get a batch that fits one call). "" itself is answered once and lifts to 0."""
    if tuple(x0.shape[1:]) != tuple(model.sample_shape) or x0.shape[0] == 0:
        raise ValueError(f"x0: must be [B, {', '.join(map(str, model.sample_shape))}] with "
                         f"B >= 1, got {list(x0.shape)}")
    if max_rows < 1:
        raise ValueError(f"max_rows: must be at least 1, got {max_rows}")
    answered = _answered(texts)
    cond = model.encode(answered)
    abars = alphas_cumprod(model.scheduler_config)
    generator = torch.Generator().manual_seed(seed + SEED_OFFSET)
    x0 = x0.to(model.device, model.dtype)
    batch, chunk = x0.shape[0], max(1, max_rows // len(answered))
    total = torch.zeros(len(answered), batch, dtype=torch.float64)
    for t in timesteps(model):
        abar = float(abars[t])
        for _ in range(DRAWS):
            z = torch.randn(model.sample_shape, generator=generator).to(model.device, model.dtype)
            for lo in range(0, batch, chunk):
                x_t = math.sqrt(abar) * x0[lo:lo + chunk] + math.sqrt(1.0 - abar) * z
                with around(), torch.no_grad():   # energy adapters enable grad inside
                    eps, _ = model.predict(x_t, t, abar, cond)
                total[:, lo:lo + chunk] += _loss_gap(eps, z).cpu()
    mean = total.T / (len(LEVEL_FRACTIONS) * DRAWS)                         # [B, answered]
    return mean[:, [answered.index(t) for t in texts]]


def _loss_gap(eps: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """|z - eps_u|^2 - |z - eps_c|^2 per row and sample [rows, B], row 0 being "".
    Written as (eps_c - eps_u) . (2z - eps_u - eps_c): exactly 0 for the "" row."""
    eps = eps.double()
    unconditional = eps[:1]
    gap = (eps - unconditional) * (2 * z.double() - unconditional - eps)
    return gap.flatten(2).sum(-1)


def best_of(result: Lift, n: int) -> torch.Tensor:
    """Indices of the chosen candidates, one per output sample.

    `result` judges B = outputs x n candidates, candidate j of output i at index
    i * n + j. Per output: among the candidates that satisfy the composition
    (`Lift.satisfied`), the one that does so by the largest margin (`Lift.score`); if
    none does, the one with the largest score (the least-failing)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n: must be a whole number of candidates >= 1, got {n!r}")
    if result.values.dim() != 2 or result.values.shape[1] == 0:
        raise ValueError(f"result: must judge [B, rows] with rows >= 1, got "
                         f"{list(result.values.shape)}")
    if result.values.shape[0] == 0 or result.values.shape[0] % n:
        raise ValueError(f"n: {result.values.shape[0]} candidates do not split into groups of {n}")
    score = result.score.reshape(-1, n)
    every = result.satisfied.reshape(-1, n)
    among_holding = torch.where(every, score, torch.full_like(score, -math.inf))
    pick = torch.where(every.any(dim=1), among_holding.argmax(dim=1), score.argmax(dim=1))
    return pick + n * torch.arange(len(pick))
