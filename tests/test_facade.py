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
    with pytest.raises(RecipeError, match="not a PNG"):
        recipe_from_png(b"not a png")
    with pytest.raises(RecipeError, match="cannot read the image"):
        recipe_from_png(tmp_path / "missing.png")


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
    assert set(result.metrics) == {"mmd", "mmd2", "in_support", "in ring", "in bar"}
    assert 0 <= result.metrics["in_support"] <= 1 and result.metrics["mmd"] >= 0
    # Samples of the product lie in both factors' supports at least as often as in the target's.
    assert min(result.metrics["in ring"], result.metrics["in bar"]) >= result.metrics["in_support"]
    other = composer.render(Recipe.from_dict({**quick, "concepts": [{"text": "ring"}]}))
    assert set(other.metrics) == {"in ring"} and other.images[0].shape[2] == 3
    assert 0 <= other.metrics["in ring"] <= 1


def _cli_fuzz_files(folder):
    """About 50 recipe files a user or an attacker might hand the CLI."""
    rng = np.random.default_rng(0)
    good = open("assets/recipes/shapes_two_objects.json").read()
    files = {"empty": b"", "utf16": good.encode("utf-16"), "latin1": "{\"model\": \"caf\xe9\"}".encode("latin-1"),
             "nul": b"\x00" * 100, "deep": b"[" * 20000, "huge_int": b'{"seed": ' + b"9" * 5000 + b"}",
             "newline_key": b'{"a\\nb": 1}', "big_model": b'{"model": "' + b"x" * 100000 + b'"}',
             "array": b"[]", "string": b'"recipe"', "float_steps": good.replace('"steps": 50', '"steps": 2.5').encode()}
    for i in range(40):
        files[f"random_{i}"] = rng.integers(0, 256, size=int(rng.integers(1, 400)), dtype=np.uint8).tobytes()
    paths = []
    for name, content in files.items():
        path = folder / f"{name}.json"
        path.write_bytes(content)
        paths.append(path)
    return paths


def test_cli_fuzz_every_bad_file_is_one_error_line(tmp_path, capsys):
    paths = _cli_fuzz_files(tmp_path)
    assert len(paths) >= 50
    for path in paths:
        assert main(["render", str(path), "--out", str(tmp_path / "out")]) == 2, path.name
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and len(err) < 400, (path.name, err)


def test_cli_bad_device_out_and_endless_input_are_one_line(tmp_path, capsys):
    good = tmp_path / "good.json"
    good.write_text('{"model": "toy2d-energy", "concepts": [{"text": "ring"}], "steps": 2, "num_samples": 4}')
    blocker = tmp_path / "file"
    blocker.write_text("")
    cases = [["render", str(good), "--out", str(blocker)],
             ["render", str(good), "--out", str(tmp_path / "o"), "--device", "tpu"],
             ["render", "/dev/zero", "--out", str(tmp_path / "o")],
             ["render", str(tmp_path / "missing.json"), "--out", str(tmp_path / "o")]]
    if not torch.cuda.is_available():
        cases.append(["render", str(good), "--out", str(tmp_path / "o"), "--device", "cuda"])
    for argv in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1, (argv, err)


def test_model_path_spellings_share_one_cache_entry_and_old_models_are_dropped(tmp_path, monkeypatch):
    import composer.facade as facade
    loads = []
    monkeypatch.setattr(facade, "load_model", lambda name, device: loads.append(name) or GaussianModel())
    folder = tmp_path / "model"
    folder.mkdir()
    composer = Composer("cpu", max_models=2)
    for spelling in (str(folder), f"{folder}/", f"{folder}/.", f"/{folder}", f"{folder}/../model"):
        composer.model(spelling)
    assert len(loads) == 1
    for name in ("other-a", "other-b"):
        composer.model(name)
    assert len(composer._models) == 2 and facade.model_key(str(folder)) not in composer._models
    composer.model(str(folder))                 # dropped, so loaded again
    assert len(loads) == 4


def test_a_slow_load_does_not_block_runs_on_loaded_models(monkeypatch):
    import threading
    import composer.facade as facade
    release = threading.Event()

    def slow_load(name, device):
        release.wait(10)
        return GaussianModel()
    composer = Composer("cpu")
    composer._models["gaussians"] = GaussianModel()
    monkeypatch.setattr(facade, "load_model", slow_load)
    loader = threading.Thread(target=composer.model, args=("slow",))
    loader.start()
    try:
        assert composer.model("gaussians") is composer._models["gaussians"]   # not waiting
        assert loader.is_alive()
    finally:
        release.set()
        loader.join()


def _png_with_chunks(*chunks: tuple[bytes, bytes], width: int = 1, height: int = 1) -> bytes:
    import struct
    import zlib
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + b"".join(chunk(k, b) for k, b in chunks) + chunk(b"IEND", b""))


def test_png_import_reads_chunks_without_decoding_pixels():
    """A 12000x12000 header costs nothing: pixels are never decoded."""
    import tracemalloc
    import zlib
    text = RECIPE.to_json(indent=None).encode()
    huge = _png_with_chunks((b"tEXt", b"composer-recipe\0" + text), (b"IDAT", zlib.compress(b"\0" * 1000)),
                            width=12000, height=12000)
    tracemalloc.start()
    assert recipe_from_png(huge) == RECIPE
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 5 * 2**20
    compressed = _png_with_chunks((b"iTXt", b"composer-recipe\0\1\0\0\0" + zlib.compress(text)))
    assert recipe_from_png(compressed) == RECIPE
    assert recipe_from_png(_png_with_chunks((b"zTXt", b"composer-recipe\0\0" + zlib.compress(text)))) == RECIPE


@pytest.mark.parametrize("data,message", [
    (b"GIF89a" + b"\0" * 100, "not a PNG"),
    (_png_with_chunks((b"tEXt", b"composer-recipe\0{\"model\": 1}")), "model: must name a model"),
    (_png_with_chunks((b"tEXt", b"composer-recipe\0" + b"[" * 50000)), "nested too deeply|not valid JSON"),
    (_png_with_chunks((b"zTXt", b"composer-recipe\0\0" + __import__("zlib").compress(b" " * 10**7))),
     "larger than 64 kB"),
    (_png_with_chunks((b"zTXt", b"composer-recipe\0\0not zlib")), "corrupt"),
    (_png_with_chunks((b"acTL", b"\0\0\0\2\0\0\0\0")), "carries no recipe"),
    (b"\x89PNG\r\n\x1a\n" + b"\0" * (17 * 2**20), "larger than 16 MB"),
])
def test_png_payloads_are_refused_clearly(data, message):
    with pytest.raises(RecipeError, match=message):
        recipe_from_png(data)
