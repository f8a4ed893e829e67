"""The two-pass band path for big maps (`featmap.run.fused.FusedBands`): a map only the PNG writer reads is never
held; its statistics come from one pass over its bands and its PNG from another, and both are the held map's, bit
for bit (values, statistics, pixels, PNG bytes, manifest records)."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

import featmap
from featmap.errors import FeatmapError
from featmap.io.discover import InputImage
from featmap.io.outputs import OutputOptions
from featmap.io.writers.png import PngWriter
from featmap.kernels import Kernel, KernelBank, KernelLibrary
from featmap.net.layers import Act, Conv2d, Pool2d
from featmap.net.records import BandedFeatureMap, FeatureMap
from featmap.run import fused
from featmap.run.imagejob import _bands_above, process_image
from featmap.run.pipeline import iter_feature_maps

LIB = KernelLibrary(use_env=False)


def _photo(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    ramp = np.cumsum(rng.random(shape, dtype=np.float32), axis=1)
    return (ramp / ramp.max() * 0.7 + rng.random(shape, dtype=np.float32) * 0.3)[:, :, None].astype(np.float32)


def _gray_jpeg(path: Path, shape: tuple[int, int], seed: int = 3) -> Path:
    rng = np.random.default_rng(seed)
    ramp = np.cumsum(rng.integers(0, 4, shape), axis=1) % 256
    gray = np.clip(ramp + rng.integers(-20, 21, shape), 0, 255).astype(np.uint8)
    Image.fromarray(np.repeat(gray[:, :, None], 3, axis=2)).save(path, quality=90)
    return path


@settings(max_examples=40)
@given(
    height=st.integers(128, 300),
    width=st.integers(1, 90),
    kernel=st.tuples(st.integers(1, 7), st.integers(1, 7)),
    padding=st.sampled_from(["valid", "same", "full", (2, 0, 1, 3)]),
    pad_mode=st.sampled_from(["zeros", "reflect", "symmetric", "replicate"]),
    act=st.sampled_from(["none", "relu", "leaky_relu", "abs", "tanh", "sigmoid", "relu6"]),
    pool=st.sampled_from([None, ("max", 2), ("min", 2), ("avg", 2), ("max", (4, 1))]),
    seed=st.integers(0, 2**16),
)
def test_bands_are_the_held_maps_values_and_statistics(
    height: int, width: int, kernel: tuple[int, int], padding, pad_mode: str, act: str, pool, seed: int
) -> None:
    """Random shapes, kernels, paddings, activations (those applied after a pool too) and tiling pools, on 64-row
    bands: the map given as bands (read twice: statistics, then values) equals the map the band path holds."""
    rng = np.random.default_rng(seed)
    image = _photo(rng, (height, width))
    weights = rng.standard_normal(kernel).astype(np.float32)
    if seed % 3 == 0:  # an outer product: OpenCV's sepFilter2D
        weights = np.outer(rng.standard_normal(kernel[0]), rng.standard_normal(kernel[1])).astype(np.float32)
    bank = KernelBank((Kernel("k", weights, bias=float(rng.standard_normal())), LIB["sobel_x"]))
    conv = Conv2d(padding=padding, pad_mode=pad_mode)
    pooling = None if pool is None else Pool2d(pool[0], pool[1])
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(fused, "BAND_VALUES", 1)
        try:
            held = list(iter_feature_maps(image, bank, conv, Act(act), pooling))
        except FeatmapError:
            return  # a geometry the image cannot take: not this test's subject
        banded = list(iter_feature_maps(image, bank, conv, Act(act), pooling, bands_above=0))
    for a, b in zip(banded, held, strict=True):
        assert isinstance(b, FeatureMap)
        if not fused.fits(image, conv, pooling, None, a.info.geometry):
            assert isinstance(a, FeatureMap)  # only the band path's maps come as bands
        else:
            assert isinstance(a, BandedFeatureMap)
        assert a.info == b.info  # the statistics too, to the bit
        np.testing.assert_array_equal(a.values.view(np.uint32), b.values.view(np.uint32))
        if isinstance(a, BandedFeatureMap):
            np.testing.assert_array_equal(a.values.view(np.uint32), b.values.view(np.uint32))  # made again: same


def test_only_bigger_maps_come_as_bands() -> None:
    image = _photo(np.random.default_rng(0), (200, 100))
    bank = LIB.bank(["sobel_x"])
    pool = Pool2d("max", 2)
    (at,) = iter_feature_maps(image, bank, Conv2d(padding="same"), Act("relu"), pool, bands_above=100 * 50)
    (above,) = iter_feature_maps(image, bank, Conv2d(padding="same"), Act("relu"), pool, bands_above=100 * 50 - 1)
    assert isinstance(at, FeatureMap) and isinstance(above, BandedFeatureMap)
    (strided,) = iter_feature_maps(image, bank, Conv2d(padding="same", stride=2), Act("relu"), pool, bands_above=0)
    assert isinstance(strided, FeatureMap)  # not the band path: held as before
    combined = list(iter_feature_maps(image, LIB.bank(["sobel_x", "sobel_y"]), combine="magnitude", bands_above=0))
    assert all(isinstance(m, FeatureMap) for m in combined)  # a combine reads every conv output whole


@pytest.mark.parametrize(("normalize", "bit_depth"), [("minmax", 8), ("minmax", 16), ("clip", 8), ("abs", 8)])
def test_png_of_bands_is_the_png_of_the_held_map(tmp_path: Path, normalize: str, bit_depth: int) -> None:
    """The writer quantises the bands with the range the statistics give (`display_scale` of the map's min and
    max): the same pixels, hence the same bytes, as the held map's PNG."""
    image = _photo(np.random.default_rng(1), (300, 77)) * 3 - 1
    bank = LIB.bank(["laplacian_4"])
    files = {}
    for name, above in (("held", None), ("bands", 0)):
        (fmap,) = iter_feature_maps(image, bank, Conv2d(padding="same"), Act("none"), None, bands_above=above)
        options = OutputOptions(tmp_path / name, normalize=normalize, bit_depth=bit_depth)
        files[name] = PngWriter(options).add(tmp_path / name / "map.png", fmap).read_bytes()
    assert files["bands"] == files["held"]
    decoded = np.asarray(Image.open(tmp_path / "bands" / "map.png"))
    assert decoded.dtype == (np.uint8 if bit_depth == 8 else np.uint16) and decoded.shape == (300, 77)


