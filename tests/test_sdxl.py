"""SDXL on a tiny random-weight pipeline saved to a folder and loaded back offline
(composer/models/tiny_sd.py `save_tiny_sdxl`): conditioned as diffusers' own SDXL
pipeline conditions it, and composed by every operator family and sampler kind."""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from composer.engine import generate                              # noqa: E402
from composer.facade import Composer                              # noqa: E402
from composer.models import load_model                            # noqa: E402
from composer.models.sdxl import SDXLAdapter                      # noqa: E402
from composer.models.tiny_sd import save_tiny_sdxl                # noqa: E402
from composer.recipe import Concept, Recipe, SamplerSpec          # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return save_tiny_sdxl(tmp_path_factory.mktemp("sdxl") / "tiny-sdxl")


@pytest.fixture(scope="module")
def model(folder):
    return load_model(folder, "cpu")


def test_an_sdxl_folder_loads_as_sdxl(model):
    """SDXL folders were refused ("only Stable Diffusion 1.x/2.x checkpoints")."""
    assert isinstance(model, SDXLAdapter) and model.family == "sd"
    assert model.sample_shape == (4, 8, 8)
    assert model.time_ids.tolist() == [64, 64, 0, 0, 64, 64]      # pixels: 8 x the latent


def test_rows_are_conditioned_as_the_sdxl_pipeline_conditions_them(folder, model):
    """The prompt row and the empty row give what diffusers' StableDiffusionXLPipeline
    feeds its UNet: both encoders' penultimate states, the pooled projection, the size
    ids, and zeros for the empty prompt."""
    from diffusers import StableDiffusionXLPipeline
    pipe = StableDiffusionXLPipeline.from_pretrained(folder, local_files_only=True)
    embeds, negative, pooled, negative_pooled = pipe.encode_prompt(
        "a red cube", device="cpu", num_images_per_prompt=1, do_classifier_free_guidance=True)
    assert not negative.any() and not negative_pooled.any()
    time_ids = pipe._get_add_time_ids((64, 64), (0, 0), (64, 64), embeds.dtype,
                                      text_encoder_projection_dim=pipe.text_encoder_2.config.projection_dim)
    g = torch.Generator().manual_seed(0)
    x = torch.randn((2, *model.sample_shape), generator=g)
    t, abar = 500, float(pipe.scheduler.alphas_cumprod[500])
    eps, _ = model.predict(x, t, abar, model.encode(("", "a red cube")))
    for row, (context, text_embeds) in enumerate(((negative, negative_pooled), (embeds, pooled))):
        expected = pipe.unet(x, t, encoder_hidden_states=context.expand(2, -1, -1),
                             added_cond_kwargs={"text_embeds": text_embeds.expand(2, -1),
                                                "time_ids": time_ids.expand(2, -1)},
                             return_dict=False)[0]
        torch.testing.assert_close(eps[row], expected, rtol=1e-4, atol=1e-5)


def test_a_second_encode_of_the_same_rows_calls_no_text_encoder(model):
    model.encode(("", "a dog", "a cat"))
    calls = model.text_encoder_calls
    model.encode(("a cat", "", "a dog"))
    assert model.text_encoder_calls == calls


@pytest.mark.parametrize("operator, sampler", [
    ("and", "ddim"), ("and", "hmc"), ("and", "smc"), ("superdiff_or", "ddpm"),
    ("superdiff_and", "ddim"),
])
def test_every_kind_of_composition_runs_on_sdxl(model, folder, operator, sampler):
    recipe = Recipe(model=folder, concepts=(Concept("a red cube"), Concept("a blue ball")),
                    operator=operator, sampler=SamplerSpec(sampler), steps=3, seed=2)
    first = generate(recipe, model).x_t
    assert first.shape == (1, *model.sample_shape) and torch.isfinite(first).all()
    assert torch.equal(first, generate(recipe, model).x_t)              # deterministic


def test_a_not_row_a_map_a_verdict_and_a_decoded_picture(folder):
    composer = Composer("cpu")
    recipe = Recipe(model=folder, concepts=(Concept("a red cube"),
                                            Concept("a blue ball", negate=True)),
                    sampler=SamplerSpec("ddim"), steps=2, seed=1)
    result = composer.render(recipe, maps=True, lift=True)
    assert result.images[0].shape == (64, 64, 3) and result.conflict_map is not None
    assert [r["row"] for r in result.lift[0]["rows"]] == [1, 2]


@pytest.mark.parametrize("scheduler", ["ddim", "euler"])
def test_one_concept_is_the_sdxl_pipelines_guidance(folder, model, scheduler):
    """One concept, weight 1, 'and' at scale alpha is classifier-free guidance: the final
    latents equal StableDiffusionXLPipeline(guidance_scale=alpha) from the same noise, and
    so do the pictures, to the bit (0 px)."""
    from tests.pipeline_match import assert_same_picture, engine_pixels, pipeline_decode
    from diffusers import StableDiffusionXLPipeline
    from composer.samplers import SCHEDULERS
    steps, scale, seed, samples = 3, 5.0, 3, 2
    final = generate(Recipe(model=folder, concepts=(Concept("a red cube"),),
                            sampler=SamplerSpec(scheduler), steps=steps, scale=scale, seed=seed,
                            num_samples=samples), model).x_t
    pipe = StableDiffusionXLPipeline.from_pretrained(folder, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = SCHEDULERS[scheduler].from_config(model.scheduler_config)
    generator = torch.Generator("cpu").manual_seed(seed)
    noise = torch.randn((samples, *model.sample_shape), generator=generator)
    expected = pipe("a red cube", num_inference_steps=steps, guidance_scale=scale, height=64,
                    width=64, num_images_per_prompt=samples, latents=noise, generator=generator,
                    output_type="latent").images
    assert torch.equal(final, expected), (final - expected).abs().max()
    assert_same_picture(engine_pixels(model, final), pipeline_decode(pipe, expected))
