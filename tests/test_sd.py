"""Stable Diffusion adapter on tiny random-weight pipelines saved to a folder.

No weights are downloaded: composer/models/tiny_sd.py builds the pipeline, saves
it with save_pretrained, and the adapter loads it back through the registry with
HF_HUB_OFFLINE=1, which exercises the real loading code.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from composer.engine import generate, sample                      # noqa: E402
from composer.models import ModelError, load_model, pictures_of   # noqa: E402
from composer.models.sd import SDAdapter, load_sd                 # noqa: E402
from composer.models.tiny_sd import save_tiny_sd                  # noqa: E402
from composer.recipe import Concept, Recipe, SamplerSpec          # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The tiny UNet gains nothing from threads, and on a shared 2-core CPU
    oversubscription makes each call ~10x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """An epsilon pipeline and the same weights as a v-prediction checkpoint."""
    root = tmp_path_factory.mktemp("sd")
    eps = save_tiny_sd(root / "tiny-eps")
    vpred = str(root / "tiny-v")
    shutil.copytree(eps, vpred)
    config_path = os.path.join(vpred, "scheduler", "scheduler_config.json")
    with open(config_path) as f:
        config = json.load(f)
    config["prediction_type"] = "v_prediction"
    with open(config_path, "w") as f:
        json.dump(config, f)
    return {"epsilon": eps, "v_prediction": vpred}


@pytest.fixture(scope="module")
def model(folders):
    return load_model(folders["epsilon"], "cpu")


def recipe(folder, texts=("a red cube",), **kwargs):
    concepts = tuple(Concept(t) if isinstance(t, str) else t for t in texts)
    kwargs.setdefault("steps", 3)
    return Recipe(model=folder, concepts=concepts, **kwargs)


def test_loads_from_folder_through_registry(model):
    assert isinstance(model, SDAdapter)
    assert model.family == "sd" and not model.has_energy
    assert model.sample_shape == (4, 8, 8)
    assert model.dtype == torch.float32 and model.net_dtype == torch.float32
    assert model.scheduler_config["_class_name"] == "DDIMScheduler"
    assert model.defaults["scale"] == 7.5
    assert {"steps", "mcmc_steps", "step_size", "leapfrog_steps", "damping",
            "line_points"} <= set(model.defaults)


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ModelError, match="not a model folder"):
        load_model(str(tmp_path / "nowhere" / "model"), "cpu")


def test_folder_that_is_not_sd_says_what_was_expected(tmp_path):
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(ModelError, match="model_index.json") as err:
        load_model(str(tmp_path), "cpu")
    assert "unet" in str(err.value) and "tokenizer" in str(err.value)


@pytest.mark.parametrize("name", ["sd_xl_base_1.0.safetensors", "models/v1-5-pruned.ckpt"])
def test_a_single_file_checkpoint_says_the_command_that_converts_it(name, tmp_path):
    """Whether the file exists or not (the box tells nothing of the server's files)."""
    existing = tmp_path / name
    existing.parent.mkdir(parents=True, exist_ok=True)
    existing.write_bytes(b"\0" * 8)
    for given in (name, str(existing)):
        with pytest.raises(ModelError, match="single-file checkpoint") as err:
            load_model(given, "cpu")
        assert "from_single_file('FILE').save_pretrained('FOLDER')" in str(err.value)


@pytest.mark.parametrize("found, pipeline", [("StableDiffusionControlNetPipeline", True),
                                             ("StableDiffusionInpaintPipeline", True),
                                             ("StableVideoDiffusionPipeline", True),
                                             ("ControlNetModel", False)])
def test_the_cli_names_the_unsupported_family_it_found(found, pipeline, tmp_path, monkeypatch, capsys):
    """The server's own user sees what the folder holds and what is supported; a visitor
    gets the one message of test_a_visitor_cannot_tell_which_folders_exist."""
    from composer.__main__ import main
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = tmp_path / "model"
    for part in ("unet", "vae", "text_encoder", "tokenizer"):
        (folder / part).mkdir(parents=True)
    (folder / ("model_index.json" if pipeline else "config.json")).write_text(f'{{"_class_name": "{found}"}}')
    path = tmp_path / "recipe.json"
    path.write_text(recipe(str(folder)).to_json())
    assert main(["render", str(path), "--out", str(tmp_path / "out")]) == 2
    error, detail = capsys.readouterr().err.strip().splitlines()
    assert error.startswith("error: model: cannot load") and "not a model folder" in error
    assert detail.startswith("  found: ") and found in detail
    assert ("StableDiffusionXLPipeline, StableDiffusion3Pipeline or FluxPipeline" in detail
            if pipeline else "not a pipeline" in detail)
    sweep = tmp_path / "sweep.json"
    sweep.write_text(json.dumps({"recipe": json.loads(path.read_text()),
                                 "axes": [{"field": "seed", "values": [1, 2]}]}))
    assert main(["sweep", str(sweep), "--out", str(tmp_path / "grid")]) == 2
    assert found in capsys.readouterr().err.strip().splitlines()[-1]      # the sweep's says it too


def test_unknown_hub_id_offline_is_a_model_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError, match="cannot load 'nobody-here/no-such-model'"):
        load_sd("nobody-here/no-such-model", "cpu")


