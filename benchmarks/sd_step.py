"""Per-step cost of composing N concepts, on every Stable Diffusion family.

For each family (SD 1.x, SDXL, SD3, FLUX) and N = 1, 2, 4, 8 concepts ("and", so N + 1
rows with the unconditional one):
  (a) engine:     composer.engine.composed_density(...)(x), the engine's composed
                  evaluation (adapter.predict: one batched network call, then compose);
  (b) batched:    the same network call the engine makes, raw: N + 1 rows at once (the
                  floor for (a));
  (c) sequential: N + 1 calls of one row each, as the official Composable Diffusion
                  code does.
(b) and (c) replay the arguments the adapter's own network call received (recorded
once), so each family is timed on exactly what it runs: SDXL's size conditioning,
SD3's joint text, FLUX's packed tokens and positions. Prints JSON (with the ratios
(a)/(b) and (c)/(a)) and a table. Weights are random: only speed is measured.

    python -m benchmarks.sd_step                       # every family, small, CPU, fp32
    python -m benchmarks.sd_step --family sdxl sd3     # some of them
    python -m benchmarks.sd_step --full                # real-size networks, fp16 on CUDA
    python -m benchmarks.sd_step --out benchmarks/results/sd_step_cpu.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from types import SimpleNamespace

import torch

from benchmarks import write_report

from composer.engine import Control, composed_density
from composer.models.base import ModelAdapter
from composer.operators import make_rule
from composer.recipe import Concept

FAMILIES = ("sd", "sdxl", "sd3", "flux")
# Small networks whose CPU timings are dominated by compute, not Python overhead.
SMALL_UNET = dict(sample_size=16, block_out_channels=(32, 64, 64), layers_per_block=1,
                  down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                  up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                  cross_attention_dim=64, attention_head_dim=8, norm_num_groups=16)
# The real networks' configs (published in each checkpoint's config.json), random weights;
# the text side keeps the small encoders, so cross-attention reads a narrower context.
FULL = {
    "sd": dict(sample_size=64, block_out_channels=(320, 640, 1280, 1280), layers_per_block=2,
               cross_attention_dim=768, attention_head_dim=8),               # SD 1.5
    "sdxl": dict(sample_size=128, block_out_channels=(320, 640, 1280), layers_per_block=2,
                 transformer_layers_per_block=(1, 2, 10), attention_head_dim=(5, 10, 20),
                 down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                 up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                 norm_num_groups=32),                                        # SDXL base
    "sd3": dict(sample_size=128, patch_size=2, num_layers=24, attention_head_dim=64,
                num_attention_heads=24, caption_projection_dim=1536,
                pos_embed_max_size=192, in_channels=16, out_channels=16),                                      # SD3 medium
    "flux": dict(num_layers=19, num_single_layers=38, attention_head_dim=128,
                 num_attention_heads=24, axes_dims_rope=(16, 56, 56), in_channels=64),       # FLUX.1-dev
}
FULL_LATENT = {"flux": 128}    # FLUX at 1024 x 1024 (its VAE's sample size sets the latent)
SMALL_LATENT = 16


def sd_adapter(config: dict, device: torch.device, dtype: torch.dtype) -> ModelAdapter:
    """An SDAdapter around a random-weight UNet of `config`, with a one-layer
    random CLIP text encoder of the matching width (text encoding is not timed)."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel
    from composer.models.sd import SDAdapter
    from composer.models.tiny_sd import tiny_tokenizer

    torch.manual_seed(0)
    tokenizer = tiny_tokenizer()
    width = config["cross_attention_dim"]
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=width, intermediate_size=2 * width,
        num_attention_heads=max(1, width // 64), num_hidden_layers=1, max_position_embeddings=77,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id))
    unet = UNet2DConditionModel(in_channels=4, out_channels=4, **config)
    vae = AutoencoderKL(block_out_channels=(8,), norm_num_groups=8, latent_channels=4)
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    pipe = SimpleNamespace(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, unet=unet,
                           scheduler=scheduler)
    return SDAdapter(_placed(pipe, device, dtype), "random-unet", device, dtype, max_batch=None)


def family_adapter(family: str, full: bool, latent: int | None, device: torch.device,
                   dtype: torch.dtype) -> ModelAdapter:
    """A random-weight adapter of `family`: the tiny test pipeline at a 16 x 16 latent
    (SD 1.x: a wider small UNet), or with its denoiser replaced by the real-size network."""
    if family == "sd":
        config = dict(FULL["sd"] if full else SMALL_UNET)
        config["sample_size"] = latent or config["sample_size"]
        return sd_adapter(config, device, dtype)
    from composer.models import tiny_sd
    from composer.models.flux import FluxAdapter
    from composer.models.sd3 import SD3Adapter
    from composer.models.sdxl import SDXLAdapter

    side = latent or (FULL_LATENT.get(family, 128) if full else SMALL_LATENT)
    build, adapter = {"sdxl": (tiny_sd.tiny_sdxl_pipeline, SDXLAdapter),
                      "sd3": (tiny_sd.tiny_sd3_pipeline, SD3Adapter),
                      "flux": (tiny_sd.tiny_flux_pipeline, FluxAdapter)}[family]
    pipe = build(sample_size=min(side, 16) if family == "sd3" else side)
    if full:
        _replace_denoiser(pipe, family, side)
    return adapter(_placed(pipe, device, dtype), f"random-{family}", device, dtype, max_batch=None)


def _replace_denoiser(pipe, family: str, side: int) -> None:
    """The pipeline's UNet or transformer, rebuilt from the real config (random weights),
    reading the tiny encoders' widths."""
    net = pipe.unet if family == "sdxl" else pipe.transformer
    config = {k: v for k, v in dict(net.config).items() if not k.startswith("_")}
    config.update(FULL[family])
    if "sample_size" in config:
        config["sample_size"] = side
    torch.manual_seed(0)
    replacement = type(net)(**config)
    setattr(pipe, "unet" if family == "sdxl" else "transformer", replacement)


def _placed(pipe, device: torch.device, dtype: torch.dtype):
    """The pipeline's networks on `device` in `dtype`, for inference."""
    for name in ("unet", "transformer", "vae", "text_encoder", "text_encoder_2"):
        module = getattr(pipe, name, None)
        if module is not None:
            module.to(device, dtype).eval().requires_grad_(False)
    return pipe


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def timed(fn, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def recorded_call(model: ModelAdapter, density, x: torch.Tensor) -> tuple:
    """The arguments of the adapter's one network call while the engine evaluates `x`."""
    calls = []
    forward = model._forward

    def recording(*args):
        calls.append(args)
        return forward(*args)
    model._forward = recording
    try:
        density(x)
    finally:
        del model._forward                 # the class's method again
    assert len(calls) == 1, f"expected one batched call, saw {len(calls)}"
    return calls[0]


@torch.no_grad()
def measure(model: ModelAdapter, concepts: int, repeats: int, samples: int) -> dict:
    texts = tuple(f"concept number {i}" for i in range(concepts))
    rule = make_rule(tuple(Concept(t) for t in texts), "and", 7.5)
    cond = model.encode(rule.texts)
    rows = len(rule.texts)
    t, abar = torch.tensor(500, device=model.device), 0.28
    x = torch.randn(samples, *model.sample_shape, device=model.device)
    density = composed_density(model, rule, cond, t, abar, with_energy=False, control=Control())
    latents, timestep, inputs = recorded_call(model, density, x)

    def engine():
        density(x)

    def batched():
        model._forward(latents, timestep, inputs)

    def sequential():
        for r in range(rows):
            part = slice(r * samples, (r + 1) * samples)
            model._forward(latents[part], timestep[part], {k: v[part] for k, v in inputs.items()})

    methods = {"engine": engine, "batched": batched, "sequential": sequential}
    for fn in methods.values():            # warm-up (allocator, oneDNN/cuDNN plans)
        fn()
    times = {name: [] for name in methods}
    for _ in range(repeats):               # interleaved, so drifts in machine load hit all three
        for name, fn in methods.items():
            times[name].append(timed(fn, model.device))
    ms = {name: 1000 * statistics.median(v) for name, v in times.items()}
    return {"concepts": concepts, "rows": rows, "samples": samples,
            "engine_ms": round(ms["engine"], 3), "batched_ms": round(ms["batched"], 3),
            "sequential_ms": round(ms["sequential"], 3),
            "engine_over_batched": round(ms["engine"] / ms["batched"], 3),
            "sequential_over_engine": round(ms["sequential"] / ms["engine"], 3)}


def family_report(family: str, args, device: torch.device, dtype: torch.dtype) -> dict:
    model = family_adapter(family, args.full, args.latent, device, dtype)
    network = model.unet if family in ("sd", "sdxl") else model.transformer
    return {"family": family, "network": type(network).__name__,
            "size": "full (the released config)" if args.full else "small",
            "parameters": sum(p.numel() for p in network.parameters()),
            "latent_shape": list(model.sample_shape),
            "results": [measure(model, n, args.repeats, args.samples) for n in args.concepts]}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", nargs="+", choices=FAMILIES, default=list(FAMILIES))
    parser.add_argument("--full", action="store_true",
                        help="the released networks' sizes (random weights), fp16 on CUDA")
    parser.add_argument("--concepts", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--samples", type=int, default=1, help="images per step")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads (default: torch's default)")
    parser.add_argument("--latent", type=int, default=None,
                        help="override the latent side, e.g. 8 for a quick check")
    parser.add_argument("--out", help="also write the JSON here")
    args = parser.parse_args(argv)

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = torch.float16 if (args.full and device.type == "cuda") else torch.float32
    load = [round(v, 2) for v in os.getloadavg()]
    families = [family_report(family, args, device, dtype) for family in args.family]
    report = {
        "benchmark": "sd_step",
        "command": "python -m benchmarks.sd_step " + " ".join(sys.argv[1:] if argv is None else argv),
        "device": (torch.cuda.get_device_name(device) if device.type == "cuda"
                   else f"cpu: {cpu_name()}, {os.cpu_count()} cores"),
        "load_average_at_start": load,
        "load_average_at_end": [round(v, 2) for v in os.getloadavg()],
        "dtype": str(dtype).replace("torch.", ""),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "repeats": args.repeats,
        "statistic": "median wall-clock ms per composed evaluation (one sampler step)",
        "targets": {"engine_over_batched_max": 1.10, "sequential_over_engine_min_at_4": 2.0},
        "families": families,
    }
    print(json.dumps(report, indent=2))
    print()
    print(f"{'family':>6} {'N':>3} {'rows':>4} {'(a) engine ms':>14} {'(b) batched ms':>15} "
          f"{'(c) sequential ms':>18} {'(a)/(b)':>8} {'(c)/(a)':>8}")
    for family in families:
        for r in family["results"]:
            print(f"{family['family']:>6} {r['concepts']:>3} {r['rows']:>4} {r['engine_ms']:>14.1f} "
                  f"{r['batched_ms']:>15.1f} {r['sequential_ms']:>18.1f} "
                  f"{r['engine_over_batched']:>8.3f} {r['sequential_over_engine']:>8.3f}")
    write_report(report, args.out)
    return report


if __name__ == "__main__":
    main()
