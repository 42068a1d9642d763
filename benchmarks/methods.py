"""Which method, for which composition: every composition method on the same tasks
and seeds, quality beside network evaluations per sample.

    python -m benchmarks.methods [--parts toy2d,shapes,ito,cost] [--points 1000]
        [--n 8] [--samples 2] [--models shapes-exact,shapes] [--out FILE] [--doc]
    python -m benchmarks.methods --tiny        # every part at a toy size (the smoke test)

Methods (operator + sampler; every other knob the model's default):
- Liu AND: Composable Diffusion's sum (operator and), the model's reverse sampler
  (toy2d DDPM at 100 steps, shapes DDIM at its 50);
- HMC (RRR): Reduce, Reuse, Recycle's annealed HMC at the model's defaults, on RRR's
  product in the 2D lab (its mixture for OR, energies only; its bounded NOT on the energy
  model) and on Liu's AND on shapes (the product at the shapes' scale 2-3 is q^(2w), and
  its NOT ratio q_1^4 / q_2^2, which no sampler draws a scene from);
- SuperDiff AND / OR: the operators superdiff_and / superdiff_or on DDPM steps;
- SMC K=4 / K=8: the smc sampler (Feynman-Kac weights, systematic resampling) on the
  product (toy2d) or on Liu's AND (shapes, whose scale makes it a guided product);
  toy2d at 100 and 60 steps, shapes at 50;
- best of 4: Liu AND, each sample the candidate of 4 that the model's lift prefers.

Tasks. toy2d (toy2d-score, toy2d-energy; --points samples against exact ones): the RRR
product ring x bar and negation big_box NOT small_box (share in the support, MMD), and
OR left_bar (1) OR right_bar (3) (share in either bar, and in the left one: exactly 1/4).
shapes (composer/evaluation.py: --n compositions x --samples, strict judge): AND2, AND3,
NOT placed and free; OR of two free captions at weights 1 : 3 (strict "at least one
caption holds", and the first caption's share by the exact model's responsibilities:
exactly 1/4 under the mixture).
ito: SuperDiff's tracked log q_1 - log q_2 against the exact one on shapes-exact (every
level) and toy2d-energy (its change since the first level), DDPM and DDIM at 25/50/100
steps: median absolute error at 10%, 50% and 90% of the run and at the end (with the
exact spread), and the share of samples whose end-of-run sign agrees.
cost: network rows per sample of every method on a tiny random Stable Diffusion.
or_bias: where an OR's share of the lighter row goes wrong: SuperDiff's OR on both toy2d
models at 25 to 400 DDPM steps, beside the mixture on exact energies (toy2d-energy) on the
same steps, 4000 points each.

Prints JSON per cell, then the tables; --out writes the JSON after every cell, and a
run given an --out that already holds cells of the same settings keeps them and
computes only the rest (a cut-short run resumes); --doc writes the tables into
docs/methods.md between the markers.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import tempfile
import time
from pathlib import Path

import torch

from composer.engine import alpha_bar, sample
from composer.evaluation import OR_WEIGHTS, PerSample, make_compositions, run_task
from composer.lift import best_of, lift_cost, measure_lift
from composer.models import load_model
from composer.plan import candidates, cost, prepare, rule_of
from composer.recipe import Concept, Recipe, SamplerSpec
from composer.samplers import make_scheduler
from composer.toy2d.data import COMPONENTS, SETUPS
from composer.toy2d.lab import ground_truth, mmd

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- methods:start -->", "<!-- methods:end -->"

# name -> (operator, sampler, knobs) per family; None: the method does not apply.
SHAPES_METHODS = {
    "Liu AND": ("and", "ddim", {}),
    "HMC (RRR)": ("and", "hmc", {}),
    "SuperDiff AND": ("superdiff_and", "ddpm", {}),
    "SMC K=4": ("and", "smc", {"particles": 4}),
    "SMC K=8": ("and", "smc", {"particles": 8}),
    "best of 4": ("and", "ddim", {"best_of": 4}),
}
TOY_METHODS = {
    "Liu AND": ("and", "ddpm", {"steps": 100}),
    "HMC (RRR)": ("product", "hmc", {}),
    "SuperDiff AND": ("superdiff_and", "ddpm", {"steps": 100}),
    "SMC K=4": ("product", "smc", {"particles": 4, "steps": 100}),
    "SMC K=8": ("product", "smc", {"particles": 8, "steps": 60}),
    "best of 4": ("and", "ddpm", {"steps": 100, "best_of": 4}),
}


def toy_rows(task: str) -> tuple[Concept, ...]:
    return {"product": (Concept("ring"), Concept("bar")),
            "negation": (Concept("big_box"), Concept("small_box", negate=True)),
            "or": (Concept("left_bar", weight=OR_WEIGHTS[0]), Concept("right_bar", weight=OR_WEIGHTS[1]))}[task]


def toy_methods(task: str, has_energy: bool) -> dict:
    if task != "or":
        methods = dict(TOY_METHODS)
        if task == "negation":
            del methods["SuperDiff AND"]          # it takes no NOT rows
            if has_energy:                        # the shipped negation: bounded NOT (energies)
                methods["HMC (RRR)"] = ("product", "hmc", {"negation": "bounded"})
        return methods
    methods = {"Liu AND": TOY_METHODS["Liu AND"],
               "SuperDiff OR": ("superdiff_or", "ddpm", {"steps": 100})}
    if has_energy:
        methods["HMC (RRR mixture)"] = ("mixture", "hmc", {})
    return methods


def toy2d_cell(model, name: str, task: str, method: str, spec: tuple, points: int, seed: int) -> dict:
    operator, sampler, knobs = spec
    knobs = dict(knobs)
    steps, best = knobs.pop("steps", None), knobs.pop("best_of", 1)
    negation = knobs.pop("negation", "ratio")
    recipe = Recipe(model=name, concepts=toy_rows(task), operator=operator, scale=1.0, steps=steps,
                    sampler=SamplerSpec(sampler, **knobs), seed=seed, num_samples=points, best_of=best,
                    negation=negation)
    filled = prepare(recipe, model)
    start = time.time()
    x = list(sample(candidates(filled), model))[-1].x_t
    if best > 1:
        x = x[best_of(measure_lift(model, candidates(filled), x), best)]
    cell = {"part": "toy2d", "model": name, "task": task, "method": method,
            "evaluations": calls(filled, model, best), "seconds": round(time.time() - start, 1)}
    if task == "or":
        left = COMPONENTS["left_bar"].support(x).float().mean().item()
        right = COMPONENTS["right_bar"].support(x).float().mean().item()
        return {**cell, "in_either": round(left + right, 3),
                "left_share": round(left / max(left + right, 1e-9), 3)}
    target = "product" if task == "product" else "negation"
    truth = ground_truth(dataclasses.replace(recipe, operator="product", best_of=1, negation="ratio"),
                         n=1000, seed=seed)
    return {**cell, "in_support": round(SETUPS[target].support(x).float().mean().item(), 3),
            "mmd": round(mmd(x, truth), 3)}


def shapes_cell(model, name: str, family: str, task: str, method: str, spec: tuple, args,
                oracle) -> dict:
    operator, sampler, knobs = spec
    knobs = dict(knobs)
    best, scale = knobs.pop("best_of", 1), knobs.pop("scale", model.defaults["scale"])
    result = run_task(model, family, task, SamplerSpec(sampler, **knobs), args.n,
                      model.defaults["steps"], scale, seed=args.seed,
                      repeats=args.samples, operator=operator, best_of_n=best)
    concepts = tuple(Concept(f"c{i}") for i in range(3 if task == "and3" else 2))
    probe = Recipe(model=name, concepts=concepts, operator=operator, sampler=SamplerSpec(sampler, **knobs),
                   best_of=best)
    stand_in = PerSample(model, [tuple("red circle" for _ in concepts)])
    filled = prepare(probe, stand_in)
    evaluations = calls(filled, stand_in, best)
    cell = {"part": "shapes", "model": name, "family": family, "task": task, "method": method,
            "strict": round(result["accuracy"], 3), "captions": round(result["caption_accuracy"], 3),
            "evaluations": evaluations, "seconds": result["seconds"]}
    if task == "or":
        compositions = [c for c in make_compositions(family, task, args.n, args.seed)
                        for _ in range(args.samples)]
        cell["first_share"] = round(responsibility(oracle, compositions, result["images"]), 3)
    return cell


def calls(filled: Recipe, model, best: int) -> int:
    """Network evaluations per output sample: batched calls that each answer every row
    (the unit of the README's budgets), the lift's included for best of N."""
    rows = len(rule_of(filled).texts)
    total = cost(filled, model) + (lift_cost(candidates(filled)) * rows // (rows + 1) if best > 1 else 0)
    return round(total / rows / filled.num_samples)


def responsibility(oracle, compositions, images) -> float:
    """Mean exact responsibility of each OR's first caption, pi_1 p_1(x) / p*(x), at the
    lowest noise level (shapes-exact): exactly pi_1 = 1/4 for samples of the mixture."""
    from composer.pictures import from_uint8
    x = from_uint8(torch.stack([torch.from_numpy(i) for i in images]).permute(0, 3, 1, 2).float())
    abar = float(make_scheduler("ddpm", oracle.scheduler_config).alphas_cumprod[0])
    per = PerSample(oracle, [c.positives for c in compositions])
    _, energy = per.predict(math.sqrt(abar) * x, 0, abar, per.encode(("c0", "c1")), with_energy=True)
    prior = torch.tensor(OR_WEIGHTS, dtype=energy.dtype)
    return float(torch.softmax(-energy + (prior / prior.sum()).log()[:, None], 0)[0].mean())


def ito_cell(model, name: str, sampler: str, steps: int, samples: int, seed: int) -> dict:
    """Tracked against exact log q_1 - log q_2 along a superdiff_or run."""
    rows = {"shapes-exact": ("red circle", "blue square"), "toy2d-energy": ("left_bar", "right_bar")}[name]
    cond = model.encode(rows)
    recipe = Recipe(model=name, concepts=tuple(Concept(t) for t in rows), operator="superdiff_or",
                    scale=1.0, sampler=SamplerSpec(sampler), steps=steps, num_samples=samples,
                    seed=seed)
    scheduler = make_scheduler(sampler, model.scheduler_config)
    scheduler.set_timesteps(steps)
    errors, start, record = [], None, None
    for record in sample(recipe, model):
        k = record.index + 1
        if k >= steps:
            break
        _, energy = model.predict(record.x_t, scheduler.timesteps[k],
                                  alpha_bar(scheduler, k, scheduler.timesteps[k]), cond,
                                  with_energy=True)
        exact = (energy[1] - energy[0]).double()
        tracked = record.log_density[0] - record.log_density[1]
        if name == "toy2d-energy":     # energies up to a constant per row: changes only
            start = (exact, tracked) if start is None else start
            exact, tracked = exact - start[0], tracked - start[1]
        errors.append((float((tracked - exact).abs().median()), float(exact.abs().median()),
                       float(((tracked > 0) == (exact > 0)).double().mean())))
    at = {f"{int(f * 100)}%": round(errors[min(len(errors) - 1, int(f * len(errors)))][0], 3)
          for f in (0.1, 0.5, 0.9)}
    return {"part": "ito", "model": name, "sampler": sampler, "steps": steps,
            "samples": samples, "median_error": at, "end_error": round(errors[-1][0], 3),
            "end_exact_median": round(errors[-1][1], 3),
            "end_sign_agreement": round(errors[-1][2], 3)}


def or_bias_cell(model, name: str, operator: str, steps: int, points: int, seed: int) -> dict:
    cell = toy2d_cell(model, name, "or", operator, (operator, "ddpm", {"steps": steps}), points, seed)
    return {"part": "or_bias", **{k: cell[k] for k in ("model", "in_either", "left_share")},
            "operator": operator, "steps": steps, "points": points}


def cost_cells() -> list[dict]:
    """Network rows per sample of each method on a tiny random Stable Diffusion."""
    from composer.models.tiny_sd import save_tiny_sd
    with tempfile.TemporaryDirectory() as folder:
        model = load_model(str(save_tiny_sd(Path(folder) / "tiny")), "cpu")
        out = []
        for method, (operator, sampler, knobs) in {**SHAPES_METHODS,
                                                   "SuperDiff OR": ("superdiff_or", "ddpm", {})}.items():
            knobs = dict(knobs)
            best = knobs.pop("best_of", 1)
            recipe = Recipe(model=model.name, concepts=(Concept("a red cube"), Concept("a blue ball")),
                            operator=operator, sampler=SamplerSpec(sampler, **knobs), best_of=best)
            filled = prepare(recipe, model)
            judging = lift_cost(candidates(filled)) if best > 1 else 0
            out.append({"part": "cost", "model": "tiny SD", "method": method,
                        "steps": filled.steps, "evaluations": cost(filled, model) + judging})
        return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", default="toy2d,shapes,ito,cost,or_bias")
    parser.add_argument("--points", type=int, default=1000)
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--samples", type=int, default=2)
    parser.add_argument("--models", default="shapes-exact,shapes")
    parser.add_argument("--families", default="placed,free")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tiny", action="store_true", help="every part at a toy size")
    parser.add_argument("--out", default=None)
    parser.add_argument("--doc", action="store_true", help="write the tables into docs/methods.md")
    args = parser.parse_args(argv)
    if args.tiny:
        args.points, args.n, args.samples, args.families = 40, 1, 1, "free"
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    parts, cells, started = args.parts.split(","), [], time.time()
    settings = {k: getattr(args, k) for k in ("points", "n", "samples", "models", "families", "seed")}
    done = {}
    if args.out and Path(args.out).exists():
        previous = json.loads(Path(args.out).read_text())
        if previous.get("settings") == settings:
            done = {_key(c): c for c in previous["cells"]}

    def report() -> dict:
        return {"benchmark": "methods", "command": "python -m benchmarks.methods " + " ".join(argv or []),
                "settings": settings, "device": "cpu", "threads": torch.get_num_threads(),
                "seconds": round(time.time() - started),
                "load_average_end": [round(v, 2) for v in os.getloadavg()], "cells": cells}

    def keep(cell: dict) -> None:
        cells.append(cell)
        print(json.dumps(cell), flush=True)
        if args.out:
            Path(args.out).write_text(json.dumps(report(), indent=1) + "\n")

    def run(key: tuple, compute) -> None:
        """A cell: the resumed one, else computed now."""
        if key in done:
            cells.append(done[key])
        else:
            keep(compute())
    if "toy2d" in parts:
        for name in ("toy2d-score", "toy2d-energy"):
            model = load_model(name, "cpu")
            for task in ("product", "negation", "or"):
                for method, spec in toy_methods(task, model.has_energy).items():
                    if args.tiny and method not in ("Liu AND", "SMC K=4", "SuperDiff OR"):
                        continue
                    run(("toy2d", name, task, method), lambda: toy2d_cell(
                        model, name, task, method, spec, args.points, args.seed))
    if "shapes" in parts:
        oracle = load_model("shapes-exact", "cpu")
        for name in args.models.split(","):
            model = load_model(name, "cpu")
            for family in args.families.split(","):
                for task in ("and2", "and3", "not", "or"):
                    if task == "or" and family == "placed":
                        continue
                    methods = shapes_methods(task, model.has_energy)
                    for method, spec in methods.items():
                        if args.tiny and method not in ("Liu AND", "SMC K=4", "SuperDiff OR"):
                            continue
                        run(("shapes", name, family, task, method), lambda: shapes_cell(
                            model, name, family, task, method, spec, args, oracle))
    if "ito" in parts:
        for name in ("shapes-exact", "toy2d-energy"):
            model = load_model(name, "cpu")
            samples = min(4 if args.tiny else 64, model.max_samples)
            for sampler in ("ddpm", "ddim"):
                for steps in (5,) if args.tiny else (25, 50, 100):
                    run(("ito", name, sampler, steps), lambda: ito_cell(
                        model, name, sampler, steps, samples, args.seed))
    if "cost" in parts:
        if not any(c["part"] == "cost" for c in done.values()):
            for cell in cost_cells():
                keep(cell)
        else:
            cells.extend(c for c in done.values() if c["part"] == "cost")
    if "or_bias" in parts:
        for name in ("toy2d-score", "toy2d-energy"):
            model = load_model(name, "cpu")
            for operator in ("superdiff_or", "mixture") if model.has_energy else ("superdiff_or",):
                for steps in (10,) if args.tiny else (10, 25, 50, 100):
                    run(("or_bias", name, operator, steps), lambda: or_bias_cell(
                        model, name, operator, steps, args.points * 4, args.seed))
    tables = markdown(cells)
    print(tables)
    if args.out:
        Path(args.out).write_text(json.dumps(report(), indent=1) + "\n")
    if args.doc:
        doc = ROOT / "docs" / "methods.md"
        text = doc.read_text()
        head, rest = text.split(START, 1)
        doc.write_text(head + START + "\n" + tables + "\n" + END + rest.split(END, 1)[1])
    return report()


def _key(cell: dict) -> tuple:
    """What a cell was computed for, as `run` is given it."""
    names = {"toy2d": ("model", "task", "method"), "shapes": ("model", "family", "task", "method"),
             "ito": ("model", "sampler", "steps"), "cost": ("method",),
             "or_bias": ("model", "operator", "steps")}[cell["part"]]
    return (cell["part"], *(cell[n] for n in names))


def shapes_methods(task: str, has_energy: bool) -> dict:
    if task == "or":
        # scale 1: the mixture itself (a guided OR sharpens the shares toward the heavier row)
        methods = {"Liu AND": SHAPES_METHODS["Liu AND"],
                   "SuperDiff OR": ("superdiff_or", "ddpm", {"scale": 1.0})}
        if has_energy:
            methods["HMC (RRR mixture)"] = ("mixture", "hmc", {})
        return methods
    methods = dict(SHAPES_METHODS)
    if task == "not":
        del methods["SuperDiff AND"]
    return methods


def markdown(cells: list[dict]) -> str:
    from benchmarks.methods_tables import tables
    return tables(cells)


if __name__ == "__main__":
    main()
