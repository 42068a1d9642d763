"""SD3 (rectified flow) on a tiny random-weight pipeline saved to a folder and loaded
back offline (composer/models/tiny_sd.py `save_tiny_sd3`): its schedule as a VP one,
its velocity as eps, its rows as the SD3 pipeline conditions them, and every kind of
composition on it."""
from __future__ import annotations

import math
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from composer.engine import generate                              # noqa: E402
from composer.models import load_model                            # noqa: E402
from composer.models.sd3 import SIGMA_EXACT, SD3Adapter, flow_sigma  # noqa: E402
from composer.models.tiny_sd import save_tiny_sd3                 # noqa: E402
from composer.recipe import Concept, Recipe, SamplerSpec          # noqa: E402
from composer.samplers import alphas_cumprod                      # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return save_tiny_sd3(tmp_path_factory.mktemp("sd3") / "tiny-sd3")


@pytest.fixture(scope="module")
def model(folder):
    return load_model(folder, "cpu")


def test_an_sd3_folder_loads_as_sd3(model):
    assert isinstance(model, SD3Adapter) and model.family == "sd"
    assert model.sample_shape == (4, 8, 8)


@pytest.fixture(scope="module")
def t5_folder(tmp_path_factory):
    return save_tiny_sd3(tmp_path_factory.mktemp("sd3-t5") / "tiny-sd3-t5", t5=True)


def test_a_long_prompt_says_what_each_encoder_drops(model, t5_folder):
    """The CLIP pair reads 75 tokens, T5 T5_TOKENS: a prompt between the two is read
    whole by T5 and the note says so; one longer than T5 reads is cut by both. Without
    T5, the CLIP note alone."""
    from composer.models.sd3 import T5_TOKENS
    with_t5 = load_model(t5_folder, "cpu")
    clip = model.tokenizer.model_max_length - 2
    between, beyond = "x " * (clip + 9), "x " * (T5_TOKENS + 10)
    assert with_t5.concept_warnings("a red cube") == []
    (note,) = with_t5.concept_warnings(between)
    assert "CLIP encoders read at most" in note and "T5 reads the whole prompt" in note
    clip_note, t5_note = with_t5.concept_warnings(beyond)
    assert "the CLIP encoders read at most" in clip_note and f"T5 reads at most {T5_TOKENS}" in t5_note
    (alone,) = model.concept_warnings(between)
    assert "CLIP encoders read" in alone and "9 tokens will be dropped" in alone and "T5" not in alone


