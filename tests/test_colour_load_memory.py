"""A colour image's load and run: its samples go from Pillow to float32 a band of rows at a time (no whole copy of
them beside Pillow's image and the float one), the values exactly those of the whole conversion; 8-bit RGB kept as
colour stays 8-bit samples, and its kernel maps are made band by band (`featmap.run.fused`), never the float image
whole; an image whose loading alone exceeds the memory limit is refused before it is decoded."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from featmap.core.budget import load_bytes
from featmap.errors import LimitError
from featmap.io.images import LUMA_BT601, load_image


def _rgb(tmp_path: Path, height: int, width: int, mode: str = "RGB") -> tuple[Path, np.ndarray]:
    rng = np.random.default_rng(7)
    samples = rng.integers(0, 256, (height, width, len(mode)), dtype=np.uint8)
    path = tmp_path / f"{mode.lower()}.png"
    Image.fromarray(samples, mode=mode).save(path, compress_level=1)
    return path, samples


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_colour_and_gray_are_the_samples_over_255_as_before(tmp_path: Path, mode: str) -> None:
    """An independent conversion: samples × float32(1/255), alpha over white, BT.601 luma in float32."""
    path, samples = _rgb(tmp_path, 2500, 700, mode)  # several bands of rows
    scaled = np.multiply(samples, np.float32(1 / 255), dtype=np.float32)
    if mode == "RGBA":
        colour, alpha = scaled[:, :, :3], scaled[:, :, 3:]
        scaled = colour * alpha + np.float32(1.0) * (1 - alpha)
    colour = load_image(path, color=True).pixels
    assert colour.dtype == np.float32 and colour.shape == (2500, 700, 3)
    assert np.array_equal(colour, scaled)
    gray = load_image(path).pixels
    luma = scaled[:, :, 0] * np.float32(LUMA_BT601[0])
    luma += scaled[:, :, 1] * np.float32(LUMA_BT601[1])
    luma += scaled[:, :, 2] * np.float32(LUMA_BT601[2])
    assert gray.shape == (2500, 700, 1)
    np.testing.assert_allclose(gray[:, :, 0], luma, rtol=0, atol=2e-7)  # OpenCV's mix may round the last bit


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_a_colour_load_holds_no_whole_copy_of_the_samples(tmp_path: Path, mode: str) -> None:
    """Python-side allocations while loading (numpy reports to tracemalloc; Pillow's own image does not): 8-bit RGB
    kept as its samples, copied out of Pillow a band at a time (not Pillow's whole ``tobytes`` and its pieces); RGBA
    composited into the float image a band at a time (not the float image plus a whole copy of the samples)."""
    height, width = 2000, 4000  # big enough that the bands (a few MB, whatever the size) are a small part
    path, samples = _rgb(tmp_path, height, width, mode)
    tracemalloc.start()
    try:
        image = load_image(path, color=True)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    kept = height * width * 3 * (1 if mode == "RGB" else 4)  # 8-bit samples, or float32
    assert (image.data.samples if mode == "RGB" else image.data).nbytes == kept
    if mode == "RGB":
        np.testing.assert_array_equal(image.data.samples, samples)
    assert peak < kept + height * width * len(mode) // 2, peak  # before: kept + a whole copy (or two) of the samples


def test_loading_is_checked_against_the_memory_limit_before_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rgb, _ = _rgb(tmp_path, 300, 400)
    rgba, _ = _rgb(tmp_path, 300, 400, "RGBA")
    # Pillow's multi-band image (4 bytes a pixel), then what the load keeps: 8-bit RGB as its samples (3), colour
    # composited from alpha as float32 RGB (12), gray computed in float32 (4); 8-bit gray as its samples (1)
    assert load_bytes(400, 300, "RGB", color=True) == 400 * 300 * 7
    assert load_bytes(400, 300, "RGBA", color=True) == 400 * 300 * 16
    assert load_bytes(400, 300, "RGB", color=False) == 400 * 300 * 8
    assert load_bytes(400, 300, "L", color=False) == 400 * 300 * 2
    monkeypatch.setenv("FEATMAP_MAX_MEMORY", "1M")
    assert load_image(rgb).pixels.shape == (300, 400, 1)  # 937.5 KiB: within 1 MiB
    assert load_image(rgb, color=True).data.shape == (300, 400, 3)  # 820.3 KiB
    with pytest.raises(LimitError) as caught:
        load_image(rgba, color=True)
    message = str(caught.value)
    assert message.startswith(f"{rgba}: loading 400×300 RGBA as float32 RGB: 1.83 MiB exceeds the memory limit")
    assert "FEATMAP_MAX_MEMORY=2M" in message and "\n" not in message
    monkeypatch.setenv("FEATMAP_MAX_MEMORY", "800K")
    with pytest.raises(LimitError, match=r": loading 400×300 RGB as 8-bit RGB: 820 KiB exceeds the memory limit of "):
        load_image(rgb, color=True)


def test_the_command_refuses_it_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from featmap.cli import cli

    path, _ = _rgb(tmp_path, 300, 400, "RGBA")
    monkeypatch.setenv("FEATMAP_MAX_MEMORY", "1M")
    done = CliRunner().invoke(cli, ["apply", str(path), "--color", "-k", "sobel_x", "-o", str(tmp_path / "out")])
    assert done.exit_code == 1, done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith("featmap: error: ") and "loading 400×300 RGBA as float32 RGB" in line
    assert not any((tmp_path / "out").rglob("*.png"))


def _jpeg(tmp_path: Path, height: int, width: int) -> Path:
    rng = np.random.default_rng(11)
    ramp = np.cumsum(rng.integers(0, 3, (height, width, 3), dtype=np.uint8), axis=1, dtype=np.uint8)
    path = tmp_path / "rgb.jpg"
    Image.fromarray(ramp).save(path, quality=85)
    return path


@pytest.mark.parametrize(
    ("suffix", "pool", "kernels"),
    [
        (".png", None, ["sobel_x"]),
        (".png", "max", ["sobel_x", "laplacian_4"]),  # two kernels: one depthwise layer of six filters
        (".jpg", None, ["sobel_x", "laplacian_4"]),
        (".jpg", "max", ["sobel_x"]),
    ],
)
def test_a_colour_kernel_map_is_made_band_by_band(
    tmp_path: Path, suffix: str, pool: str | None, kernels: list[str]
) -> None:
    """Python-side allocations of a `--color -k …` run on a 2000×4000 RGB image (numpy reports to
    tracemalloc; Pillow's own image does not): the 8-bit samples (3 bytes a pixel) and bands, with the unpooled map
    never held (two passes) or the pooled one held (3 bytes a pixel): less than the float RGB image (12 bytes a
    pixel), which was held with the whole 3-channel map (24 bytes a pixel and more)."""
    from featmap.batch_api import ApplyOptions, apply_file, build_job

    height, width = 2000, 4000
    path = _rgb(tmp_path, height, width)[0] if suffix == ".png" else _jpeg(tmp_path, height, width)
    options = ApplyOptions(color=True, pool=pool, out_dir=tmp_path / "out")
    job = build_job(kernels, options=options)
    tracemalloc.start()
    try:
        result = apply_file(path, job)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [m.info.shape[2] for m in result.maps] == [3] * len(kernels)
    floats = height * width * 3 * 4
    # the float RGB image is never held whole: measured 0.47 / 0.35 of it unpooled (PNG / JPEG), 0.55 / 0.53 pooled
    # (the held map); before, 2 and more (the float image and the whole 3-channel map)
    assert peak < floats * 2 // 3, f"peak {peak / floats:.2f} of the float image"
