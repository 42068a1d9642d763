"""Every sampler x {score, energy} x the three RRR 2D setups, scored against
ground truth; the negation forms compared; the lab's targets checked.

    python -m benchmarks.toy2d [--samples 1000] [--seed 0] [--out benchmarks/results/toy2d.json]
    python -m benchmarks.toy2d --part product [--seeds 5]    # the default product run only


For each run: MMD^2 (unbiased, RBF kernel, bandwidth 0.1) and MMD = sqrt(max(MMD^2, 0))
against 1000 exact samples, the fraction of samples in the target's support,
the wall time and the mean Metropolis acceptance. Recipes are the shipped
assets/recipes/{product,mixture,negation}.json with only the model and sampler
swapped, so every knob is the model's default. The mixture needs energies, so
toy2d-score is skipped there. RRR's claim checked: on the product, reverse
diffusion misses and MCMC recovers it (HMC on the energy model reaching at most
half the MMD of reverse diffusion).

Negation forms (toy2d-energy, big_box NOT small_box): RRR's ratio
q_1^(1+beta)/q_2^beta, Composable Diffusion's NOT against the unconditional
model (operator 'and', scale 1) and the bounded ratio (operators.py), each
under every sampler and a beta sweep, scored by MMD, the fraction in the hole
(small box) and the fraction outside the big box. Also: each component's own
support fraction under DDPM (the model card's figure), the targets of the
shipped recipes, and docs/toy2d_negation.png (HMC samples per form and beta).

Default product: the shipped product recipe as it is (HMC on toy2d-energy, every
knob the model's default), 1000 samples over --seeds seeds: the share in the
support and the seconds, wall and process CPU, against the lab's targets (>= 90%,
<= 10 s), with the load average beside them (the CPU is shared). `--part product`
runs only this (about a minute) and writes benchmarks/results/toy2d_product.json.

Product budget: HMC on the energy model with other numbers of levels and MCMC steps
per level, against the ceiling the model itself sets: the share of its own composed
density (exp(-U*) on a 64x64 grid, composer.maps) at the last level that lies in
the product's support.

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
import time
from pathlib import Path

import torch
from PIL import Image

from benchmarks.toy2d_tables import markdown, markdown_default_product, markdown_extra
from composer.engine import NonFiniteError, generate, sample
from composer.knobs import KNOBS
from composer.maps import GRID, grid_points
from composer.media import labelled_grid
from composer.models import load_model
from composer.plan import evaluations_per_level
from composer.recipe import Concept, Recipe, SamplerSpec
from composer.toy2d.data import CONCEPTS
from composer.toy2d.data import SETUPS as TARGETS
from composer.toy2d.lab import (
    BANDWIDTH,
    ground_truth,
    mmd2,
    scatter_image,
    setup_of,
    support_fraction,
)

ROOT = Path(__file__).resolve().parents[1]

SETUPS = ("product", "mixture", "negation")
SAMPLERS = ("ddpm", "ddim", "ula", "uhmc", "mala", "hmc")
MODELS = ("toy2d-score", "toy2d-energy")
BETAS = (0.25, 0.5, 1.0, 2.0)
# form -> recipe fields that select it
NEGATION_FORMS = {"ratio": {"operator": "product", "negation": "ratio"},
                  "and": {"operator": "and", "negation": "ratio", "scale": 1.0},
                  "bounded": {"operator": "product", "negation": "bounded"}}
FIGURE = ROOT / "docs" / "toy2d_negation.png"


def load_recipe(setup: str) -> Recipe:
    return Recipe.from_json((ROOT / "assets" / "recipes" / f"{setup}.json").read_text())


def run_one(recipe: Recipe, model, truth: torch.Tensor, keep: dict | None = None) -> dict:
    """Scores of one run; its final points go to keep["points"] when asked."""
    start = time.perf_counter()
    acceptances, record = [], None
    try:
        for record in sample(recipe, model):
            if record.acceptance is not None:
                acceptances.append(record.acceptance)
    except NonFiniteError:
        return {"diverged": True, "mmd2": math.inf, "mmd": math.inf, "support": 0.0,
                **({"in_hole": math.nan, "outside_big_box": math.nan}
                   if setup_of(recipe) == "negation" else {}),
                "seconds": round(time.perf_counter() - start, 2), "acceptance": None}
    seconds = time.perf_counter() - start
    x = record.x_t
    if keep is not None:
        keep["points"] = x
    value = mmd2(x, truth)
    extra = {}
    if setup_of(recipe) == "negation":
        extra = {"in_hole": round(support_fraction(x, "small_box"), 4),
                 "outside_big_box": round(1 - support_fraction(x, "big_box"), 4)}
    return {"mmd2": round(value, 5), "mmd": round(math.sqrt(max(value, 0.0)), 4),
            "support": round(support_fraction(x, setup_of(recipe)), 4), **extra,
            "seconds": round(seconds, 2),
            "acceptance": round(sum(acceptances) / len(acceptances), 3) if acceptances else None}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seeds", type=int, default=5, help="seeds of the default product run")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--part", choices=("all", "product"), default="all",
                        help="product: only the default product run")
    parser.add_argument("--out", default=None, help="default: benchmarks/results/toy2d.json, "
                                                    "or toy2d_product.json for --part product")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.part == "product":
        return product_only(args)
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
                if base.negation == "bounded" and not model.has_energy:
                    runs.append({**row, "skipped": "the bounded negation needs energies; "
                                                   "scores alone cannot evaluate U_1 - U_2"})
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
    negation_forms, figure_cells = compare_negation_forms(
        load_recipe("negation"), models["toy2d-energy"], negation_truth, args)
    negation_choice = choose_negation(negation_forms)
    components = component_support(models, args)
    default = default_product(models["toy2d-energy"], product_truth, args)
    targets = check_targets(runs, components, default)
    budget = product_budget(models["toy2d-energy"], product_truth, args)
    knobs = load_recipe("product").with_defaults(models["toy2d-energy"].defaults)
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
                     **{k.name: getattr(knobs.sampler, k.name) for k in KNOBS
                        if getattr(knobs.sampler, k.name) is not None}},
        "runs": runs, "claims": claims, "product_seeds": seeds,
        "negation_forms": negation_forms, "negation_choice": negation_choice,
        "component_support": components, "targets": targets, "product_budget": budget,
        "load_average_1min": {"start": load_start, "end": round(os.getloadavg()[0], 2)},
        "default_product": default,
    }
    print(json.dumps(report, indent=2))
    print(markdown(report))
    print(markdown_extra(report))
    write(report, args.out or ROOT / "benchmarks" / "results" / "toy2d.json")
    Image.fromarray(labelled_grid(figure_cells, list(NEGATION_FORMS),
                                  [f"beta {b:g}" for b in BETAS])).save(FIGURE)
    return report


def write(report: dict, path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(report, indent=2) + "\n")


PRODUCT_TARGET = {"support": 0.90, "seconds": 10.0}   # the lab's targets, 1000 samples


def default_product(model, truth: torch.Tensor, args) -> dict:
    """The shipped product recipe, unchanged but for the seed, over args.seeds seeds: share
    in the support and seconds for 1000 samples. The 10 s is judged on the fastest run and
    on process CPU time, which other jobs on a shared CPU inflate less than wall time."""
    recipe = dataclasses.replace(load_recipe("product"), num_samples=1000)
    knobs = recipe.with_defaults(model.defaults)
    load_start, runs = round(os.getloadavg()[0], 2), []
    for seed in range(args.seed, args.seed + args.seeds):
        cpu_start = time.process_time()
        runs.append({"seed": seed, **run_one(dataclasses.replace(recipe, seed=seed), model, truth),
                     "cpu_seconds": round(time.process_time() - cpu_start, 2)})
        print(json.dumps(runs[-1]), flush=True)
    support = [r["support"] for r in runs]
    seconds = sorted(r["seconds"] for r in runs)
    return {"sampler": knobs.sampler.name, "steps": knobs.steps,
            "evaluations_per_sample": knobs.steps * evaluations_per_level(knobs.sampler,
                                                                          model.has_energy),
            "runs": runs, "support_min": min(support),
            "support_mean": round(sum(support) / len(support), 4),
            "seconds_min": seconds[0], "seconds_median": seconds[len(seconds) // 2],
            "cpu_seconds_min": min(r["cpu_seconds"] for r in runs),
            "load_average_1min": {"start": load_start, "end": round(os.getloadavg()[0], 2)},
            "target": PRODUCT_TARGET,
            "met": min(support) >= PRODUCT_TARGET["support"]
                   and seconds[0] <= PRODUCT_TARGET["seconds"]}


def product_only(args) -> dict:
    model = load_model("toy2d-energy", "cpu")
    truth = ground_truth(load_recipe("product"), 1000, seed=12345)
    report = {"benchmark": "toy2d --part product",
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "device": f"cpu ({platform.processor() or platform.machine()}), "
                        f"{torch.get_num_threads()} thread(s)",
              "torch": torch.__version__, "default_product": default_product(model, truth, args)}
    print(json.dumps(report, indent=2))
    print(markdown_default_product(report["default_product"]))
    write(report, args.out or ROOT / "benchmarks" / "results" / "toy2d_product.json")
    return report


def negation_recipe(base: Recipe, form: str, beta: float, sampler: str, args) -> Recipe:
    concepts = tuple(dataclasses.replace(c, beta=beta) if c.negate else c for c in base.concepts)
    return dataclasses.replace(base, **NEGATION_FORMS[form], concepts=concepts, seed=args.seed,
                               num_samples=args.samples,
                               sampler=dataclasses.replace(base.sampler, name=sampler))


def compare_negation_forms(base: Recipe, model, truth: torch.Tensor, args) -> tuple[list, list]:
    """Every form x sampler x beta on big_box NOT small_box; HMC's points as figure cells."""
    rows, cells = [], []
    for i, form in enumerate(NEGATION_FORMS):
        for j, beta in enumerate(BETAS):
            for sampler in SAMPLERS:
                keep = {}
                row = {"form": form, "beta": beta, "sampler": sampler,
                       **run_one(negation_recipe(base, form, beta, sampler, args), model, truth, keep)}
                rows.append(row)
                print(json.dumps(row), flush=True)
                if sampler == "hmc":
                    cells.append(((i, j), scatter_image(keep.get("points", torch.zeros(0, 2)), "negation"),
                                  f"hole {row['in_hole']:.1%} out {row['outside_big_box']:.1%}"))
    return rows, cells


