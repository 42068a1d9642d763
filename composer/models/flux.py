"""FLUX.1 (dev, schnell) behind the engine's model contract.

FLUX is a rectified-flow transformer like SD3 (composer/models/sd3.py): the adapter
declares its schedule as a variance-preserving one and turns its velocity into eps, so
every operator and sampler runs on it unchanged. What differs, as diffusers'
FluxPipeline does it:

- the latents go in packed, each 2 x 2 patch of C channels as one token of 4C, with
  each token's (0, row, column) position (`img_ids`) beside the text's zeros (`txt_ids`);
- each row is conditioned on T5's token states and CLIP's pooled vector;
- the timestep is the flow level s itself (the pipeline's t / 1000);
- its shift follows the resolution (`use_dynamic_shifting`): mu grows linearly with
  the number of image tokens and the sigmas are shifted by e^mu, which at one fixed
  size is SD3's fixed shift with shift = e^mu;
- guidance-distilled checkpoints (dev) take the guidance strength as an input
  (FLUX_GUIDANCE, the pipeline's default). There is no unconditional branch to
  distil away: the empty prompt is encoded like any other, so the "and" operator's
  eps_u + sum w_i (eps_i - eps_u) is the pipeline's own "true CFG" with "" as the
  negative prompt, and scale 1 leaves a single prompt's prediction as it is.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from diffusers import FlowMatchEulerDiscreteScheduler
from diffusers.pipelines.flux.pipeline_flux import calculate_shift

from composer.knobs import family_defaults
from composer.models.base import ModelError
from composer.models.sd3 import SD3Adapter, vp_scheduler_config
from composer.models.sdxl import SDXLCondition

FLUX_GUIDANCE = 3.5    # FluxPipeline's guidance_scale, an input of guidance-distilled models
T5_TOKENS = 512        # FluxPipeline's max_sequence_length


def shift_mu(tokens: int, config: dict) -> float:
    """mu for an image of `tokens` packed tokens: linear in them between the scheduler's
    base and max shifts at its base and max sequence lengths (diffusers' calculate_shift,
    as FluxPipeline calls it)."""
    return calculate_shift(tokens, config.get("base_image_seq_len", 256),
                           config.get("max_image_seq_len", 4096), config.get("base_shift", 0.5),
                           config.get("max_shift", 1.15))


def dynamic_shift(tokens: int, config: dict) -> float:
    """e^mu: the fixed shift that the resolution's mu amounts to."""
    return math.exp(shift_mu(tokens, config))


