"""What a finished run says: both verdicts at a glance, disputes, where the time went,
the levels chart, and the conflict map that stays visible at the end."""
from __future__ import annotations

import re
from types import SimpleNamespace

import numpy as np
import pytest

from composer.facade import Composer
from composer.recipe import Concept, Recipe, SamplerSpec
from ui.plots import chart, mcmc_panel, run_chart, tick, tracks_panel
from ui.results import disputes, glance, judge_text
from ui.words import time_text


def judged(judge: list[bool], model: list[bool] | None) -> SimpleNamespace:
    """A shapes-like result whose judge and lift say `judge` and `model` per sample."""
    rows = [{"row": 1, "text": "red circle", "negate": False}]
    recipe = Recipe(model="shapes-exact", concepts=(Concept("red circle"),))
    verdicts = [{"rows": [dict(rows[0], holds=h)], "clean": True, "holds": h, "correct": h}
                for h in judge]
    lift = [] if model is None else [
        {"rows": [dict(rows[0], holds=h, lift=0.5 if h else -0.07)], "holds": h} for h in model]
    n = len(judge)
    return SimpleNamespace(recipe=Recipe.from_dict({**recipe.to_dict(), "num_samples": n}),
                           verdicts=verdicts, lift=lift,
                           metrics={"correct": sum(judge) / n, "rows_hold": sum(judge) / n,
                                    "clean": 1.0})


def test_both_verdicts_at_a_glance_and_the_samples_they_dispute():
    """The landing: the judge said 8 of 8 below the fold, the model 5 of 8 further down,
    and nothing said which samples they disagreed on."""
    result = judged([True] * 8, [True, False, True, True, False, True, True, False])
    assert glance(result) == "judge 8/8 · model 5/8 · 3 disputed"
    assert disputes(result) == [False, True, False, False, True, False, False, True]
    text = judge_text(result, [])
    assert "the model's lift disputes 3" in text
    lines = [line for line in text.split("  \n") if line.startswith("Sample 2:")]
    assert len(lines) == 2 and all("**disputed**" in line for line in lines)
    assert "**disputed**" not in next(line for line in text.split("  \n")
                                      if line.startswith("Sample 1:"))
    assert "objects no row asked for are allowed" in text        # why clutter is "correct"
    assert glance(judged([True, False], None)) == "judge 1/2"    # no lift: nothing disputed


def test_the_time_said_is_the_wait_and_where_it_went():
    """"Done: 50 steps in 3.8 s" was shown for a run that took 8.1 s from click to done."""
    assert time_text(8.1, 3.8, 2.9, 0.9) == \
        "8.1 s (sampling 3.8 s · verdicts 2.9 s · files 0.9 s · page 0.5 s)"
    assert time_text(1.0, 0.98, 0.0, 0.01) == "1.0 s (sampling 1.0 s)"


def frames(levels: int, mcmc: bool = True, tracked: bool = True, ess: bool = False):
    return [SimpleNamespace(step_size=0.1 / (k + 1) if mcmc else None,
                            acceptance=0.5 + 0.01 * k if mcmc else None,
                            log_density=(0.1 * k, -0.1 * k) if tracked else (),
                            ess=0.5 if ess else None) for k in range(levels)]


def test_the_levels_chart_has_axes_a_key_and_room_to_read_it():
    """The Runs table's plots were 88 x 30 px lines with no axes or key."""
    svg = run_chart(frames(12), ["red circle", "blue square"])
    width, height = (int(v) for v in re.search(r"width='(\d+)' height='(\d+)'", svg).groups())
    assert width >= 240 and height >= 120                       # two panels over one axis
    labels = re.findall(r">([^<>]+)</text>", svg)
    assert {"0 %", "100 %", "1", "12", "noise level (first to last)"} <= set(labels)
    assert svg.count("<rect") == 2                              # MCMC, then the tracks
    key = re.search(r"class='levels-key'>(.*)</div></div>", svg).group(1)
    for name in ("acceptance", "step size", "log q: red circle", "log q: blue square"):
        assert name in key
    # Every line of both panels spans the same levels: one shared x axis.
    xs = [[float(p.split(",")[0]) for p in pts.split()]
          for pts in re.findall(r"points='([^']+)'", svg)]
    assert len(xs) == 4 and all(x == xs[0] for x in xs)


