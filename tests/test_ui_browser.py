"""The app in a real browser (Debian's Chromium through Playwright), on toy2d-energy.

Edits rows, generates, checks the streamed result and the files, follows the
share link in a new page and finds every row and setting again; saves
docs/screenshot.png of the app after a run of the default shapes composition.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from composer.recipe import Recipe

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOT = ROOT / "docs" / "screenshot.png"
PHONE_SCREENSHOT = ROOT / "docs" / "screenshot_phone.png"
DESKTOP = {"width": 1400, "height": 1000}
PHONE = {"width": 390, "height": 844}
TABLET = {"width": 820, "height": 1180}
TIMEOUT = 90_000  # ms; the CPU is shared with model training in CI-like runs


@pytest.fixture
def page(chromium):
    context = chromium.new_context(viewport=DESKTOP)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT)
    yield page
    context.close()


def choose(page, row: int, option: str) -> None:
    """Pick a toy2d concept in a row's dropdown."""
    box = page.locator(f"#concept-{row}-text input")
    box.click()
    options = box.get_attribute("aria-controls")
    page.locator(f"#{options} li[aria-label='{option}']").click()
    page.wait_for_function("([s, v]) => document.querySelector(s).value === v",
                           arg=[f"#concept-{row}-text input", option])


def set_number(page, selector: str, value) -> None:
    box = page.locator(selector)
    box.fill(str(value))
    box.press("Enter")


def type_unreadable(page, selector: str, text: str) -> None:
    """Type key by key what the browser keeps on screen but cannot read as a number ("1e").
    Under load the number box can re-render between keys and drop the text: type again."""
    box = page.locator(selector)
    for _ in range(5):
        box.fill("")
        box.press_sequentially(text, delay=100)
        page.wait_for_timeout(500)
        if box.evaluate("b => b.validity.badInput"):
            return
    raise AssertionError(f"{selector} would not hold {text!r}")


def row_values(page, row: int) -> tuple[str, str, bool, str]:
    return (page.locator(f"#concept-{row}-text input").input_value(),
            page.locator(f"#concept-{row}-weight input[type=number]").input_value(),
            page.locator(f"#concept-{row}-not input").is_checked(),
            page.locator(f"#concept-{row}-mute").inner_text())


def wait_text(page, selector: str, text: str) -> None:
    page.wait_for_function(
        "([s, t]) => { const e = document.querySelector(s); return e && e.innerText.includes(t); }",
        arg=[selector, text], timeout=TIMEOUT)


def wait_value(page, selector: str, value: str) -> None:
    page.wait_for_function("([s, v]) => { const e = document.querySelector(s); "
                           "return e && e.value === v; }", arg=[selector, value], timeout=TIMEOUT)


