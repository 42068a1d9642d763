"""What a finished run shows: the per-concept pictures, the judge's verdicts and
metrics, and its line in the Runs table."""
from __future__ import annotations

import gradio as gr
import numpy as np

from composer.recipe import SAMPLER_LABELS
from ui.handlers import THUMB_SIDE, metrics_text, page_picture

RUN_HEADERS = ["#", "model", "operator", "sampler", "steps", "seed", "samples", "compute s",
               "evaluations", "acceptance", "metrics"]
# Each header fits on one line and the metrics wrap in a column of their own; a table
# wider than its pane scrolls sideways.
RUN_WIDTHS = ["40px", "120px", "90px", "90px", "64px", "56px", "84px", "100px", "110px",
              "110px", "360px"]


def thumb_updates(slots, pictures, labels) -> dict:
    """Updates for the per-concept image slots: one per active row, the rest hidden."""
    updates = {slot: gr.update(value=page_picture(p, THUMB_SIDE), label=label, visible=True,
                               alt_text=f"{label}: this row's own prediction")
               for slot, p, label in zip(slots, pictures, labels)}
    return {**updates, **{slot: gr.update(visible=False) for slot in slots[len(updates):]}}


def run_row(number: int, result, seconds: float, evaluations: int, accept: list) -> list:
    r = result.recipe
    sampler = SAMPLER_LABELS.get(r.sampler.name, r.sampler.name).split(" (")[0]   # "U-HMC"
    return [number, r.model, r.operator, sampler, r.steps, r.seed, r.num_samples,
            round(seconds, 2), evaluations, round(float(np.mean(accept)), 3) if accept else "",
            verdict_summary(result) or metrics_text(result.metrics)]


def verdict_summary(result) -> str:
    """'3 of 4 correct' for models with a judge, else ''."""
    if "correct" not in result.metrics:
        return ""
    n = result.recipe.num_samples
    return f"{round(result.metrics['correct'] * n)} of {n} correct (judge)"


def verdict_line(number: int, verdict: dict) -> str:
    """'Sample 2: ✓ red circle · ✗ NOT blue · clean ✓' (rows by their row number)."""
    rows = " · ".join(f"{'✓' if r['holds'] else '✗'} {'NOT ' if r['negate'] else ''}{r['text']} "
                      f"(row {r['row']})" for r in verdict["rows"])
    return f"Sample {number}: {rows} · clean scene {'✓' if verdict['clean'] else '✗'}"


def runs_value(runs: list) -> dict:
    return {"headers": RUN_HEADERS, "data": runs}


def judge_text(result, accept: list) -> str:
    parts = []
    if "correct" in result.metrics:  # an image model with a judge (shapes)
        n = result.recipe.num_samples
        count = {k: round(v * n) for k, v in result.metrics.items()}
        parts.append(f"**Judge:** {count['correct']} of {n} samples satisfy every row in a clean "
                     f"scene ({count['rows_hold']} of {n} if clutter is ignored; "
                     f"{count['clean']} of {n} clean)")
        parts.extend(verdict_line(k, v) for k, v in enumerate(result.verdicts, 1))
    elif result.metrics:
        parts.append("**Metrics vs ground truth:** " + metrics_text(result.metrics))
    if accept:
        parts.append(f"**Mean acceptance:** {np.mean(accept):.1%} "
                     f"(first level {accept[0]:.0%}, last {accept[-1]:.0%})")
    return "  \n".join(parts)
