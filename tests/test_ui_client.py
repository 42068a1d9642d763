"""The app through gradio_client, plus the plain-Python page state (ui.state).

The app runs the real toy2d-energy model with few steps and samples.
"""
from __future__ import annotations

import base64
import io
import json
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from composer.recipe import Recipe, RecipeError
from ui import state

# /generate outputs as gradio_client sees them (State outputs are hidden).
GENERATE_OUTPUTS = ["preview", *[f"concept{k}" for k in range(1, 9)], "progress", "slider",
                    "metrics", "gif", "png", "runs", "status"]
PROGRESS = GENERATE_OUTPUTS.index("progress")
RECIPE = {"model": "toy2d-energy", "operator": "product",
          "concepts": [{"text": "ring"}, {"text": "bar", "weight": 1.5}],
          "sampler": {"name": "ddim"}, "steps": 6, "seed": 3, "num_samples": 64}


def recipe_json(**changes) -> str:
    return json.dumps({**RECIPE, **changes})


@pytest.fixture(scope="module")
def client(app_url):
    from gradio_client import Client
    return Client(app_url, verbose=False)


def decode_uri(uri: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("RGB"))


def value_of(output):
    """A file output as gradio_client gives it: a path, or an update dict with one."""
    return output["value"] if isinstance(output, dict) else output


def read_image(path: str) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


# --- through the running app --------------------------------------------------------

def test_generate_streams_frames_then_files(client):
    job = client.submit(recipe_json(), False, api_name="/generate")
    outputs = list(job)
    previews = [out[0] for out in outputs if out[0]]
    assert len(previews) >= 2, "expected a preview per step"
    final = job.outputs()[-1]
    named = dict(zip(GENERATE_OUTPUTS, final))
    assert "done" in named["progress"] and "Step 6 / 6" in named["progress"]
    gif, png = value_of(named["gif"]), value_of(named["png"])   # updates: {"value", "visible"}
    assert gif.endswith("toy2d-energy_ddim_seed3_frames.gif") and Image.open(gif).n_frames >= 3
    from composer.media import recipe_from_png
    carried = recipe_from_png(png)
    assert carried.steps == 6 and carried.seed == 3 and carried.concepts[1].weight == 1.5
    assert read_image(named["preview"]).shape[-1] == 3
    concept2 = [out[GENERATE_OUTPUTS.index("concept2")] for out in outputs
                if out[GENERATE_OUTPUTS.index("concept2")]]
    concept2 = [c for c in concept2 if isinstance(c, dict) and "label" in c]
    assert concept2[0]["label"] == "Row 2: AND w=1.5 · bar"  # an update: picture and label
    assert read_image(concept2[0]["value"]).shape[-1] == 3


def test_a_small_models_png_is_enlarged_pixel_for_pixel(client):
    """shapes draws 32x32 scenes: the saved PNG is scaled up by whole pixels (nearest), so
    it is big enough to keep and every model pixel stays a crisp square block."""
    recipe = recipe_json(model="shapes", operator="and", concepts=[{"text": "red circle"}],
                         sampler={"name": "ddim"}, steps=4, num_samples=2)
    final = dict(zip(GENERATE_OUTPUTS, client.predict(recipe, False, api_name="/generate")))
    png = value_of(final["png"])
    assert png.endswith("shapes_ddim_seed3.png")
    image = read_image(png)
    assert min(image.shape[:2]) >= 512
    blocks = image[::8, ::8].repeat(8, axis=0).repeat(8, axis=1)
    assert np.array_equal(image, blocks)