def test_rows_generate_share_and_restore(page, app_url):
    page.goto(app_url)
    page.wait_for_selector("#concept-2-text")
    assert page.locator("#concept-3-text").count() == 0

    # Two more rows, then edit: big_box w=2, right_bar muted, NOT small_box (beta 1.5).
    page.click("#add-row")
    page.wait_for_selector("#concept-3-text")
    page.click("#add-row")
    page.wait_for_selector("#concept-4-text")
    choose(page, 1, "big_box")
    choose(page, 3, "small_box")
    set_number(page, "#concept-1-weight input[type=number]", 2)
    page.locator("#concept-3-not input").check()
    wait_text(page, "#concept-3-weight", "β")
    set_number(page, "#concept-3-weight input[type=number]", 1.5)
    page.click("#concept-2-mute")
    wait_text(page, "#concept-2-mute", "Unmute")
    page.click("#concept-4-remove")
    page.wait_for_selector("#concept-4-text", state="detached")
    page.locator("#operator label", has_text="product").click()
    page.locator("#operator label", has_text="and").click()
    set_number(page, "#steps input", 10)
    set_number(page, "#num-samples input", 500)
    set_number(page, "#seed input", 5)
    page.wait_for_timeout(500)  # let the last edits reach the server

    page.click("#generate")
    wait_text(page, "#status", "Done: 10 steps")
    assert page.locator("#preview img").get_attribute("src")
    assert page.locator("#frame-slider").is_visible()
    # One picture per active row, labelled with the row.
    assert page.locator("#concept-image-1 img").get_attribute("src")
    assert "Row 3: NOT β=1.5 · small_box" in page.inner_text("#concept-image-2")
    assert not page.locator("#concept-image-3").is_visible()
    assert page.get_attribute("#gif-file td.filename", "aria-label") == \
        "toy2d-energy_hmc_seed5_frames.gif"                        # model, sampler and seed
    assert page.get_attribute("#png-file td.filename", "aria-label") == "toy2d-energy_hmc_seed5.png"
    page.get_by_role("tab", name="Runs").click()
    wait_text(page, "#runs", "toy2d-energy")
    # Every header on one line (none broken mid-word), and the metrics within reach.
    lines = page.eval_on_selector_all("#runs th", """hs => hs.map(h => {
        const walk = document.createTreeWalker(h, NodeFilter.SHOW_TEXT); let n, most = 0;
        while ((n = walk.nextNode())) if (n.textContent.trim()) {
            const r = document.createRange(); r.selectNodeContents(n);
            most = Math.max(most, new Set([...r.getClientRects()].map(c => Math.round(c.top))).size); }
        return [h.innerText.trim(), most]; })""")
    assert len(lines) >= 11 and all(n == 1 for _, n in lines), lines
    assert page.evaluate("""() => { const v = document.querySelector('#runs .virtual-table-viewport');
        return v.scrollWidth <= v.clientWidth || getComputedStyle(v).overflowX === 'auto'; }""")
    page.get_by_role("tab", name="Generate").click()

    # Scrub back to the first frame.
    scrub = page.locator("#frame-slider input[type=number]")
    scrub.press("Control+A")
    scrub.press_sequentially("1")
    scrub.press("Enter")
    wait_text(page, "#progress", "Frame 1 /")

    link = page.locator("#share-link textarea").input_value()
    assert "?recipe=" in link
    restored = page.context.new_page()
    restored.goto(link)
    restored.wait_for_selector("#concept-3-text")
    wait_text(restored, "#notice", "restored")
    wait_text(restored, "#status", "Done: 10 steps")      # a fast recipe renders at once
    assert restored.locator("#concept-4-text").count() == 0
    assert row_values(restored, 1) == ("big_box", "2", False, "Mute")
    assert row_values(restored, 2) == ("right_bar", "1", False, "Unmute")
    assert row_values(restored, 3) == ("small_box", "1.5", True, "Mute")
    assert "β" in restored.inner_text("#concept-3-weight")
    assert restored.locator("#operator input[value=and]").is_checked()
    assert restored.locator("#steps input").input_value() == "10"
    assert restored.locator("#num-samples input").input_value() == "500"
    assert restored.locator("#seed input").input_value() == "5"

    # Bad input on the restored page: NOT alone is explained, and the app keeps working.
    restored.locator("#concept-1-not input").check()
    restored.wait_for_timeout(500)
    restored.click("#generate")
    wait_text(restored, "#status", "NOT needs at least one positive")
    restored.locator("#sd-model input, #sd-model textarea").first.fill("/no/such/checkpoint")
    restored.click("#load-model")
    wait_text(restored, "#model-status", "Could not load model '/no/such/checkpoint'")
    assert restored.locator("#model input").input_value() == "toy2d-energy · 2D lab, learned energy network"