def choose_negation(rows: list) -> dict:
    """The shipped negation recipe's form, beta and sampler, picked by the table:
    the lowest MMD among runs with at most 2% in the hole and 2% outside the big box
    (or, if none qualifies, the lowest hole + outside share)."""
    allowed = [r for r in rows if r["in_hole"] <= 0.02 and r["outside_big_box"] <= 0.02]
    best = (min(allowed, key=lambda r: r["mmd2"]) if allowed
            else min(rows, key=lambda r: r["in_hole"] + r["outside_big_box"]))
    return {"rule": "lowest MMD^2 with in_hole <= 0.02 and outside_big_box <= 0.02",
            "qualified": len(allowed), **{k: best[k] for k in ("form", "beta", "sampler", "mmd",
                                                              "in_hole", "outside_big_box")}}


def component_support(models: dict, args) -> dict:
    """Each component's own samples under DDPM (the shipped steps): share in its support."""
    table = {}
    for name, model in models.items():
        for concept in CONCEPTS:
            recipe = Recipe(model=name, concepts=(Concept(concept),), operator="product",
                            sampler=SamplerSpec("ddpm"), seed=args.seed, num_samples=args.samples)
            x = generate(recipe, model).x_t
            table.setdefault(name, {})[concept] = round(support_fraction(x, concept), 4)
        print(json.dumps({"component_support": name, **table[name]}), flush=True)
    return table


