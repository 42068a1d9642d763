"""What going through a Ray cluster costs and gains (composer/cluster.py), against one process.

    python -m benchmarks.cluster [--engines 2] [--repeats 5] [--clients 4] [--runs 3]
        [--cluster auto|ADDRESS] [--tiny] [--out FILE]

On toy2d-energy, a pool of `--engines` engines (a local Ray cluster with `auto`) beside
one process whose torch runs on one thread, as each engine's does (Ray gives an engine
one CPU and sets OMP_NUM_THREADS to it), so both sides have one device per engine:
  - overhead: one run at a time, start to Result, in the process and through the pool
    (median of --repeats), for 200 samples (the small run: the ratio's target is <= 1.10),
    then 1,000 and 4,000 (the same frames, more compute behind each);
  - sweep: a 16-cell sweep (4 seeds x 4 weights), its wall time in one process
    (Composer.sweep) and on the pool (RemoteComposer.cells);
  - throughput: --clients threads each streaming --runs runs through the page's
    service (ui.service.Service.stream, the seam the app's events call; no HTTP), in one
    process and on the pool: runs per second.
Prints JSON and writes benchmarks/results/cluster.json, with the load average.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from composer.cluster import RemoteComposer
from composer.facade import Composer
from composer.recipe import Recipe
from composer.sweep import Sweep

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"model": "toy2d-energy", "operator": "product", "concepts": [{"text": "ring"}, {"text": "bar"}],
         "sampler": {"name": "ddim"}, "steps": 50, "seed": 3, "num_samples": 200}
SWEEP_AXES = [{"field": "seed", "values": [1, 2, 3, 4]},
              {"field": "concepts[0].weight", "values": [0.5, 1.0, 1.5, 2.0]}]
TINY = {"steps": 4, "num_samples": 20}
SIZES, TINY_SIZES = (200, 1000, 4000), (20, 40)     # samples per overhead run


def seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def overhead(local: Composer, remote: RemoteComposer, recipe: Recipe, repeats: int,
             sizes: tuple[int, ...]) -> list[dict]:
    """The ratio for the recipe at each number of samples: the same frames each time (50
    at full size), with more compute behind each (the first size is the target's small run)."""
    rows = []
    for samples in sizes:
        sized = dataclasses.replace(recipe, num_samples=samples)
        local.render(sized), remote.render(sized)          # pictures' sizes settled first
        here = statistics.median(seconds(lambda: local.render(sized)) for _ in range(repeats))
        there = statistics.median(seconds(lambda: remote.render(sized)) for _ in range(repeats))
        rows.append({"samples": samples, "in_process_s": round(here, 4), "through_ray_s": round(there, 4),
                     "added_s": round(there - here, 4), "ratio": round(there / here, 3)})
    return rows


def sweep(local: Composer, remote: RemoteComposer, recipe: Recipe) -> dict:
    plan = Sweep.from_dict({"recipe": recipe.to_dict(), "axes": SWEEP_AXES})
    here = seconds(lambda: list(local.sweep(local.sweep_plan(plan))))
    there = seconds(lambda: list(remote.cells(remote.sweep_plan(plan))))
    return {"cells": 16, "in_process_s": round(here, 3), "on_pool_s": round(there, 3),
            "speedup": round(here / there, 2)}


def throughput(local: Composer, remote: RemoteComposer, recipe: Recipe, clients: int, runs: int) -> dict:
    from ui.service import Service          # the page's seam, without Gradio's HTTP

    def rate(composer: Composer) -> float:
        service = Service(composer)

        def client(_):
            for _ in range(runs):
                *_, result = service.stream(recipe)
        with ThreadPoolExecutor(clients) as pool:
            took = seconds(lambda: list(pool.map(client, range(clients))))
        return clients * runs / took
    here, there = rate(local), rate(remote)
    return {"clients": clients, "runs_per_client": runs, "in_process_runs_per_s": round(here, 3),
            "on_pool_runs_per_s": round(there, 3), "speedup": round(there / here, 2)}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--engines", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--runs", type=int, default=3, help="runs per client")
    p.add_argument("--cluster", default="auto")
    p.add_argument("--tiny", action="store_true", help="a toy size (the smoke test)")
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/cluster.json"))
    args = p.parse_args(argv)
    torch.set_num_threads(1)                 # as each engine's torch
    recipe = Recipe.from_dict({**SMALL, **(TINY if args.tiny else {})})
    report = {"benchmark": "cluster", "command": " ".join(["python -m benchmarks.cluster", *(argv or sys.argv[1:])]),
              "recipe": recipe.to_dict(), "engines": args.engines, "cpus": os.cpu_count(),
              "load_average_before": [round(v, 2) for v in os.getloadavg()]}
    local, remote = Composer("cpu"), RemoteComposer(args.cluster, "--cluster", args.engines)
    try:
        report["devices"] = {"in_process": str(local.device),
                             "engines": [s["device"] for s in remote.pool.status()]}
        local.render(recipe)                 # models loaded before anything is timed
        streams = [remote.run(remote.plan(recipe)) for _ in range(args.engines)]
        for stream in streams:
            next(stream)                     # each holds an engine, so the next takes another
        for stream in streams:
            list(stream)
        report["overhead"] = overhead(local, remote, recipe, args.repeats, TINY_SIZES if args.tiny else SIZES)
        report["sweep"] = sweep(local, remote, recipe)
        report["throughput"] = throughput(local, remote, recipe, args.clients, args.runs)
    finally:
        remote.close()
    report["load_average_after"] = [round(v, 2) for v in os.getloadavg()]
    print(json.dumps(report, indent=2))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
