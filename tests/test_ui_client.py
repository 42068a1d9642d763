"""The app through gradio_client (the page state without a server: test_ui_state.py).

The app runs the real toy2d-energy model with few steps and samples.
"""
from __future__ import annotations

import base64
import io
import json
import time

import numpy as np
import pytest
from PIL import Image

from composer.recipe import Recipe

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


def read_image(output) -> np.ndarray:
    """A picture output: a path, or an update dict with one."""
    return np.asarray(Image.open(value_of(output)).convert("RGB"))


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


VANISHING_CLIENT = """
import sys, time
from gradio_client import Client
url, recipe, second, endpoint = sys.argv[1:]
job = Client(url, verbose=False).submit(recipe, {"0": 0, "2": 2, "False": False}[second],
                                        api_name=endpoint)
print("submitted", flush=True)
time.sleep(600)
"""


@pytest.mark.parametrize("endpoint", ["/render", "/generate"])
def test_a_vanished_clients_run_leaves_the_core(app_url, endpoint):
    """A script killed mid-run (its stream closes without a cancel): within 5 s the
    app's core is idle, where the orphaned run used to compute to its end."""
    import subprocess
    import sys
    heavy = recipe_json(sampler={"name": "hmc", "mcmc_steps": 50, "leapfrog_steps": 20},
                        steps=3, num_samples=900)
    second = "2" if endpoint == "/render" else "False"
    script = subprocess.Popen([sys.executable, "-c", VANISHING_CLIENT, app_url, heavy, second,
                               endpoint], stdout=subprocess.PIPE, text=True)
    try:
        assert script.stdout.readline().strip() == "submitted"
        deadline = time.time() + 60
        while cpu_rate() < 0.5:
            assert time.time() < deadline, "the heavy run never started"
    finally:
        script.kill()
        script.wait()
    killed = time.perf_counter()
    while cpu_rate(0.25) > 0.2:
        assert time.perf_counter() - killed < 5, "the vanished client's run kept computing"


def test_a_pages_newer_run_supersedes_its_older_one(client):
    """A page runs one thing at a time. An older run of the same session went on to its
    end and could finish last, overwriting the newer run's result: the page's landing
    run did so after an example was opened (a flaky browser test, under load)."""
    status = GENERATE_OUTPUTS.index("status")
    older = client.submit(recipe_json(steps=100, num_samples=2000), False, api_name="/generate")
    deadline = time.time() + 60
    while len(older.outputs()) < 2 and time.time() < deadline:
        time.sleep(0.1)
    assert len(older.outputs()) >= 2, "the older run never started streaming"
    newer = client.submit(recipe_json(steps=3), False, api_name="/generate")
    assert newer.result(timeout=60)[status].startswith("Done: 3 steps")
    deadline = time.time() + 15
    while not older.done() and time.time() < deadline:
        time.sleep(0.1)
    assert older.done(), "the older run went on"
    assert not any(isinstance(o[status], str) and o[status].startswith("Done")
                   for o in older.outputs()), "the older run finished after the newer one"


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


def test_render_api_judges_by_the_models_lift_and_keeps_the_best_of_n(client):
    """Verdicts by the model on request (null: the model's default, off on the 2D lab),
    and best_of in the recipe: each sample the candidate whose rows hold."""
    assert client.predict(recipe_json(num_samples=8), 0, False, None, api_name="/render")["lift"] == []
    judged = client.predict(recipe_json(num_samples=8), 0, False, True, api_name="/render")
    assert len(judged["lift"]) == 8
    rows = judged["lift"][0]["rows"]
    assert [(r["row"], r["text"]) for r in rows] == [(1, "ring"), (2, "bar")]
    assert all(isinstance(r["lift"], float) for r in rows)
    assert client.predict(recipe_json(num_samples=8), 0, False, "false", api_name="/render")["lift"] == []
    best = client.predict(recipe_json(num_samples=8, best_of=3), 0, False, False, api_name="/render")
    assert len(best["lift"]) == 8 and best["recipe"]["best_of"] == 3
    assert np.asarray(best["points"]).shape == (8, 2)
    assert sum(v["holds"] for v in best["lift"]) >= sum(v["holds"] for v in judged["lift"])
    assert any(note.startswith("Best of 3") for note in best["notes"])