# (levels, HMC trajectories per level), the other knobs the defaults: the old 50 levels
# and 2 trajectories, the default (60, 6), and each of its two changes alone.
PRODUCT_BUDGETS = ((50, 2), (50, 6), (60, 2), (60, 4), (60, 6), (100, 6))


def product_budget(model, truth: torch.Tensor, args) -> dict:
    """HMC on the product at other budgets, and the model's own ceiling: the mass of its
    composed density at the last level inside the product's support."""
    base = load_recipe("product")
    last = list(sample(dataclasses.replace(base, num_samples=2, sampler=SamplerSpec("ddpm")),
                       model, maps=True))[-1]
    inside = TARGETS["product"].support(grid_points(model.plane).float()).reshape(GRID, GRID)
    cell = (2 * model.plane / GRID) ** 2
    ceiling = float((last.density[0].double() * inside).sum() * cell)
    rows = []
    for steps, trajectories in PRODUCT_BUDGETS:
        recipe = dataclasses.replace(base, steps=steps, seed=args.seed, num_samples=args.samples,
                                     sampler=dataclasses.replace(base.sampler,
                                                                 mcmc_steps=trajectories))
        knobs = recipe.with_defaults(model.defaults).sampler
        rows.append({"steps": steps, "mcmc_steps": trajectories,
                     "evaluations_per_sample": steps * (trajectories * knobs.leapfrog_steps + 1),
                     **run_one(recipe, model, truth)})
        print(json.dumps(rows[-1]), flush=True)
    return {"model_ceiling_in_support": round(ceiling, 4), "runs": rows}


