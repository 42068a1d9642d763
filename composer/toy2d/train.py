"""Train the 2D lab's score and energy models.

    python -m composer.toy2d.train --out assets/toy2d

Data: the six RRR components (composer.toy2d.data), a uniform choice of
component per point; the label is replaced by the unconditional row "" with
probability 0.1, so "" learns the marginal over all six. Loss: the denoising
loss |eps_theta(x_t, t, c) - eps|^2 with t uniform over the 100 training steps
of the cosine VP schedule (for the energy model eps_theta = grad_x E_theta, with
create_graph=True). Adam, cosine learning-rate decay, fixed seed, one thread.
Writes toy2d-{score,energy}.safetensors (config and training facts in the
file's metadata) and MODEL_CARD.md.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

from composer.samplers import alphas_cumprod
from composer.toy2d.data import CONCEPTS, sample_training_batch
from composer.toy2d.net import (SCHEDULER_CONFIG, UNCONDITIONAL, ToyNet, read_metadata,
                                weights_path)

VARIANTS = ("score", "energy")
DROP_CONDITION = 0.1
CARD_TEMPLATE = Path(__file__).with_name("model_card.md")   # filled by write_model_card


def sample_timesteps(n: int, levels: int, low_noise: float, generator: torch.Generator
                     ) -> torch.Tensor:
    """Uniform timesteps, except that a share `low_noise` is drawn from the lowest
    fifth: the ring's narrow modes are only resolved there, and uniform t
    spends most of the batch on noise levels where the components look alike."""
    t = torch.randint(levels, (n,), generator=generator)
    low = torch.randint(max(1, levels // 5), (n,), generator=generator)
    return torch.where(torch.rand(n, generator=generator) < low_noise, low, t)


def train_variant(variant: str, args: argparse.Namespace) -> dict:
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    net = ToyNet(args.width, args.blocks, SCHEDULER_CONFIG["num_train_timesteps"],
                 energy=(variant == "energy"), fourier=args.fourier)
    optimizer = torch.optim.Adam(net.parameters(), lr=args.lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda i: 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * i / args.steps)))
    abar = alphas_cumprod(SCHEDULER_CONFIG)
    window, log = [], []
    start = time.time()
    for step in range(1, args.steps + 1):
        x0, labels = sample_training_batch(args.batch, generator)
        drop = torch.rand(args.batch, generator=generator) < DROP_CONDITION
        labels = torch.where(drop, torch.full_like(labels, UNCONDITIONAL), labels)
        t = sample_timesteps(args.batch, len(abar), args.low_noise, generator)
        noise = torch.randn(args.batch, 2, generator=generator)
        a = abar[t][:, None]
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        loss = (net(xt, t, labels, create_graph=True) - noise).pow(2).sum(1).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        window.append(loss.item())
        if step % args.log_every == 0 or step == args.steps:
            mean = sum(window) / len(window)
            log.append((step, mean))
            print(f"[{variant}] step {step:6d}  loss {mean:.4f}  "
                  f"{time.time() - start:7.1f}s", flush=True)
            window = []
    wall = time.time() - start
    params = sum(p.numel() for p in net.parameters())
    meta = {"variant": variant, "config": json.dumps(net.config()),
            "scheduler_config": json.dumps(SCHEDULER_CONFIG), "concepts": json.dumps(CONCEPTS),
            "steps": str(args.steps), "batch": str(args.batch), "lr": str(args.lr),
            "seed": str(args.seed), "low_noise": str(args.low_noise), "params": str(params), "final_loss": f"{log[-1][1]:.4f}",
            "loss_log": json.dumps([(s, round(v, 4)) for s, v in log]),
            "train_seconds": f"{wall:.0f}", "torch": torch.__version__,
            "cpu": platform.processor() or platform.machine(),
            "command": "python -m composer.toy2d.train " + " ".join(sys.argv[1:])}
    path = weights_path(args.out, variant)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path), metadata=meta)
    print(f"[{variant}] wrote {path} ({params} parameters, {wall:.0f}s)", flush=True)
    return meta


def component_support(folder: str | Path, variant: str, samples: int = 2000) -> dict[str, float]:
    """Each component's own samples under DDPM (the adapter's default steps, seed 0):
    the share inside that component's support."""
    from composer.engine import generate
    from composer.models.toy2d import Toy2DModel
    from composer.recipe import Concept, Recipe, SamplerSpec
    from composer.toy2d.lab import support_fraction
    model = Toy2DModel(variant, "cpu", folder)
    shares = {}
    for concept in CONCEPTS:
        recipe = Recipe(model=f"toy2d-{variant}", concepts=(Concept(concept),), operator="product",
                        sampler=SamplerSpec("ddpm"), seed=0, num_samples=samples)
        shares[concept] = support_fraction(generate(recipe, model).x_t, concept)
    return shares


def write_model_card(folder: str | Path) -> Path:
    """MODEL_CARD.md of the weights in `folder`: composer/toy2d/model_card.md filled in from
    their metadata and each component's measured support."""
    metas = {v: read_metadata(weights_path(folder, v)) for v in VARIANTS
             if weights_path(folder, v).exists()}
    support = {v: component_support(folder, v) for v in metas}
    from composer.models.toy2d import Toy2DModel
    any_meta = next(iter(metas.values()))
    config = json.loads(any_meta["config"])
    text = CARD_TEMPLATE.read_text().format(
        drop_condition=DROP_CONDITION, width=config["width"], blocks=config["blocks"],
        fourier=config.get("fourier", 0), schedule=json.dumps(SCHEDULER_CONFIG),
        low_noise=any_meta.get("low_noise", "0"), lr=any_meta["lr"], seed=any_meta["seed"],
        torch=any_meta["torch"], kilo_params=int(any_meta["params"]) // 1000,
        steps=Toy2DModel.defaults["steps"], concepts=" | ".join(CONCEPTS),
        columns="---|" * len(CONCEPTS),
        weakest=min(share for shares in support.values() for share in shares.values()),
        rows="\n".join(
            f"| toy2d-{v} | `{weights_path('assets/toy2d', v).name}` | {m['params']} | {m['steps']} "
            f"| {m['batch']} | {m['final_loss']} | {m['train_seconds']} s |" for v, m in metas.items()),
        support_rows="\n".join(f"| toy2d-{v} | " + " | ".join(f"{shares[c]:.1%}" for c in CONCEPTS)
                               + " |" for v, shares in support.items()),
        logs="\n".join(f"- {v}: " + ", ".join(f"{s}: {l}" for s, l in json.loads(m["loss_log"]))
                       for v, m in metas.items()),
        commands="\n".join(f"- {v}: `{m['command']}`" for v, m in metas.items()))
    path = Path(folder) / "MODEL_CARD.md"
    path.write_text(text)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="assets/toy2d")
    parser.add_argument("--variants", default="score,energy")
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--blocks", type=int, default=3)
    parser.add_argument("--fourier", type=int, default=0, help="Fourier input frequencies")
    parser.add_argument("--low-noise", type=float, default=0.0,
                        help="share of timesteps drawn from the lowest fifth")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--log-every", type=int, default=500)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--card-only", action="store_true",
                        help="only (re)write MODEL_CARD.md for the weights in --out")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    for variant in [] if args.card_only else args.variants.split(","):
        if variant not in VARIANTS:
            parser.error(f"--variants: unknown {variant!r}; choose from {', '.join(VARIANTS)}")
        train_variant(variant, args)
    print(f"wrote {write_model_card(args.out)}", flush=True)


if __name__ == "__main__":
    main()
