"""Memory of the Stable Diffusion families: what a T4, an A10G and an A100 hold.

- Weights: the released networks' parameter counts (the denoiser built from its
  released config on the meta device; the text encoders and the VAE from their model
  cards) at 2 bytes a parameter (fp16 / bf16, the GPU default).
- Activations: the peak resident memory one forward of the denoiser adds, at the
  family's default size, with 1 and 2 rows, measured on this CPU in fp32 with the
  denoiser cut to one block per stage at the released width (inference frees a block's
  activations before the next runs, so the peak is one block's, plus the input and
  output), and halved for a 2-byte dtype. Per row = peak(2 rows) - peak(1 row).
- Rows per call = (GPU memory - weights - RESERVE) / per row; samples per call at N
  concepts = rows // (N + 1), the unconditional row included.

    python -m benchmarks.sd_memory --out benchmarks/results/sd_memory.json
    python -m benchmarks.sd_memory --family sd --size 32      # a quick check
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import torch

from benchmarks import write_report

GIB = 2 ** 30
RESERVE = 1.5 * GIB     # the CUDA context, cuBLAS workspaces and the allocator's slack
# Memory as the driver reports it (nvidia-smi's total).
GPUS = {"T4 (16 GB)": 15_360 * 2 ** 20, "A10G (24 GB)": 23_028 * 2 ** 20,
        "A100 (40 GB)": 40_960 * 2 ** 20, "A100 (80 GB)": 81_920 * 2 ** 20}
# Text encoders and VAE, from their model cards: CLIP ViT-L/14's text tower 123 M,
# OpenCLIP ViT-bigG/14's 695 M, T5 v1.1 XXL's encoder 4,762 M, the SD VAEs 84 M.
OTHER_PARAMETERS = {"sd": 123e6 + 84e6, "sdxl": 123e6 + 695e6 + 84e6,
                    "sd3": 123e6 + 695e6 + 4762e6 + 84e6, "sd3 without T5": 123e6 + 695e6 + 84e6,
                    "flux": 123e6 + 4762e6 + 84e6}
DEFAULT_LATENT = {"sd": 64, "sdxl": 128, "sd3": 128, "sd3 without T5": 128, "flux": 128}
FAMILIES = tuple(OTHER_PARAMETERS)


def denoiser(family: str, cut: bool):
    """The released denoiser of `family` (random weights), cut to one block per stage."""
    from diffusers import FluxTransformer2DModel, SD3Transformer2DModel, UNet2DConditionModel
    if family == "sd":                                      # SD 1.5
        return UNet2DConditionModel(sample_size=64, cross_attention_dim=768,
                                    layers_per_block=1 if cut else 2)
    if family == "sdxl":                                    # SDXL base
        return UNet2DConditionModel(
            sample_size=128, block_out_channels=(320, 640, 1280), layers_per_block=1 if cut else 2,
            transformer_layers_per_block=(1, 1, 1) if cut else (1, 2, 10),
            attention_head_dim=(5, 10, 20), cross_attention_dim=2048, use_linear_projection=True,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            addition_embed_type="text_time", addition_time_embed_dim=256,
            projection_class_embeddings_input_dim=2816)
    if family.startswith("sd3"):                            # SD3 medium
        return SD3Transformer2DModel(
            sample_size=128, patch_size=2, in_channels=16, num_layers=1 if cut else 24,
            attention_head_dim=64, num_attention_heads=24, joint_attention_dim=4096,
            caption_projection_dim=1536, pooled_projection_dim=2048, out_channels=16,
            pos_embed_max_size=192)
    return FluxTransformer2DModel(                         # FLUX.1-dev
        in_channels=64, num_layers=1 if cut else 19, num_single_layers=1 if cut else 38,
        attention_head_dim=128, num_attention_heads=24, joint_attention_dim=4096,
        pooled_projection_dim=768, guidance_embeds=True, axes_dims_rope=(16, 56, 56))


def inputs(family: str, rows: int, side: int) -> dict:
    """One call's inputs for `rows` rows at a `side` x `side` latent."""
    steps = torch.full((rows,), 500.0)
    if family == "sd":
        return {"sample": torch.randn(rows, 4, side, side), "timestep": steps,
                "encoder_hidden_states": torch.randn(rows, 77, 768)}
    if family == "sdxl":
        return {"sample": torch.randn(rows, 4, side, side), "timestep": steps,
                "encoder_hidden_states": torch.randn(rows, 77, 2048),
                "added_cond_kwargs": {"text_embeds": torch.randn(rows, 1280),
                                      "time_ids": torch.randn(rows, 6)}}
    if family.startswith("sd3"):
        return {"hidden_states": torch.randn(rows, 16, side, side), "timestep": steps,
                "encoder_hidden_states": torch.randn(rows, 77 + 256, 4096),
                "pooled_projections": torch.randn(rows, 2048)}
    tokens = (side // 2) ** 2
    return {"hidden_states": torch.randn(rows, tokens, 64), "timestep": steps / 1000,
            "guidance": torch.full((rows,), 3.5), "encoder_hidden_states": torch.randn(rows, 512, 4096),
            "pooled_projections": torch.randn(rows, 768), "txt_ids": torch.zeros(512, 3),
            "img_ids": torch.zeros(tokens, 3)}


def _status(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


@torch.no_grad()
def peak_of_one_call(family: str, rows: int, side: int) -> int:
    """Bytes the forward adds to the resident peak (this process: run it alone)."""
    net = denoiser(family, cut=True).eval()
    given = inputs(family, rows, side)
    net(**given, return_dict=False)                         # warm-up: kernels, workspaces
    before = _status("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:           # resets VmHWM to the current RSS
        f.write("5")
    net(**given, return_dict=False)
    return _status("VmHWM") - before


def measured(family: str, rows: int, side: int) -> int:
    """peak_of_one_call in a fresh process, so no earlier peak or cache is counted."""
    done = subprocess.run([sys.executable, "-m", "benchmarks.sd_memory", "--measure", family,
                           str(rows), str(side)], capture_output=True, text=True, check=True)
    return int(done.stdout.strip().splitlines()[-1])


def family_report(family: str, side: int) -> dict:
    with torch.device("meta"):
        parameters = sum(p.numel() for p in denoiser(family, cut=False).parameters())
    weights = 2 * (parameters + OTHER_PARAMETERS[family])
    one, two = measured(family, 1, side), measured(family, 2, side)
    per_row = max(1, two - one) // 2                         # fp32 measured, 2-byte dtype used
    base = max(0, one // 2 - per_row)
    holds = {}
    for gpu, memory in GPUS.items():
        rows = int((memory - RESERVE - weights - base) // per_row)
        holds[gpu] = {"rows_per_call": max(0, rows),
                      **{f"samples_at_{n}_concepts": max(0, rows // (n + 1)) for n in (1, 2, 4)}}
    return {"family": family, "latent_side": side, "denoiser_parameters": parameters,
            "weights_gib": round(weights / GIB, 2), "activation_per_row_gib": round(per_row / GIB, 3),
            "activation_base_gib": round(base / GIB, 3), "holds": holds}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", nargs="+", choices=FAMILIES, default=list(FAMILIES))
    parser.add_argument("--size", type=int, default=None,
                        help="latent side instead of each family's default (a quick check)")
    parser.add_argument("--measure", nargs=3, metavar=("FAMILY", "ROWS", "SIDE"),
                        help=argparse.SUPPRESS)              # one measurement, in its own process
    parser.add_argument("--out", help="also write the JSON here")
    args = parser.parse_args(argv)
    if args.measure:
        family, rows, side = args.measure
        print(peak_of_one_call(family, int(rows), int(side)))
        return {}
    load = [round(v, 2) for v in os.getloadavg()]
    report = {"benchmark": "sd_memory",
              "command": "python -m benchmarks.sd_memory " + " ".join(sys.argv[1:] if argv is None else argv),
              "load_average_at_start": load, "reserve_gib": RESERVE / GIB,
              "gpu_memory_gib": {gpu: round(m / GIB, 2) for gpu, m in GPUS.items()},
              "families": [family_report(f, args.size or DEFAULT_LATENT[f]) for f in args.family]}
    report["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    print(json.dumps(report, indent=2))
    write_report(report, args.out)
    return report


if __name__ == "__main__":
    main()
