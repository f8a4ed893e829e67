"""The HTML report in a real headless Chromium (Debian's, driven by Playwright): hover a pixel, read the numbers.

The value the page shows must be the ``.npy``'s (to float32 precision) and numpy's own arithmetic on the same
window (to float64 precision); the page may log no error and request nothing outside the file.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from featmap.cli import cli

from .conftest import SAMPLES

CHROMIUM = Path(os.environ.get("FEATMAP_CHROMIUM", "/usr/bin/chromium"))
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

try:
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover - depends on the environment
    sync_playwright = None

pytestmark = [
    pytest.mark.skipif(sync_playwright is None, reason="playwright is not installed: pip install 'featmap[browser]'"),
    pytest.mark.skipif(
        not (CHROMIUM.is_file() or shutil.which(str(CHROMIUM))),
        reason=f"no Chromium at {CHROMIUM}: apt-get install -y chromium (or set FEATMAP_CHROMIUM)",
    ),
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    assert sync_playwright is not None
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield chromium
        chromium.close()


class Page:
    """A report opened in a fresh page that logs console errors and refuses every non-local request."""

    def __init__(self, browser: Any, path: Path) -> None:
        self.errors: list[str] = []
        self.remote: list[str] = []
        self.context = browser.new_context(viewport={"width": 1400, "height": 1000})
        self.context.route("**/*", self._route)
        self.page = self.context.new_page()
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.goto(path.resolve().as_uri())
        self.page.wait_for_selector("body[data-ready='1']", timeout=30_000)

    def _route(self, route: Any) -> None:
        url = route.request.url
        if url.startswith(("file:", "data:", "blob:")):
            route.continue_()
        else:
            self.remote.append(url)
            route.abort()

    def hover(self, map_index: int, row: int, col: int) -> dict[str, Any]:
        pic = self.page.locator(f"#map-{map_index}")
        pic.scroll_into_view_if_needed()
        box = pic.bounding_box()
        height, width = (int(n) for n in pic.get_attribute("data-shape").split(",")[:2])
        x = box["x"] + (col + 0.5) * box["width"] / width
        y = box["y"] + (row + 0.5) * box["height"] / height
        self.page.mouse.move(x, y)
        self.page.wait_for_selector(f"#fm-pixel[data-row='{row}'][data-col='{col}']", timeout=10_000)
        return {
            "value": float(self.page.locator("#fm-value").get_attribute("data-value")),
            "sums": [float(s.get_attribute("data-value")) for s in self.page.locator(".fm-sum").all()],
            "padded": self.page.locator("table.window td.pad").count(),
            "text": self.page.locator("#detail").inner_text(),
        }

    def close(self) -> None:
        self.context.close()


def apply(runner: CliRunner, image: Path, out: Path, *args: str) -> dict[str, Any]:
    result = runner.invoke(
        cli, ["apply", str(image), *args, "--raw", "npy", "--report", "-o", str(out), "--json"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def conv_at(padded: np.ndarray, weights: np.ndarray, i: int, j: int, stride: int, dilation: int) -> tuple[float, float]:
    """numpy's own arithmetic for one output: (sum of products, and the window's taps) in float64."""
    kh, kw = weights.shape
    rows = i * stride + dilation * np.arange(kh)
    cols = j * stride + dilation * np.arange(kw)
    window = padded[np.ix_(rows, cols)]
    return float((window * weights.astype(np.float64)).sum()), float(window.size)


@pytest.mark.parametrize("pool", ["max", "avg"])
def test_hovered_value_is_the_npy_and_numpys(
    browser: Any, runner: CliRunner, tmp_path: Path, rng: np.random.Generator, pool: str
) -> None:
    levels = rng.integers(0, 256, (37, 41), dtype=np.uint8)
    Image.fromarray(levels).save(tmp_path / "noise.png")
    weights = np.round(rng.uniform(-1, 1, (3, 3)), 3).astype(np.float32)
    (tmp_path / "k.yaml").write_text(json.dumps({"name": "mine", "weights": weights.tolist(), "bias": 0.25}))
    out = tmp_path / "out"
    args = ["-k", str(tmp_path / "k.yaml"), "-k", "sobel_x", "--stride", "2", "--padding", "same", "--pad-mode"]
    args += ["reflect", "--dilation", "2", "--activation", "leaky_relu", "--slope", "0.1", "--pool", pool]
    facts = apply(runner, tmp_path / "noise.png", out, *args)
    pad = facts["maps"][0]["padding"]
    conv_h, conv_w = facts["maps"][0]["conv_shape"][:2]
    npy = np.load(out / "noise" / "mine.npy")
    x = (levels.astype(np.float32) * np.float32(1 / 255)).astype(np.float64)
    padded = np.pad(x, ((pad["top"], pad["bottom"]), (pad["left"], pad["right"])), mode="reflect")
    w32 = np.asarray(weights, np.float32)

    def final(i: int, j: int) -> float:
        total = conv_at(padded, w32, i, j, 2, 2)[0] + float(np.float32(0.25))
        return total if total >= 0 else total * float(np.float32(0.1))

    page = Page(browser, out / "report.html")
    try:
        for row, col in ((0, 0), (4, 7), (npy.shape[0] - 1, npy.shape[1] - 1)):
            shown = page.hover(0, row, col)
            cells = [
                (i, j) for i in (2 * row, 2 * row + 1) for j in (2 * col, 2 * col + 1) if i < conv_h and j < conv_w
            ]
            values = [final(i, j) for i, j in cells]
            expected = max(values) if pool == "max" else sum(values) / len(values)
            assert shown["value"] == pytest.approx(expected, rel=1e-12, abs=1e-12)
            assert shown["value"] == pytest.approx(float(npy[row, col, 0]), rel=1e-5, abs=1e-6)
            explained = cells[values.index(max(values))] if pool == "max" else cells[0]
            assert shown["sums"][0] == pytest.approx(conv_at(padded, w32, *explained, 2, 2)[0], rel=1e-12, abs=1e-12)
        assert page.hover(0, 0, 0)["padded"] >= 2  # the corner's window reaches into the reflected border
        assert page.errors == [] and page.remote == []
    finally:
        page.close()


def test_photo_combined_map_with_zero_padding(browser: Any, runner: CliRunner, tmp_path: Path) -> None:
    """An RGB photo in gray (float32 luma, embedded bit for bit) and a Sobel magnitude with one row of zeros."""
    out = tmp_path / "out"
    args = ["-k", "sobel_x", "-k", "sobel_y", "--combine", "magnitude", "--padding", "1", "--activation", "relu"]
    apply(runner, SAMPLES / "coffee.png", out, *args)
    npy = np.load(out / "coffee" / "magnitude.npy")
    from featmap.io.images import load_image

    x = np.pad(load_image(SAMPLES / "coffee.png").pixels[:, :, 0].astype(np.float64), 1)
    sobel_x = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], np.float32)
    page = Page(browser, out / "report.html")
    try:
        assert page.page.evaluate("D.input.kind") == "luma8"  # RGB samples + correction, decoded by the page
        for row, col in ((0, 5), (200, 300), (npy.shape[0] - 1, 0)):
            shown = page.hover(2, row, col)
            gx = conv_at(x, sobel_x, row, col, 1, 1)[0]
            gy = conv_at(x, sobel_x.T, row, col, 1, 1)[0]
            assert shown["sums"] == pytest.approx([gx, gy], rel=1e-12, abs=1e-12)
            assert shown["value"] == pytest.approx(np.hypot(gx, gy), rel=1e-12)
            assert shown["value"] == pytest.approx(float(npy[row, col, 0]), rel=1e-5, abs=1e-6)
            assert "magnitude √(" in shown["text"]
        assert page.hover(2, 0, 5)["padded"] == 6  # the top row of both kernels' windows is padding
        assert page.errors == [] and page.remote == []
    finally:
        page.close()


def test_batch_index_links_open(browser: Any, runner: CliRunner, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a.png", "b.png"):
        Image.fromarray(np.arange(600, dtype=np.uint8).reshape(20, 30)).save(folder / name)
    out = tmp_path / "out"
    result = runner.invoke(cli, ["apply", str(folder), "-k", "sobel_y", "--report", "-o", str(out), "-j", "1"])
    assert result.exit_code == 0
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto((out / "report.html").as_uri())
        page.click("text=b.png")
        page.wait_for_selector("body[data-ready='1']", timeout=30_000)
        assert page.url.endswith("/b/report.html")
        assert "b.png" in page.locator("#title").inner_text()
    finally:
        context.close()
