"""The Gradio Blocks: layout and wiring. Behaviour lives in ui.handlers and
ui.state; this module only connects components to it."""
from __future__ import annotations

import functools
import json
import logging
import os
import random
from pathlib import Path

import gradio as gr
import numpy as np

from composer.facade import Cancelled, Composer, Frame
from composer.media import MAX_PNG_BYTES, labelled_grid, sweep_cell
from composer.recipe import (AUTO, MAX_CONCEPTS, NEGATIONS, OPERATORS, SAMPLER_LABELS, SAMPLERS, Recipe,
                             RecipeError, echo)
from composer.sweep import MAX_CELLS
from ui import state
from ui.components import quiet_choices
from ui.handlers import (
    GENERIC_ERROR,
    KEEP_SECONDS,
    STOPPABLE,
    STREAMED_FRAMES,
    Handlers,
    Run,
    cancellable,
    chosen_view,
    timed,
    concept_label,
    data_uri,
    default_text,
    final_picture,
    flag,
    guard,
    kept_frame,
    metrics_text,
    model_summary,
    page_picture,
    picture_file,
    progress_html,
    spread,
    unpacked,
)
from ui.results import RUN_HEADERS, RUN_WIDTHS, judge_text, run_row, runs_value, thumb_updates
from ui.rows import concept_row

log = logging.getLogger("ui")

try:  # ZeroGPU: must be imported before CUDA is touched; a no-op elsewhere.
    import spaces
    gpu = spaces.GPU(duration=120)
except ImportError:  # the package is optional
    def gpu(fn):
        return fn

GPU_GROUP = "gpu"
# Runs active at once. They take turns on the device one network evaluation at a time,
# the run that has used it least going first (engine.Device), so however many large
# jobs are active a small one waits for at most one evaluation per step; a run that is
# not admitted waits in the queue instead. The budget caps how large one run can be.
CONCURRENCY_ENV = "COMPOSER_CONCURRENCY"
RUN_CONCURRENCY = max(1, int(os.environ.get(CONCURRENCY_ENV, "16")))
QUEUE_SIZE = 64            # waiting requests beyond this are refused, not stored
PRIVATE = "private"  # UI-only listeners stay out of the API page
COMPARE_SLOTS = 4
SHARE_JS = """(token) => token ? window.location.origin + window.location.pathname
    + "?recipe=" + token : "" """

STATIC = Path(__file__).resolve().parent / "static"
CSS = (STATIC / "app.css").read_text()
PAGE_JS = (STATIC / "page.js").read_text()      # row names for screen readers, weight boxes
SHOWN_JS = (STATIC / "shown.js").read_text()    # what the form shows, read before a run
REVEAL_JS = (STATIC / "reveal.js").read_text()  # after Generate: the result on screen


def launch_kwargs() -> dict:
    """Appearance arguments that Gradio 6 takes in launch(), and the upload cap."""
    return {"css": CSS, "js": PAGE_JS, "theme": gr.themes.Soft(),
            "max_file_size": MAX_PNG_BYTES}


def default_samples(info: dict) -> int:
    """A useful first batch: a cloud of points in 2D, a small grid of shapes, one SD image."""
    return min({"toy2d": 1000, "shapes": 4}.get(info["family"], 1), info["max_samples"])


def is_blank(text) -> bool:
    """No recipe text at all (the page found the form invalid and said why); anything
    else, JSON or not, goes to the recipe parser, which says what is wrong with it."""
    return text is None or (isinstance(text, str) and not text.strip())


def error_markdown(message: str) -> str:
    lines = [line for line in str(message).splitlines() if line.strip()]
    if len(lines) == 1:
        return f"<span class='error'>⚠ {lines[0]}</span>"
    return "<span class='error'>⚠ Cannot run this recipe:</span>\n\n" + "\n".join(
        f"- {line}" for line in lines)


