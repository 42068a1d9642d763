"""The embedded shapes model: data, judge, adapter, training code, composition."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from composer.engine import generate
from composer.plan import prepare
from composer.models import load_model, pictures_of, scoring_of
from composer.models.base import ModelError
from composer.models.shapes import ShapesModel
from composer.recipe import Concept, Recipe, SamplerSpec
from composer.pictures import to_uint8
from composer.shapes import data
from composer.shapes import judge as judge_module
from composer.shapes.judge import judge, look

ROOT = Path(__file__).resolve().parents[1]


def object_words(scenes: data.Scenes, b: int, k: int) -> dict[str, str]:
    """The words of object k of scene b."""
    return {"colour": list(data.COLOURS)[int(scenes.colour[b, k])],
            "shape": data.SHAPES[int(scenes.shape[b, k])],
            "column": data.COLUMNS[int(scenes.column[b, k])],
            "row": data.ROWS[int(scenes.row[b, k])]}


def slots_to_caption(slots) -> str:
    """Caption slots (composer.shapes.data.sample_slots) as the caption they name."""
    return " ".join(data.KIND_WORDS[k][int(s)] for k, s in zip(data.KINDS, slots) if int(s) >= 0)


@pytest.fixture(scope="module")
def model():
    return load_model("shapes", "cpu")


def test_renderer_is_deterministic_for_a_seed():
    def draw(seed):
        g = torch.Generator().manual_seed(seed)
        scenes = data.sample_scenes(16, g)
        return data.render(scenes), data.sample_slots(scenes, g)
    (a, sa), (b, sb), (c, _) = draw(4), draw(4), draw(5)
    assert torch.equal(a, b) and torch.equal(sa, sb)
    assert not torch.equal(a, c)
    assert a.shape == (16, 3, 32, 32) and a.min() >= -1 and a.max() <= 1


def test_scenes_keep_objects_in_distinct_cells():
    scenes = data.sample_scenes(200, torch.Generator().manual_seed(0))
    for b in range(200):
        cells = scenes.cell[b][scenes.present[b]].tolist()
        assert len(cells) == len(set(cells)) and 1 <= len(cells) <= data.MAX_OBJECTS


def _renders(n: int, seed: int):
    scenes = data.sample_scenes(n, torch.Generator().manual_seed(seed))
    return scenes, data.render(scenes)


def test_judge_agrees_with_renderer_and_calls_renders_clean():
    scenes, images = _renders(400, 11)
    images = to_uint8(images)
    agree = clean = 0
    for b in range(400):
        truth = sorted(tuple(o.values()) for o in scenes.objects(b))
        scene = look(images[b])
        agree += truth == sorted(tuple(o.as_dict().values()) for o in scene.objects)
        clean += scene.clean and scene.stray == 0
    assert agree / 400 >= 0.99 and clean == 400


def test_judge_tolerates_soft_edges_and_faint_noise():
    """The calibration behind MAX_STRAY: a 0.5 px blur plus noise of 8/255 keeps
    renders clean (a sampler's output is never exactly hard-edged)."""
    from scipy import ndimage
    _, images = _renders(200, 12)
    soft = torch.from_numpy(ndimage.gaussian_filter(images.numpy(), sigma=(0, 0, 0.5, 0.5)))
    soft = soft + torch.randn(soft.shape, generator=torch.Generator().manual_seed(0)) * 8 / 127.5
    strays = [look(image).stray for image in to_uint8(soft)]
    clean = [look(image).clean for image in to_uint8(soft)]
    assert max(strays) <= judge_module.MAX_STRAY and sum(clean) / 200 >= 0.99


def _with_fragments(image: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` 2x2 fragments of palette colours on free background, apart from objects."""
    from scipy import ndimage
    out = image.copy()
    occupied = ndimage.binary_dilation(image.sum(-1) > 0, iterations=2)
    palette = list(data.COLOURS.values())
    placed = 0
    while placed < count:
        y, x = rng.integers(0, 31, size=2)
        if occupied[y:y + 2, x:x + 2].any():
            continue
        out[y:y + 2, x:x + 2] = palette[rng.integers(len(palette))]
        occupied[max(0, y - 2):y + 4, max(0, x - 2):x + 4] = True
        placed += 1
    return out


def test_judge_rejects_clutter_that_the_caption_check_accepts():
    scenes, images = _renders(100, 13)
    images = to_uint8(images)
    rng = np.random.default_rng(0)
    for b in range(100):
        words = object_words(scenes, b, 0)
        caption = f"{words['colour']} {words['shape']}"
        cluttered = _with_fragments(images[b], 3, rng)
        verdict = judge(cluttered, [caption])
        assert verdict["captions_hold"] and not verdict["clean"] and not verdict["correct"]
        assert judge(images[b], [caption])["correct"]


def test_judge_rejects_noise_and_the_first_shipped_model():
    rng = np.random.default_rng(1)
    noise = rng.integers(0, 256, size=(50, 32, 32, 3), dtype=np.uint8)
    gaussian = to_uint8(torch.randn(50, 3, 32, 32, generator=torch.Generator().manual_seed(1)))
    assert not any(look(image).clean for image in np.concatenate([noise, gaussian]))
    # 24 samples of the v1 weights (3,808 steps) on the default recipes: clutter.
    samples = np.load(ROOT / "tests/data/shapes_v1_samples.npz")["images"]
    assert len(samples) == 24 and not any(look(image).clean for image in samples)
    assert look(np.zeros((32, 32, 3), np.uint8)).clean is False    # an empty scene is no scene


def test_judge_checks_captions_and_negations():
    g = torch.Generator().manual_seed(2)
    scenes = data.sample_scenes(1, g, min_objects=1, max_objects=1)
    image = to_uint8(data.render(scenes))[0]
    words = object_words(scenes, 0, 0)
    caption = f"{words['colour']} {words['shape']}"
    other = next(c for c in data.COLOURS if c != words["colour"])
    assert judge(image, [caption])["correct"]
    assert not judge(image, [f"{other} {words['shape']}"])["correct"]
    assert judge(image, [caption], [other])["correct"]
    assert not judge(image, [caption], [words["column"]])["correct"]


def test_captions_parse_and_unknown_words_list_the_vocabulary(model):
    assert data.caption_slots("Red circle") == data.caption_slots("circle red")
    assert model.vocabulary == data.VOCABULARY and "red" in model.vocabulary
    with pytest.raises(ModelError) as err:
        model.check_concept("purple circle")
    assert "purple" in str(err.value)
    assert all(word in str(err.value) for word in data.VOCABULARY)
    with pytest.raises(ModelError, match="two colours"):
        model.check_concept("red blue")
    model.check_concept("blue square top")


def test_engine_reports_unknown_word_with_the_row():
    from composer.recipe import RecipeError
    recipe = Recipe(model="shapes", concepts=(Concept("red"), Concept("dog")))
    with pytest.raises(RecipeError, match=r"concepts\[1\]\.text: unknown word 'dog'"):
        prepare(recipe, load_model("shapes", "cpu"))


def test_shipped_weights_load_offline_and_predict_batched(model):
    assert model.family == "shapes" and not model.has_energy
    assert (ROOT / "assets/shapes/shapes.safetensors").stat().st_size <= 25 * 2 ** 20
    cond = model.encode(("", "red", "circle left"))
    assert cond.shape[0] == 3 and torch.equal(model.encode(("red",))[0], cond[1])
    x = torch.randn(5, *model.sample_shape, generator=torch.Generator().manual_seed(0))
    eps, energy = model.predict(x, torch.tensor(500), 0.5, cond)
    assert eps.shape == (3, 5, 3, 32, 32) and energy is None
    # Row b of the batched answer equals a call for that row alone.
    alone, _ = model.predict(x, 500, 0.5, cond[1:2])
    assert torch.allclose(alone[0], eps[1], atol=1e-4)


def test_model_denoises_real_scenes(model):
    """The shipped weights have learned the data: eps error far below the trivial 1.0."""
    from composer.samplers import alphas_cumprod
    from composer.shapes.model import SCHEDULER_CONFIG
    g = torch.Generator().manual_seed(3)
    scenes = data.sample_scenes(32, g)
    x0 = data.render(scenes)
    captions = [slots_to_caption(s) for s in data.sample_slots(scenes, g, p_empty=0.0)]
    abar = alphas_cumprod(SCHEDULER_CONFIG)
    t = 300
    noise = torch.randn(x0.shape, generator=g)
    xt = abar[t].sqrt() * x0 + (1 - abar[t]).sqrt() * noise
    eps = torch.stack([model.predict(xt[i:i + 1], t, float(abar[t]), model.encode((c,)))[0][0, 0]
                       for i, c in enumerate(captions)])
    assert torch.mean((eps - noise) ** 2) < 0.3


def test_the_unshipped_energy_variant_is_not_offered():
    from composer.facade import Composer
    assert "shapes-energy" not in Composer.model_names()
    with pytest.raises(ModelError, match="unknown model 'shapes-energy'"):
        load_model("shapes-energy", "cpu")


def test_missing_weights_say_how_to_train(tmp_path):
    with pytest.raises(ModelError, match="composer.shapes.train"):
        ShapesModel(tmp_path)


def test_few_step_composition_is_deterministic(model):
    recipe = Recipe(model="shapes", concepts=(Concept("red"), Concept("circle"),
                                               Concept("blue", negate=True)),
                    sampler=SamplerSpec(name="ddim"), steps=4, seed=7, num_samples=2)
    a, b = generate(recipe, model), generate(recipe, model)
    assert torch.equal(a.x_t, b.x_t)
    images = pictures_of(model).decode(a.x_t)
    assert len(images) == 2 and images[0].shape == (32, 32, 3) and images[0].dtype == np.uint8
    grid = pictures_of(model).preview(a.x0)
    assert grid.dtype == np.uint8 and grid.shape == (32, 66, 3)
    assert a.concept_x0.shape == (3, 2, 3, 32, 32)


def test_mcmc_sampler_runs_on_shapes(model):
    recipe = Recipe(model="shapes", concepts=(Concept("green"),),
                    sampler=SamplerSpec(name="hmc", mcmc_steps=1, leapfrog_steps=1),
                    steps=2, seed=1, num_samples=2)
    record = generate(recipe, model)
    assert torch.isfinite(record.x_t).all() and record.acceptance is not None


@pytest.mark.parametrize("name", ["shapes_two_objects", "shapes_not", "shapes_sampler_compare"])
def test_example_recipes_are_valid(model, name):
    recipe = Recipe.from_json((ROOT / f"assets/recipes/{name}.json").read_text())
    assert recipe.model == "shapes"
    prepare(recipe, model)


def test_training_runs_and_resumes(tmp_path):
    from composer.shapes.train import main
    small = ["--out", str(tmp_path / "out"), "--run-dir", str(tmp_path / "run"), "--dim", "32",
             "--depth", "1", "--heads", "2", "--batch", "8", "--log-every", "1", "--warmup", "2"]
    first = main(small + ["--steps", "2"])
    assert first["training"]["steps"] == 2
    second = main(small + ["--steps", "3", "--resume"])
    assert second["training"]["steps"] == 3
    assert (tmp_path / "out" / "shapes.safetensors").exists()
    assert (tmp_path / "out" / "loss.png").exists()
    meta = json.loads((tmp_path / "out" / "config.json").read_text())
    adapter = ShapesModel(tmp_path / "out")
    assert meta["model"]["dim"] == 32 and adapter.encode(("red",)).shape == (1, 1, 32)


def test_stem_and_text_token_variants_train_export_and_load(tmp_path):
    from composer.shapes.train import main
    main(["--out", str(tmp_path / "out"), "--run-dir", str(tmp_path / "run"), "--dim", "32",
          "--depth", "1", "--heads", "2", "--batch", "4", "--steps", "2", "--warmup", "1",
          "--stem", "8", "--text-tokens", "--snapshot-every", "2"])
    adapter = ShapesModel(tmp_path / "out")
    snapshot = ShapesModel(tmp_path / "run" / "snapshots" / "step_2")
    assert all(torch.equal(a, b) for a, b in zip(snapshot.net.state_dict().values(),
                                                 adapter.net.state_dict().values()))
    assert adapter.net.config.stem == 8 and adapter.net.config.text_tokens
    cond = adapter.encode(("", "red circle", "left"))
    assert cond.shape == (3, 5, 32)          # pooled vector + one token per caption slot
    eps, _ = adapter.predict(torch.zeros(2, 3, 32, 32), 10, 0.9, cond)
    assert eps.shape == (3, 2, 3, 32, 32) and torch.isfinite(eps).all()


def test_evaluation_rows_per_sample_match_plain_engine_runs(model):
    """The harness's per-sample captions give exactly what the engine gives for
    each composition on its own (same seed, same noise for a batch of one)."""
    from composer.evaluation import PerSample, make_compositions, run_task
    comps = make_compositions("placed", "not", 3, seed=5)
    assert all(len(c.positives[0].split()) == 4 and c.negatives for c in comps)
    assert make_compositions("free", "and3", 3, seed=5) == make_compositions("free", "and3", 3, seed=5)
    comp = comps[0]
    recipe = Recipe(model="shapes", concepts=(Concept("c0"), Concept("c1", negate=True)),
                    sampler=SamplerSpec(name="ddim"), steps=3, seed=9, num_samples=1)
    wrapped = generate(recipe, PerSample(model, [comp.positives + comp.negatives]))
    plain = generate(Recipe(model="shapes", concepts=(Concept(comp.positives[0]),
                                                      Concept(comp.negatives[0], negate=True)),
                            sampler=SamplerSpec(name="ddim"), steps=3, seed=9, num_samples=1), model)
    assert torch.allclose(wrapped.x_t, plain.x_t, atol=1e-5)
    result = run_task(model, "free", "and2", SamplerSpec(name="ddim"), 2, 2, None, repeats=2, keep=1)
    assert result["samples"] == 4 and 0 <= result["accuracy"] <= result["caption_accuracy"]
    assert len(result["examples"]) == 1


def test_runs_are_judged_like_the_judge_judges_known_images(model):
    """metrics() on rendered scenes: the captions of their objects hold, a NOT of a
    colour they lack holds, and a NOT of a colour they show fails."""
    g = torch.Generator().manual_seed(21)
    scenes = data.sample_scenes(4, g, min_objects=2, max_objects=2)
    x0 = data.render(scenes)
    first = [object_words(scenes, b, 0) for b in range(4)]
    recipe = Recipe(model="shapes", concepts=(Concept("circle"),), num_samples=4)
    verdicts = [judge(image, ["circle"]) for image in to_uint8(x0)]
    assert scoring_of(model).metrics(recipe, x0)["correct"] == sum(v["correct"] for v in verdicts) / 4
    assert scoring_of(model).metrics(recipe, x0)["clean"] == 1.0
    same = Recipe(model="shapes", concepts=(Concept(first[0]["colour"]), Concept(first[0]["shape"])),
                  num_samples=1)
    assert scoring_of(model).metrics(same, x0[:1]) == {"correct": 1.0, "rows_hold": 1.0, "clean": 1.0}
    negated = Recipe(model="shapes", concepts=(Concept(first[0]["shape"]),
                                               Concept(first[0]["colour"], negate=True)), num_samples=1)
    assert scoring_of(model).metrics(negated, x0[:1])["correct"] == 0.0


def test_a_run_carries_per_sample_verdicts_for_each_row():
    from composer.facade import Composer
    recipe = Recipe(model="shapes", concepts=(Concept("red"), Concept("circle", muted=True),
                                               Concept("blue", negate=True)),
                    sampler=SamplerSpec(name="ddim"), steps=3, seed=2, num_samples=3)
    result = Composer("cpu").render(recipe)
    assert len(result.verdicts) == 3
    for verdict, image in zip(result.verdicts, result.images):
        assert [(r["row"], r["text"], r["negate"]) for r in verdict["rows"]] == [
            (1, "red", False), (3, "blue", True)]
        alone = judge(image, ["red"], ["blue"])
        assert verdict["rows"][0]["holds"] == alone["positives"][0]
        assert verdict["rows"][1]["holds"] == (not alone["negatives"][0])
        assert verdict["correct"] == alone["correct"] and verdict["clean"] == alone["clean"]
    assert result.metrics["correct"] == sum(v["correct"] for v in result.verdicts) / 3
