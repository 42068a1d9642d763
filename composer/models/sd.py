"""Stable Diffusion 1.x/2.x behind the engine's model contract.

`load_sd(name, device)` loads any diffusers Stable Diffusion checkpoint, by hub
id ("org/name") or local folder, and wraps it in an `SDAdapter`:

- `predict` answers every conditioning row (the unconditional "" first for the
  "and" operator, then each concept) for every sample in ONE batched UNet call
  of rows x samples, split into chunks only under a memory budget. It always
  returns epsilon: v-prediction checkpoints are converted with
  eps = sqrt(abar) v + sqrt(1 - abar) x.
- `encode` caches each prompt's CLIP embedding, so changing weights, operator,
  sampler or seed re-encodes nothing.
- `vae_decode` turns latents into pixels with the checkpoint's VAE; the pictures
  (sd_outputs.py: the cheap linear latent preview, the decoded images) use it.

The sampler state stays in fp32; the networks run in fp16 on CUDA (bf16 with
COMPOSER_SD_DTYPE=bf16) and fp32 on the CPU.

Environment:
    COMPOSER_SD_MODEL      a checkpoint the app offers in its picker (read by the facade).
    COMPOSER_SD_MAX_BATCH  most UNet rows per call (default: estimated from free
                           GPU memory on CUDA, unlimited on the CPU).
    COMPOSER_SD_DTYPE      fp16 | bf16 | fp32 network dtype on CUDA (default fp16).
    COMPOSER_COMPILE=1     torch.compile the UNet (slow first step, faster after).
    COMPOSER_CHANNELS_LAST 1/0: UNet in channels_last (default: on for CUDA only).
"""
from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass

import torch

from composer.lru import LRU
from composer.models.base import ModelAdapter, ModelError, eps_from_v
from composer.recipe import AUTO

log = logging.getLogger(__name__)

ENV_MAX_BATCH = "COMPOSER_SD_MAX_BATCH"
ENV_DTYPE = "COMPOSER_SD_DTYPE"
ENV_COMPILE = "COMPOSER_COMPILE"
ENV_CHANNELS_LAST = "COMPOSER_CHANNELS_LAST"

REQUIRED_PARTS = ("unet", "vae", "text_encoder", "tokenizer")
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
# Rough activation memory of one UNet row, per latent pixel and per unit of
# block_out_channels[0], in bytes per byte of dtype (SD 1.5 at 64x64 in fp16 with
# SDPA peaks near 0.3 GB a row). Only a starting point: OOM halves the chunk.
_ROW_BYTES_PER_PIXEL_CHANNEL = 120.0
CACHE_SIZE = 512     # prompt embeddings kept (77 x 768 fp16 = 118 kB each for SD 1.x)
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class SDCondition:
    """Prompt embeddings for the rows, in order: [rows, tokens, width]."""
    texts: tuple[str, ...]
    embeddings: torch.Tensor


