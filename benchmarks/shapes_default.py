"""How typical is a recipe's seed? Judge one recipe over many seeds.

    python -m benchmarks.shapes_default assets/recipes/shapes_two_objects.json [--seeds 20]
        [--model shapes-exact] [--out FILE]

Renders the recipe through the facade for seeds 0..N-1 and prints, per seed,
the judge's share of samples that satisfy every row in a clean scene. The
app's example seed should sit at the median, not at the best of many tries.
--model runs the same recipe on another model (which model draws it best decides
the one the app opens on). Writes benchmarks/results/shapes_default_<recipe>[_<model>].json.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
from pathlib import Path

from composer.facade import Composer
from composer.recipe import Recipe

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("recipe")
    p.add_argument("--seeds", type=int, default=20)
    p.add_argument("--model", default="", help="run the recipe on this model instead")
    p.add_argument("--out", default="", help="default: benchmarks/results/shapes_default_<recipe>[_<model>].json")
    args = p.parse_args(argv)
    recipe = Recipe.from_json(Path(args.recipe).read_text())
    if args.model:
        recipe = dataclasses.replace(recipe, model=args.model)
    composer = Composer("cpu")
    per_seed = []
    for seed in range(args.seeds):
        metrics = composer.render(dataclasses.replace(recipe, seed=seed)).metrics
        per_seed.append({"seed": seed, **{k: round(v, 3) for k, v in metrics.items()}})
        print(json.dumps(per_seed[-1]), flush=True)
    median = statistics.median_low(r["correct"] for r in per_seed)
    report = {"benchmark": "shapes_default", "recipe": args.recipe, "model": recipe.model,
              "num_samples": recipe.num_samples,
              "mean_correct": round(statistics.mean(r["correct"] for r in per_seed), 3),
              "median_correct": median,
              "median_seeds": [r["seed"] for r in per_seed if r["correct"] == median],
              "recipe_seed": recipe.seed, "per_seed": per_seed}
    suffix = f"_{args.model}" if args.model else ""
    out = Path(args.out or ROOT / "benchmarks/results"
               / f"shapes_default_{Path(args.recipe).stem}{suffix}.json")
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "per_seed"}))
    return report


if __name__ == "__main__":
    main()
