"""Train the shapes denoiser.

    python -m composer.shapes.train --out assets/shapes [--steps N] [--resume]

Data is drawn fresh every step from the procedural renderer (seeded, so a run
is reproducible for a seed and a device). The loss is the usual denoising MSE
at uniformly drawn timesteps of the VP schedule, on v = sqrt(abar) eps -
sqrt(1 - abar) x0 (default; Salimans & Ho 2022) or on eps (--prediction epsilon).
An eps-output network is poorly conditioned at high noise (its x0 = (x -
sigma eps) / sqrt(abar) amplifies errors ~30x at t = 960), which left samples
cluttered; v keeps x0 = sqrt(abar) x - sigma v well behaved. 10% of captions
are empty (classifier-free training). Checkpoints (model, EMA, optimiser, RNG,
step, loss log) go to --run-dir every --checkpoint-every seconds and at the
end, and --resume continues from the latest one. At the end the EMA weights
are exported to <out>/shapes.safetensors with <out>/config.json, and the loss
curve to <out>/loss.png; --snapshot-every N also exports the EMA weights every
N steps, so the shipped checkpoint can be picked by the judge.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image, ImageDraw
from safetensors.torch import save_file

from composer.samplers import alphas_cumprod
from composer.shapes.data import VOCABULARY, render, sample_scenes, sample_slots
from composer.shapes.exact import denoise, shapes_world
from composer.shapes.model import SCHEDULER_CONFIG, ShapesConfig, ShapesDenoiser, count_parameters

WEIGHTS = "shapes.safetensors"
CONFIG = "config.json"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="assets/shapes", help="where the final weights go")
    p.add_argument("--run-dir", default="runs/shapes", help="checkpoints and the loss log")
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--ema", type=float, default=0.999)
    p.add_argument("--p-empty", type=float, default=0.1, help="share of empty captions")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dim", type=int, default=ShapesConfig.dim)
    p.add_argument("--depth", type=int, default=ShapesConfig.depth)
    p.add_argument("--heads", type=int, default=ShapesConfig.heads)
    p.add_argument("--patch", type=int, default=ShapesConfig.patch)
    p.add_argument("--stem", type=int, default=ShapesConfig.stem,
                   help="channels of a 3x3 conv stem and head around the patches (0: none)")
    p.add_argument("--text-tokens", action="store_true",
                   help="caption slots as tokens the image tokens attend to (beside adaLN)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's choice)")
    p.add_argument("--checkpoint-every", type=float, default=180.0, help="seconds")
    p.add_argument("--time-limit", type=float, default=0.0,
                   help="stop (and export) after this many minutes of this invocation; 0 = no limit")
    p.add_argument("--prediction", choices=("v", "epsilon"), default="v",
                   help="what the network outputs (the adapter always returns eps)")
    p.add_argument("--target", choices=("noisy", "exact"), default="exact",
                   help="what the loss regresses on: the drawn x0 (noisy: the usual denoising "
                        "target) or the exact posterior mean E[x0 | x_t, caption] of "
                        "composer/shapes/exact.py (same optimum, none of the x0 target's variance)")
    p.add_argument("--init", default="", help="start from the weights of this checkpoint.pt "
                   "(fresh optimiser and step count), e.g. an earlier run")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--export-only", action="store_true",
                   help="write the EMA weights of the latest checkpoint to --out and stop")
    p.add_argument("--log-every", type=int, default=25)
    p.add_argument("--snapshot-every", type=int, default=0,
                   help="also export the EMA weights every this many steps to "
                        "<run-dir>/snapshots/step_N/, so the shipped checkpoint can be chosen "
                        "by the judge rather than the loss (0: never)")
    return p.parse_args(argv)


@torch.no_grad()
def exact_targets(world, xt: torch.Tensor, a: torch.Tensor, slots: torch.Tensor):
    """E[x0 | x_t, caption] and the eps it implies, per sample (the caption's slots, -1
    where a kind is not named, are exactly what the exact model matches on)."""
    x0, _ = denoise(world, xt, a.reshape(-1), slots[None], with_density=False)
    x0 = x0[0].to(xt.dtype)
    return x0, (xt - a.sqrt() * x0) / (1 - a).sqrt()


def loss_target(prediction: str, noise: torch.Tensor, x0: torch.Tensor,
                a: torch.Tensor) -> torch.Tensor:
    """What the network learns to output: eps, or v = sqrt(abar) eps - sqrt(1 - abar) x0
    (the inverse of models/base.eps_from_v)."""
    return noise if prediction == "epsilon" else a.sqrt() * noise - (1 - a).sqrt() * x0


def learning_rate(step: int, args) -> float:
    """Linear warmup, then cosine decay to 10% over --steps."""
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    progress = min(1.0, (step - args.warmup) / max(1, args.steps - args.warmup))
    return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def save_checkpoint(path: Path, model, ema, opt, generator, step, log, elapsed, config,
                    args=None) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save({"args": vars(args) if args is not None else None, "model": model.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(),
                "rng": generator.get_state(), "step": step, "log": log, "elapsed": elapsed,
                "config": config.to_dict()}, tmp)
    tmp.replace(path)


def plot_loss(log: list[dict], path: Path) -> None:
    """A plain PIL line plot of the smoothed training loss (log scale)."""
    width, height, pad = 640, 360, 48
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    if len(log) >= 2:
        steps = [r["step"] for r in log]
        losses = [math.log10(max(r["loss"], 1e-6)) for r in log]
        lo, hi = min(losses), max(losses)
        hi = hi if hi > lo else lo + 1
        def xy(s, v):
            return (pad + (width - 2 * pad) * (s - steps[0]) / max(1, steps[-1] - steps[0]),
                    height - pad - (height - 2 * pad) * (v - lo) / (hi - lo))
        draw.line([xy(s, v) for s, v in zip(steps, losses)], fill=(30, 90, 200), width=2)
        draw.text((pad, height - pad + 8), f"step {steps[0]}", fill="black")
        draw.text((width - pad - 80, height - pad + 8), f"step {steps[-1]}", fill="black")
        draw.text((4, pad - 14), f"{10 ** hi:.4f}", fill="black")
        draw.text((4, height - pad - 6), f"{10 ** lo:.4f}", fill="black")
    draw.rectangle([pad, pad, width - pad, height - pad], outline="gray")
    draw.text((pad, 10), "shapes denoiser: training loss (eps MSE, log scale, mean per log interval)",
              fill="black")
    image.save(path)


def export(out: Path, ema: ShapesDenoiser, meta: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().float().contiguous().cpu() for k, v in ema.state_dict().items()}
    save_file(state, str(out / WEIGHTS), metadata={"format": "pt"})
    (out / CONFIG).write_text(json.dumps(meta, indent=2) + "\n")


def metadata(config, args, step, log, total, device, model) -> dict:
    final_loss = sum(r["loss"] for r in log[-8:]) / max(1, len(log[-8:])) if log else float("nan")
    return {"model": config.to_dict(), "prediction": getattr(args, "prediction", "epsilon"),
            "scheduler": SCHEDULER_CONFIG, "vocabulary": list(VOCABULARY),
            "training": {"steps": step, "batch": args.batch, "lr": args.lr, "ema": args.ema,
                         "p_empty": args.p_empty, "seed": args.seed, "seconds": round(total, 1),
                         "final_loss": round(final_loss, 5), "device": str(device),
                         "parameters": count_parameters(model), "init": getattr(args, "init", ""),
                         "target": getattr(args, "target", "noisy")}}


@dataclass
class Training:
    """What a training run carries from step to step, and what a checkpoint keeps."""
    model: ShapesDenoiser
    ema: ShapesDenoiser
    opt: torch.optim.Optimizer
    generator: torch.Generator
    step: int = 0
    log: list = field(default_factory=list)
    elapsed: float = 0.0          # seconds trained in earlier sessions (a resumed run)


def start(args, config: ShapesConfig, device: torch.device, ckpt_path: Path) -> Training:
    """A fresh run, one initialised from --init, or one resumed from its checkpoint."""
    generator = torch.Generator().manual_seed(args.seed)
    torch.manual_seed(args.seed)
    model = ShapesDenoiser(config).to(device)
    ema = ShapesDenoiser(config).to(device)
    ema.load_state_dict(model.state_dict())
    ema.requires_grad_(False)
    run = Training(model, ema, torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0),
                   generator)
    if args.init and not (args.resume and ckpt_path.exists()):
        init = torch.load(args.init, map_location=device, weights_only=False)
        model.load_state_dict(init["model"])
        ema.load_state_dict(init["ema"])
        print(f"initialised from {args.init} (step {init['step']}, "
              f"{init['elapsed'] / 60:.1f} min)", flush=True)
    if args.resume and ckpt_path.exists():
        ckpt = torch.load(ckpt_path, map_location=device, weights_only=False)
        if ckpt["config"] != config.to_dict():
            raise SystemExit(f"--resume: checkpoint config {ckpt['config']} differs from {config.to_dict()}")
        model.load_state_dict(ckpt["model"])
        ema.load_state_dict(ckpt["ema"])
        run.opt.load_state_dict(ckpt["opt"])
        generator.set_state(ckpt["rng"])
        run.step, run.log, run.elapsed = ckpt["step"], ckpt["log"], ckpt["elapsed"]
        print(f"resumed at step {run.step} ({run.elapsed / 60:.1f} min so far)", flush=True)
    return run


def export_only(args, run_dir: Path, ckpt_path: Path, device: torch.device) -> dict:
    """--export-only: the checkpoint's EMA weights, exported as a finished run would."""
    if not ckpt_path.exists():
        raise SystemExit(f"--export-only: no checkpoint in {run_dir}")
    ckpt = torch.load(ckpt_path, map_location=device, weights_only=False)
    config = ShapesConfig(**ckpt["config"])
    ema = ShapesDenoiser(config)
    ema.load_state_dict(ckpt["ema"])
    if ckpt.get("args"):
        args = argparse.Namespace(**{**ckpt["args"], "out": args.out})
    return finish(args, config, ckpt["step"], ckpt["log"], ckpt["elapsed"], device, ema, ema)


