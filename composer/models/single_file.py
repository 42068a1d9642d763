"""Single-file checkpoints: one `.safetensors` in the original (LDM / CompVis) layout, as
A1111 and ComfyUI keep them, loaded with diffusers' `from_single_file`.

The family is read from the file's tensor names and shapes (diffusers'
`infer_diffusers_model_type`, on a lazy view that reads only the few tensors it looks
at). The family's configuration (each part's config.json, the tokenizers) comes from
the hub, or offline from the hub cache, where an earlier online load left it. Without
it, the message gives the one command that converts the file where the hub is
reachable. Pickled formats (.ckpt, .pt, .bin) are never opened, because unpickling
runs code; the same command converts them.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping

import torch

from composer.models.base import ModelError

log = logging.getLogger(__name__)

SUFFIXES = (".safetensors", ".ckpt", ".pt", ".bin", ".gguf")
# diffusers' name for the file's family -> the pipeline class that reads it
PIPELINES = {"v1": "StableDiffusionPipeline", "v2": "StableDiffusionPipeline",
             "xl_base": "StableDiffusionXLPipeline", "sd3": "StableDiffusion3Pipeline",
             "sd35_medium": "StableDiffusion3Pipeline", "sd35_large": "StableDiffusion3Pipeline",
             "flux-dev": "FluxPipeline", "flux-schnell": "FluxPipeline"}
# One message for every file that does not load (the model box tells a visitor nothing
# of the server's files); why goes to the log and the CLI (ModelError.detail).
NOT_READ = ("a single-file checkpoint that this server could not read: it reads a "
            ".safetensors file of SD 1.x/2.x, SDXL, SD3 or FLUX when the family's "
            "configuration is on the hub or in its cache. Convert it once where the hub is "
            "reachable: python -c \"from diffusers import StableDiffusionXLPipeline as P; "
            "P.from_single_file('FILE').save_pretrained('FOLDER')\" (StableDiffusionPipeline, "
            "StableDiffusion3Pipeline or FluxPipeline for those families), then load FOLDER")


class _Tensors(Mapping):
    """A safetensors file's tensors by name, each read only when asked for."""

    def __init__(self, handle):
        self._handle, self._names = handle, set(handle.keys())

    def __getitem__(self, name: str) -> torch.Tensor:
        if name not in self._names:
            raise KeyError(name)
        return self._handle.get_tensor(name)

    def __contains__(self, name: object) -> bool:
        return name in self._names          # without reading it (Mapping's would)

    def __iter__(self):
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


def family(path: str) -> str:
    """diffusers' name for the checkpoint's family ("v1", "xl_base", "sd3", ...)."""
    from diffusers.loaders.single_file_utils import infer_diffusers_model_type
    from safetensors import safe_open
    with safe_open(path, framework="pt") as handle:
        return infer_diffusers_model_type(_Tensors(handle))


def not_read(name: str, reason: str) -> ModelError:
    log.warning("cannot load %r: %s", name, reason)
    return ModelError(f"model: {name!r} is {NOT_READ}", detail=reason)


def load_single_file(name: str, path: str, dtype: torch.dtype, offline: bool):
    """The diffusers pipeline of a .safetensors checkpoint, or ModelError saying how to
    convert it."""
    if not path.lower().endswith(".safetensors"):
        raise not_read(name, "a pickled checkpoint (.ckpt, .pt, .bin) or a GGUF file; only "
                             ".safetensors files are opened")
    try:
        kind = family(path)
    except Exception as err:  # missing, unreadable, not safetensors: all "cannot read"
        raise not_read(name, f"cannot read it as safetensors: {err}") from None
    if kind not in PIPELINES:
        raise not_read(name, f"a {kind!r} checkpoint (diffusers' name for its family); "
                             f"this app runs {', '.join(PIPELINES)}")
    import diffusers
    pipeline = getattr(diffusers, PIPELINES[kind])
    extra = ({"safety_checker": None, "requires_safety_checker": False}
             if PIPELINES[kind] == "StableDiffusionPipeline" else {})
    try:
        return pipeline.from_single_file(path, torch_dtype=dtype, local_files_only=offline, **extra)
    except Exception as err:  # no configuration in reach, or a file diffusers cannot convert
        raise not_read(name, f"a {kind!r} checkpoint; the library said: {err}") from None
