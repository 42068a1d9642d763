"""Short, equal-wall-time training ablations of the shapes model, judged strictly.

    python benchmarks/shapes_ablation.py [--minutes 5] [--runs base,stem,...]

Each run trains from scratch for --minutes of wall time (same seed, batch,
learning-rate horizon and data), alone on the machine, then its EMA weights
are scored on a fixed small set: the strict judge on free and placed AND2 and
free NOT (32 compositions each, DDIM, 50 steps, scale --scale), and the v-loss
on a fixed held-out batch over a fixed grid of timesteps. Checkpoints stay in
runs/ablation/<name>/ so the winner can be resumed into the long run.
Writes benchmarks/results/shapes_ablation.json after every run, keeping the
runs of earlier invocations that were not run again.
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

from composer.evaluation import run_task  # noqa: E402
from composer.models.shapes import ShapesModel  # noqa: E402
from composer.recipe import SamplerSpec  # noqa: E402
from composer.shapes import train  # noqa: E402
from composer.shapes.data import render, sample_scenes, sample_slots  # noqa: E402

# name -> training flags that differ from the baseline (the shipped architecture).
RUNS = {
    "base": [],
    "stem": ["--stem", "32"],
    "tokens": ["--text-tokens"],
    "stem+tokens": ["--stem", "32", "--text-tokens"],
    "stem+tokens lr2e-3": ["--stem", "32", "--text-tokens", "--lr", "2e-3"],
    "lr2e-3": ["--lr", "2e-3"],
    "dim128 lr2e-3": ["--dim", "128", "--lr", "2e-3"],
}
EVAL_SET = (("free", "and2"), ("placed", "and2"), ("free", "not"))


@torch.no_grad()
def held_out_loss(net: torch.nn.Module, prediction: str, n: int = 512, seed: int = 999) -> float:
    """Denoising loss of `net` on fixed scenes at 16 evenly spaced timesteps."""
    g = torch.Generator().manual_seed(seed)
    scenes = sample_scenes(n, g)
    x0, slots = render(scenes), sample_slots(scenes, g, p_empty=0.0)
    abar = train.alphas_cumprod()
    losses = []
    for t_value in torch.linspace(20, 980, 16).long():
        t = torch.full((n,), int(t_value))
        noise = torch.randn(x0.shape, generator=g)
        a = abar[t][:, None, None, None]
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        target = noise if prediction == "epsilon" else a.sqrt() * noise - (1 - a).sqrt() * x0
        losses.append(torch.mean((net(xt, t, slots) - target) ** 2).item())
    return sum(losses) / len(losses)


def main() -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=5.0)
    p.add_argument("--runs", default=",".join(RUNS))
    p.add_argument("--horizon", type=int, default=20000,
                   help="--steps of every run: the cosine learning-rate horizon (time ends each run)")
    p.add_argument("--scale", type=float, default=3.0)
    p.add_argument("--n", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/shapes_ablation.json"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    # Runs of earlier invocations stay in the report unless run again.
    earlier = json.loads(out.read_text())["runs"] if out.exists() else []
    report = {"benchmark": "shapes_ablation", "args": vars(args), "runs": earlier}
    for name in args.runs.split(","):
        run_dir = ROOT / "runs/ablation" / name.replace(" ", "_")
        flags = ["--run-dir", str(run_dir), "--out", str(run_dir / "export"),
                 "--steps", str(args.horizon), "--time-limit", str(args.minutes),
                 "--threads", str(args.threads), "--log-every", "100"] + RUNS[name]
        load = os.getloadavg()[0]
        meta = train.main(flags)
        model = ShapesModel(run_dir / "export")
        row = {"run": name, "flags": RUNS[name], "steps": meta["training"]["steps"],
               "seconds": meta["training"]["seconds"], "parameters": meta["training"]["parameters"],
               "train_loss": meta["training"]["final_loss"], "load_at_start": round(load, 2),
               "held_out_loss": round(held_out_loss(model.net, model.prediction), 5)}
        start = time.time()
        for family, task in EVAL_SET:
            r = run_task(model, family, task, SamplerSpec(name="ddim"), args.n, 50, args.scale,
                         seed=4321)
            row[f"{family} {task}"] = {"strict": r["accuracy"], "captions": r["caption_accuracy"],
                                       "clean": r["clean"]}
        row["eval_seconds"] = round(time.time() - start, 1)
        report["runs"] = [r for r in report["runs"] if r["run"] != name] + [row]
        print(json.dumps(row), flush=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
