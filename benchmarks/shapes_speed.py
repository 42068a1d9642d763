"""Speed of the shapes models: one image, 3 concepts, 50 DDIM steps, through the engine.

    python -m benchmarks.shapes_speed [--repeats 5] [--threads 0] [--models shapes,shapes-exact]

Both models run in one invocation, alternating, so the ratio is measured under
the same load. Prints JSON and writes benchmarks/results/shapes_speed.json.
Targets: the learned model <= 2 s on the project's 2-core CPU, and the exact model
no slower than the learned one (ratio <= 1). The first run of each (warm-up) is
reported separately.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from composer.engine import generate
from composer.models import load_model
from composer.recipe import Concept, Recipe, SamplerSpec

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--models", default="shapes,shapes-exact")
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/shapes_speed.json"))
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    recipe = Recipe(model="shapes", concepts=(Concept("red circle"), Concept("blue square"),
                                               Concept("yellow triangle")),
                    sampler=SamplerSpec(name="ddim"), steps=args.steps, seed=0, num_samples=1)
    models, per_model = {}, {}
    for name in args.models.split(","):
        start = time.perf_counter()
        models[name] = load_model(name, "cpu")
        load_s = time.perf_counter() - start
        start = time.perf_counter()
        generate(recipe, models[name])
        per_model[name] = {"load_s": round(load_s, 3),
                           "warmup_s": round(time.perf_counter() - start, 3), "runs": []}
    for _ in range(args.repeats):
        for name, model in models.items():
            start = time.perf_counter()
            generate(recipe, model)
            per_model[name]["runs"].append(round(time.perf_counter() - start, 3))
    for row in per_model.values():
        row["median_s"] = statistics.median(row["runs"])
        row["meets_2s_target"] = row["median_s"] <= 2.0
    result = {"benchmark": "shapes_speed", "concepts": 3, "steps": args.steps, "sampler": "ddim",
              "num_samples": 1, "model_rows_per_call": 4, "models": per_model,
              "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
              "load_average": [round(v, 2) for v in os.getloadavg()],
              "torch": torch.__version__, "machine": platform.processor() or platform.machine()}
    if {"shapes", "shapes-exact"} <= set(per_model):
        result["exact_over_learned"] = round(per_model["shapes-exact"]["median_s"]
                                             / per_model["shapes"]["median_s"], 3)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
