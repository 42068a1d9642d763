"""The Sweep tab: one knob, or two, over a list or a range of values under the form's
seed, as a labelled grid that fills in cell by cell."""
from __future__ import annotations

import functools
from dataclasses import dataclass

import gradio as gr

from composer.facade import ComposerError, SweepPlan
from composer.media import labelled_grid, sweep_cell
from composer.recipe import Recipe, RecipeError
from composer.sweep import MAX_CELLS, concept_field
from ui import state
from ui.components import quiet_choices
from ui.files import picture_file, save_sweep
from ui.form import recipe_handler, recipe_reader
from ui.frames import timed
from ui.page import PRIVATE, RUN_QUEUE
from ui.results import run_entry, runs_value
from ui.service import Service
from ui.stack import guard, streamed_run
from ui.words import error_markdown, is_blank


# Values a visitor gets on choosing a field, so a new axis is runnable as it stands.
EXAMPLE_VALUES = {"weight": state.SWEEP_EXAMPLE, "beta": "0:2:5", "scale": "1:9:5",
                  "sampler.name": "ddim, mala, hmc", "sampler.step_size": "0.05, 0.1, 0.2",
                  "sampler.mcmc_steps": "1, 2, 4", "steps": "10, 25, 50", "seed": "0, 1, 2, 3"}


def example_values(field: str) -> str:
    row = concept_field(field)
    return EXAMPLE_VALUES.get(row.group(2) if row else field, "")


@dataclass(frozen=True)
class SweepTab:
    tab: gr.Tab                  # opening it shows the grid's size and cost
    fields: tuple                # per axis, the swept field (gr.Dropdown)
    values: tuple                # per axis, its values (gr.Textbox)
    button: gr.Button
    status: gr.Markdown
    image: gr.Image
    files: gr.File


def build(tab: gr.Tab) -> SweepTab:
    gr.Markdown("One knob, or two, over a list of values (`0, 0.5, 1`) or a range "
                "(`0.5:2:4`, four values from 0.5 to 2), under the form's seed; at most "
                f"{MAX_CELLS} cells, each a run of its own. The menus offer what applies to "
                "the form's recipe.")
    fields, values = [], []
    for k, (first, example) in enumerate(((state.SWEEP_DEFAULT, state.SWEEP_EXAMPLE),
                                          ("none", ""))):
        with gr.Row():
            # Every sweepable field, as the API takes them; the page narrows the menu.
            fields.append(quiet_choices(gr.Dropdown(
                ([] if k == 0 else [("none", "none")]) + state.sweep_choices(),
                value=first, label=f"Axis {k + 1}", elem_id=f"sweep-field-{k + 1}", scale=2,
                min_width=220)))              # a phone puts the values under it, not the name cut
            values.append(gr.Textbox(example, label="Values", elem_id=f"sweep-values-{k + 1}",
                                     scale=3))
    button = gr.Button("Run sweep", variant="primary", elem_id="sweep")
    status = gr.Markdown("", elem_id="sweep-status")
    image = gr.Image(label="Sweep", type="numpy", format="png", interactive=False,
                     elem_id="sweep-grid", visible=False)
    files = gr.File(label="Grid PNG (carries the sweep) and sweep.json", file_count="multiple",
                    elem_id="sweep-files", interactive=False, visible=False)
    return SweepTab(tab=tab, fields=tuple(fields), values=tuple(values), button=button, status=status,
                    image=image, files=files)


def priced(service: Service, recipe: Recipe,
           axes: list[tuple[str, str]]) -> tuple[SweepPlan, str, str]:
    """The sweep the axes make, its line ('Sweep of 4 cells (4 × 1), 1,000 network
    evaluations') and its budget (' (a sweep of this model may use …)'); RecipeError
    in the page's words."""
    plan = state.build_sweep(recipe, axes)
    rows, columns = plan.shape
    try:
        planned = service.composer.sweep_plan(plan)
    except ComposerError as err:
        raise RecipeError(state.sweep_words(str(err))) from None
    budget = f" (a sweep of this model may use {planned.budget:,})" if planned.budget is not None else ""
    return (planned, f"Sweep of {rows * columns} cells ({rows} × {columns}), "
                     f"{planned.total:,} network evaluations", budget)


