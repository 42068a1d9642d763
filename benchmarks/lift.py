"""Lift verdicts (composer/lift.py) against the judges that know the truth, and best of N.

    python -m benchmarks.lift [--models shapes-exact,shapes] [--family free]
        [--tasks and1,and2,and3,not] [--n 8] [--candidates 4] [--seed 1234]
        [--toy2d-models toy2d-score,toy2d-energy] [--points 1000] [--out FILE]

1. Shapes calibration: --n compositions per task (composer/evaluation.py, the
   compositions of benchmarks/shapes_eval.py) x --candidates DDIM samples each, with
   the model's defaults. Per sample, the lift verdict (every row holds) against the
   strict judge (a clean scene in which every row holds): the share of samples on
   which both say the same, and how they differ (lift yes / judge no and the reverse);
   beside it, the agreement with the judge's caption-only verdict (clutter ignored).
   The lift judges the picture the judge sees (uint8, back in [-1, 1]).
2. Best of N on the same samples: the strict-judge rate of one sample (all candidates
   counted) against the rate of the candidate `best_of` keeps from each group of
   --candidates, the rate of the first candidate whose rows all hold (the rule without
   its margin), and the rate of the best possible pick (some candidate is correct);
   its cost per output sample in network rows: N DDIM runs plus the lift of all N.
3. The 2D lab: the points of each shipped RRR setup (assets/recipes/, toy2d-energy,
   its HMC defaults) and --points uniform points on [-1, 1]^2, judged per row by each
   toy2d model's lift against two truths: the point lies in the concept's support
   (for a NOT row: outside it), and the exact sign of log p(x | c) - log p(x), p(x)
   being the six components' equal mixture the unconditional row was trained on.

Prints one JSON line per cell, then markdown tables; --out also writes the JSON.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from composer.engine import generate
from composer.evaluation import PerSample, run_task
from composer.lift import DRAWS, LEVEL_FRACTIONS, best_of, lift_cost, measure_lift
from composer.models import load_model
from composer.plan import cost
from composer.pictures import from_uint8
from composer.recipe import Concept, Recipe, SamplerSpec
from composer.toy2d.data import COMPONENTS, CONCEPTS, RING_STD, ring_centres

ROOT = Path(__file__).resolve().parents[1]
SETUPS = ("product", "mixture", "negation")
CHUNK = 64          # compositions per lift call (PerSample needs a batch that fits one call)


def shapes_cell(model, name: str, family: str, task: str, n: int, candidates: int,
                seed: int) -> dict:
    """Calibration and best of N for one model and task."""
    start = time.time()
    run = run_task(model, family, task, SamplerSpec(name="ddim"), n, model.defaults["steps"],
                   None, seed=seed, keep=n * candidates, repeats=candidates)
    images, compositions, verdicts = zip(*run["examples"])
    x = from_uint8(torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float())
    positives, negatives = len(compositions[0].positives), len(compositions[0].negatives)
    concepts = tuple(Concept(f"c{i}") for i in range(positives)) + tuple(
        Concept(f"c{positives + j}", negate=True) for j in range(negatives))
    recipe = Recipe(model=name, concepts=concepts, seed=seed, scale=model.defaults["scale"],
                    sampler=SamplerSpec(name="ddim"), steps=model.defaults["steps"])
    parts = []
    for lo in range(0, len(x), CHUNK):
        rows = [c.positives + c.negatives for c in compositions[lo:lo + CHUNK]]
        parts.append(measure_lift(PerSample(model, rows), recipe, x[lo:lo + CHUNK],
                          max_rows=(len(concepts) + 1) * CHUNK))
    result = dataclasses.replace(parts[0], values=torch.cat([p.values for p in parts]),
                                 holds=torch.cat([p.holds for p in parts]))
    says = result.satisfied
    judge = torch.tensor([v["correct"] for v in verdicts])
    captions = torch.tensor([v["captions_hold"] for v in verdicts])
    picked = best_of(result, candidates)
    per_group = judge.reshape(-1, candidates)
    # The rule without its margin: the first candidate that holds (else the first).
    first = says.reshape(-1, candidates).float().argmax(dim=1) + candidates * torch.arange(len(per_group))
    run_cost, judging = cost(recipe, model), lift_cost(recipe)
    return {"part": "shapes", "model": name, "family": family, "task": task, "n": n,
            "candidates": candidates, "samples": len(x),
            "agreement": _share(says == judge),
            "lift_yes_judge_no": _share(says & ~judge), "lift_no_judge_yes": _share(~says & judge),
            "caption_agreement": _share(says == captions),
            "judge_correct": _share(judge), "lift_correct": _share(says),
            "best_of_correct": _share(judge[picked]), "first_holding_correct": _share(judge[first]),
            "oracle_correct": _share(per_group.any(1)),
            "run_evaluations": run_cost, "lift_evaluations": judging,
            "best_of_evaluations": candidates * (run_cost + judging),
            "seconds": round(time.time() - start, 1)}


def log_density(name: str, x: torch.Tensor) -> torch.Tensor:
    """log of component `name`'s exact density at points x [N, 2] (float64)."""
    x = x.double()
    if name == "ring":
        centres = ring_centres().double()
        squared = ((x[:, None] - centres[None]) ** 2).sum(-1)
        return (torch.logsumexp(-squared / (2 * RING_STD ** 2), dim=1)
                - math.log(len(centres) * 2 * math.pi * RING_STD ** 2))
    inside = COMPONENTS[name].support(x)
    return torch.where(inside, -math.log(_box_area(name)), -math.inf)


