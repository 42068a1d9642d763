"""SDXL behind the engine's model contract: the SD adapter with SDXL's conditioning.

What SDXL's UNet reads, built as diffusers' StableDiffusionXLPipeline builds it:
- the prompt embedding: both text encoders' penultimate hidden states, concatenated
  along the width (CLIP ViT-L and OpenCLIP ViT-bigG on the real checkpoints);
- the pooled embedding: the second encoder's projected output ("text_embeds");
- the micro-conditioning "time_ids": original size, crop corner and target size, here
  the sample's own size and no crop;
- the empty prompt as zeros, embedding and pooled, where the checkpoint says so
  (`force_zeros_for_empty_prompt`, true for SDXL base): the unconditional row the
  model was trained with.

Everything else (batched rows, the chunking under memory, v-prediction, the VAE
decode, the latent preview) is the SD adapter's, so every operator, sampler, verdict,
map and sweep runs on SDXL as on SD 1.x.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from composer.models.sd import SDAdapter


@dataclass(frozen=True)
class SDXLCondition:
    """The rows' prompt embeddings [rows, tokens, width] and pooled ones [rows, width_2]."""
    texts: tuple[str, ...]
    embeddings: torch.Tensor
    pooled: torch.Tensor


def clip_states(adapter, texts: list[str]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Both CLIP encoders' penultimate hidden states and pooled outputs for the texts,
    one call each (SDXL and SD3 read the same two)."""
    states, pooled = [], []
    for tokenizer, encoder in ((adapter.tokenizer, adapter.text_encoder),
                               (adapter.tokenizer_2, adapter.text_encoder_2)):
        ids = tokenizer(texts, padding="max_length", truncation=True,
                        max_length=tokenizer.model_max_length,
                        return_tensors="pt").input_ids.to(adapter.device)
        out = encoder(ids, output_hidden_states=True)
        states.append(out.hidden_states[-2])
        pooled.append(out[0])
    return states, pooled


class SDXLAdapter(SDAdapter):
    max_samples = 4

    def __init__(self, pipe, name: str, device: torch.device, dtype: torch.dtype, **kwargs):
        super().__init__(pipe, name, device, dtype, **kwargs)
        self.tokenizer_2 = pipe.tokenizer_2
        self.text_encoder_2 = pipe.text_encoder_2
        self.zeros_for_empty = bool(pipe.config.get("force_zeros_for_empty_prompt", True))
        scale = 2 ** (len(self.vae.config.block_out_channels) - 1)
        height, width = (side * scale for side in self.sample_shape[1:])
        # (original size, crop top-left, target size), as the pipeline's defaults
        self.time_ids = torch.tensor([height, width, 0, 0, height, width], device=self.device,
                                     dtype=self.net_dtype)
        self.defaults = {**self.defaults, "scale": 5.0}

    def _embed(self, texts: list[str]) -> dict:
        """text -> (embedding, pooled), both encoders in one call each."""
        with torch.no_grad():
            hidden, pooled = clip_states(self, texts)
        pooled = pooled[-1]                              # the second encoder's projection
        self.text_encoder_calls += 1
        embeddings = torch.cat(hidden, dim=-1).to(self.net_dtype)
        pooled = pooled.to(self.net_dtype)
        if self.zeros_for_empty:
            empty = torch.tensor([t == "" for t in texts], device=self.device)
            embeddings = torch.where(empty[:, None, None], 0.0, embeddings).to(self.net_dtype)
            pooled = torch.where(empty[:, None], 0.0, pooled).to(self.net_dtype)
        return {t: (e, p) for t, e, p in zip(texts, embeddings, pooled)}

    def _condition(self, texts: tuple[str, ...], embedded: list) -> SDXLCondition:
        return SDXLCondition(texts, torch.stack([e for e, _ in embedded]),
                             torch.stack([p for _, p in embedded]))

    def _row_inputs(self, cond: SDXLCondition) -> dict[str, torch.Tensor]:
        rows = len(cond.texts)
        return {"encoder_hidden_states": cond.embeddings, "text_embeds": cond.pooled,
                "time_ids": self.time_ids.expand(rows, -1)}

    def _unet_kwargs(self, inputs: dict[str, torch.Tensor]) -> dict:
        return {"encoder_hidden_states": inputs["encoder_hidden_states"],
                "added_cond_kwargs": {"text_embeds": inputs["text_embeds"],
                                      "time_ids": inputs["time_ids"]}}
