"""The network report in a real headless Chromium (Debian's, driven by Playwright): select a unit, read the numbers.

The page recomputes a unit from the float32 tensors featmap used; its value must be the ``.npy``'s to float32
precision and numpy's own arithmetic on the same window; the prediction must be featmap's; a phone viewport must
not scroll sideways; the page may log no error and request nothing outside the file.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from featmap.cli import cli

from .conftest import SAMPLES
from .test_report_browser import browser, pytestmark  # the one Chromium fixture

__all__ = ["browser", "pytestmark"]

LENET_NPZ = Path(__file__).resolve().parent.parent / "featmap" / "net" / "models" / "lenet5-digits.npz"


class Page:
    """A report in a fresh page that logs console errors and refuses every non-local request."""

    def __init__(self, browser: Any, path: Path, width: int = 1400, height: int = 1000, touch: bool = False) -> None:
        self.errors: list[str] = []
        self.remote: list[str] = []
        self.context = browser.new_context(viewport={"width": width, "height": height}, has_touch=touch)
        self.context.route("**/*", self._route)
        self.page = self.context.new_page()
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.goto(path.resolve().as_uri())
        self.page.wait_for_selector("body[data-ready='1']", state="attached", timeout=30_000)

    def _route(self, route: Any) -> None:
        url = route.request.url
        if url.startswith(("file:", "data:", "blob:")):
            route.continue_()
        else:
            self.remote.append(url)
            route.abort()

    def click(self, layer: int, channel: int, row: int, col: int, shape: tuple[int, int]) -> None:
        canvas = self.page.locator(f"canvas[data-layer='{layer}'][data-channel='{channel}']")
        canvas.scroll_into_view_if_needed()
        box = canvas.bounding_box()
        x = box["x"] + (col + 0.5) * box["width"] / shape[1]
        self.page.mouse.click(x, box["y"] + (row + 0.5) * box["height"] / shape[0])
        unit = f"[data-index='{layer}'][data-row='{row}'][data-col='{col}'][data-channel='{channel}']"
        self.page.wait_for_selector(f"#fm-unit{unit}", timeout=10_000)

    def number(self, selector: str) -> float:
        return float(self.page.locator(selector).first.get_attribute("data-value"))

    def numbers(self, selector: str) -> list[float]:
        return [float(s.get_attribute("data-value")) for s in self.page.locator(selector).all()]

    def close(self) -> None:
        assert self.errors == [], self.errors
        assert self.remote == [], self.remote
        self.context.close()


@pytest.fixture(scope="module")
def lenet(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("lenet")
    result = CliRunner().invoke(
        cli,
        ["apply", str(SAMPLES / "digits" / "digit_7.png"), "--model", "lenet5-digits", "--raw", "npy", "--report"]
        + ["-o", str(out), "--json"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    return out, json.loads(result.stdout)


def test_a_c3_unit_shows_six_partial_sums_the_bias_the_activation_and_the_npy_value(
    browser: Any, lenet: tuple[Path, dict[str, Any]]
) -> None:
    out, _ = lenet
    s2 = np.load(out / "digit_7" / "03-S2" / "all.npy").astype(np.float64)
    c3 = np.load(out / "digit_7" / "04-C3" / "all.npy")
    after = np.load(out / "digit_7" / "05-tanh" / "all.npy")
    weights = np.load(LENET_NPZ)
    w, b = weights["C3.weight"].astype(np.float64), weights["C3.bias"]
    page = Page(browser, out / "report.html")
    for row, col, ch in ((5, 5, 3), (0, 9, 15), (9, 0, 0)):
        page.click(4, ch, row, col, (10, 10))
        partials = page.numbers(".fm-partial")
        assert len(partials) == 6  # one per S2 channel
        window = s2[row : row + 5, col : col + 5, :]  # stride 1, no padding
        expected = [float((window[:, :, c] * w[ch, c]).sum()) for c in range(6)]
        np.testing.assert_allclose(partials, expected, rtol=1e-9, atol=1e-12)  # numpy's arithmetic, float64
        assert page.number("#fm-bias") == pytest.approx(float(b[ch]), rel=1e-7)
        value = page.number("#fm-value")
        assert value == pytest.approx(math.fsum(partials) + float(b[ch]), rel=1e-12, abs=1e-12)
        assert value == pytest.approx(float(c3[row, col, ch]), rel=2e-6, abs=1e-6)  # the .npy, to float32 precision
        assert page.number(".fm-then") == pytest.approx(float(after[row, col, ch]), rel=2e-6, abs=1e-6)  # tanh
        assert "tanh" in page.page.locator("#n-detail").inner_text()
    page.close()


def walk_every_layer(page: Page, folder: Path, layers: list[dict[str, Any]]) -> None:
    """Select a unit of every layer with the keyboard (focus, →, ]) and compare the page's value with the .npy."""
    for i, layer in enumerate(layers, start=1):
        stack = np.load(folder / f"{i:02d}-{layer['name']}" / "all.npy")
        canvas = page.page.locator(f"canvas[data-layer='{i}'][data-channel='0']")
        canvas.focus()
        page.page.wait_for_selector(f"#fm-unit[data-index='{i}']", timeout=10_000)
        page.page.keyboard.press("ArrowRight")
        if stack.ndim == 3 and stack.shape[0] * stack.shape[1] > 1:  # (0, 1, channel 0), then channel 1 with ]
            page.page.wait_for_selector(f"#fm-unit[data-index='{i}'][data-col='1']", timeout=10_000)
            page.page.keyboard.press("]")
            page.page.wait_for_selector(f"#fm-unit[data-index='{i}'][data-channel='1']", timeout=10_000)
            expected = stack[0, 1, 1]
        else:
            page.page.wait_for_selector(f"#fm-unit[data-index='{i}'][data-channel='1']", timeout=10_000)
            expected = stack.reshape(-1)[1]  # a flat layer (C5 is 1×1×120): the arrows walk its units
        assert page.page.locator("#fm-value").get_attribute("data-computed") == "1", layer["name"]
        assert page.number("#fm-value") == pytest.approx(float(expected), rel=2e-6, abs=1e-6), layer["name"]


