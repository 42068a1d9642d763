"""The Runs tab: every run of this page (sweep cells included), a line each."""
from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from ui.results import RUN_HEADERS, RUN_TYPES, RUN_WIDTHS


@dataclass(frozen=True)
class RunsTab:
    runs: gr.State               # the table's rows
    table: gr.Dataframe


def build() -> RunsTab:
    return RunsTab(runs=gr.State([]),
                   table=gr.Dataframe(headers=RUN_HEADERS, elem_id="runs", interactive=False,
                                      wrap=True, column_widths=RUN_WIDTHS,
                                      datatype=RUN_TYPES))