def test_one_huge_level_does_not_flatten_the_tracked_lines():
    """A NOT row's last level (-1.61M nats) beside levels of a few nats drew every other
    point on one flat line: the axis now spans the ordinary values, the far one is drawn
    at its edge, and the key says so with its size."""
    tracked = [(0.5 * k, -0.5 * k) for k in range(11)] + [(3.0, -1.61e6)]
    svg = chart([tracks_panel(tracked, [None] * 12, ["red circle", "not blue square"])])
    key = re.search(r"class='levels-key'>(.*)</div></div>", svg).group(1)
    assert "1 log q beyond the axis, drawn at its edge (up to -1.61M)" in key
    lines = [[float(p.split(",")[1]) for p in pts.split()] for pts in re.findall(r"points='([^']+)'", svg)]
    assert max(lines[0]) - min(lines[0]) > 20                # px: the first row's climb shows
    assert lines[1][-1] == max(lines[1])                     # the far value sits on the bottom edge
    plain = chart([tracks_panel(tracked[:11], [None] * 11, ["a", "b"])])
    assert "beyond the axis" not in plain                    # ordinary ranges are drawn whole
    broken = chart([tracks_panel(tracked[:11] + [(float("nan"), float("-inf"))], [None] * 12, ["a", "b"])])
    assert "nan" not in broken and "inf" not in broken           # a gap and the edge, never NaN points
    assert "2 log q beyond the axis, drawn at its edge (up to −∞)" in broken
    late = [(0.001 * k, -0.001 * k) for k in range(6)] + [(10.0 * k, -10.0 * k) for k in range(6)]
    assert "beyond the axis" not in chart([tracks_panel(late, [None] * 12, ["a", "b"])])


def test_the_chart_draws_what_the_run_has_and_nothing_without_it():
    assert run_chart(frames(5, mcmc=False, tracked=False), ["a"]) == ""
    ddim = run_chart(frames(5, mcmc=False), ["a", "b"])
    assert ddim.count("<rect") == 1 and "acceptance" not in ddim
    smc = chart([tracks_panel([()] * 5, [0.5] * 5, [])])
    assert "ESS/K" in smc and ">0<" in smc and ">1<" in smc
    assert mcmc_panel([None] * 4, [None] * 4) is None


@pytest.fixture(scope="module")
def mapped():
    recipe = Recipe(model="shapes-exact", concepts=(Concept("red circle"), Concept("blue square")),
                    operator="and", sampler=SamplerSpec("ddim"), steps=12, seed=3, num_samples=2)
    return Composer("cpu").render(recipe, maps=True)


def redness(picture: np.ndarray) -> float:
    rgb = picture.astype(float)
    return float(np.clip(rgb[..., 0] - (rgb[..., 1] + rgb[..., 2]) / 2, 0, None).mean())


def test_the_conflict_map_is_visible_on_the_final_frame(mapped):
    """It showed only when scrubbing back: at the last level the rows' predictions
    agree, so that level's map is nearly clear. The run's map averages its levels."""
    final, last = mapped.conflict_map, mapped.frames[-1].map
    assert final is not None and final.shape == last.shape and final.dtype == np.uint8
    assert redness(final) > redness(last) + 1.0
    early = [f.map for f in mapped.frames[:3]]
    assert min(redness(m) for m in early) > redness(last)


def test_a_y_label_fits_the_charts_margin_at_any_size():
    """A NOT row's tracked log-density reached -1.6e6 nats, labelled '.61e+06' with its
    sign and first digit cut off by the margin."""
    assert [tick(v) for v in (0.535, -0.352, -1_612_000.0, 51_200.0, 3e9)] == \
        ["+0.535", "-0.352", "-1.61M", "+51.2k", "+3G"]
    assert all(len(tick(v)) <= 6 for v in (-1.61e6, 9.99e5, -123.456, 0.0001234))
