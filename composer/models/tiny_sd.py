"""A tiny random-weight Stable Diffusion checkpoint, written to a folder, for
the tests and sd_step's quick mode; nothing downloads.

    python -m composer.models.tiny_sd FOLDER

The components follow the small configs diffusers uses in its own pipeline
tests: a two-level UNet with cross-attention, a small four-level VAE (so the
latent is 1/8 of the image, as in SD 1.x), a five-layer CLIP text encoder, and
a byte-level CLIP tokenizer built in memory (no merges, so every character is
one token). `save_tiny_sd(folder)` writes a real diffusers folder that the
adapter loads with `from_pretrained(folder, local_files_only=True)`.
"""
from __future__ import annotations

import os

import torch

HIDDEN = 32          # text-encoder width = UNet cross-attention width
MAX_LENGTH = 77      # tokenizer model_max_length, as in SD 1.x/2.x


def tiny_tokenizer(max_length: int = MAX_LENGTH):
    """A byte-level CLIP tokenizer: 256 byte symbols, 256 end-of-word
    symbols and the two special tokens; no merges."""
    from transformers import CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    symbols = list(bytes_to_unicode().values())
    vocab = {s: i for i, s in enumerate(symbols)}
    vocab.update({s + "</w>": len(symbols) + i for i, s in enumerate(symbols)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=max_length)


def tiny_components(prediction_type: str = "epsilon", sample_size: int = 8,
                    block_out_channels: tuple[int, ...] = (16, 32), layers_per_block: int = 1,
                    seed: int = 0) -> dict:
    """UNet, VAE, text encoder, tokenizer and scheduler with random weights."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = tiny_tokenizer()
    torch.manual_seed(seed)
    levels = len(block_out_channels)
    unet = UNet2DConditionModel(
        sample_size=sample_size, in_channels=4, out_channels=4,
        block_out_channels=block_out_channels, layers_per_block=layers_per_block,
        down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (levels - 1),
        up_block_types=("CrossAttnUpBlock2D",) * (levels - 1) + ("UpBlock2D",),
        cross_attention_dim=HIDDEN, attention_head_dim=8, norm_num_groups=8,
    )
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4,
        block_out_channels=(8, 8, 16, 16), layers_per_block=1, norm_num_groups=8,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        sample_size=sample_size * 8,
    )
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=HIDDEN, intermediate_size=37,
        num_attention_heads=4, num_hidden_layers=5, max_position_embeddings=MAX_LENGTH,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, layer_norm_eps=1e-5,
    ))
    # SD 1.x's schedule (scaled_linear 0.00085..0.012), stored as DDIM.
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1,
                              prediction_type=prediction_type)
    return {"unet": unet, "vae": vae, "text_encoder": text_encoder, "tokenizer": tokenizer,
            "scheduler": scheduler}


def tiny_pipeline(**kwargs):
    from diffusers import StableDiffusionPipeline
    return StableDiffusionPipeline(**tiny_components(**kwargs), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)


def save_tiny_sd(folder: str | os.PathLike, **kwargs) -> str:
    """Write a tiny SD pipeline to `folder` (diffusers layout) and return the path."""
    tiny_pipeline(**kwargs).save_pretrained(str(folder))
    return str(folder)


if __name__ == "__main__":
    import sys
    print(save_tiny_sd(sys.argv[1] if len(sys.argv) > 1 else "tiny-sd"))
