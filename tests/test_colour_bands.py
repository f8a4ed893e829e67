"""A colour image's depthwise maps (``--color``: a 2-D kernel on each channel) made band by band: the values, the
statistics and the PNG bytes of the whole-image path, bit for bit, from 8-bit RGB samples or float RGB, with OpenCV
or without; a network's depthwise conv on three channels alike."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import featmap
from featmap.core import cvfilter
from featmap.core.samples import ScaledSamples
from featmap.kernels import Kernel, KernelBank, KernelLibrary
from featmap.net.layers import Act, Conv2d, Pool2d
from featmap.net.records import BandedFeatureMap, FeatureMap
from featmap.run import fused
from featmap.run.pipeline import iter_feature_maps

LIBRARY = KernelLibrary(use_env=False)
BIASED = Kernel("biased", np.array([[1, -2, 0.5], [0.25, 3, -1], [0, 1, -1.5]], np.float32), bias=0.125)
BANK = KernelBank((*LIBRARY.bank(["sobel_x", "laplacian_4", "gaussian:size=5,sigma=1", "sobel_y"]), BIASED))


def _rgb(height: int, width: int, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ramp = np.cumsum(rng.integers(0, 4, (height, width, 3)), axis=1) % 256
    return np.clip(ramp + rng.integers(-30, 31, (height, width, 3)), 0, 255).astype(np.uint8)


def _whole(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEATMAP_FUSED", "0")  # the whole-image path, the reference


CASES = [
    (Conv2d(padding="same"), Act("relu"), Pool2d("max", 2)),
    (Conv2d(padding="valid", pad_mode="reflect"), Act("tanh"), None),
    (Conv2d(padding="same", pad_mode="replicate"), Act("abs"), Pool2d("max", 2)),  # activation before the pool
    (Conv2d(padding="full", pad_mode="symmetric"), Act("leaky_relu", (("slope", 0.2),)), Pool2d("avg", 2)),
    (Conv2d(padding="same"), Act("none"), Pool2d("min", 4)),
    (Conv2d(padding="same", flip=True), Act("sigmoid"), None),
]


@pytest.mark.parametrize(("conv", "act", "pool"), CASES)
@pytest.mark.parametrize("opencv", [True, False])
def test_colour_bands_give_the_whole_image_maps(
    conv: Conv2d, act: Act, pool: Pool2d | None, opencv: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Several bands (301 rows of 250 RGB pixels: 128-row bands and a longer last one), five kernels (separable,
    not, 5×5, with a bias), 8-bit samples and floats, against the whole-image path of the float image."""
    if not opencv:
        monkeypatch.setattr(cvfilter, "opencv", lambda: None)
    samples = _rgb(301, 250)
    floats = np.multiply(samples, np.float32(1 / 255), dtype=np.float32)
    probe = Conv2d(filters=3, groups=3, kernel=(3, 3))
    assert fused.fits(ScaledSamples(samples), probe, pool, None) and fused.fits(floats, probe, pool, None)
    from_samples = list(iter_feature_maps(ScaledSamples(samples), BANK, conv, act, pool))
    from_floats = list(iter_feature_maps(floats, BANK, conv, act, pool))
    as_bands = list(iter_feature_maps(ScaledSamples(samples), BANK, conv, act, pool, bands_above=0))
    _whole(monkeypatch)
    whole = list(iter_feature_maps(floats, BANK, conv, act, pool))
    assert len(whole) == len(BANK)
    for a, b, c, ref in zip(from_samples, from_floats, as_bands, whole, strict=True):
        assert isinstance(c, BandedFeatureMap) and isinstance(ref, FeatureMap)
        assert ref.values.shape[2] == 3 and ref.values.dtype == np.float32
        np.testing.assert_array_equal(a.values, ref.values)
        np.testing.assert_array_equal(b.values, ref.values)
        np.testing.assert_array_equal(np.concatenate([band.copy() for band in c.bands.bands()]), ref.values)
        assert a.info == b.info == c.info == ref.info  # statistics too (one pass over the bands for c)


@pytest.mark.parametrize("filters", [3, 6])
def test_a_depthwise_conv_of_its_own_kernels_goes_band_by_band_plane_by_plane(filters: int) -> None:
    """A network's depthwise conv on three channels, a kernel of its own for each filter (one or two a channel):
    each band's planes filtered as the whole image's are (no shared kernel, so no one call on the interleaved
    channels)."""
    rng = np.random.default_rng(5)
    image = rng.random((290, 170, 3), dtype=np.float32)
    conv = Conv2d(filters=filters, groups=3, kernel=(3, 3), padding="same", pad_mode="reflect")
    plan = conv.plan((290, 170, 3))
    weights = {
        "weight": rng.standard_normal((filters, 1, 3, 3)).astype(np.float32),
        "bias": rng.standard_normal(filters).astype(np.float32),
    }
    assert plan.geometry is not None and fused.fits(image, conv, None, None, plan.geometry)
    run = fused.band_run(image, weights, conv, plan, Act(), None, (290, 170, filters), commutes=False)
    np.testing.assert_array_equal(fused.banded_map(run), conv.forward(image, plan, weights))
    summing = Conv2d(filters=1, kernel=(3, 3), padding="same")  # a filter over all three channels: never in bands
    assert not fused.fits(image, summing, None, None)


def _run(path: Path, out: Path, **options: object) -> list[dict[str, object]]:
    job = featmap.build_job(["sobel_x", "laplacian_4"], options=featmap.ApplyOptions(out_dir=out, **options))
    result = featmap.apply_file(path, job)
    return [dict(record) for record in result.records]


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_a_colour_files_pngs_and_records_are_the_whole_image_paths(
    tmp_path: Path, suffix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the command's run: maps held (small) and never held (`fused.FusedBands`, read twice), the same PNG
    bytes and manifest records as the whole-image path of the float image."""
    path = tmp_path / f"rgb{suffix}"
    Image.fromarray(_rgb(700, 900)).save(path, **({"quality": 90} if suffix == ".jpg" else {"compress_level": 1}))
    options = {"color": True, "padding": "same", "activation": "relu", "pool": "max"}
    held = _run(path, tmp_path / "held", **options)
    monkeypatch.setattr(fused, "TWO_PASS_ABOVE", 1000)
    banded = _run(path, tmp_path / "banded", **options)
    _whole(monkeypatch)
    whole = _run(path, tmp_path / "whole", **options)
    assert [r["shape"] for r in whole] == [[350, 450, 3]] * 2
    for records in (held, banded):
        assert [{k: v for k, v in r.items() if k != "png"} for r in records] == [
            {k: v for k, v in r.items() if k != "png"} for r in whole
        ]
    for name in ("sobel_x", "laplacian_4"):
        expect = (tmp_path / "whole" / "rgb" / f"{name}.png").read_bytes()
        assert (tmp_path / "held" / "rgb" / f"{name}.png").read_bytes() == expect
        assert (tmp_path / "banded" / "rgb" / f"{name}.png").read_bytes() == expect
