"""The Compare tab: the form's recipe and seed under 2–4 samplers (and models), streamed
side by side, each with its compute time, network evaluations and acceptance."""
from __future__ import annotations

from dataclasses import dataclass

import gradio as gr
import numpy as np

from composer.facade import Frame
from composer.operators import OPERATORS
from composer.recipe import SAMPLER_LABELS, SAMPLERS, Recipe
from ui.components import quiet_choices
from ui.files import final_picture, page_picture, save_png
from ui.form import recipe_handler
from ui.frames import timed
from ui.page import PRIVATE, RUN_QUEUE, SHARE_JS
from ui.results import levels_chart, result_summary, run_entry, runs_value
from ui.service import Service
from ui.stack import streamed_run
from ui.words import flag, is_blank

SLOTS = 4


@dataclass(frozen=True)
class CompareTab:
    samplers: gr.CheckboxGroup
    models: gr.CheckboxGroup
    operators: gr.CheckboxGroup
    button: gr.Button
    images: tuple                # SLOTS gr.Image, one per run
    status: gr.Markdown
    levels: gr.HTML              # each run's MCMC step size and acceptance per level
    files: gr.File


def build(service: Service) -> CompareTab:
    samplers = quiet_choices(gr.CheckboxGroup(
        [(SAMPLER_LABELS[s], s) for s in SAMPLERS], value=["ddim", "mala"],
        label=f"Samplers (2–{SLOTS}), same recipe and seed", elem_id="compare-samplers"))
    models = quiet_choices(gr.CheckboxGroup(
        service.available_models(), value=[], elem_id="compare-models",
        label="Also across models: each sampler runs on each ticked model "
              "(none ticked: the form's model)"))
    operators = quiet_choices(gr.CheckboxGroup(
        [(op.label, name) for name, op in OPERATORS.items()], value=[], elem_id="compare-operators",
        label="Also across methods: each sampler runs under each ticked operator "
              "(none ticked: the form's)"))
    button = gr.Button("Compare", variant="primary", elem_id="compare")
    with gr.Row(elem_id="compare-grid"):
        images = tuple(gr.Image(label=f"Sampler {k + 1}", type="numpy", format="png",
                                interactive=False, elem_id=f"compare-{k + 1}", visible=k < 2,
                                alt_text=f"Sampler {k + 1}", buttons=[])   # the PNGs are below
                       for k in range(SLOTS))
    status = gr.Markdown("", elem_id="compare-status")
    levels = gr.HTML("", elem_id="compare-levels")
    files = gr.File(label="PNGs with recipes", file_count="multiple", elem_id="compare-files",
                    interactive=False, visible=False)
    return CompareTab(samplers=samplers, models=models, operators=operators, button=button,
                      images=images,
                      status=status, levels=levels, files=files)


def levels_html(names: list[str], results: list) -> str:
    """Each run's levels (MCMC acceptance and step, tracked log-densities, ESS), side
    by side."""
    figures = "".join(f"<figure><figcaption>{name}</figcaption>{svg}</figure>"
                      for name, r in zip(names, results) if (svg := levels_chart(r, 300)))
    return f"<div class='levels'>{figures}</div>" if figures else ""


def names_of(recipes: list[Recipe]) -> list[str]:
    """Each run's name: its sampler, and its model and operator where those differ."""
    across = len({r.model for r in recipes}) > 1
    methods = len({r.operator for r in recipes}) > 1
    return [SAMPLER_LABELS[r.sampler.name] + (f" · {r.model}" if across else "")
            + (f" · {OPERATORS[r.operator].label}" if methods else "") for r in recipes]


def line_of(name: str, item, seconds: float, evaluations: int) -> str:
    """A run's line under the pictures: its step, or its time, evaluations and verdict."""
    if isinstance(item, Frame):
        acc = "" if item.acceptance is None else f", acceptance {item.acceptance:.0%}"
        return f"**{name}**: step {item.index + 1}/{item.total}{acc}"
    accept = [f.acceptance for f in item.frames if f.acceptance is not None]
    return (f"**{name}**: {seconds:.1f} s compute, {evaluations:,} network evaluations"
            + (f", mean acceptance {np.mean(accept):.0%}" if accept else "")
            + (f"; {summary}" if (summary := result_summary(item)) else ""))