def test_examples_png_import_and_model_switch(page, app_url, tmp_path):
    from composer.media import save_png
    from composer.recipe import Concept, Recipe, SamplerSpec

    page.goto(app_url.rstrip("/") + "/?recipe=not-a-recipe")  # a broken link: explained
    page.wait_for_selector("#concept-1-text")
    wait_text(page, "#notice", "This link's recipe could not be read")

    page.locator("#examples").get_by_text("negation (toy2d-energy)", exact=True).click()
    wait_value(page, "#concept-2-text input", "small_box")
    wait_text(page, "#status", "Done: ")
    example = Recipe.from_json((ROOT / "assets" / "recipes" / "negation.json").read_text())
    for n, concept in enumerate(example.concepts, 1):
        value = concept.beta if concept.negate else concept.weight
        assert row_values(page, n)[0] == concept.text
        assert float(row_values(page, n)[1]) == value
        assert row_values(page, n)[2] == concept.negate
    assert page.locator(f"#operator input[value={example.operator}]").is_checked()

    recipe = Recipe(model="toy2d-energy",
                    concepts=(Concept("ring"), Concept("bar", weight=2.5),
                              Concept("left_bar", muted=True)),
                    sampler=SamplerSpec("mala", step_size=0.3), steps=7, seed=11, num_samples=123)
    png = save_png(np.zeros((8, 8, 3), np.uint8), recipe, tmp_path / "shared.png")
    page.get_by_text("Recipe JSON and PNG import").click()
    page.set_input_files("#png-import input[type=file]", str(png))
    wait_text(page, "#notice", "imported from the PNG")
    # The status line, always in view, says what happened and what to do next (it
    # used to keep "Done: … replayed" from the page's first run).
    wait_text(page, "#status", "Recipe imported from the PNG. Press Generate to render it.")
    wait_value(page, "#concept-3-text input", "left_bar")
    assert row_values(page, 1) == ("ring", "1", False, "Mute")
    assert row_values(page, 2) == ("bar", "2.5", False, "Mute")
    assert row_values(page, 3) == ("left_bar", "1", False, "Unmute")
    assert page.locator("#steps input").input_value() == "7"
    assert page.locator("#num-samples input").input_value() == "123"
    page.get_by_text("Sampler knobs").click()
    assert page.locator("#knob-step_size input").input_value() == "0.3"
    assert page.locator("#knob-leapfrog_steps input").input_value() == ""

    # A bad pasted recipe is explained on the status line; the page stays as it was.
    page.locator("#recipe-json .cm-content").click()
    page.keyboard.press("Control+A")
    page.keyboard.insert_text('{"model": "toy2d-energy", "concepts": [{"text": "ring", "weight": 99}]}')
    page.click("#apply-json")
    wait_text(page, "#notice", "Row 1 AND weight: must be in [0, 10], got 99")
    assert row_values(page, 2)[:2] == ("bar", "2.5")

    # A score-only model offers no mixture.
    box = page.locator("#model input")
    box.click()
    page.locator(f"#{box.get_attribute('aria-controls')} li[aria-label='toy2d-score · 2D lab, learned score network']").click()
    wait_text(page, "#model-status", "toy2d-score loaded")
    assert page.locator("#operator input[value=mixture]").count() == 0


def test_default_shapes_composition_renders_for_the_readme(page, app_url):
    """Switching to the default model renders its example recipe at once, as a
    visitor would see it; the page afterwards is README's screenshot, at desktop
    and at phone size."""
    page.goto(app_url)
    page.wait_for_selector("#concept-1-text")
    wait_text(page, "#status", "Done: ")
    box = page.locator("#model input")
    box.click()
    page.locator(f"#{box.get_attribute('aria-controls')} li[aria-label='shapes · learned network']").click()
    default = next(Recipe.from_json(p.read_text()) for p in sorted((ROOT / "assets/recipes").glob("*.json"))
                   if Recipe.from_json(p.read_text()).model == "shapes")
    wait_value(page, f"#concept-{len(default.concepts)}-text textarea, "
                     f"#concept-{len(default.concepts)}-text input", default.concepts[-1].text)
    wait_text(page, "#status", f"Done: {default.steps or ''}")
    wait_text(page, "#metrics", "Judge:")
    assert page.locator("#sampler input").input_value() == "U-HMC"     # the example's sampler
    assert page.locator("#seed input").input_value() == str(default.seed)
    assert page.locator("#preview img").get_attribute("src")
    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(SCREENSHOT), full_page=False)
    page.set_viewport_size(PHONE)
    page.evaluate("window.scrollTo(0, 0)")
    page.click("#generate")
    wait_streaming(page)
    page.screenshot(path=str(PHONE_SCREENSHOT), full_page=False)
    assert in_view(page, "#generate") and in_view(page, "#preview img")