def test_every_layer_kind_of_lenet_matches_its_npy_and_keyboard_selects(
    browser: Any, lenet: tuple[Path, dict[str, Any]]
) -> None:
    out, data = lenet
    page = Page(browser, out / "report.html")
    walk_every_layer(page, out / "digit_7", data["layers"])
    # a dense unit lists its top contributions (weight × value), largest first
    page.page.locator("canvas[data-layer='12']").focus()
    page.page.wait_for_selector("#fm-unit[data-index='12']", timeout=10_000)
    terms = page.numbers(".fm-term")
    assert len(terms) == 10 and all(abs(a) >= abs(b) for a, b in zip(terms, terms[1:], strict=False))
    page.close()


def test_the_prediction_view_shows_the_right_class_and_probability(
    browser: Any, lenet: tuple[Path, dict[str, Any]]
) -> None:
    out, data = lenet
    logits = np.load(out / "digit_7" / "12-output" / "all.npy").astype(np.float64)
    probs = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    page = Page(browser, out / "report.html")
    best = page.page.locator("#fm-prediction")
    assert best.get_attribute("data-label") == "7" == data["top"][0]["label"]
    assert float(best.get_attribute("data-probability")) == pytest.approx(probs[7], rel=1e-9)
    assert float(best.get_attribute("data-probability")) == pytest.approx(data["top"][0]["probability"], rel=1e-9)
    bars = page.numbers(".fm-prob")
    assert len(bars) == 5
    np.testing.assert_allclose(bars, np.sort(probs)[::-1][:5], rtol=1e-9)
    assert "softmax" in page.page.locator("#n-prediction").inner_text()
    page.close()


def test_a_phone_has_no_horizontal_overflow_and_the_arithmetic_follows_the_tapped_layer(
    browser: Any, lenet: tuple[Path, dict[str, Any]]
) -> None:
    out, _ = lenet
    page = Page(browser, out / "report.html", width=390, height=844, touch=True)
    assert page.page.evaluate("document.documentElement.scrollWidth") <= 390
    canvas = page.page.locator("canvas[data-layer='4'][data-channel='2']")
    canvas.scroll_into_view_if_needed()
    canvas.tap()
    page.page.wait_for_selector("#fm-unit[data-index='4']", timeout=10_000)
    assert page.page.evaluate("document.getElementById('layer-4').nextElementSibling.id") == "n-side"
    assert page.page.evaluate("document.documentElement.scrollWidth") <= 390
    page.close()


TINY_RESIDUAL = """
name: tinyres
input: 24x24x3
layers:
  - {conv: "4@3x3/s2/p1", name: stem}
  - {bn: , name: bn1}
  - relu
  - {maxpool: "3/s2/p1", name: pool}
  - residual:
      main: ["conv:4@3x3/p1/nobias", bn, relu, "conv:4@3x3/p1/nobias"]
  - leaky_relu
  - {avgpool: "3/s1/p1", name: avg}
  - {adaptiveavgpool: 1, name: gap}
  - flatten
  - {dense: 3, name: fc}
"""


def test_batch_norm_padded_pools_a_residual_add_and_global_pooling_match_their_npy(
    browser: Any, tmp_path: Path
) -> None:
    spec = tmp_path / "tinyres.yaml"
    spec.write_text(TINY_RESIDUAL)
    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli,
        ["apply", str(SAMPLES / "shapes.png"), "--spec", str(spec), "--init", "kaiming", "--raw", "npy", "--report"]
        + ["-o", str(out), "--json"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    page = Page(browser, out / "report.html")
    walk_every_layer(page, out / "shapes", data["layers"])
    # the add names both of its sources; the stem's corner unit reads padding
    page.page.locator("canvas[data-layer='9'][data-channel='0']").focus()
    page.page.wait_for_selector("#fm-unit[data-index='9'][data-col='0']", timeout=10_000)
    assert "add of conv2d" in page.page.locator("#n-detail").inner_text()
    page.page.locator("canvas[data-layer='1'][data-channel='0']").focus()
    page.page.wait_for_selector("#fm-unit[data-index='1'][data-col='0']", timeout=10_000)
    assert page.page.locator("#n-detail table.window td.pad").count() == 3 * 5  # top row and left column, 3 channels
    assert "padding" in page.page.locator("#n-detail").inner_text()
    page.close()