def test_cancel_stops_the_run_and_the_next_run_is_correct(client):
    long = client.submit(recipe_json(steps=100, num_samples=2000), False, api_name="/generate")
    deadline = time.time() + 60
    while len(long.outputs()) < 2 and time.time() < deadline:
        time.sleep(0.1)
    assert len(long.outputs()) >= 2, "the long run never started streaming"
    long.cancel()
    deadline = time.time() + 15
    while not long.done() and time.time() < deadline:
        time.sleep(0.1)
    assert long.done(), "cancel did not end the job"
    seen = len(long.outputs())
    time.sleep(2.0)
    assert len(long.outputs()) == seen, "the cancelled run kept streaming"
    assert seen < 100

    # Uncancelled, the long run holds the one generation slot for about a minute
    # more; the next run only gets through quickly if the server really stopped it.
    start = time.time()
    job = client.submit(recipe_json(), False, api_name="/generate")
    final = job.result()
    assert time.time() - start < 25, "the next run waited behind the cancelled one"
    assert "Step 6 / 6" in final[PROGRESS]
    direct = client.predict(recipe_json(), 2, api_name="/render")
    assert np.array_equal(read_image(final[0]), decode_uri(direct["images"][0])), \
        "the run after a cancel differs from a clean render of the same recipe"


def cpu_rate(window: float = 0.5) -> float:
    """Cores this process (the app runs in it) kept busy over a wall-clock window."""
    start_cpu, start = time.process_time(), time.perf_counter()
    time.sleep(window)
    return (time.process_time() - start_cpu) / (time.perf_counter() - start)


@pytest.mark.parametrize("endpoint", ["/render", "/generate"])
def test_a_cancel_frees_the_core_within_an_evaluation(client, endpoint):
    """One HMC level here is 1,001 evaluations, several seconds of CPU: stopping at the
    next step, or finishing the run, would keep the core busy long after the cancel.
    Three submit-and-cancel cycles must not pile up work either."""
    heavy = recipe_json(sampler={"name": "hmc", "mcmc_steps": 50, "leapfrog_steps": 20},
                        steps=3, num_samples=900)
    second = 2 if endpoint == "/render" else False
    for _ in range(3):
        job = client.submit(heavy, second, api_name=endpoint)
        deadline = time.time() + 30
        while cpu_rate() < 0.5:
            assert time.time() < deadline, "the heavy run never started"
        job.cancel()
        cancelled = time.perf_counter()
        while cpu_rate(0.25) > 0.2:
            assert time.perf_counter() - cancelled < 3, "the run kept computing after the cancel"


def test_metropolis_runs_report_acceptance(client):
    job = client.submit(recipe_json(sampler={"name": "mala", "mcmc_steps": 1}, steps=3), False,
                        api_name="/generate")
    outputs = list(job)
    assert "starting" in outputs[0][PROGRESS]     # the last run is cleared first
    assert all("acceptance" in out[PROGRESS] for out in outputs[1:-1])
    assert "Mean acceptance" in job.outputs()[-1][GENERATE_OUTPUTS.index("metrics")]


def test_render_api_returns_images_frames_points(client):
    out = client.predict(recipe_json(), 3, api_name="/render")
    assert out["recipe"]["steps"] == 6 and out["recipe"]["scale"] is not None  # defaults filled
    assert len(out["images"]) == 1 and decode_uri(out["images"][0]).ndim == 3
    assert len(out["frames"]) == 3
    assert np.asarray(out["points"]).shape == (64, 2)
    assert Recipe.from_dict(out["recipe"]).model == "toy2d-energy"
    # RRR's product setup (unit weights) has a ground truth: the run is scored.
    scored = client.predict(recipe_json(concepts=[{"text": "ring"}, {"text": "bar"}]), 0,
                            api_name="/render")
    assert scored["metrics"] and all(isinstance(v, float) for v in scored["metrics"].values())


def test_render_api_returns_the_density_maps_on_request(client):
    plain = client.predict(recipe_json(), 0, api_name="/render")
    mapped = client.predict(recipe_json(), 0, True, api_name="/render")
    assert plain["maps"] == [] and len(mapped["maps"]) == 3     # composed, then each row's
    assert mapped["images"] == plain["images"]                   # the samples are the same
    composed = decode_uri(mapped["maps"][0]).reshape(-1, 3)
    assert (composed == (120, 60, 160)).all(1).any(), "no density drawn at its peak colour"


