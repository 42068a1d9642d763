"""The form's events: a page opening (on a link or not), a model switch, an example,
an import or a reopened run puts a recipe on the form, and may render it at once;
Share makes a link. `FormEvents` holds the handlers, `wire` connects them."""
from __future__ import annotations

import logging
import random

import gradio as gr

from composer.knobs import BY_NAME
from composer.recipe import NEGATIONS, Recipe, RecipeError
from ui import rows as concept_rows
from ui import state
from ui.form import changes, default_samples, operator_choices, recipe_handler, sampler_choices
from ui.page import PRIVATE, SHARE_JS
from ui.results import from_browser
from ui.service import Service
from ui.stack import guard, soft
from ui.words import default_text, error_markdown, model_summary

log = logging.getLogger("ui")


class FormEvents:
    """The form's handlers. Each returns updates by component; `applied()` lists every
    component that putting a recipe on the form may update."""

    def __init__(self, page, service: Service):
        self.page, self.service, self.form, self.bar = page, service, page.form, page.bar
        self.prepare = recipe_handler(self.form, self.bar.status, service)

    def applied(self) -> list:
        form, bar = self.form, self.bar
        return [*form.rows.outputs(), form.info, form.model, form.model_status,
                *form.settings().values(), self.page.generate.lift, form.autorun, bar.notice,
                *self.page.generate.cleared(), bar.status]

    def model_updates(self, info: dict, values: state.Settings | None) -> dict:
        """Updates for model-dependent widgets; values=None resets to defaults."""
        form, d = self.form, info["defaults"]
        s = values or state.Settings(model=info["name"], num_samples=default_samples(info))
        ops = operator_choices(info["has_energy"])
        operator = (s.operator if s.operator in [name for _, name in ops] else
                    "superdiff_or" if s.operator == "mixture" else "and")
        forms = [f for f in NEGATIONS if f == "ratio" or info["has_energy"]]
        samplers = sampler_choices(info["flow"])
        models = self.service.model_choices()
        if info["name"] not in [name for _, name in models]:
            models.append((info["name"], info["name"]))
        return {form.model: gr.update(choices=models, value=info["name"]),
                form.model_status: model_summary(info),
                form.operator: gr.update(choices=ops, value=operator),
                form.temperature: gr.update(value=s.temperature, visible=operator == "superdiff_or"),
                form.negation: gr.update(choices=forms, value=s.negation if s.negation in forms
                                         else "ratio", visible=s.operator == "product"),
                form.scale: gr.update(value=s.scale, placeholder=f"default {d.get('scale', '')}"),
                form.sampler: gr.update(choices=samplers, value=s.sampler if s.sampler in
                                        [name for _, name in samplers] else "ddim"),
                form.scheduler: s.scheduler,
                **{box: gr.update(value=s.knobs.get(k), placeholder=default_text(
                    d.get(k, BY_NAME[k].default))) for k, box in form.knobs.items()},
                form.steps: gr.update(value=s.steps, placeholder=f"default {d.get('steps', '')}"),
                form.seed: s.seed, form.num_samples: s.num_samples, form.best_of: s.best_of,
                self.page.generate.lift: info["lift_by_default"]}

    def apply_recipe(self, recipe: Recipe, note: str, autorun: bool, asked: bool = False,
                     landing: bool = False) -> dict:
        """Every form widget from the recipe, and the old result cleared (on `landing`,
        the big picture already shows the default's result); it renders at once if
        `autorun` and it is cheap, or if the visitor `asked` for it."""
        info = self.service.info(recipe.model)
        said = changes(recipe, info)
        # The status line (always in view) says what happened and what to do next; it
        # never keeps the last run's "Done: …" while a new run is about to start.
        runs = autorun and not said and (asked or self.service.fast(recipe))
        line = f"{note} {'Rendering it now…' if runs else 'Press Generate to render it.'}".strip()
        if said:
            message = f"{note} Not as saved: {'; '.join(said)}."
            gr.Warning(message)
            note = error_markdown(message)
            line = f"{message} Press Generate to render it."
        return {**self.form.rows.view(state.rows_from_concepts(recipe.concepts), info["choices"]),
                self.form.info: info, **self.model_updates(info, state.settings_from_recipe(recipe)),
                self.form.autorun: runs, self.bar.notice: note,
                **self.page.generate.cleared(keep_picture=landing), self.bar.status: line}

    def apply_default(self, note: str = "") -> dict:
        info = self.service.info(self.service.default_model())
        recipe = self.service.default_recipe(info)
        if recipe is not None:
            return self.apply_recipe(recipe, note, autorun=True, landing=True)
        return {**self.form.rows.view(self.service.default_rows(info), info["choices"]),
                self.form.info: info, **self.model_updates(info, None), self.form.autorun: False,
                self.bar.notice: note, **self.page.generate.cleared()}

    def on_load(self, kept, request: gr.Request):
        """The page's recipe (a link's, else the default) and the runs its browser kept
        (before the first run starts, so that run is added to them)."""
        return {**self.opened(request), self.page.runs.runs: from_browser(kept)}

    def opened(self, request: gr.Request) -> dict:
        params = request.query_params if request else {}
        if "recipe" not in params:
            return self.apply_default()
        try:
            recipe = state.recipe_from_token(params.get("recipe"))
        except RecipeError as err:
            log.warning("cannot restore shared recipe: %s", err)
            gr.Warning(str(err))
            return self.apply_default(error_markdown(str(err)))
        return self.apply_recipe(recipe, "Recipe restored from the link.", autorun=True)

    def autorun(self, values: dict):
        """Render at once what a page opened on, when it is cheap; else nothing. The
        form was just written by the server: nothing the browser showed before counts."""
        if not values[self.form.autorun]:
            return {self.form.recipe_json: "", self.bar.status: gr.skip(), self.form.share_token: ""}
        return self.prepare(values)

    def on_model(self, source):
        """A model chosen in `source` (the menu or the folder box): its own example, or
        the rows carried over to it."""
        def switch(values: dict):
            name, info = values[source], values[self.form.info]
            try:
                new = self.service.info(name)
            except Exception as err:  # noqa: BLE001 - shown by the picker
                message = f"Could not load model {name!r}: {state.plain(str(err))}"
                gr.Warning(message)
                keep = model_summary(info) + "\n\n" if info else ""
                return {self.form.model: gr.update(value=info["name"] if info else None),
                        self.form.model_status: keep + error_markdown(message)}
            recipe = self.service.default_recipe(new)
            if recipe is not None:  # the model's own example: rows, sampler and seed
                return self.apply_recipe(recipe, f"Switched to {new['name']}: its example recipe.",
                                         autorun=True)
            return self.carried_over(values, info, new)
        return switch

    def carried_over(self, values: dict, info: dict | None, new: dict) -> dict:
        old_choices = (info or {}).get("choices")
        shown = self.form.rows.current(values, old_choices)
        rows = shown
        if new["choices"]:
            rows = [dict(r, text=r["text"] if r["text"] in new["choices"]
                         else new["choices"][i % len(new["choices"])])
                    for i, r in enumerate(shown)] or self.service.default_rows(new)
        elif old_choices:  # from 2D concepts to free text
            rows = self.service.default_rows(new)
        same_boxes = bool(old_choices) == bool(new["choices"])   # else the other box shows
        return {**self.form.rows.view(rows, new["choices"], shown if same_boxes else None),
                self.form.info: new, **self.model_updates(new, None), self.form.autorun: False,
                self.bar.notice: "", **self.page.generate.cleared(),
                self.bar.status: f"Switched to {new['name']}. Press Generate to render it."}

    def failed(self, message: str) -> dict:
        return {self.bar.notice: error_markdown(message), self.form.autorun: False,
                self.bar.status: message.splitlines()[0]}

    def import_json(self, text):
        if not (text or "").strip():
            raise RecipeError("recipe: paste a recipe JSON first")
        return self.apply_recipe(Recipe.from_json(text), "Recipe imported from JSON.", autorun=False)

    def import_png(self, path):
        return self.apply_recipe(self.service.recipe_from_upload(path),
                                 "Recipe imported from the PNG.", autorun=False)

    def import_example(self, index):
        path, recipe = self.service.examples[index]
        return self.apply_recipe(recipe, f"Example loaded: {state.example_label(path)}.",
                                 autorun=True)

    def reopen(self, runs, selected: gr.SelectData):
        """A line of the Runs table: its recipe on the form, rendered again."""
        number = selected.index[0] + 1
        recipe = Recipe.from_json(runs[number - 1]["recipe"])
        return {**self.apply_recipe(recipe, f"Run {number} reopened from its recipe.",
                                    autorun=True, asked=True),
                self.page.tabs: gr.Tabs(selected="tab-generate")}

    def share(self, values: dict):
        update = self.prepare(values)
        ready = update[self.form.share_token]
        return {self.form.recipe_json: update[self.form.recipe_json] or gr.skip(),
                self.bar.status: "Link ready." if ready else update[self.bar.status],
                self.form.share_token: ready}


