"""A network's contact sheet: top-K channels, one scale per layer, flat layers as bars, size and text limits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from featmap.cli import cli
from featmap.io.colormaps import get_colormap
from featmap.io.display import layer_scale
from featmap.io.images import ImageInfo, LoadedImage
from featmap.io.outputs import OutputOptions
from featmap.io.writers.netpictures import LayerRows
from featmap.io.writers.netsheet import (
    CAPTION_PX,
    MAX_SHEET_PIXELS,
    LayerPicture,
    draw_network_sheet,
    grid_columns,
    pick_channels,
)
from featmap.io.writers.sheet import _font

DIGIT = Path(__file__).resolve().parent.parent / "samples" / "digits" / "digit_7.png"


def test_top_k_channels_by_mean_activation() -> None:
    planes = np.zeros((4, 4, 6), np.float32)
    planes[..., 0] = 1.0  # mean 1
    planes[0, 0, 1] = 32.0  # mean 2: one strong pixel
    planes[..., 2] = -5.0  # mean -5: never "strong"
    planes[:2, :, 3] = 3.0  # mean 1.5
    planes[..., 4] = 1.0  # mean 1, ties with 0: the lower index first
    indices, means = pick_channels(planes, 3)
    assert indices == (1, 3, 0)
    assert means.tolist() == [1.0, 2.0, -5.0, 1.5, 1.0, 0.0]
    assert pick_channels(planes, 4)[0] == (1, 3, 0, 4)
    assert pick_channels(planes, None)[0] == tuple(range(6))  # all, in order


def test_grid_columns_balance_lines_and_fit_the_width() -> None:
    assert grid_columns(16, 1920) == (8, 192)  # two lines of 8, not 13 + 3
    assert grid_columns(6, 1920) == (6, 257)  # at most 256 px maps (+ the gap)
    columns, cell = grid_columns(64, 1280)
    assert columns * cell <= 1280 - 2 * 24 - 330


def _image(pixels: np.ndarray) -> LoadedImage:
    return LoadedImage(pixels, ImageInfo("x.png", pixels.shape[1], pixels.shape[0], "PNG", "L", 1))


def test_one_scale_per_layer_on_the_sheet_dead_channel_is_zeros_colour() -> None:
    planes = np.zeros((8, 8, 2), np.float32)
    planes[:, :4, 0], planes[:, 4:, 0] = -2.0, 1.0  # mixed signs; channel 1 is dead (all 0)
    output = OutputOptions(sheet=True, sheet_normalize="minmax")
    rows = LayerRows(_image(np.full((8, 8, 1), 0.5, np.float32)), output, [("01-conv", 2)])
    rows.add_layer("01-conv", planes, kind="Conv2d")
    (layer,) = rows.layers
    assert layer.scale.colormap.name == "RdBu_r" and layer.scale.ranges[0].text() == "-2 to 2 (minmax)"
    pixels = draw_network_sheet(rows.title, rows.picture, rows.input_caption, rows.layers, width=1000)
    assert pixels.shape[1] == 1000
    lut = get_colormap("RdBu_r").lut8
    colours = {tuple(c) for c in pixels.reshape(-1, 3).tolist()}
    # -2 -> position 0, 1 -> 0.75 (entry 192), the dead channel's 0 -> the centre (entry 128), never mid-teal
    assert {tuple(lut[0]), tuple(lut[192]), tuple(lut[128])} <= colours
    dead = layer_scale([planes[:, :, 1]], "minmax")  # a dead layer alone: sequential, 0 at its bottom colour
    position = dead.ranges[0].positions(np.zeros(1, np.float32))
    assert dead.colormap.colours8(position)[0].tolist() == get_colormap("viridis").lut8[0].tolist()


def test_flat_layer_is_a_bar_chart_from_a_zero_line() -> None:
    values = np.array([2.0, -1.0, 0.0, 4.0], np.float32)
    scale = layer_scale([values], "minmax")
    layer = LayerPicture("out Dense", (4,), scale, indices=(0,), total=1, flat=values, labels=("a", "b", "c", "d"))
    pixels = draw_network_sheet(["t"], np.zeros((4, 4, 1), np.float32), ["input"], [layer], width=1000)
    pixels = pixels[:, 24 + 330 :]  # the chart, right of the label column (and its colour bar)
    # find the chart: the column of bar 3 (value 4, the top) and bar 0 (value 2: half as tall)
    red = np.all(pixels == get_colormap("RdBu_r").lut8[-1], axis=2)  # 4 -> the top colour
    ys, xs = np.nonzero(red)
    assert ys.size > 0
    top, zero = ys.min(), ys.max() + 1  # bar 3 runs from the top of the chart down to the zero line
    bar0 = get_colormap("RdBu_r").colours8(scale.ranges[0].positions(np.array([2.0], np.float32)))[0]
    column0 = np.all(pixels == bar0, axis=2)
    height0 = np.count_nonzero(column0[:, np.nonzero(column0.any(axis=0))[0][0]])
    assert abs(height0 - (zero - top) / 2) <= 2  # value 2 is half of 4, to a pixel


def test_text_is_legible_at_1920(runner: CliRunner, tmp_path: Path) -> None:
    box = _font(CAPTION_PX).getbbox("H")
    assert box[3] - box[1] >= 14  # capitals at least 14 px tall on the 1920 px sheet
    result = runner.invoke(cli, ["apply", str(DIGIT), "--model", "lenet5-digits", "--sheet", "-o", str(tmp_path)])
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "digit_7" / "sheet.png") as im:
        assert im.width == 1920


def test_sheet_width_option(runner: CliRunner, tmp_path: Path) -> None:
    args = ["apply", str(DIGIT), "--model", "lenet5-digits", "--sheet", "--sheet-width", "1280", "-o", str(tmp_path)]
    assert runner.invoke(cli, args).exit_code == 0
    with Image.open(tmp_path / "digit_7" / "sheet.png") as im:
        assert im.width == 1280
    kernels = ["apply", str(DIGIT), "-k", "sobel_x", "--sheet", "--sheet-width", "800", "-o", str(tmp_path / "k")]
    assert runner.invoke(cli, kernels).exit_code == 0
    with Image.open(tmp_path / "k" / "digit_7" / "sheet.png") as im:
        assert im.width == 800
    bad = runner.invoke(cli, [*args[:-2], "--sheet-width", "100", "-o", str(tmp_path / "b")])
    assert bad.exit_code == 2 and "--sheet-width" in bad.stderr


@pytest.mark.parametrize("model", ["vgg16", "alexnet"])
def test_big_network_sheet_is_planned_within_the_pixel_budget(model: str) -> None:
    from featmap.net.spec import load_model
    from featmap.run.netjob import make_network_job

    job = make_network_job(load_model(model), init="kaiming", output=OutputOptions(sheet=True))
    maps = job.layer_maps()
    assert sum(c for _, c in maps) > 256  # refused before this issue
    rows = LayerRows(_image(np.zeros((224, 224, 3), np.float32)), job.output, maps)  # checks the size
    assert rows.k == 8 and "highest mean activation" in rows.title[-1]


def test_vgg16_blocks_1_2_sheet_shows_8_channels_a_layer(runner: CliRunner, tmp_path: Path) -> None:
    image = tmp_path / "x.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)).save(image)
    args = [
        "apply",
        str(image),
        "--model",
        "vgg16",
        "--init",
        "glorot",
        "--upto",
        "1.6",
        "--sheet",
        "-o",
        str(tmp_path),
    ]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "x" / "sheet.png") as im:
        assert im.width == 1920 and im.width * im.height <= MAX_SHEET_PIXELS
        assert im.height < 4000  # 10 layers, one line of 8 maps each (was 2394×4203 with 3 px text)


def test_channels_goes_with_a_network(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(
        cli, ["apply", str(DIGIT), "-k", "sobel_x", "--sheet", "--channels", "4", "-o", str(tmp_path)]
    )
    assert result.exit_code == 2 and "--channels goes with --spec or --model" in result.stderr
    args = ["apply", str(DIGIT), "--model", "lenet5-digits", "--sheet", "--channels", "4", "-o", str(tmp_path)]
    assert runner.invoke(cli, args).exit_code == 0
    planes = np.random.default_rng(1).normal(0, 1, (5, 5, 16)).astype(np.float32)
    planes[..., 9] += 10.0  # the strongest by mean
    rows = LayerRows(_image(planes[..., :1]), OutputOptions(sheet=True, channels=4), [("04-C3", 16)])
    rows.add_layer("04-C3", planes)
    assert rows.layers[0].indices[0] == 9 and len(rows.layers[0].indices) == 4 and rows.layers[0].selected
    assert "the 4 of highest mean activation per layer" in rows.title[-1]


def test_thumbnails_fill_their_cell() -> None:
    from featmap.io.writers.netsheet import _fill

    x = np.arange(112 * 112, dtype=np.float32).reshape(112, 112)
    big = _fill(x, 180)  # 112 px: nearest neighbour up to 180, not drawn at 112
    assert big.shape == (180, 180, 1) and big[0, 0, 0] == 0 and big[-1, -1, 0] == x[-1, -1]
    rows = np.arange(180) * 112 // 180
    assert np.array_equal(big[:, :, 0], x[rows][:, rows])
    small = np.arange(25, dtype=np.float32).reshape(5, 5)
    assert np.array_equal(_fill(small, 180)[:, :, 0], np.repeat(np.repeat(small, 36, axis=0), 36, axis=1))


@pytest.mark.parametrize("long", [False, True])
def test_prediction_bars_stay_on_the_sheet_whatever_the_class_names(long: bool) -> None:
    """Class names 5,000 characters long pushed the prediction's bars and probabilities off the sheet (the name
    column was as wide as the longest name): names are now clipped to half the sheet, so each bar is drawn, its
    length the probability; short names are drawn as before."""
    from featmap.io.writers.netsheet import _PROB, Prediction

    names = [("x" * 5000 if long else "cat") + str(i) for i in range(3)]
    prediction = Prediction(((0, names[0], 0.75), (1, names[1], 0.25), (2, names[2], 0.0)), "fc", 3)
    pixels = draw_network_sheet(["t"], np.zeros((4, 4, 1), np.float32), ["input"], [], prediction, width=1000)
    filled = np.all(pixels == np.array(_PROB, np.uint8), axis=2)
    rows = np.flatnonzero(filled.any(axis=1))
    widths = [int(filled[r].sum()) for r in (rows[0], rows[-1])]
    assert rows.size and widths[0] == pytest.approx(3 * widths[1], abs=3)  # 0.75 against 0.25 of one bar length
    assert np.flatnonzero(filled.any(axis=0)).max() < 1000 - 40  # inside the margin
