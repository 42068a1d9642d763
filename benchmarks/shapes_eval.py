"""Composition accuracy of the shapes models under the strict judge: is it the model or the sampler?

    python -m benchmarks.shapes_eval [--models shapes-exact,shapes] [--n 32] [--samples 4]
        [--n-mcmc 16] [--samples-mcmc 2] [--steps 50] [--families placed,free]
        [--tasks and1,and2,and3,not] [--samplers ddim,ula,uhmc,mala,hmc] [--scale S]
        [--step-size H|auto] [--cluster auto|ADDRESS]

Models: a built-in name, or "shapes:FOLDER" for learned weights in FOLDER (the
weights shipped before the exact target live in assets/shapes/previous). The
exact model's row says how much of each failure is the sampler's; a learned
model's gap to it is the model's.

Every cell is --n compositions x --samples samples each, drawn by
composer/evaluation.py (placed: colour, shape, column and row; free: colour
and shape), run through the real engine with the model's defaults (the app's
sampler settings) unless overridden, and judged by composer/shapes/judge.py:
strict (a clean scene in which the captions hold) beside caption-only.
With --cluster the cells run at once on a Ray cluster's engines (composer/cluster.py,
docs/scaling.md), each engine loading a model once; results come in the same order,
and a cell that fails is named while the others finish.
Writes benchmarks/results/shapes.json (after every cell, so a cut-short run
keeps what it finished), judged galleries to assets/shapes/, and the markdown
table between the markers in docs/shapes.md.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from composer.cluster import CellFailed, ClusterError, EnginePool, connect
from composer.evaluation import run_task
from composer.knobs import add_arguments, from_arguments
from composer.models import load_model
from composer.models.shapes import ShapesModel
from composer.pictures import enlarge, grid
from composer.recipe import SamplerSpec

ROOT = Path(__file__).resolve().parents[1]

KNOWN = ["shapes-exact", "shapes", "shapes:assets/shapes/previous"]


def load(name: str):
    """A built-in model, or learned shapes weights from a folder ("shapes:FOLDER")."""
    if name.startswith("shapes:"):
        return ShapesModel(ROOT / name.split(":", 1)[1])
    return load_model(name, "cpu")

START, END = "<!-- shapes-eval:start -->", "<!-- shapes-eval:end -->"


def table(results: list[dict]) -> str:
    """One row per model, family and task, one column per sampler: strict (caption-only)."""
    samplers = list(dict.fromkeys(r["sampler"] for r in results))
    keys = list(dict.fromkeys((r["model"], r["family"], r["task"]) for r in results))
    cells = {(r["model"], r["family"], r["task"], r["sampler"]): r for r in results}
    lines = ["| model | family | task | " + " | ".join(samplers) + " |",
             "|---|---|---|" + "---|" * len(samplers)]
    for model, family, task in keys:
        row = [f"`{model}`", family, task.upper()]
        for s in samplers:
            r = cells.get((model, family, task, s))
            if r is None:
                row.append("-")
                continue
            text = f"**{r['accuracy']:.0%}** ({r['caption_accuracy']:.0%}), n={r['samples']}"
            if r.get("acceptance") is not None:
                text += f", acc. {r['acceptance']:.2f}"
            row.append(text)
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def save_gallery(path: Path, examples: list) -> None:
    """Examples x4 (nearest) in a grid, framed green (strictly correct), amber
    (captions hold, scene not clean) or red (captions fail); the compositions and
    verdicts go to a .txt beside the picture."""
    from PIL import Image
    tiles, lines = [], []
    for i, (image, comp, verdict) in enumerate(examples):
        frame = ((40, 170, 40) if verdict["correct"] else
                 (230, 160, 20) if verdict["captions_hold"] else (200, 40, 40))
        tile = np.full((132, 132, 3), frame, np.uint8)      # a 2-pixel frame around the x4 image
        tile[2:-2, 2:-2] = enlarge(image, 128)
        tiles.append(tile)
        status = ("correct" if verdict["correct"] else
                  "captions hold, not a clean scene" if verdict["captions_hold"] else "wrong")
        lines.append(f"{i}: {comp}: {status} ({len(verdict['objects'])} objects, "
                     f"{verdict['stray']} stray px)")
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid(np.stack(tiles), columns=8, gutter=0)).save(path)
    path.with_suffix(".txt").write_text("\n".join(lines) + "\n")


def update_doc(path: Path, text: str) -> None:
    if not path.is_file():
        return
    doc = path.read_text()
    if START in doc and END in doc:
        head, rest = doc.split(START, 1)
        _, tail = rest.split(END, 1)
        path.write_text(f"{head}{START}\n{text}\n{END}{tail}")


@functools.lru_cache(maxsize=None)
def loaded(name: str, clip_sample: str):
    """A model loaded once per process (a Ray engine keeps it between cells)."""
    model = load(name)
    if clip_sample != "model":
        model.scheduler_config = {**model.scheduler_config, "clip_sample": clip_sample == "on"}
    return model


def evaluate(args: argparse.Namespace, name: str, sampler: str, family: str, task: str) -> dict:
    """One cell: a family's task under a sampler on a model."""
    model = loaded(name, args.clip_sample)
    spec = SamplerSpec(name=sampler, **from_arguments(args))
    # Each composition is repeated --samples times, on different noise.
    mcmc = spec.is_mcmc and args.n_mcmc is not None
    return run_task(model, family, task, spec, args.n_mcmc if mcmc else args.n,
                    args.steps or model.defaults["steps"], args.scale, seed=args.seed,
                    chunk=args.chunk, beta=args.beta, keep=args.gallery,
                    repeats=(args.samples_mcmc or args.samples) if spec.is_mcmc else args.samples)


