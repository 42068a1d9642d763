"""The facade and the CLI: recipes in, pictures and files out, clear errors."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from composer.__main__ import main
from composer.facade import Composer, ComposerError, Frame, Result
from composer.media import png_bytes, recipe_from_png, save_animation
from composer.recipe import Recipe, RecipeError
from gaussians import GaussianModel

RECIPE = Recipe.from_dict({"model": "gaussians", "operator": "product", "steps": 6,
                           "num_samples": 32, "sampler": {"name": "hmc"},
                           "concepts": [{"text": "left"}, {"text": "right", "weight": 0.5},
                                        {"text": "up", "muted": True}]})


@pytest.fixture
def composer():
    composer = Composer("cpu")
    composer._models["gaussians"] = GaussianModel()
    return composer


def test_stream_yields_a_frame_per_step_then_the_result(composer):
    items = list(composer.stream(RECIPE))
    frames, result = items[:-1], items[-1]
    assert len(frames) == 6 and all(isinstance(f, Frame) for f in frames)
    assert isinstance(result, Result) and result.frames == tuple(frames)
    assert len(frames[0].concepts) == 2            # the muted row is left out
    assert frames[-1].acceptance is not None
    assert result.recipe.scale == 1.0 and result.recipe.sampler.mcmc_steps == 2
    assert result.points.shape == (32, 2)


def test_same_recipe_renders_the_same_samples(composer):
    assert np.array_equal(composer.render(RECIPE).points, composer.render(RECIPE).points)


def test_bad_concepts_are_composer_errors(composer):
    bad = Recipe.from_dict({**RECIPE.to_dict(), "concepts": [{"text": "cat"}]})
    with pytest.raises(ComposerError, match="unknown concept 'cat'; valid concepts are left, right, up"):
        composer.render(bad)


def test_out_of_memory_is_reported_and_the_next_run_works(composer):
    class Exhausted(GaussianModel):
        def predict(self, *args, **kwargs):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
    composer._models["exhausted"] = Exhausted()
    with pytest.raises(ComposerError, match="out of GPU memory"):
        composer.render(Recipe.from_dict({**RECIPE.to_dict(), "model": "exhausted"}))
    assert composer.render(RECIPE).points.shape == (32, 2)


def test_unreadable_model_path_is_a_composer_error(tmp_path):
    with pytest.raises(ComposerError, match="model"):
        Composer("cpu").model(str(tmp_path / "no" / "such"))


def test_png_carries_its_recipe(tmp_path):
    data = png_bytes(np.zeros((4, 4, 3), np.uint8), RECIPE)
    assert recipe_from_png(data) == RECIPE
    plain = tmp_path / "plain.png"
    save_animation([np.zeros((4, 4, 3), np.uint8)] * 2, tmp_path / "a.gif")
    from PIL import Image
    Image.new("RGB", (4, 4)).save(plain)
    with pytest.raises(RecipeError, match="carries no recipe"):
        recipe_from_png(plain)
    with pytest.raises(RecipeError, match="cannot read the image"):
        recipe_from_png(b"not a png")


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "composer", "render", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def test_cli_renders_toy2d_samples(tmp_path):
    recipe = json.loads(open("assets/recipes/product.json").read())
    recipe.update(steps=10, num_samples=200)
    path = tmp_path / "r.json"
    path.write_text(json.dumps(recipe))
    done = run_cli(path, "--out", tmp_path / "out")
    assert done.returncode == 0, done.stderr
    samples = np.load(tmp_path / "out" / "samples.npy")
    assert samples.shape == (200, 2) and np.isfinite(samples).all()
    written = Recipe.from_json((tmp_path / "out" / "recipe.json").read_text())
    assert written.steps == 10 and written.sampler.step_size is not None
    assert recipe_from_png(tmp_path / "out" / "scatter.png") == written


@pytest.mark.parametrize("content,message", [
    ('{"model": "toy2d-energy", "concepts": [{"text": "ring"}], "steps": 0}', "error: steps: must be in"),
    ('{"model": "toy2d-energy", "concepts": [{"text": "cat"}]}', "error: concepts[0].text: unknown concept 'cat'"),
    ('{"model": "nope", "concepts": [{"text": "cat"}]}', "error: model: unknown model 'nope'"),
    ("{not json", "error: recipe: not valid JSON"),
])
def test_cli_bad_recipe_is_one_line_and_non_zero(tmp_path, capsys, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    assert main(["render", str(path), "--out", str(tmp_path / "out")]) == 2
    stderr = capsys.readouterr().err
    assert stderr.startswith(message) and stderr.count("\n") == 1


def test_toy2d_runs_are_scored_against_ground_truth():
    composer = Composer("cpu")
    product = Recipe.from_json(open("assets/recipes/product.json").read())
    quick = {**product.to_dict(), "steps": 5, "num_samples": 200}
    result = composer.render(Recipe.from_dict(quick))
    assert set(result.metrics) == {"mmd", "mmd2", "in_support"}
    assert 0 <= result.metrics["in_support"] <= 1 and result.metrics["mmd"] >= 0
    other = composer.render(Recipe.from_dict({**quick, "concepts": [{"text": "ring"}]}))
    assert other.metrics == {} and other.images[0].shape[2] == 3