def pack(latents: torch.Tensor) -> torch.Tensor:
    """[N, C, h, w] -> [N, h/2 * w/2, 4C]: each 2 x 2 patch one token."""
    n, c, h, w = latents.shape
    return latents.view(n, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(
        n, (h // 2) * (w // 2), c * 4)


def unpack(tokens: torch.Tensor, h: int, w: int) -> torch.Tensor:
    n, _, width = tokens.shape
    return tokens.view(n, h // 2, w // 2, width // 4, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(
        n, width // 4, h, w)


class FluxAdapter(SD3Adapter):
    max_samples = 4

    def __init__(self, pipe, name: str, device: torch.device, dtype: torch.dtype,
                 max_batch: int | None = None, compile_unet: bool = False,
                 channels_last: bool | None = None):  # noqa: ARG002 - a UNet's option
        self._take_parts(pipe, name, device, dtype)
        # The checkpoint's own size: its VAE's image size over the VAE's downsampling,
        # even (the latents are packed in 2 x 2 patches).
        side = self.vae.config.sample_size // 2 ** (len(self.vae.config.block_out_channels) - 1)
        side -= side % 2
        if side < 2:
            raise ModelError(f"model: {name!r} has a VAE too small for FLUX's 2 x 2 patches")
        self.sample_shape = (self.transformer.config.in_channels // 4, side, side)
        flow = dict(pipe.scheduler.config)
        levels = int(flow.get("num_train_timesteps", 1000))
        shift = (dynamic_shift((side // 2) ** 2, flow) if flow.get("use_dynamic_shifting")
                 else float(flow.get("shift", 1.0)))
        self.scheduler_config = vp_scheduler_config(levels, shift)
        self.flow_scheduler_config = flow
        self.prediction_type = "flow"
        self.defaults = {"scale": 1.0, "steps": 28, **family_defaults("sd")}
        rows, columns = torch.meshgrid(torch.arange(side // 2), torch.arange(side // 2), indexing="ij")
        self._image_ids = torch.stack([torch.zeros_like(rows), rows, columns], -1).reshape(-1, 3).to(
            self.device, dtype)
        self._text_ids = torch.zeros(T5_TOKENS, 3, device=self.device, dtype=dtype)
        self._counted_and_cached(max_batch)

    def concept_warnings(self, text: str) -> list[str]:
        """Say when a prompt is longer than T5 reads (CLIP's pooled vector reads less)."""
        ids = self.tokenizer_2(text, truncation=False, verbose=False).input_ids
        if len(ids) <= T5_TOKENS:
            return []
        return [f"prompt is {len(ids)} tokens but T5 reads at most {T5_TOKENS}; the rest "
                f"will be dropped"]

    def _embed(self, texts: list[str]) -> dict:
        """text -> (T5's token states [T5_TOKENS, width], CLIP's pooled vector)."""
        with torch.no_grad():
            clip = self.tokenizer(texts, padding="max_length", truncation=True,
                                  max_length=self.tokenizer.model_max_length, return_tensors="pt")
            pooled = self.text_encoder(clip.input_ids.to(self.device)).pooler_output
            t5 = self.tokenizer_2(texts, padding="max_length", truncation=True,
                                  max_length=T5_TOKENS, return_tensors="pt")
            states = self.text_encoder_2(t5.input_ids.to(self.device))[0]
        self.text_encoder_calls += 1
        return {t: (s.to(self.net_dtype), p.to(self.net_dtype))
                for t, s, p in zip(texts, states, pooled)}

    def flow_scheduler(self, steps: int):
        """The pipeline's own FlowMatchEulerDiscreteScheduler, with the sigmas and the
        resolution's shift (mu) that FluxPipeline gives it for `steps`."""
        scheduler = FlowMatchEulerDiscreteScheduler.from_config(self.flow_scheduler_config)
        mu = shift_mu((self.sample_shape[1] // 2) ** 2, self.flow_scheduler_config)
        scheduler.set_timesteps(sigmas=np.linspace(1.0, 1 / steps, steps), mu=mu, device=self.device)
        return scheduler

    @torch.no_grad()
    def velocity(self, x: torch.Tensor, t: torch.Tensor, cond: SDXLCondition) -> torch.Tensor:
        """v for every row at the flow point x_s [B, C, h, w] and the flow scheduler's
        timestep t (1000 s), [rows, B, C, h, w], from one batched call on the packed latents."""
        rows, batch, (_, h, w) = len(cond.texts), x.shape[0], x.shape[1:]
        tokens = pack(x.to(self.net_dtype)).unsqueeze(0).expand(rows, batch, -1, -1)
        inputs = {name: value.repeat_interleave(batch, dim=0)
                  for name, value in self._row_inputs(cond).items()}
        # The transformer reads s = t / 1000, computed as the pipeline computes it
        timestep = t.expand(rows * batch).to(self.net_dtype) / 1000
        velocity = self._run_unet(tokens.reshape(rows * batch, *tokens.shape[2:]), timestep, inputs)
        return unpack(velocity, h, w).reshape(rows, *x.shape)

    def _forward(self, latents: torch.Tensor, timestep: torch.Tensor,
                 inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """One transformer call (the only place it runs)."""
        self.unet_calls += 1
        guidance = (torch.full((latents.shape[0],), FLUX_GUIDANCE, device=self.device)
                    if self.transformer.config.guidance_embeds else None)
        return self.transformer(hidden_states=latents, timestep=timestep,
                                guidance=guidance,
                                encoder_hidden_states=inputs["encoder_hidden_states"],
                                pooled_projections=inputs["pooled_projections"],
                                txt_ids=self._text_ids, img_ids=self._image_ids,
                                return_dict=False)[0]
