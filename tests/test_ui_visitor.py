"""The first minute of a visitor in Chromium, and an honest form: landing on a
result, Stop, the form running what it shows, caps said in the controls, keyboard
and screen-reader names, maps and sweeps."""
from __future__ import annotations

import pytest

from composer.recipe import Recipe
from ui.state import recipe_from_token
from tests.browser import (
    DESKTOP,
    PHONE,
    ROOT,
    TABLET,
    TIMEOUT,
    choose_model,
    pick,
    error_badges,
    in_view,
    set_number,
    type_unreadable,
    wait_streaming,
    wait_shown,
    wait_text,
    watch,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]


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
    # Every tab in view (on a phone Gradio hid Sweep and Runs behind a "..." menu).
    tabs = page.get_by_role("tab")
    assert [tabs.nth(i).inner_text() for i in range(tabs.count())] == ["Generate", "Compare", "Sweep", "Runs"]
    assert all(in_view(page, f"[role=tab]:nth-child({i + 1})") for i in range(4))
    page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
    set_number(page, "#steps input", 100)                     # long enough to watch it stream
    set_number(page, "#num-samples input", 3000)
    page.wait_for_timeout(300)
    assert in_view(page, "#generate") and in_view(page, "#stop")
    page.click("#generate")
    wait_streaming(page)
    # The cost is said before the run ends: steps x calls per step x rows x samples
    # (100 x (1 + 6 HMC trajectories x 2 leapfrog steps) x 2 x 3000).
    assert "7,800,000 network evaluations; this model allows 10,000,000" in page.inner_text("#status")
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
    watch(page)
    page.click("#generate")
    wait_shown(page, "Running…", then="Done: ")
    page.get_by_role("tab", name="Runs").click()
    wait_text(page, "#runs", "50")                     # the samples it was told to draw
    assert error_badges(page) == 0


def test_what_is_pasted_typed_or_deleted_in_the_rows_survives_every_redraw(chromium, app_url):
    """Paste, delete and type at 20 ms a key, each followed at once by a redraw (Add,
    Mute, NOT): every row keeps its text, and the next run is made of it (a pasted
    prompt came back as the old one after Add, and a fast last key was lost)."""
    context = chromium.new_context(viewport=DESKTOP, permissions=["clipboard-read", "clipboard-write"])
    page = context.new_page()
    page.set_default_timeout(TIMEOUT)
    page.goto(app_url)
    wait_text(page, "#status", "Done: ")
    watch(page)
    choose_model(page, "shapes-exact · exact score, not learned")   # free-text rows
    wait_shown(page, "Switched to shapes-exact", then="Done: ")

    def box(n):
        return page.locator(f"#concept-{n}-text textarea, #concept-{n}-text input").first

    page.evaluate("navigator.clipboard.writeText('green circle')")
    box(1).click()
    page.keyboard.press("Control+A")
    page.keyboard.press("Control+V")
    page.click("#add-row")                                   # redraw right after the paste
    page.wait_for_selector("#concept-4-text")
    box(2).click()
    page.keyboard.press("Control+A")
    page.keyboard.press("Backspace")
    page.click("#concept-3-mute")                            # redraw after a deletion
    wait_text(page, "#concept-3-mute", "Unmute")
    box(2).press_sequentially("magenta triangle", delay=20)
    page.locator("#concept-2-not input").check()             # redraw after fast typing
    wait_text(page, "#concept-2-weight", "β")
    box(4).press_sequentially("cyan square", delay=20)
    page.click("#concept-3-mute")
    wait_text(page, "#concept-3-mute", "Mute")
    texts = ["green circle", "magenta triangle", "yellow triangle", "cyan square"]
    assert [box(n).input_value() for n in range(1, 5)] == texts

    watch(page)
    page.click("#generate")
    wait_shown(page, "Running…", then="Done: ")
    assert "Row 1: AND w=1 · green circle" in page.inner_text("#concept-image-1")  # what ran
    page.click("#share")
    page.wait_for_function("document.querySelector('#share-link textarea').value.includes('recipe=')")
    link = page.locator("#share-link textarea").input_value()
    ran = recipe_from_token(link.split("recipe=")[1])
    assert [c.text for c in ran.concepts] == texts
    assert [c.negate for c in ran.concepts] == [False, True, False, False]
    assert [box(n).input_value() for n in range(1, 5)] == texts

    # Best of 3 on 8 samples is more than the model draws at once: the line says what to
    # lower (it said only "8 samples x best of 3 candidates is 24").
    pick(page, "best-of", "best of 3")
    page.click("#generate")
    wait_text(page, "#status", "lower the samples to 5 or fewer, or the best of to 2")
    context.close()


def test_links_that_cannot_be_honoured_say_so(page, app_url):
    from composer.recipe import Concept, SamplerSpec
    from tests.browser import share_url

    page.goto(app_url.rstrip("/") + "/?recipe=")
    wait_text(page, "#notice", "This link has an empty recipe")
    mixture = Recipe(model="toy2d-score", concepts=(Concept("left_bar"), Concept("right_bar")),
                     operator="mixture", sampler=SamplerSpec("ddpm"), num_samples=100)
    page.goto(share_url(app_url, mixture))
    wait_text(page, "#notice", "operator 'mixture' was changed to 'superdiff_or'")
    assert page.locator("#operator input[value=superdiff_or]").is_checked()
    page.goto(app_url.rstrip("/") + "/?recipe=eyJtb2RlbCI6")    # cut short while copying
    wait_text(page, "#notice", "This link's recipe could not be read")