def _box_area(name: str, points: int = 2001) -> float:
    """A box component's area, from its support on a fine grid over [-1, 1]^2."""
    axis = torch.linspace(-1, 1, points, dtype=torch.float64)
    grid = torch.cartesian_prod(axis, axis)
    return float(COMPONENTS[name].support(grid).double().mean()) * 4.0


def toy2d_cells(models: list[str], points: int, seed: int) -> list[dict]:
    """Per setup, per model and per row: the lift verdict against support and exact sign."""
    sampler = load_model("toy2d-energy", "cpu")
    g = torch.Generator().manual_seed(seed)
    sets = {"uniform": (torch.rand(points, 2, generator=g) * 2 - 1, None)}
    for setup in SETUPS:
        recipe = Recipe.from_json((ROOT / "assets/recipes" / f"{setup}.json").read_text())
        sets[setup] = (generate(recipe, sampler).x_t, recipe)
    cells = []
    for name in models:
        model = load_model(name, "cpu")
        for where, (x, recipe) in sets.items():
            # Uniform points are judged under every component, as AND rows.
            recipe = recipe or Recipe(model=name, concepts=tuple(Concept(c) for c in CONCEPTS),
                                      seed=seed)
            result = measure_lift(model, recipe, x)
            mixture = torch.logsumexp(torch.stack([log_density(c, x) for c in CONCEPTS]), 0)
            for i, (text, negated) in enumerate(zip(result.texts, result.negated)):
                inside = COMPONENTS[text].support(x)
                likelier = log_density(text, x) > mixture - math.log(len(CONCEPTS))
                says = result.values[:, i] > 0
                cells.append({"part": "toy2d", "model": name, "points": where, "row": text,
                              "negate": negated, "n": len(x), "in_support": _share(inside),
                              "agrees_with_support": _share(says == inside),
                              "agrees_with_exact_sign": _share(says == likelier),
                              "exact_sign_is_support": _share(likelier == inside)})
                print(json.dumps(cells[-1]), flush=True)
    return cells


def _share(flags: torch.Tensor) -> float:
    return round(float(flags.float().mean()), 3)


def shapes_table(cells: list[dict]) -> str:
    header = ("| model | task | samples | agreement | lift yes, judge no | lift no, judge yes "
              "| agreement, captions only | one sample | best of N | first that holds | best possible "
              "| evaluations per output: 1 run / best of N |")
    lines = [header, "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in cells:
        lines.append(f"| `{c['model']}` | {c['task'].upper()} | {c['samples']} | "
                     f"**{c['agreement']:.0%}** | {c['lift_yes_judge_no']:.0%} | "
                     f"{c['lift_no_judge_yes']:.0%} | {c['caption_agreement']:.0%} | "
                     f"{c['judge_correct']:.0%} | "
                     f"**{c['best_of_correct']:.0%}** | {c['first_holding_correct']:.0%} | "
                     f"{c['oracle_correct']:.0%} | "
                     f"{c['run_evaluations']:,} / {c['best_of_evaluations']:,} |")
    return "\n".join(lines)


def toy2d_table(cells: list[dict]) -> str:
    header = ("| model | points | row | in support | agrees with support | agrees with exact sign "
              "| exact sign = support |")
    lines = [header, "|---|---|---|---|---|---|---|"]
    for c in cells:
        row = ("NOT " if c["negate"] else "") + c["row"]
        lines.append(f"| `{c['model']}` | {c['points']} | {row} | {c['in_support']:.0%} | "
                     f"**{c['agrees_with_support']:.0%}** | {c['agrees_with_exact_sign']:.0%} | "
                     f"{c['exact_sign_is_support']:.0%} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="shapes-exact,shapes", help="shapes models ('' = none)")
    p.add_argument("--family", default="free", choices=("free", "placed"))
    p.add_argument("--tasks", default="and1,and2,and3,not")
    p.add_argument("--n", type=int, default=8, help="compositions per task")
    p.add_argument("--candidates", type=int, default=4, help="N of best of N (samples per composition)")
    p.add_argument("--toy2d-models", default="toy2d-score,toy2d-energy", help="'' = none")
    p.add_argument("--points", type=int, default=1000, help="uniform points in the 2D lab")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--out", default="", help="also write the JSON report here")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.time()
    shapes = []
    for name in filter(None, args.models.split(",")):
        model = load_model(name, "cpu")
        for task in args.tasks.split(","):
            shapes.append(shapes_cell(model, name, args.family, task, args.n, args.candidates,
                                      args.seed))
            print(json.dumps(shapes[-1]), flush=True)
    toy2d_models = list(filter(None, args.toy2d_models.split(",")))
    toy2d = toy2d_cells(toy2d_models, args.points, args.seed) if toy2d_models else []
    command = ["python -m benchmarks.lift"] + (sys.argv[1:] if argv is None else argv)
    report = {"benchmark": "lift", "command": " ".join(command),
              "levels": LEVEL_FRACTIONS, "draws": DRAWS, "threads": torch.get_num_threads(),
              "load_average": [round(v, 2) for v in os.getloadavg()],
              "seconds": round(time.time() - start, 1), "shapes": shapes, "toy2d": toy2d}
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report))
    print(shapes_table(shapes))
    print(toy2d_table(toy2d))
    return report


if __name__ == "__main__":
    main()