def test_sweep_streams_cells_after_its_cost_and_saves_a_grid_the_cli_reruns(client, tmp_path):
    from composer.media import SWEEP_CHUNK
    from composer.sweep import Sweep
    job = client.submit(recipe_json(), "concepts[1].weight", "0.5, 1.5", "sampler.name",
                        "ddim, euler", api_name="/sweep")
    outputs = list(job)
    status, image, files, runs, page_status = zip(*job.outputs())
    assert "Sweep of 4 cells, 3,072 network evaluations: running" in status[0]
    assert [s for s in status if "of 4 done" in s][:1] == ["Sweep of 4 cells, 3,072 network "
                                                           "evaluations: 1 of 4 done."]
    assert status[-1].endswith("done.") and page_status[-1] == status[-1] and outputs
    assert "(a sweep of this model may use 40,000,000)" in status[0]     # before any cell
    table = [r for r in runs if isinstance(r, dict) and "data" in r][-1]["data"]
    assert [row[3] for row in table[-4:]] == ["DDIM", "Euler", "DDIM", "Euler"]  # every cell
    grid_png, plan_json = value_of(files[-1])
    plan = Sweep.from_json(Image.open(grid_png).info[SWEEP_CHUNK])
    assert plan == Sweep.from_json(open(plan_json).read())
    assert plan.shape == (2, 2) and plan.recipe.seed == 3
    from composer.__main__ import main
    assert main(["sweep", plan_json, "--out", str(tmp_path / "cli")]) == 0
    assert np.array_equal(read_image(str(tmp_path / "cli" / "grid.png")), read_image(grid_png)), \
        "the CLI re-renders the app's sweep differently"
    with pytest.raises(Exception, match="Sweep axis 2: give values"):
        client.predict(recipe_json(), "seed", "1, 2", "steps", " ", api_name="/sweep")


@pytest.mark.parametrize("bad, words", [
    ('{"model": "toy2d-energy", "concepts": [{"text": "blob"}]}', ["blob", "ring"]),
    ('{"model": "toy2d-energy", "concepts": [{"text": "ring", "negate": true}]}',
     ["NOT needs at least one positive"]),
    ('{"model": "toy2d-energy", "concepts": [{"text": "ring"}], "steps": 0}', ["steps", "[1, 1000]"]),
    ('{"model": "/no/such/folder", "concepts": [{"text": "ring"}]}', ["/no/such/folder"]),
    ('{"model": "toy2d-energy", "concepts": [{"text": "  "}]}', ["empty"]),
    ("not json", ["not valid JSON"]),
    ('{"model": "toy2d-energy", "concepts": [{"text": "ring"}], "steps": 400}', ["400"]),
])
def test_bad_recipe_gives_a_clear_error_and_the_server_keeps_serving(client, bad, words):
    from gradio_client.exceptions import AppError
    with pytest.raises(AppError) as info:
        client.predict(bad, 1, api_name="/render")
    for word in words:
        assert word in str(info.value)
    assert client.predict(recipe_json(steps=2, num_samples=8), 1, api_name="/render")["images"]


def test_bad_recipe_on_the_streaming_endpoint(client):
    from gradio_client.exceptions import AppError
    job = client.submit('{"model": "toy2d-energy", "concepts": [{"text": "ring", "muted": true}]}',
                        False, api_name="/generate")
    with pytest.raises(AppError, match="not muted"):
        job.result()


