"""How soon a visitor sees a picture: the app's first frame, measured in Chromium.

    python -m benchmarks.first_frame [--model shapes-exact] [--visits 4] [--out FILE]

Starts the app in a process of its own (benchmarks/load.py's Server) on `--model`,
then opens it in Debian's Chromium `--visits` times, each in a fresh browser context
(nothing kept from the last visit): the first visit is the server's first, the others
are later visits. For each it records, in the page's own clock (ms from navigation
start): when the document finished loading, when the big picture first had an image
(the first frame), and when the status said "Done". Target: the first frame within
1 s of the page loading, first and later visits. Prints JSON and writes
benchmarks/results/first_frame.json (or `--out`).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
from pathlib import Path

from benchmarks.load import Server

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
TARGET_MS = 1000
# Installed before the page's own scripts: the moment the big picture first shows an image.
WATCH = """
new MutationObserver((changes, observer) => {
  const img = document.querySelector('#preview img[src]');
  if (img && img.getAttribute('src')) {
    window.__firstFrame = performance.now();
    observer.disconnect();
  }
}).observe(document, {subtree: true, childList: true, attributes: true,
                      attributeFilter: ['src']});
"""


def visit(browser, url: str, timeout_ms: int) -> dict:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.add_init_script(WATCH)
    page.goto(url)
    page.wait_for_function("() => window.__firstFrame !== undefined", timeout=timeout_ms)
    page.wait_for_function(
        "() => (document.querySelector('#status') || {}).innerText?.startsWith('Done')",
        timeout=timeout_ms)
    done = page.evaluate("performance.now()")
    times = page.evaluate("""() => {
        const nav = performance.getEntriesByType('navigation')[0];
        return {loaded: nav.loadEventEnd, first_frame: window.__firstFrame}; }""")
    context.close()
    frame_after_load = times["first_frame"] - times["loaded"]
    return {"page_loaded_ms": round(times["loaded"]), "first_frame_ms": round(times["first_frame"]),
            "first_frame_after_load_ms": round(frame_after_load), "done_ms": round(done),
            "within_target": frame_after_load <= TARGET_MS}


def main(argv: list[str] | None = None, browser=None) -> dict:
    """`browser`: a Playwright Chromium already running (a test's), else one is started."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="shapes-exact")
    parser.add_argument("--visits", type=int, default=4)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "first_frame.json"))
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright
    load_before = os.getloadavg()
    server = Server(model=args.model)
    try:
        if browser is not None:
            visits = [visit(browser, server.url, 120_000) for _ in range(args.visits)]
        else:
            with sync_playwright() as playwright:
                own = playwright.chromium.launch(executable_path=CHROMIUM,
                                                 args=["--no-sandbox", "--disable-gpu"])
                visits = [visit(own, server.url, 120_000) for _ in range(args.visits)]
                own.close()
    finally:
        server.close()
    later = [v["first_frame_after_load_ms"] for v in visits[1:]]
    report = {"benchmark": "first_frame", "model": args.model, "target_ms": TARGET_MS,
              "first_visit": visits[0], "later_visits": visits[1:],
              "later_median_after_load_ms": statistics.median(later) if later else None,
              "load_average": {"before": [round(v, 2) for v in load_before],
                               "after": [round(v, 2) for v in os.getloadavg()]},
              "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
              "command": " ".join(["python -m benchmarks.first_frame",
                                   *(sys.argv[1:] if argv is None else argv)])}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
