"""What the browser tests share: the page at desktop size, viewports, and waiting
for what a visitor would see (tests/test_ui_browser.py, tests/test_ui_visitor.py)."""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOT = ROOT / "docs" / "screenshot.png"
PHONE_SCREENSHOT = ROOT / "docs" / "screenshot_phone.png"
DESKTOP = {"width": 1400, "height": 1000}
PHONE = {"width": 390, "height": 844}
TABLET = {"width": 820, "height": 1180}
TIMEOUT = 150_000  # ms: a browser wait under a loaded CPU (a run beside a CPU-bound process)


def choose(page, row: int, option: str) -> None:
    """Pick a toy2d concept in a row's dropdown."""
    box = page.locator(f"#concept-{row}-text input")
    box.click()
    options = box.get_attribute("aria-controls")
    page.locator(f"#{options} li[aria-label='{option}']").click()
    page.wait_for_function("([s, v]) => document.querySelector(s).value === v",
                           arg=[f"#concept-{row}-text input", option])


def share_url(base: str, recipe) -> str:
    """The link the page's Share button makes (ui/page.py SHARE_JS) for `recipe`."""
    from ui.state import share_token
    return f"{base.split('?')[0]}?recipe={share_token(recipe)}"


def pick(page, menu: str, label: str) -> None:
    """Pick an option by its label in the dropdown whose elem_id is `menu`."""
    box = page.locator(f"#{menu} input")
    box.click()
    page.locator(f"#{box.get_attribute('aria-controls')} li[aria-label='{label}']").click()


def menu_options(page, menu: str) -> list[str]:
    """The labels a dropdown offers (elem_id `menu`), read with it open, then closed."""
    box = page.locator(f"#{menu} input")
    box.click()
    listbox = page.locator(f"#{box.get_attribute('aria-controls')}")
    listbox.locator("li").first.wait_for()
    labels = listbox.locator("li").evaluate_all("items => items.map(i => i.getAttribute('aria-label'))")
    box.press("Escape")
    box.blur()                    # the menu opens on focus: the next click must open it again
    return labels


def choose_model(page, label: str) -> None:
    """Pick a model in the Model menu by its label."""
    pick(page, "model", label)


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


def watch(page, selector: str = "#status") -> None:
    """Record every text the element shows from now on (a line can change faster than
    a poll sees it); `wait_shown` waits on the record."""
    page.evaluate("""(s) => { const e = document.querySelector(s); window.shown = [];
        new MutationObserver(() => window.shown.push(e.innerText))
            .observe(e, {subtree: true, childList: true, characterData: true}); }""", selector)


def wait_shown(page, text: str, then: str | None = None) -> None:
    """Until the watched element has shown `text` (and, with `then`, `then` after it).
    Wait for what comes before a "Done": the last run's "Done" line keeps changing
    while Gradio's timer beside it ticks."""
    from playwright.sync_api import TimeoutError
    try:
        page.wait_for_function("""([t, u]) => { const i = window.shown.findIndex(s => s.includes(t));
            return i >= 0 && (!u || window.shown.slice(i + 1).some(s => s.includes(u))); }""",
                               arg=[text, then], timeout=TIMEOUT)
    except TimeoutError as error:       # say what the visitor saw instead
        seen = page.evaluate("() => [...new Set(window.shown.slice().reverse())].slice(0, 8).reverse()")
        raise AssertionError(f"waited for {text!r} then {then!r}; the page showed {seen}") from error


def wait_value(page, selector: str, value: str) -> None:
    page.wait_for_function("([s, v]) => { const e = document.querySelector(s); "
                           "return e && e.value === v; }", arg=[selector, value], timeout=TIMEOUT)


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
