"""What a finished run shows: the per-concept pictures, the judge's verdicts and
metrics, and its line in the Runs table."""
from __future__ import annotations

import math

import gradio as gr
import numpy as np

from composer.operators import OPERATORS
from composer.recipe import SAMPLER_LABELS, Recipe, RecipeError
from ui.files import THUMB_SIDE, page_picture
from ui.plots import run_chart
from ui.words import metrics_text

RUN_HEADERS = ["#", "result", "model", "op", "sampler", "run", "compute"]
# Sized to fit the result column at 1400 px (653 px): long cells wrap. A phone scrolls
# the table sideways, "#" and the result pinned (app.css, which knows the first width).
# The levels of the last run are a chart under the table (ui/plots.py).
RUN_WIDTHS = ["30px", "140px", "90px", "70px", "70px", "136px", "102px"]
RUN_TYPES = ["number", "str", "str", "str", "str", "str", "str"]
KEPT_RUNS = 50          # runs a visitor's browser keeps across reloads and restarts


def thumb_updates(slots, pictures, labels) -> dict:
    """Updates for the per-concept image slots: one per active row, the rest hidden."""
    updates = {slot: gr.update(value=page_picture(p, THUMB_SIDE), label=label, visible=True,
                               alt_text=f"{label}: this row's own prediction")
               for slot, p, label in zip(slots, pictures, labels)}
    return {**updates, **{slot: gr.update(visible=False) for slot in slots[len(updates):]}}


def run_entry(result, seconds: float, evaluations: int) -> dict:
    """What the page keeps of a finished run: its recipe, and what its line says."""
    return {"recipe": result.recipe.to_json(), "seconds": float(seconds),
            "evaluations": int(evaluations), "result": result_summary(result),
            "chart": levels_chart(result)}


def run_line(number: int, entry: dict) -> list:
    """The Runs table's line of a kept run."""
    r = Recipe.from_json(entry["recipe"])
    sampler = SAMPLER_LABELS.get(r.sampler.name, r.sampler.name).split(" (")[0]   # "U-HMC"
    samples = f"{r.num_samples} sample{'s' if r.num_samples != 1 else ''}"
    return [number, entry["result"], r.model, r.operator, sampler,
            f"{r.steps} steps · seed {r.seed} · {samples}",
            f"{entry['seconds']:.2f} s · {entry['evaluations']:,} evals"]


def last_chart(runs: list) -> str:
    """The chart of the page's last run that has one (a run brought back from the
    browser has none: it was drawn from the frames; opening the run draws it again)."""
    for number, entry in reversed(list(enumerate(runs, 1))):
        if entry.get("chart"):
            return f"<p class='levels-title'>Run {number}, per noise level</p>{entry['chart']}"
    return ""


def browser_copy(runs: list) -> list:
    """What the visitor's browser keeps: the last KEPT_RUNS runs, without the plots."""
    return [{k: e[k] for k in ("recipe", "seconds", "evaluations", "result")}
            for e in runs[-KEPT_RUNS:]]


def from_browser(kept) -> list:
    """The runs a browser kept, each checked as an upload would be (the browser holds
    the key, so what it sends back may have been changed); anything wrong is dropped."""
    runs = []
    for entry in kept if isinstance(kept, list) else []:
        try:
            Recipe.from_json(entry["recipe"])
            seconds, evaluations = float(entry["seconds"]), int(entry["evaluations"])
            if not (math.isfinite(seconds) and seconds >= 0 and evaluations >= 0):
                continue
            runs.append({"recipe": entry["recipe"], "seconds": seconds,
                         "evaluations": evaluations, "result": str(entry["result"])[:600]})
        except (RecipeError, KeyError, TypeError, ValueError, OverflowError):
            continue
    return runs[-KEPT_RUNS:]


def levels_chart(result, width: int = 480) -> str:
    """The run's levels: MCMC acceptance and step, tracked log-densities and ESS."""
    return run_chart(result.frames, [c.text for c in result.recipe.active_concepts], width)


def result_summary(result) -> str:
    """The Runs table's result cell, short enough for six lines in view: the headline
    metrics against ground truth (2D: MMD and the share in the target's support; every
    metric is under the run's pictures), the judge's and the model's verdicts."""
    metrics = "" if "correct" in result.metrics else short_metrics(result.metrics)
    return " · ".join(part for part in (metrics, verdict_summary(result)) if part)


HEADLINE_METRICS = {"mmd": "MMD {:.3g}", "in_support": "{:.0%} in support"}


def short_metrics(metrics: dict) -> str:
    """'MMD 0.0821 · 99% in support', or the first two metrics of another kind."""
    shown = [HEADLINE_METRICS[k].format(v) for k, v in metrics.items() if k in HEADLINE_METRICS]
    return " · ".join(shown) if shown else metrics_text(dict(list(metrics.items())[:2]))