def test_compare_streams_each_sampler(client):
    job = client.submit(recipe_json(steps=3), ["ddim", "euler", "ula"], False, api_name="/compare")
    outputs = list(job)
    assert len(outputs) >= 3
    final_status = [o[4] for o in job.outputs() if isinstance(o[4], str)][-1]
    for name in ("DDIM", "Euler", "ULA (annealed Langevin)"):
        assert f"**{name}**: " in final_status
    # Each sampler's own compute time and evaluations: ULA makes K + 1 calls per level.
    lines = {line.split("**")[1]: line for line in final_status.splitlines()}
    evaluations = {k: int(v.split(" network evaluations")[0].split(", ")[-1].replace(",", ""))
                   for k, v in lines.items()}
    assert evaluations["DDIM"] == 3 * 2 * 64
    assert evaluations["ULA (annealed Langevin)"] > evaluations["DDIM"]



def test_a_failed_compare_or_sweep_says_so_on_the_status_line(client):
    """The status line said "Running…" when the run began; a failure replaces it."""
    job = client.submit(recipe_json(), ["ddim"], False, api_name="/compare")
    with pytest.raises(Exception, match="choose 2 to 4 samplers"):
        job.result()
    assert "choose 2 to 4 samplers, got 1" in job.outputs()[-1][-1]
    job = client.submit(recipe_json(), "seed", "1, 2", "steps", " ", api_name="/sweep")
    with pytest.raises(Exception, match="Sweep axis 2: give values"):
        job.result()
    assert "Sweep axis 2: give values" in job.outputs()[-1][-1]


# --- page state without a server ------------------------------------------------------

def test_saved_files_are_named_inside_their_folder(tmp_path, monkeypatch):
    """A hub id or a folder as the model never becomes part of a path (a sweep of
    'org/name' used to write into a missing subfolder, '/data/sd' beside the checkpoint)."""
    from composer.recipe import Concept
    from composer.sweep import Axis, Sweep
    from ui import handlers
    monkeypatch.setattr(handlers, "RUNS_DIR", tmp_path / "runs")
    for model in ("org/name", "/data/sd", "toy2d-energy"):
        plan = Sweep(Recipe(model=model, concepts=(Concept("ring"),)), (Axis("seed", (1, 2)),))
        written = [Path(f) for f in handlers.Handlers.save_sweep(plan, np.zeros((4, 4, 3), np.uint8))]
        assert all(f.parent.parent == tmp_path / "runs" and f.exists() for f in written), written
        assert handlers.file_stem(plan.recipe, "sweep") == written[0].stem


def test_a_sweep_axis_must_change_something():
    """Only rows the recipe has, and each row's own slider: an AND weight on a NOT row
    would leave every cell the same."""
    recipe = Recipe.from_json(recipe_json(concepts=[{"text": "ring"},
                                                    {"text": "bar", "negate": True}]))
    assert state.build_sweep(recipe, [("concepts[1].beta", "0.5, 1")]).shape == (2, 1)
    with pytest.raises(RecipeError, match="has 2 row.s.; there is no row 3"):
        state.build_sweep(recipe, [("concepts[2].weight", "0.5, 1")])
    with pytest.raises(RecipeError, match="row 2 is a NOT row, so this would change nothing; "
                                          "sweep its NOT β"):
        state.build_sweep(recipe, [("concepts[1].weight", "0.5, 1")])
    with pytest.raises(RecipeError, match="row 1 is an AND row"):
        state.build_sweep(recipe, [("seed", "1, 2"), ("concepts[0].beta", "1, 2")])


def test_share_token_round_trip_and_bad_tokens():
    recipe = Recipe.from_json(recipe_json(concepts=[{"text": "ring"},
                                                    {"text": "bar", "negate": True, "beta": 2.5,
                                                     "muted": True}]))
    token = state.share_token(recipe)
    assert "=" not in token and "+" not in token and "/" not in token
    assert state.recipe_from_token(token) == recipe
    assert state.share_url("http://h/app/?x=1", recipe) == f"http://h/app/?recipe={token}"
    with pytest.raises(RecipeError):
        state.recipe_from_token("%%%")
    with pytest.raises(RecipeError):
        state.recipe_from_token(base64.urlsafe_b64encode(b'{"concepts": 3}').decode())


