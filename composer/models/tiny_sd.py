"""A tiny random-weight Stable Diffusion checkpoint, written to a folder, for
the tests and sd_step's quick mode; nothing downloads.

    python -m composer.models.tiny_sd FOLDER [--xl | --sd3 | --flux]

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


def tiny_sdxl_pipeline(sample_size: int = 8, seed: int = 0):
    """A tiny SDXL: the SD parts above with a second, projecting text encoder, a UNet
    that reads the concatenated embeddings (2 x HIDDEN wide) and SDXL's pooled text and
    size conditioning ("text_time"), and SDXL's Euler scheduler config."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    parts = tiny_components(sample_size=sample_size, seed=seed)
    torch.manual_seed(seed + 1)
    time_dim = 8
    unet = UNet2DConditionModel(
        sample_size=sample_size, in_channels=4, out_channels=4, block_out_channels=(16, 32),
        layers_per_block=1, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=2 * HIDDEN,
        attention_head_dim=8, norm_num_groups=8, use_linear_projection=True,
        addition_embed_type="text_time", addition_time_embed_dim=time_dim,
        projection_class_embeddings_input_dim=6 * time_dim + HIDDEN,
    )
    tokenizer = parts["tokenizer"]
    text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=HIDDEN, intermediate_size=37,
        num_attention_heads=4, num_hidden_layers=5, max_position_embeddings=MAX_LENGTH,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, layer_norm_eps=1e-5, projection_dim=HIDDEN,
    ))
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012,
                                       beta_schedule="scaled_linear", steps_offset=1,
                                       timestep_spacing="leading")
    return StableDiffusionXLPipeline(vae=parts["vae"], text_encoder=parts["text_encoder"],
                                     text_encoder_2=text_encoder_2, tokenizer=tokenizer,
                                     tokenizer_2=tiny_tokenizer(), unet=unet, scheduler=scheduler)


def shifting_vae(sample_size: int, scaling: float, shift: float):
    """The small four-level VAE of the flow models, which scale and shift their latents."""
    from diffusers import AutoencoderKL
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 8, 16, 16),
        layers_per_block=1, norm_num_groups=8, down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4, sample_size=sample_size * 8,
        scaling_factor=scaling, shift_factor=shift)


