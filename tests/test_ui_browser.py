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
TIMEOUT = 90_000  # ms; the CPU is shared with model training in CI-like runs


@pytest.fixture
def page(chromium):
    context = chromium.new_context(viewport={"width": 1400, "height": 1000})
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
    wait_text(page, "#progress", "done")
    assert "Done: 10 steps" in page.inner_text("#status")
    assert page.locator("#preview img").get_attribute("src")
    assert page.locator("#frame-slider").is_visible()
    # One picture per active row, labelled with the row.
    assert page.locator("#concept-image-1 img").get_attribute("src")
    assert "Row 3: NOT β=1.5 · small_box" in page.inner_text("#concept-image-2")
    assert not page.locator("#concept-image-3").is_visible()
    wait_text(page, "#gif-file", "denoising")
    wait_text(page, "#png-file", "composition")
    page.get_by_role("tab", name="Runs").click()
    wait_text(page, "#runs", "toy2d-energy")
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
    wait_text(restored, "#status", "restored")
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
    assert restored.locator("#model input").input_value() == "toy2d-energy"


def test_examples_png_import_and_model_switch(page, app_url, tmp_path):
    from composer.media import save_png
    from composer.recipe import Concept, Recipe, SamplerSpec

    page.goto(app_url.rstrip("/") + "/?recipe=not-a-recipe")  # a broken link: explained
    page.wait_for_selector("#concept-1-text")
    wait_text(page, "#status", "Could not restore the shared recipe")

    page.locator("#examples").get_by_text("negation", exact=True).click()
    wait_text(page, "#status", "Example loaded: negation")
    wait_value(page, "#concept-2-text input", "small_box")
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
    wait_text(page, "#status", "imported from the PNG")
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
    wait_text(page, "#status", "concepts[0].weight: must be in [0, 10], got 99")
    assert row_values(page, 2)[:2] == ("bar", "2.5")

    # A score-only model offers no mixture.
    box = page.locator("#model input")
    box.click()
    page.locator(f"#{box.get_attribute('aria-controls')} li[aria-label='toy2d-score']").click()
    wait_text(page, "#model-status", "toy2d-score loaded")
    assert page.locator("#operator input[value=mixture]").count() == 0


def test_default_shapes_composition_renders_for_the_readme(page, app_url):
    """The default model and its default recipe, generated as a visitor would;
    the page afterwards is README's screenshot."""
    page.goto(app_url)
    page.wait_for_selector("#concept-1-text")
    box = page.locator("#model input")
    box.click()
    page.locator(f"#{box.get_attribute('aria-controls')} li[aria-label='shapes']").click()
    wait_text(page, "#model-status", "shapes loaded")
    default = next(Recipe.from_json(p.read_text()) for p in sorted((ROOT / "assets/recipes").glob("*.json"))
                   if Recipe.from_json(p.read_text()).model == "shapes")
    wait_value(page, f"#concept-{len(default.concepts)}-text textarea, "
                     f"#concept-{len(default.concepts)}-text input", default.concepts[-1].text)
    page.click("#generate")
    wait_text(page, "#progress", "done")
    assert page.locator("#preview img").get_attribute("src")
    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)
