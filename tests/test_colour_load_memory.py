"""A colour image's load: its samples go from Pillow to float32 a band of rows at a time (no whole copy of them
beside Pillow's image and the float one), the values exactly those of the whole conversion, and an image whose
loading alone exceeds the memory limit is refused before it is decoded."""

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


def test_a_colour_load_holds_no_whole_copy_of_the_samples(tmp_path: Path) -> None:
    """Python-side allocations while loading (numpy reports to tracemalloc; Pillow's own image does not): the
    float image and bands, not the float image plus a whole copy of the 8-bit samples (3 bytes a pixel)."""
    height, width = 2000, 4000  # big enough that the bands (a few MB, whatever the size) are a small part
    path, _ = _rgb(tmp_path, height, width)
    floats = height * width * 3 * 4
    tracemalloc.start()
    try:
        image = load_image(path, color=True)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert image.pixels.nbytes == floats
    assert peak < floats + height * width * 3 // 2, peak  # before: floats + 3 bytes a pixel and the bands


def test_loading_is_checked_against_the_memory_limit_before_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, _ = _rgb(tmp_path, 300, 400)
    # Pillow's RGB image (4 bytes a pixel) and float32 RGB (12): 16 bytes a pixel; gray: 4 + 4
    assert load_bytes(400, 300, "RGB", color=True) == 400 * 300 * 16
    assert load_bytes(400, 300, "RGB", color=False) == 400 * 300 * 8
    assert load_bytes(400, 300, "L", color=False) == 400 * 300 * 2
    monkeypatch.setenv("FEATMAP_MAX_MEMORY", "1M")
    assert load_image(path).pixels.shape == (300, 400, 1)  # 937.5 KiB: within 1 MiB
    with pytest.raises(LimitError) as caught:
        load_image(path, color=True)
    message = str(caught.value)
    assert message.startswith(f"{path}: loading 400×300 RGB as float32 RGB: 1.83 MiB exceeds the memory limit")
    assert "FEATMAP_MAX_MEMORY=2M" in message and "\n" not in message


def test_the_command_refuses_it_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from featmap.cli import cli

    path, _ = _rgb(tmp_path, 300, 400)
    monkeypatch.setenv("FEATMAP_MAX_MEMORY", "1M")
    done = CliRunner().invoke(cli, ["apply", str(path), "--color", "-k", "sobel_x", "-o", str(tmp_path / "out")])
    assert done.exit_code == 1, done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith("featmap: error: ") and "loading 400×300 RGB as float32 RGB" in line
    assert not any((tmp_path / "out").rglob("*.png"))


@pytest.mark.xfail(
    strict=True,
    reason="run/groups + run/fused (the lead's): a colour image's depthwise kernel map is made on the whole float "
    "RGB image (fused.fits takes one channel only), so --color holds the float image and a 3-channel map whole "
    "(6000×4000 PNG, -k sobel_x: 912 MB peak); a per-plane band path would hold the 8-bit samples and bands",
)
def test_a_colour_kernel_map_is_made_band_by_band(tmp_path: Path) -> None:
    from featmap.batch_api import ApplyOptions, apply_file, build_job

    height, width = 1200, 1000
    path, _ = _rgb(tmp_path, height, width)
    job = build_job(["sobel_x"], options=ApplyOptions(color=True, out_dir=tmp_path / "out"))
    tracemalloc.start()
    try:
        apply_file(path, job)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    floats = height * width * 3 * 4
    assert peak < floats, peak  # the float RGB image is never held whole