class SDAdapter(ModelAdapter):
    family = "sd"
    has_energy = False
    max_samples = 8
    # Room for the defaults with HMC (K=2, L=3) at 4 samples x 4 rows x 30 steps (3,360);
    # sized for a GPU, since SD on a CPU is slow at any budget.
    max_evaluations = 6_000
    lift_by_default = False          # 40 UNet rows per sample and row: asked for, not default

    def __init__(self, pipe, name: str, device: torch.device, dtype: torch.dtype,
                 max_batch: int | None = None, compile_unet: bool = False,
                 channels_last: bool | None = None):
        self.name = name
        self.device = torch.device(device)
        self.dtype = torch.float32               # the sampler state
        self.net_dtype = dtype                   # UNet, VAE and text encoder
        self.tokenizer = pipe.tokenizer
        self.text_encoder = pipe.text_encoder
        self.vae = pipe.vae
        self.unet = pipe.unet
        self.scheduler_config = dict(pipe.scheduler.config)
        self.prediction_type = self.scheduler_config.get("prediction_type", "epsilon")
        if self.prediction_type not in ("epsilon", "v_prediction"):
            raise ModelError(f"model: {name!r} predicts {self.prediction_type!r}; only epsilon "
                             f"and v_prediction checkpoints are supported")
        size = self.unet.config.sample_size
        height, width = (size, size) if isinstance(size, int) else tuple(size)
        self.sample_shape = (self.unet.config.in_channels, height, width)
        # MALA and HMC adapt their step ("auto"); ULA and U-HMC have no acceptance to
        # steer by and keep a fixed 0.1 of sigma_t (composer.engine.AdaptiveStep).
        self.defaults = {"scale": 7.5, "steps": 30, "mcmc_steps": 2,
                         "step_size": {"ula": 0.1, "uhmc": 0.1, "mala": AUTO, "hmc": AUTO},
                         "leapfrog_steps": 3, "damping": 0.5, "line_points": 5}
        self.max_batch = max_batch if max_batch is not None else self._estimate_max_batch()
        self._cache = LRU(CACHE_SIZE)
        self.text_encoder_calls = 0
        self.unet_calls = 0
        self._attention_mask = bool(getattr(self.text_encoder.config, "use_attention_mask", False))
        if channels_last is None:
            channels_last = self.device.type == "cuda"
        if channels_last:
            self.unet.to(memory_format=torch.channels_last)
        self._unet_forward = torch.compile(self.unet) if compile_unet else self.unet

    # ---- concepts -----------------------------------------------------------------
    def concept_warnings(self, text: str) -> list[str]:
        """Say when a prompt is longer than the text encoder reads."""
        ids = self.tokenizer(text, truncation=False, verbose=False).input_ids
        limit = self.tokenizer.model_max_length
        if len(ids) <= limit:
            return []
        dropped = ids[limit - 1:-1]             # CLIP keeps BOS, limit-2 tokens, EOS
        tail = self.tokenizer.decode(dropped).strip()
        return [f"prompt is {len(ids) - 2} tokens but the text encoder reads at most "
                f"{limit - 2}; the last {len(dropped)} tokens will be dropped: {tail!r}"]

    def encode(self, texts: tuple[str, ...]) -> SDCondition:
        """Embeddings of the rows; texts seen before come from the cache."""
        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if missing:
            tokens = self.tokenizer(missing, padding="max_length", truncation=True,
                                    max_length=self.tokenizer.model_max_length,
                                    return_tensors="pt")
            mask = tokens.attention_mask.to(self.device) if self._attention_mask else None
            with torch.no_grad():
                hidden = self.text_encoder(tokens.input_ids.to(self.device),
                                           attention_mask=mask)[0]
            self.text_encoder_calls += 1
            fresh = dict(zip(missing, hidden.to(self.net_dtype)))
            for text, embedding in fresh.items():
                self._cache.put(text, embedding)
        else:
            fresh = {}
        # Each row's use makes it the most recently used, in the order of the rows.
        embeddings = torch.stack([self._cache.get(t, fresh.get(t)) for t in texts])
        return SDCondition(tuple(texts), embeddings)

    # ---- predictions --------------------------------------------------------------
    @torch.no_grad()
    def predict(self, x: torch.Tensor, t, alpha_bar: float, cond: SDCondition,
                with_energy: bool = False) -> tuple[torch.Tensor, None]:
        """eps for every row and sample, [rows, B, 4, h, w], from one batched UNet call."""
        if with_energy:
            raise ModelError("model: Stable Diffusion has scores only, no energies")
        rows, batch = cond.embeddings.shape[0], x.shape[0]
        latents = x.to(self.net_dtype).unsqueeze(0).expand(rows, *x.shape).reshape(
            rows * batch, *x.shape[1:])
        context = cond.embeddings.repeat_interleave(batch, dim=0)     # row-major, like latents
        timestep = torch.as_tensor(t, device=self.device).reshape(-1)[:1].expand(rows * batch)
        out = self._run_unet(latents, timestep, context).float().reshape(rows, *x.shape)
        if self.prediction_type == "v_prediction":
            out = eps_from_v(out, x.float()[None], alpha_bar)
        return out.to(x.dtype), None

    def _forward(self, latents: torch.Tensor, timestep: torch.Tensor,
                 context: torch.Tensor) -> torch.Tensor:
        """One UNet call (the only place the UNet runs)."""
        self.unet_calls += 1
        return self._unet_forward(latents, timestep, encoder_hidden_states=context,
                                  return_dict=False)[0]

    def _run_unet(self, latents, timestep, context) -> torch.Tensor:
        """All rows at once, or in chunks of `max_batch`; on out-of-memory the chunk
        is halved (and kept halved) and the call retried. Only an OOM at one row
        per call reaches the caller (the facade turns it into a user message)."""
        total = latents.shape[0]
        while True:
            chunk = total if self.max_batch is None else max(1, min(self.max_batch, total))
            try:
                return torch.cat([self._forward(latents[i:i + chunk], timestep[i:i + chunk],
                                                context[i:i + chunk])
                                  for i in range(0, total, chunk)])
            except torch.OutOfMemoryError:
                if chunk == 1:       # nothing left to split: the caller reports it
                    log.warning("UNet out of memory even at one row per call")
                    raise
                self.max_batch = chunk // 2
                log.warning("UNet out of memory at %d rows per call; retrying with %d",
                            chunk, self.max_batch)
            # Outside the except block, so the failed call's tensors are released first.
            if self.device.type == "cuda":
                torch.cuda.empty_cache()

    def _estimate_max_batch(self) -> int | None:
        env = os.environ.get(ENV_MAX_BATCH, "").strip()
        if env:
            try:
                value = int(env)
            except ValueError:
                raise ModelError(f"{ENV_MAX_BATCH}: must be a positive integer, got {env!r}") from None
            if value < 1:
                raise ModelError(f"{ENV_MAX_BATCH}: must be a positive integer, got {env!r}")
            return value
        if self.device.type != "cuda":
            return None
        try:
            free, _ = torch.cuda.mem_get_info(self.device)
        except RuntimeError as err:      # e.g. ZeroGPU outside a GPU call: rely on OOM halving
            log.info("no free-memory estimate (%s); UNet batches are not split up front", err)
            return None
        _, h, w = self.sample_shape
        width = self.unet.config.block_out_channels[0]
        itemsize = torch.tensor([], dtype=self.net_dtype).element_size()
        per_row = _ROW_BYTES_PER_PIXEL_CHANNEL * h * w * width * itemsize
        return max(1, int(0.8 * free / per_row))

    # ---- pixels -------------------------------------------------------------------
    # Latents become pixels through the checkpoint's own VAE, loaded with the UNet on the
    # same device and in the same dtype: part of the model, so it stays here; the pictures
    # (sd_outputs.py) call it.
    @torch.no_grad()
    def vae_decode(self, x0: torch.Tensor) -> torch.Tensor:
        """Pixels [B, 3, H, W] in [-1, 1] (float32, on the CPU), one sample per VAE call."""
        images = []
        for i in range(x0.shape[0]):
            latent = x0[i:i + 1].to(self.device, self.net_dtype) / self.vae.config.scaling_factor
            try:
                image = self.vae.decode(latent, return_dict=False)[0]
            except torch.OutOfMemoryError:
                log.warning("VAE decode out of memory; retrying with tiled decoding")
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                self.vae.enable_tiling()
                image = self.vae.decode(latent, return_dict=False)[0]
            images.append(image.float().cpu())
        return torch.cat(images)