def check_targets(runs: list, components: dict, default: dict) -> list:
    """The lab's targets on the shipped recipes, each with its default sampler; the
    product's over the default product run's seeds (its worst seed, its fastest run)."""
    def run(setup, sampler):
        recipe = load_recipe(setup)
        return next(r for r in runs if r["setup"] == setup and r["model"] == recipe.model
                    and r["sampler"] == sampler)
    product, negation = load_recipe("product"), load_recipe("negation")
    p, n = run("product", product.sampler.name), run("negation", negation.sampler.name)
    reverse = min((run("product", s) for s in ("ddpm", "ddim")), key=lambda r: r["mmd"])
    n_ddpm = run("negation", "ddpm")
    weakest = min((v, m, c) for m, table in components.items() for c, v in table.items())
    targets = [
        ("every component", "in support under DDPM (weakest)", weakest[0], ">=", 0.97,
         f"{weakest[1]} {weakest[2]}"),
        ("product", f"in support (worst of {len(default['runs'])} seeds)",
         default["support_min"], ">=", PRODUCT_TARGET["support"], default["sampler"]),
        ("product", "seconds, 1000 samples (fastest run)", default["seconds_min"], "<=",
         PRODUCT_TARGET["seconds"], default["sampler"]),
        ("product", "MMD / reverse diffusion's", round(p["mmd"] / reverse["mmd"], 3), "<=", 0.5,
         f"{p['sampler']} vs {reverse['sampler']}"),
        ("negation", "in the hole", n["in_hole"], "<=", 0.02, n["sampler"]),
        ("negation", "outside the big box", n["outside_big_box"], "<=", 0.02, n["sampler"]),
        ("negation", "MMD - DDPM's MMD", round(n["mmd"] - n_ddpm["mmd"], 4), "<=", 0.0,
         f"{n['sampler']} vs ddpm"),
    ]
    return [{"setup": s, "measure": m, "value": v, "target": f"{op} {t}",
             "met": v >= t if op == ">=" else v <= t, "run": r} for s, m, v, op, t, r in targets]


if __name__ == "__main__":
    main()
