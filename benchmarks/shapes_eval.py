"""Composition accuracy of the shapes model, judged by the analytic judge.

    python benchmarks/shapes_eval.py [--n 200] [--n-mcmc 200] [--steps 50]
        [--tasks and1,and2,and3,not] [--samplers ddim,ula,uhmc,hmc]

Tasks (see composer/shapes/evaluate.py): AND of 1, 2, 3 captions drawn from a
random satisfiable scene, and NOT (one positive caption, one negated word that
must be absent from the whole image). Every composition runs through the real
engine (composer.engine.sample) with the model's defaults unless overridden.
Writes benchmarks/results/shapes.json (after every cell, so a cut-short run
keeps what it finished) and the markdown table between the markers in
docs/shapes.md.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from composer.models import load_model  # noqa: E402
from composer.recipe import SamplerSpec  # noqa: E402
from composer.shapes.evaluate import run_task  # noqa: E402

TARGETS = {"and1": 0.95, "and2": 0.85, "and3": 0.70, "not": 0.90}
START, END = "<!-- shapes-eval:start -->", "<!-- shapes-eval:end -->"


def table(results: list[dict]) -> str:
    samplers = list(dict.fromkeys(r["sampler"] for r in results))
    tasks = list(dict.fromkeys(r["task"] for r in results))
    cells = {(r["task"], r["sampler"]): r for r in results}
    lines = ["| task (target) | " + " | ".join(samplers) + " |",
             "|---|" + "---|" * len(samplers)]
    for task in tasks:
        row = [f"{task.upper()} ({TARGETS.get(task, 0):.0%})"]
        for s in samplers:
            r = cells.get((task, s))
            if r is None:
                row.append("-")
                continue
            text = f"{r['accuracy']:.0%} (n={r['n']})"
            if r.get("acceptance") is not None:
                text += f", acc. {r['acceptance']:.2f}"
            row.append(text)
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def save_gallery(path: Path, examples: list) -> None:
    """Examples x4 (nearest) in a grid, with a green (correct) or red (wrong) frame;
    the compositions go to a .txt beside the picture."""
    from PIL import Image
    import numpy as np
    cols = 8
    rows = (len(examples) + cols - 1) // cols
    tile = 32 * 4 + 4
    grid = np.full((rows * tile, cols * tile, 3), 255, np.uint8)
    lines = []
    for i, (image, comp, ok) in enumerate(examples):
        r, c = divmod(i, cols)
        frame = (40, 170, 40) if ok else (200, 40, 40)
        grid[r * tile:(r + 1) * tile, c * tile:(c + 1) * tile] = frame
        big = np.kron(image, np.ones((4, 4, 1), np.uint8))
        grid[r * tile + 2:r * tile + 2 + 128, c * tile + 2:c * tile + 2 + 128] = big
        text = " AND ".join(comp.positives) + "".join(f" AND NOT {n}" for n in comp.negatives)
        lines.append(f"{i}: {text}: {'correct' if ok else 'wrong'}")
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(path)
    path.with_suffix(".txt").write_text("\n".join(lines) + "\n")


def update_doc(path: Path, text: str) -> None:
    if not str(path) or not path.is_file():
        return
    doc = path.read_text()
    if START in doc and END in doc:
        head, rest = doc.split(START, 1)
        _, tail = rest.split(END, 1)
        path.write_text(f"{head}{START}\n{text}\n{END}{tail}")


def main() -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=200, help="compositions per task, reverse samplers")
    p.add_argument("--n-mcmc", type=int, default=200, help="compositions per task, MCMC samplers")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--scale", type=float, default=None, help="default: the model's")
    p.add_argument("--beta", type=float, default=1.0, help="NOT strength")
    p.add_argument("--mcmc-steps", type=int, default=None)
    p.add_argument("--step-size", type=float, default=None)
    p.add_argument("--leapfrog-steps", type=int, default=None)
    p.add_argument("--tasks", default="and1,and2,and3,not")
    p.add_argument("--samplers", default="ddim,ula,uhmc")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--chunk", type=int, default=100)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--gallery", type=int, default=16, help="examples kept per cell (0: none)")
    p.add_argument("--gallery-dir", default=str(ROOT / "assets/shapes"),
                   help="where eval_<task>_<sampler>.png grids go ('' = nowhere)")
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/shapes.json"))
    p.add_argument("--doc", default=str(ROOT / "docs/shapes.md"))
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_model("shapes", "cpu")
    results = []
    report = {"benchmark": "shapes_eval", "args": vars(args), "defaults": model.defaults,
              "targets": TARGETS, "results": results, "threads": torch.get_num_threads()}
    start = time.time()
    for sampler in args.samplers.split(","):
        spec = SamplerSpec(name=sampler, mcmc_steps=args.mcmc_steps, step_size=args.step_size,
                           leapfrog_steps=args.leapfrog_steps)
        n = args.n_mcmc if spec.is_mcmc else args.n
        for task in args.tasks.split(","):
            r = run_task(model, task, spec, n, args.steps, args.scale, seed=args.seed,
                         chunk=args.chunk, beta=args.beta, keep=args.gallery)
            examples = r.pop("examples")
            if examples and args.gallery_dir:
                save_gallery(Path(args.gallery_dir) / f"eval_{task}_{sampler}.png", examples)
            r["load_average"] = round(os.getloadavg()[0], 2)
            results.append(r)
            print(json.dumps(r), flush=True)
            report["seconds"] = round(time.time() - start, 1)
            report["table"] = table(results)
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    if args.doc:
        update_doc(Path(args.doc), report["table"])
    print(report["table"])
    return report


if __name__ == "__main__":
    main()