def build_demo(composer: Composer | None = None, default_model: str | None = None) -> gr.Blocks:
    """The app. `default_model` overrides the choice of 'shapes' if it loads, else
    'toy2d-energy' (tests use it to start on the fast 2D model)."""
    H = Handlers(composer)
    if default_model:
        H.preferred_model = default_model

    # Gradio's cache (a run streams hundreds of frame files): swept every 10 min of the
    # files older than 30 min. A session's frames go an hour after its last run.
    with gr.Blocks(title="Composable diffusion explorer", delete_cache=(600, 1800)) as demo:
        rows_state = gr.State([])
        info_state = gr.State(None)
        frames_state = gr.State(None, time_to_live=KEEP_SECONDS)
        runs_state = gr.State([])
        autorun_state = gr.State(False)
        share_token = gr.Textbox(visible=False)
        shown = gr.Textbox(visible=False)

        gr.Markdown("# Composable diffusion explorer\n"
                    "Compose concepts with **AND** / **NOT** (Composable Diffusion) or energy "
                    "**product** / **mixture** (Reduce, Reuse, Recycle), pick a sampler, and watch "
                    "the sample form step by step.")
        # What a link, an import or an example did to the form: at the top, where a
        # visitor who opened a link looks first (runs report on the status line).
        notice = gr.Markdown("", elem_id="notice")
        # First in the page (and in Tab order), fixed to the bottom of the window by CSS.
        with gr.Row(elem_id="action-bar", equal_height=True):
            generate_btn = gr.Button("Generate", variant="primary", elem_id="generate",
                                     scale=0, min_width=130)
            stop_btn = gr.Button("Stop", variant="stop", elem_id="stop", scale=0, min_width=90)
            status = gr.Markdown("", elem_id="status")
        with gr.Row():
            with gr.Column(scale=5):
                with gr.Group():
                    with gr.Row():
                        model_dd = gr.Dropdown(H.model_choices(), label="Model",
                                               elem_id="model", scale=2)
                        sd_box = gr.Textbox(label="…or a Stable Diffusion hub id / folder",
                                            placeholder="org/name or /path/to/checkpoint",
                                            elem_id="sd-model", scale=2)
                        load_btn = gr.Button("Load", elem_id="load-model", scale=0, min_width=80)
                    model_status = gr.Markdown("Loading the default model…", elem_id="model-status")
                examples = H.examples
                example_set = gr.Dataset(components=[gr.Textbox(visible=False)],
                                         samples=[[state.example_label(p)] for p, _ in examples],
                                         label="Examples (model in brackets)", type="index",
                                         elem_id="examples", visible=bool(examples))

                gr.Markdown("### Concepts")

                # Rows re-render when the rows change; a model switch changes them too.
                @gr.render(inputs=[rows_state, info_state], triggers=[rows_state.change])
                def render_rows(rows, info):
                    choices = (info or {}).get("choices")
                    for n, row in enumerate(rows, 1):
                        concept_row(n, row, len(rows), choices, rows_state)

                with gr.Row():
                    add_btn = gr.Button("+ Add concept", elem_id="add-row", size="sm")
                with gr.Row():
                    operator = gr.Radio(list(OPERATORS), value="and", label="Operator",
                                        info="and: Composable Diffusion; product/mixture: "
                                             "energy composition (mixture needs an energy model)",
                                        elem_id="operator")
                    negation = gr.Radio(list(NEGATIONS), value="ratio", label="NOT form (product)",
                                        info="ratio: RRR's q₁^(1+β)/q₂^β; bounded: each NOT "
                                             "term capped (needs an energy model)",
                                        elem_id="negation", visible=False)
                    scale = gr.Number(None, label="Global scale α", placeholder="model default",
                                      elem_id="scale")
                with gr.Row():
                    sampler = gr.Dropdown([(SAMPLER_LABELS[s], s) for s in SAMPLERS], value="ddim",
                                          label="Sampler", elem_id="sampler")
                    steps = gr.Number(None, label="Steps", placeholder="model default",
                                      elem_id="steps")
                with gr.Row(equal_height=True):
                    seed = gr.Number(0, label="Seed", elem_id="seed")
                    dice = gr.Button("Random seed", elem_id="random-seed", scale=0, min_width=120)
                    num_samples = gr.Number(1, label="Samples", elem_id="num-samples")
                with gr.Accordion("Sampler knobs (empty = model default)", open=False,
                                  elem_id="knobs"):
                    scheduler = gr.Dropdown(["ddpm", "ddim"], value="ddpm",
                                            label="Reverse step between MCMC levels",
                                            elem_id="scheduler")
                    with gr.Row():
                        knobs = {k: gr.Number(None, label=label, elem_id=f"knob-{k}",
                                              placeholder="model default")
                                 for k, label in state.KNOB_LABELS.items()}

                with gr.Accordion("Share and import", open=True):
                    with gr.Row():
                        share_btn = gr.Button("Share link", elem_id="share", scale=0, min_width=110)
                        share_link = gr.Textbox(label="Link to this recipe", elem_id="share-link",
                                                buttons=["copy"], scale=4, max_lines=3)
                    with gr.Accordion("Recipe JSON and PNG import", open=False,
                                      elem_id="import"):
                        recipe_json = gr.Code("", language="json",
                                              label="Recipe JSON (edit or paste, then Apply)",
                                              elem_id="recipe-json", interactive=True,
                                              max_lines=30)
                        with gr.Row():
                            apply_btn = gr.Button("Apply JSON", elem_id="apply-json")
                            png_in = gr.File(label="…or drop a PNG saved by this app",
                                             file_types=[".png"], type="filepath",
                                             elem_id="png-import", height=90)

            with gr.Column(scale=6, elem_id="result-column"), gr.Tabs():
                with gr.Tab("Generate", id="tab-generate"):
                    progress = gr.HTML("", elem_id="progress")
                    preview = gr.Image(label="Predicted x₀", type="numpy", elem_id="preview",
                                       format="png", interactive=False, height=380,
                                       alt_text="The composition's predicted clean sample")
                    with gr.Row():
                        show_xt = gr.Checkbox(False, label="Show x_t (noisy state) instead",
                                              elem_id="show-xt")
                        show_map = gr.Checkbox(
                            False, label="Map: density p_t (2D) or conflict (images)",
                            elem_id="show-map",
                            info="Computed by the next run; on 2D models each row is also "
                                 "evaluated on a 64×64 grid every step; free on image models")
                    frame_slider = gr.Slider(1, 2, value=1, step=1, label="Frame",
                                             elem_id="frame-slider", visible=False)
                    gr.Markdown("**Each concept's own prediction of x₀** (active rows, "
                                "in order)", elem_id="concept-title")
                    with gr.Row(elem_id="concept-images"):
                        concept_images = [
                            gr.Image(label=f"Row {k + 1}", type="numpy", format="png",
                                     interactive=False, visible=False, height=170,
                                     min_width=120, elem_id=f"concept-image-{k + 1}",
                                     buttons=[])
                            for k in range(MAX_CONCEPTS)]
                    metrics_md = gr.Markdown("", elem_id="metrics")
                    with gr.Row():
                        gif_file = gr.File(label="Animation (GIF)", elem_id="gif-file",
                                           interactive=False, visible=False)
                        png_file = gr.File(label="PNG with recipe", elem_id="png-file",
                                           interactive=False, visible=False)
                with gr.Tab("Compare samplers", id="tab-compare"):
                    compare_choices = quiet_choices(gr.CheckboxGroup(
                        [(SAMPLER_LABELS[s], s) for s in SAMPLERS], value=["ddim", "mala"],
                        label=f"Samplers (2–{COMPARE_SLOTS}), same recipe and seed",
                        elem_id="compare-samplers"))
                    compare_models = quiet_choices(gr.CheckboxGroup(
                        H.available_models(), value=[], elem_id="compare-models",
                        label="Also across models: each sampler runs on each ticked model "
                              "(none ticked: the form's model)"))
                    compare_btn = gr.Button("Compare", variant="primary", elem_id="compare")
                    with gr.Row(elem_id="compare-grid"):
                        compare_images = [gr.Image(label=f"Sampler {k + 1}", type="numpy", format="png",
                                                   interactive=False, elem_id=f"compare-{k + 1}",
                                                   visible=k < 2, alt_text=f"Sampler {k + 1}")
                                          for k in range(COMPARE_SLOTS)]
                    compare_status = gr.Markdown("", elem_id="compare-status")
                    compare_files = gr.File(label="PNGs with recipes", file_count="multiple",
                                            elem_id="compare-files", interactive=False,
                                            visible=False)
                with gr.Tab("Sweep", id="tab-sweep"):
                    gr.Markdown("One knob, or two, over a list of values (`0, 0.5, 1`) or a "
                                "range (`0.5:2:4`, four values from 0.5 to 2), under the form's "
                                f"seed; at most {MAX_CELLS} cells, each a run of its own.")
                    sweep_fields, sweep_values = [], []
                    for k, (first, example) in enumerate(((state.SWEEP_DEFAULT, state.SWEEP_EXAMPLE),
                                                          ("none", ""))):
                        with gr.Row():
                            sweep_fields.append(quiet_choices(gr.Dropdown(
                                ([] if k == 0 else [("none", "none")])
                                + state.sweep_choices(MAX_CONCEPTS),
                                value=first, label=f"Axis {k + 1}", elem_id=f"sweep-field-{k + 1}",
                                scale=2)))
                            sweep_values.append(gr.Textbox(example, label="Values",
                                                           elem_id=f"sweep-values-{k + 1}",
                                                           scale=3))
                    sweep_btn = gr.Button("Run sweep", variant="primary", elem_id="sweep")
                    sweep_status = gr.Markdown("", elem_id="sweep-status")
                    sweep_image = gr.Image(label="Sweep", type="numpy", format="png",
                                           interactive=False, elem_id="sweep-grid",
                                           visible=False)
                    sweep_files = gr.File(label="Grid PNG (carries the sweep) and sweep.json",
                                          file_count="multiple", elem_id="sweep-files",
                                          interactive=False, visible=False)
                with gr.Tab("Runs", id="tab-runs"):
                    runs_table = gr.Dataframe(headers=RUN_HEADERS, elem_id="runs",
                                              interactive=False, wrap=True,
                                              column_widths=RUN_WIDTHS)

        settings_inputs = [info_state, operator, negation, scale, sampler, scheduler,
                           *knobs.values(), steps, seed, num_samples]
        result_outputs = [preview, *concept_images, progress, frames_state, frame_slider,
                          metrics_md, gif_file, png_file]
        apply_outputs = [rows_state, info_state, model_dd, model_status, operator, negation, scale,
                         sampler, scheduler, *knobs.values(), steps, seed, num_samples,
                         autorun_state, notice, *result_outputs, status]

        # --- model ------------------------------------------------------------------
        def model_updates(info: dict, values: state.Settings | None) -> list:
            """Updates for model-dependent widgets; values=None resets to defaults."""
            ops = [o for o in OPERATORS if o != "mixture" or info["has_energy"]]
            forms = [f for f in NEGATIONS if f == "ratio" or info["has_energy"]]
            d = info["defaults"]
            s = values or state.Settings(model=info["name"], num_samples=default_samples(info))
            names = H.model_choices()
            if info["name"] not in [name for _, name in names]:
                names.append((info["name"], info["name"]))
            return [gr.update(choices=names, value=info["name"]),
                    model_summary(info),
                    gr.update(choices=ops, value=s.operator if s.operator in ops else "and"),
                    gr.update(choices=forms, value=s.negation if s.negation in forms else "ratio",
                              visible=s.operator == "product"),
                    gr.update(value=s.scale, placeholder=f"default {d.get('scale', '')}"),
                    s.sampler, s.scheduler,
                    *[gr.update(value=getattr(s, k), placeholder=default_text(d.get(k, "")))
                      for k in knobs],
                    gr.update(value=s.steps, placeholder=f"default {d.get('steps', '')}"),
                    s.seed, s.num_samples]

        def changes(recipe: Recipe, info: dict) -> list[str]:
            """What of a restored recipe this model cannot honour, in plain words."""
            said = []
            if recipe.operator == "mixture" and not info["has_energy"]:
                said.append(f"{info['name']} has no energies, so operator 'mixture' was "
                            f"changed to 'and'")
            if recipe.negation == "bounded" and not info["has_energy"]:
                said.append(f"{info['name']} has no energies, so the bounded NOT form was "
                            f"changed to 'ratio'")
            default = info["defaults"].get("step_size")
            default = default.get(recipe.sampler.name) if isinstance(default, dict) else default
            if recipe.sampler.step_size == AUTO and default != AUTO:
                said.append(f"the step size 'auto' is not {info['name']}'s default for this "
                            f"sampler, so the box shows the default ({default})")
            return said

        def apply_recipe(recipe: Recipe, note: str, autorun: bool) -> list:
            """Every form widget from the recipe, and the old result cleared."""
            info = H.info(recipe.model)
            said = changes(recipe, info)
            # The status line (always in view) says what happened and what to do next;
            # a run that starts at once will replace it.
            runs = autorun and not said and H.fast(recipe)
            line = gr.skip() if runs else f"{note} Press Generate to render it.".strip()
            if said:
                message = f"{note} Not as saved: {'; '.join(said)}."
                gr.Warning(message)
                note = error_markdown(message)
                line = f"{message} Press Generate to render it."
            return [state.rows_from_concepts(recipe.concepts), info,
                    *model_updates(info, state.settings_from_recipe(recipe)),
                    runs, note, *cleared(), line]

        def apply_default(note: str = "") -> list:
            info = H.info(H.default_model())
            recipe = H.default_recipe(info)
            if recipe is not None:
                return apply_recipe(recipe, note, autorun=True)
            return [H.default_rows(info), info, *model_updates(info, None), False, note,
                    *cleared(), gr.skip()]

        def cleared() -> list:
            """The result area emptied: a new model or recipe makes the old result stale."""
            return [None, *[gr.update(visible=False, value=None)] * MAX_CONCEPTS, "", None,
                    gr.update(visible=False), "", gr.update(visible=False, value=None),
                    gr.update(visible=False, value=None)]

        def on_load(request: gr.Request):
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
                return "", gr.skip(), ""
            return prepare(rows, info, *values, "{}")

        def on_model(name, rows, info):
            try:
                new = H.info(name)
            except Exception as err:  # noqa: BLE001 - shown by the picker
                message = f"Could not load model {name!r}: {state.plain(str(err))}"
                gr.Warning(message)
                keep = model_summary(info) + "\n\n" if info else ""
                return [gr.skip(), gr.skip(), gr.update(value=info["name"] if info else None),
                        keep + error_markdown(message),
                        *[gr.skip()] * (len(apply_outputs) - 4)]
            recipe = H.default_recipe(new)
            if recipe is not None:  # the model's own example: rows, sampler and seed
                return apply_recipe(recipe, f"Switched to {new['name']}: its example recipe.",
                                    autorun=True)
            if new["choices"]:
                rows = [dict(r, text=r["text"] if r["text"] in new["choices"]
                             else new["choices"][i % len(new["choices"])])
                        for i, r in enumerate(rows)] or H.default_rows(new)
            elif info and info.get("choices"):  # from 2D concepts to free text
                rows = H.default_rows(new)
            return [rows, new, *model_updates(new, None), False, "", *cleared(),
                    f"Switched to {new['name']}. Press Generate to render it."]

        def loading(name):
            return f"Loading **{name}**…"

        autorun_inputs = [autorun_state, rows_state, *settings_inputs]

        # --- rows -------------------------------------------------------------------
        def add_row(rows, info):
            default = (info or {}).get("choices") or [""]
            return state.row_action(rows, "add", default_text=default[len(rows) % len(default)])

        add_btn.click(add_row, [rows_state, info_state], rows_state, api_visibility=PRIVATE)
        def add_button(rows):
            """Greyed at the limit, and saying why (a greyed button alone says nothing)."""
            full = len(rows) >= MAX_CONCEPTS
            return gr.update(interactive=not full,
                             value=f"At most {MAX_CONCEPTS} concepts" if full else "+ Add concept")

        rows_state.change(add_button, rows_state, add_btn, queue=False, api_visibility=PRIVATE)
        dice.click(lambda: random.randint(0, 2**31 - 1), None, seed, queue=False,
                   api_visibility=PRIVATE)
        operator.change(lambda op: gr.update(visible=op == "product",
                                             **({} if op == "product" else {"value": "ratio"})),
                        operator, negation, queue=False, api_visibility=PRIVATE)

        # --- generate ---------------------------------------------------------------
        def prepare(rows, info, *values):
            """Validate the page into recipe JSON; problems go to the status line.
            The last value is what the form showed (SHOWN_JS)."""
            *values, shown_json = values
            settings = state.Settings(info["name"] if info else "", *values)
            try:
                shown = json.loads(shown_json or "{}")
                rows = state.as_shown(rows, shown.get("rows", []))
                recipe = H.recipe(rows, info, settings, shown.get("unreadable", []))
            except Exception as err:
                if not isinstance(err, (RecipeError, ValueError)):
                    log.exception("unexpected error while checking the recipe")
                    err = "unexpected server error (logged); try again"
                gr.Warning(str(err).splitlines()[0])
                return "", error_markdown(str(err)), ""
            cost, limit = H.composer.cost(recipe), H.composer.budget(recipe.model)
            allowed = "" if limit is None else f"; this model allows {limit:,} per run"
            return (recipe.to_json(), f"Running… {cost:,} network evaluations{allowed}.",
                    state.share_token(recipe))

        def said_on_status(fn):
            """A stream's failure also reaches the status line, which said "Running…"
            (the toast alone goes; the line stays). Unexpected errors are masked there."""
            @functools.wraps(fn)
            def stream(*args, **kwargs):
                try:
                    yield from fn(*args, **kwargs)
                except Cancelled:
                    raise
                except Exception as err:
                    message = state.plain(str(err)) if isinstance(err, ValueError) else GENERIC_ERROR
                    yield {status: error_markdown(message)}
                    raise
            return stream

        def streamed_run(fn):
            """The stack of every run the page streams: cancellable by Stop, on the GPU
            where there is one, errors translated, and failures said on the status line."""
            return cancellable(gpu(guard(said_on_status(fn))))

        @streamed_run
        def run(recipe_text: str, show_noisy: bool, show_maps: bool, runs: list | None = None,
                replay: bool = False, cancel=None):
            """Stream a run: preview, per-concept thumbnails and progress each step.
            With `replay`, a stored run of the same example recipe streams again."""
            if is_blank(recipe_text):  # the page did not validate: change nothing
                yield {progress: gr.skip()}  # (yielding nothing would blank every output)
                return
            recipe = Recipe.from_json(recipe_text)
            show_noisy, show_maps = flag(show_noisy, "show_noisy"), flag(show_maps, "show_maps")
            labels = [f"Row {n}: {concept_label(c)}"
                      for n, c in enumerate(recipe.concepts, 1) if not c.muted]
            frames: list[dict] = []
            live = Run(labels=labels, frames=frames, total=None, done=False, ended=False)
            # The last run's result goes before the first step, so nothing stale stays.
            yield {frames_state: live, frame_slider: gr.update(visible=False),
                   gif_file: gr.update(visible=False, value=None),
                   png_file: gr.update(visible=False, value=None), metrics_md: "",
                   progress: progress_html(0, 1, " · starting")}
            replay = replay and not show_maps           # stored runs have no maps
            stored = H.stored_seconds(recipe) if replay else None
            compute, result = 0.0, None
            try:
                for item, compute in timed(H.stream(recipe, replay=replay, cancel=cancel,
                                                    maps=show_maps)):
                    if isinstance(item, Frame):
                        H.kept.keep(live, kept_frame(item))
                        live["total"] = item.total
                        stride = -(-item.total // STREAMED_FRAMES)
                        if (item.index + 1) % stride and item.index + 1 < item.total:
                            continue
                        extra = ("" if item.acceptance is None
                                 else f" · acceptance {item.acceptance:.0%}")
                        picture, thumbs = chosen_view(item.preview, item.noisy, item.map,
                                                      item.concepts, item.concept_maps,
                                                      show_noisy, show_maps)
                        yield {preview: page_picture(picture),
                               **thumb_updates(concept_images, thumbs, labels),
                               progress: progress_html(item.index + 1, item.total, extra),
                               frames_state: live}
                    else:
                        result = item
            finally:
                live["ended"] = True                    # finished, failed or stopped
            compute = compute if stored is None else stored
            how = "" if stored is None else ", a stored run of this example replayed"
            final = final_picture(result)
            last = result.frames[-1]
            H.kept.keep(live, kept_frame(last, final))
            live["done"] = True
            gif, png = H.save_outputs(result, [f.preview for f in result.frames])
            accept = [f.acceptance for f in result.frames if f.acceptance is not None]
            evaluations = H.composer.cost(result.recipe, maps=show_maps)
            runs = (runs or []) + [run_row(len(runs or []) + 1, result, compute, evaluations, accept)]
            notes = "".join(f"\n- {n}" for n in result.notes)
            yield {preview: page_picture(last.map if show_maps and last.map is not None else final),
                   frames_state: live,
                   frame_slider: gr.update(visible=True, minimum=1, maximum=len(frames),
                                           value=len(frames)),
                   progress: progress_html(len(result.frames), len(result.frames),
                                           f" · done in {compute:.1f} s"),
                   metrics_md: judge_text(result, accept),
                   gif_file: gr.update(value=gif, visible=True),
                   png_file: gr.update(value=png, visible=True),
                   runs_state: runs, runs_table: runs_value(runs),
                   status: f"Done: {len(result.frames)} steps in {compute:.1f} s "
                           f"({evaluations:,} network evaluations{how}).{notes}"}

        run_outputs = [preview, *concept_images, progress, frames_state, frame_slider, metrics_md,
                       gif_file, png_file, runs_state, runs_table, status]
        scrub_outputs = [preview, *concept_images, progress]

        def scrub(index, frames, show_noisy, show_maps):
            if frames and frames.get("released"):
                return [*[gr.skip()] * (len(scrub_outputs) - 1),
                        "<div id='progress-text'>This run's frames were released to save the "
                        "server's memory; run it again to scrub it.</div>"]
            items = list(frames["frames"]) if frames else []   # may be released meanwhile
            if not items:
                return [gr.skip()] * len(scrub_outputs)
            i = int(min(max(index or 1, 1), len(items))) - 1
            item = items[i]
            caption = "final" if frames["done"] and i == len(items) - 1 else f"step {i + 1}"
            picture, pictures = chosen_view(item["preview"], item["noisy"], item["map"],
                                            item["concepts"], item["concept_maps"],
                                            show_noisy, show_maps)
            thumbs = thumb_updates(concept_images, [unpacked(c) for c in pictures], frames["labels"])
            return [page_picture(unpacked(picture)),
                    *[thumbs[slot] for slot in concept_images],
                    f"<div id='progress-text'>Frame {i + 1} / {len(items)} ({caption})</div>"]

        def stopped(frames, request: gr.Request):
            """Stop as a state: where the run stopped, its frames left to scrub. The page's
            running streams end at their next network evaluation (their cancel flags)."""
            STOPPABLE.stop(getattr(request, "session_hash", None))
            if not frames or frames["done"]:      # no run of this page's to stop: keep "Done: …"
                return gr.skip(), gr.skip(), gr.skip()
            # The run's thread may finish one more step before it sees the cancel; the
            # frames end here, so the slider, its label and the scrubber agree.
            count, total = H.kept.stop(frames), frames["total"]
            if not count:
                return ("Stopped before the first step.", gr.update(visible=False),
                        progress_html(0, 1, " · stopped"))
            return (f"Stopped at step {count} / {total}. Move the Frame slider to look back.",
                    gr.update(visible=True, minimum=1, maximum=count, value=count),
                    f"<div id='progress-text'>Stopped at step {count} / {total}</div>")

        # --- compare ----------------------------------------------------------------
        @streamed_run
        def compare(recipe_text: str, samplers: list, show_noisy: bool, models: list | None = None,
                    runs: list | None = None, cancel=None):
            """The same recipe and seed under 2-4 samplers, streamed side by side; each
            reports its own compute time and network evaluations."""
            if is_blank(recipe_text):  # the page did not validate: change nothing
                yield {compare_status: gr.skip()}  # (yielding nothing would blank every output)
                return
            show_noisy = flag(show_noisy, "show_noisy")
            recipes = H.compare_recipes(Recipe.from_json(recipe_text), list(samplers or []),
                                        list(models or []))
            across = len({r.model for r in recipes}) > 1

            def name_of(r: Recipe) -> str:
                return SAMPLER_LABELS[r.sampler.name] + (f" · {r.model}" if across else "")
            evaluations = [H.composer.cost(r) for r in recipes]
            streams = [timed(H.stream(r, cancel=cancel)) for r in recipes]
            pictures, lines = [None] * len(recipes), [""] * len(recipes)
            results, seconds = [None] * len(recipes), [0.0] * len(recipes)
            live = set(range(len(recipes)))
            yield {compare_files: gr.update(visible=False, value=None)}
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
                                    + (f"; {metrics_text(item.metrics)}" if item.metrics else ""))
                update = {img: gr.update(value=pictures[k], visible=True, label=name_of(recipes[k]),
                                         alt_text=f"Result of {name_of(recipes[k])}")
                          for k, img in enumerate(compare_images[:len(recipes)])}
                update.update({img: gr.update(visible=False)
                               for img in compare_images[len(recipes):]})
                update[compare_status] = "  \n".join(lines)
                yield update
            runs = list(runs or [])
            for k, result in enumerate(results):
                accept = [f.acceptance for f in result.frames if f.acceptance is not None]
                runs.append(run_row(len(runs) + 1, result, seconds[k], evaluations[k], accept))
            files = [H.save_png(result) for result in results]
            yield {runs_state: runs, runs_table: runs_value(runs),
                   compare_files: gr.update(value=files, visible=True),
                   status: f"Compared {', '.join(name_of(r) for r in recipes)}."}

        # --- sweep ------------------------------------------------------------------
        @streamed_run
        def sweep(recipe_text: str, field_1: str, values_1: str, field_2: str, values_2: str,
                  runs: list | None = None, cancel=None):
            """The sweep's cost first, then its labelled grid as each cell finishes, then
            the grid PNG (carrying the sweep, for `python -m composer sweep`)."""
            if is_blank(recipe_text):  # the page did not validate: change nothing
                yield {sweep_status: gr.skip()}
                return
            plan = state.build_sweep(Recipe.from_json(recipe_text),
                                     [(field_1, values_1), (field_2, values_2)])
            rows, columns = plan.shape
            cost = H.composer.sweep_cost(plan)
            limit = H.composer.sweep_budget(plan.recipe.model)
            head = f"Sweep of {rows * columns} cells, {cost:,} network evaluations"
            budget = f" (a sweep of this model may use {limit:,})" if limit is not None else ""
            yield {sweep_status: f"{head}: running…{budget}",
                   sweep_files: gr.update(visible=False, value=None),
                   sweep_image: gr.update(visible=False, value=None)}
            cells, (row_labels, column_labels) = [], plan.labels()
            runs, before = list(runs or []), 0.0
            for cell, seconds in timed(H.composer.sweep(plan, cancel)):
                cells.append((cell.position, *sweep_cell(cell.result.images, cell.result.metrics)))
                picture = labelled_grid(cells, row_labels, column_labels)
                accept = [f.acceptance for f in cell.result.frames if f.acceptance is not None]
                runs.append(run_row(len(runs) + 1, cell.result, seconds - before,
                                     H.composer.cost(cell.result.recipe), accept))
                before = seconds
                yield {sweep_image: gr.update(value=picture_file(picture), visible=True),
                       sweep_status: f"{head}: {len(cells)} of {rows * columns} done.",
                       runs_state: runs, runs_table: runs_value(runs)}
            yield {sweep_files: gr.update(value=H.save_sweep(plan, picture), visible=True),
                   sweep_status: f"{head}: done.", status: f"{head}: done."}

        def limit_compare(chosen):
            """At most COMPARE_SLOTS ticked, and the page says so where the box is (an
            unqueued event's toast never reaches the page)."""
            if len(chosen or []) <= COMPARE_SLOTS:
                return gr.skip(), gr.skip()
            return (chosen[:COMPARE_SLOTS],
                    f"Compare takes up to {COMPARE_SLOTS} samplers: untick one to pick another.")

        compare_choices.input(limit_compare, compare_choices, [compare_choices, compare_status],
                              queue=False, api_visibility=PRIVATE)

        # --- share and import -----------------------------------------------------------
        def share(rows, info, *values):
            recipe_text, message, token = prepare(rows, info, *values)
            return recipe_text or gr.skip(), (message if not token else "Link ready."), token

        def import_json(text):
            if not (text or "").strip():
                raise RecipeError("recipe: paste a recipe JSON first")
            return apply_recipe(Recipe.from_json(text), "Recipe imported from JSON.", autorun=False)

        def import_png(path):
            return apply_recipe(H.recipe_from_upload(path), "Recipe imported from the PNG.",
                                autorun=False)

        def import_example(index):
            path, recipe = examples[index]
            return apply_recipe(recipe, f"Example loaded: {state.example_label(path)}.",
                                autorun=True)

        def soft(fn):
            """Import errors go to the status line (and a toast), leaving the page as it was."""
            @functools.wraps(fn)
            def call(*args):
                try:
                    return fn(*args)
                except Exception as err:
                    message = state.plain(str(err))
                    if not isinstance(err, ValueError):  # Recipe/Composer/ModelError are
                        log.exception("unexpected error in %s", fn.__name__)
                        message = GENERIC_ERROR
                    gr.Warning(message.splitlines()[0])
                    skips = [gr.skip()] * len(apply_outputs)
                    skips[apply_outputs.index(notice)] = error_markdown(message)
                    skips[apply_outputs.index(autorun_state)] = False
                    skips[apply_outputs.index(status)] = message.splitlines()[0]
                    return skips
            return call

        # --- wiring -------------------------------------------------------------------
        # Everything that can start a run goes through prepare (the page -> recipe JSON),
        # then run. A page that opens, a model switch and an example render at once.
        async def replay(recipe_text: str, show_noisy: bool, show_maps: bool,
                         runs: list | None = None):
            async for update in run(recipe_text, show_noisy, show_maps, runs, True):
                yield update

        def then_run(event, api_name=None):
            """Generate computes; what opens by itself (a page, a switch, an example)
            may replay a stored run of the same example."""
            fn, visibility = ((run, {"api_name": api_name}) if api_name
                              else (replay, {"api_visibility": PRIVATE}))
            return event.then(None, share_token, share_link, js=SHARE_JS).then(
                fn, [recipe_json, show_xt, show_map, runs_state], run_outputs,
                concurrency_id=GPU_GROUP,
                concurrency_limit=RUN_CONCURRENCY, show_progress="minimal", **visibility)

        def then_autorun(event):
            return then_run(event.then(autorun, autorun_inputs, [recipe_json, status, share_token],
                                       api_visibility=PRIVATE))

        page_inputs = [rows_state, *settings_inputs, shown]
        generate_btn.click(None, js=REVEAL_JS)
        gen_event = then_run(generate_btn.click(
            prepare, page_inputs, [recipe_json, status, share_token], js=SHOWN_JS,
            concurrency_limit=None, api_visibility=PRIVATE), api_name="generate")
        opened = demo.load(guard(on_load), None, apply_outputs, api_visibility=PRIVATE)
        auto_events = [then_autorun(opened)]
        for trigger, source in ((model_dd.input, model_dd), (sd_box.submit, sd_box),
                                (load_btn.click, sd_box)):
            switched = trigger(loading, source, model_status, queue=False,
                               api_visibility=PRIVATE).then(
                guard(on_model), [source, rows_state, info_state], apply_outputs,
                api_visibility=PRIVATE)
            auto_events.append(then_autorun(switched))
        auto_events.append(then_autorun(example_set.click(
            soft(import_example), example_set, apply_outputs, api_visibility=PRIVATE)))
        apply_btn.click(soft(import_json), recipe_json, apply_outputs, api_visibility=PRIVATE)
        png_in.upload(soft(import_png), png_in, apply_outputs, api_visibility=PRIVATE)

        for control in (frame_slider, show_xt, show_map):
            control.change(scrub, [frame_slider, frames_state, show_xt, show_map], scrub_outputs,
                           queue=False, api_visibility=PRIVATE)

        compare_event = compare_btn.click(
            prepare, page_inputs, [recipe_json, status, share_token], js=SHOWN_JS,
            concurrency_limit=None, api_visibility=PRIVATE).then(
            None, share_token, share_link, js=SHARE_JS).then(
            compare, [recipe_json, compare_choices, show_xt, compare_models, runs_state],
            [*compare_images, compare_status, compare_files, runs_state, runs_table, status],
            api_name="compare", concurrency_id=GPU_GROUP, concurrency_limit=RUN_CONCURRENCY,
            show_progress="minimal")
        sweep_event = sweep_btn.click(
            prepare, page_inputs, [recipe_json, status, share_token], js=SHOWN_JS,
            concurrency_limit=None, api_visibility=PRIVATE).then(
            sweep, [recipe_json, *[w for pair in zip(sweep_fields, sweep_values) for w in pair],
                    runs_state],
            [sweep_status, sweep_image, sweep_files, runs_state, runs_table, status], api_name="sweep",
            concurrency_id=GPU_GROUP, concurrency_limit=RUN_CONCURRENCY, show_progress="minimal")
        stop_btn.click(stopped, frames_state, [status, frame_slider, progress], queue=False,
                       api_visibility=PRIVATE)
        # A page runs one thing at a time: what starts a run cancels the page's others
        # (two runs compute at once server-wide, so an older one could finish last).
        for trigger, keep in ((generate_btn.click, gen_event), (compare_btn.click, compare_event),
                              (sweep_btn.click, sweep_event), (model_dd.input, None),
                              (sd_box.submit, None), (load_btn.click, None),
                              (example_set.click, None)):
            others = [e for e in (gen_event, compare_event, sweep_event) if e is not keep]
            trigger(None, cancels=others + (auto_events if keep else []), queue=False,
                    api_visibility=PRIVATE)
        share_btn.click(share, page_inputs, [recipe_json, status, share_token],
                        js=SHOWN_JS, api_visibility=PRIVATE).then(
            None, share_token, share_link, js=SHARE_JS)

        # --- API --------------------------------------------------------------------
        @cancellable
        @gpu
        @guard
        def render(recipe: str, frames: int = 8, maps: bool = False, cancel=None) -> dict:
            """Run a recipe (JSON string) to the end. Returns {"recipe": the recipe with
            defaults filled, "images": [PNG data URIs], "frames": [up to `frames` preview
            PNG data URIs, evenly spaced], "points": [[x, y], ...] or null (2D models),
            "metrics": {...}, "verdicts": [per sample: {"rows": [{"row", "text", "negate",
            "holds"}], "clean", "correct"}] (models with a judge, else []), "notes": [...],
            "maps": with `maps`, the last step's map then each concept's (2D: density
            p_t; image models under "and": the conflict map), PNG data URIs, else []}."""
            try:
                count = int(frames)
            except (TypeError, ValueError, OverflowError):      # None, "x", nan, infinity
                raise RecipeError(f"frames: must be a whole number, got {echo(frames)}") from None
            result = H.render(Recipe.from_json(recipe), cancel, flag(maps, "maps"))
            last = result.frames[-1]
            picks = spread([f.preview for f in result.frames], count)
            return {"recipe": result.recipe.to_dict(),
                    "images": [data_uri(im) for im in result.images],
                    "frames": [data_uri(im) for im in picks],
                    "points": None if result.points is None else np.asarray(result.points).tolist(),
                    "metrics": {k: float(v) for k, v in result.metrics.items()},
                    "verdicts": list(result.verdicts),
                    "notes": list(result.notes),
                    "maps": [data_uri(im) for im in ([last.map] if last.map is not None else [])
                             + list(last.concept_maps)]}

        gr.api(render, api_name="render", concurrency_id=GPU_GROUP,
               concurrency_limit=RUN_CONCURRENCY)

    return demo.queue(max_size=QUEUE_SIZE)