# --- the first minute of a visitor, and an honest form ----------------------------------

def in_view(page, selector: str) -> bool:
    """The element's box lies inside the window (and above the fixed action bar)."""
    return page.evaluate("""(s) => {
        const e = document.querySelector(s); if (!e) return false;
        const r = e.getBoundingClientRect(), bar = document.getElementById('action-bar');
        const inBar = bar && bar.contains(e);
        const bottom = window.innerHeight - (inBar ? 0 : bar.offsetHeight);
        return r.height > 0 && r.top >= 0 && r.bottom <= bottom + 1; }""", selector)


def wait_streaming(page, step: int = 2) -> None:
    """Until the new run has streamed `step` steps (not the last run's final counter)."""
    page.wait_for_function(
        """(n) => { const t = document.querySelector('#progress').innerText;
                    const m = t.match(/Step (\\d+) \\//); return m && +m[1] >= n && !t.includes('done'); }""",
        arg=step, timeout=TIMEOUT)


def error_badges(page) -> int:
    """Gradio's red error toasts and per-component 'Error' badges on the page."""
    return page.evaluate("""() => [...document.querySelectorAll('.toast-body.error, .error')]
        .filter(e => e.offsetParent !== null && /\bError\b/.test(e.innerText)).length""")


@pytest.mark.parametrize("viewport", [DESKTOP, TABLET, PHONE], ids=["desktop", "tablet", "phone"])
def test_a_visitor_lands_on_a_result_and_sees_the_run(chromium, app_url, viewport):
    context = chromium.new_context(viewport=viewport)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT)
    page.goto(app_url)
    wait_text(page, "#status", "Done: ")                     # rendered on arrival
    assert page.locator("#preview img").get_attribute("src")
    assert in_view(page, "#preview img")                      # and on screen, phones too
    assert page.locator("#frame-slider").is_visible()
    assert "_seed" in page.inner_text("#png-file")            # a real file, not an empty box
    page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
    set_number(page, "#steps input", 100)                     # long enough to watch it stream
    set_number(page, "#num-samples input", 3000)
    page.wait_for_timeout(300)
    assert in_view(page, "#generate") and in_view(page, "#stop")
    page.click("#generate")
    wait_streaming(page)
    # The cost is said before the run ends: steps x calls per step x rows x samples.
    assert "4,200,000 network evaluations; this model allows 10,000,000" in page.inner_text("#status")
    assert in_view(page, "#generate") and in_view(page, "#stop")
    assert in_view(page, "#preview img") and in_view(page, "#progress")
    page.click("#stop")
    wait_text(page, "#status", "Stopped at step")
    context.close()


def test_stop_after_a_completed_run_leaves_no_stale_or_broken_controls(page, app_url):
    page.goto(app_url)
    wait_text(page, "#status", "Done: ")
    assert page.locator("#gif-file").is_visible()
    set_number(page, "#steps input", 100)
    set_number(page, "#num-samples input", 3000)
    page.wait_for_timeout(300)
    page.click("#generate")
    wait_streaming(page, 3)
    page.click("#stop")
    wait_text(page, "#status", "Stopped at step")
    assert not page.locator("#gif-file").is_visible() and not page.locator("#png-file").is_visible()
    stopped_at = int(page.inner_text("#status").split("Stopped at step ")[1].split(" /")[0])
    scrub = page.locator("#frame-slider input[type=number]")
    assert scrub.is_visible() and scrub.get_attribute("max") == str(stopped_at)
    scrub.press("Control+A")
    scrub.press_sequentially("1")
    scrub.press("Enter")
    # The label counts the frames the slider reaches (a step finished after Stop used
    # to make it "Frame 6 / 7" on a slider whose maximum was 6).
    wait_text(page, "#progress", f"Frame 1 / {stopped_at} ")
    page.locator("#show-xt input").check()
    page.wait_for_timeout(1000)
    assert error_badges(page) == 0
    assert page.locator("#preview img").get_attribute("src")
    page.click("#stop")                             # nothing runs: the status stays
    page.wait_for_timeout(1000)
    assert page.inner_text("#status").startswith("Stopped at step")


