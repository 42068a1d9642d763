"""Single-file checkpoints (.safetensors in the original layout, as A1111 and ComfyUI keep
them) load through diffusers' from_single_file, offline, with the family's configuration
from the hub cache; without it, or for a file this app cannot run, one message with the
command that converts it. The file is the tiny SD 1.x pipeline written back in that
layout (tests/single_file.py), so a render from it is the folder's render."""
from __future__ import annotations

import os
import shutil

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from composer.engine import generate                                      # noqa: E402
from composer.models import load_model                                    # noqa: E402
from composer.models.base import ModelError                               # noqa: E402
from composer.models.sd import SDAdapter                                  # noqa: E402
from composer.models.tiny_sd import save_tiny_sd                          # noqa: E402
from composer.recipe import Concept, Recipe, SamplerSpec                  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore")
# Where diffusers looks for an SD 1.x file's configuration (its DIFFUSERS_DEFAULT_PIPELINE_PATHS)
SD1_CONFIG_REPO = "stable-diffusion-v1-5/stable-diffusion-v1-5"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return save_tiny_sd(tmp_path_factory.mktemp("single") / "tiny-sd")


@pytest.fixture(scope="module")
def checkpoint(folder, tmp_path_factory):
    from diffusers import StableDiffusionPipeline
    from safetensors.torch import save_file
    from tests.single_file import ldm_checkpoint
    pipe = StableDiffusionPipeline.from_pretrained(folder, local_files_only=True, safety_checker=None,
                                                   requires_safety_checker=False)
    path = tmp_path_factory.mktemp("file") / "tiny-sd.safetensors"
    save_file(ldm_checkpoint(pipe), str(path))
    return str(path)


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An empty hub cache for this test (the machine's own is never read)."""
    import huggingface_hub.constants
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    return tmp_path / "hub"


def cache_configs(cache, folder: str, repo: str) -> None:
    """Put a folder's configs and tokenizer in the cache as the hub's snapshot of `repo`
    would leave them (no weights: from_single_file reads only these)."""
    entry = cache / f"models--{repo.replace('/', '--')}"
    revision = "0" * 40
    shutil.copytree(folder, entry / "snapshots" / revision,
                    ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
    (entry / "refs").mkdir()
    (entry / "refs" / "main").write_text(revision)


def test_the_original_layout_converts_back_to_every_tensor(folder):
    """diffusers' own conversion of tests/single_file.py's checkpoint gives back each
    UNet and VAE tensor under its own name, bit for bit."""
    from diffusers import StableDiffusionPipeline
    from diffusers.loaders.single_file_utils import (convert_ldm_unet_checkpoint,
                                                     convert_ldm_vae_checkpoint)
    from tests.single_file import ldm_checkpoint
    pipe = StableDiffusionPipeline.from_pretrained(folder, local_files_only=True, safety_checker=None,
                                                   requires_safety_checker=False)
    original = ldm_checkpoint(pipe)
    for part, convert in ((pipe.unet, convert_ldm_unet_checkpoint),
                          (pipe.vae, convert_ldm_vae_checkpoint)):
        back, want = convert(original, part.config), part.state_dict()
        assert set(back) == set(want)
        assert all(torch.equal(back[k].reshape(want[k].shape), want[k]) for k in want)


def test_a_safetensors_file_loads_offline_and_renders_the_folders_picture(
        folder, checkpoint, hub_cache):
    cache_configs(hub_cache, folder, SD1_CONFIG_REPO)
    from_file = load_model(checkpoint, "cpu")
    assert isinstance(from_file, SDAdapter) and from_file.sample_shape == (4, 8, 8)
    recipe = Recipe(model=checkpoint, concepts=(Concept("a red cube"), Concept("a cat", negate=True)),
                    sampler=SamplerSpec("ddim"), steps=3, seed=4)
    from_folder = load_model(folder, "cpu")
    assert torch.equal(generate(recipe, from_file).x_t,
                       generate(Recipe.from_dict({**recipe.to_dict(), "model": folder}), from_folder).x_t)


def test_without_the_configuration_the_message_says_how_to_convert(checkpoint, hub_cache):
    with pytest.raises(ModelError, match="single-file checkpoint that this server could not read") as err:
        load_model(checkpoint, "cpu")
    assert "from_single_file('FILE').save_pretrained('FOLDER')" in str(err.value)
    assert "'v1' checkpoint; the library said" in err.value.detail


def test_a_file_of_another_family_is_named_in_the_detail_only(tmp_path, hub_cache):
    """An inpainting UNet's file (9 input channels): the same message for the visitor; the
    detail, for the server's own user, names the family found and those supported."""
    from safetensors.torch import save_file
    path = tmp_path / "inpaint.safetensors"
    save_file({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(8, 9, 3, 3)}, str(path))
    with pytest.raises(ModelError, match="could not read") as err:
        load_model(str(path), "cpu")
    assert "'inpainting' checkpoint" in err.value.detail and "xl_base" in err.value.detail
    assert "inpainting" not in str(err.value)


def test_a_pickled_checkpoint_is_never_opened(tmp_path, monkeypatch):
    """Unpickling runs code: a .ckpt gets the message without being read."""
    path = tmp_path / "model.ckpt"
    path.write_bytes(b"not a pickle")
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load was called"))
    with pytest.raises(ModelError, match="could not read") as err:
        load_model(str(path), "cpu")
    assert "only .safetensors files are opened" in err.value.detail


def test_the_cli_renders_from_the_file_and_says_why_one_is_not_read(folder, checkpoint, hub_cache,
                                                                    tmp_path, capsys):
    from composer.__main__ import main
    recipe = tmp_path / "recipe.json"
    recipe.write_text(Recipe(model=checkpoint, concepts=(Concept("a red cube"),), steps=2).to_json())
    assert main(["render", str(recipe), "--out", str(tmp_path / "none")]) != 0
    assert "found: a 'v1' checkpoint; the library said" in capsys.readouterr().err
    cache_configs(hub_cache, folder, SD1_CONFIG_REPO)
    assert main(["render", str(recipe), "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "image_00.png").is_file()