def tiny_sd3_pipeline(sample_size: int = 8, seed: int = 0, t5: bool = False):
    """A tiny SD3: a one-layer rectified-flow transformer on 4-channel latents, two
    projecting CLIP text encoders, a VAE that shifts its latents, and the flow scheduler
    with SD3's shift of 3. With `t5`, a small T5 encoder (read by a byte tokenizer) as the
    third; without, none (the pipeline then feeds zeros in its place, as it does for
    checkpoints shipped without it)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection, T5Config, T5EncoderModel

    from composer.models.sd3 import T5_TOKENS

    tokenizer = tiny_tokenizer()
    torch.manual_seed(seed)
    transformer = SD3Transformer2DModel(
        sample_size=sample_size, patch_size=1, in_channels=4, out_channels=4, num_layers=1,
        attention_head_dim=8, num_attention_heads=4, joint_attention_dim=2 * HIDDEN,
        caption_projection_dim=32, pooled_projection_dim=2 * HIDDEN, pos_embed_max_size=16)

    def clip(seed_offset: int):
        torch.manual_seed(seed + seed_offset)
        return CLIPTextModelWithProjection(CLIPTextConfig(
            vocab_size=len(tokenizer), hidden_size=HIDDEN, intermediate_size=37,
            num_attention_heads=4, num_hidden_layers=5, max_position_embeddings=MAX_LENGTH,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id, layer_norm_eps=1e-5, projection_dim=HIDDEN))
    torch.manual_seed(seed + 3)
    vae = shifting_vae(sample_size, scaling=1.5305, shift=0.0609)
    text_encoder_3 = tokenizer_3 = None
    if t5:
        tokenizer_3 = tiny_tokenizer(max_length=T5_TOKENS)
        torch.manual_seed(seed + 4)
        text_encoder_3 = T5EncoderModel(T5Config(
            vocab_size=len(tokenizer_3), d_model=2 * HIDDEN, d_ff=37, d_kv=8, num_layers=2,
            num_heads=4, relative_attention_num_buckets=8, pad_token_id=tokenizer_3.pad_token_id,
            decoder_start_token_id=0))
    return StableDiffusion3Pipeline(
        transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0), vae=vae,
        text_encoder=clip(1), tokenizer=tokenizer, text_encoder_2=clip(2),
        tokenizer_2=tiny_tokenizer(), text_encoder_3=text_encoder_3, tokenizer_3=tokenizer_3)


def tiny_flux_pipeline(sample_size: int = 8, seed: int = 0):
    """A tiny FLUX: a one-double, one-single-block transformer with guidance embedding on
    packed 4-channel latents (16 per token), a CLIP encoder for the pooled vector and a
    small T5 encoder for the tokens (read by a byte tokenizer), a VAE that scales and
    shifts its latents, and the flow scheduler with FLUX's shift by resolution."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    from composer.models.flux import T5_TOKENS

    tokenizer, tokenizer_2 = tiny_tokenizer(), tiny_tokenizer(max_length=T5_TOKENS)
    torch.manual_seed(seed)
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=HIDDEN, pooled_projection_dim=HIDDEN,
        guidance_embeds=True, axes_dims_rope=(4, 6, 6))
    torch.manual_seed(seed + 1)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=HIDDEN, intermediate_size=37, num_attention_heads=4,
        num_hidden_layers=2, max_position_embeddings=MAX_LENGTH, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id))
    torch.manual_seed(seed + 2)
    text_encoder_2 = T5EncoderModel(T5Config(
        vocab_size=len(tokenizer_2), d_model=HIDDEN, d_ff=37, d_kv=8, num_layers=2, num_heads=4,
        relative_attention_num_buckets=8, pad_token_id=tokenizer_2.pad_token_id,
        decoder_start_token_id=0))
    torch.manual_seed(seed + 3)
    vae = shifting_vae(sample_size, scaling=0.3611, shift=0.1159)
    scheduler = FlowMatchEulerDiscreteScheduler(
        shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
        base_image_seq_len=256, max_image_seq_len=4096)
    return FluxPipeline(transformer=transformer, scheduler=scheduler, vae=vae,
                        text_encoder=text_encoder, tokenizer=tokenizer,
                        text_encoder_2=text_encoder_2, tokenizer_2=tokenizer_2)


def save_tiny_flux(folder: str | os.PathLike, **kwargs) -> str:
    """Write a tiny FLUX pipeline to `folder` (diffusers layout) and return the path."""
    tiny_flux_pipeline(**kwargs).save_pretrained(str(folder))
    return str(folder)


def save_tiny_sd3(folder: str | os.PathLike, **kwargs) -> str:
    """Write a tiny SD3 pipeline to `folder` (diffusers layout) and return the path."""
    tiny_sd3_pipeline(**kwargs).save_pretrained(str(folder))
    return str(folder)


def save_tiny_sdxl(folder: str | os.PathLike, **kwargs) -> str:
    """Write a tiny SDXL pipeline to `folder` (diffusers layout) and return the path."""
    tiny_sdxl_pipeline(**kwargs).save_pretrained(str(folder))
    return str(folder)


if __name__ == "__main__":
    import sys
    builder = (save_tiny_sdxl if "--xl" in sys.argv else save_tiny_sd3 if "--sd3" in sys.argv
               else save_tiny_flux if "--flux" in sys.argv else save_tiny_sd)
    folders = [a for a in sys.argv[1:] if not a.startswith("--")]
    print(builder(folders[0] if folders else "tiny-sd"))
