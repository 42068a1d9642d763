"""The Sweep tab: one knob, or two, over a list or a range of values under the form's
seed, as a labelled grid that fills in cell by cell."""
from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from composer.media import labelled_grid, sweep_cell
from composer.recipe import MAX_CONCEPTS, Recipe
from composer.sweep import MAX_CELLS
from ui import state
from ui.components import quiet_choices
from ui.files import picture_file, save_sweep
from ui.form import recipe_handler
from ui.frames import timed
from ui.page import PRIVATE, RUN_QUEUE, SHOWN_JS
from ui.results import run_entry, runs_value
from ui.service import Service
from ui.stack import streamed_run
from ui.words import is_blank


@dataclass(frozen=True)
class SweepTab:
    fields: tuple                # per axis, the swept field (gr.Dropdown)
    values: tuple                # per axis, its values (gr.Textbox)
    button: gr.Button
    status: gr.Markdown
    image: gr.Image
    files: gr.File


def build() -> SweepTab:
    gr.Markdown("One knob, or two, over a list of values (`0, 0.5, 1`) or a range "
                "(`0.5:2:4`, four values from 0.5 to 2), under the form's seed; at most "
                f"{MAX_CELLS} cells, each a run of its own.")
    fields, values = [], []
    for k, (first, example) in enumerate(((state.SWEEP_DEFAULT, state.SWEEP_EXAMPLE),
                                          ("none", ""))):
        with gr.Row():
            fields.append(quiet_choices(gr.Dropdown(
                ([] if k == 0 else [("none", "none")]) + state.sweep_choices(MAX_CONCEPTS),
                value=first, label=f"Axis {k + 1}", elem_id=f"sweep-field-{k + 1}", scale=2)))
            values.append(gr.Textbox(example, label="Values", elem_id=f"sweep-values-{k + 1}",
                                     scale=3))
    button = gr.Button("Run sweep", variant="primary", elem_id="sweep")
    status = gr.Markdown("", elem_id="sweep-status")
    image = gr.Image(label="Sweep", type="numpy", format="png", interactive=False,
                     elem_id="sweep-grid", visible=False)
    files = gr.File(label="Grid PNG (carries the sweep) and sweep.json", file_count="multiple",
                    elem_id="sweep-files", interactive=False, visible=False)
    return SweepTab(fields=tuple(fields), values=tuple(values), button=button, status=status,
                    image=image, files=files)


def wire(page, service: Service):
    """Connect the tab; returns the sweep's event."""
    tab, bar, form, runs_tab = page.sweep, page.bar, page.form, page.runs

    @streamed_run(bar.status)
    def sweep(recipe_text: str, field_1: str, values_1: str, field_2: str, values_2: str,
              runs: list | None = None, cancel=None):
        """The sweep's cost first, then its labelled grid as each cell finishes, then
        the grid PNG (carrying the sweep, for `python -m composer sweep`)."""
        if is_blank(recipe_text):  # the page did not validate: change nothing
            yield {tab.status: gr.skip()}
            return
        plan = state.build_sweep(Recipe.from_json(recipe_text),
                                 [(field_1, values_1), (field_2, values_2)])
        rows, columns = plan.shape
        cost = service.composer.sweep_cost(plan)
        limit = service.composer.sweep_budget(plan.recipe.model)
        head = f"Sweep of {rows * columns} cells, {cost:,} network evaluations"
        budget = f" (a sweep of this model may use {limit:,})" if limit is not None else ""
        yield {tab.status: f"{head}: running…{budget}",
               tab.files: gr.update(visible=False, value=None),
               tab.image: gr.update(visible=False, value=None)}
        cells, (row_labels, column_labels) = [], plan.labels()
        runs, before = list(runs or []), 0.0
        for cell, seconds in timed(service.composer.sweep(plan, cancel)):
            cells.append((cell.position, *sweep_cell(cell.result.images, cell.result.metrics)))
            picture = labelled_grid(cells, row_labels, column_labels)
            runs.append(run_entry(cell.result, seconds - before,
                                  service.composer.cost(cell.result.recipe)))
            before = seconds
            yield {tab.image: gr.update(value=picture_file(picture), visible=True),
                   tab.status: f"{head}: {len(cells)} of {rows * columns} done.",
                   runs_tab.runs: runs}
        yield {tab.files: gr.update(value=save_sweep(plan, picture), visible=True),
               tab.status: f"{head}: done.", bar.status: f"{head}: done.",
               runs_tab.table: runs_value(runs)}

    axes = [widget for pair in zip(tab.fields, tab.values) for widget in pair]
    return tab.button.click(
        recipe_handler(form, bar.status, service), form.page_inputs(),
        [form.recipe_json, bar.status, form.share_token], js=SHOWN_JS, concurrency_limit=None,
        api_visibility=PRIVATE).then(
        sweep, [form.recipe_json, *axes, runs_tab.runs],
        [tab.status, tab.image, tab.files, runs_tab.runs, runs_tab.table, bar.status],
        api_name="sweep", show_progress="minimal", **RUN_QUEUE)
