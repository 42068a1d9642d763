"""What the maps cost per step: the same run with maps off and on, side by side.

    python -m benchmarks.maps [--repeats 5] [--steps N]

For each case, times whole runs through the facade (frames drawn, as the app
does), alternating off and on, and reports the median seconds per step of each
and their ratio. The density map adds one composed evaluation on a 64 x 64 grid per
step (2D models); the conflict map reuses the step's eps (image models, "and").
Prints JSON and writes benchmarks/results/maps.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

from composer.facade import Composer
from composer.recipe import Recipe

ROOT = Path(__file__).resolve().parents[1]

CASES = {
    "toy2d-energy product, DDIM": {
        "model": "toy2d-energy", "operator": "product", "concepts": [{"text": "ring"}, {"text": "bar"}],
        "sampler": {"name": "ddim"}, "seed": 0, "num_samples": 1000},
    "toy2d-energy product, HMC": {
        "model": "toy2d-energy", "operator": "product", "concepts": [{"text": "ring"}, {"text": "bar"}],
        "sampler": {"name": "hmc"}, "seed": 0, "num_samples": 1000},
    "shapes AND of two, DDIM": {
        "model": "shapes", "operator": "and",
        "concepts": [{"text": "a red circle"}, {"text": "a blue square"}],
        "sampler": {"name": "ddim"}, "seed": 0, "num_samples": 4},
}


def seconds_per_step(composer: Composer, recipe: Recipe, maps: bool) -> float:
    start = time.perf_counter()
    frames = sum(1 for _ in composer.stream(recipe, maps=maps)) - 1
    return (time.perf_counter() - start) / frames


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--steps", type=int, default=0, help="steps of every case (0: the model's)")
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/maps.json"))
    args = p.parse_args(argv)
    composer = Composer("cpu")
    rows = []
    for name, data in CASES.items():
        recipe = Recipe.from_dict({**data, "steps": args.steps} if args.steps else data)
        seconds_per_step(composer, recipe, True)                     # warm
        off, on = [], []
        for _ in range(args.repeats):
            off.append(seconds_per_step(composer, recipe, False))
            on.append(seconds_per_step(composer, recipe, True))
        rows.append({"case": name, "ms_per_step_off": 1000 * statistics.median(off),
                     "ms_per_step_on": 1000 * statistics.median(on),
                     "on_over_off": statistics.median(on) / statistics.median(off)})
    result = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                          "load_average": os.getloadavg()}, "repeats": args.repeats, "cases": rows}
    text = json.dumps(result, indent=2)
    Path(args.out).write_text(text + "\n")
    print(text)
    return result


if __name__ == "__main__":
    main()