def test_compare_and_rows_are_capped_in_the_controls(page, app_url):
    page.goto(app_url)
    wait_text(page, "#status", "Done: ")
    set_number(page, "#num-samples input", 200)        # the caps are the point, not the run
    for rows in range(3, 9):
        page.click("#add-row")
        page.wait_for_selector(f"#concept-{rows}-text")
    wait_text(page, "#add-row", "At most 8 concepts")          # greyed, and saying why
    assert not page.locator("#add-row").is_enabled()
    page.get_by_role("tab", name="Compare").click()
    checked = "#compare-samplers input:checked"
    for count, label in enumerate(("DDPM", "ULA (annealed Langevin)"), 3):   # beside DDIM, MALA
        page.locator("#compare-samplers label", has_text=label).click()
        page.wait_for_function("([s, n]) => document.querySelectorAll(s).length === n",
                               arg=[checked, count])
    page.locator("#compare-samplers label", has_text="HMC (Metropolis)").click()
    wait_text(page, "#compare-status", "up to 4 samplers")    # the reason, on the page
    assert page.locator(checked).count() == 4
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
    assert "Density p_t of the composition" in page.inner_text("#preview")   # not "Predicted x₀"
    assert page.locator("#progress .map-key").count() == 1
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
    # The final frame shows the run's conflict, labelled and keyed (it was a clear map
    # under "Predicted x₀": the last level's predictions agree).
    wait_text(page, "#preview", "Conflict map, averaged over the run's levels")
    assert "the AND rows agree" in page.inner_text("#progress .map-key")
    page.evaluate("window.scrollTo(0, 0)")
    page.locator("#result-column").screenshot(path=str(ROOT / "docs" / "maps_conflict.png"))
    assert error_badges(page) == 0


def test_a_sweep_streams_its_grid_and_offers_it_to_download(page, app_url):
    page.goto(app_url)
    wait_text(page, "#status", "Done: ")
    page.get_by_role("tab", name="Sweep").click()
    # Its size and cost as soon as the tab opens (nothing was shown before Run sweep).
    wait_text(page, "#sweep-status", "Sweep of 4 cells (4 × 1), ")
    values = page.locator("#sweep-values-1 textarea, #sweep-values-1 input").first
    values.fill("0:2:30")          # said in the page's words ("axes[0].range.num: …"), no pill
    wait_text(page, "#sweep-status", "Sweep axis 1: the number of values must be an integer")
    assert error_badges(page) == 0
    # The menu offers this recipe's rows only, each by its kind (it listed rows 1-8, and
    # "NOT β" for AND rows).
    menu = page.locator("#sweep-field-1 input")
    menu.click()
    offered = [o.split("\n")[-1] for o in    # the chosen one comes with a ✓
               page.locator(f"#{menu.get_attribute('aria-controls')} li").all_inner_texts()]
    rows = [o for o in offered if o.startswith("Row")]
    assert rows == ["Row 1 AND weight", "Row 2 AND weight"], offered
    page.keyboard.press("Escape")
    values.fill("0.5, 1, 2")
    wait_text(page, "#sweep-status", "Sweep of 3 cells (3 × 1), ")
    page.click("#sweep")
    wait_text(page, "#sweep-status", "Sweep of 3 cells")
    wait_text(page, "#sweep-status", "done.")
    assert page.locator("#sweep-grid img").get_attribute("src")
    assert page.locator("#sweep-files").inner_text().count(".png") == 1
    page.locator("#result-column").screenshot(path=str(ROOT / "docs" / "sweep.png"))
    assert error_badges(page) == 0
    # Each cell is a run in the Runs tab, after the landing run (the table sent once per
    # stream: sent per cell, Gradio applied the second as an empty table).
    page.get_by_role("tab", name="Runs").click()
    wait_text(page, "#runs", "toy2d-energy")
    assert page.inner_text("#runs").count("toy2d-energy") == 4


def test_the_runs_table_shows_six_runs_and_keeps_the_result_in_view_on_a_phone(chromium, app_url):
    """It scrolled inside itself from the fourth row, its cells were monospace, and on a
    phone the result column was off-screen."""
    context = chromium.new_context(viewport=DESKTOP)
    context.set_default_timeout(TIMEOUT)
    page = context.new_page()
    page.goto(app_url)
    wait_text(page, "#status", "Done: ")
    set_number(page, "#steps input", 3)
    for seed in range(1, 6):
        set_number(page, "#seed input", seed)
        watch(page)                                # this run's lines only
        page.click("#generate")
        wait_shown(page, "Running…", then="Done: 3 steps")
    page.get_by_role("tab", name="Runs").click()
    wait_text(page, "#runs", "seed 5")
    shown = page.evaluate("""() => {
        const view = document.querySelector('#runs .virtual-table-viewport').getBoundingClientRect();
        return [...document.querySelectorAll('#runs .virtual-row')].filter(r => {
            const b = r.getBoundingClientRect();
            return b.height > 0 && b.top >= view.top - 1 && b.bottom <= view.bottom + 1; }).length; }""")
    assert shown >= 6, shown
    # In the page's font: Gradio's monospace made "mixture" and the result wrap.
    font = page.evaluate("getComputedStyle(document.querySelector('#runs .virtual-row span')).fontFamily")
    assert "Mono" not in font, font
    page.set_viewport_size(PHONE)
    page.locator("#runs").scroll_into_view_if_needed()
    page.evaluate("document.querySelector('#runs .virtual-table-viewport').scrollLeft = 10000")
    cell = page.locator("#runs .virtual-row").first.locator("[role=gridcell]").nth(1)   # result
    box = cell.bounding_box()
    assert box and 0 <= box["x"] and box["x"] + min(box["width"], 100) <= PHONE["width"], box
    context.close()
