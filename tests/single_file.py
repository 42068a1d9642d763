"""A diffusers SD 1.x pipeline written back as one single-file checkpoint, in the original
(LDM / CompVis) layout that A1111 and ComfyUI keep: the test's way to a real file for
`from_single_file`, since nothing downloads here.

diffusers converts that layout to its own (`diffusers.loaders.single_file_utils`); this is
the inverse, for the block structure of SD 1.x's UNet and VAE and for any CLIP text
encoder. `tests/test_single_file.py` checks it by running diffusers' own conversion on
the result and getting every original tensor back under its own name.
"""
from __future__ import annotations

import re

import torch
from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING

UNET, VAE, CLIP = "model.diffusion_model.", "first_stage_model.", "cond_stage_model.transformer."
UNET_RESNET = (("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("time_emb_proj", "emb_layers.1"),
               ("norm2", "out_layers.0"), ("conv2", "out_layers.3"), ("conv_shortcut", "skip_connection"))
VAE_ATTENTION = (("group_norm", "norm"), ("to_q", "q"), ("to_k", "k"), ("to_v", "v"),
                 ("to_out.0", "proj_out"))


def ldm_checkpoint(pipe) -> dict[str, torch.Tensor]:
    """Every weight of a StableDiffusionPipeline, named as in the original checkpoints."""
    out = {UNET + k: v for k, v in _unet(pipe.unet.state_dict(), pipe.unet.config).items()}
    out.update({VAE + k: v for k, v in _vae(pipe.vae.state_dict()).items()})
    # The original names CLIP's weights text_model.*, as transformers did before 5.6
    out.update({CLIP + (k if k.startswith("text_model.") else "text_model." + k): v
                for k, v in pipe.text_encoder.state_dict().items()})
    return {k: v.detach().clone().contiguous() for k, v in out.items()}


def _renamed(key: str, pairs) -> str:
    for new, old in pairs:
        key = key.replace(f".{new}.", f".{old}.")
    return key


def _unet(state: dict, config) -> dict:
    fixed = {d: ldm for d, ldm in DIFFUSERS_TO_LDM_MAPPING["unet"]["layers"].items()}
    per_level = config.layers_per_block + 1          # resnets (+ attentions) and a down/upsampler
    out = {}
    for key, value in state.items():
        if key in fixed:
            out[fixed[key]] = value
            continue
        if m := re.match(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", key):
            level, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
            name = f"input_blocks.{level * per_level + j + 1}.{0 if kind == 'resnets' else 1}.{rest}"
        elif m := re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", key):
            name = f"input_blocks.{(int(m[1]) + 1) * per_level}.0.op.{m[2]}"
        elif m := re.match(r"mid_block\.(resnets|attentions)\.(\d+)\.(.*)", key):
            index = 1 if m[1] == "attentions" else 2 * int(m[2])
            name = f"middle_block.{index}.{m[3]}"
        elif m := re.match(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", key):
            level, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
            name = f"output_blocks.{level * per_level + j}.{0 if kind == 'resnets' else 1}.{rest}"
        elif m := re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", key):
            level = int(m[1])
            attended = any(k.startswith(f"up_blocks.{level}.attentions.") for k in state)
            name = f"output_blocks.{level * per_level + per_level - 1}.{2 if attended else 1}.conv.{m[2]}"
        else:
            raise KeyError(f"no original name for the UNet's {key!r}")
        out[_renamed("." + name, UNET_RESNET)[1:] if ".resnets." in key else name] = value
    return out


def _vae(state: dict) -> dict:
    fixed = {d: ldm for d, ldm in DIFFUSERS_TO_LDM_MAPPING["vae"].items()}
    levels = 1 + max(int(m[1]) for k in state if (m := re.match(r"decoder\.up_blocks\.(\d+)", k)))
    out = {}
    for key, value in state.items():
        if key in fixed:
            out[fixed[key]] = value
            continue
        name = key.replace("conv_shortcut", "nin_shortcut")
        if m := re.match(r"encoder\.down_blocks\.(\d+)\.resnets\.(.*)", name):
            name = f"encoder.down.{m[1]}.block.{m[2]}"
        elif m := re.match(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.(.*)", name):
            name = f"encoder.down.{m[1]}.downsample.{m[2]}"
        elif m := re.match(r"decoder\.up_blocks\.(\d+)\.resnets\.(.*)", name):
            name = f"decoder.up.{levels - 1 - int(m[1])}.block.{m[2]}"
        elif m := re.match(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.(.*)", name):
            name = f"decoder.up.{levels - 1 - int(m[1])}.upsample.{m[2]}"
        elif m := re.match(r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.*)", name):
            name = f"{m[1]}.mid.block_{int(m[2]) + 1}.{m[3]}"
        elif m := re.match(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.*)", name):
            name = _renamed(f"{m[1]}.mid.attn_1.{m[2]}", VAE_ATTENTION)
            if value.dim() == 2:                      # the original's 1 x 1 convolutions
                value = value[:, :, None, None]
        else:
            raise KeyError(f"no original name for the VAE's {key!r}")
        out[name] = value
    return out
