"""SD3 / SD3.5 (rectified-flow transformers) behind the engine's model contract.

The engine composes, samples and judges in the variance-preserving world: x_t =
sqrt(abar) x0 + sqrt(1 - abar) eps, and adapters return eps. A flow-matching model
noises on a straight line instead, x_s = (1 - s) x0 + s eps, and predicts the velocity
v = eps - x0. The two are one process up to a scale per level:

- a flow level s and a VP level abar describe the same noise-to-signal ratio when
  s / (1 - s) = sqrt((1 - abar) / abar), and then x_s = c x_t with c = (1 - s) / sqrt(abar);
- the eps is the same draw in both, eps = x_s + (1 - s) v.

So the adapter declares the checkpoint's own schedule (its shifted sigmas) as a VP
schedule (`trained_betas`), and `predict` maps x_t to x_s, asks the transformer for v at
timestep 1000 s, and returns eps. Every operator (sums of eps, tracked densities) and
every sampler then runs on SD3 unchanged. The rows are conditioned as diffusers'
StableDiffusion3Pipeline conditions them: both CLIP encoders' penultimate states
concatenated and padded to the joint width, followed by T5's (zeros when the
checkpoint ships without T5, as the pipeline does), and the two pooled projections
concatenated; the empty prompt is encoded like any other (SD3 has no zeroed negative).
"""
from __future__ import annotations

import math
import os

import torch
from diffusers import FlowMatchEulerDiscreteScheduler

from composer.knobs import family_defaults
from composer.models.base import ModelError
from composer.models.sd import ENV_MAX_BATCH, SDAdapter
from composer.models.sdxl import SDXLCondition, clip_states

# At s = 1 the VP form has abar = 0 (x0 undefined): the levels above SIGMA_EXACT are
# pressed into [SIGMA_EXACT, (1 + SIGMA_EXACT) / 2], still rising, so the top level keeps
# an abar > 0 (6e-6); every level below is the checkpoint's own.
SIGMA_EXACT = 0.995
T5_TOKENS = 256       # the pipeline's max_sequence_length


def flow_sigma(alpha_bar: float) -> float:
    """The flow level s with the same noise-to-signal ratio as the VP level abar."""
    ratio = math.sqrt((1.0 - alpha_bar) / alpha_bar)
    return ratio / (1.0 + ratio)


def vp_schedule(levels: int, shift: float) -> list[float]:
    """betas of the VP process matching the flow scheduler's shifted sigmas at each of
    its training levels (t = 1 .. levels, s = shift u / (1 + (shift - 1) u), u = t / levels)."""
    betas, previous = [], 1.0
    for t in range(1, levels + 1):
        u = t / levels
        s = shift * u / (1 + (shift - 1) * u)
        s = s if s <= SIGMA_EXACT else (s + SIGMA_EXACT) / 2
        abar = (1 - s) ** 2 / ((1 - s) ** 2 + s ** 2)
        betas.append(1.0 - abar / previous)
        previous = abar
    return betas


def vp_scheduler_config(levels: int, shift: float) -> dict:
    """The engine's schedulers' config for a flow checkpoint. Its steps are spaced
    "trailing", so that the first starts at the top level as the flow pipelines' do
    ("leading" would start a 4-step run at s = 0.83 from pure noise)."""
    return {"num_train_timesteps": levels, "beta_schedule": "linear",
            "trained_betas": vp_schedule(levels, shift), "timestep_spacing": "trailing",
            "clip_sample": False, "prediction_type": "epsilon"}


