"""The Generate tab: the run streamed frame by frame, each concept's own prediction,
the Frame slider over the kept frames, Stop, and the run's files."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import gradio as gr
import numpy as np

from composer.facade import Frame
from composer.lift import lift_cost_per_row
from composer.recipe import MAX_CONCEPTS, Recipe
from ui.files import STREAMED_FRAMES, display, final_picture, page_picture, save_outputs
from ui.form import recipe_handler
from ui.frames import KEEP_SECONDS, Run, chosen_view, kept_frame, timed, unpacked
from ui.page import PRIVATE, REVEAL_JS, RUN_QUEUE, SHARE_JS
from ui.plots import chart, tracks_panel
from ui.results import glance, judge_text, run_entry, runs_value, thumb_updates
from ui.service import Service
from ui.stack import STOPPABLE, streamed_run
from ui.words import (concept_label, flag, is_blank, map_key, progress_html, time_text,
                      view_label)


@dataclass(frozen=True)
class GenerateTab:
    frames: gr.State             # the last run's kept frames (ui.frames.Run)
    progress: gr.HTML
    preview: gr.Image
    show_xt: gr.Checkbox
    show_map: gr.Checkbox
    lift: gr.Checkbox            # judge the samples by the model's own lift (composer.lift)
    frame_slider: gr.Slider
    concept_images: tuple        # one gr.Image per possible row
    metrics: gr.Markdown
    gif: gr.File
    png: gr.File

    def cleared(self, keep_picture: bool = False) -> dict:
        """The result area emptied: a new model or recipe makes the old result stale
        (`keep_picture`: the big picture shows the recipe's own result already)."""
        hidden = gr.update(visible=False, value=None)
        picture = gr.update(elem_classes=[]) if keep_picture else gr.update(value=None, elem_classes=[])
        return {self.preview: picture, **{image: hidden for image in self.concept_images},
                self.progress: "", self.frames: None, self.frame_slider: gr.update(visible=False),
                self.metrics: "", self.gif: hidden, self.png: hidden}


def build(landing: np.ndarray | None = None) -> GenerateTab:
    """The tab, its big picture showing `landing` (the default example's result) until
    the page's first event: a picture before any round trip (page.js hides it on a
    link's page, whose recipe may differ)."""
    frames = gr.State(None, time_to_live=KEEP_SECONDS)
    progress = gr.HTML("", elem_id="progress")
    preview = gr.Image(None if landing is None else display(landing), label="Predicted x₀",
                       type="numpy", elem_id="preview", format="png", elem_classes=["landing"],
                       interactive=False, height=380,
                       alt_text="The composition's predicted clean sample")
    with gr.Row(elem_id="view-options"):
        show_xt = gr.Checkbox(False, label="Show x_t (noisy state) instead", elem_id="show-xt")
        show_map = gr.Checkbox(False, label="Map: density p_t (2D) or conflict (images)",
                               elem_id="show-map",
                               info="Computed by the next run; on 2D models each row is also "
                                    "evaluated on a 64×64 grid every step; free on image models")
        lift = gr.Checkbox(True, label="Verdicts by the model (lift)", elem_id="lift",
                           info=f"Does each sample satisfy each row, in the model's own opinion "
                                f"(never ground truth)? {lift_cost_per_row()} network evaluations "
                                f"per sample and row, plus the unconditional one")
    frame_slider = gr.Slider(1, 2, value=1, step=1, label="Frame", elem_id="frame-slider",
                             visible=False)
    gr.Markdown("**Each concept's own prediction of x₀** (active rows, in order)",
                elem_id="concept-title")
    with gr.Row(elem_id="concept-images"):
        concept_images = tuple(
            gr.Image(label=f"Row {k + 1}", type="numpy", format="png", interactive=False,
                     visible=False, height=170, min_width=120, elem_id=f"concept-image-{k + 1}",
                     buttons=[])
            for k in range(MAX_CONCEPTS))
    metrics = gr.Markdown("", elem_id="metrics")
    with gr.Row():
        gif = gr.File(label="Animation (GIF)", elem_id="gif-file", interactive=False, visible=False)
        png = gr.File(label="PNG with recipe", elem_id="png-file", interactive=False, visible=False)
    return GenerateTab(frames=frames, progress=progress, preview=preview, show_xt=show_xt,
                       show_map=show_map, lift=lift, frame_slider=frame_slider,
                       concept_images=concept_images,
                       metrics=metrics, gif=gif, png=png)


def big_picture(picture, show_noisy: bool, mapped: bool, density: bool, final: bool = False):
    """The big picture's update, labelled with what it shows (a map, x_t or x₀)."""
    return gr.update(value=page_picture(picture),
                     label=view_label(show_noisy, mapped, density, final))


def done_text(result, wall: float, sampling: float, verdicts: float, files: float,
              replayed: bool) -> str:
    """'Done: 50 steps in 8.1 s (sampling 3.8 s · …) · judge 8/8 · model 5/8': the wait
    from start to done and where it went, then both verdicts at a glance."""
    took = (time_text(wall, sampling, verdicts, files) if not replayed else
            f"{wall:.1f} s: a stored run of this example, replayed (computed in "
            f"{sampling + verdicts:.1f} s)")
    verdict = glance(result)
    return f"Done: {len(result.frames)} steps in {took}" + (f" · {verdict}" if verdict else "")


class GenerateEvents:
    """The tab's handlers: the run (`run`, the /generate endpoint), the scrubber and Stop."""

    def __init__(self, page, service: Service):
        self.page, self.service = page, service
        self.tab, self.bar, self.runs_tab = page.generate, page.bar, page.runs
        self.run = streamed_run(page.bar.status)(self._stream)

    def _stream(self, recipe_text: str, show_noisy: bool, show_maps: bool, lift: bool | None = None,
                runs: list | None = None, replay: bool = False, cancel=None):
        """Stream a run: preview, per-concept thumbnails and progress each step; `lift`
        judges the samples by the model's own lift (None: the model's default). With
        `replay`, a stored run of the same example recipe streams again."""
        started, tab = time.perf_counter(), self.tab
        if is_blank(recipe_text):  # the page did not validate: change nothing
            yield {tab.progress: gr.skip()}  # (yielding nothing would blank every output)
            return
        recipe = Recipe.from_json(recipe_text)
        view = View(flag(show_noisy, "show_noisy"), flag(show_maps, "show_maps"),
                    [c.text for c in recipe.active_concepts])
        lift = None if lift is None else flag(lift, "lift")
        live = Run([f"Row {n}: {concept_label(c)}"
                    for n, c in enumerate(recipe.concepts, 1) if not c.muted])
        # The last run's result goes before the first step, so nothing stale stays.
        yield {tab.frames: live, tab.frame_slider: gr.update(visible=False),
               tab.gif: gr.update(visible=False, value=None),
               tab.png: gr.update(visible=False, value=None), tab.metrics: "",
               tab.progress: progress_html(0, 1, " · starting")}
        replay = replay and not view.maps           # stored runs have no maps
        stored = self.service.stored_seconds(recipe, lift) if replay else None
        sampling = verdicts = 0.0
        result = None
        try:
            for item, compute in timed(self.service.stream(recipe, replay=replay, cancel=cancel,
                                                           maps=view.maps, lift=lift)):
                if not isinstance(item, Frame):
                    result, verdicts = item, compute - sampling
                    continue
                sampling = compute
                update = self.step(live, item, view)
                if update is not None:
                    yield update
        finally:
            live.end()                              # finished, failed or stopped
        if cancel is not None and cancel.is_set():  # superseded by a newer run of the page
            return
        timing = ((sampling, verdicts) if stored is None else stored) + (started, stored is not None)
        yield self.done(live, result, view, runs, timing)

    def step(self, live: Run, item: Frame, view: "View") -> dict | None:
        """A step's frame kept for the scrubber; the page's update every few steps."""
        self.service.kept.keep(live, kept_frame(item))
        view.tracked.append(item.log_density)
        view.esses.append(item.ess)
        if live.stopped:                # Stop said where the run ended: keep it so
            return None
        live.progress(item.total)
        stride = -(-item.total // STREAMED_FRAMES)
        if (item.index + 1) % stride and item.index + 1 < item.total:
            return None
        extra = ("" if item.acceptance is None else f" · acceptance {item.acceptance:.0%}") + (
            "" if item.ess is None else f" · ESS {item.ess:.0%} of the particles")
        picture, thumbs = chosen_view(item.preview, item.noisy, item.map, item.concepts,
                                      item.concept_maps, view.noisy, view.maps)
        mapped = view.maps and item.map is not None
        return {self.tab.preview: big_picture(picture, view.noisy, mapped, bool(item.concept_maps)),
                **thumb_updates(self.tab.concept_images, thumbs, live.labels),
                self.tab.progress: progress_html(item.index + 1, item.total, extra)
                + (map_key(bool(item.concept_maps)) if mapped else "")
                + chart([tracks_panel(view.tracked, view.esses, view.names)], 260, 44),  # live
                self.tab.frames: live}

    def done(self, live: Run, result, view: "View", runs: list | None, timing: tuple) -> dict:
        """The finished run: its final picture, files, verdicts and the honest time."""
        (sampling, verdicts, started, replayed), tab = timing, self.tab
        final, last = final_picture(result), result.frames[-1]
        final_map = last.map if result.conflict_map is None else result.conflict_map
        mapped = view.maps and final_map is not None
        self.service.kept.keep(live, kept_frame(last, final, result.conflict_map))
        live.end(done=True, chart=chart([tracks_panel([f.log_density for f in result.frames],
                                                      [f.ess for f in result.frames], view.names)],
                                        260, 44))
        saving = time.perf_counter()
        gif, png = save_outputs(result, [f.preview for f in result.frames])
        files, wall = time.perf_counter() - saving, time.perf_counter() - started
        accept = [f.acceptance for f in result.frames if f.acceptance is not None]
        evaluations, judging = result.plan.sampling, result.plan.judging
        judged = f", + {judging:,} for the lift verdicts" if judging else ""
        runs = (runs or []) + [run_entry(result, sampling + verdicts, evaluations)]
        notes = "".join(f"\n- {n}" for n in result.notes)
        return {tab.preview: big_picture(final_map if mapped else final, view.noisy, mapped,
                                         bool(last.concept_maps), final=True),
                tab.frames: live,
                tab.frame_slider: gr.update(visible=True, minimum=1, maximum=len(live.frames),
                                            value=len(live.frames)),
                tab.progress: progress_html(len(result.frames), len(result.frames),
                                            f" · done in {wall:.1f} s")
                + (map_key(bool(last.concept_maps)) if mapped else "") + live.chart,
                tab.metrics: judge_text(result, accept),
                tab.gif: gr.update(value=gif, visible=True),
                tab.png: gr.update(value=png, visible=True),
                self.runs_tab.runs: runs, self.runs_tab.table: runs_value(runs),
                self.bar.status: done_text(result, wall, sampling, verdicts, files, replayed)
                + f"  \n{evaluations:,} network evaluations{judged}.{notes}"}

    async def run_or_replay(self, recipe_text: str, show_noisy: bool, show_maps: bool, lift: bool,
                            runs: list | None = None):
        """`run`, replaying a stored run of the same example when there is one."""
        async for update in self.run(recipe_text, show_noisy, show_maps, lift, runs, True):
            yield update

    def scrub(self, index, frames, show_noisy, show_maps):
        tab = self.tab
        if frames and frames.released:
            return {tab.progress: "<div id='progress-text'>This run's frames were released to "
                                  "save the server's memory; run it again to scrub it.</div>"}
        items = frames.frames if frames else ()
        if not items:
            return {tab.progress: gr.skip()}      # (an empty dict is read as one value)
        i = int(min(max(index or 1, 1), len(items))) - 1
        item = items[i]
        caption = "final" if frames.done and i == len(items) - 1 else f"step {i + 1}"
        picture, pictures = chosen_view(item["preview"], item["noisy"], item["map"],
                                        item["concepts"], item["concept_maps"], show_noisy,
                                        show_maps)
        mapped, density = show_maps and item["map"] is not None, bool(item["concept_maps"])
        return {tab.preview: big_picture(unpacked(picture), show_noisy, mapped, density,
                                         final=caption == "final"),
                **thumb_updates(tab.concept_images, [unpacked(c) for c in pictures],
                                frames.labels),
                tab.progress: f"<div id='progress-text'>Frame {i + 1} / {len(items)} "
                              f"({caption})</div>" + (map_key(density) if mapped else "")
                              + frames.chart}    # the chart belongs to the run, not one frame

    def stopped(self, frames, request: gr.Request):
        """Stop as a state: where the run stopped, its frames left to scrub. The page's
        running streams end at their next network evaluation (their cancel flags)."""
        STOPPABLE.stop(getattr(request, "session_hash", None))
        bar, tab = self.bar, self.tab
        if not frames or frames.done:         # no run of this page's to stop: keep "Done: …"
            return {bar.status: gr.skip()}
        # The run's thread may finish one more step before it sees the cancel; the
        # frames end here, so the slider, its label and the scrubber agree.
        count, total = frames.stop(), frames.total
        if not count:
            return {bar.status: "Stopped before the first step.",
                    tab.frame_slider: gr.update(visible=False),
                    tab.progress: progress_html(0, 1, " · stopped")}
        return {bar.status: f"Stopped at step {count} / {total}. Move the Frame slider to look back.",
                tab.frame_slider: gr.update(visible=True, minimum=1, maximum=count, value=count),
                tab.progress: f"<div id='progress-text'>Stopped at step {count} / {total}</div>"}


@dataclass
class View:
    """How a run is shown, and the levels chart's tracks as they come."""
    noisy: bool
    maps: bool
    names: list
    tracked: list = field(default_factory=list)
    esses: list = field(default_factory=list)


def wire(page, service: Service):
    """Connect the tab; returns (the Generate event, `then_run`: chains a run after an
    event that may render at once)."""
    tab, bar, form, runs_tab = page.generate, page.bar, page.form, page.runs
    events = GenerateEvents(page, service)
    outputs = [tab.preview, *tab.concept_images, tab.progress, tab.frames, tab.frame_slider,
               tab.metrics, tab.gif, tab.png, runs_tab.runs, runs_tab.table, bar.status]

    def then_run(event, api_name=None):
        """Generate computes; what opens by itself (a page, a switch, an example)
        may replay a stored run of the same example."""
        fn, visibility = ((events.run, {"api_name": api_name}) if api_name
                          else (events.run_or_replay, {"api_visibility": PRIVATE}))
        return event.then(None, form.share_token, form.share_link, js=SHARE_JS).then(
            fn, [form.recipe_json, tab.show_xt, tab.show_map, tab.lift, runs_tab.runs], outputs,
            show_progress="minimal", **RUN_QUEUE, **visibility)

    bar.generate.click(None, js=REVEAL_JS)
    generated = then_run(form.on_page(
        bar.generate.click, recipe_handler(form, bar.status, service),
        [form.recipe_json, bar.status, form.share_token], concurrency_limit=None,
        api_visibility=PRIVATE), api_name="generate")
    for control in (tab.frame_slider, tab.show_xt, tab.show_map):
        # Unprocessed: a slider position from the last run may exceed the new run's
        # maximum for a moment, which Gradio would refuse with a traceback; scrub clamps.
        control.change(events.scrub, [tab.frame_slider, tab.frames, tab.show_xt, tab.show_map],
                       [tab.preview, *tab.concept_images, tab.progress], queue=False,
                       preprocess=False, api_visibility=PRIVATE)
    bar.stop.click(events.stopped, tab.frames, [bar.status, tab.frame_slider, tab.progress],
                   queue=False, api_visibility=PRIVATE)
    return generated, then_run
