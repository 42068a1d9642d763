"""Speed of the shapes model: one image, 3 concepts, 50 DDIM steps, through the engine.

    python benchmarks/shapes_speed.py [--repeats 5] [--threads 0]

Prints JSON and writes benchmarks/results/shapes_speed.json. Target: <= 2 s on
the project's 2-core CPU. The first run (warm-up) is reported separately.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from composer.engine import generate  # noqa: E402
from composer.models import load_model  # noqa: E402
from composer.recipe import Concept, Recipe, SamplerSpec  # noqa: E402


def main() -> dict:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/shapes_speed.json"))
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    model = load_model("shapes", "cpu")
    load_s = time.perf_counter() - start
    recipe = Recipe(model="shapes", concepts=(Concept("red circle"), Concept("blue square"),
                                               Concept("yellow triangle")),
                    sampler=SamplerSpec(name="ddim"), steps=args.steps, seed=0, num_samples=1)
    start = time.perf_counter()
    generate(recipe, model)
    warmup_s = time.perf_counter() - start
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        generate(recipe, model)
        times.append(time.perf_counter() - start)
    result = {"benchmark": "shapes_speed", "concepts": 3, "steps": args.steps, "sampler": "ddim",
              "num_samples": 1, "model_rows_per_call": 4, "load_s": round(load_s, 3),
              "warmup_s": round(warmup_s, 3), "median_s": round(statistics.median(times), 3),
              "min_s": round(min(times), 3), "runs": [round(t, 3) for t in times],
              "target_s": 2.0, "meets_target": statistics.median(times) <= 2.0,
              "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
              "load_average": [round(v, 2) for v in os.getloadavg()],
              "torch": torch.__version__, "machine": platform.processor() or platform.machine()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
