"""What a run will do and cost, worked out once: the plan.

`make_plan` fills a recipe's defaults from its model, checks what only the model can
check, decides whether the samples are judged by the model's own lift, and prices
the run in network rows against the model's budget. The facade, the page's cost
line, the CLI's preface, a sweep's total and the run itself all read that one plan.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace

from composer.lift import lift_cost
from composer.maps import GRID
from composer.models.base import ModelAdapter, ModelError
from composer.operators import OPERATORS, Rule, make_rule
from composer.recipe import FLOW_EULER, MCMC_PREDICTORS, SMC, Recipe, RecipeError, SamplerSpec

LIFT_LEFT_OUT = ("The model's lift verdicts were left out: they would take this run over "
                 "its budget.")


@dataclass(frozen=True)
class Plan:
    """One run, decided: its recipe with every default filled in, whether its samples
    are judged by the model's lift, and what it costs against the budget that holds it."""
    recipe: Recipe
    maps: bool
    judged: bool
    sampling: int                # network rows of the sampling, the density maps' included
    judging: int                 # the lift verdicts' (0 when not judged)
    budget: int | None           # the most one run of this model may cost; None: no cap
    notes: tuple[str, ...] = ()  # what the user should know before it runs

    @property
    def total(self) -> int:
        return self.sampling + self.judging


BUDGET_SCALE_ENV = "COMPOSER_BUDGET_SCALE"


def evaluations_per_level(spec: SamplerSpec, has_energy: bool) -> int:
    """Batched model calls at one noise level: the MCMC moves, then the reverse
    step (which reuses the evaluation MALA and HMC end on)."""
    if not spec.is_mcmc:
        return 1
    k = spec.mcmc_steps
    if spec.name == "ula":
        return k + 1
    if spec.name == "mala":     # score-only models integrate along the line: points - 2 more
        return 1 + k * (1 if has_energy else spec.line_points - 1)
    return 1 + k * spec.leapfrog_steps


def candidates(recipe: Recipe) -> Recipe:
    """What a best-of-N recipe samples: N candidates per sample in one batch (sample i's
    candidates at i*N .. i*N + N - 1, as composer.lift.best_of reads them)."""
    if recipe.best_of == 1:
        return recipe
    return replace(recipe, num_samples=recipe.num_samples * recipe.best_of, best_of=1)


def rule_of(recipe: Recipe) -> Rule:
    return make_rule(recipe.concepts, recipe.operator, recipe.scale, recipe.negation,
                     recipe.temperature)


def particles(spec: SamplerSpec) -> int:
    """Particles per sample: smc's K, else 1."""
    return spec.particles if spec.name == SMC else 1


def tracks_density(spec: SamplerSpec) -> bool:
    """Whether the rows' log-densities are tracked: on variance-preserving reverse steps
    (the Ito estimator's setting), not across MCMC moves."""
    return not spec.is_mcmc and spec.reverse in MCMC_PREDICTORS


def cost(recipe: Recipe, model: ModelAdapter, maps: bool = False) -> int:
    """Network rows a filled-in recipe's sampling costs: steps x calls per level x rows x
    samples (best_of candidates each, smc's K particles each), plus, for a 2D model's
    density maps, every row at each grid point every step. The lift verdicts come on
    top (judging_cost)."""
    rows = len(rule_of(recipe).texts)
    grid = GRID * GRID if maps and model.plane is not None else 0
    batch = candidates(recipe).num_samples * particles(recipe.sampler)
    return recipe.steps * rows * (evaluations_per_level(recipe.sampler, model.has_energy) * batch + grid)


def judging_cost(recipe: Recipe, judged: bool) -> int:
    """Network rows the lift verdicts of a run cost: every candidate's, when the run is
    judged (always when best_of > 1, which chooses by them)."""
    return lift_cost(candidates(recipe)) if judged or recipe.best_of > 1 else 0


def budget(model: ModelAdapter) -> int | None:
    """The most network rows one run of this model may cost: the adapter's
    CPU-sized budget times COMPOSER_BUDGET_SCALE (a GPU Space raises it)."""
    if model.max_evaluations is None:
        return None
    try:
        scale = float(os.environ.get(BUDGET_SCALE_ENV, "1"))
    except ValueError:
        scale = 1.0
    return int(model.max_evaluations * scale) if math.isfinite(scale) and scale > 0 else model.max_evaluations


def _check_flow_euler(recipe: Recipe, model: ModelAdapter) -> None:
    """flow_euler steps a flow model's velocities with its own scheduler; the rows'
    velocities combine as their eps do only under an affine rule (coefficients summing
    to 1: "and"), and its levels start at s = 1, where a product's velocity is undefined."""
    if model.flow_scheduler_config is None:
        raise RecipeError(f"sampler.name: flow_euler steps flow-matching models (SD3, FLUX); "
                          f"{recipe.model!r} is not one: use ddim, the same deterministic "
                          f"step in its variance-preserving form")
    if not OPERATORS[recipe.operator].affine:
        raise RecipeError(f"sampler.name: flow_euler combines the rows' velocities, which only "
                          f"'and' does as it combines their eps; for {recipe.operator!r} use "
                          f"ddim (the same step on the eps) or another sampler")