class SD3Adapter(SDAdapter):
    max_samples = 4

    def __init__(self, pipe, name: str, device: torch.device, dtype: torch.dtype,
                 max_batch: int | None = None, compile_unet: bool = False,
                 channels_last: bool | None = None):  # noqa: ARG002 - a UNet's option
        self._take_parts(pipe, name, device, dtype)
        self.tokenizer_3 = getattr(pipe, "tokenizer_3", None)
        self.text_encoder_3 = getattr(pipe, "text_encoder_3", None)
        flow = dict(pipe.scheduler.config)
        levels = int(flow.get("num_train_timesteps", 1000))
        if flow.get("use_dynamic_shifting"):
            raise ModelError(f"model: {name!r} shifts its schedule by resolution; only a "
                             f"fixed shift is supported")
        self.scheduler_config = vp_scheduler_config(levels, float(flow.get("shift", 1.0)))
        self.flow_scheduler_config = flow
        self.prediction_type = "flow"
        size = self.transformer.config.sample_size
        self.sample_shape = (self.transformer.config.in_channels, size, size)
        self.defaults = {"scale": 7.0, "steps": 28, **family_defaults("sd")}
        self._counted_and_cached(max_batch)

    def _take_parts(self, pipe, name: str, device: torch.device, dtype: torch.dtype) -> None:
        """The pipeline's transformer, VAE and first two text encoders (FLUX's too)."""
        self.name = name
        self.device = torch.device(device)
        self.dtype = torch.float32
        self.net_dtype = dtype
        self.tokenizer, self.text_encoder = pipe.tokenizer, pipe.text_encoder
        self.tokenizer_2, self.text_encoder_2 = pipe.tokenizer_2, pipe.text_encoder_2
        self.vae, self.transformer = pipe.vae, pipe.transformer

    def _estimate_max_batch(self) -> int | None:
        """COMPOSER_SD_MAX_BATCH, else unsplit (the UNet-based estimate does not apply);
        out of memory halves the chunk anyway (`_run_unet`)."""
        return super()._estimate_max_batch() if os.environ.get(ENV_MAX_BATCH, "").strip() else None

    def concept_warnings(self, text: str) -> list[str]:
        """Say what each encoder drops of a long prompt: the CLIP pair reads 75 tokens (and
        gives the pooled vector), T5, when the checkpoint has it, T5_TOKENS."""
        notes = self._clip_notes(text, "the CLIP encoders read")
        if self.tokenizer_3 is None:
            return notes
        ids = self.tokenizer_3(text, truncation=False, verbose=False).input_ids  # with its specials
        if len(ids) > T5_TOKENS:
            notes.append(f"prompt is {len(ids)} tokens with T5's own, and T5 reads at most "
                         f"{T5_TOKENS}; the rest will be dropped")
        elif notes:
            notes[0] += " (T5 reads the whole prompt)"
        return notes

    def _embed(self, texts: list[str]) -> dict:
        """text -> (embedding [77 + T5_TOKENS, joint], pooled [width_1 + width_2])."""
        joint = self.transformer.config.joint_attention_dim
        with torch.no_grad():
            states, pooled = clip_states(self, texts)
            clip = torch.cat(states, dim=-1)
            clip = torch.nn.functional.pad(clip, (0, joint - clip.shape[-1]))
            if self.text_encoder_3 is None:
                t5 = torch.zeros(len(texts), T5_TOKENS, joint, device=self.device, dtype=clip.dtype)
            else:
                ids = self.tokenizer_3(texts, padding="max_length", truncation=True,
                                       max_length=T5_TOKENS, add_special_tokens=True,
                                       return_tensors="pt").input_ids.to(self.device)
                t5 = self.text_encoder_3(ids)[0].to(clip.dtype)
        self.text_encoder_calls += 1
        embeddings = torch.cat([clip, t5], dim=-2).to(self.net_dtype)
        pooled = torch.cat(pooled, dim=-1).to(self.net_dtype)
        return {t: (e, p) for t, e, p in zip(texts, embeddings, pooled)}

    def _condition(self, texts: tuple[str, ...], embedded: list) -> SDXLCondition:
        return SDXLCondition(texts, torch.stack([e for e, _ in embedded]),
                             torch.stack([p for _, p in embedded]))

    def _row_inputs(self, cond: SDXLCondition) -> dict[str, torch.Tensor]:
        return {"encoder_hidden_states": cond.embeddings, "pooled_projections": cond.pooled}

    def flow_scheduler(self, steps: int):
        """The pipeline's own FlowMatchEulerDiscreteScheduler with its timesteps for `steps`."""
        scheduler = FlowMatchEulerDiscreteScheduler.from_config(self.flow_scheduler_config)
        scheduler.set_timesteps(steps, device=self.device)
        return scheduler

    @torch.no_grad()
    def predict(self, x: torch.Tensor, t, alpha_bar: float, cond: SDXLCondition,
                with_energy: bool = False) -> tuple[torch.Tensor, None]:
        """eps for every row and sample, [rows, B, C, h, w], from one batched
        transformer call at the flow level matching alpha_bar."""
        if with_energy:
            raise ModelError(f"model: {self.name!r} has scores only, no energies")
        sigma = flow_sigma(alpha_bar)
        flow_x = (1.0 - sigma) / math.sqrt(alpha_bar) * x.float()         # x_s = c x_t
        velocity = self.velocity(flow_x, torch.tensor(1000.0 * sigma, device=self.device), cond)
        eps = flow_x[None] + (1.0 - sigma) * velocity.float()
        return eps.to(x.dtype), None

    @torch.no_grad()
    def velocity(self, x: torch.Tensor, t: torch.Tensor, cond: SDXLCondition) -> torch.Tensor:
        """v for every row at the flow point x_s [B, C, h, w] and the flow scheduler's
        timestep t (1000 s): [rows, B, C, h, w], one batched call, the rows' inputs laid
        out as the pipeline lays out its classifier-free batch ([u.., c..])."""
        rows, batch = len(cond.texts), x.shape[0]
        latents = x.to(self.net_dtype).unsqueeze(0).expand(rows, *x.shape).reshape(
            rows * batch, *x.shape[1:])
        inputs = {name: value.repeat_interleave(batch, dim=0)
                  for name, value in self._row_inputs(cond).items()}
        return self._run_unet(latents, t.expand(rows * batch), inputs).reshape(rows, *x.shape)

    def _forward(self, latents: torch.Tensor, timestep: torch.Tensor,
                 inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """One transformer call (the only place it runs)."""
        self.unet_calls += 1
        return self.transformer(hidden_states=latents, timestep=timestep,
                                encoder_hidden_states=inputs["encoder_hidden_states"],
                                pooled_projections=inputs["pooled_projections"],
                                return_dict=False)[0]