# One message for every name that does not load, so that the model box tells a visitor
# nothing about which folders exist on the server; the reason goes to the server log.
NOT_LOADABLE = ("it is not a model folder (a diffusers Stable Diffusion 1.x/2.x folder: "
                "model_index.json with unet/, vae/, text_encoder/ and tokenizer/) nor a hub id "
                "('org/name') that this server can load")


def _not_loadable(name: str, reason: str, offline: bool) -> ModelError:
    log.warning("cannot load %r: %s", name, reason)
    hint = "; this server does not download models" if offline else ""
    return ModelError(f"model: cannot load {name!r}: {NOT_LOADABLE}{hint}")


def _check_folder(path: str) -> None:
    index = os.path.join(path, "model_index.json")
    expected = ("expected a diffusers Stable Diffusion folder: model_index.json with "
                "unet/, vae/, text_encoder/ and tokenizer/ subfolders")
    missing = [p for p in REQUIRED_PARTS if not os.path.isdir(os.path.join(path, p))]
    if not os.path.isfile(index):
        missing.insert(0, "model_index.json")
    if missing:
        raise ModelError(f"model: {path!r} is not a Stable Diffusion pipeline ({expected}; "
                         f"missing {', '.join(missing)})")
    try:
        with open(index, encoding="utf-8") as f:
            info = json.load(f)
    except (OSError, json.JSONDecodeError) as err:
        raise ModelError(f"model: {index!r} cannot be read ({err}); {expected}") from None
    if "text_encoder_2" in info:
        raise ModelError(f"model: {path!r} looks like SDXL ({info.get('_class_name')}); "
                         f"only Stable Diffusion 1.x/2.x checkpoints are supported")