class CompareEvents:
    """The tab's handlers: the comparison itself (`run`, the /compare endpoint) and the
    samplers' cap."""

    def __init__(self, page, service: Service):
        self.page, self.service, self.tab = page, service, page.compare
        self.run = streamed_run(page.bar.status)(self._compare)

    def _compare(self, recipe_text: str, samplers: list, show_noisy: bool,
                 models: list | None = None, operators: list | None = None,
                 runs: list | None = None, cancel=None):
        """The same recipe and seed under 2-4 samplers, streamed side by side; each
        reports its own compute time and network evaluations."""
        tab, service, runs_tab = self.tab, self.service, self.page.runs
        if is_blank(recipe_text):  # the page did not validate: change nothing
            yield {tab.status: gr.skip()}  # (yielding nothing would blank every output)
            return
        show_noisy = flag(show_noisy, "show_noisy")
        recipes = service.compare_recipes(Recipe.from_json(recipe_text), list(samplers or []),
                                          list(models or []), list(operators or []))
        names = names_of(recipes)
        evaluations = [service.composer.plan(r).sampling for r in recipes]   # refused before any runs
        streams = [timed(service.stream(r, cancel=cancel)) for r in recipes]
        n = len(recipes)
        pictures, lines, results, seconds, live = [None] * n, [""] * n, [None] * n, [0.0] * n, set(range(n))
        yield {tab.files: gr.update(visible=False, value=None), tab.levels: ""}
        while live:
            for k in sorted(live):
                try:
                    item, seconds[k] = next(streams[k])
                except StopIteration:
                    live.discard(k)
                    continue
                if isinstance(item, Frame):
                    pictures[k] = page_picture(item.noisy if show_noisy else item.preview)
                else:
                    results[k], pictures[k] = item, page_picture(final_picture(item))
                lines[k] = line_of(names[k], item, seconds[k], evaluations[k])
            yield {**{image: gr.update(value=pictures[k], visible=True, label=names[k],
                                       alt_text=f"Result of {names[k]}")
                      for k, image in enumerate(tab.images[:n])},
                   **{image: gr.update(visible=False) for image in tab.images[n:]},
                   tab.status: "  \n".join(lines)}
        runs = list(runs or []) + [run_entry(r, seconds[k], evaluations[k]) for k, r in enumerate(results)]
        yield {runs_tab.runs: runs, runs_tab.table: runs_value(runs),
               tab.levels: levels_html(names, results),
               tab.files: gr.update(value=[save_png(result) for result in results], visible=True),
               self.page.bar.status: f"Compared {', '.join(names)}."}

    def limit(self, chosen):
        """At most SLOTS ticked, and the page says so where the box is (an unqueued
        event's toast never reaches the page)."""
        if len(chosen or []) <= SLOTS:
            return {self.tab.samplers: gr.skip()}      # (an empty dict is read as one value)
        return {self.tab.samplers: chosen[:SLOTS],
                self.tab.status: f"Compare takes up to {SLOTS} samplers: untick one to pick another."}


def wire(page, service: Service):
    """Connect the tab; returns the Compare event."""
    tab, bar, form, runs_tab = page.compare, page.bar, page.form, page.runs
    events = CompareEvents(page, service)
    tab.samplers.input(events.limit, tab.samplers, [tab.samplers, tab.status], queue=False,
                       api_visibility=PRIVATE)
    return form.on_page(
        tab.button.click, recipe_handler(form, bar.status, service),
        [form.recipe_json, bar.status, form.share_token], concurrency_limit=None,
        api_visibility=PRIVATE).then(
        None, form.share_token, form.share_link, js=SHARE_JS).then(
        events.run, [form.recipe_json, tab.samplers, page.generate.show_xt, tab.models,
                     tab.operators, runs_tab.runs],
        [*tab.images, tab.status, tab.levels, tab.files, runs_tab.runs, runs_tab.table, bar.status],
        api_name="compare", show_progress="minimal", **RUN_QUEUE)
