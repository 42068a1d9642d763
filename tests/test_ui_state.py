"""The page without a server: its state (ui.state), the session service's checks,
the handler stack's error masking, and the files it names."""
from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest

from composer.recipe import Recipe, RecipeError
from ui import state

RECIPE = {"model": "toy2d-energy", "operator": "product",
          "concepts": [{"text": "ring"}, {"text": "bar", "weight": 1.5}],
          "sampler": {"name": "ddim"}, "steps": 6, "seed": 3, "num_samples": 64}


def recipe_json(**changes) -> str:
    return json.dumps({**RECIPE, **changes})


def test_saved_files_are_named_inside_their_folder(tmp_path, monkeypatch):
    """A hub id or a folder as the model never becomes part of a path (a sweep of
    'org/name' used to write into a missing subfolder, '/data/sd' beside the checkpoint)."""
    from composer.recipe import Concept
    from composer.sweep import Axis, Sweep
    from ui import files
    monkeypatch.setattr(files, "RUNS_DIR", tmp_path / "runs")
    for model in ("org/name", "/data/sd", "toy2d-energy"):
        plan = Sweep(Recipe(model=model, concepts=(Concept("ring"),)), (Axis("seed", (1, 2)),))
        written = [Path(f) for f in files.save_sweep(plan, np.zeros((4, 4, 3), np.uint8))]
        assert all(f.parent.parent == tmp_path / "runs" and f.exists() for f in written), written
        assert files.file_stem(plan.recipe, "sweep") == written[0].stem


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
    from tests.browser import share_url
    assert share_url("http://h/app/?x=1", recipe) == f"http://h/app/?recipe={token}"
    with pytest.raises(RecipeError):
        state.recipe_from_token("%%%")
    with pytest.raises(RecipeError):
        state.recipe_from_token(base64.urlsafe_b64encode(b'{"concepts": 3}').decode())


def test_row_actions_move_copy_and_leave_their_input_alone():
    rows = [state.new_row("ring"), state.new_row("bar", weight=2.0)]
    moved = state.row_action(rows, "down", 0)
    assert [r["text"] for r in moved] == ["bar", "ring"]
    dup = state.row_action(moved, "duplicate", 0)
    assert [r["text"] for r in dup] == ["bar", "bar", "ring"] and dup[1]["weight"] == 2.0
    muted = state.row_action(dup, "mute", 2)
    assert muted[2]["muted"] and not rows[0]["muted"], "actions must not mutate their input"
    assert [r["text"] for r in state.row_action(muted, "remove", 0)] == ["bar", "ring"]
    assert len(state.row_action(rows, "add", default_text="x")) == 3
    assert state.row_action(rows, "remove", 5) == rows        # a stale page's row


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
    with pytest.raises(RecipeError, match=r"Seed: not a number; type digits \(for example 20\)"):
        state.build_recipe(rows, state.Settings(model="toy2d-energy"), ["Seed"])  # not "0.5"
    with pytest.raises(RecipeError, match=r"Global scale α: not a number; .*example 0.5\)"):
        state.build_recipe(rows, state.Settings(model="toy2d-energy"), ["Global scale α"])
    with pytest.raises(RecipeError, match=r"Row 2 β: must be in \[0, 10\], got -2"):
        state.build_recipe([rows[0], {**rows[1], "beta": -2.0}], state.Settings(model="toy2d-energy"))
    settings = state.Settings(model="toy2d-energy", sampler="mala",
                              knobs={"step_size": 0.2, "mcmc_steps": 3.0}, steps=10.0, seed=7.0,
                              num_samples=100.0)
    recipe = state.build_recipe(rows, settings)
    assert recipe.sampler.mcmc_steps == 3 and isinstance(recipe.sampler.mcmc_steps, int)
    assert recipe.sampler.leapfrog_steps is None and recipe.scale is None
    assert recipe.concepts[1].coefficient == -3.0
    assert state.settings_from_recipe(recipe).knobs["step_size"] == 0.2
    with pytest.raises(RecipeError, match=r"Step size \(× σ_t\): must be in \(0, 2\]"):
        state.build_recipe(rows, state.Settings(model="toy2d-energy", knobs={"step_size": 5.0}))


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
    with pytest.raises(RecipeError, match="Row 1: the AND weight is empty; type a number"):
        state.build_recipe(cleared, state.Settings(model="toy2d-energy"))   # letters typed: ''
    negated_blank = state.as_shown(rows, [shown[0], {**shown[1], "weight": ""}])
    with pytest.raises(RecipeError, match="Row 2: the β is empty"):
        state.build_recipe(negated_blank, state.Settings(model="toy2d-energy"))


def test_unexpected_errors_are_masked_and_logged(caplog):
    import gradio as gr

    from ui.stack import GENERIC_ERROR, guard

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
    from ui.service import Service, info_dict

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
    service = Service(composer)
    info = info_dict(composer.info("worded"))
    settings = state.Settings(model="worded", steps=2)
    rows = [state.new_row("left"), state.new_row("up blob"), state.new_row("right zzz qq")]
    with pytest.raises(ComposerError) as err:
        service.recipe(rows, info, settings)
    message = str(err.value)
    assert "concepts[1]" not in message, "each problem once, rows numbered from 1"
    assert "Row 2: unknown words 'blob'" in message and "Row 3: unknown words 'zzz', 'qq'" in message
    assert service.recipe(rows[:1], info, settings).concepts[0].text == "left"
    with pytest.raises(RecipeError, match="Row 2: the prompt is empty"):
        service.recipe([rows[0], state.new_row(" ")], info, settings)




def test_the_page_renders_nothing_after_it_loads():
    """No `gr.render`: a render adds components and events to the session while the
    session's other events walk them (Gradio's get_state_ids_to_track iterates the
    session's events: "dictionary changed size during iteration", a flaky suite), and
    it replaced the boxes a visitor was typing into. The rows are built once."""
    from composer.facade import Composer
    from ui.layout import build_demo
    demo = build_demo(Composer("cpu"), default_model="toy2d-energy", landing=False)
    assert demo.default_config.renderables == []
    rows = [b for b in demo.blocks.values() if (b.elem_id or "").startswith("concept-")
            and (b.elem_id or "").endswith("-text")]
    assert len(rows) == 2 * 8        # a prompt box and a concept menu per possible row