def train_step(run: Training, args, abar: torch.Tensor, world, device: torch.device) -> float:
    """One optimiser step on a fresh batch (the data are drawn, never stored); its loss."""
    scenes = sample_scenes(args.batch, run.generator)
    x0 = render(scenes).to(device)
    slots = sample_slots(scenes, run.generator, args.p_empty).to(device)
    t = torch.randint(0, len(abar), (args.batch,), generator=run.generator).to(device)
    noise = torch.randn(x0.shape, generator=run.generator).to(device)
    a = abar[t][:, None, None, None]
    xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
    for group in run.opt.param_groups:
        group["lr"] = learning_rate(run.step, args)
    if args.target == "exact":
        x0, noise = exact_targets(world, xt, a, slots)
    loss = torch.mean((run.model(xt, t, slots) - loss_target(args.prediction, noise, x0, a)) ** 2)
    run.opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(run.model.parameters(), 1.0)
    run.opt.step()
    decay = min(args.ema, (1 + run.step) / (10 + run.step))
    with torch.no_grad():
        for pe, pm in zip(run.ema.parameters(), run.model.parameters()):
            pe.lerp_(pm, 1 - decay)
    run.step += 1
    return loss.item()


def finish(args, config: ShapesConfig, step: int, log: list, total: float, device: torch.device,
           ema: ShapesDenoiser, described: ShapesDenoiser) -> dict:
    """Export the EMA weights with their metadata (parameters counted on `described`)."""
    meta = metadata(config, args, step, log, total, device, described)
    export(Path(args.out), ema, meta)
    plot_loss(log, Path(args.out) / "loss.png")
    print(json.dumps(meta["training"]), flush=True)
    return meta


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    run_dir = Path(args.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = run_dir / "checkpoint.pt"
    config = ShapesConfig(dim=args.dim, depth=args.depth, heads=args.heads, patch=args.patch,
                          stem=args.stem, text_tokens=args.text_tokens)
    if args.export_only:
        return export_only(args, run_dir, ckpt_path, device)
    run = start(args, config, device, ckpt_path)
    abar = alphas_cumprod(SCHEDULER_CONFIG).to(device)
    world = shapes_world().to(device) if args.target == "exact" else None
    print(f"params {count_parameters(run.model):,} config {config.to_dict()} device {device}", flush=True)
    begun = last_ckpt = time.time()
    running, count = 0.0, 0
    while run.step < args.steps:
        running, count = running + train_step(run, args, abar, world, device), count + 1
        now = time.time()
        so_far = run.elapsed + now - begun
        if args.snapshot_every and run.step % args.snapshot_every == 0:
            export(run_dir / "snapshots" / f"step_{run.step}", run.ema,
                   metadata(config, args, run.step, run.log, so_far, device, run.model))
        if run.step % args.log_every == 0 or run.step == args.steps:
            run.log.append({"step": run.step, "loss": running / count, "time": so_far})
            print(f"step {run.step} loss {running / count:.4f} lr "
                  f"{learning_rate(run.step, args):.2e} {so_far / 60:.1f} min", flush=True)
            running, count = 0.0, 0
        out_of_time = args.time_limit and (now - begun) > args.time_limit * 60
        if now - last_ckpt > args.checkpoint_every or run.step == args.steps or out_of_time:
            save_checkpoint(ckpt_path, run.model, run.ema, run.opt, run.generator, run.step,
                            run.log, so_far, config, args)
            plot_loss(run.log, run_dir / "loss.png")
            last_ckpt = now
        if out_of_time:
            print(f"time limit reached at step {run.step}", flush=True)
            break
    total = run.elapsed + time.time() - begun
    save_checkpoint(ckpt_path, run.model, run.ema, run.opt, run.generator, run.step, run.log, total,
                    config, args)
    return finish(args, config, run.step, run.log, total, device, run.ema, run.model)


if __name__ == "__main__":
    main()
