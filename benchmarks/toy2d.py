"""Every sampler x {score, energy} x the three RRR 2D setups, scored against
ground truth.

    python -m benchmarks.toy2d [--samples 1000] [--seed 0] [--out benchmarks/results/toy2d.json]

For each run: MMD^2 (unbiased, RBF kernel, bandwidth 0.1) and MMD = sqrt(max(MMD^2, 0))
against 1000 exact samples, the fraction of samples in the target's support,
the wall time and the mean Metropolis acceptance. Recipes are the shipped
assets/recipes/{product,mixture,negation}.json with only the model and sampler
swapped, so every knob is the model's default. The mixture needs energies, so
toy2d-score is skipped there. RRR's claim checked: on the product, reverse
diffusion misses and MCMC recovers it (HMC on the energy model reaching at most
half the MMD of reverse diffusion).

Prints JSON, then a markdown table; writes the JSON to --out.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:           # also runnable as `python benchmarks/toy2d.py`
    sys.path.insert(0, str(ROOT))

from composer.engine import generate, sample  # noqa: E402
from composer.models import load_model  # noqa: E402
from composer.recipe import Recipe  # noqa: E402
from composer.toy2d.lab import (BANDWIDTH, ground_truth, mmd2, setup_of,  # noqa: E402
                                support_fraction)

SETUPS = ("product", "mixture", "negation")
SAMPLERS = ("ddpm", "ddim", "ula", "uhmc", "mala", "hmc")
MODELS = ("toy2d-score", "toy2d-energy")
BETAS = (1.0, 0.5, 0.25, 0.1)


def load_recipe(setup: str) -> Recipe:
    return Recipe.from_json((ROOT / "assets" / "recipes" / f"{setup}.json").read_text())


def run_one(recipe: Recipe, model, truth: torch.Tensor) -> dict:
    start = time.perf_counter()
    acceptances, record = [], None
    for record in sample(recipe, model):
        if record.acceptance is not None:
            acceptances.append(record.acceptance)
    seconds = time.perf_counter() - start
    x = record.x_t
    value = mmd2(x, truth)
    return {"mmd2": round(value, 5), "mmd": round(math.sqrt(max(value, 0.0)), 4),
            "support": round(support_fraction(x, setup_of(recipe)), 4),
            "seconds": round(seconds, 2),
            "acceptance": round(sum(acceptances) / len(acceptances), 3) if acceptances else None}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "toy2d.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    load_start = round(os.getloadavg()[0], 2)
    models = {name: load_model(name, "cpu") for name in MODELS}
    runs = []
    truths = {}
    for setup in SETUPS:
        base = load_recipe(setup)
        truth = truths[setup] = ground_truth(base, args.samples, seed=12345)
        floor = mmd2(ground_truth(base, args.samples, seed=54321), truth)
        runs.append({"setup": setup, "model": "ground truth", "sampler": "exact",
                     "mmd2": round(floor, 5), "mmd": round(math.sqrt(max(floor, 0.0)), 4),
                     "support": round(support_fraction(ground_truth(base, args.samples, seed=54321),
                                                       setup), 4),
                     "seconds": None, "acceptance": None})
        for name, model in models.items():
            for sampler in SAMPLERS:
                row = {"setup": setup, "model": name, "sampler": sampler}
                if base.operator == "mixture" and not model.has_energy:
                    runs.append({**row, "skipped": "mixture needs energies; scores alone "
                                                   "cannot weigh the components"})
                    continue
                recipe = dataclasses.replace(
                    base, model=name, seed=args.seed, num_samples=args.samples,
                    sampler=dataclasses.replace(base.sampler, name=sampler))
                result = {**row, **run_one(recipe, model, truth)}
                runs.append(result)
                print(json.dumps(result), flush=True)
    product_truth, negation_truth = truths["product"], truths["negation"]
    # RRR's claim on the product: HMC(energy) vs reverse diffusion (best of ddpm, ddim).
    product = {(r["model"], r["sampler"]): r for r in runs if r["setup"] == "product"}
    hmc = product[("toy2d-energy", "hmc")]
    claims = {}
    for name in MODELS:
        reverse = min((product[(name, s)] for s in ("ddpm", "ddim")), key=lambda r: r["mmd2"])
        claims[f"hmc_energy_vs_reverse_{name}"] = {
            "reverse_sampler": reverse["sampler"], "reverse_mmd2": reverse["mmd2"],
            "reverse_mmd": reverse["mmd"], "hmc_mmd2": hmc["mmd2"], "hmc_mmd": hmc["mmd"],
            "mmd_ratio": round(hmc["mmd"] / reverse["mmd"], 3) if reverse["mmd"] else None,
            "holds_on_mmd": hmc["mmd"] <= 0.5 * reverse["mmd"],
            "holds_on_mmd2": hmc["mmd2"] <= 0.5 * reverse["mmd2"]}
    # The product claim over more seeds (reverse diffusion vs HMC, energy model).
    seeds = []
    for seed in range(args.seed, args.seed + 3):
        for sampler in ("ddpm", "hmc"):
            recipe = dataclasses.replace(
                load_recipe("product"), seed=seed, num_samples=args.samples,
                sampler=dataclasses.replace(load_recipe("product").sampler, name=sampler))
            seeds.append({"seed": seed, "sampler": sampler,
                          **run_one(recipe, models["toy2d-energy"], product_truth)})
            print(json.dumps(seeds[-1]), flush=True)
    # Negation: beta sweep (the shipped recipe uses the last value).
    sweep = []
    negation = load_recipe("negation")
    for beta in BETAS:
        concepts = tuple(dataclasses.replace(c, beta=beta) if c.negate else c
                         for c in negation.concepts)
        for sampler in ("ddpm", "hmc"):
            recipe = dataclasses.replace(
                negation, concepts=concepts, seed=args.seed, num_samples=args.samples,
                sampler=dataclasses.replace(negation.sampler, name=sampler))
            sweep.append({"beta": beta, "sampler": sampler,
                          **run_one(recipe, models["toy2d-energy"], negation_truth)})
            print(json.dumps(sweep[-1]), flush=True)
    # Timing: HMC on the energy model, product, 1000 samples (all default knobs).
    recipe = dataclasses.replace(load_recipe("product"), seed=args.seed, num_samples=1000)
    timings, cpu = [], []
    for _ in range(3):
        start, start_cpu = time.perf_counter(), time.process_time()
        generate(recipe, models["toy2d-energy"])
        timings.append(round(time.perf_counter() - start, 2))
        cpu.append(round(time.process_time() - start_cpu, 2))
    knobs = recipe.with_defaults(models["toy2d-energy"].defaults)
    report = {
        "benchmark": "toy2d", "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds"),
        "device": f"cpu ({platform.processor() or platform.machine()}), "
                  f"{torch.get_num_threads()} thread(s)",
        "torch": torch.__version__, "samples": args.samples, "seed": args.seed,
        "metric": {"mmd2": f"unbiased MMD^2, RBF kernel exp(-|x-y|^2/(2h^2)), h={BANDWIDTH}, "
                           f"vs {args.samples} exact samples",
                   "mmd": "sqrt(max(mmd2, 0))",
                   "support": "fraction of samples in the target's support (product: 3-std "
                              "disks around the two ring modes inside the bar)"},
        "defaults": {"steps": knobs.steps, "scale": knobs.scale,
                     **{k: getattr(knobs.sampler, k) for k in
                        ("mcmc_steps", "step_size", "leapfrog_steps", "damping", "line_points")}},
        "runs": runs, "claims": claims, "product_seeds": seeds, "negation_beta_sweep": sweep,
        "load_average_1min": {"start": load_start, "end": round(os.getloadavg()[0], 2)},
        "hmc_energy_product_1000_seconds": {
            "runs": timings, "min": min(timings), "median": sorted(timings)[1], "target": 10.0,
            "process_cpu_seconds": cpu,
            "min_meets_target": min(timings) <= 10.0,
            "median_meets_target": sorted(timings)[1] <= 10.0},
    }
    print(json.dumps(report, indent=2))
    print(markdown(report))
    print(markdown_extra(report))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    return report


def markdown(report: dict) -> str:
    lines = ["| setup | model | sampler | MMD^2 | MMD | in support | seconds | acceptance |",
             "|---|---|---|---|---|---|---|---|"]
    for r in report["runs"]:
        if "skipped" in r:
            lines.append(f"| {r['setup']} | {r['model']} | {r['sampler']} | skipped: "
                         f"{r['skipped']} | | | | |")
            continue
        acc = "" if r["acceptance"] is None else f"{r['acceptance']:.2f}"
        sec = "" if r["seconds"] is None else f"{r['seconds']:.1f}"
        lines.append(f"| {r['setup']} | {r['model']} | {r['sampler']} | {r['mmd2']:.4f} "
                     f"| {r['mmd']:.3f} | {r['support']:.3f} | {sec} | {acc} |")
    return "\n".join(lines)


def markdown_extra(report: dict) -> str:
    lines = ["| product, toy2d-energy | seed | MMD^2 | MMD | in support | acceptance |",
             "|---|---|---|---|---|---|"]
    for r in report["product_seeds"]:
        acc = "" if r["acceptance"] is None else f"{r['acceptance']:.2f}"
        lines.append(f"| {r['sampler']} | {r['seed']} | {r['mmd2']:.4f} | {r['mmd']:.3f} "
                     f"| {r['support']:.3f} | {acc} |")
    lines += ["", "| negation, toy2d-energy | beta | MMD^2 | MMD | in support | acceptance |",
              "|---|---|---|---|---|---|"]
    for r in report["negation_beta_sweep"]:
        acc = "" if r["acceptance"] is None else f"{r['acceptance']:.2f}"
        lines.append(f"| {r['sampler']} | {r['beta']} | {r['mmd2']:.4f} | {r['mmd']:.3f} "
                     f"| {r['support']:.3f} | {acc} |")
    t = report["hmc_energy_product_1000_seconds"]
    lines += ["", f"HMC, toy2d-energy, product, 1000 samples: {t['runs']} s, min {t['min']} s, "
                  f"median {t['median']} s (target {t['target']} s); process CPU time "
                  f"{t['process_cpu_seconds']} s; 1-minute load average "
                  f"{report['load_average_1min']['start']} at the start, "
                  f"{report['load_average_1min']['end']} at the end"]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
