"""The Gradio Blocks: layout and wiring. Behaviour lives in ui.handlers and
ui.state; this module only connects components to it."""
from __future__ import annotations

import functools
import logging
import random
import time

import gradio as gr
import numpy as np

from composer.facade import Composer, Frame
from composer.media import MAX_PNG_BYTES
from composer.recipe import MAX_CONCEPTS, OPERATORS, SAMPLERS, Recipe, RecipeError
from ui import state
from ui.handlers import (
    GENERIC_ERROR,
    THUMB_SIDE,
    Handlers,
    concept_label,
    data_uri,
    display,
    final_picture,
    guard,
    metrics_text,
    model_summary,
    progress_html,
    spread,
)

log = logging.getLogger("ui")

try:  # ZeroGPU: must be imported before CUDA is touched; a no-op elsewhere.
    import spaces
    gpu = spaces.GPU(duration=120)
except ImportError:  # the package is optional
    def gpu(fn):
        return fn

GPU_GROUP = "gpu"
PRIVATE = "private"  # UI-only listeners stay out of the API page
SAMPLER_LABELS = {"ddim": "DDIM", "ddpm": "DDPM", "euler": "Euler",
                  "euler_ancestral": "Euler ancestral", "dpmpp": "DPM-Solver++",
                  "ula": "ULA (annealed Langevin)", "uhmc": "U-HMC", "mala": "MALA (Metropolis)",
                  "hmc": "HMC (Metropolis)"}
KNOB_LABELS = {"mcmc_steps": "MCMC steps per level", "step_size": "Step size (× σ_t)",
               "leapfrog_steps": "Leapfrog steps (HMC)", "damping": "Momentum damping (U-HMC/HMC)",
               "line_points": "Line points (score-only Metropolis)"}
RUN_HEADERS = ["run", "model", "operator", "sampler", "steps", "seed", "samples", "seconds",
               "mean acceptance", "metrics"]
COMPARE_SLOTS = 4
SHARE_JS = """(token) => token ? window.location.origin + window.location.pathname
    + "?recipe=" + token : "" """

CSS = """
.concept-row.muted { opacity: 0.45; }
.concept-row { border-left: 3px solid var(--color-accent); padding-left: 4px; }
#status .error, #model-status .error { color: var(--error-text-color, #b91c1c); }
"""


def launch_kwargs() -> dict:
    """Appearance arguments that Gradio 6 takes in launch(), and the upload cap."""
    return {"css": CSS, "theme": gr.themes.Soft(), "max_file_size": MAX_PNG_BYTES}


