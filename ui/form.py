"""The form: model switch, concept rows, operator, sampler and knobs, share and
import. `build` lays it out; `wire` connects it; `recipe_handler` turns the page
into recipe JSON for every button that starts a run."""
from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass

import gradio as gr

from composer.operators import OPERATORS
from composer.recipe import (AUTO, MCMC_PREDICTORS, NEGATIONS, SAMPLER_LABELS, SAMPLERS,
                             SMC_PARTICLES, Recipe, RecipeError)
from ui import state
from ui import rows as concept_rows
from ui.page import PRIVATE, SHARE_JS, SHOWN_JS
from ui.results import from_browser
from ui.service import Service
from ui.stack import guard, soft
from ui.words import default_text, error_markdown, model_summary

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
    knobs: dict                  # state.KNOBS name -> gr.Number
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

    def page_inputs(self) -> list:
        """What a run is made of; `shown` last, where SHOWN_JS writes it."""
        return [self.rows.state, self.info, *self.settings().values(), self.shown]


def build(service: Service, best_of: gr.Dropdown) -> Form:
    info = gr.State(None)
    with gr.Group():
        # A row of its own, so the longest label shows whole beside the menu's arrow; a
        # hub id or folder typed into it loads as from the box below.
        model = gr.Dropdown(service.model_choices(), label="Model", elem_id="model",
                            allow_custom_value=True)
        with gr.Row():
            sd_box = gr.Textbox(label="…or a Stable Diffusion (1.x, 2.x, SDXL, SD3) hub id or "
                                      "folder",
                                placeholder="org/name or /path/to/checkpoint",
                                elem_id="sd-model", scale=4)
            load = gr.Button("Load", elem_id="load-model", scale=0, min_width=80)
        model_status = gr.Markdown("Loading the default model…", elem_id="model-status")
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
        sampler = gr.Dropdown([(SAMPLER_LABELS[s], s) for s in SAMPLERS], value="ddim",
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
            knobs = {k: gr.Number(None, label=label, elem_id=f"knob-{k}",
                                  placeholder="model default")
                     for k, label in state.KNOB_LABELS.items()}
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
                share_token=gr.Textbox(visible=False), model=model, sd_box=sd_box, load=load,
                model_status=model_status, examples=examples, operator=operator,
                negation=negation, temperature=temperature, scale=scale, sampler=sampler, steps=steps, seed=seed, dice=dice,
                num_samples=num_samples, scheduler=scheduler, knobs=knobs, share=share,
                share_link=share_link, recipe_json=recipe_json, apply=apply, png_in=png_in,
                best_of=best_of)


OPERATOR_INFO = ("AND (sum): Composable Diffusion · product, OR (mixture): RRR, energy models "
                 "· SuperDiff: rows weighed by tracked log-densities, any model (DDPM, DDIM, SMC)")


def operator_choices(has_energy: bool) -> list[tuple[str, str]]:
    """(label, name) of the operators this model can run (operators.OPERATORS)."""
    return [(op.label, name) for name, op in OPERATORS.items() if has_energy or not op.needs_energy]


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
    """(the values of `form.page_inputs()`) -> the recipe they make, as the browser
    showed them; RecipeError or ValueError when they make none."""
    names = list(form.settings())

    def read(rows, info, *values):
        *values, shown_json = values
        settings = state.Settings(info["name"] if info else "", **dict(zip(names, values)))
        shown = json.loads(shown_json or "{}")
        rows = state.as_shown(rows, shown.get("rows", []))
        return service.recipe(rows, info, settings, shown.get("unreadable", []))
    return read


def recipe_handler(form: Form, status, service: Service):
    """The page -> recipe JSON, the status line's "Running…" and a share token; a
    problem goes to the status line and the recipe stays empty (nothing runs)."""
    read = recipe_reader(form, service)

    def prepare(rows, info, *values):
        try:
            recipe = read(rows, info, *values)
        except Exception as err:
            if not isinstance(err, (RecipeError, ValueError)):
                log.exception("unexpected error while checking the recipe")
                err = "unexpected server error (logged); try again"
            gr.Warning(str(err).splitlines()[0])
            return {form.recipe_json: "", status: error_markdown(str(err)), form.share_token: ""}
        return {form.recipe_json: recipe.to_json(), status: service.cost_line(recipe),
                form.share_token: state.share_token(recipe)}
    return prepare


