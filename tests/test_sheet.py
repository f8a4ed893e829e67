"""The contact sheet: layout, the pixels it shows, limits, and `featmap apply --sheet`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from featmap.cli import cli
from featmap.errors import SpecError
from featmap.io.colormaps import get_colormap
from featmap.io.display import DisplayRange
from featmap.io.writers.sheet import MAX_SHEET_PANELS, SHEET_MAX_WIDTH, Panel, SheetRow, build_sheet, shrink


def invoke(runner: CliRunner, *args: object) -> object:
    return runner.invoke(cli, [str(a) for a in args], catch_exceptions=False)


def area_average(image: np.ndarray, side: int) -> np.ndarray:
    """Each output pixel the mean of the input area it covers (fractional overlaps weighted), as a matrix product."""
    n = image.shape[0]
    weights = np.zeros((side, n))
    for i in range(side):
        start, stop = i * n / side, (i + 1) * n / side
        for j in range(int(np.floor(start)), int(np.ceil(stop))):
            weights[i, j] = min(stop, j + 1) - max(start, j)
    weights /= weights.sum(axis=1, keepdims=True)
    return weights @ image @ weights.T


def test_shrink_is_block_means() -> None:
    x = np.arange(8 * 6, dtype=np.float32).reshape(8, 6)
    small = shrink(x, 3)  # factor ceil(8 / 3) = 3: 2×2 blocks of 3×3, the last partial rows dropped
    expected = [[x[0:3, 0:3].mean(), x[0:3, 3:6].mean()], [x[3:6, 0:3].mean(), x[3:6, 3:6].mean()]]
    assert np.allclose(small[:, :, 0], expected)
    assert shrink(x, 8).shape == (8, 6, 1)


def test_input_pixels_are_where_the_box_says(rng: np.random.Generator) -> None:
    levels = rng.integers(0, 256, (30, 40), dtype=np.uint8)
    values = (levels.astype(np.float32) * np.float32(1 / 255))[:, :, None]
    panel = Panel(values, DisplayRange(0.0, 1.0, "input"), ("input",), colour_bar=False)
    signed = rng.standard_normal((20, 20)).astype(np.float32)
    shown = DisplayRange(-3.0, 3.0, "symmetric", centred=True)
    colormap = get_colormap("RdBu_r")
    kernel = np.array([[1, 0, -1], [2, 0, -2], [1, 0, -1]], np.float32)
    rows = [SheetRow("input", (panel,)), SheetRow("layer 1", (Panel(signed, shown, ("m", "20x20"), colormap, kernel),))]
    sheet = build_sheet(["title"], rows, map_side=120)
    box_in, box_map = sheet.boxes
    assert box_in.scale == 3 and (box_in.width, box_in.height) == (120, 90)  # 40 wide × 3
    drawn = sheet.pixels[box_in.y : box_in.y + 90 : 3, box_in.x : box_in.x + 120 : 3]
    assert np.array_equal(drawn, np.repeat(levels[:, :, None], 3, axis=2))
    assert box_map.scale == 6 and box_map.x > box_in.x  # the weights grid sits left of the map
    r, c = 7, 11
    pixel = sheet.pixels[box_map.y + 6 * r + 3, box_map.x + 6 * c + 3]
    assert pixel.tolist() == colormap.colours8(shown.positions(signed[r : r + 1, c : c + 1]))[0, 0].tolist()
    # the weights grid: 38 px cells left of the map, on a diverging scale about 0: weight 2, the largest, is darkest red
    corner = sheet.pixels[box_map.y + 38 + 2, box_map.x - 10 - 3 * 38 + 2]  # cell (1, 0): weight 2
    assert corner.tolist() == colormap.lut8[-1].tolist()


def test_many_panels_wrap_and_the_limit_is_checked() -> None:
    maps = tuple(
        Panel(np.full((64, 64), i, np.float32), DisplayRange(0.0, 255.0, "minmax"), (f"k{i}",), get_colormap("viridis"))
        for i in range(MAX_SHEET_PANELS)
    )
    sheet = build_sheet(["256 kernels"], [SheetRow("bank", maps)])
    height, width = sheet.pixels.shape[:2]
    assert width <= SHEET_MAX_WIDTH and height < 9000
    assert len({b.y for b in sheet.boxes}) > 10  # wrapped into many lines
    assert min(b.width for b in sheet.boxes) == 128  # maps shrink to 128 px for a bank this size
    with pytest.raises(SpecError, match="257 maps exceed the limit of 256"):
        build_sheet([], [SheetRow("bank", (*maps, maps[0]))])


def test_apply_sheet_512_with_8_kernels(runner: CliRunner, tmp_path: Path, rng: np.random.Generator) -> None:
    image = rng.integers(0, 256, (512, 512), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "noise.png")
    out = tmp_path / "out"
    kernels = ["sobel_x", "sobel_y", "gaussian_5", "laplacian_4", "gabor_0", "gabor_45", "log_9", "emboss"]
    args = [a for k in kernels for a in ("-k", k)]
    result = invoke(runner, "apply", tmp_path / "noise.png", *args, "--sheet", "-o", out, "--json")
    assert result.exit_code == 0, result.output
    sheet = out / "noise" / "sheet.png"
    with Image.open(sheet) as im:
        assert im.mode == "RGB" and im.width == 1920  # a full-HD slide by default
        pixels = np.asarray(im)
    # the input, area-averaged to the input panel's 384-px square, at the left margin under the title
    expected = area_average(image / 255.0, 384) * 255
    errors = {y: np.abs(pixels[y : y + 384, 24 : 24 + 384, 1] - expected).max() for y in range(160)}
    best = min(errors, key=errors.__getitem__)
    assert errors[best] <= 0.5 + 1e-3, errors[best]  # quantised to the nearest level
    assert (pixels[best : best + 384, 24 : 24 + 384, 0] == pixels[best : best + 384, 24 : 24 + 384, 2]).all()  # gray
    manifest = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert any(rec["png"] == "noise/sheet.png" and rec["kernel"] == "(sheet)" for rec in manifest)
    # a re-run replaces its own sheet; another run's sheet is not clobbered without --overwrite
    assert invoke(runner, "apply", tmp_path / "noise.png", *args, "--sheet", "-o", out).exit_code == 0
    other = runner.invoke(cli, ["apply", str(tmp_path / "noise.png"), "-k", "box_3", "--sheet", "-o", str(out)])
    assert other.exit_code == 1 and "sheet.png" in other.stderr


def test_network_sheet_has_a_row_per_layer(runner: CliRunner, tmp_path: Path) -> None:
    digit = Path(__file__).resolve().parent.parent / "samples" / "digits" / "digit_7.png"
    out = tmp_path / "out"
    result = invoke(runner, "apply", digit, "--model", "lenet5-digits", "--sheet", "--colormap", "magma", "-o", out)
    assert result.exit_code == 0, result.output
    with Image.open(out / "digit_7" / "01-C1" / "000.png") as im:
        assert im.mode == "RGB"  # the layers' PNGs go through the colormap too
    with Image.open(out / "digit_7" / "sheet.png") as im:
        pixels = np.asarray(im)
    with Image.open(digit) as im:
        levels = np.asarray(im.convert("L"))
    # the 32×32 input, enlarged 8 times (whole pixels) into the input's 256-px square right of the label column
    big = np.repeat(np.repeat(levels, 8, axis=0), 8, axis=1)
    found = [y for y in range(200) if np.array_equal(pixels[y : y + 256, 354 : 354 + 256, 0], big)]
    assert found, "the input is not on the sheet"
    assert pixels.shape[1] == 1920
    manifest = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert [r["png"] for r in manifest if r["kernel"] == "(sheet)"] == ["digit_7/sheet.png"]


def test_network_sheet_limit_is_checked_before_work(runner: CliRunner, tmp_path: Path) -> None:
    image = tmp_path / "x.png"
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(image)
    out = tmp_path / "out"
    args = ["apply", str(image), "--model", "vgg11", "--init", "kaiming", "--sheet", "-o", str(out)]
    result = runner.invoke(cli, [*args, "--channels", "256"])  # every channel of VGG-11: far past the pixel budget
    assert result.exit_code == 1
    assert "over the limit of 40,000,000" in result.stderr and "--channels" in result.stderr
    assert not list(out.glob("**/*.png"))