def default_samples(info: dict) -> int:
    """A useful first batch: a cloud of points in 2D, a small grid of shapes, one SD image."""
    return min({"toy2d": 1000, "shapes": 4}.get(info["family"], 1), info["max_samples"])


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

    # Gradio's cache of streamed frames: swept every 30 min of files older than an hour.
    with gr.Blocks(title="Composable diffusion explorer", delete_cache=(1800, 3600)) as demo:
        rows_state = gr.State([])
        info_state = gr.State(None)
        frames_state = gr.State(None)
        runs_state = gr.State([])
        share_token = gr.Textbox(visible=False)

        gr.Markdown("# Composable diffusion explorer\n"
                    "Compose concepts with **AND** / **NOT** (Composable Diffusion) or energy "
                    "**product** / **mixture** (Reduce, Reuse, Recycle), pick a sampler, and watch "
                    "the sample form step by step.")
        with gr.Row():
            with gr.Column(scale=5):
                with gr.Group():
                    with gr.Row():
                        model_dd = gr.Dropdown(H.composer.model_names(), label="Model",
                                               elem_id="model", scale=2)
                        sd_box = gr.Textbox(label="…or a Stable Diffusion hub id / folder",
                                            placeholder="org/name or /path/to/checkpoint",
                                            elem_id="sd-model", scale=2)
                        load_btn = gr.Button("Load", elem_id="load-model", scale=0, min_width=80)
                    model_status = gr.Markdown("Loading the default model…", elem_id="model-status")

                gr.Markdown("### Concepts")

                @gr.render(inputs=[rows_state, info_state])
                def render_rows(rows, info):
                    choices = (info or {}).get("choices")
                    for n, row in enumerate(rows, 1):
                        _concept_row(n, row, len(rows), choices, rows_state)

                with gr.Row():
                    add_btn = gr.Button("+ Add concept", elem_id="add-row", size="sm")
                with gr.Row():
                    operator = gr.Radio(list(OPERATORS), value="and", label="Operator",
                                        info="and: Composable Diffusion; product/mixture: "
                                             "energy composition (mixture needs an energy model)",
                                        elem_id="operator")
                    scale = gr.Number(None, label="Global scale α", placeholder="model default",
                                      elem_id="scale")
                with gr.Row():
                    sampler = gr.Dropdown([(SAMPLER_LABELS[s], s) for s in SAMPLERS], value="ddim",
                                          label="Sampler", elem_id="sampler")
                    steps = gr.Number(None, label="Steps", precision=0, placeholder="model default",
                                      elem_id="steps")
                with gr.Row(equal_height=True):
                    seed = gr.Number(0, label="Seed", precision=0, elem_id="seed")
                    dice = gr.Button("Random seed", elem_id="random-seed", scale=0, min_width=120)
                    num_samples = gr.Number(1, label="Samples", precision=0, elem_id="num-samples")
                with gr.Accordion("Sampler knobs (empty = model default)", open=False,
                                  elem_id="knobs"):
                    scheduler = gr.Dropdown(["ddpm", "ddim"], value="ddpm",
                                            label="Reverse step between MCMC levels",
                                            elem_id="scheduler")
                    with gr.Row():
                        knobs = {k: gr.Number(None, label=label, elem_id=f"knob-{k}",
                                              placeholder="model default",
                                              precision=0 if k in state.INTEGER_KNOBS else None)
                                 for k, label in KNOB_LABELS.items()}
                with gr.Row():
                    generate_btn = gr.Button("Generate", variant="primary", elem_id="generate")
                    stop_btn = gr.Button("Stop", variant="stop", elem_id="stop")
                status = gr.Markdown("", elem_id="status")

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
                    examples = state.example_files()
                    example_set = gr.Dataset(components=[gr.Textbox(visible=False)],
                                             samples=[[state.example_label(p)] for p in examples],
                                             label="Examples", type="index", elem_id="examples",
                                             visible=bool(examples))

            with gr.Column(scale=6), gr.Tabs():
                with gr.Tab("Generate", id="tab-generate"):
                    preview = gr.Image(label="Predicted x₀", type="numpy", elem_id="preview",
                                       format="png", interactive=False, height=380)
                    with gr.Row():
                        show_xt = gr.Checkbox(False, label="Show x_t (noisy state) instead",
                                              elem_id="show-xt")
                    progress = gr.HTML("", elem_id="progress")
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
                                           interactive=False)
                        png_file = gr.File(label="PNG with recipe", elem_id="png-file",
                                           interactive=False)
                with gr.Tab("Compare samplers", id="tab-compare"):
                    compare_choices = gr.CheckboxGroup(
                        [(SAMPLER_LABELS[s], s) for s in SAMPLERS], value=["ddim", "mala"],
                        label="Samplers (2–4), same recipe and seed", elem_id="compare-samplers")
                    compare_btn = gr.Button("Compare", variant="primary", elem_id="compare")
                    with gr.Row():
                        compare_images = [gr.Image(label=f"Sampler {k + 1}", type="numpy", format="png",
                                                   interactive=False, elem_id=f"compare-{k + 1}",
                                                   visible=k < 2)
                                          for k in range(COMPARE_SLOTS)]
                    compare_status = gr.Markdown("", elem_id="compare-status")
                with gr.Tab("Runs", id="tab-runs"):
                    runs_table = gr.Dataframe(headers=RUN_HEADERS, elem_id="runs",
                                              interactive=False, wrap=True)

        settings_inputs = [info_state, operator, scale, sampler, scheduler, *knobs.values(),
                           steps, seed, num_samples]
        apply_outputs = [rows_state, info_state, model_dd, model_status, operator, scale,
                         sampler, scheduler, *knobs.values(), steps, seed, num_samples, status]

        # --- model ------------------------------------------------------------------
        def model_updates(info: dict, values: state.Settings | None) -> list:
            """Updates for model-dependent widgets; values=None resets to defaults."""
            ops = [o for o in OPERATORS if o != "mixture" or info["has_energy"]]
            d = info["defaults"]
            s = values or state.Settings(model=info["name"], num_samples=default_samples(info))
            op = s.operator if s.operator in ops else "and"
            names = H.composer.model_names()
            if info["name"] not in names:
                names.append(info["name"])
            return [gr.update(choices=names, value=info["name"]),
                    model_summary(info),
                    gr.update(choices=ops, value=op),
                    gr.update(value=s.scale, placeholder=f"default {d.get('scale', '')}"),
                    s.sampler, s.scheduler,
                    *[gr.update(value=getattr(s, k), placeholder=f"default {d.get(k, '')}")
                      for k in knobs],
                    gr.update(value=s.steps, placeholder=f"default {d.get('steps', '')}"),
                    s.seed, s.num_samples]

        def apply_recipe(recipe: Recipe, note: str = "") -> list:
            info = H.info(recipe.model)
            rows = state.rows_from_concepts(recipe.concepts)
            return [rows, info, *model_updates(info, state.settings_from_recipe(recipe)), note]

        def apply_default(note: str = "") -> list:
            info = H.info(H.default_model())
            return [H.default_rows(info), info, *model_updates(info, None), note]

        def on_load(request: gr.Request):
            token = request.query_params.get("recipe") if request else None
            if token:
                try:
                    return apply_recipe(state.recipe_from_token(token),
                                        "Recipe restored from the link.")
                except Exception as err:  # noqa: BLE001 - shown, then the default
                    log.warning("cannot restore shared recipe: %s", err)
                    return apply_default(error_markdown(f"Could not restore the shared recipe: {err}"))
            return apply_default()

        demo.load(guard(on_load), None, apply_outputs, api_visibility=PRIVATE)

        def on_model(name, rows, info):
            try:
                new = H.info(name)
            except Exception as err:  # noqa: BLE001 - shown by the picker
                gr.Warning(f"Could not load model {name!r}: {err}")
                keep = info["name"] if info else None
                return [gr.skip(), gr.skip(), gr.update(value=keep),
                        error_markdown(f"Could not load model {name!r}: {err}"),
                        *[gr.skip()] * (len(apply_outputs) - 4)]
            if new["choices"]:
                rows = [dict(r, text=r["text"] if r["text"] in new["choices"]
                             else new["choices"][i % len(new["choices"])])
                        for i, r in enumerate(rows)] or H.default_rows(new)
            elif info and info.get("choices"):  # from 2D concepts to free text
                rows = H.default_rows(new)
            return [rows, new, *model_updates(new, None), ""]

        def loading(name):
            return f"Loading **{name}**…"

        model_dd.input(loading, model_dd, model_status, queue=False, api_visibility=PRIVATE).then(
            guard(on_model), [model_dd, rows_state, info_state], apply_outputs,
            api_visibility=PRIVATE)
        sd_box.submit(loading, sd_box, model_status, queue=False, api_visibility=PRIVATE).then(
            guard(on_model), [sd_box, rows_state, info_state], apply_outputs,
            api_visibility=PRIVATE)
        load_btn.click(loading, sd_box, model_status, queue=False, api_visibility=PRIVATE).then(
            guard(on_model), [sd_box, rows_state, info_state], apply_outputs,
            api_visibility=PRIVATE)

        # --- rows -------------------------------------------------------------------
        def add_row(rows, info):
            if len(rows) >= MAX_CONCEPTS:
                gr.Warning(f"At most {MAX_CONCEPTS} concepts.")
            default = (info or {}).get("choices") or [""]
            return state.row_action(rows, "add", default_text=default[len(rows) % len(default)])

        add_btn.click(add_row, [rows_state, info_state], rows_state, api_visibility=PRIVATE)
        dice.click(lambda: random.randint(0, 2**31 - 1), None, seed, queue=False,
                   api_visibility=PRIVATE)

        # --- generate ---------------------------------------------------------------
        def prepare(rows, info, *values):
            """Validate the page into recipe JSON; problems go to the status line."""
            settings = state.Settings(info["name"] if info else "", *values)
            try:
                recipe = H.recipe(rows, info, settings)
            except Exception as err:
                if not isinstance(err, (RecipeError, ValueError)):
                    log.exception("unexpected error while checking the recipe")
                    err = "unexpected server error (logged); try again"
                gr.Warning(str(err).splitlines()[0])
                return "", error_markdown(str(err)), ""
            return recipe.to_json(), "Running…", state.share_token(recipe)

        @gpu
        @guard
        def run(recipe_text: str, show_noisy: bool, runs: list | None = None):
            """Stream a run: preview, per-concept thumbnails and progress each step."""
            if not (recipe_text or "").strip():  # the page did not validate: change nothing
                yield {progress: gr.skip()}  # (yielding nothing would blank every output)
                return
            recipe = Recipe.from_json(recipe_text)
            labels = [f"Row {n}: {concept_label(c)}"
                      for n, c in enumerate(recipe.concepts, 1) if not c.muted]
            frames, start, result = [], time.time(), None
            try:
                for item in H.stream(recipe):
                    if isinstance(item, Frame):
                        frames.append({"preview": item.preview, "noisy": item.noisy,
                                       "concepts": item.concepts})
                        extra = ("" if item.acceptance is None
                                 else f" · acceptance {item.acceptance:.0%}")
                        update = {preview: display(item.noisy if show_noisy else item.preview),
                                  **_thumbs(concept_images, item.concepts, labels),
                                  progress: progress_html(item.index + 1, item.total, extra)}
                        if item.index == 0:  # the last run's frames are gone from here on
                            update[frames_state] = None
                        yield update
                    else:
                        result = item
            except ValueError as err:  # Recipe/ComposerError, or a setting the scheduler refuses
                yield {status: error_markdown(str(err))}
                raise
            seconds = time.time() - start
            final = final_picture(result)
            frames.append({"preview": final, "noisy": final, "concepts": frames[-1]["concepts"]})
            gif, png = H.save_outputs(result, [f["preview"] for f in frames[:-1]])
            accept = [f.acceptance for f in result.frames if f.acceptance is not None]
            runs = (runs or []) + [_run_row(len(runs or []) + 1, result, seconds, accept)]
            notes = "".join(f"\n- {n}" for n in result.notes)
            yield {preview: display(final),
                   frames_state: {"labels": labels, "frames": frames},
                   frame_slider: gr.update(visible=True, minimum=1, maximum=len(frames),
                                           value=len(frames)),
                   progress: progress_html(len(result.frames), len(result.frames),
                                           f" · done in {seconds:.1f} s"),
                   metrics_md: _metrics_md(result, accept),
                   gif_file: gif, png_file: png,
                   runs_state: runs, runs_table: _runs_value(runs),
                   status: f"Done: {len(result.frames)} steps in {seconds:.1f} s.{notes}"}

        run_outputs = [preview, *concept_images, progress, frames_state, frame_slider, metrics_md,
                       gif_file, png_file, runs_state, runs_table, status]
        gen_event = generate_btn.click(
            prepare, [rows_state, *settings_inputs], [recipe_json, status, share_token],
            concurrency_limit=None, api_visibility=PRIVATE).then(
            None, share_token, share_link, js=SHARE_JS).then(
            run, [recipe_json, show_xt, runs_state], run_outputs, api_name="generate",
            concurrency_id=GPU_GROUP, concurrency_limit=1, show_progress="minimal")

        def scrub(index, frames, show_noisy):
            if not frames:
                return {}
            items = frames["frames"]
            i = int(min(max(index or 1, 1), len(items))) - 1
            item = items[i]
            caption = "final" if i == len(items) - 1 else f"step {i + 1}"
            return {preview: display(item["noisy"] if show_noisy else item["preview"]),
                    **_thumbs(concept_images, item["concepts"], frames["labels"]),
                    progress: f"<div id='progress-text'>Frame {i + 1} / {len(items)} "
                              f"({caption})</div>"}

        frame_slider.change(scrub, [frame_slider, frames_state, show_xt],
                            [preview, *concept_images, progress], queue=False,
                            api_visibility=PRIVATE)
        show_xt.change(scrub, [frame_slider, frames_state, show_xt],
                       [preview, *concept_images, progress], queue=False,
                       api_visibility=PRIVATE)

        # --- compare ----------------------------------------------------------------
        @gpu
        @guard
        def compare(recipe_text: str, samplers: list, show_noisy: bool, runs: list | None = None):
            """The same recipe and seed under 2-4 samplers, streamed side by side."""
            if not (recipe_text or "").strip():  # the page did not validate: change nothing
                yield {compare_status: gr.skip()}  # (yielding nothing would blank every output)
                return
            recipes = H.compare_recipes(Recipe.from_json(recipe_text), list(samplers or []))
            streams = [H.stream(r) for r in recipes]
            pictures = [None] * len(recipes)
            lines = [""] * len(recipes)
            results, starts = [None] * len(recipes), [time.time()] * len(recipes)
            seconds = [0.0] * len(recipes)
            live = set(range(len(recipes)))
            while live:
                for k in sorted(live):
                    try:
                        item = next(streams[k])
                    except StopIteration:
                        live.discard(k)
                        continue
                    name = recipes[k].sampler.name
                    if isinstance(item, Frame):
                        pictures[k] = display(item.noisy if show_noisy else item.preview)
                        acc = "" if item.acceptance is None else f", acceptance {item.acceptance:.0%}"
                        lines[k] = f"**{name}**: step {item.index + 1}/{item.total}{acc}"
                    else:
                        results[k] = item
                        seconds[k] = time.time() - starts[0]
                        pictures[k] = display(final_picture(item))
                        m = metrics_text(item.metrics)
                        lines[k] = f"**{name}**: done" + (f"; {m}" if m else "")
                update = {img: gr.update(value=pictures[k], visible=True,
                                         label=SAMPLER_LABELS[recipes[k].sampler.name])
                          for k, img in enumerate(compare_images[:len(recipes)])}
                update.update({img: gr.update(visible=False)
                               for img in compare_images[len(recipes):]})
                update[compare_status] = "  \n".join(lines)
                yield update
            runs = list(runs or [])
            for k, result in enumerate(results):
                accept = [f.acceptance for f in result.frames if f.acceptance is not None]
                runs.append(_run_row(len(runs) + 1, result, seconds[k], accept))
            yield {runs_state: runs, runs_table: _runs_value(runs),
                   status: f"Compared {', '.join(r.sampler.name for r in recipes)}."}

        compare_event = compare_btn.click(
            prepare, [rows_state, *settings_inputs], [recipe_json, status, share_token],
            concurrency_limit=None, api_visibility=PRIVATE).then(
            None, share_token, share_link, js=SHARE_JS).then(
            compare, [recipe_json, compare_choices, show_xt, runs_state],
            [*compare_images, compare_status, runs_state, runs_table, status], api_name="compare",
            concurrency_id=GPU_GROUP, concurrency_limit=1, show_progress="minimal")
        stop_btn.click(None, None, None, cancels=[gen_event, compare_event])

        # --- share and import -----------------------------------------------------------
        def share(rows, info, *values):
            recipe_text, message, token = prepare(rows, info, *values)
            return recipe_text or gr.skip(), (message if not token else "Link ready."), token

        share_btn.click(share, [rows_state, *settings_inputs], [recipe_json, status, share_token],
                        api_visibility=PRIVATE).then(None, share_token, share_link, js=SHARE_JS)

        def import_json(text):
            if not (text or "").strip():
                raise RecipeError("recipe: paste a recipe JSON first")
            return apply_recipe(Recipe.from_json(text), "Recipe imported from JSON.")

        def import_png(path):
            return apply_recipe(H.recipe_from_upload(path), "Recipe imported from the PNG.")

        def import_example(index):
            return apply_recipe(Recipe.from_json(examples[index].read_text()),
                                f"Example loaded: {state.example_label(examples[index])}.")

        def soft(fn):
            """Import errors go to the status line (and a toast), leaving the page as it was."""
            @functools.wraps(fn)
            def call(*args):
                try:
                    return fn(*args)
                except Exception as err:
                    message = str(err)
                    if not isinstance(err, ValueError):  # Recipe/Composer/ModelError are
                        log.exception("unexpected error in %s", fn.__name__)
                        message = GENERIC_ERROR
                    gr.Warning(message.splitlines()[0])
                    return [gr.skip()] * (len(apply_outputs) - 1) + [error_markdown(message)]
            return call

        apply_btn.click(soft(import_json), recipe_json, apply_outputs, api_visibility=PRIVATE)
        png_in.upload(soft(import_png), png_in, apply_outputs, api_visibility=PRIVATE)
        example_set.click(soft(import_example), example_set, apply_outputs,
                          api_visibility=PRIVATE)

        # --- API --------------------------------------------------------------------
        @gpu
        @guard
        def render(recipe: str, frames: int = 8) -> dict:
            """Run a recipe (JSON string) to the end. Returns {"recipe": the recipe with
            defaults filled, "images": [PNG data URIs], "frames": [up to `frames` preview
            PNG data URIs, evenly spaced], "points": [[x, y], ...] or null (2D models),
            "metrics": {...}, "verdicts": [per sample: {"rows": [{"row", "text", "negate",
            "holds"}], "clean", "correct"}] (models with a judge, else []), "notes": [...]}."""
            result = H.render(Recipe.from_json(recipe))
            picks = spread([f.preview for f in result.frames], int(frames))
            return {"recipe": result.recipe.to_dict(),
                    "images": [data_uri(im) for im in result.images],
                    "frames": [data_uri(im) for im in picks],
                    "points": None if result.points is None else np.asarray(result.points).tolist(),
                    "metrics": {k: float(v) for k, v in result.metrics.items()},
                    "verdicts": list(result.verdicts),
                    "notes": list(result.notes)}

        gr.api(render, api_name="render", concurrency_id=GPU_GROUP, concurrency_limit=1)

    return demo