def test_row_actions_keep_ids_stable():
    rows = [state.new_row("ring"), state.new_row("bar", weight=2.0)]
    ids = [r["id"] for r in rows]
    moved = state.row_action(rows, "down", ids[0])
    assert [r["id"] for r in moved] == ids[::-1]
    dup = state.row_action(moved, "duplicate", ids[1])
    assert len(dup) == 3 and dup[1]["text"] == "bar" and dup[1]["id"] not in ids
    muted = state.row_action(dup, "mute", ids[0])
    assert muted[2]["muted"] and not rows[0]["muted"], "actions must not mutate their input"
    assert [r["id"] for r in state.row_action(muted, "remove", ids[1])] == [dup[1]["id"], ids[0]]
    assert len(state.row_action(rows, "add", default_text="x")) == 3


def test_page_problems_are_listed_per_row():
    rows = [state.new_row(""), state.new_row("a red blob"), state.new_row("ring")]
    problems = state.row_problems(rows, vocabulary=["a", "red", "circle"])
    assert problems[0].startswith("Row 1: the prompt is empty")
    assert "'blob'" in problems[1] and "'ring'" in problems[2]
    assert state.row_problems([state.new_row("disk")], choices=["ring", "bar"]) == [
        "Row 1: 'disk' is not a concept of this model; choose one of ring, bar."]


def test_settings_build_a_recipe_with_defaults_left_empty():
    rows = [state.new_row("ring"), state.new_row("bar", negate=True, beta=3.0)]
    with pytest.raises(RecipeError, match="Seed: is empty"):
        state.build_recipe(rows, state.Settings(model="toy2d-energy", seed=None))
    with pytest.raises(RecipeError, match="Seed: must be an integer, got 3.7"):
        state.build_recipe(rows, state.Settings(model="toy2d-energy", seed=3.7))
    with pytest.raises(RecipeError, match="Steps: not a number"):
        state.build_recipe(rows, state.Settings(model="toy2d-energy"), ["Steps"])
    with pytest.raises(RecipeError, match=r"Row 2 β: must be in \[0, 10\], got -2"):
        state.build_recipe([rows[0], {**rows[1], "beta": -2.0}], state.Settings(model="toy2d-energy"))
    settings = state.Settings(model="toy2d-energy", sampler="mala", step_size=0.2,
                              mcmc_steps=3.0, steps=10.0, seed=7.0, num_samples=100.0)
    recipe = state.build_recipe(rows, settings)
    assert recipe.sampler.mcmc_steps == 3 and isinstance(recipe.sampler.mcmc_steps, int)
    assert recipe.sampler.leapfrog_steps is None and recipe.scale is None
    assert recipe.concepts[1].coefficient == -3.0
    assert state.settings_from_recipe(recipe).step_size == 0.2
    with pytest.raises(RecipeError, match=r"Step size \(× σ_t\): must be in \(0, 2\]"):
        state.build_recipe(rows, state.Settings(model="toy2d-energy", step_size=5.0))


def test_a_run_takes_the_rows_as_the_page_shows_them():
    rows = [state.new_row("ring"), state.new_row("bar", negate=True, beta=3.0)]
    shown = [{"text": "big_box", "weight": "-2", "negate": False},
             {"text": "bar", "weight": "1.5", "negate": True}]
    merged = state.as_shown(rows, shown)
    assert (merged[0]["text"], merged[0]["weight"]) == ("big_box", -2.0)
    assert (merged[1]["beta"], merged[1]["weight"]) == (1.5, rows[1]["weight"])
    assert rows[0]["text"] == "ring"                      # the server's copy is not edited
    with pytest.raises(RecipeError, match=r"Row 1 AND weight: must be in \[0, 10\], got -2"):
        state.build_recipe(merged, state.Settings(model="toy2d-energy"))
    toggling = [shown[0], {**shown[1], "negate": False}]  # NOT clicked, its reply not back
    assert state.as_shown(rows, toggling)[1] == rows[1]
    assert state.as_shown(rows, shown[:1]) == rows        # a row added or removed mid-flight
    cleared = state.as_shown(rows, [{**shown[0], "weight": ""}, shown[1]])
    with pytest.raises(RecipeError, match="Row 1 AND weight"):
        state.build_recipe(cleared, state.Settings(model="toy2d-energy"))


