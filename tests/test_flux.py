"""FLUX on a tiny random-weight pipeline saved to a folder and loaded back offline
(composer/models/tiny_sd.py `save_tiny_flux`): its packed latents, positions, shift by
resolution and conditioning as FluxPipeline makes them, its velocity as eps, and every
kind of composition on it."""
from __future__ import annotations

import math
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from composer.engine import generate                                     # noqa: E402
from composer.models import load_model                                   # noqa: E402
from composer.models.flux import T5_TOKENS, FluxAdapter, dynamic_shift, pack, unpack  # noqa: E402
from composer.models.sd3 import flow_sigma                               # noqa: E402
from composer.models.tiny_sd import save_tiny_flux                       # noqa: E402
from composer.recipe import Concept, Recipe, SamplerSpec                 # noqa: E402
from composer.samplers import alphas_cumprod                             # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return save_tiny_flux(tmp_path_factory.mktemp("flux") / "tiny-flux")


@pytest.fixture(scope="module")
def model(folder):
    return load_model(folder, "cpu")


@pytest.fixture(scope="module")
def pipe(folder):
    from diffusers import FluxPipeline
    return FluxPipeline.from_pretrained(folder, local_files_only=True)


def test_a_flux_folder_loads_as_flux(model):
    assert isinstance(model, FluxAdapter) and model.family == "sd"
    assert model.sample_shape == (4, 8, 8) and model.defaults["scale"] == 1.0


def test_latents_are_packed_and_placed_as_the_pipeline_does(model, pipe):
    latents = torch.randn(3, 4, 8, 8)
    packed = pipe._pack_latents(latents, 3, 4, 8, 8)
    assert torch.equal(pack(latents), packed)
    assert torch.equal(unpack(packed, 8, 8), latents)
    assert torch.equal(pipe._unpack_latents(packed, 64, 64, pipe.vae_scale_factor), latents)
    assert torch.equal(model._image_ids, pipe._prepare_latent_image_ids(1, 4, 4, "cpu", torch.float32))


def test_its_shift_follows_the_resolution_as_the_pipelines(pipe, model):
    """The pipeline's mu at this many image tokens, as one fixed shift e^mu: the VP
    schedule is the flow scheduler's sigmas shifted by it."""
    from diffusers.pipelines.flux.pipeline_flux import calculate_shift
    config = dict(pipe.scheduler.config)
    for tokens in (16, 1024, 4096):
        mu = calculate_shift(tokens, config["base_image_seq_len"], config["max_image_seq_len"],
                             config["base_shift"], config["max_shift"])
        assert dynamic_shift(tokens, config) == pytest.approx(math.exp(mu))
    shift = dynamic_shift(16, config)
    abar = alphas_cumprod(model.scheduler_config).double()
    for t in (1, 250, 900):
        u = t / 1000
        s = shift * u / (1 + (shift - 1) * u)
        assert float(abar[t - 1]) == pytest.approx((1 - s) ** 2 / ((1 - s) ** 2 + s ** 2), rel=1e-4)


def test_rows_are_conditioned_as_the_flux_pipeline_conditions_them(model, pipe):
    embeds, pooled, text_ids = pipe.encode_prompt("a red cube", prompt_2=None, device="cpu",
                                                  max_sequence_length=T5_TOKENS)
    cond = model.encode(("", "a red cube"))
    torch.testing.assert_close(cond.embeddings[1:], embeds, rtol=1e-3, atol=1e-4)   # batch of 2 vs 1
    torch.testing.assert_close(cond.pooled[1:], pooled, rtol=1e-3, atol=1e-4)
    assert torch.equal(model._text_ids, text_ids)
    assert not torch.equal(cond.embeddings[0], cond.embeddings[1])     # "" is a prompt too


