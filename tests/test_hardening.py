"""A public Space's second round of probes: no traceback for any input, and budgets
that hold for whole sweeps (issue: "A public Space under attack, round two")."""
from __future__ import annotations

import contextlib
import types
import json

import pytest

from composer.__main__ import main
from composer.facade import SWEEP_RUNS, Composer, ComposerError
from composer.recipe import Recipe, RecipeError
from composer.sweep import Sweep
from ui.words import flag


@pytest.fixture(scope="module")
def composer():
    return Composer("cpu")


ONE_SAMPLE = [(model, operator, concepts)
              for model in ("toy2d-score", "toy2d-energy")
              for operator, concepts in (("and", ["ring", "bar"]), ("product", ["ring", "bar"]),
                                         ("mixture", ["left_bar", "right_bar"]),
                                         ("and", ["big_box", "small_box"]))]


@pytest.mark.parametrize("model,operator,concepts", ONE_SAMPLE)
def test_one_sample_of_a_2d_setup_runs_or_is_refused_in_one_line(tmp_path, capsys, model, operator,
                                                                   concepts):
    """num_samples 1 on an RRR setup used to fail after the whole run (MMD needs 2
    samples): now MMD is skipped with a note, or the recipe is refused up front."""
    rows = [{"text": t} for t in concepts]
    if concepts[1] == "small_box":
        rows[1]["negate"] = True
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"model": model, "operator": operator, "concepts": rows,
                                "steps": 4, "num_samples": 1}))
    status = main(["render", str(path), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    if model == "toy2d-score" and operator == "mixture":
        assert status == 2 and err.startswith("error: operator: mixture") and err.count("\n") == 1
    else:
        assert status == 0, err
        assert "Traceback" not in err


def test_one_sample_skips_mmd_with_a_note(composer):
    recipe = Recipe.from_dict({"model": "toy2d-energy", "operator": "product", "steps": 3,
                               "concepts": [{"text": "ring"}, {"text": "bar"}], "num_samples": 1})
    notes = composer.plan(recipe).notes
    assert any("MMD" in n and "2 samples" in n for n in notes)
    result = composer.render(recipe)
    assert "mmd" not in result.metrics and "in_support" in result.metrics
    assert any("MMD" in n for n in result.notes)


@pytest.mark.parametrize("stop", [10 ** 400, -10 ** 400])
def test_a_sweep_range_past_float_is_a_recipe_error(stop):
    with pytest.raises(RecipeError, match="finite numbers"):
        Sweep.from_dict({"recipe": {"model": "shapes", "concepts": [{"text": "red"}]},
                         "axes": [{"field": "scale", "range": {"start": 0, "stop": stop, "num": 3}}]})


def test_cli_sweep_with_a_huge_range_is_one_line(tmp_path, capsys):
    path = tmp_path / "s.json"
    path.write_text('{"recipe": {"model": "shapes", "concepts": [{"text": "red"}]}, "axes": '
                    '[{"field": "scale", "range": {"start": 0, "stop": 1' + "0" * 400 + ', "num": 3}}]}')
    assert main(["sweep", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "finite" in err


def test_a_sweep_cannot_escape_the_budget(composer):
    """25 cells of one allowed run each were accepted (250 M evaluations); now the whole
    sweep is held to SWEEP_RUNS runs' budget, before anything runs."""
    heavy = {"model": "toy2d-energy", "operator": "product", "concepts": [{"text": "ring"}, {"text": "bar"}],
             "sampler": {"name": "hmc", "mcmc_steps": 49, "leapfrog_steps": 1}, "steps": 100,
             "num_samples": 1000}
    plan = Sweep.from_dict({"recipe": heavy, "axes": [{"field": "seed", "range": {"start": 0, "stop": 24, "num": 25}}]})
    single = composer.plan(plan.recipe).total
    assert single <= composer.budget("toy2d-energy")       # each cell alone is allowed
    with pytest.raises(ComposerError, match=f"{SWEEP_RUNS} times one run's budget"):
        composer.sweep_plan(plan)
    small = Sweep.from_dict({"recipe": heavy, "axes": [{"field": "seed", "values": [0, 1]}]})
    assert composer.sweep_plan(small).total == 2 * single


@pytest.mark.parametrize("value", [None, 5, 2.5, ["x"], {"a": 1}])
def test_a_recipe_that_is_not_text_is_a_recipe_error(value):
    with pytest.raises(RecipeError, match="must be JSON text"):
        Recipe.from_json(value)


@pytest.mark.parametrize("value,expected", [(False, False), ("false", False), ("0", False), (0, False),
                                            ("False", False), ("no", False), (None, False),
                                            (True, True), ("true", True), ("1", True), (1, True)])
def test_api_flags_read_false_as_false(value, expected):
    assert flag(value, "maps") is expected


@pytest.mark.parametrize("value", ["maybe", 2, [], {"x": 1}, float("nan")])
def test_api_flags_refuse_anything_else(value):
    with pytest.raises(RecipeError, match="maps: must be true or false"):
        flag(value, "maps")


class FakeRequest:
    def __init__(self, session: str, forwarded: str | None = None, peer: str = "127.0.0.1"):
        self.session_hash = session
        self.headers = {"x-forwarded-for": forwarded} if forwarded else {}
        self.client = types.SimpleNamespace(host=peer)


def test_one_visitor_cannot_hold_every_slot(monkeypatch):
    from ui.visitors import RUNS_PER_ADDRESS, RUNS_PER_SESSION, TooManyRuns, Visitors
    monkeypatch.setenv("COMPOSER_TRUSTED_PROXIES", "1")
    visitors = Visitors()
    with contextlib.ExitStack() as held:
        for _ in range(RUNS_PER_SESSION):
            held.enter_context(visitors.slot(FakeRequest("page-1")))
        with pytest.raises(TooManyRuns, match="this page already has"):
            held.enter_context(visitors.slot(FakeRequest("page-1")))
        held.enter_context(visitors.slot(FakeRequest("page-2")))     # another page is served
    with contextlib.ExitStack() as held:                 # sessions behind one forwarded address
        for k in range(RUNS_PER_ADDRESS):
            held.enter_context(visitors.slot(FakeRequest(f"s{k}", "203.0.113.7")))
        with pytest.raises(TooManyRuns, match="your address"):
            held.enter_context(visitors.slot(FakeRequest("s-new", "203.0.113.7")))
        held.enter_context(visitors.slot(FakeRequest("s-other", "198.51.100.2")))
    with visitors.slot(FakeRequest("page-1")):           # every slot was given back
        pass
    assert not visitors._active


def test_a_forged_first_hop_does_not_make_a_new_visitor(monkeypatch):
    """The Space's proxy appends the address it saw; what comes before it is the
    client's to choose. Six scripts behind one address, each with a made-up first hop
    (as a probe sent them), are one visitor: the fourth heavy run is refused."""
    from ui.visitors import RUNS_PER_ADDRESS, TooManyRuns, Visitors
    monkeypatch.setenv("COMPOSER_TRUSTED_PROXIES", "1")
    visitors = Visitors()
    with contextlib.ExitStack() as held:
        for k in range(RUNS_PER_ADDRESS):
            held.enter_context(visitors.slot(FakeRequest(f"s{k}", f"198.51.100.{k}, 203.0.113.7")))
        with pytest.raises(TooManyRuns, match="your address"):
            held.enter_context(visitors.slot(FakeRequest("s9", "198.51.100.9, 203.0.113.7")))


@pytest.mark.parametrize("proxies, forwarded, peer, expected", [
    (2, "6.6.6.6, 203.0.113.7, 10.0.0.1", "10.0.0.2", "203.0.113.7"),   # two proxies of ours
    (1, "6.6.6.6, 203.0.113.7", "10.0.0.2", "203.0.113.7"),
    (2, "203.0.113.7", "10.0.0.2", "203.0.113.7"),                      # shorter than N: the last
    (0, "6.6.6.6", "198.51.100.4", "198.51.100.4"),                     # bare server: the peer
    (1, None, "198.51.100.4", None),                                    # no header behind a proxy
    (0, None, "127.0.0.1", None),                                       # the machine itself
])
def test_the_client_address_is_read_by_trusted_hops(proxies, forwarded, peer, expected):
    from ui.visitors import visitor_keys
    keys = dict(visitor_keys(FakeRequest("s", forwarded, peer), proxies))
    assert keys.get("address") == expected


def test_trusted_proxies_default_to_one_on_a_space(monkeypatch):
    from ui.visitors import trusted_proxies
    monkeypatch.delenv("COMPOSER_TRUSTED_PROXIES", raising=False)
    monkeypatch.delenv("SPACE_ID", raising=False)
    assert trusted_proxies() == 0
    monkeypatch.setenv("SPACE_ID", "someone/composer")
    assert trusted_proxies() == 1
    monkeypatch.setenv("COMPOSER_TRUSTED_PROXIES", "many")
    assert trusted_proxies() == 0


def test_the_disk_budget_trims_the_oldest_files_first(tmp_path):
    import os

    from ui.disk import LOW_WATER, DiskBudget
    budget = DiskBudget(tmp_path, limit_bytes=10_000)
    for k in range(15):                                   # 15 kB in 1 kB files, oldest first
        path = tmp_path / f"run-{k // 5}" / f"frame-{k}.png"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"x" * 1000)
        os.utime(path, (1_000_000 + k, 1_000_000 + k))
    assert budget.trim() == 7000                          # down to LOW_WATER of 10 kB
    left = sorted(p.name for p in tmp_path.rglob("*.png"))
    assert left == sorted(f"frame-{k}.png" for k in range(7, 15))
    assert budget.usage() <= LOW_WATER * budget.limit
    assert not (tmp_path / "run-0").exists()              # emptied folders go too
    assert budget.trim() == 0                             # under budget: nothing to do
