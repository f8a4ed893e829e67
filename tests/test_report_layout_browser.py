"""The kernel report's layout in headless Chromium: it fits 1400 px and a phone, a 9×9 kernel's table fits its
panel with plain numbers, the chosen pixel is marked, the hint goes, padding is named only where it applies, and
an RGB map gets an RGB colour bar."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from featmap.cli import cli

from .conftest import SAMPLES
from .test_report_browser import browser, pytestmark  # the one Chromium fixture

__all__ = ["browser", "pytestmark"]


@pytest.fixture(scope="module")
def big_kernel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("a-rather-long-output-folder-name-that-makes-the-file-column-wide") / "maps"
    result = CliRunner().invoke(
        cli,
        ["apply", str(SAMPLES / "shapes.png"), "-k", "gaussian:size=9,sigma=3", "--color", "--padding", "same"]
        + ["--report", "-o", str(out)],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    return out / "report.html"


def open_page(browser: Any, path: Path, width: int, height: int = 900) -> tuple[Any, Any, list[str]]:
    context = browser.new_context(viewport={"width": width, "height": height}, has_touch=width < 600)
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(path.resolve().as_uri())
    page.wait_for_selector("body[data-ready='1']", state="attached", timeout=30_000)
    return context, page, errors


def choose(page: Any, row: int, col: int, tap: bool = False) -> None:
    pic = page.locator("#map-0")
    pic.scroll_into_view_if_needed()
    box = pic.bounding_box()
    x, y = (col + 0.5) * box["width"] / 256, (row + 0.5) * box["height"] / 256
    if tap:
        pic.tap(position={"x": x, "y": y})
    else:
        page.mouse.move(box["x"] + x, box["y"] + y)
    page.wait_for_selector(f"#fm-pixel[data-row='{row}'][data-col='{col}']", state="attached", timeout=10_000)


def test_desktop_1400_fits_and_a_9x9_table_fits_its_panel_with_plain_numbers(browser: Any, big_kernel: Path) -> None:
    context, page, errors = open_page(browser, big_kernel, 1400)
    assert page.evaluate("document.documentElement.scrollWidth") <= 1400
    file_cell = page.locator("table.maps td.file").last.bounding_box()
    assert file_cell["x"] + file_cell["width"] <= 1400  # the file column is not cut
    assert page.evaluate("document.getElementById('status').hidden") is False
    choose(page, 100, 120)
    assert page.evaluate("document.getElementById('status').hidden") is True  # the hint goes
    marker = page.locator("#marker-0").bounding_box()
    pic = page.locator("#map-0").bounding_box()
    centre = (marker["x"] + marker["width"] / 2 - pic["x"], marker["y"] + marker["height"] / 2 - pic["y"])
    assert centre == pytest.approx((120.5 * pic["width"] / 256, 100.5 * pic["height"] / 256), abs=1.5)
    table = page.locator("#detail table.window").first.bounding_box()
    panel = page.locator("#explain").bounding_box()
    assert table["x"] + table["width"] <= panel["x"] + panel["width"]
    cells = page.locator("#detail table.window").first.inner_text()
    assert len(re.findall(r"-?\d", cells)) > 81 and not re.search(r"\de-?\d", cells)  # no 1.87938e-5
    assert "padding" not in page.locator("#detail").inner_text().split("Each cell")[0]  # an inside window
    choose(page, 0, 1)
    assert "past the edge: padding, zeros" in page.locator("#detail").inner_text()
    assert page.evaluate("document.documentElement.scrollWidth") <= 1400
    assert errors == []
    context.close()


def test_a_phone_does_not_scroll_sideways_and_the_arithmetic_is_under_the_tapped_map(
    browser: Any, big_kernel: Path
) -> None:
    context, page, errors = open_page(browser, big_kernel, 390, 844)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    choose(page, 40, 40, tap=True)
    gap = page.evaluate(
        "document.getElementById('explain').getBoundingClientRect().top"
        " - document.getElementById('map-0').closest('figure').getBoundingClientRect().bottom"
    )
    assert 0 <= gap < 60
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    assert errors == []
    context.close()


def test_an_rgb_map_gets_an_rgb_colour_bar(browser: Any, big_kernel: Path) -> None:
    context, page, _ = open_page(browser, big_kernel, 1400)
    src = page.locator("figure.map img.bar").first.get_attribute("src")
    context.close()
    bar = np.asarray(Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).convert("RGB")).astype(int)
    red, green, blue = bar[0], bar[bar.shape[0] // 2], bar[-1]
    assert red[-1, 0] > 200 and red[:, 1:].max() == 0
    assert green[-1, 1] > 200 and green[:, [0, 2]].max() == 0
    assert blue[-1, 2] > 200 and blue[:, :2].max() == 0