def test_predict_calls_the_transformer_as_the_pipeline_does(model, pipe):
    """The velocity inside predict is the pipeline's transformer call on the packed flow
    point at timestep s with the guidance input, turned into eps = x_s + (1 - s) v."""
    x = torch.randn(1, *model.sample_shape, generator=torch.Generator().manual_seed(3))
    abar = 0.4
    s = flow_sigma(abar)
    cond = model.encode(("a red cube",))
    eps, _ = model.predict(x, 500, abar, cond)
    x_s = (1 - s) / math.sqrt(abar) * x
    embeds, pooled, text_ids = pipe.encode_prompt("a red cube", prompt_2=None, device="cpu",
                                                  max_sequence_length=T5_TOKENS)
    with torch.no_grad():
        velocity = pipe.transformer(
            hidden_states=pipe._pack_latents(x_s, 1, 4, 8, 8), timestep=torch.tensor([s]),
            guidance=torch.tensor([3.5]), pooled_projections=pooled, encoder_hidden_states=embeds,
            txt_ids=text_ids, img_ids=pipe._prepare_latent_image_ids(1, 4, 4, "cpu", torch.float32),
            return_dict=False)[0]
    expected = x_s + (1 - s) * pipe._unpack_latents(velocity, 64, 64, pipe.vae_scale_factor)
    torch.testing.assert_close(eps[0], expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("operator, sampler", [
    ("and", "ddim"), ("and", "mala"), ("and", "smc"), ("superdiff_or", "ddpm"),
])
def test_every_kind_of_composition_runs_on_flux(model, folder, operator, sampler):
    recipe = Recipe(model=folder, concepts=(Concept("a red cube"), Concept("a blue ball")),
                    operator=operator, sampler=SamplerSpec(sampler), steps=3, seed=2)
    first = generate(recipe, model).x_t
    assert first.shape == (1, *model.sample_shape) and torch.isfinite(first).all()
    assert torch.equal(first, generate(recipe, model).x_t)              # deterministic


def test_a_flux_image_decodes_through_its_vae(model):
    from composer.models import pictures_of
    image, = pictures_of(model).decode(torch.zeros(1, *model.sample_shape))
    assert image.shape == (64, 64, 3)


def test_one_concept_is_the_flux_pipelines_picture(folder, model, pipe):
    """FLUX has no unconditional branch to guide with: one concept at scale 1 is the
    conditional velocity alone (the empty row weighs nothing and is not asked for),
    which is what FluxPipeline runs (true_cfg_scale 1, the distilled guidance 3.5 as an
    input). On flow_euler that is the pipeline's own run for the seed, to the bit; on
    DDIM, the pipeline's run on the engine's levels from its noise, within round-off."""
    from tests.pipeline_match import (assert_near_picture, assert_same_picture, engine_levels,
                                      engine_pixels, flow_start, pipeline_decode, pipeline_pixels,
                                      unshifted)
    steps, seed, samples = 4, 3, 2
    pipe.set_progress_bar_config(disable=True)

    def engine(sampler: str) -> torch.Tensor:
        return generate(Recipe(model=folder, concepts=(Concept("a red cube"),),
                               sampler=SamplerSpec(sampler), steps=steps, scale=1.0, seed=seed,
                               num_samples=samples), model).x_t
    final = engine("flow_euler")
    packed = pipe("a red cube", num_inference_steps=steps, guidance_scale=3.5, height=64, width=64,
                  num_images_per_prompt=samples, max_sequence_length=T5_TOKENS,
                  generator=torch.Generator().manual_seed(seed), output_type="latent").images
    latents = pipe._unpack_latents(packed, 64, 64, pipe.vae_scale_factor)
    assert torch.equal(final, latents), (final - latents).abs().max()
    assert_same_picture(engine_pixels(model, final), pipeline_decode(pipe, latents))
    levels = engine_levels(model, steps)
    tokens = (model.sample_shape[1] // 2) ** 2
    shift = dynamic_shift(tokens, dict(pipe.scheduler.config))
    noise = torch.randn((samples, *model.sample_shape), generator=torch.Generator().manual_seed(seed))
    out = pipe("a red cube", num_inference_steps=steps, guidance_scale=3.5, height=64, width=64,
               num_images_per_prompt=samples, latents=pack(flow_start(noise, levels[0])),
               sigmas=unshifted(levels, shift), max_sequence_length=T5_TOKENS,
               output_type="np").images
    assert_near_picture(engine_pixels(model, engine("ddim")), pipeline_pixels(out))