def _network_dtype(device: torch.device) -> torch.dtype:
    if device.type != "cuda":
        return torch.float32
    choice = os.environ.get(ENV_DTYPE, "fp16").strip().lower() or "fp16"
    if choice not in DTYPES:
        raise ModelError(f"{ENV_DTYPE}: must be one of {', '.join(DTYPES)}, got {choice!r}")
    return DTYPES[choice]


def load_sd(name: str, device: torch.device | str = "cpu", *, dtype: torch.dtype | None = None,
            max_batch: int | None = None, compile_unet: bool | None = None) -> SDAdapter:
    """Load a diffusers SD 1.x/2.x checkpoint (hub id or local folder)."""
    device = torch.device(device)
    expanded = os.path.expanduser(name)
    is_folder = os.path.isdir(expanded)
    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    if not is_folder and not _HUB_ID.match(name):
        raise _not_loadable(name, "no such folder, and not a hub id", offline)
    if is_folder:
        try:
            _check_folder(expanded)
        except ModelError as err:
            raise _not_loadable(name, str(err), offline) from None
    dtype = dtype or _network_dtype(device)
    from diffusers import StableDiffusionPipeline
    try:
        pipe = StableDiffusionPipeline.from_pretrained(
            expanded if is_folder else name, dtype=dtype, safety_checker=None,
            feature_extractor=None, requires_safety_checker=False,
            local_files_only=is_folder or offline)
    except Exception as err:  # hub, file and config errors all mean "cannot load this"
        raise _not_loadable(name, f"the library said: {err}", offline) from None
    pipe.set_progress_bar_config(disable=True)
    try:
        from diffusers.models.attention_processor import AttnProcessor2_0
        pipe.unet.set_attn_processor(AttnProcessor2_0())     # SDPA
    except (ImportError, ValueError) as err:
        log.warning("could not set SDPA attention: %s", err)
    pipe.to(device)
    for module in (pipe.unet, pipe.vae, pipe.text_encoder):
        module.eval().requires_grad_(False)
    if compile_unet is None:
        compile_unet = os.environ.get(ENV_COMPILE, "").strip() in ("1", "true", "yes")
    channels_last = os.environ.get(ENV_CHANNELS_LAST, "").strip()
    return SDAdapter(pipe, name, device, dtype, max_batch=max_batch, compile_unet=compile_unet,
                     channels_last=None if not channels_last else channels_last in ("1", "true"))


__all__ = ["SDAdapter", "SDCondition", "load_sd", "ENV_MAX_BATCH", "ENV_DTYPE", "ENV_COMPILE"]
