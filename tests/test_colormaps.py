"""Colormaps from cmap, display ranges (percentiles), and colormapped PNGs as a user gets them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from cmap import Colormap as CmapColormap
from PIL import Image

from featmap.cli import cli
from featmap.errors import SpecError
from featmap.io.colormaps import choose_colormap, colormap_names, get_colormap
from featmap.io.display import display_range, parse_percentiles
from featmap.io.writers.pixels import map_pixels


def invoke(runner: CliRunner, *args: object) -> object:
    return runner.invoke(cli, [str(a) for a in args], catch_exceptions=False)


def read_png(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        assert im.mode == "RGB"
        return np.asarray(im)


def test_tables_come_from_cmap() -> None:
    for name, source in (("viridis", "viridis"), ("magma", "magma"), ("coolwarm", "matplotlib:coolwarm")):
        lut = CmapColormap(source).lut(256)[:, :3]
        assert np.array_equal(get_colormap(name).lut, lut)
        assert np.array_equal(get_colormap(name).lut8, (lut * 255).astype(np.uint8))
    reversed_lut = CmapColormap("colorbrewer:RdBu").lut(256)[::-1, :3]
    assert np.allclose(get_colormap("RdBu_r").lut, reversed_lut)
    assert get_colormap("RdBu_r").diverging and not get_colormap("viridis").diverging
    assert "viridis" in colormap_names() and len(colormap_names()) > 100


def test_colours_match_cmap_bytes() -> None:
    t = np.linspace(0, 1, 2001)
    for name in ("viridis", "gray", "RdBu_r"):
        expected = CmapColormap(get_colormap(name).qualified)(t, bytes=True)[:, :3]
        assert np.array_equal(get_colormap(name).colours8(t.astype(np.float32)), expected)


def test_auto_is_diverging_for_signed_maps_only() -> None:
    assert choose_colormap("auto", -0.5, 2.0).diverging
    assert choose_colormap(None, 0.0, 2.0).name == "viridis"
    # an all-negative map is diverging too (issue 21): on viridis its least negative value would be yellow
    assert choose_colormap("auto", -2.0, 0.0).name == "RdBu_r"
    assert choose_colormap("auto", -2.0, -1.0).name == "RdBu_r"
    assert choose_colormap("magma", -1.0, 1.0).name == "magma"


def test_unknown_name_lists_close_matches() -> None:
    with pytest.raises(SpecError) as caught:
        get_colormap("virdis")
    assert "viridis" in str(caught.value) and "`colormap`" in str(caught.value)
    with pytest.raises(SpecError, match="RdBu"):
        get_colormap("rdbuu_r")


def test_percentile_range_is_numpys() -> None:
    values = np.random.default_rng(3).standard_normal((64, 80, 1)).astype(np.float32)
    shown = display_range(values, "percentile", percentiles=(2.5, 97.5))
    low, high = np.percentile(values, [2.5, 97.5])
    assert (shown.low, shown.high) == (float(low), float(high))
    assert shown.method == "percentiles 2.5-97.5"
    centred = display_range(values, "percentile", centred=True)
    peak = max(abs(v) for v in np.percentile(values, [1, 99]))
    assert centred.low == -peak and centred.high == peak


@pytest.mark.parametrize("text", ["99,1", "1", "a,b", "-1,50", "1,101", "5,5"])
def test_bad_percentiles(text: str) -> None:
    with pytest.raises(SpecError, match="`percentiles`"):
        parse_percentiles(text)


def test_gray_percentile_pixels() -> None:
    values = np.arange(1001, dtype=np.float32).reshape(7, 143, 1)  # 0..1000: percentiles 1-99 are 10 and 990
    drawn = map_pixels(values, "percentile")
    assert (drawn.shown.low, drawn.shown.high) == (10.0, 990.0)
    flat = drawn.pixels.reshape(-1)
    assert flat[:11].tolist() == [0] * 11 and flat[990:].tolist() == [255] * 11
    assert flat[255] == round((255 - 10) / 980 * 255) == 64


def test_colormapped_png_pixels_are_cmaps_colours(runner: CliRunner, tmp_path: Path) -> None:
    """Identity kernel on an 8-bit ramp with --normalize clip: the map is the input, t = v / 255 exactly."""
    ramp = np.tile(np.arange(256, dtype=np.uint8), (4, 1))
    Image.fromarray(ramp).save(tmp_path / "ramp.png")
    out = tmp_path / "out"
    result = invoke(
        runner, "apply", tmp_path / "ramp.png", "-k", "identity", "--padding", "same", "--normalize", "clip",
        "--colormap", "magma", "-o", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    pixels = read_png(out / "ramp" / "identity.png")
    t = ramp.astype(np.float32) * np.float32(1 / 255)
    expected = CmapColormap("magma")(t.astype(np.float64), bytes=True)[..., :3]
    assert np.array_equal(pixels, expected)


def test_auto_centres_signed_maps_at_zero(runner: CliRunner, tmp_path: Path) -> None:
    image = np.zeros((9, 9), dtype=np.uint8)
    image[:, 5:] = 255  # a vertical step: sobel_x is +4 on one side of it, 0 far from it
    Image.fromarray(image).save(tmp_path / "step.png")
    out = tmp_path / "out"
    args = ["apply", tmp_path / "step.png", "-k", "sobel_x", "-k", "box_3", "--colormap", "auto", "--raw", "npy"]
    result = invoke(runner, *args, "--padding", "same", "--pad-mode", "replicate", "-o", out, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    sobel, box = report["maps"]
    values = np.load(out / "step" / "sobel_x.npy")
    assert values.min() == 0 and values.max() == 4  # one sign: sequential viridis
    assert sobel["mapped"]["colormap"] == "bids:viridis"
    assert box["mapped"]["colormap"] == "bids:viridis"
    # the same step flipped gives a negative edge: diverging, centred at 0, so 0 is the middle colour
    Image.fromarray(255 - image).save(tmp_path / "step.png")
    result = invoke(runner, *args, "--padding", "same", "--pad-mode", "replicate", "-o", out, "--json", "--overwrite")
    sobel = json.loads(result.output)["maps"][0]
    assert sobel["mapped"]["colormap"] == "colorbrewer:RdBu_r"  # all <= 0: diverging, never viridis
    signed = np.array([[-2.0, 0.0, 1.0]], np.float32)[:, :, None]
    drawn = map_pixels(signed, "minmax", colormap="auto")
    assert drawn.colormap is not None and drawn.colormap.name == "RdBu_r"
    assert (drawn.shown.low, drawn.shown.high) == (-2.0, 2.0)
    lut = CmapColormap("colorbrewer:RdBu").reversed()
    assert drawn.pixels[0].tolist() == lut(np.array([0.0, 0.5, 0.75]), bytes=True)[:, :3].tolist()


def test_table_and_json_say_the_mapped_range(runner: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "out"
    photo = Path(__file__).resolve().parent.parent / "samples" / "camera.png"
    args = ["apply", photo, "-k", "sobel_x", "--normalize", "percentile", "--percentiles", "2,98", "--raw", "npy"]
    result = invoke(runner, *args, "-o", out)
    assert result.exit_code == 0
    values = np.load(out / "camera" / "sobel_x.npy")
    low, high = np.percentile(values, [2, 98])
    assert "mapped" in result.output and "(percentiles 2-98)" in result.output
    assert f"{low:.4g} to {high:.4g}" in result.output
    data = json.loads(invoke(runner, *args, "-o", out, "--json").output)
    assert data["maps"][0]["mapped"]["low"] == pytest.approx(low, rel=1e-6)
    assert data["maps"][0]["mapped"]["high"] == pytest.approx(high, rel=1e-6)


def test_colormap_errors(runner: CliRunner, tmp_path: Path, gray_png: Path) -> None:
    result = runner.invoke(cli, ["apply", str(gray_png), "-k", "sobel_x", "--colormap", "virdis", "-o", str(tmp_path)])
    assert result.exit_code == 1
    assert "unknown colormap 'virdis'; did you mean viridis" in result.stderr
    assert result.stderr.count("\n") == 1
    result = runner.invoke(
        cli, ["apply", str(gray_png), "-k", "sobel_x", "--colormap", "gray", "--bit-depth", "16", "-o", str(tmp_path)]
    )
    assert result.exit_code == 1 and "8-bit" in result.stderr
    assert not list(tmp_path.glob("**/*.png"))[1:]  # nothing but the fixture was written
