"""Make README's gallery from samples/: contact sheets (kernels; LeNet-5 with its prediction), a signed map on a
diverging colormap, a report screenshot.

Every picture comes from the real command (``featmap apply`` in a subprocess), and the screenshot from the
report opened in headless Chromium (Debian's ``/usr/bin/chromium`` driven by Playwright: ``pip install
'featmap[browser]'``, never ``playwright install``) with one map pixel hovered. The results are scaled down
and reduced to 256 colours so the repository stays small.

    python docs/gallery/make_gallery.py            # writes docs/gallery/*.png
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

HERE = Path(__file__).resolve().parent
SAMPLES = HERE.parent.parent / "samples"
CHROMIUM = os.environ.get("FEATMAP_CHROMIUM", "/usr/bin/chromium")
BROWSER_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

BANKS = {
    "edges": ["sobel_x", "sobel_y", "laplacian_4", "log_9"],
    "blur": ["box_5", "gaussian_5", "gaussian:size=15,sigma=3", "motion_9_45"],
    "gabor": ["gabor_0", "gabor_45", "gabor_90", "gabor_135"],
}


def featmap(cwd: Path, *args: str | Path) -> None:
    """``featmap apply ARGS`` run in ``cwd`` (which holds a copy of samples/), so the pictures show short paths."""
    command = [sys.executable, "-m", "featmap", "apply", *(str(a) for a in args), "--overwrite"]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, cwd=cwd)


def keep(source: Path, name: str, width: int) -> Path:
    """Scale ``source`` down to ``width`` (never up), reduce it to 256 colours and save it in the gallery."""
    with Image.open(source) as im:
        picture = im.convert("RGB")
    if picture.width > width:
        height = round(picture.height * width / picture.width)
        picture = picture.resize((width, height), Image.Resampling.LANCZOS)
    target = HERE / name
    picture.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(target, optimize=True)
    size = f"{picture.width}×{picture.height}"
    print(f"{target.relative_to(HERE.parent.parent)}  {size}  {target.stat().st_size // 1024} KB")
    return target


def screenshot(report: Path, target: Path) -> None:
    """The report with a pixel of the first map hovered, as a user sees it."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.route("**/*", lambda r: r.continue_() if r.request.url.startswith(("file:", "data:")) else r.abort())
        page.goto(report.resolve().as_uri())
        page.wait_for_selector("body[data-ready='1']")
        pic = page.locator("#map-0")
        pic.scroll_into_view_if_needed()
        box = pic.bounding_box()
        assert box is not None
        page.mouse.move(box["x"] + box["width"] * 0.37, box["y"] + box["height"] * 0.30)
        page.wait_for_selector("#fm-value")
        page.screenshot(path=str(target), full_page=True)
        browser.close()


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        shutil.copytree(SAMPLES, out / "samples")
        samples = Path("samples")
        common = ["--padding", "same", "--pad-mode", "reflect", "--normalize", "percentile", "--colormap", "auto"]
        for bank, kernels in BANKS.items():
            featmap(
                out, samples / "coffee.png", *[a for k in kernels for a in ("-k", k)], *common, "--sheet", "-o", bank
            )
            keep(out / bank / "coffee" / "sheet.png", f"sheet_{bank}.png", 1400)
        featmap(out, samples / "digits" / "digit_7.png", "--model", "lenet5-digits", "--sheet", "-o", "lenet5")
        keep(out / "lenet5" / "digit_7" / "sheet.png", "sheet_lenet5.png", 1280)
        signed = ["-k", "sobel_x", "--padding", "same", "--pad-mode", "reflect", "--colormap", "RdBu_r"]
        signed += ["--normalize", "percentile", "--percentiles", "0.5,99.5", "-o", "signed"]
        featmap(out, samples / "camera.png", *signed)
        keep(out / "signed" / "camera" / "sobel_x.png", "signed_sobel_x.png", 512)
        report = ["-k", "sobel_x", "-k", "sobel_y", "--combine", "magnitude", "--padding", "same", "--pad-mode"]
        report += ["reflect", "--activation", "relu", "--pool", "max", "--normalize", "percentile", "--colormap"]
        featmap(out, samples / "camera.png", *report, "auto", "--report", "-o", "report")
        screenshot(out / "report" / "report.html", out / "report.png")
        keep(out / "report.png", "report.png", 1280)


if __name__ == "__main__":
    main()