def verdict_summary(result) -> str:
    """'3 of 4 correct (judge) · 4 of 4 by the model' for what judged the run, else ''."""
    parts = []
    if "correct" in result.metrics:
        n = result.recipe.num_samples
        parts.append(f"{round(result.metrics['correct'] * n)} of {n} correct (judge)")
    if result.lift:
        parts.append(f"{sum(v['holds'] for v in result.lift)} of {len(result.lift)} hold "
                     f"by the model")
    return " · ".join(parts)


def glance(result) -> str:
    """'judge 8/8 · model 5/8 · 3 disputed': both verdicts in a few words, or ''."""
    parts = []
    if "correct" in result.metrics:
        n = result.recipe.num_samples
        parts.append(f"judge {round(result.metrics['correct'] * n)}/{n}")
    if result.lift:
        parts.append(f"model {sum(v['holds'] for v in result.lift)}/{len(result.lift)}")
    if disputed := sum(disputes(result)):
        parts.append(f"{disputed} disputed")
    return " · ".join(parts)


def disputes(result) -> list[bool]:
    """Per sample: the judge and the model's lift disagree on whether the composition
    holds (clutter aside: the lift cannot see it). Empty without both verdicts."""
    if not (result.verdicts and result.lift):
        return []
    return [v["holds"] != m["holds"] for v, m in zip(result.verdicts, result.lift)]


PER_SAMPLE_LINES = 16       # more samples (a 2D cloud): each row's share instead


def lift_text(result) -> str:
    """The model's own verdicts (lift), per sample and row, or per row for a cloud."""
    if not result.lift:
        return ""
    n, holding = len(result.lift), sum(v["holds"] for v in result.lift)
    parts = [f"**By the model (lift; its own opinion, not ground truth):** {holding} of {n} "
             f"samples {OPERATORS[result.recipe.operator].verdict_words()}"
             + (" (a noisy estimate: on the landing recipe it misses 4% of the rows the judge "
                "sees, where the exact world agrees with the judge; docs/lift.md)"
                if any(disputes(result)) else "")]
    if n <= PER_SAMPLE_LINES:
        disputed = disputes(result) or [False] * n
        parts.extend(lift_line(k, v) + (" · **disputed**" if d else "")
                     for k, (v, d) in enumerate(zip(result.lift, disputed), 1))
    else:
        for i, row in enumerate(result.lift[0]["rows"]):
            share = sum(v["rows"][i]["holds"] for v in result.lift) / n
            parts.append(f"Row {row['row']} {row_name(row)}: holds for {share:.0%} of the samples")
    return "  \n".join(parts)


def row_name(row: dict) -> str:
    return f"{'NOT ' if row['negate'] else ''}{row['text']}"


def lift_line(number: int, verdict: dict) -> str:
    """'Sample 2: ✓ red circle (+0.84) · ✗ NOT blue (+0.12)': each row's lift."""
    rows = " · ".join(f"{'✓' if r['holds'] else '✗'} {row_name(r)} ({r['lift']:+.3g})"
                      for r in verdict["rows"])
    return f"Sample {number}: {rows}"


def verdict_line(number: int, verdict: dict, disputed: bool = False) -> str:
    """'Sample 2: ✓ red circle · ✗ NOT blue · clean ✓' (rows by their row number);
    `disputed`: the model's lift says otherwise."""
    rows = " · ".join(f"{'✓' if r['holds'] else '✗'} {'NOT ' if r['negate'] else ''}{r['text']} "
                      f"(row {r['row']})" for r in verdict["rows"])
    dispute = (f" · **disputed**: the model says it {'fails' if verdict['holds'] else 'holds'}"
               if disputed else "")
    return f"Sample {number}: {rows} · clean scene {'✓' if verdict['clean'] else '✗'}{dispute}"


def runs_value(runs: list) -> dict:
    return {"headers": RUN_HEADERS, "data": [run_line(n, e) for n, e in enumerate(runs, 1)]}


def judge_text(result, accept: list) -> str:
    parts = []
    if "correct" in result.metrics:  # an image model with a judge (shapes)
        n = result.recipe.num_samples
        count = {k: round(v * n) for k, v in result.metrics.items()}
        disputed = disputes(result) or [False] * n
        parts.append(f"**Judge:** {count['correct']} of {n} samples "
                     f"{OPERATORS[result.recipe.operator].verdict_words()} in a clean "
                     f"scene ({count['rows_hold']} of {n} if clutter is ignored; "
                     f"{count['clean']} of {n} clean; objects no row asked for are allowed)"
                     + (f"; the model's lift disputes {sum(disputed)}" if any(disputed) else ""))
        parts.extend(verdict_line(k, v, d)
                     for k, (v, d) in enumerate(zip(result.verdicts, disputed), 1))
    elif result.metrics:
        parts.append("**Metrics vs ground truth:** " + metrics_text(result.metrics))
    if result.lift:
        parts.append(lift_text(result))
    if accept:
        parts.append(f"**Mean acceptance:** {np.mean(accept):.1%} "
                     f"(first level {accept[0]:.0%}, last {accept[-1]:.0%})")
    return "  \n".join(parts)
