"""Pick the shapes checkpoint to ship, and its guidance scale, by the strict judge.

    python -m benchmarks.shapes_select --folders runs/x/snapshots/step_12000,runs/x/export
        [--scales 2,3,5,7.5] [--clip off,on] [--n 16] [--samples 2] [--sampler ddim]

A folder may also be "shapes-exact" (the exact model: its defaults live in code).

Every folder (an exported checkpoint) x scale x clip setting is scored on a
selection set that is disjoint from the benchmark's (seed 4321, not 1234):
placed and free AND1, AND2, AND3 and NOT, --n compositions x --samples each, DDIM at
the model's default steps. The loss is never used to choose. Prints one JSON line
per setting and writes benchmarks/results/shapes_select.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from composer.evaluation import run_task
from composer.models import load_model
from composer.models.shapes import ShapesModel
from composer.recipe import SamplerSpec

ROOT = Path(__file__).resolve().parents[1]

SELECTION = [(family, task) for family in ("placed", "free")
             for task in ("and1", "and2", "and3", "not")]


def load(folder: str):
    """Learned weights in a folder, or the exact model ("shapes-exact")."""
    return load_model(folder, "cpu") if folder == "shapes-exact" else ShapesModel(folder)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--folders", required=True, help="comma-separated exported checkpoints")
    p.add_argument("--scales", default="2,3,5,7.5")
    p.add_argument("--clip", default="off,on", help="clip_sample settings to try")
    p.add_argument("--sampler", default="ddim")
    p.add_argument("--n", type=int, default=16)
    p.add_argument("--samples", type=int, default=2)
    p.add_argument("--seed", type=int, default=4321)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/shapes_select.json"))
    p.add_argument("--apply", action="store_true",
                   help="write the best scale and clip setting into the best folder's config.json "
                        "(\"sampling\": {\"scale\"} and scheduler.clip_sample)")
    p.add_argument("--step-sizes", default="",
                   help="MCMC samplers: step sizes to try (default: the model's); acceptance is reported")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for folder in args.folders.split(","):
        model = load(folder)
        base_config = dict(model.scheduler_config)
        for clip in args.clip.split(","):
            model.scheduler_config = {**base_config, "clip_sample": clip == "on"}
            for scale, step_size in ((float(s), h if h in ("", "auto") else float(h))
                                     for s in args.scales.split(",")
                                     for h in (args.step_sizes.split(",") if args.step_sizes else [""])):
                start = time.time()
                step = model.meta["training"]["steps"] if hasattr(model, "meta") else None
                row = {"folder": folder, "step": step, "clip": clip,
                       "scale": scale, "sampler": args.sampler, "step_size": step_size or None}
                strict = captions = clean = 0.0
                acceptance = []
                for family, task in SELECTION:
                    r = run_task(model, family, task,
                                 SamplerSpec(name=args.sampler, step_size=step_size or None),
                                 args.n, model.defaults["steps"], scale, seed=args.seed,
                                 repeats=args.samples)
                    row[f"{family} {task}"] = round(r["accuracy"], 3)
                    strict += r["accuracy"] / len(SELECTION)
                    captions += r["caption_accuracy"] / len(SELECTION)
                    clean += r["clean"] / len(SELECTION)
                    if r["acceptance"] is not None:
                        acceptance.append(r["acceptance"])
                row.update(mean_strict=round(strict, 3), mean_captions=round(captions, 3),
                           mean_clean=round(clean, 3), seconds=round(time.time() - start, 1),
                           acceptance=round(sum(acceptance) / len(acceptance), 3) if acceptance else None)
                rows.append(row)
                print(json.dumps(row), flush=True)
                Path(args.out).write_text(json.dumps({"benchmark": "shapes_select", "args": vars(args),
                                                      "rows": rows}, indent=2) + "\n")
    best = max(rows, key=lambda r: r["mean_strict"])
    print("best:", json.dumps(best))
    if args.apply and best["folder"] != "shapes-exact":
        config_path = Path(best["folder"]) / "config.json"
        meta = json.loads(config_path.read_text())
        meta["sampling"] = {**meta.get("sampling", {}), "scale": best["scale"]}
        meta["scheduler"]["clip_sample"] = best["clip"] == "on"
        meta["selection"] = {k: best[k] for k in ("mean_strict", "mean_captions", "mean_clean")}
        meta["selection"]["command"] = ("python -m benchmarks.shapes_select "
                                        + " ".join(sys.argv[1:] if argv is None else argv))
        config_path.write_text(json.dumps(meta, indent=2) + "\n")
    return {"rows": rows, "best": best}


if __name__ == "__main__":
    main()