# --- row rendering (called inside @gr.render) -------------------------------------

def _concept_row(n: int, row: dict, count: int, choices, rows_state) -> None:
    rid = row["id"]
    classes = ["concept-row"] + (["muted"] if row["muted"] else [])
    with gr.Group(elem_classes=classes, elem_id=f"concept-{n}", key=f"{rid}-group"):
        with gr.Row(equal_height=True):
            if choices:
                text = gr.Dropdown(choices, value=row["text"], allow_custom_value=True,
                                   label=f"Concept {n}", elem_id=f"concept-{n}-text",
                                   key=f"{rid}-text-choice", scale=4, interactive=True)
            else:
                text = gr.Textbox(row["text"], label=f"Concept {n}", placeholder="a prompt",
                                  elem_id=f"concept-{n}-text", key=f"{rid}-text-free", scale=4,
                                  max_length=400, interactive=True)
            weight = gr.Slider(0, 10, step=0.05, value=row["beta"] if row["negate"] else row["weight"],
                               label=_weight_label(row["negate"]), elem_id=f"concept-{n}-weight",
                               key=f"{rid}-weight", scale=3, interactive=True)
            negate = gr.Checkbox(row["negate"], label="NOT", elem_id=f"concept-{n}-not",
                                 key=f"{rid}-not", scale=0, min_width=80,
                                 interactive=True)
        with gr.Row():
            buttons = {}
            for action, label in (("up", "Up"), ("down", "Down"), ("duplicate", "Duplicate"),
                                  ("mute", "Unmute" if row["muted"] else "Mute"),
                                  ("remove", "Remove")):
                buttons[action] = gr.Button(
                    label, size="sm", elem_id=f"concept-{n}-{action}", key=f"{rid}-{action}",
                    preserved_by_key=None, min_width=40,
                    interactive=not ((action == "up" and n == 1)
                                     or (action == "down" and n == count)))

    def set_text(value, rows, rid=rid):
        _row(rows, rid)["text"] = value or ""

    def set_weight(value, rows, rid=rid):
        r = _row(rows, rid)
        if r:
            r["beta" if r["negate"] else "weight"] = float(value)

    def set_negate(value, rows, rid=rid):
        r = _row(rows, rid)
        if not r:
            return gr.skip()
        r["negate"] = bool(value)
        return gr.update(value=r["beta"] if r["negate"] else r["weight"],
                         label=_weight_label(r["negate"]))

    text.change(set_text, [text, rows_state], None, queue=False)
    weight.change(set_weight, [weight, rows_state], None, queue=False)
    negate.input(set_negate, [negate, rows_state], weight, queue=False)
    for action, button in buttons.items():
        button.click(lambda rows, action=action, rid=rid: state.row_action(rows, action, rid),
                     rows_state, rows_state)


