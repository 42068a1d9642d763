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
    metas = {v: read_metadata(weights_path(folder, v)) for v in VARIANTS
             if weights_path(folder, v).exists()}
    support = {v: component_support(folder, v) for v in metas}
    support_rows = "\n".join(f"| toy2d-{v} | " + " | ".join(f"{shares[c]:.1%}" for c in CONCEPTS)
                             + " |" for v, shares in support.items())
    weakest = min(share for shares in support.values() for share in shares.values())
    from composer.models.toy2d import Toy2DModel
    steps = Toy2DModel.defaults["steps"]
    commands = "\n".join(f"- {v}: `{m['command']}`" for v, m in metas.items())
    rows = "\n".join(
        f"| toy2d-{v} | `{weights_path('assets/toy2d', v).name}` | {m['params']} | {m['steps']} "
        f"| {m['batch']} | {m['final_loss']} | {m['train_seconds']} s |" for v, m in metas.items())
    any_meta = next(iter(metas.values()))
    config = json.loads(any_meta["config"])
    logs = "\n".join(f"- {v}: " + ", ".join(f"{s}: {l}" for s, l in json.loads(m["loss_log"]))
                     for v, m in metas.items())
    text = f"""# toy2d: score and energy diffusion models for the RRR 2D setups

Two small conditional diffusion models trained by this project on the 2D
distributions of Reduce, Reuse, Recycle (Du et al. 2023). They exist so that
every sampler and operator of the composer can be scored against ground truth
(see `docs/toy2d.md`, `benchmarks/toy2d.py`).

## Data

Six components, each point drawn from a uniformly chosen one:

| concept | distribution |
|---|---|
| `ring` | 8 Gaussians on a circle of radius 0.5, std 0.03 |
| `bar` | U([-0.2, 0.2] x [-1, 1]) |
| `left_bar` | U([-0.3, -0.1] x [-1, 1]) |
| `right_bar` | U([0.1, 0.3] x [-1, 1]) |
| `big_box` | U([-0.7, 0.7]^2) |
| `small_box` | U([-0.3, 0.3]^2) |

The label is replaced by the unconditional row `""` with probability
{DROP_CONDITION}, so `""` models the marginal over all six components.
Data are drawn fresh every step from the exact samplers (no fixed data set).

## Architecture

Conditional residual MLP (`composer/toy2d/net.py`): width {config['width']},
{config['blocks']} residual blocks with SiLU, the (timestep, label)
conditioning (16 sinusoidal frequencies + a learned label embedding, through a
small MLP) added in every block; 2 outputs f(x, t, c). The input x enters with
{config.get('fourier', 0)} Fourier frequencies, [x, sin(2^k pi x), cos(2^k pi x)]: an MLP on raw
coordinates draws the ring's narrow modes (std 0.03) smeared along the circle.

- `toy2d-score`: eps(x, t, c) = f(x, t, c).
- `toy2d-energy`: E(x, t, c) = 1/2 |f(x, t, c)|^2, eps = grad_x E by autograd;
  the energy in nats is U = E / sigma_t, defined up to a constant per (t, c)
  (E >= 0 and reaches about 0 at every mode, which keeps components comparable
  for the mixture operator).

Schedule: discrete variance-preserving, diffusers config
`{json.dumps(SCHEDULER_CONFIG)}`
for training. Sampling sets `clip_sample: true` (the data lie in [-1, 1]², the
default `clip_sample_range`): at the top level ᾱ is 2·10⁻⁴, and without the clip a
composed ε (which no single model predicted) was amplified about 30× there, so the
product diverged under every sampler when all 100 levels were used.

## Training

Denoising loss |eps_theta(x_t, t, c) - eps|^2 summed over the 2 coordinates,
t uniform over the 100 steps except that a share {any_meta.get('low_noise', '0')} of each batch is
drawn from the lowest 20 (where the ring's modes are resolved); the energy model
differentiates through grad_x E (create_graph=True). The two variants train at
the same time, one CPU thread each. Adam, learning rate {any_meta['lr']} with cosine decay to
1% of it, seed {any_meta['seed']}, one CPU thread (torch {any_meta['torch']}).

| model | file | parameters | steps | batch | final loss (mean of last log window) | training wall time |
|---|---|---|---|---|---|---|
{rows}

Wall times are for one thread each on a 2-core AMD EPYC with nothing else
running (the two variants side by side).

## Each component on its own

Share of 2000 DDPM samples of each component (the adapter's {steps} steps, seed 0)
inside that component's support (for the ring: within 3 std of a mode, which
holds 98.9% of exact samples). The weakest is {weakest:.1%}; the lab's target is 97%.

| model | {' | '.join(CONCEPTS)} |
|---|{'---|' * len(CONCEPTS)}
{support_rows}

Loss logs (step: mean loss over the preceding window):

{logs}

Commands (both at once, one per core):

{commands}

## Limits

Toy models for a lab, not for any other use. They are kept small (about
{int(any_meta['params']) // 1000}k parameters) so that one HMC composition of 1000 samples runs in a few
seconds on one CPU thread (`benchmarks/toy2d.py` times it). The energies carry an
unknown constant per (t, concept); E >= 0 with E about 0 at the modes is what
makes components comparable for the mixture and the bounded negation.
Far from the data (|x| > 5, where no training point lies at any noise level) the
gradients grow several times faster than the true scores; unadjusted samplers
(ULA, U-HMC) with large steps can be thrown there and diverge, which is why their
default steps are small (`composer/models/toy2d.py`).
"""
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