class SweepEvents:
    """The tab's handlers: the sweep itself (`run`, the /sweep endpoint) and its preview."""

    def __init__(self, page, service: Service):
        self.page, self.service, self.tab = page, service, page.sweep
        self.read = recipe_reader(page.form, service)
        self.run = streamed_run(page.bar.status)(self._sweep)

    def _sweep(self, recipe_text: str, field_1: str, values_1: str, field_2: str, values_2: str,
               runs: list | None = None, cancel=None):
        """The sweep's cost first, then its labelled grid as each cell finishes, then
        the grid PNG (carrying the sweep, for `python -m composer sweep`)."""
        tab, runs_tab = self.tab, self.page.runs
        if is_blank(recipe_text):  # the page did not validate: change nothing
            yield {tab.status: gr.skip()}
            return
        planned, head, budget = priced(self.service, Recipe.from_json(recipe_text),
                                       [(field_1, values_1), (field_2, values_2)])
        plan = planned.sweep
        rows, columns = plan.shape
        yield {tab.status: f"{head}: running…{budget}",
               tab.files: gr.update(visible=False, value=None),
               tab.image: gr.update(visible=False, value=None)}
        cells, (row_labels, column_labels) = [], plan.labels()
        runs, before = list(runs or []), 0.0
        for cell, seconds in timed(self.service.composer.sweep(planned, cancel)):
            cells.append((cell.position, *sweep_cell(cell.result.images, cell.result.metrics)))
            picture = labelled_grid(cells, row_labels, column_labels)
            runs.append(run_entry(cell.result, seconds - before, cell.result.plan.sampling))
            before = seconds
            yield {tab.image: gr.update(value=picture_file(picture), visible=True),
                   tab.status: f"{head}: {len(cells)} of {rows * columns} done.",
                   runs_tab.runs: runs}
        yield {tab.files: gr.update(value=save_sweep(plan, picture), visible=True),
               tab.status: f"{head}: done.", self.page.bar.status: f"{head}: done.",
               runs_tab.table: runs_value(runs)}

    def preview(self, values: dict):
        """The grid's size and cost for the form's recipe as it stands, and axis menus
        offering only what applies to it; a problem is said here, as the page says it."""
        tab = self.tab
        (field_1, field_2), (values_1, values_2) = ([values[c] for c in tab.fields],
                                                    [values[c] for c in tab.values])
        try:
            recipe = self.read(values)
        except ValueError as err:
            return {tab.status: error_markdown(f"The form's recipe cannot run yet: "
                                               f"{str(err).splitlines()[0]}")}
        choices = state.sweep_choices(recipe)
        offered = [f for _, f in choices]
        field_1 = field_1 if field_1 in offered else offered[0]
        field_2 = field_2 if field_2 in offered else "none"
        updates = {tab.fields[0]: gr.update(choices=choices, value=field_1),
                   tab.fields[1]: gr.update(choices=[("none", "none")] + choices, value=field_2)}
        try:
            _, head, budget = priced(self.service, recipe, [(field_1, values_1), (field_2, values_2)])
            return {**updates, tab.status: f"{head}{budget}. Press Run sweep."}
        except ValueError as err:
            return {**updates, tab.status: error_markdown(str(err))}


def wire(page, service: Service):
    """Connect the tab; returns the sweep's event."""
    tab, bar, form, runs_tab = page.sweep, page.bar, page.form, page.runs
    events = SweepEvents(page, service)
    axes = [widget for pair in zip(tab.fields, tab.values) for widget in pair]
    # A new field gets values it can run (.change, not .input: a dropdown's blur is an
    # input too, and its answer came after the visitor had typed values of their own).
    for field, box in zip(tab.fields, tab.values):
        field.change(example_values, field, box, queue=False, api_visibility=PRIVATE)
    # Unprocessed, as the rows' own events: during a model switch a menu may hold a value
    # its new choices lack for a moment, which Gradio's preprocessing would refuse.
    form.on_page(functools.partial(gr.on, [tab.tab.select, *(v.change for v in tab.values),
                                           form.rows.state.change, form.info.change,
                                           *(c.change for c in form.settings().values())],
                                   trigger_mode="always_last"),
                 guard(events.preview), [*tab.fields, tab.status], extra_inputs=axes,
                 queue=False, preprocess=False, trigger_mode="always_last", api_visibility=PRIVATE)
    return form.on_page(
        tab.button.click, recipe_handler(form, bar.status, service),
        [form.recipe_json, bar.status, form.share_token], concurrency_limit=None,
        api_visibility=PRIVATE).then(
        events.run, [form.recipe_json, *axes, runs_tab.runs],
        [tab.status, tab.image, tab.files, runs_tab.runs, runs_tab.table, bar.status],
        api_name="sweep", show_progress="minimal", **RUN_QUEUE)
