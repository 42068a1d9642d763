"""What every part of the page shares: the action bar, the page's components by
part, the static CSS and JavaScript, and the queue's settings."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from composer.recipe import RANGES

PRIVATE = "private"        # UI-only listeners stay out of the API page
GPU_GROUP = "gpu"
# Runs active at once. They take turns on the device one network evaluation at a time,
# the run that has used it least going first (engine.SharedDevice), so however many large
# jobs are active a small one waits for at most one evaluation per step; a run that is
# not admitted waits in the queue instead. The budget caps how large one run can be.
CONCURRENCY_ENV = "COMPOSER_CONCURRENCY"
RUN_CONCURRENCY = max(1, int(os.environ.get(CONCURRENCY_ENV, "16")))
QUEUE_SIZE = 64            # waiting requests beyond this are refused, not stored
RUN_QUEUE = {"concurrency_id": GPU_GROUP, "concurrency_limit": RUN_CONCURRENCY}

STATIC = Path(__file__).resolve().parent / "static"
CSS = (STATIC / "app.css").read_text()
PAGE_JS = (STATIC / "page.js").read_text()      # row names for screen readers, weight boxes
SHOWN_JS = (STATIC / "shown.js").read_text()    # what the form shows, read before a run
REVEAL_JS = (STATIC / "reveal.js").read_text()  # after Generate: the result on screen
# In the head, so it runs before the page paints: a link's recipe may differ from the
# default whose picture the page opens on (app.css hides that picture).
HEAD = ("<script>if (new URLSearchParams(location.search).has('recipe'))"
        " document.documentElement.classList.add('from-link');</script>")
SHARE_JS = """(token) => token ? window.location.origin + window.location.pathname
    + "?recipe=" + token : "" """


@dataclass(frozen=True)
class Bar:
    """First in the page (and in Tab order), fixed to the bottom of the window by CSS."""
    generate: gr.Button
    best_of: gr.Dropdown     # candidates per sample, chosen by the model's lift (recipe.best_of)
    stop: gr.Button
    status: gr.Markdown
    notice: gr.Markdown      # what a link, an import or an example did to the form


@dataclass(frozen=True)
class Page:
    demo: gr.Blocks
    bar: Bar
    form: Any                # ui.form.Form
    generate: Any            # ui.tab_generate.GenerateTab
    compare: Any             # ui.tab_compare.CompareTab
    sweep: Any               # ui.tab_sweep.SweepTab
    runs: Any                # ui.tab_runs.RunsTab
    tabs: gr.Tabs            # the result tabs


def build_bar() -> Bar:
    # At the top, where a visitor who opened a link looks first (runs report on the
    # status line).
    notice = gr.Markdown("", elem_id="notice")
    with gr.Row(elem_id="action-bar", equal_height=True):
        generate = gr.Button("Generate", variant="primary", elem_id="generate", scale=0,
                             min_width=130)
        best_of = gr.Dropdown([(f"best of {n}", n) for n in range(1, RANGES['best_of'][1] + 1)], value=1,
                              label="Best of", show_label=False, elem_id="best-of", scale=0,
                              min_width=118,
                              container=False)
        stop = gr.Button("Stop", variant="stop", elem_id="stop", scale=0, min_width=90)
        status = gr.Markdown("", elem_id="status")
    return Bar(generate=generate, best_of=best_of, stop=stop, status=status, notice=notice)
