"""The Runs tab: every run of this page (sweep cells included), a line each, kept
in the visitor's browser so a reload or a server restart brings them back; opening
a line renders its recipe again (ui/form.py)."""
from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from ui.page import PRIVATE
from ui.results import (RUN_HEADERS, RUN_TYPES, RUN_WIDTHS, browser_copy, last_chart,
                        runs_value)

# Fixed, so that a restarted server reads what browsers kept. It protects nothing (the
# browser holds it too): what comes back is checked like an upload (from_browser).
KEPT_SECRET = "composer-runs-v1"


@dataclass(frozen=True)
class RunsTab:
    runs: gr.State               # this page's runs (ui/results.run_entry)
    table: gr.Dataframe
    chart: gr.HTML               # the last run's levels
    kept: gr.BrowserState        # the last runs, in the visitor's browser


def keeper() -> gr.BrowserState:
    """The browser's copy of the runs; made outside the tabs, which Gradio mounts only
    when opened (one inside the Runs tab saved nothing until the tab was looked at)."""
    return gr.BrowserState([], storage_key="composer-runs", secret=KEPT_SECRET)


def build(kept: gr.BrowserState) -> RunsTab:
    gr.Markdown("Click a run to render its recipe again. This browser keeps your last "
                "runs across reloads.", elem_id="runs-help")
    return RunsTab(runs=gr.State([]),
                   table=gr.Dataframe(headers=RUN_HEADERS, elem_id="runs", interactive=False,
                                      wrap=True, column_widths=RUN_WIDTHS,
                                      datatype=RUN_TYPES,
                                      max_height=600),
                   chart=gr.HTML("", elem_id="runs-chart"),
                   kept=kept)


def wire(page) -> None:
    """The table and the browser's copy follow the page's runs (the page's load brings
    the kept ones back: ui/form.py), so a sweep stopped
    halfway still lists its finished cells. (A stream that sends the table twice sends
    the second as a diff, which Gradio's table applied as an empty one: streams send
    it once, at the end.)"""
    tab = page.runs
    tab.runs.change(lambda runs: (runs_value(runs), last_chart(runs), browser_copy(runs)),
                    tab.runs, [tab.table, tab.chart, tab.kept], queue=False,
                    api_visibility=PRIVATE)