def test_the_recipe_schema_is_served_with_the_api(client):
    from composer.recipe import recipe_json_schema
    assert client.predict(api_name="/recipe_schema") == json.loads(json.dumps(recipe_json_schema()))


def test_sweep_streams_cells_after_its_cost_and_saves_a_grid_the_cli_reruns(client, tmp_path):
    from composer.media import SWEEP_CHUNK
    from composer.sweep import Sweep
    job = client.submit(recipe_json(), "concepts[1].weight", "0.5, 1.5", "sampler.name",
                        "ddim, euler", api_name="/sweep")
    outputs = list(job)
    status, image, files, runs, page_status = zip(*job.outputs())
    assert "Sweep of 4 cells (2 × 2), 3,072 network evaluations: running" in status[0]
    assert [s for s in status if "of 4 done" in s][:1] == ["Sweep of 4 cells (2 × 2), 3,072 "
                                                           "network evaluations: 1 of 4 done."]
    assert status[-1].endswith("done.") and page_status[-1] == status[-1] and outputs
    assert "(a sweep of this model may use 40,000,000)" in status[0]     # before any cell
    table = [r for r in runs if isinstance(r, dict) and "data" in r][-1]["data"]
    assert [row[4] for row in table[-4:]] == ["DDIM", "Euler", "DDIM", "Euler"]  # every cell
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


def test_or_on_a_score_only_stable_diffusion_through_render(client, tmp_path):
    """SuperDiff's OR needs no energies: it runs on a Stable Diffusion folder, with each
    concept's tracked log-density in every frame of the run."""
    from composer.models.tiny_sd import save_tiny_sd

    folder = save_tiny_sd(tmp_path / "tiny-sd")
    recipe = {"model": str(folder), "concepts": [{"text": "a cat"}, {"text": "a dog", "weight": 3.0}],
              "operator": "superdiff_or", "sampler": "ddpm", "steps": 2, "seed": 1, "num_samples": 2}
    out = client.predict(json.dumps(recipe), 2, api_name="/render")
    assert out["recipe"]["operator"] == "superdiff_or" and len(out["images"]) == 2
    assert [len(level["log_density"]) for level in out["levels"]] == [2, 2]
    smc = client.predict(json.dumps({**recipe, "operator": "and",
                                     "sampler": {"name": "smc", "particles": 3}}), 2, api_name="/render")
    assert smc["recipe"]["sampler"]["particles"] == 3 and len(smc["images"]) == 2
    assert all(0 < level["ess"] <= 1 for level in smc["levels"])


def test_an_or_is_judged_as_an_or(client):
    """The model's verdict on an OR: a sample holds when one of its rows does (the
    mixture's verdicts were read as AND: 0 of 8 held on a correct result)."""
    recipe = recipe_json(model="shapes-exact", operator="mixture", sampler={"name": "ddpm"},
                         concepts=[{"text": "red circle"}, {"text": "blue square"}], steps=20,
                         num_samples=4, scale=1.0)
    out = client.predict(recipe, 0, False, True, api_name="/render")
    assert len(out["lift"]) == 4
    for verdict in out["lift"]:
        assert verdict["holds"] == any(r["holds"] for r in verdict["rows"])
    assert any(sum(r["holds"] for r in v["rows"]) == 1 and v["holds"] for v in out["lift"])


def test_compare_runs_methods_side_by_side(client):
    recipe = recipe_json(concepts=[{"text": "left_bar"}, {"text": "right_bar"}], steps=3)
    job = client.submit(recipe, ["ddpm"], False, [], ["and", "superdiff_or"], api_name="/compare")
    job.result()
    final_status = [o[4] for o in job.outputs() if isinstance(o[4], str)][-1]
    for name in ("DDPM · AND (sum)", "DDPM · OR (SuperDiff)"):
        assert f"**{name}**: " in final_status
