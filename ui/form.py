"""The form: model switch, concept rows, operator, sampler and knobs, share and
import. `build` lays it out (ui/form_events.py connects it); `recipe_handler` turns the
page into recipe JSON for every button that starts a run."""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import gradio as gr

from composer.knobs import KNOBS
from composer.operators import OPERATORS
from composer.recipe import (AUTO, FLOW_EULER, MCMC_PREDICTORS, NEGATIONS, SAMPLER_LABELS, SAMPLERS,
                             Recipe, RecipeError)
from ui import state
from ui import rows as concept_rows
from ui.page import PRIVATE, SHOWN_JS
from ui.service import Service
from ui.words import error_markdown

log = logging.getLogger("ui")


@dataclass(frozen=True)
class Form:
    rows: concept_rows.Rows      # the concept rows and their state
    info: gr.State
    autorun: gr.State            # whether what the form just received renders at once
    shown: gr.Textbox            # what the browser showed when a run was asked for (SHOWN_JS)
    share_token: gr.Textbox
    model: gr.Dropdown
    sd_box: gr.Textbox
    load: gr.Button
    model_status: gr.Markdown
    examples: gr.Dataset
    operator: gr.Radio
    negation: gr.Radio
    temperature: gr.Number
    scale: gr.Number
    sampler: gr.Dropdown
    steps: gr.Number
    seed: gr.Number
    dice: gr.Button
    num_samples: gr.Number
    scheduler: gr.Dropdown
    knobs: dict                  # composer/knobs.py name -> gr.Number
    share: gr.Button
    share_link: gr.Textbox
    recipe_json: gr.Code
    apply: gr.Button
    png_in: gr.File
    best_of: gr.Dropdown         # in the action bar, beside Generate

    def settings(self) -> dict:
        """state.Settings field -> the component that holds it."""
        return {"operator": self.operator, "negation": self.negation,
                "temperature": self.temperature, "scale": self.scale,
                "sampler": self.sampler, "scheduler": self.scheduler, **self.knobs,
                "steps": self.steps, "seed": self.seed, "num_samples": self.num_samples,
                "best_of": self.best_of}

    def page_inputs(self) -> set:
        """What a run is made of: handlers get their values by component (a dict)."""
        return {self.rows.state, self.info, *self.settings().values(), self.shown}

    def on_page(self, trigger, fn, outputs, extra_inputs=(), **kwargs):
        """`trigger`, then `fn` of the page's values (`page_inputs`, and `extra_inputs`) by
        component, with `shown` holding what the browser showed at that moment (SHOWN_JS,
        run in the browser first)."""
        return trigger(fn=None, inputs=None, outputs=self.shown, js=SHOWN_JS, queue=False,
                       api_visibility=PRIVATE).then(
            fn, {*self.page_inputs(), *extra_inputs}, outputs, **kwargs)


def model_picker(service: Service) -> dict:
    with gr.Group():
        # A row of its own, so the longest label shows whole beside the menu's arrow; a
        # hub id, folder or file typed into it loads as from the box below.
        model = gr.Dropdown(service.model_choices(), label="Model", elem_id="model",
                            allow_custom_value=True)
        with gr.Row():
            sd_box = gr.Textbox(label="…or a Stable Diffusion (1.x, 2.x, SDXL, SD3) or FLUX hub id, "
                                      "folder or .safetensors file",
                                placeholder="org/name, /path/to/folder or /path/to/model.safetensors",
                                elem_id="sd-model", scale=4)
            load = gr.Button("Load", elem_id="load-model", scale=0, min_width=80)
        model_status = gr.Markdown("Loading the default model…", elem_id="model-status")
    return dict(model=model, sd_box=sd_box, load=load, model_status=model_status)


