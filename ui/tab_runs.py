"""The Runs tab: every run of this page (sweep cells included), a line each."""
from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from ui.page import PRIVATE
from ui.results import RUN_HEADERS, RUN_TYPES, RUN_WIDTHS, runs_value


@dataclass(frozen=True)
class RunsTab:
    runs: gr.State               # the table's rows
    table: gr.Dataframe


def build() -> RunsTab:
    return RunsTab(runs=gr.State([]),
                   table=gr.Dataframe(headers=RUN_HEADERS, elem_id="runs", interactive=False,
                                      wrap=True, column_widths=RUN_WIDTHS,
                                      datatype=RUN_TYPES))


def wire(page) -> None:
    """The table follows the page's runs, so a sweep stopped halfway still lists its
    finished cells. (A stream that sends the table twice sends the second as a diff,
    which Gradio's table applied as an empty one: streams send it once, at the end.)"""
    page.runs.runs.change(runs_value, page.runs.runs, page.runs.table, queue=False,
                          api_visibility=PRIVATE)