def wire(page, service: Service, then_run) -> list:
    """Connect the form. `then_run(event)` chains a run after an event that may render
    at once (a page opening, a model switch, an example); returns those runs' events."""
    form, bar = page.form, page.bar
    prepare = recipe_handler(form, bar.status, service)
    cleared = page.generate.cleared

    def model_updates(info: dict, values: state.Settings | None) -> dict:
        """Updates for model-dependent widgets; values=None resets to defaults."""
        s = values or state.Settings(model=info["name"], num_samples=default_samples(info))
        ops = operator_choices(info["has_energy"])
        names = [name for _, name in ops]
        operator = (s.operator if s.operator in names else
                    "superdiff_or" if s.operator == "mixture" else "and")
        forms = [f for f in NEGATIONS if f == "ratio" or info["has_energy"]]
        d = info["defaults"]
        models = service.model_choices()
        if info["name"] not in [name for _, name in models]:
            models.append((info["name"], info["name"]))
        return {form.model: gr.update(choices=models, value=info["name"]),
                form.model_status: model_summary(info),
                form.operator: gr.update(choices=ops, value=operator),
                form.temperature: gr.update(value=s.temperature, visible=operator == "superdiff_or"),
                form.negation: gr.update(choices=forms, value=s.negation if s.negation in forms
                                         else "ratio", visible=s.operator == "product"),
                form.scale: gr.update(value=s.scale, placeholder=f"default {d.get('scale', '')}"),
                form.sampler: s.sampler, form.scheduler: s.scheduler,
                **{box: gr.update(value=getattr(s, k), placeholder=default_text(
                    d.get(k, SMC_PARTICLES if k == "particles" else "")))
                   for k, box in form.knobs.items()},
                form.steps: gr.update(value=s.steps, placeholder=f"default {d.get('steps', '')}"),
                form.seed: s.seed, form.num_samples: s.num_samples, form.best_of: s.best_of,
                page.generate.lift: info["lift_by_default"]}

    def apply_recipe(recipe: Recipe, note: str, autorun: bool, asked: bool = False,
                     landing: bool = False) -> dict:
        """Every form widget from the recipe, and the old result cleared (on `landing`,
        the big picture already shows the default's result); it renders at once if
        `autorun` and it is cheap, or if the visitor `asked` for it."""
        info = service.info(recipe.model)
        said = changes(recipe, info)
        # The status line (always in view) says what happened and what to do next; it
        # never keeps the last run's "Done: …" while a new run is about to start.
        runs = autorun and not said and (asked or service.fast(recipe))
        line = f"{note} {'Rendering it now…' if runs else 'Press Generate to render it.'}".strip()
        if said:
            message = f"{note} Not as saved: {'; '.join(said)}."
            gr.Warning(message)
            note = error_markdown(message)
            line = f"{message} Press Generate to render it."
        return {**form.rows.view(state.rows_from_concepts(recipe.concepts), info["choices"]),
                form.info: info,
                **model_updates(info, state.settings_from_recipe(recipe)),
                form.autorun: runs, bar.notice: note, **cleared(keep_picture=landing),
                bar.status: line}

    def apply_default(note: str = "") -> dict:
        info = service.info(service.default_model())
        recipe = service.default_recipe(info)
        if recipe is not None:
            return apply_recipe(recipe, note, autorun=True, landing=True)
        return {**form.rows.view(service.default_rows(info), info["choices"]), form.info: info,
                **model_updates(info, None), form.autorun: False, bar.notice: note, **cleared()}

    def on_load(kept, request: gr.Request):
        """The page's recipe (a link's, else the default) and the runs its browser kept
        (before the first run starts, so that run is added to them)."""
        return {**opened(request), page.runs.runs: from_browser(kept)}

    def opened(request: gr.Request) -> dict:
        params = request.query_params if request else {}
        if "recipe" not in params:
            return apply_default()
        try:
            recipe = state.recipe_from_token(params.get("recipe"))
        except RecipeError as err:
            log.warning("cannot restore shared recipe: %s", err)
            gr.Warning(str(err))
            return apply_default(error_markdown(str(err)))
        return apply_recipe(recipe, "Recipe restored from the link.", autorun=True)

    def autorun(flag, rows, info, *values):
        """Render at once what a page opened on, when it is cheap; else nothing."""
        if not flag:
            return {form.recipe_json: "", bar.status: gr.skip(), form.share_token: ""}
        return prepare(rows, info, *values, "{}")

    def on_model(name, info, old, *values):
        try:
            new = service.info(name)
        except Exception as err:  # noqa: BLE001 - shown by the picker
            message = f"Could not load model {name!r}: {state.plain(str(err))}"
            gr.Warning(message)
            keep = model_summary(info) + "\n\n" if info else ""
            return {form.model: gr.update(value=info["name"] if info else None),
                    form.model_status: keep + error_markdown(message)}
        recipe = service.default_recipe(new)
        if recipe is not None:  # the model's own example: rows, sampler and seed
            return apply_recipe(recipe, f"Switched to {new['name']}: its example recipe.",
                                autorun=True)
        old_choices = (info or {}).get("choices")
        shown = form.rows.current(old, values, old_choices)
        rows = shown
        if new["choices"]:
            rows = [dict(r, text=r["text"] if r["text"] in new["choices"]
                         else new["choices"][i % len(new["choices"])])
                    for i, r in enumerate(shown)] or service.default_rows(new)
        elif old_choices:  # from 2D concepts to free text
            rows = service.default_rows(new)
        same_boxes = bool(old_choices) == bool(new["choices"])   # else the other box shows
        return {**form.rows.view(rows, new["choices"], shown if same_boxes else None),
                form.info: new, **model_updates(new, None), form.autorun: False,
                bar.notice: "", **cleared(),
                bar.status: f"Switched to {new['name']}. Press Generate to render it."}

    def failed(message: str) -> dict:
        return {bar.notice: error_markdown(message), form.autorun: False,
                bar.status: message.splitlines()[0]}

    def import_json(text):
        if not (text or "").strip():
            raise RecipeError("recipe: paste a recipe JSON first")
        return apply_recipe(Recipe.from_json(text), "Recipe imported from JSON.", autorun=False)

    def import_png(path):
        return apply_recipe(service.recipe_from_upload(path), "Recipe imported from the PNG.",
                            autorun=False)

    def import_example(index):
        path, recipe = service.examples[index]
        return apply_recipe(recipe, f"Example loaded: {state.example_label(path)}.", autorun=True)

    def reopen(runs, selected: gr.SelectData):
        """A line of the Runs table: its recipe on the form, rendered again."""
        number = selected.index[0] + 1
        recipe = Recipe.from_json(runs[number - 1]["recipe"])
        return {**apply_recipe(recipe, f"Run {number} reopened from its recipe.", autorun=True,
                               asked=True), page.tabs: gr.Tabs(selected="tab-generate")}

    def share(rows, info, *values):
        update = prepare(rows, info, *values)
        ready = update[form.share_token]
        return {form.recipe_json: update[form.recipe_json] or gr.skip(),
                bar.status: "Link ready." if ready else update[bar.status],
                form.share_token: ready}

    applied = [*form.rows.outputs(), form.info, form.model, form.model_status, *form.settings().values(),
               page.generate.lift,
               form.autorun, bar.notice, *cleared(), bar.status]
    recipe_out = [form.recipe_json, bar.status, form.share_token]
    autorun_in = [form.autorun, form.rows.state, form.info, *form.settings().values()]

    def then_autorun(event):
        return then_run(event.then(autorun, autorun_in, recipe_out, api_visibility=PRIVATE))

    concept_rows.wire(form.rows, form.info, {"api_visibility": PRIVATE})
    form.dice.click(lambda: random.randint(0, 2**31 - 1), None, form.seed, queue=False,
                    api_visibility=PRIVATE)
    form.operator.change(lambda op: (gr.update(visible=op == "product",
                                               **({} if op == "product" else {"value": "ratio"})),
                                     gr.update(visible=op == "superdiff_or")),
                         form.operator, [form.negation, form.temperature], queue=False,
                         api_visibility=PRIVATE)
    form.apply.click(soft(import_json, failed), form.recipe_json, applied, api_visibility=PRIVATE)
    form.png_in.upload(soft(import_png, failed), form.png_in, applied, api_visibility=PRIVATE)
    form.share.click(share, form.page_inputs(), recipe_out, js=SHOWN_JS,
                     api_visibility=PRIVATE).then(None, form.share_token, form.share_link,
                                                  js=SHARE_JS)

    auto_events = [then_autorun(page.demo.load(guard(on_load), page.runs.kept,
                                               [*applied, page.runs.runs], api_visibility=PRIVATE))]
    for trigger, source in ((form.model.input, form.model), (form.sd_box.submit, form.sd_box),
                            (form.load.click, form.sd_box)):
        switched = trigger(lambda name: f"Loading **{name}**…", source, form.model_status,
                           queue=False, api_visibility=PRIVATE).then(
            guard(on_model), [source, form.info, *form.rows.inputs()], applied,
            api_visibility=PRIVATE)
        auto_events.append(then_autorun(switched))
    auto_events.append(then_autorun(page.runs.table.select(
        soft(reopen, failed), page.runs.runs, [*applied, page.tabs], api_visibility=PRIVATE)))
    auto_events.append(then_autorun(form.examples.click(
        soft(import_example, failed), form.examples, applied, api_visibility=PRIVATE)))
    return auto_events
