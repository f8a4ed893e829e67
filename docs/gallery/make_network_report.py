"""Make README's screenshot of the network report: LeNet-5 (the trained ``lenet5-digits`` preset) on
``samples/digits/digit_7.png`` with a unit of C3 selected (its six windows on S2, partial sums, bias, tanh).

The page comes from the real command (``featmap apply --report`` in a subprocess) and is opened in headless
Chromium (Debian's ``/usr/bin/chromium`` driven by Playwright: ``pip install 'featmap[browser]'``, never
``playwright install``). The screenshot is scaled down and reduced to 256 colours so the repository stays small.

    python docs/gallery/make_network_report.py     # writes docs/gallery/network_report.png
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

HERE = Path(__file__).resolve().parent
SAMPLES = HERE.parent.parent / "samples"
CHROMIUM = os.environ.get("FEATMAP_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]


def main() -> None:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        command = [sys.executable, "-m", "featmap", "apply", str(SAMPLES / "digits" / "digit_7.png")]
        subprocess.run([*command, "--model", "lenet5-digits", "--report", "-o", str(out)], check=True)
        shot = Path(tmp) / "shot.png"
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.goto((out / "report.html").as_uri())
            page.wait_for_selector("body[data-ready='1']", state="attached")
            canvas = page.locator("canvas[data-layer='4'][data-channel='3']")
            canvas.scroll_into_view_if_needed()
            box = canvas.bounding_box()
            assert box is not None
            page.mouse.click(box["x"] + box["width"] * 0.55, box["y"] + box["height"] * 0.55)
            page.wait_for_selector("#fm-unit[data-index='4']", state="attached")
            top = "document.getElementById('layer-3').getBoundingClientRect().top + scrollY - 8"
            page.evaluate(f"window.scrollTo(0, {top})")
            page.screenshot(path=str(shot))
            browser.close()
        picture = Image.open(shot).convert("RGB")
        picture = picture.resize((1000, round(picture.height * 1000 / picture.width)), Image.Resampling.LANCZOS)
        target = HERE / "network_report.png"
        picture.quantize(256).save(target, optimize=True)
        print(f"{target}: {target.stat().st_size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
