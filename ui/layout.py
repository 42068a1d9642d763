"""The page shell: the action bar, the form on the left, the result tabs on the right,
the API endpoint. Each part lays itself out (`build`) and connects itself (`wire`) in
its own module; this one only places them and makes a run exclusive per page."""
from __future__ import annotations

import gradio as gr

from composer.facade import Composer
from composer.media import MAX_PNG_BYTES
from ui import api, form, form_events, tab_compare, tab_generate, tab_runs, tab_sweep
from ui.page import CSS, HEAD, PAGE_JS, PRIVATE, QUEUE_SIZE, Page, build_bar
from ui.files import final_picture
from ui.service import Service


def launch_kwargs() -> dict:
    """Appearance arguments that Gradio 6 takes in launch(), and the upload cap."""
    return {"css": CSS, "js": PAGE_JS, "head": HEAD, "theme": gr.themes.Soft(),
            "max_file_size": MAX_PNG_BYTES}


def build_demo(composer: Composer | None = None, default_model: str | None = None,
               landing: bool = True) -> gr.Blocks:
    """The app. `default_model` overrides the preferred first model ('shapes-exact', else
    'toy2d-energy'; tests use it to start on the fast 2D model). With `landing`, the
    default example runs once now: the page opens on its picture."""
    service = Service(composer)
    if default_model:
        service.preferred_model = default_model
    first = service.landing() if landing else None

    # Gradio's cache (a run streams hundreds of frame files): swept every 10 min of the
    # files older than 30 min. A session's frames go an hour after its last run.
    with gr.Blocks(title="Composable diffusion explorer", delete_cache=(600, 1800)) as demo:
        gr.Markdown("# Composable diffusion explorer\n"
                    "Compose concepts by **AND**, **NOT**, **OR** or **product**, pick a "
                    "sampler (reverse diffusion, MCMC or SMC), and watch the sample form step "
                    "by step.")
        bar = build_bar()
        kept_runs = tab_runs.keeper()
        with gr.Row():
            with gr.Column(scale=5):
                the_form = form.build(service, bar.best_of)
            with gr.Column(scale=6, elem_id="result-column"), gr.Tabs() as tabs:
                with gr.Tab("Generate", id="tab-generate"):
                    generate = tab_generate.build(None if first is None else final_picture(first))
                with gr.Tab("Compare", id="tab-compare"):
                    compare = tab_compare.build(service)
                with gr.Tab("Sweep", id="tab-sweep") as sweep_tab:
                    sweep = tab_sweep.build(sweep_tab)
                with gr.Tab("Runs", id="tab-runs"):
                    runs = tab_runs.build(kept_runs)
        page = Page(demo=demo, bar=bar, form=the_form, generate=generate, compare=compare,
                    sweep=sweep, runs=runs, tabs=tabs)

        generated, then_run = tab_generate.wire(page, service)
        opened = form_events.wire(page, service, then_run)
        compared = tab_compare.wire(page, service)
        swept = tab_sweep.wire(page, service)
        tab_runs.wire(page)
        # A page runs one thing at a time: what starts a run cancels the page's others
        # (runs compute at once server-wide, so an older one could finish last).
        f = the_form
        for trigger, keep in ((bar.generate.click, generated), (compare.button.click, compared),
                              (sweep.button.click, swept), (f.model.input, None),
                              (f.sd_box.submit, None), (f.load.click, None),
                              (f.examples.click, None), (runs.table.select, None)):
            others = [e for e in (generated, compared, swept) if e is not keep]
            trigger(None, cancels=others + (opened if keep else []), queue=False,
                    api_visibility=PRIVATE)
        api.wire(service)
    return demo.queue(max_size=QUEUE_SIZE)
