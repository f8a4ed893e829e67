"""featmap.core.samples: an 8-bit gray image kept as its samples gives the maps of its float values bit for bit,
on the band path (converted a band at a time) and on every whole-image path; and a big photo's run through the
writers never holds the float image."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import featmap
from featmap.core.samples import ScaledSamples, as_floats
from featmap.io.discover import InputImage
from featmap.io.images import load_image
from featmap.kernels import KernelLibrary
from featmap.net.layers import Act, Conv2d, Pool2d
from featmap.run import fused
from featmap.run.imagejob import process_image
from featmap.run.pipeline import iter_feature_maps

KERNELS = ["sobel_x", "laplacian_4", "gaussian:size=5,sigma=1"]
BANK = KernelLibrary(use_env=False).bank(KERNELS)


def _samples(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ramp = np.cumsum(rng.integers(0, 4, shape), axis=1) % 256
    return np.clip(ramp + rng.integers(-20, 21, shape), 0, 255).astype(np.uint8)[:, :, None]


def test_rows_and_floats_are_the_samples_over_255() -> None:
    samples = np.arange(256, dtype=np.uint8).reshape(16, 16, 1)
    image = ScaledSamples(samples)
    expect = np.multiply(samples, np.float32(1 / 255), dtype=np.float32)
    assert image.shape == (16, 16, 1) and image.ndim == 3 and image.dtype == np.float32
    np.testing.assert_array_equal(image.floats(), expect)
    np.testing.assert_array_equal(np.concatenate([image.rows(0, 5), image.rows(5, 16)]), expect)
    assert image.floats()[255 // 16, 255 % 16, 0] == np.float32(1.0) and image.floats()[0, 0, 0] == 0
    np.testing.assert_array_equal(as_floats(image), expect)
    assert as_floats(expect) is expect


@pytest.mark.parametrize(
    ("conv", "act", "pool", "combine"),
    [
        (Conv2d(padding="same"), Act("relu"), Pool2d("max", 2), None),  # the band path
        (Conv2d(padding="valid", pad_mode="reflect"), Act("tanh"), None, None),  # the band path, no pool
        (Conv2d(padding="same", stride=(2, 2)), Act("relu"), None, None),  # whole image: stride
        (Conv2d(padding="same"), Act("abs"), Pool2d("avg", 3, 1), None),  # whole image: overlapping pool
        (Conv2d(padding="same"), Act("none"), None, "magnitude"),  # whole image: a combined map
    ],
)
def test_samples_give_the_maps_of_their_floats(
    conv: Conv2d, act: Act, pool: Pool2d | None, combine: str | None
) -> None:
    samples = _samples((301, 250))
    floats = np.multiply(samples, np.float32(1 / 255), dtype=np.float32)
    assert fused.fits(ScaledSamples(samples), conv, pool, combine) == fused.fits(floats, conv, pool, combine)
    from_samples = list(iter_feature_maps(ScaledSamples(samples), BANK, conv, act, pool, combine=combine))
    from_floats = list(iter_feature_maps(floats, BANK, conv, act, pool, combine=combine))
    assert len(from_samples) == len(from_floats) == 3 + (combine is not None)
    for a, b in zip(from_samples, from_floats, strict=True):
        assert a.values.dtype == np.float32
        np.testing.assert_array_equal(a.values, b.values)
        assert a.info == b.info


def test_eight_bit_gray_loads_as_samples(tmp_path: Path) -> None:
    samples = _samples((40, 30))
    Image.fromarray(samples[:, :, 0]).save(tmp_path / "g.png")
    Image.fromarray(np.repeat(samples, 3, axis=2)).save(tmp_path / "c.jpg", quality=90)
    Image.fromarray(np.repeat(samples, 3, axis=2)).save(tmp_path / "c.png")
    gray = load_image(tmp_path / "g.png")
    assert isinstance(gray.data, ScaledSamples)
    np.testing.assert_array_equal(gray.data.samples, samples)
    np.testing.assert_array_equal(gray.pixels, np.multiply(samples, np.float32(1 / 255), dtype=np.float32))
    assert isinstance(load_image(tmp_path / "c.jpg").data, ScaledSamples)  # a JPEG's luma plane
    assert isinstance(load_image(tmp_path / "c.png").data, np.ndarray)  # luma computed in float
    for name in ("c.jpg", "c.png"):  # colour kept: 8-bit RGB as its samples too
        colour = load_image(tmp_path / name, color=True)
        assert isinstance(colour.data, ScaledSamples) and colour.data.shape == (40, 30, 3)
        np.testing.assert_array_equal(colour.pixels, np.multiply(colour.data.samples, np.float32(1 / 255)))
    np.testing.assert_array_equal(load_image(tmp_path / "c.png", color=True).data.samples, np.repeat(samples, 3, 2))


def test_a_big_photos_run_never_holds_the_float_image(tmp_path: Path) -> None:
    """One gray 2400×1600 JPEG through `featmap apply`'s run (5 kernels, 2×2 max pool, PNG writer), in units of
    one pooled float32 map (H·W bytes, as much as the 8-bit image): the image's samples, the map being written and
    the PNG's filtered rows and deflate output (measured 2.37 maps). It is the second image of the run's thread,
    as in a batch: the per-thread band buffers (the conv's and the source rows', about 1M values each, whatever
    the image) were made by the first. The float image alone would be 4 maps; before, it was held with two maps
    at once (6.55 maps)."""
    height, width = 1600, 2400
    path = tmp_path / "big.jpg"
    Image.fromarray(np.repeat(_samples((height, width), 3), 3, axis=2)).save(path, quality=90)
    kernels = [*KERNELS, "sobel_y", "laplacian_8"]
    options = featmap.ApplyOptions(padding="same", activation="relu", pool="max", out_dir=tmp_path / "first")
    process_image(InputImage(path, Path(), "first"), featmap.build_job(kernels, options=options))
    options = featmap.ApplyOptions(padding="same", activation="relu", pool="max", out_dir=tmp_path / "out")
    job = featmap.build_job(kernels, options=options)
    map_bytes = (height // 2) * (width // 2) * 4
    tracemalloc.start()
    try:
        result = process_image(InputImage(path, Path(), "big"), job)  # apply_file would read a manifest too
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(result.maps) == 5 and result.input.gray == "JPEG luma plane"
    assert peak < 3 * map_bytes, f"peak {peak / map_bytes:.2f} maps"