def test_the_form_runs_what_it_shows_or_says_why_not(page, app_url):
    page.goto(app_url)
    wait_text(page, "#status", "Done: ")

    def refused(selector, typed, message):
        set_number(page, selector, typed)  # clicked at once: Generate reads what is shown
        page.click("#generate")
        wait_text(page, "#status", message)

    refused("#seed input", "", "Seed: is empty")
    refused("#seed input", "3.7", "Seed: must be an integer, got 3.7")
    set_number(page, "#seed input", 3)
    refused("#num-samples input", "", "Samples: is empty")
    set_number(page, "#num-samples input", 50)
    refused("#steps input", "1e999", "Steps: not a number")
    refused("#steps input", "2.5", "Steps: must be an integer, got 2.5")
    type_unreadable(page, "#steps input", "1e")
    page.click("#generate")
    wait_text(page, "#status", "Steps: not a number")
    set_number(page, "#steps input", "")
    refused("#concept-1-weight input[type=number]", -2, "Row 1 AND weight: must be in [0, 10], got -2")
    assert page.locator("#concept-1-weight input[type=number]").input_value() == "-2"  # not clamped
    refused("#concept-1-weight input[type=number]", 50, "Row 1 AND weight: must be in [0, 10], got 50")
    set_number(page, "#concept-1-weight input[type=number]", 2)
    page.click("#generate")
    wait_text(page, "#status", "Done: ")
    page.get_by_role("tab", name="Runs").click()
    wait_text(page, "#runs", "50")                     # the samples it was told to draw
    assert error_badges(page) == 0


def test_links_that_cannot_be_honoured_say_so(page, app_url):
    from composer.recipe import Concept, SamplerSpec
    from ui.state import share_url

    page.goto(app_url.rstrip("/") + "/?recipe=")
    wait_text(page, "#notice", "This link has an empty recipe")
    mixture = Recipe(model="toy2d-score", concepts=(Concept("left_bar"), Concept("right_bar")),
                     operator="mixture", sampler=SamplerSpec("ddpm"), num_samples=100)
    page.goto(share_url(app_url, mixture))
    wait_text(page, "#notice", "operator 'mixture' was changed to 'and'")
    assert page.locator("#operator input[value=and]").is_checked()
    page.goto(app_url.rstrip("/") + "/?recipe=eyJtb2RlbCI6")    # cut short while copying
    wait_text(page, "#notice", "This link's recipe could not be read")


def test_compare_and_rows_are_capped_in_the_controls(page, app_url):
    page.goto(app_url)
    wait_text(page, "#status", "Done: ")
    for _ in range(6):
        if page.locator("#add-row").is_enabled():
            page.click("#add-row")
            page.wait_for_timeout(400)
    page.wait_for_selector("#concept-8-text")
    assert not page.locator("#add-row").is_enabled()
    wait_text(page, "#add-row", "At most 8 concepts")          # greyed, and saying why
    page.get_by_role("tab", name="Compare samplers").click()
    for label in ("DDPM", "ULA (annealed Langevin)", "HMC (Metropolis)"):
        page.locator("#compare-samplers label", has_text=label).click()
        page.wait_for_timeout(300)
    assert page.locator("#compare-samplers input:checked").count() == 4
    page.locator("#compare-samplers label", has_text="U-HMC").click()
    page.wait_for_timeout(500)
    assert page.locator("#compare-samplers input:checked").count() == 4
    wait_text(page, "#compare-status", "up to 4 samplers")    # the reason, on the page
    page.click("#compare")
    wait_text(page, "#status", "Compared")
    status = page.inner_text("#compare-status")
    assert status.count("network evaluations") == 4 and "s compute" in status
    wait_text(page, "#compare-files", "_seed")


