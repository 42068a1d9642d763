"""One concept on the engine against the library's own pipeline, picture for picture.

Where the engine steps as the pipeline steps (SD 1.x and SDXL on any of their
schedulers, SD3 and FLUX on flow_euler), the latents are the pipeline's to the bit and
the pictures are its pictures: 0 px (`assert_same_picture`).

The engine's other samplers on a flow model run its variance-preserving form. There the
flow pipelines are handed the engine's levels as the `sigmas` they take (they apply
their shift to them) and its starting noise on their scale; the pictures then agree up
to float32 round-off (`assert_near_picture`): the same steps in another order of
operations (the VP form's x_s = c x_t round trip, and the level reaching the
transformer as 1000 s after the pipeline's own float32 shift, where its timestep
embedding's sines amplify the last digits: SD3's latents of size 3 move by up to 1.5e-3
over 3 steps) turn a few values in ten thousand to the next colour level."""
from __future__ import annotations

import math

import numpy as np
import torch

from composer.models.sd3 import flow_sigma
from composer.pictures import to_uint8
from composer.samplers import make_scheduler


def engine_levels(model, steps: int) -> list[float]:
    """The flow level s of each DDIM step the engine takes (the top one pressed below 1)."""
    scheduler = make_scheduler("ddim", model.scheduler_config)
    scheduler.set_timesteps(steps)
    return [flow_sigma(float(scheduler.alphas_cumprod[int(t)])) for t in scheduler.timesteps]


def unshifted(levels: list[float], shift: float) -> list[float]:
    """The sigmas to hand the pipeline: the inverse of s = shift u / (1 + (shift - 1) u)."""
    return [s / (shift - (shift - 1) * s) for s in levels]


def flow_start(noise: torch.Tensor, top: float) -> torch.Tensor:
    """The engine's VP start x_T = noise as a flow point: x_s = sqrt((1 - s)^2 + s^2) x_T."""
    return math.hypot(1 - top, top) * noise


def engine_pixels(model, final: torch.Tensor) -> np.ndarray:
    return to_uint8(model.vae_decode(final))


def pipeline_pixels(images: np.ndarray) -> np.ndarray:
    """The pipeline's output_type="np" pictures as its own PIL conversion rounds them."""
    return (images * 255).round().astype(np.uint8)


def pipeline_decode(pipe, latents: torch.Tensor) -> np.ndarray:
    """The pictures a pipeline makes of its final (unpacked) latents, as its own __call__
    decodes them (SD3's and FLUX's VAEs shift them too)."""
    shift = getattr(pipe.vae.config, "shift_factor", None) or 0.0
    with torch.no_grad():
        images = pipe.vae.decode(latents / pipe.vae.config.scaling_factor + shift,
                                 return_dict=False)[0]
    return pipeline_pixels(pipe.image_processor.postprocess(images, output_type="np"))


def assert_same_picture(engine: np.ndarray, library: np.ndarray) -> None:
    """0 px: every colour value of every picture the same."""
    apart = np.abs(engine.astype(int) - library.astype(int))
    assert engine.shape == library.shape and not apart.any(), (apart.max(), (apart > 0).sum())


def assert_near_picture(engine: np.ndarray, library: np.ndarray) -> None:
    """At most one colour level apart, on fewer than 1 in 1,000 values."""
    apart = np.abs(engine.astype(int) - library.astype(int))
    assert apart.max() <= 1 and (apart > 0).mean() < 1e-3, (apart.max(), (apart > 0).sum())
