"""Shared fixtures: a launched app on a free localhost port, and Debian's Chromium.

Heavy imports (gradio, playwright) happen inside the fixtures, so test modules
that do not use them pay nothing.
"""
from __future__ import annotations

import socket
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
UI_MODEL = "toy2d-energy"  # fast on a CPU; its weights ship in assets/toy2d/
UI_MODEL_WEIGHTS = ROOT / "assets" / "toy2d" / "toy2d-energy.safetensors"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def app_url():
    """The real app (ui.layout.build_demo) on 127.0.0.1, starting on toy2d-energy."""
    if not UI_MODEL_WEIGHTS.exists():
        pytest.skip(f"{UI_MODEL} weights are not in assets/toy2d/")
    from composer.facade import Composer
    from ui.layout import build_demo, launch_kwargs

    demo = build_demo(Composer("cpu"), default_model=UI_MODEL)
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=free_port(), ssr_mode=False,
                            prevent_thread_lock=True, quiet=True, **launch_kwargs())
    yield url
    demo.close()


@pytest.fixture(scope="session")
def chromium():
    """A headless Chromium through Playwright; skipped only where Chromium is absent."""
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (/usr/bin/chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(chromium):
    """A desktop-sized page (tests/browser.py) with the browser tests' patience."""
    from tests.browser import DESKTOP, TIMEOUT
    context = chromium.new_context(viewport=DESKTOP)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT)
    yield page
    context.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A browser test fails if the server printed a traceback while it ran: a renderer
    error on a model switch, an unknown-event 500 after a re-render, a masked crash.
    (Visitors' mistakes are shown on the page and print none.) The captured stderr is
    read rather than a logger, since uvicorn and Gradio print through different paths."""
    outcome = yield
    report = outcome.get_result()
    if (call.when == "call" and report.passed and item.get_closest_marker("browser")
            and "Traceback" in report.capstderr):
        report.outcome = "failed"
        report.longrepr = f"the server printed a traceback during this test:\n{report.capstderr[-4000:]}"