def checked(recipe: Recipe, model: ModelAdapter) -> Recipe:
    """The recipe with the model's defaults filled in, checked against what only the
    model knows (its concepts, energies, noise levels and sample cap)."""
    recipe = recipe.with_defaults(model.defaults)
    for i, concept in enumerate(recipe.concepts):
        try:
            model.check_concept(concept.text)
        except ModelError as err:
            raise RecipeError(f"concepts[{i}].text: {err}") from None
    operator, spec = OPERATORS[recipe.operator], recipe.sampler
    if operator.needs_energy and not model.has_energy:
        raise RecipeError(f"operator: {operator.name} needs an energy-parameterised model; "
                          f"{recipe.model!r} only has scores (superdiff_or is the OR for "
                          f"score-only models)")
    if operator.tracks_density and not tracks_density(spec):
        raise RecipeError(f"operator: {operator.name} weighs the rows by log-densities tracked "
                          f"along variance-preserving reverse steps; use the sampler ddpm, ddim "
                          f"or smc, got {spec.name!r}")
    if spec.name == SMC and not rule_of(recipe).linear:
        raise RecipeError(f"sampler: smc weighs particles toward the product of the rows, "
                          f"prod q_i^c_i; operator {operator.name!r} (negation "
                          f"{recipe.negation!r}) is not such a product: use 'and' or 'product' "
                          f"with negation 'ratio'")
    if spec.name == FLOW_EULER:
        _check_flow_euler(recipe, model)
    if recipe.negation == "bounded" and not model.has_energy:
        raise RecipeError(f"negation: the bounded form needs an energy-parameterised model; "
                          f"{recipe.model!r} only has scores (use negation 'ratio')")
    levels = model.scheduler_config.get("num_train_timesteps", 1000)
    if recipe.steps > levels:
        raise RecipeError(f"steps: {recipe.model!r} was trained with {levels} noise levels; "
                          f"use at most {levels}, got {recipe.steps}")
    if recipe.num_samples > model.max_samples:
        raise RecipeError(f"num_samples: {recipe.model!r} takes at most {model.max_samples}, "
                          f"got {recipe.num_samples}")
    if recipe.num_samples * recipe.best_of > model.max_samples:
        raise RecipeError(f"best_of: {recipe.model!r} draws at most {model.max_samples} samples "
                          f"at once; {recipe.num_samples} samples x best of {recipe.best_of} "
                          f"candidates is {recipe.num_samples * recipe.best_of}; lower the samples "
                          f"to {model.max_samples // recipe.best_of} or fewer, or the best of to "
                          f"{max(model.max_samples // recipe.num_samples, 1)}")
    return recipe


def make_plan(recipe: Recipe, model: ModelAdapter, maps: bool = False,
              lift: bool | None = None) -> Plan:
    """The run of `recipe` on `model`, or a RecipeError saying why it cannot run.

    The samples are judged by the model's lift when best_of > 1 (the lift chooses the
    candidates), else as `lift` asks, else by the model's default; a default judging
    that would take the run over its budget is left out, with a note."""
    filled = checked(recipe, model)
    limit, sampling = budget(model), cost(filled, model, maps)
    judged = filled.best_of > 1 or (model.lift_by_default if lift is None else lift)
    judging = judging_cost(filled, judged)
    notes = tuple(note for c in filled.active_concepts for note in model.concept_warnings(c.text))
    notes += tuple(model.recipe_notes(filled))
    if lift is None and filled.best_of == 1 and limit is not None and sampling + judging > limit:
        judged, judging = False, 0
        notes += (LIFT_LEFT_OUT,) if model.lift_by_default else ()
    if limit is not None and sampling + judging > limit:
        with_maps = ", plus the density maps' grid" if maps and model.plane is not None else ""
        with_lift = ", plus the lift verdicts" if judging else ""
        raise RecipeError(f"cost: this run needs {sampling + judging:,} network evaluations "
                          f"(steps x calls per step x rows x samples{with_maps}{with_lift}); one "
                          f"run of {recipe.model!r} may use {limit:,}. Use fewer steps, samples, "
                          f"concepts or MCMC steps")
    return Plan(filled, maps, judged, sampling, judging, limit, notes)


def prepare(recipe: Recipe, model: ModelAdapter, maps: bool = False, lift: bool = False) -> Recipe:
    """The planned recipe (defaults filled, checked, within budget with the lift
    verdicts' cost when `lift`)."""
    return make_plan(recipe, model, maps, lift).recipe
