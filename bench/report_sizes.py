"""The network report's size and how long Chromium takes to open it: LeNet-5 (trained) on a digit, Tiny VGG
(seeded init) and ResNet-18 (seeded init) on the coffee photo (resized to the network's 224×224 input).

Each run is the whole command (``featmap apply --model M --report``, timed as a subprocess, PNGs included); the
page is opened in headless Chromium (Debian's ``/usr/bin/chromium`` through Playwright, never ``playwright
install``): the load event (``performance`` navigation entry), the page ready (tensors inflated, prediction drawn)
and the first unit selected in layer 1.

    python bench/report_sizes.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("FEATMAP_CHROMIUM", "/usr/bin/chromium")
RUNS = [
    ("lenet5-digits", ROOT / "samples" / "digits" / "digit_7.png", []),
    ("tinyvgg", ROOT / "samples" / "coffee.png", ["--init", "kaiming"]),
    ("resnet18", ROOT / "samples" / "coffee.png", ["--init", "kaiming"]),
]


def main() -> None:
    from playwright.sync_api import sync_playwright

    rows = []
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"])
        for model, image, extra in RUNS:
            out = Path(tmp) / model
            started = time.perf_counter()
            command = [sys.executable, "-m", "featmap", "apply", str(image), "--model", model, *extra]
            subprocess.run([*command, "--report", "-o", str(out), "-q"], check=True, capture_output=True)
            seconds = time.perf_counter() - started
            page_path = out / "report.html"
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            page = context.new_page()
            opened = time.perf_counter()
            page.goto(page_path.as_uri(), wait_until="load")
            load_ms = page.evaluate("performance.getEntriesByType('navigation')[0].loadEventEnd")
            page.wait_for_selector("body[data-ready='1']", state="attached", timeout=120_000)
            ready = time.perf_counter() - opened
            clicked = time.perf_counter()
            page.locator("canvas[data-layer='1'][data-channel='0']").focus()
            page.wait_for_selector("#fm-unit[data-index='1']", state="attached", timeout=60_000)
            select = time.perf_counter() - clicked
            layers = page.evaluate("D.layers.length")
            exact = page.evaluate("D.layers.filter(l => l.exact).length")
            context.close()
            size = page_path.stat().st_size / 2**20
            rows.append((model, size, layers, exact, seconds, load_ms / 1000, ready, select))
        browser.close()
    print(
        f"{'model':14} {'page MiB':>8} {'layers':>6} {'explained':>9} {'command s':>9} {'load s':>7} {'ready s':>7} "
        f"{'1st unit s':>10}"
    )
    for model, size, layers, exact, seconds, load, ready, select in rows:
        print(f"{model:14} {size:8.2f} {layers:6d} {exact:9d} {seconds:9.2f} {load:7.2f} {ready:7.2f} {select:10.2f}")


if __name__ == "__main__":
    main()