def _row(rows: list[dict], rid: str) -> dict:
    try:
        return rows[state.find(rows, rid)]
    except KeyError:  # the row was removed while an edit was in flight
        return {}


def _weight_label(negate: bool) -> str:
    return "β (NOT strength)" if negate else "AND weight w"


def _thumbs(slots, pictures, labels) -> dict:
    """Updates for the per-concept image slots: one per active row, the rest hidden."""
    shown = {slot: gr.update(value=display(p, THUMB_SIDE), label=label, visible=True)
             for slot, p, label in zip(slots, pictures, labels)}
    return {**shown, **{slot: gr.update(visible=False) for slot in slots[len(shown):]}}


def _run_row(number: int, result, seconds: float, accept: list) -> list:
    r = result.recipe
    return [number, r.model, r.operator, r.sampler.name, r.steps, r.seed, r.num_samples, round(seconds, 2),
            round(float(np.mean(accept)), 3) if accept else "", metrics_text(result.metrics)]


def _verdict_line(number: int, verdict: dict) -> str:
    """'Sample 2: ✓ red circle · ✗ NOT blue · clean ✓' (rows by their row number)."""
    rows = " · ".join(f"{'✓' if r['holds'] else '✗'} {'NOT ' if r['negate'] else ''}{r['text']} "
                      f"(row {r['row']})" for r in verdict["rows"])
    return f"Sample {number}: {rows} · clean scene {'✓' if verdict['clean'] else '✗'}"


def _runs_value(runs: list) -> dict:
    return {"headers": RUN_HEADERS, "data": runs}


def _metrics_md(result, accept: list) -> str:
    parts = []
    if "correct" in result.metrics:  # an image model with a judge (shapes)
        n = result.recipe.num_samples
        count = {k: round(v * n) for k, v in result.metrics.items()}
        parts.append(f"**Judge:** {count['correct']} of {n} samples satisfy every row in a clean "
                     f"scene ({count['rows_hold']} of {n} if clutter is ignored; "
                     f"{count['clean']} of {n} clean)")
        parts.extend(_verdict_line(k, v) for k, v in enumerate(result.verdicts, 1))
    elif result.metrics:
        parts.append("**Metrics vs ground truth:** " + metrics_text(result.metrics))
    if accept:
        parts.append(f"**Mean acceptance:** {np.mean(accept):.1%} "
                     f"(first level {accept[0]:.0%}, last {accept[-1]:.0%})")
    return "  \n".join(parts)