def test_only_a_png_only_run_takes_bands(tmp_path: Path) -> None:
    """Maps are read as bands only when the PNG writer is their only reader and needs no whole map: a raw array,
    a sheet or report, percentiles or a colormap keep today's held maps."""
    assert _bands_above(OutputOptions(tmp_path)) == fused.TWO_PASS_ABOVE
    assert _bands_above(OutputOptions(tmp_path, normalize="symmetric", bit_depth=16)) == fused.TWO_PASS_ABOVE
    for held in (
        OutputOptions(tmp_path, raw="npy"),
        OutputOptions(tmp_path, sheet=True),
        OutputOptions(tmp_path, report=True),
        OutputOptions(tmp_path, normalize="percentile"),
        OutputOptions(tmp_path, colormap="auto"),
    ):
        assert _bands_above(held) is None, held


def _run(path: Path, out: Path, monkeypatch: pytest.MonkeyPatch, above: int) -> tuple[dict, dict]:
    monkeypatch.setattr(fused, "TWO_PASS_ABOVE", above)
    kernels = ["sobel_x", "laplacian_4", "gaussian:size=5,sigma=1"]
    options = featmap.ApplyOptions(padding="same", activation="relu", pool="max", out_dir=out)
    featmap.apply_file(path, featmap.build_job(kernels, options=options))
    files = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*.png")}
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    return files, {r["kernel"]: {k: v for k, v in r.items() if k not in ("started", "finished")} for r in records}


def test_a_run_in_two_passes_writes_what_one_pass_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`featmap apply` on a gray JPEG (8-bit samples, converted a band at a time) with every map above the
    threshold: the same PNG bytes and the same manifest records (statistics to the last digit) as held maps."""
    path = _gray_jpeg(tmp_path / "photo.jpg", (520, 300))
    one_files, one_records = _run(path, tmp_path / "one", monkeypatch, 1 << 40)
    two_files, two_records = _run(path, tmp_path / "two", monkeypatch, 0)
    assert len(one_files) == 3 and two_files == one_files
    assert two_records == one_records


def test_a_map_not_finite_is_refused_the_same_way_in_two_passes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kernel whose sums overflow float32: the statistics (from the bands) show it, the map is made whole once
    to say where, and the error is the held map's, word for word; nothing of it is written."""
    gray = np.zeros((200, 60), np.uint8)
    gray[150:, 7:] = 200
    path = tmp_path / "photo.png"
    Image.fromarray(gray).save(path)
    huge = [Kernel("huge", np.full((3, 3), 1e38, np.float32))]
    messages = []
    for above in (1 << 40, 0):
        monkeypatch.setattr(fused, "TWO_PASS_ABOVE", above)
        options = featmap.ApplyOptions(padding="same", out_dir=tmp_path / f"out{above}")
        with pytest.raises(FeatmapError) as error:
            featmap.apply_file(path, featmap.build_job(huge, options=options))
        messages.append(str(error.value))
        assert not list((tmp_path / f"out{above}").rglob("*.png"))
    # (150, 8) is the first window over 6 bright pixels: 6 · 1e38 · 200/255 = 4.7e38 > float32's 3.4e38; 4 give 3.1e38
    assert messages[0] == messages[1] and "inf first at row 150, column 8" in messages[0], messages


def test_a_big_photos_run_in_two_passes_holds_no_map(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One gray 3000×2000 JPEG through `featmap apply`'s run (3 kernels, 2×2 max pool, PNG writer) with its maps
    above the threshold, in units of one pooled float32 map (H·W bytes, as much as the 8-bit image): the image's
    samples, the statistics' two blocks (3 MB: 0.5 maps here) and a band or two, no map (held, a map more).
    Second image of the thread, as in a batch: the first made the per-thread band and PNG buffers."""
    height, width = 2000, 3000
    path = _gray_jpeg(tmp_path / "big.jpg", (height, width))
    monkeypatch.setattr(fused, "TWO_PASS_ABOVE", (height // 2) * (width // 2) - 1)
    kernels = ["sobel_x", "laplacian_4", "gaussian:size=5,sigma=1"]
    peaks = []
    for name in ("first", "big"):
        options = featmap.ApplyOptions(padding="same", activation="relu", pool="max", out_dir=tmp_path / name)
        job = featmap.build_job(kernels, options=options)
        tracemalloc.start()
        try:
            result = process_image(InputImage(path, Path(), name), job)
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
    assert len(result.maps) == 3 and result.input.gray == "JPEG luma plane"
    map_bytes = (height // 2) * (width // 2) * 4
    assert peaks[1] < 1.8 * map_bytes, f"peak {peaks[1] / map_bytes:.2f} maps"  # measured 1.61
