"""What each built-in model's run budget stands for in time, on this machine.

    python -m benchmarks.budget [--threads 0] [--steps N]

For each built-in model, times one run of its default example recipe through
the facade, divides by that run's cost (composer.plan.cost: network evaluations) to get
seconds per evaluation, and multiplies by the model's budget. Prints JSON and
writes benchmarks/results/budget.json.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from pathlib import Path

import torch

from composer.facade import Composer
from composer.plan import budget, cost, prepare
from composer.recipe import Recipe

ROOT = Path(__file__).resolve().parents[1]

EXAMPLES = {"shapes": "shapes_not.json", "toy2d-energy": "product.json"}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--steps", type=int, default=0, help="steps of every example (0: its own)")
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/budget.json"))
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    composer = Composer("cpu")
    rows = []
    for name, example in EXAMPLES.items():
        recipe = Recipe.from_json((ROOT / "assets/recipes" / example).read_text())
        if args.steps:
            recipe = dataclasses.replace(recipe, steps=args.steps)
        model = composer.model(name)
        filled = prepare(recipe, model)
        composer.render(recipe)                                  # warm-up
        start = time.perf_counter()
        composer.render(recipe)
        seconds = time.perf_counter() - start
        evaluations = cost(filled, model)
        per_evaluation = seconds / evaluations
        rows.append({"model": name, "recipe": example, "sampler": filled.sampler.name,
                     "evaluations": evaluations, "seconds": round(seconds, 3),
                     "us_per_evaluation": round(per_evaluation * 1e6, 2),
                     "budget": budget(model),
                     "budget_seconds": round(per_evaluation * budget(model), 1)})
        print(json.dumps(rows[-1]), flush=True)
    report = {"benchmark": "budget", "device": "cpu", "threads": torch.get_num_threads(),
              "load_average": [round(v, 2) for v in os.getloadavg()], "models": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