def build(service: Service, best_of: gr.Dropdown) -> Form:
    info = gr.State(None)
    picker = model_picker(service)
    examples = gr.Dataset(components=[gr.Textbox(visible=False)],
                          samples=[[state.example_label(p)] for p, _ in service.examples],
                          label="Examples (model in brackets)", type="index",
                          elem_id="examples", visible=bool(service.examples))
    gr.Markdown("### Concepts")

    rows = concept_rows.build()
    with gr.Row():
        operator = gr.Radio(operator_choices(True), value="and", label="Operator",
                            info=OPERATOR_INFO, elem_id="operator")
        negation = gr.Radio(list(NEGATIONS), value="ratio", label="NOT form (product)",
                            info="ratio: RRR's q₁^(1+β)/q₂^β; bounded: each NOT term capped "
                                 "(needs an energy model)", elem_id="negation", visible=False)
        temperature = gr.Number(1.0, label="OR temperature T", elem_id="temperature", visible=False,
                                info="κ = softmax(T · (log q + log weight)); 1: the mixture")
        scale = gr.Number(None, label="Global scale α", placeholder="model default", elem_id="scale")
    with gr.Row():
        sampler = gr.Dropdown(sampler_choices(flow=False), value="ddim",
                              label="Sampler", elem_id="sampler")
        steps = gr.Number(None, label="Steps", placeholder="model default", elem_id="steps")
    with gr.Row(equal_height=True):
        seed = gr.Number(0, label="Seed", elem_id="seed")
        dice = gr.Button("Random seed", elem_id="random-seed", scale=0, min_width=120)
        num_samples = gr.Number(1, label="Samples", elem_id="num-samples")
    with gr.Accordion("Sampler knobs (empty = model default)", open=False, elem_id="knobs"):
        scheduler = gr.Dropdown(list(MCMC_PREDICTORS), value="ddpm",
                                label="Reverse step between MCMC levels (and SMC's)", elem_id="scheduler")
        with gr.Row():
            knobs = {k.name: gr.Number(None, label=k.label, elem_id=f"knob-{k.name}",
                                       placeholder="model default") for k in KNOBS}
    with gr.Accordion("Share and import", open=True):
        with gr.Row():
            share = gr.Button("Share link", elem_id="share", scale=0, min_width=110)
            share_link = gr.Textbox(label="Link to this recipe", elem_id="share-link",
                                    buttons=["copy"], scale=4, max_lines=3)
        with gr.Accordion("Recipe JSON and PNG import", open=False, elem_id="import"):
            recipe_json = gr.Code("", language="json", label="Recipe JSON (edit or paste, then Apply)",
                                  elem_id="recipe-json", interactive=True, max_lines=30)
            with gr.Row():
                apply = gr.Button("Apply JSON", elem_id="apply-json")
                png_in = gr.File(label="…or drop a PNG saved by this app", file_types=[".png"],
                                 type="filepath", elem_id="png-import", height=90)
    return Form(rows=rows, info=info, autorun=gr.State(False), shown=gr.Textbox(visible=False),
                share_token=gr.Textbox(visible=False), **picker, examples=examples, operator=operator,
                negation=negation, temperature=temperature, scale=scale, sampler=sampler, steps=steps, seed=seed, dice=dice,
                num_samples=num_samples, scheduler=scheduler, knobs=knobs, share=share,
                share_link=share_link, recipe_json=recipe_json, apply=apply, png_in=png_in,
                best_of=best_of)


OPERATOR_INFO = ("AND (sum): Composable Diffusion · product, OR (mixture): RRR, energy models "
                 "· SuperDiff: rows weighed by tracked log-densities, any model (DDPM, DDIM, SMC)")


def operator_choices(has_energy: bool) -> list[tuple[str, str]]:
    """(label, name) of the operators this model can run (operators.OPERATORS)."""
    return [(op.label, name) for name, op in OPERATORS.items() if has_energy or not op.needs_energy]


def sampler_choices(flow: bool) -> list[tuple[str, str]]:
    """(label, name) of the samplers this model can run: flow_euler on flow models only."""
    return [(SAMPLER_LABELS[s], s) for s in SAMPLERS if flow or s != FLOW_EULER]


def default_samples(info: dict) -> int:
    """A useful first batch: a cloud of points in 2D, a small grid of shapes, one SD image."""
    return min({"toy2d": 1000, "shapes": 4}.get(info["family"], 1), info["max_samples"])


def changes(recipe: Recipe, info: dict) -> list[str]:
    """What of a restored recipe this model cannot honour, in plain words."""
    said = []
    if recipe.operator == "mixture" and not info["has_energy"]:
        said.append(f"{info['name']} has no energies, so operator 'mixture' was changed to "
                    f"'superdiff_or' (SuperDiff's OR, from the scores alone)")
    if recipe.negation == "bounded" and not info["has_energy"]:
        said.append(f"{info['name']} has no energies, so the bounded NOT form was changed "
                    f"to 'ratio'")
    default = info["defaults"].get("step_size")
    default = default.get(recipe.sampler.name) if isinstance(default, dict) else default
    if recipe.sampler.step_size == AUTO and default != AUTO:
        said.append(f"the step size 'auto' is not {info['name']}'s default for this sampler, "
                    f"so the box shows the default ({default})")
    return said


def recipe_reader(form: Form, service: Service):
    """(the values of `form.page_inputs()`, by component) -> the recipe they make, as the
    browser showed them; RecipeError or ValueError when they make none."""
    def read(values: dict) -> Recipe:
        info = values[form.info]
        settings = state.Settings.of(info["name"] if info else "",
                                     {name: values[box] for name, box in form.settings().items()})
        shown = json.loads(values.get(form.shown) or "{}")
        rows = state.as_shown(values[form.rows.state], shown.get("rows", []))
        return service.recipe(rows, info, settings, shown.get("unreadable", []))
    return read


def recipe_handler(form: Form, status, service: Service):
    """The page -> recipe JSON, the status line's "Running…" and a share token; a
    problem goes to the status line and the recipe stays empty (nothing runs)."""
    read = recipe_reader(form, service)

    def prepare(values: dict):
        try:
            recipe = read(values)
        except Exception as err:
            if not isinstance(err, (RecipeError, ValueError)):
                log.exception("unexpected error while checking the recipe")
                err = "unexpected server error (logged); try again"
            gr.Warning(str(err).splitlines()[0])
            return {form.recipe_json: "", status: error_markdown(str(err)), form.share_token: ""}
        return {form.recipe_json: recipe.to_json(), status: service.cost_line(recipe),
                form.share_token: state.share_token(recipe)}
    return prepare
