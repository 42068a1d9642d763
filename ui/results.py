"""What a finished run shows: the per-concept pictures, the judge's verdicts and
metrics, and its line in the Runs table."""
from __future__ import annotations

import math

import gradio as gr
import numpy as np

from composer.operators import OPERATORS
from composer.recipe import SAMPLER_LABELS, Recipe, RecipeError
from ui.files import THUMB_SIDE, page_picture
from ui.plots import levels_svg, tracks_svg
from ui.words import metrics_text

RUN_HEADERS = ["#", "model", "op", "sampler", "run", "compute", "levels", "result"]
# Sized to fit the result column at 1400 px (653 px): long cells wrap, and the MCMC
# levels are a picture (ui/plots.py). A phone scrolls the table sideways.
RUN_WIDTHS = ["28px", "92px", "44px", "72px", "100px", "92px", "96px", "116px"]
RUN_TYPES = ["number", "str", "str", "str", "str", "str", "html", "str"]
PLOT_SIZE = (88, 30)
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
            "levels": levels_svg([f.step_size for f in result.frames],
                                 [f.acceptance for f in result.frames], *PLOT_SIZE)
            + tracks(result, *PLOT_SIZE)}


def run_line(number: int, entry: dict) -> list:
    """The Runs table's line of a kept run (a run brought back from the browser has no
    plots: they were drawn from its frames; opening it draws them again)."""
    r = Recipe.from_json(entry["recipe"])
    sampler = SAMPLER_LABELS.get(r.sampler.name, r.sampler.name).split(" (")[0]   # "U-HMC"
    samples = f"{r.num_samples} sample{'s' if r.num_samples != 1 else ''}"
    return [number, r.model, r.operator, sampler, f"{r.steps} steps · seed {r.seed} · {samples}",
            f"{entry['seconds']:.2f} s · {entry['evaluations']:,} evals", entry.get("levels", ""),
            entry["result"]]


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


def tracks(result, *size: int) -> str:
    """The run's tracked log-densities per concept and smc's ESS, per level."""
    names = [c.text for c in result.recipe.active_concepts]
    return tracks_svg([f.log_density for f in result.frames], [f.ess for f in result.frames], names,
                      *size)


def result_summary(result) -> str:
    """The Runs table's last cell: the metrics against ground truth (2D), the judge's
    and the model's verdicts."""
    metrics = "" if "correct" in result.metrics else metrics_text(result.metrics)
    return " · ".join(part for part in (metrics, verdict_summary(result)) if part)


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


PER_SAMPLE_LINES = 16       # more samples (a 2D cloud): each row's share instead


def lift_text(result) -> str:
    """The model's own verdicts (lift), per sample and row, or per row for a cloud."""
    if not result.lift:
        return ""
    n, holding = len(result.lift), sum(v["holds"] for v in result.lift)
    parts = [f"**By the model (lift; its own opinion, not ground truth):** {holding} of {n} "
             f"samples {OPERATORS[result.recipe.operator].verdict_words()}"]
    if n <= PER_SAMPLE_LINES:
        parts.extend(lift_line(k, v) for k, v in enumerate(result.lift, 1))
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


def verdict_line(number: int, verdict: dict) -> str:
    """'Sample 2: ✓ red circle · ✗ NOT blue · clean ✓' (rows by their row number)."""
    rows = " · ".join(f"{'✓' if r['holds'] else '✗'} {'NOT ' if r['negate'] else ''}{r['text']} "
                      f"(row {r['row']})" for r in verdict["rows"])
    return f"Sample {number}: {rows} · clean scene {'✓' if verdict['clean'] else '✗'}"


def runs_value(runs: list) -> dict:
    return {"headers": RUN_HEADERS, "data": [run_line(n, e) for n, e in enumerate(runs, 1)]}


def judge_text(result, accept: list) -> str:
    parts = []
    if "correct" in result.metrics:  # an image model with a judge (shapes)
        n = result.recipe.num_samples
        count = {k: round(v * n) for k, v in result.metrics.items()}
        parts.append(f"**Judge:** {count['correct']} of {n} samples "
                     f"{OPERATORS[result.recipe.operator].verdict_words()} in a clean "
                     f"scene ({count['rows_hold']} of {n} if clutter is ignored; "
                     f"{count['clean']} of {n} clean)")
        parts.extend(verdict_line(k, v) for k, v in enumerate(result.verdicts, 1))
    elif result.metrics:
        parts.append("**Metrics vs ground truth:** " + metrics_text(result.metrics))
    if result.lift:
        parts.append(lift_text(result))
    if accept:
        parts.append(f"**Mean acceptance:** {np.mean(accept):.1%} "
                     f"(first level {accept[0]:.0%}, last {accept[-1]:.0%})")
    return "  \n".join(parts)