def test_with_t5_rows_are_conditioned_and_drawn_as_the_pipeline_does(t5_folder):
    """T5's token states follow the CLIP pair's in each row, as StableDiffusion3Pipeline
    puts them, and one concept gives the pipeline's picture."""
    from diffusers import StableDiffusion3Pipeline
    model = load_model(t5_folder, "cpu")
    pipe = StableDiffusion3Pipeline.from_pretrained(t5_folder, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    embeds, negative, pooled, negative_pooled = pipe.encode_prompt(
        "a red cube", None, None, device="cpu", num_images_per_prompt=1,
        do_classifier_free_guidance=True, negative_prompt="")
    cond = model.encode(("", "a red cube"))
    assert cond.embeddings[:, 77:].abs().sum() > 0                       # T5's part is read
    torch.testing.assert_close(cond.embeddings, torch.cat([negative, embeds]))
    torch.testing.assert_close(cond.pooled, torch.cat([negative_pooled, pooled]))
    assert_the_pipelines_picture(t5_folder, model, pipe)


def test_its_vp_schedule_is_the_flow_schedulers_own(folder, model):
    """Each training level's abar has the noise-to-signal ratio of the flow scheduler's
    shifted sigma there (SD3: shift 3), up to the last, capped below s = 1."""
    from diffusers import FlowMatchEulerDiscreteScheduler
    flow = FlowMatchEulerDiscreteScheduler.from_pretrained(folder, subfolder="scheduler")
    sigmas = flow.sigmas.flip(0).double()                         # levels 1 .. 1000
    abar = alphas_cumprod(model.scheduler_config).double()
    expected = (1 - sigmas) ** 2 / ((1 - sigmas) ** 2 + sigmas ** 2)
    exact = sigmas <= SIGMA_EXACT                                 # all but the top levels
    assert int(exact.sum()) > 950
    torch.testing.assert_close(abar[exact], expected[exact], rtol=1e-4, atol=1e-7)
    assert 0 < float(abar[-1]) < 1e-5 and bool((abar[1:] < abar[:-1]).all())   # still falling
    for a in (0.999, 0.5, 0.01):
        s = flow_sigma(a)
        assert (1 - s) ** 2 / ((1 - s) ** 2 + s ** 2) == pytest.approx(a)


def test_an_exact_velocity_gives_back_the_noise(model, monkeypatch):
    """If the transformer answered with the true velocity eps - x0 of the flow point,
    predict must return the eps the VP point was made with: the scale between x_t and
    x_s and the eps = x_s + (1 - s) v conversion, at every level."""
    g = torch.Generator().manual_seed(4)
    x0 = torch.randn((2, *model.sample_shape), generator=g)
    eps = torch.randn((2, *model.sample_shape), generator=g)
    abars = alphas_cumprod(model.scheduler_config)
    for t in (10, 400, 900):
        abar = float(abars[t])
        s = flow_sigma(abar)

        def exact(latents, timestep, inputs, s=s):
            assert torch.allclose(timestep, torch.full_like(timestep, 1000 * s))
            noise = (latents - (1 - s) * x0.repeat(2, 1, 1, 1)) / s
            return noise - x0.repeat(2, 1, 1, 1)
        monkeypatch.setattr(model, "_forward", exact)
        x_t = math.sqrt(abar) * x0 + math.sqrt(1 - abar) * eps
        out, _ = model.predict(x_t, t, abar, model.encode(("", "a red cube")))
        torch.testing.assert_close(out, eps.expand(2, *eps.shape), rtol=1e-4, atol=1e-4)


def test_rows_are_conditioned_as_the_sd3_pipeline_conditions_them(folder, model):
    from diffusers import StableDiffusion3Pipeline
    pipe = StableDiffusion3Pipeline.from_pretrained(folder, local_files_only=True,
                                                    text_encoder_3=None, tokenizer_3=None)
    embeds, negative, pooled, negative_pooled = pipe.encode_prompt(
        "a red cube", None, None, device="cpu", num_images_per_prompt=1,
        do_classifier_free_guidance=True, negative_prompt="")
    cond = model.encode(("", "a red cube"))
    torch.testing.assert_close(cond.embeddings, torch.cat([negative, embeds]))
    torch.testing.assert_close(cond.pooled, torch.cat([negative_pooled, pooled]))


@pytest.mark.parametrize("operator, sampler", [
    ("and", "ddim"), ("and", "mala"), ("and", "smc"), ("superdiff_or", "ddpm"),
])
def test_every_kind_of_composition_runs_on_sd3(model, folder, operator, sampler):
    recipe = Recipe(model=folder, concepts=(Concept("a red cube"), Concept("a blue ball")),
                    operator=operator, sampler=SamplerSpec(sampler), steps=3, seed=2)
    first = generate(recipe, model).x_t
    assert first.shape == (1, *model.sample_shape) and torch.isfinite(first).all()
    assert torch.equal(first, generate(recipe, model).x_t)              # deterministic


def test_flow_euler_runs_and_with_a_not_row_and_its_conflict_map(folder):
    """The pipeline's own sampler composes too: AND with a NOT row, every sample decoded,
    the conflict map drawn from the velocities, and the same pictures again."""
    import numpy as np
    from composer.facade import Composer
    composer = Composer("cpu")
    recipe = Recipe(model=folder, concepts=(Concept("a red cube"),
                                            Concept("a blue ball", negate=True)),
                    sampler=SamplerSpec("flow_euler"), steps=3, seed=1, num_samples=2)
    result = composer.render(recipe, maps=True)
    assert len(result.images) == 2 and result.images[0].shape == (64, 64, 3)
    assert result.conflict_map is not None and np.isfinite(result.conflict_map).all()
    assert result.conflict_map.max() > 0                       # the NOT row pushes somewhere
    again = composer.render(recipe)
    assert all(np.array_equal(a, b) for a, b in zip(result.images, again.images))


@pytest.mark.parametrize("operator, words", [
    ("product", "only 'and' does"), ("superdiff_or", "use the sampler ddpm, ddim or smc")])
def test_flow_euler_refuses_rules_that_velocities_cannot_carry(folder, operator, words):
    """A product's coefficients need not sum to 1, so its velocities do not combine as its
    eps do (and at s = 1 its velocity is undefined); SuperDiff tracks VP densities."""
    from composer.facade import Composer, ComposerError
    recipe = Recipe(model=folder, concepts=(Concept("a red cube"), Concept("a blue ball")),
                    operator=operator, sampler=SamplerSpec("flow_euler"), steps=3)
    with pytest.raises(ComposerError, match=words):
        Composer("cpu").plan(recipe)


def test_flow_euler_on_a_model_without_a_flow_names_ddim():
    from composer.facade import Composer, ComposerError
    recipe = Recipe(model="shapes-exact", concepts=(Concept("red circle"),),
                    sampler=SamplerSpec("flow_euler"))
    with pytest.raises(ComposerError, match="flow_euler steps flow-matching models .* use ddim"):
        Composer("cpu").plan(recipe)


def test_one_concept_is_the_sd3_pipelines_picture(folder, model):
    """One concept at scale alpha is classifier-free guidance on the velocity: on
    flow_euler the StableDiffusion3Pipeline's own run for the seed, to the bit; on DDIM
    (the VP form, whose step moves to the same (1 - s') x0 + s' eps) the pipeline's run
    on the engine's levels from the engine's noise, within round-off."""
    from diffusers import StableDiffusion3Pipeline
    pipe = StableDiffusion3Pipeline.from_pretrained(folder, local_files_only=True,
                                                    text_encoder_3=None, tokenizer_3=None)
    pipe.set_progress_bar_config(disable=True)
    assert_the_pipelines_picture(folder, model, pipe)


def assert_the_pipelines_picture(folder, model, pipe) -> None:
    from tests.pipeline_match import (assert_near_picture, assert_same_picture, engine_levels,
                                      engine_pixels, flow_start, pipeline_decode, pipeline_pixels,
                                      unshifted)
    steps, scale, seed, samples = 4, 5.0, 3, 2

    def engine(sampler: str) -> torch.Tensor:
        return generate(Recipe(model=folder, concepts=(Concept("a red cube"),),
                               sampler=SamplerSpec(sampler), steps=steps, scale=scale, seed=seed,
                               num_samples=samples), model).x_t
    final = engine("flow_euler")
    latents = pipe("a red cube", num_inference_steps=steps, guidance_scale=scale, height=64,
                   width=64, num_images_per_prompt=samples, output_type="latent",
                   generator=torch.Generator().manual_seed(seed)).images
    assert torch.equal(final, latents), (final - latents).abs().max()
    assert_same_picture(engine_pixels(model, final), pipeline_decode(pipe, latents))
    levels = engine_levels(model, steps)
    noise = torch.randn((samples, *model.sample_shape), generator=torch.Generator().manual_seed(seed))
    out = pipe("a red cube", num_inference_steps=steps, guidance_scale=scale, height=64, width=64,
               num_images_per_prompt=samples, latents=flow_start(noise, levels[0]),
               sigmas=unshifted(levels, pipe.scheduler.config.shift), output_type="np").images
    assert_near_picture(engine_pixels(model, engine("ddim")), pipeline_pixels(out))