def evaluated(args: argparse.Namespace, cells: list[tuple[str, ...]]):
    """Each cell's result in order: here, or with --cluster on a pool of engines."""
    if not args.cluster:
        yield from (evaluate(args, *cell) for cell in cells)
        return
    # Imported by name, so that the engines import this module (and keep its models)
    # rather than receive a copy of `python -m`'s __main__ with each cell.
    from benchmarks.shapes_eval import evaluate as by_name
    pool = EnginePool(connect(args.cluster))
    try:
        yield from pool.map(by_name, [(" ".join(cell), (args, *cell)) for cell in cells])
    finally:
        pool.close()


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="shapes-exact,shapes",
                   help="the previous weights' rows (shapes:assets/shapes/previous) are kept "
                        "from an earlier run unless named here")
    p.add_argument("--n", type=int, default=32, help="compositions per cell")
    p.add_argument("--samples", type=int, default=4, help="samples per composition")
    p.add_argument("--n-mcmc", type=int, default=16, help="compositions per cell for MCMC "
                   "samplers; they cost 2-3x a reverse sampler")
    p.add_argument("--samples-mcmc", type=int, default=2)
    p.add_argument("--steps", type=int, default=None, help="default: the model's")
    p.add_argument("--scale", type=float, default=None, help="default: the model's")
    p.add_argument("--beta", type=float, default=1.0, help="NOT strength")
    p.add_argument("--clip-sample", choices=("model", "on", "off"), default="model",
                   help="clip predicted x0 to [-1, 1] in DDIM/DDPM steps (default: the model's config)")
    add_arguments(p)      # --mcmc-steps, --step-size, --leapfrog-steps, ...
    p.add_argument("--families", default="placed,free")
    p.add_argument("--tasks", default="and1,and2,and3,not")
    p.add_argument("--samplers", default="ddim,ula,uhmc,mala,hmc")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--chunk", type=int, default=64)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--gallery", type=int, default=16, help="examples kept per cell (0: none)")
    p.add_argument("--gallery-dir", default=str(ROOT / "benchmarks/results/shapes_gallery"),
                   help="where eval_<family>_<task>_<sampler>.png grids go ('' = nowhere)")
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/shapes.json"))
    p.add_argument("--doc", default=str(ROOT / "docs/shapes.md"))
    p.add_argument("--cluster", metavar="auto|ADDRESS", help="run the cells on a Ray cluster")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    # Results of models not run again are kept, so the table can be built in parts.
    models = args.models.split(",")
    earlier = json.loads(out.read_text()) if out.exists() else {}
    results = [r for r in earlier.get("results", []) if r.get("model") in KNOWN and r["model"] not in models]
    report = {"benchmark": "shapes_eval", "command": "python -m benchmarks.shapes_eval " + " ".join(sys.argv[1:]),
              "args": vars(args), "results": results, "threads": torch.get_num_threads(),
              "models": {k: v for k, v in earlier.get("models", {}).items() if k not in models}}
    start = time.time()
    for name in models:
        model = loaded(name, args.clip_sample)
        report["models"][name] = {"defaults": model.defaults, "scheduler": model.scheduler_config,
                                  "training": getattr(model, "meta", {}).get("training")}
    cells = [(name, sampler, family, task) for name in models for sampler in args.samplers.split(",")
             for family in args.families.split(",") for task in args.tasks.split(",")]
    for (name, sampler, family, task), r in zip(cells, evaluated(args, cells)):
        if isinstance(r, CellFailed):
            print(f"{r.name}: failed: {r.error}", file=sys.stderr, flush=True)
            continue
        examples = r.pop("examples")
        r.pop("images")             # every final image: the JSON keeps the verdicts' counts
        if examples and args.gallery_dir:
            slug = name.split(":")[-1].replace("/", "_")
            save_gallery(Path(args.gallery_dir) / f"eval_{slug}_{family}_{task}_{sampler}.png", examples)
        r["model"] = name
        r["load_average"] = round(os.getloadavg()[0], 2)
        results.append(r)
        print(json.dumps(r), flush=True)
        report["seconds"] = round(time.time() - start, 1)
        report["table"] = table(sorted(results, key=lambda r: KNOWN.index(r["model"])))
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
    if args.doc:
        update_doc(Path(args.doc), report["table"])
    print(report["table"])
    return report


if __name__ == "__main__":
    try:
        main()
    except ClusterError as err:
        sys.exit(f"error: {err}")