def wire(page, service: Service, then_run) -> list:
    """Connect the form. `then_run(event)` chains a run after an event that may render
    at once (a page opening, a model switch, an example); returns those runs' events.
    The Generate tab is wired first because these events end in its run."""
    form, events, private = page.form, FormEvents(page, service), {"api_visibility": PRIVATE}
    applied, failed = events.applied(), events.failed
    recipe_out = [form.recipe_json, page.bar.status, form.share_token]
    autorun_in = {form.autorun, *(c for c in form.page_inputs() if c is not form.shown)}

    def then_autorun(event):
        return then_run(event.then(events.autorun, autorun_in, recipe_out, **private))

    concept_rows.wire(form.rows, form.info, private)
    form.dice.click(lambda: random.randint(0, 2**31 - 1), None, form.seed, queue=False, **private)
    form.operator.change(lambda op: (gr.update(visible=op == "product",
                                               **({} if op == "product" else {"value": "ratio"})),
                                     gr.update(visible=op == "superdiff_or")),
                         form.operator, [form.negation, form.temperature], queue=False, **private)
    form.apply.click(soft(events.import_json, failed), form.recipe_json, applied, **private)
    form.png_in.upload(soft(events.import_png, failed), form.png_in, applied, **private)
    form.on_page(form.share.click, events.share, recipe_out).then(
        None, form.share_token, form.share_link, js=SHARE_JS)

    auto_events = [then_autorun(page.demo.load(guard(events.on_load), page.runs.kept,
                                               [*applied, page.runs.runs], **private))]
    for trigger, source in ((form.model.input, form.model), (form.sd_box.submit, form.sd_box),
                            (form.load.click, form.sd_box)):
        switched = trigger(lambda name: f"Loading **{name}**…", source, form.model_status,
                           queue=False, **private).then(
            guard(events.on_model(source)), {source, form.info, *form.rows.inputs()}, applied,
            **private)
        auto_events.append(then_autorun(switched))
    auto_events.append(then_autorun(page.runs.table.select(
        soft(events.reopen, failed), page.runs.runs, [*applied, page.tabs], **private)))
    auto_events.append(then_autorun(form.examples.click(
        soft(events.import_example, failed), form.examples, applied, **private)))
    return auto_events
