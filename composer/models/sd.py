"""Stable Diffusion 1.x/2.x (and, through composer/models/sdxl.py, SDXL) behind the
engine's model contract.

`load_sd(name, device)` loads a diffusers Stable Diffusion or SDXL checkpoint, by hub
id ("org/name") or local folder, and wraps it in an `SDAdapter` (`SDXLAdapter`):

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

import importlib
import json
import logging
import os
import re
from dataclasses import dataclass

import torch

from composer.knobs import family_defaults
from composer.lru import LRU
from composer.models.base import ModelAdapter, ModelError, eps_from_v
from composer.models.single_file import SUFFIXES as SINGLE_FILE_SUFFIXES
from composer.models.single_file import load_single_file

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
# MALA and HMC adapt their step ("auto"); ULA and U-HMC have no acceptance to steer by
# and keep a fixed 0.1 of sigma_t (composer.engine.AdaptiveStep). Every SD family.
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
        # A latent model's x0 is not bounded by [-1, 1]: a config that leaves the DDIM
        # keys out (SDXL's Euler config) must not get DDIM's clipping defaults.
        self.scheduler_config = {"clip_sample": False, "set_alpha_to_one": False,
                                 **dict(pipe.scheduler.config)}
        self.prediction_type = self.scheduler_config.get("prediction_type", "epsilon")
        if self.prediction_type not in ("epsilon", "v_prediction"):
            raise ModelError(f"model: {name!r} predicts {self.prediction_type!r}; only epsilon "
                             f"and v_prediction checkpoints are supported")
        size = self.unet.config.sample_size
        height, width = (size, size) if isinstance(size, int) else tuple(size)
        self.sample_shape = (self.unet.config.in_channels, height, width)
        self.defaults = {"scale": 7.5, "steps": 30, **family_defaults("sd")}
        self._counted_and_cached(max_batch)
        self._attention_mask = bool(getattr(self.text_encoder.config, "use_attention_mask", False))
        if channels_last is None:
            channels_last = self.device.type == "cuda"
        if channels_last:
            self.unet.to(memory_format=torch.channels_last)
        self._unet_forward = torch.compile(self.unet) if compile_unet else self.unet

    def _counted_and_cached(self, max_batch: int | None) -> None:
        """The batch limit, the prompt cache and the call counters (every SD family)."""
        self.max_batch = max_batch if max_batch is not None else self._estimate_max_batch()
        self._cache = LRU(CACHE_SIZE)
        self.text_encoder_calls = 0
        self.unet_calls = 0

    # ---- concepts -----------------------------------------------------------------
    def concept_warnings(self, text: str) -> list[str]:
        """Say when a prompt is longer than the text encoder reads."""
        return self._clip_notes(text, "the text encoder reads")

    def _clip_notes(self, text: str, reader: str) -> list[str]:
        """What CLIP's tokenizer drops of the prompt, `reader` being who reads it."""
        ids = self.tokenizer(text, truncation=False, verbose=False).input_ids
        limit = self.tokenizer.model_max_length
        if len(ids) <= limit:
            return []
        dropped = ids[limit - 1:-1]             # CLIP keeps BOS, limit-2 tokens, EOS
        tail = self.tokenizer.decode(dropped).strip()
        return [f"prompt is {len(ids) - 2} tokens but {reader} at most "
                f"{limit - 2}; the last {len(dropped)} tokens will be dropped: {tail!r}"]

    def encode(self, texts: tuple[str, ...]) -> SDCondition:
        """Embeddings of the rows; texts seen before come from the cache."""
        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        # One prompt per encoder call, as the pipelines encode: a batch of several
        # rounds the projections otherwise, and one concept must be their picture.
        fresh = {text: embedded for t in missing for text, embedded in self._embed([t]).items()}
        for text, embedded in fresh.items():
            self._cache.put(text, embedded)
        # Each row's use makes it the most recently used, in the order of the rows.
        return self._condition(tuple(texts), [self._cache.get(t, fresh.get(t)) for t in texts])

    def _embed(self, texts: list[str]) -> dict:
        """text -> its embedding [tokens, width], all in one text-encoder call."""
        tokens = self.tokenizer(texts, padding="max_length", truncation=True,
                                max_length=self.tokenizer.model_max_length, return_tensors="pt")
        mask = tokens.attention_mask.to(self.device) if self._attention_mask else None
        with torch.no_grad():
            hidden = self.text_encoder(tokens.input_ids.to(self.device), attention_mask=mask)[0]
        self.text_encoder_calls += 1
        return dict(zip(texts, hidden.to(self.net_dtype)))

    def _condition(self, texts: tuple[str, ...], embedded: list) -> SDCondition:
        return SDCondition(texts, torch.stack(embedded))

    def _row_inputs(self, cond: SDCondition) -> dict[str, torch.Tensor]:
        """The UNet's conditioning inputs, each [rows, ...] in the order of the rows."""
        return {"encoder_hidden_states": cond.embeddings}

    def _unet_kwargs(self, inputs: dict[str, torch.Tensor]) -> dict:
        return {"encoder_hidden_states": inputs["encoder_hidden_states"]}

    # ---- predictions --------------------------------------------------------------
    @torch.no_grad()
    def predict(self, x: torch.Tensor, t, alpha_bar: float, cond: SDCondition,
                with_energy: bool = False) -> tuple[torch.Tensor, None]:
        """eps for every row and sample, [rows, B, 4, h, w], from one batched UNet call."""
        if with_energy:
            raise ModelError("model: Stable Diffusion has scores only, no energies")
        return self.to_eps(self.predict_native(x, t, cond), x, alpha_bar), None

    def to_eps(self, native: torch.Tensor, x: torch.Tensor, alpha_bar: float) -> torch.Tensor:
        """The rows' eps from the UNet's own outputs at x (v-prediction converted)."""
        if self.prediction_type == "v_prediction":
            native = eps_from_v(native, x.float()[None], alpha_bar)
        return native.to(x.dtype)

    @torch.no_grad()
    def predict_native(self, x: torch.Tensor, t, cond: SDCondition) -> torch.Tensor:
        """What the UNet itself predicts (eps, or v on a v-prediction checkpoint) for every
        row and sample, [rows, B, 4, h, w] in float32, from one batched call."""
        rows, batch = len(cond.texts), x.shape[0]
        latents = x.to(self.net_dtype).unsqueeze(0).expand(rows, *x.shape).reshape(
            rows * batch, *x.shape[1:])
        inputs = {name: value.repeat_interleave(batch, dim=0)     # row-major, like latents
                  for name, value in self._row_inputs(cond).items()}
        timestep = torch.as_tensor(t, device=self.device).reshape(-1)[:1].expand(rows * batch)
        return self._run_unet(latents, timestep, inputs).float().reshape(rows, *x.shape)

    def _forward(self, latents: torch.Tensor, timestep: torch.Tensor,
                 inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """One UNet call (the only place the UNet runs)."""
        self.unet_calls += 1
        return self._unet_forward(latents, timestep, **self._unet_kwargs(inputs),
                                  return_dict=False)[0]

    def _run_unet(self, latents, timestep, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """All rows at once, or in chunks of `max_batch`; on out-of-memory the chunk
        is halved (and kept halved) and the call retried. Only an OOM at one row
        per call reaches the caller (the facade turns it into a user message)."""
        total = latents.shape[0]
        while True:
            chunk = total if self.max_batch is None else max(1, min(self.max_batch, total))
            try:
                return torch.cat([self._forward(latents[i:i + chunk], timestep[i:i + chunk],
                                                {k: v[i:i + chunk] for k, v in inputs.items()})
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
        """Pixels [B, 3, H, W] in [-1, 1] (float32, on the CPU): the batch in one VAE call,
        as the pipelines decode it (one by one rounds otherwise); out of memory, one
        sample per call with tiled decoding."""
        # SD3's VAE also shifts its latents (shift_factor); SD 1.x/SDXL's do not
        shift = getattr(self.vae.config, "shift_factor", None) or 0.0
        latents = x0.to(self.device, self.net_dtype) / self.vae.config.scaling_factor + shift
        try:
            return self.vae.decode(latents, return_dict=False)[0].float().cpu()
        except torch.OutOfMemoryError:
            log.warning("VAE decode of %d samples out of memory; retrying one by one, tiled",
                        len(latents))
        if self.device.type == "cuda":       # outside the except: the failed call's memory is free
            torch.cuda.empty_cache()
        self.vae.enable_tiling()
        return torch.cat([self.vae.decode(latent[None], return_dict=False)[0].float().cpu()
                          for latent in latents])


# One message for every name that does not load, so that the model box tells a visitor
# nothing about which folders exist on the server; the reason goes to the server log.
NOT_LOADABLE = ("it is not a model folder (a diffusers Stable Diffusion 1.x/2.x, SDXL, SD3 or FLUX "
                "folder: model_index.json with its unet/ or transformer/, vae/, text_encoder/ "
                "and tokenizer/) nor a hub id ('org/name') that this server can load")
TRANSFORMER_PARTS = ("transformer", "vae", "text_encoder", "tokenizer", "text_encoder_2",
                     "tokenizer_2")
# diffusers pipeline class -> its adapter's module and class, and the parts its folder has.
PIPELINES = {"StableDiffusionPipeline": ("composer.models.sd", "SDAdapter", REQUIRED_PARTS),
             "StableDiffusionXLPipeline": ("composer.models.sdxl", "SDXLAdapter",
                                           REQUIRED_PARTS + ("text_encoder_2", "tokenizer_2")),
             "StableDiffusion3Pipeline": ("composer.models.sd3", "SD3Adapter", TRANSFORMER_PARTS),
             "FluxPipeline": ("composer.models.flux", "FluxAdapter", TRANSFORMER_PARTS)}


def _not_loadable(name: str, reason: str, offline: bool) -> ModelError:
    log.warning("cannot load %r: %s", name, reason)
    hint = "; this server does not download models" if offline else ""
    return ModelError(f"model: cannot load {name!r}: {NOT_LOADABLE}{hint}", detail=reason)


def _check_folder(path: str) -> None:
    index = os.path.join(path, "model_index.json")
    expected = ("expected a diffusers SD 1.x/2.x, SDXL, SD3 or FLUX folder: model_index.json with "
                "unet/ (or transformer/), vae/, text_encoder/ and tokenizer/ subfolders")
    try:
        with open(index, encoding="utf-8") as f:
            kind = json.load(f).get("_class_name")
    except FileNotFoundError:
        kind = None
    except (OSError, json.JSONDecodeError, AttributeError) as err:
        raise ModelError(f"model: {index!r} cannot be read ({err}); {expected}") from None
    if kind is None and os.path.isfile(os.path.join(path, "config.json")):
        single = _class_name(os.path.join(path, "config.json"))
        if single:                  # one model's folder: a ControlNet, a UNet, a VAE
            raise ModelError(f"model: {path!r} holds one {single}, not a pipeline; {expected}")
    parts = PIPELINES.get(kind, (None, None, REQUIRED_PARTS))[2]
    missing = [p for p in parts if not os.path.isdir(os.path.join(path, p))]
    if kind is None:
        missing.insert(0, "model_index.json")
    if missing:
        raise ModelError(f"model: {path!r} is not a Stable Diffusion pipeline ({expected}; "
                         f"missing {', '.join(missing)})")
    if kind not in PIPELINES:
        raise ModelError(f"model: {path!r} is a {kind}; this app runs "
                         f"{', '.join(list(PIPELINES)[:-1])} or {list(PIPELINES)[-1]} checkpoints")


def _class_name(config: str) -> str | None:
    try:
        with open(config, encoding="utf-8") as f:
            return json.load(f).get("_class_name")
    except (OSError, json.JSONDecodeError, AttributeError):
        return None


def _left_out(path: str) -> dict:
    """The parts a folder was saved without (model_index.json says [null, null], as for
    an SD3 without T5): diffusers loads such a pipeline only when told they are None."""
    with open(os.path.join(path, "model_index.json"), encoding="utf-8") as f:
        index = json.load(f)
    return {part: None for part, value in index.items()
            if not part.startswith("_") and value in ([None, None], None)
            and part not in ("safety_checker", "feature_extractor")}


def _network_dtype(device: torch.device) -> torch.dtype:
    if device.type != "cuda":
        return torch.float32
    choice = os.environ.get(ENV_DTYPE, "fp16").strip().lower() or "fp16"
    if choice not in DTYPES:
        raise ModelError(f"{ENV_DTYPE}: must be one of {', '.join(DTYPES)}, got {choice!r}")
    return DTYPES[choice]


def _pretrained(name: str, dtype: torch.dtype, offline: bool):
    """A diffusers pipeline from a folder or a hub id."""
    expanded = os.path.expanduser(name)
    is_folder = os.path.isdir(expanded)
    if not is_folder and not _HUB_ID.match(name):
        raise _not_loadable(name, "no such folder, and not a hub id", offline)
    if is_folder:
        try:
            _check_folder(expanded)
        except ModelError as err:
            raise _not_loadable(name, str(err), offline) from None
    from diffusers import DiffusionPipeline
    try:
        return DiffusionPipeline.from_pretrained(
            expanded if is_folder else name, dtype=dtype, safety_checker=None,
            feature_extractor=None, requires_safety_checker=False,
            local_files_only=is_folder or offline, **(_left_out(expanded) if is_folder else {}))
    except Exception as err:  # hub, file and config errors all mean "cannot load this"
        raise _not_loadable(name, f"the library said: {err}", offline) from None


def load_sd(name: str, device: torch.device | str = "cpu", *, dtype: torch.dtype | None = None,
            max_batch: int | None = None, compile_unet: bool | None = None) -> SDAdapter:
    """Load an SD 1.x/2.x, SDXL, SD3 or FLUX checkpoint (a diffusers folder, a hub id or
    a single .safetensors file); the pipeline's own class says which adapter wraps it."""
    device = torch.device(device)
    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    dtype = dtype or _network_dtype(device)
    if name.lower().endswith(SINGLE_FILE_SUFFIXES):
        pipe = load_single_file(name, os.path.expanduser(name), dtype, offline)
    else:
        pipe = _pretrained(name, dtype, offline)
    if type(pipe).__name__ not in PIPELINES:
        raise _not_loadable(name, f"a {type(pipe).__name__}, not one of {', '.join(PIPELINES)}",
                            offline)
    module, adapter, _ = PIPELINES[type(pipe).__name__]
    pipe.set_progress_bar_config(disable=True)
    try:
        from diffusers.models.attention_processor import AttnProcessor2_0
        if hasattr(pipe, "unet"):                            # SD3's transformer uses SDPA
            pipe.unet.set_attn_processor(AttnProcessor2_0())  # SDPA
    except (ImportError, ValueError) as err:
        log.warning("could not set SDPA attention: %s", err)
    pipe.to(device)
    for part in ("unet", "transformer", "vae", "text_encoder", "text_encoder_2", "text_encoder_3"):
        if getattr(pipe, part, None) is not None:
            getattr(pipe, part).eval().requires_grad_(False)
    if compile_unet is None:
        compile_unet = os.environ.get(ENV_COMPILE, "").strip() in ("1", "true", "yes")
    channels_last = os.environ.get(ENV_CHANNELS_LAST, "").strip()
    wrap = getattr(importlib.import_module(module), adapter)
    return wrap(pipe, name, device, dtype, max_batch=max_batch, compile_unet=compile_unet,
                channels_last=None if not channels_last else channels_last in ("1", "true"))


__all__ = ["SDAdapter", "SDCondition", "load_sd", "ENV_MAX_BATCH", "ENV_DTYPE", "ENV_COMPILE"]