def test_keyboard_and_screen_reader_names(page, app_url):
    page.goto(app_url)
    wait_text(page, "#status", "Done: ")
    assert page.get_attribute("#concept-1-up", "aria-label") == "Row 1: Up"
    assert page.get_attribute("#concept-2-remove", "aria-label") == "Row 2: Remove"
    assert "Row 2" in page.inner_text("#concept-2-weight")
    assert page.get_attribute("#status", "aria-live") == "polite"
    assert page.get_attribute("#share-link textarea", "aria-label") == "Link to this recipe"
    assert page.get_attribute("#preview img", "alt")
    page.locator("body").click(position={"x": 5, "y": 5})
    for presses in range(1, 15):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement && document.activeElement.id") == "generate":
            break
    assert presses <= 5, "Generate should be among the first stops of the Tab key"
    # Enter in a prompt box runs Generate (free-text models).
    box = page.locator("#model input")
    box.click()
    page.locator(f"#{box.get_attribute('aria-controls')} li[aria-label='shapes · learned network']").click()
    wait_text(page, "#metrics", "Judge:")
    prompt = page.locator("#concept-1-text textarea, #concept-1-text input").first
    prompt.fill("red square")
    prompt.press("Enter")
    wait_text(page, "#concept-image-1", "red square")


def test_maps_stream_and_scrub_for_2d_and_image_models(page, app_url):
    """The density map on toy2d, the conflict map on shapes: streamed, scrubbable, and
    the pictures of docs/maps.md."""
    page.goto(app_url)
    wait_text(page, "#status", "Done: ")
    before = page.locator("#preview img").get_attribute("src")
    page.locator("#show-map input").check()
    page.click("#generate")
    wait_streaming(page)
    wait_text(page, "#status", "Done: ")
    assert page.locator("#preview img").get_attribute("src") != before
    page.evaluate("window.scrollTo(0, 0)")
    page.locator("#result-column").screenshot(path=str(ROOT / "docs" / "maps_density.png"))
    slider = page.locator("#frame-slider input[type=number]")
    slider.fill("1")
    slider.press("Enter")
    wait_text(page, "#progress", "Frame 1 /")
    box = page.locator("#model input")
    box.click()
    page.locator(f"#{box.get_attribute('aria-controls')} li[aria-label='shapes · learned network']").click()
    wait_text(page, "#notice", "Switched to shapes")
    wait_text(page, "#metrics", "Judge:")                # its example ran, maps on
    page.evaluate("window.scrollTo(0, 0)")
    page.locator("#result-column").screenshot(path=str(ROOT / "docs" / "maps_conflict.png"))
    assert error_badges(page) == 0


def test_a_sweep_streams_its_grid_and_offers_it_to_download(page, app_url):
    page.goto(app_url)
    wait_text(page, "#status", "Done: ")
    page.get_by_role("tab", name="Sweep").click()
    page.locator("#sweep-values-1 textarea, #sweep-values-1 input").first.fill("0.5, 1, 2")
    page.click("#sweep")
    wait_text(page, "#sweep-status", "Sweep of 3 cells")
    wait_text(page, "#sweep-status", "done.")
    assert page.locator("#sweep-grid img").get_attribute("src")
    assert page.locator("#sweep-files").inner_text().count(".png") == 1
    page.locator("#result-column").screenshot(path=str(ROOT / "docs" / "sweep.png"))
    assert error_badges(page) == 0