def test_unexpected_errors_are_masked_and_logged(caplog):
    import gradio as gr

    from ui.handlers import GENERIC_ERROR, guard

    @guard
    def broken():
        raise RuntimeError("internal detail")

    @guard
    def streaming():
        yield 1
        raise KeyError("internal detail")

    with pytest.raises(gr.Error) as info:
        broken()
    assert info.value.message == GENERIC_ERROR
    with pytest.raises(gr.Error):
        list(streaming())
    assert "internal detail" in caplog.text


def test_words_outside_the_vocabulary_are_listed_per_row():
    from composer.facade import Composer, ComposerError
    from composer.models import ModelError
    from tests.gaussians import GaussianModel
    from ui.handlers import Handlers, info_dict

    class Worded(GaussianModel):
        """Free-text captions over the Gaussians' names, like the shapes model."""
        concept_choices = None
        vocabulary = ("left", "right", "up")

        def check_concept(self, text):
            for word in text.split():
                if word not in self.vocabulary:
                    raise ModelError(f"unknown word {word!r}")

        def encode(self, texts):
            return tuple(t.split()[0] if t else t for t in texts)

    composer = Composer("cpu")
    composer._models["worded"] = Worded()
    handlers = Handlers(composer)
    info = info_dict(composer.info("worded"))
    settings = state.Settings(model="worded", steps=2)
    rows = [state.new_row("left"), state.new_row("up blob"), state.new_row("right zzz qq")]
    with pytest.raises(ComposerError) as err:
        handlers.recipe(rows, info, settings)
    message = str(err.value)
    assert "concepts[1]" not in message, "each problem once, rows numbered from 1"
    assert "Row 2: unknown words 'blob'" in message and "Row 3: unknown words 'zzz', 'qq'" in message
    assert handlers.recipe(rows[:1], info, settings).concepts[0].text == "left"
    with pytest.raises(RecipeError, match="Row 2: the prompt is empty"):
        handlers.recipe([rows[0], state.new_row(" ")], info, settings)


def test_stable_diffusion_folder_through_the_api(client, tmp_path):
    from composer.models.tiny_sd import save_tiny_sd

    folder = save_tiny_sd(tmp_path / "tiny-sd")
    recipe = {"model": str(folder), "concepts": [{"text": "a cat"}, {"text": "a dog", "negate": True}],
              "steps": 2, "seed": 1}
    out = client.predict(json.dumps(recipe), 2, api_name="/render")
    assert out["recipe"]["model"] == str(folder) and out["recipe"]["scale"] is not None
    assert len(out["images"]) == 1 and decode_uri(out["images"][0]).shape[-1] == 3
    assert out["points"] is None


def test_compare_puts_the_learned_and_the_exact_model_side_by_side(client):
    """One sampler and seed on both shapes models, each with its judge's verdict."""
    recipe = recipe_json(model="shapes", operator="and", concepts=[{"text": "red circle"}],
                         steps=3, num_samples=2)
    job = client.submit(recipe, ["ddim"], False, ["shapes", "shapes-exact"], api_name="/compare")
    job.result()
    final_status = [o[4] for o in job.outputs() if isinstance(o[4], str)][-1]
    for name in ("DDIM · shapes", "DDIM · shapes-exact"):
        assert f"**{name}**: " in final_status
    assert final_status.count("correct") >= 2
    assert "Compared DDIM · shapes, DDIM · shapes-exact." in job.outputs()[-1][-1]