@pytest.mark.parametrize("prediction, scheduler", [
    ("epsilon", "ddim"), ("epsilon", "ddpm"), ("epsilon", "euler"),
    ("epsilon", "euler_ancestral"), ("epsilon", "dpmpp"),
    ("v_prediction", "ddim"), ("v_prediction", "ddpm"), ("v_prediction", "euler"),
    ("v_prediction", "euler_ancestral"), ("v_prediction", "dpmpp")])
def test_single_concept_matches_diffusers_pipeline(folders, scheduler, prediction):
    """One concept, weight 1, 'and' at scale alpha is classifier-free guidance: the final
    latents are StableDiffusionPipeline(guidance_scale=alpha)'s to the bit, and so the
    decoded pictures are its pictures (0 px). A v-prediction checkpoint's too: the
    engine then guides the rows' v and steps on it, as the pipeline does."""
    from diffusers import StableDiffusionPipeline
    from composer.samplers import SCHEDULERS
    from tests.pipeline_match import assert_same_picture, engine_pixels, pipeline_decode
    folder, steps, scale, seed, samples = folders[prediction], 4, 7.5, 3, 2
    adapter = load_model(folder, "cpu")
    final = generate(recipe(folder, sampler=SamplerSpec(scheduler), steps=steps, scale=scale,
                            seed=seed, num_samples=samples), adapter).x_t

    pipe = StableDiffusionPipeline.from_pretrained(folder, local_files_only=True,
                                                   safety_checker=None,
                                                   requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    extra = {"algorithm_type": "dpmsolver++"} if scheduler == "dpmpp" else {}
    pipe.scheduler = SCHEDULERS[scheduler].from_config(pipe.scheduler.config, **extra)
    assert pipe.scheduler.config.prediction_type == prediction
    # The engine's initial noise, from the generator that then drives the
    # stochastic steps (ddpm, euler_ancestral); the pipeline multiplies the
    # latents by init_noise_sigma itself.
    generator = torch.Generator("cpu").manual_seed(seed)
    noise = torch.randn((samples, *adapter.sample_shape), generator=generator)
    expected = pipe("a red cube", num_inference_steps=steps, guidance_scale=scale,
                    num_images_per_prompt=samples, latents=noise, generator=generator,
                    output_type="latent").images
    assert torch.equal(final, expected), (final - expected).abs().max()
    assert_same_picture(engine_pixels(adapter, final), pipeline_decode(pipe, expected))


def test_v_prediction_is_converted_to_epsilon(folders):
    adapter = load_model(folders["v_prediction"], "cpu")
    assert adapter.prediction_type == "v_prediction"
    cond = adapter.encode(("", "a red cube"))
    x = torch.randn(2, *adapter.sample_shape, generator=torch.Generator().manual_seed(0))
    abar, t = 0.3, torch.tensor(700)
    eps, energy = adapter.predict(x, t, abar, cond)
    assert energy is None
    v = adapter.unet(x.repeat(2, 1, 1, 1), t, encoder_hidden_states=cond.embeddings.repeat_interleave(2, 0)).sample
    expected = math.sqrt(abar) * v.reshape(2, *x.shape) + math.sqrt(1 - abar) * x[None]
    assert torch.allclose(eps, expected, atol=1e-5)


def test_all_rows_and_samples_in_one_unet_call(model):
    cond = model.encode(("", "a red cube", "a blue ball"))
    x = torch.randn(2, *model.sample_shape, generator=torch.Generator().manual_seed(1))
    before = model.unet_calls
    eps, _ = model.predict(x, torch.tensor(500), 0.5, cond)
    assert model.unet_calls == before + 1
    assert eps.shape == (3, 2, *model.sample_shape)
    for row in range(3):    # the batched answer equals one call per row
        single = model.encode((cond.texts[row],))
        alone, _ = model.predict(x, torch.tensor(500), 0.5, single)
        assert torch.allclose(eps[row], alone[0], atol=1e-5)


def test_chunking_under_a_memory_budget(folders, monkeypatch):
    monkeypatch.setenv("COMPOSER_SD_MAX_BATCH", "2")
    adapter = load_model(folders["epsilon"], "cpu")
    assert adapter.max_batch == 2
    cond = adapter.encode(("", "a", "b"))
    x = torch.randn(2, *adapter.sample_shape)
    eps, _ = adapter.predict(x, torch.tensor(300), 0.7, cond)
    assert adapter.unet_calls == 3                      # 6 rows in chunks of 2
    adapter.max_batch = None
    whole, _ = adapter.predict(x, torch.tensor(300), 0.7, cond)
    assert torch.allclose(eps, whole, atol=1e-5)


def test_bad_max_batch_env_is_a_model_error(folders, monkeypatch):
    monkeypatch.setenv("COMPOSER_SD_MAX_BATCH", "lots")
    with pytest.raises(ModelError, match="COMPOSER_SD_MAX_BATCH"):
        load_model(folders["epsilon"], "cpu")


def test_out_of_memory_halves_the_chunk_and_retries(model, monkeypatch, caplog):
    """A fake CUDA OOM whenever more than 2 rows go in at once."""
    real = model._forward
    sizes = []

    def forward(latents, timestep, context):
        sizes.append(latents.shape[0])
        if latents.shape[0] > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (injected by the test)")
        return real(latents, timestep, context)

    monkeypatch.setattr(model, "_forward", forward)
    monkeypatch.setattr(model, "max_batch", None)
    cond = model.encode(("", "a red cube", "a blue ball"))
    x = torch.randn(2, *model.sample_shape)
    with caplog.at_level(logging.WARNING, logger="composer.models.sd"):
        eps, _ = model.predict(x, torch.tensor(400), 0.6, cond)
    assert sizes == [6, 3] + [1] * 6 and model.max_batch == 1     # 6 -> 3 -> 1 rows
    assert "out of memory" in caplog.text
    monkeypatch.setattr(model, "_forward", real)
    expected, _ = model.predict(x, torch.tensor(400), 0.6, cond)
    assert torch.allclose(eps, expected, atol=1e-5)

    def always_oom(latents, timestep, context):
        raise torch.OutOfMemoryError("CUDA out of memory (injected by the test)")
    monkeypatch.setattr(model, "_forward", always_oom)
    with pytest.raises(torch.OutOfMemoryError):      # the facade reports it to the user
        model.predict(x, torch.tensor(400), 0.6, cond)


def test_a_vae_out_of_memory_decodes_one_sample_at_a_time_tiled(folders, monkeypatch, caplog):
    """The batch goes through the VAE in one call, as the pipelines decode it; when that
    runs out of memory, each sample goes alone with tiling on, and the pictures come."""
    adapter = load_model(folders["epsilon"], "cpu")
    x0 = torch.randn(3, *adapter.sample_shape, generator=torch.Generator().manual_seed(0))
    whole = adapter.vae_decode(x0)
    real, sizes = adapter.vae.decode, []

    def decode(latents, **kwargs):
        sizes.append(len(latents))
        if len(latents) > 1:
            raise torch.OutOfMemoryError("CUDA out of memory (injected by the test)")
        return real(latents, **kwargs)
    monkeypatch.setattr(adapter.vae, "decode", decode)
    with caplog.at_level(logging.WARNING):
        alone = adapter.vae_decode(x0)
    assert sizes == [3, 1, 1, 1] and adapter.vae.use_tiling
    assert "one by one, tiled" in caplog.text
    torch.testing.assert_close(alone, whole, rtol=0, atol=1e-5)


def test_embeddings_are_cached_per_text(folders):
    adapter = load_model(folders["epsilon"], "cpu")
    base = recipe(folders["epsilon"], texts=("a red cube", "a blue ball"), steps=1)
    generate(base, adapter)
    assert adapter.text_encoder_calls == 3          # "" and both prompts, one call each
    for changed in (dataclasses.replace(base, seed=5, scale=2.0),
                    dataclasses.replace(base, sampler=SamplerSpec("euler"), concepts=(
                        Concept("a red cube", weight=0.3), Concept("a blue ball", negate=True)))):
        generate(changed, adapter)
    assert adapter.text_encoder_calls == 3
    generate(recipe(folders["epsilon"], texts=("a green cone",), steps=1), adapter)
    assert adapter.text_encoder_calls == 4
    assert len(adapter._cache) == 4


def test_long_prompt_warns_about_truncation(model):
    assert model.concept_warnings("a red cube") == []
    limit = model.tokenizer.model_max_length - 2     # tokens between BOS and EOS
    text = "x " * (limit + 9)                         # one token per "x" in the tiny vocab
    (warning,) = model.concept_warnings(text)
    assert "9 tokens will be dropped" in warning and str(limit) in warning


def test_preview_and_decode(model):
    x0 = torch.randn(3, *model.sample_shape)
    picture = pictures_of(model).preview(x0)
    assert picture.dtype.name == "uint8" and picture.shape == (18, 18, 3)   # 2x2 of 8x8, 2-px gutters
    images = pictures_of(model).decode(x0[:2])
    assert len(images) == 2 and all(i.shape == (64, 64, 3) and i.dtype.name == "uint8"
                                    for i in images)


def _evaluations_per_step(name: str, knobs: dict) -> int:
    """UNet calls per noise level, read off composer/samplers.py and engine.py."""
    k, points, leapfrog = knobs["mcmc_steps"], knobs["line_points"], knobs["leapfrog_steps"]
    # MALA and (U-)HMC end on an evaluation at the final x, which the reverse step reuses.
    return {"ula": k + 1, "mala": 1 + k * (1 + points - 2),
            "uhmc": 1 + k * leapfrog, "hmc": 1 + k * leapfrog}.get(name, 1)


@pytest.mark.parametrize("name", ["ddim", "ddpm", "euler", "euler_ancestral", "dpmpp",
                                  "ula", "uhmc", "mala", "hmc"])
def test_every_sampler_runs_on_latents(model, name):
    knobs = {"mcmc_steps": 2, "line_points": 3, "leapfrog_steps": 2}
    spec = SamplerSpec(name, **knobs)
    steps = 2
    before = model.unet_calls
    records = list(sample(recipe(model.name, texts=("a red cube", "a blue ball"),
                                 sampler=spec, steps=steps, scale=3.0, num_samples=2), model))
    assert len(records) == steps
    assert model.unet_calls - before == steps * _evaluations_per_step(name, knobs)
    last = records[-1]
    assert last.x_t.shape == (2, *model.sample_shape) and torch.isfinite(last.x_t).all()
    assert last.concept_x0.shape == (2, 2, *model.sample_shape)
    if name in ("mala", "hmc"):
        assert 0.0 <= last.acceptance <= 1.0
    else:
        assert last.acceptance is None


def test_embedding_cache_is_bounded(folders):
    adapter = load_model(folders["epsilon"], "cpu")
    adapter._cache.size = 3                     # sd.CACHE_SIZE, made small
    adapter.encode(("", "a"))
    adapter.encode(("", "b"))
    adapter.encode(("", "c"))                   # "a" is the least recently used
    assert list(adapter._cache) == ["b", "", "c"]
    calls = adapter.text_encoder_calls
    adapter.encode(("", "c"))
    assert adapter.text_encoder_calls == calls


def test_half_precision_network_keeps_an_fp32_state(folders, model):
    """What CUDA does with fp16, checked here with bf16 on the CPU."""
    half = load_sd(folders["epsilon"], "cpu", dtype=torch.bfloat16)
    assert half.net_dtype == torch.bfloat16 and half.dtype == torch.float32
    cond_half, cond = half.encode(("", "a red cube")), model.encode(("", "a red cube"))
    x = torch.randn(2, *model.sample_shape, generator=torch.Generator().manual_seed(2))
    eps_half, _ = half.predict(x, torch.tensor(600), 0.4, cond_half)
    eps, _ = model.predict(x, torch.tensor(600), 0.4, cond)
    assert eps_half.dtype == torch.float32
    assert (eps_half - eps).abs().max() < 0.1 * eps.abs().max()
    assert pictures_of(half).decode(x[:1])[0].shape == (64, 64, 3)


def test_compile_switch_wraps_the_unet(folders, monkeypatch):
    compiled = []
    monkeypatch.setattr(torch, "compile", lambda module: compiled.append(module) or module)
    monkeypatch.setenv("COMPOSER_COMPILE", "1")
    adapter = load_model(folders["epsilon"], "cpu")
    assert compiled == [adapter.unet]
    monkeypatch.setenv("COMPOSER_COMPILE", "0")
    load_model(folders["epsilon"], "cpu")
    assert len(compiled) == 1


def test_the_conflict_map_streams_on_latents(folders, model):
    from composer.engine import sample
    records = list(sample(recipe(folders["epsilon"], ("a red cube", "a blue ball")), model,
                          maps=True))
    assert all(r.conflict is not None and r.conflict.shape == (1, 8, 8) for r in records)
    assert float(records[-1].conflict.min()) >= 0 and float(records[-1].conflict.max()) <= 1
    picture = pictures_of(model).conflict_picture(records[-1].x0, records[-1].conflict)
    assert picture.shape == (8, 8, 3) and picture.dtype.name == "uint8"


def test_a_visitor_cannot_tell_which_folders_exist(tmp_path, monkeypatch):
    """An existing folder that is not a pipeline, a missing one and an SDXL-looking one
    get the same message: the model box is no way to probe the server's folders."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    sdxl = tmp_path / "xl"
    for part in ("unet", "vae", "text_encoder", "tokenizer"):
        (sdxl / part).mkdir(parents=True)
    (sdxl / "model_index.json").write_text('{"_class_name": "X", "text_encoder_2": []}')
    messages = set()
    for name in (str(tmp_path), str(tmp_path / "nowhere"), str(sdxl), "/root", "/nonexistent-dir"):
        with pytest.raises(ModelError) as err:
            load_model(name, "cpu")
        messages.add(str(err.value).replace(repr(name), "NAME"))
    assert len(messages) == 1, messages
    assert "not a model folder" in messages.pop()


def test_verdicts_by_the_model_on_stable_diffusion_when_asked(folders):
    """The lift path end to end on a tiny random SD: off by default (20 UNet rows per
    sample and row), on request one verdict per sample and row, deterministic; best of
    2 judges and keeps one candidate per sample."""
    from composer.facade import Composer
    composer = Composer("cpu")
    two_rows = recipe(folders["epsilon"], texts=("a red cube", Concept("a blue ball", negate=True)),
                      num_samples=2, seed=1)
    assert composer.render(two_rows).lift == ()
    judged = composer.render(two_rows, lift=True)
    assert len(judged.lift) == 2 and [r["row"] for r in judged.lift[0]["rows"]] == [1, 2]
    assert all(math.isfinite(r["lift"]) for v in judged.lift for r in v["rows"])
    assert composer.render(two_rows, lift=True).lift == judged.lift
    best = composer.render(dataclasses.replace(two_rows, best_of=2))
    assert len(best.images) == 2 and len(best.lift) == 2
    from composer.lift import lift_cost_per_row
    assert composer.plan(two_rows, lift=True).judging == lift_cost_per_row() * 3 * 2   # rows + ""


@pytest.mark.parametrize("operator, sampler", [("superdiff_or", "ddpm"), ("superdiff_and", "ddim"),
                                               ("and", "smc")])
def test_the_2025_methods_run_on_latents(folders, operator, sampler):
    """OR on a score-only Stable Diffusion (SuperDiff's tracked densities), SuperDiff's
    AND and SMC particles, end to end through the facade: one batched UNet call per step
    (K particles in it), each concept's tracked log-density in every record."""
    from composer.facade import Composer
    composer = Composer("cpu")
    two = recipe(folders["epsilon"], texts=("a red cube", "a blue ball"), operator=operator,
                 sampler=SamplerSpec(sampler, particles=2 if sampler == "smc" else None),
                 num_samples=2, seed=1, scale=3.0)
    model = composer.model(two.model)
    before = model.unet_calls
    result = composer.render(two)
    assert model.unet_calls - before == 3 and len(result.images) == 2
    assert all(len(f.log_density) == 2 for f in result.frames)
    assert composer.render(two).images[0].tobytes() == result.images[0].tobytes()
