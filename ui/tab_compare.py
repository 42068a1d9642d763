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
from ui.page import PRIVATE, RUN_QUEUE, SHARE_JS, SHOWN_JS
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


def wire(page, service: Service):
    """Connect the tab; returns the Compare event."""
    tab, bar, form, runs_tab = page.compare, page.bar, page.form, page.runs

    @streamed_run(bar.status)
    def compare(recipe_text: str, samplers: list, show_noisy: bool, models: list | None = None,
                operators: list | None = None, runs: list | None = None, cancel=None):
        """The same recipe and seed under 2-4 samplers, streamed side by side; each
        reports its own compute time and network evaluations."""
        if is_blank(recipe_text):  # the page did not validate: change nothing
            yield {tab.status: gr.skip()}  # (yielding nothing would blank every output)
            return
        show_noisy = flag(show_noisy, "show_noisy")
        recipes = service.compare_recipes(Recipe.from_json(recipe_text), list(samplers or []),
                                          list(models or []), list(operators or []))
        across = len({r.model for r in recipes}) > 1
        methods = len({r.operator for r in recipes}) > 1

        def name_of(r: Recipe) -> str:
            return (SAMPLER_LABELS[r.sampler.name] + (f" · {r.model}" if across else "")
                    + (f" · {OPERATORS[r.operator].label}" if methods else ""))
        evaluations = [service.composer.cost(r) for r in recipes]
        streams = [timed(service.stream(r, cancel=cancel)) for r in recipes]
        pictures, lines = [None] * len(recipes), [""] * len(recipes)
        results, seconds = [None] * len(recipes), [0.0] * len(recipes)
        live = set(range(len(recipes)))
        yield {tab.files: gr.update(visible=False, value=None), tab.levels: ""}
        while live:
            for k in sorted(live):
                try:
                    item, seconds[k] = next(streams[k])
                except StopIteration:
                    live.discard(k)
                    continue
                name = name_of(recipes[k])
                if isinstance(item, Frame):
                    pictures[k] = page_picture(item.noisy if show_noisy else item.preview)
                    acc = "" if item.acceptance is None else f", acceptance {item.acceptance:.0%}"
                    lines[k] = f"**{name}**: step {item.index + 1}/{item.total}{acc}"
                else:
                    results[k] = item
                    pictures[k] = page_picture(final_picture(item))
                    accept = [f.acceptance for f in item.frames if f.acceptance is not None]
                    lines[k] = (f"**{name}**: {seconds[k]:.1f} s compute, "
                                f"{evaluations[k]:,} network evaluations"
                                + (f", mean acceptance {np.mean(accept):.0%}" if accept else "")
                                + (f"; {summary}" if (summary := result_summary(item)) else ""))
            update = {image: gr.update(value=pictures[k], visible=True, label=name_of(recipes[k]),
                                       alt_text=f"Result of {name_of(recipes[k])}")
                      for k, image in enumerate(tab.images[:len(recipes)])}
            update.update({image: gr.update(visible=False) for image in tab.images[len(recipes):]})
            update[tab.status] = "  \n".join(lines)
            yield update
        runs = list(runs or [])
        for k, result in enumerate(results):
            runs.append(run_entry(result, seconds[k], evaluations[k]))
        yield {runs_tab.runs: runs, runs_tab.table: runs_value(runs),
               tab.levels: levels_html([name_of(r) for r in recipes], results),
               tab.files: gr.update(value=[save_png(result) for result in results], visible=True),
               bar.status: f"Compared {', '.join(name_of(r) for r in recipes)}."}

    def limit(chosen):
        """At most SLOTS ticked, and the page says so where the box is (an unqueued
        event's toast never reaches the page)."""
        if len(chosen or []) <= SLOTS:
            return {tab.samplers: gr.skip()}      # (an empty dict is read as one value)
        return {tab.samplers: chosen[:SLOTS],
                tab.status: f"Compare takes up to {SLOTS} samplers: untick one to pick another."}

    tab.samplers.input(limit, tab.samplers, [tab.samplers, tab.status], queue=False,
                       api_visibility=PRIVATE)
    return tab.button.click(
        recipe_handler(form, bar.status, service), form.page_inputs(),
        [form.recipe_json, bar.status, form.share_token], js=SHOWN_JS, concurrency_limit=None,
        api_visibility=PRIVATE).then(
        None, form.share_token, form.share_link, js=SHARE_JS).then(
        compare, [form.recipe_json, tab.samplers, page.generate.show_xt, tab.models, tab.operators,
                  runs_tab.runs],
        [*tab.images, tab.status, tab.levels, tab.files, runs_tab.runs, runs_tab.table, bar.status],
        api_name="compare", show_progress="minimal", **RUN_QUEUE)
