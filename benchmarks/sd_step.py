"""Per-step cost of composing N concepts on a Stable Diffusion UNet.

For N = 1, 2, 4, 8 concepts ("and", so N + 1 rows with the unconditional one):
  (a) engine:     composer.engine.composed_density(...)(x), the engine's composed
                  evaluation (adapter.predict: one batched UNet call, then compose);
  (b) batched:    one raw UNet forward of N + 1 rows (the floor for (a));
  (c) sequential: N + 1 UNet calls of one row each, as the official Composable
                  Diffusion code does.
Prints JSON (with the ratios (a)/(b) and (c)/(a)) and a table. Weights are random:
only speed is measured.

    python -m benchmarks.sd_step                  # small UNet, CPU, fp32
    python -m benchmarks.sd_step --full           # SD 1.5-sized UNet, fp16 on CUDA
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

from composer.engine import composed_density
from composer.models.sd import SDAdapter
from composer.operators import make_rule
from composer.recipe import Concept

# A small UNet whose CPU timings are dominated by compute, not Python overhead.
SMALL = dict(sample_size=16, block_out_channels=(32, 64, 64), layers_per_block=1,
             down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
             up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
             cross_attention_dim=64, attention_head_dim=8, norm_num_groups=16)
# Stable Diffusion 1.5's UNet (diffusers' defaults plus SD 1.5's text width).
FULL = dict(sample_size=64, block_out_channels=(320, 640, 1280, 1280), layers_per_block=2,
            cross_attention_dim=768, attention_head_dim=8)


def build_adapter(config: dict, device: torch.device, dtype: torch.dtype) -> SDAdapter:
    """An SDAdapter around a random-weight UNet of `config`, with a one-layer
    random CLIP text encoder of the matching width (text encoding is not timed)."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel
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
    from diffusers.models.attention_processor import AttnProcessor2_0
    unet.set_attn_processor(AttnProcessor2_0())
    for module in (unet, vae, text_encoder):
        module.to(device, dtype).eval().requires_grad_(False)
    pipe = SimpleNamespace(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, unet=unet,
                           scheduler=scheduler)
    return SDAdapter(pipe, "random-unet", device, dtype, max_batch=None)


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


@torch.no_grad()
def measure(model: SDAdapter, concepts: int, repeats: int, samples: int) -> dict:
    texts = tuple(f"concept number {i}" for i in range(concepts))
    rule = make_rule(tuple(Concept(t) for t in texts), "and", 7.5)
    cond = model.encode(rule.texts)
    rows = len(rule.texts)
    t, abar = torch.tensor(500, device=model.device), 0.28
    x = torch.randn(samples, *model.sample_shape, device=model.device)
    density = composed_density(model, rule, cond, t, abar, with_energy=False)
    unet = model._unet_forward
    latents = x.to(model.net_dtype).repeat(rows, 1, 1, 1)
    context = cond.embeddings.repeat_interleave(samples, dim=0)
    steps = t.expand(rows * samples)

    def engine():
        density(x)

    def batched():
        unet(latents, steps, encoder_hidden_states=context, return_dict=False)

    def sequential():
        for r in range(rows):
            unet(latents[r * samples:(r + 1) * samples], steps[:samples],
                 encoder_hidden_states=context[r * samples:(r + 1) * samples], return_dict=False)

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


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true",
                        help="SD 1.5-sized UNet (860M parameters), fp16 on CUDA")
    parser.add_argument("--concepts", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--samples", type=int, default=1, help="images per step")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads (default: torch's default)")
    parser.add_argument("--latent", type=int, default=None,
                        help="override the latent size (sample_size), e.g. 8 for a quick check")
    parser.add_argument("--out", help="also write the JSON here")
    args = parser.parse_args(argv)

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = torch.float16 if (args.full and device.type == "cuda") else torch.float32
    config = dict(FULL if args.full else SMALL)
    if args.latent:
        config["sample_size"] = args.latent
    model = build_adapter(config, device, dtype)
    params = sum(p.numel() for p in model.unet.parameters())
    results = [measure(model, n, args.repeats, args.samples) for n in args.concepts]
    report = {
        "benchmark": "sd_step",
        "unet": "full (SD 1.5 config)" if args.full else "small",
        "command": "python -m benchmarks.sd_step " + " ".join(sys.argv[1:] if argv is None else argv),
        "unet_config": {k: list(v) if isinstance(v, tuple) else v for k, v in config.items()},
        "unet_parameters": params,
        "latent_shape": list(model.sample_shape),
        "device": (torch.cuda.get_device_name(device) if device.type == "cuda"
                   else f"cpu: {cpu_name()}, {os.cpu_count()} cores"),
        "load_average_at_start": [round(v, 2) for v in os.getloadavg()],
        "dtype": str(dtype).replace("torch.", ""),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "repeats": args.repeats,
        "statistic": "median wall-clock ms per composed evaluation (one sampler step)",
        "targets": {"engine_over_batched_max": 1.10, "sequential_over_engine_min_at_4": 1.3},
        "results": results,
    }
    if device.type != "cuda":
        report["note"] = ("CPU run. The --full GPU benchmark (SD 1.5 UNet, fp16) has not "
                          "been run: no GPU was available in this session.")
    print(json.dumps(report, indent=2))
    print()
    print(f"{'N':>3} {'rows':>4} {'(a) engine ms':>14} {'(b) batched ms':>15} "
          f"{'(c) sequential ms':>18} {'(a)/(b)':>8} {'(c)/(a)':>8}")
    for r in results:
        print(f"{r['concepts']:>3} {r['rows']:>4} {r['engine_ms']:>14.1f} {r['batched_ms']:>15.1f} "
              f"{r['sequential_ms']:>18.1f} {r['engine_over_batched']:>8.3f} "
              f"{r['sequential_over_engine']:>8.3f}")
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(report, f, indent=2)
            f.write("\n")
    return report


if __name__ == "__main__":
    main()
