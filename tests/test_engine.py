"""featmap.core.engine: every strategy (OpenCV, im2col, separable, FFT) equals the numpy direct tap walk, the
reference, to 1e-5 of the largest output on every padding mode, padding form, stride and dilation."""

from __future__ import annotations

import math
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from featmap import conv2d
from featmap.core.cvfilter import opencv
from featmap.core.engine import _pick
from featmap.core.geometry import conv_geometry
from featmap.core.kernelmath import rank1_factors
from featmap.errors import ShapeError, SpecError
from featmap.kernels.generators import gaussian

MODES = ["zeros", "reflect", "symmetric", "replicate", "circular"]
needs_opencv = pytest.mark.skipif(opencv() is None, reason="OpenCV (opencv-python-headless) not importable")


def float32_rounding(x: np.ndarray, k: np.ndarray) -> float:
    """How far a float32 sum of ``k.size`` products may round: sqrt(taps) * eps * the largest output could be."""
    scale = float(np.abs(x).max() * np.abs(k).sum())
    return math.sqrt(k.size) * float(np.finfo(np.float32).eps) * scale


def assert_agree(got: np.ndarray, ref: np.ndarray, floor: float = 1e-30) -> None:
    """Equal to 1e-5 relative to the largest output, the issue's agreement contract. ``floor`` bounds the
    tolerance from below where the exact output is all zeros (rounding then shows as ~1e-16, not 0)."""
    assert got.shape == ref.shape and got.dtype == ref.dtype
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * max(float(np.abs(ref).max()), floor))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("stride", [1, 2, (3, 1)])
@pytest.mark.parametrize("dilation", [1, (2, 1)])
@pytest.mark.parametrize("method", ["separable", "fft"])
def test_methods_agree_with_direct(mode: str, stride: object, dilation: object, method: str) -> None:
    rng = np.random.default_rng(11)
    x = rng.random((23, 29, 2), dtype=np.float32)
    k = np.outer(rng.standard_normal(5), rng.standard_normal(3)).astype(np.float32)  # rank 1, non-square
    kwargs = {"stride": stride, "dilation": dilation, "padding": "same", "pad_mode": mode}
    ref = conv2d(x, k, method="direct", **kwargs)  # type: ignore[arg-type]
    got = conv2d(x, k, method=method, **kwargs)  # type: ignore[arg-type]
    assert got.shape == ref.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * float(np.abs(ref).max()))


def test_large_kernel_fft_matches_scipy_in_float64() -> None:
    rng = np.random.default_rng(3)
    x = rng.random((64, 70))
    k = rng.standard_normal((31, 31))
    got = conv2d(x, k, padding="same", pad_mode="symmetric")[..., 0]
    np.testing.assert_allclose(got, ndimage.correlate(x, k, mode="reflect"), rtol=1e-10, atol=1e-10)


def test_integer_kernels_factor_exactly() -> None:
    sobel = np.array([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]])
    column, row = rank1_factors(sobel)  # type: ignore[misc]
    assert sorted(map(abs, column.tolist())) == [1.0, 1.0, 2.0] and sorted(map(abs, row.tolist())) == [0.0, 1.0, 1.0]
    np.testing.assert_array_equal(np.outer(column, row), sobel)
    x = np.arange(64.0).reshape(8, 8)
    np.testing.assert_array_equal(conv2d(x, np.ones((3, 3))), conv2d(x, np.ones((3, 3)), method="direct"))


def test_auto_picks() -> None:
    g3 = conv_geometry((100, 100), 3)
    assert _pick(np.array([[0.0, 1, 0], [1, -4, 1], [0, 1, 0]]), g3) == "direct"
    assert _pick(gaussian(size=15, sigma=3.0), conv_geometry((100, 100), 15)) == "separable"
    big = np.random.default_rng(0).standard_normal((15, 15))
    assert _pick(big, conv_geometry((100, 100), 15)) == "fft"
    assert _pick(big, conv_geometry((100, 100), 15, stride=2)) == "direct"  # 225 / 4 taps per output


def test_forcing_separable_on_a_full_rank_kernel_falls_back() -> None:
    x = np.random.default_rng(1).random((9, 9))
    lap = [[0, 1, 0], [1, -4, 1], [0, 1, 0]]
    np.testing.assert_allclose(conv2d(x, lap, method="separable"), conv2d(x, lap, method="direct"))


def test_unknown_method() -> None:
    with pytest.raises(SpecError, match="unknown method 'winograd'"):
        conv2d(np.ones((5, 5)), np.ones((3, 3)), method="winograd")


# Kernels that take every OpenCV route: filter2D (full rank, odd and even sizes), sepFilter2D (rank 1),
# a single row, and a 13×13 that filter2D computes with its DFT.
_RNG = np.random.default_rng(5)
KERNELS = {
    "3x3": _RNG.standard_normal((3, 3)),
    "2x4": _RNG.standard_normal((2, 4)),
    "rank1_5x3": np.outer(_RNG.standard_normal(5), _RNG.standard_normal(3)),
    "1x3": _RNG.standard_normal((1, 3)),
    "13x13": _RNG.standard_normal((13, 13)),
}
PADDINGS = ["same", "valid", "full", (1, 0, 2, 3), 4]


@needs_opencv
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("stride", [1, 2, (3, 1), (1, 2)])
@pytest.mark.parametrize("dilation", [1, 2])
@pytest.mark.parametrize("kernel", list(KERNELS))
def test_opencv_agrees_with_direct(mode: str, stride: object, dilation: int, kernel: str) -> None:
    rng = np.random.default_rng(zlib.crc32(repr((mode, stride, dilation, kernel)).encode()))  # same every run
    x = rng.standard_normal((37, 41)).astype(np.float32)
    k = KERNELS[kernel].astype(np.float32)
    for padding in PADDINGS:
        kwargs = {"stride": stride, "dilation": dilation, "padding": padding, "pad_mode": mode}
        try:
            ref = conv2d(x, k, method="direct", **kwargs)  # type: ignore[arg-type]
        except ShapeError:  # reflect padding as large as the input: refused by both
            with pytest.raises(ShapeError):
                conv2d(x, k, method="opencv", **kwargs)  # type: ignore[arg-type]
            continue
        got = conv2d(x, k, method="opencv", **kwargs)  # type: ignore[arg-type]
        assert_agree(got, ref, floor=float32_rounding(x, k) / 1e-5)  # every padding, not only the last


@needs_opencv
@pytest.mark.parametrize("mode", MODES)
def test_opencv_channels_pad_value_and_float64(mode: str) -> None:
    rng = np.random.default_rng(8)
    rgb = rng.random((19, 22, 3), dtype=np.float32)
    k = rng.standard_normal((3, 3)).astype(np.float32)
    # one kernel on every channel (one OpenCV call), a different kernel per channel, a pad value
    for weights in (k, rng.standard_normal((3, 1, 3, 3)).astype(np.float32)):
        for kwargs in ({"padding": "same"}, {"padding": 2, "pad_value": 0.7}, {"padding": "same", "stride": 2}):
            ref = conv2d(rgb, weights, method="direct", pad_mode=mode, groups=3, **kwargs)  # type: ignore[arg-type]
            assert_agree(conv2d(rgb, weights, method="opencv", pad_mode=mode, groups=3, **kwargs), ref)  # type: ignore[arg-type]
    x64 = rng.random((15, 16))
    got = conv2d(x64, k.astype(np.float64), method="opencv", padding="same", pad_mode=mode, stride=2)
    np.testing.assert_allclose(
        got,
        conv2d(x64, k.astype(np.float64), method="direct", padding="same", pad_mode=mode, stride=2),
        rtol=1e-12,
        atol=1e-12,
    )


@needs_opencv
@pytest.mark.parametrize("mode", MODES)
def test_opencv_gray_bank_written_in_place(mode: str) -> None:
    rng = np.random.default_rng(12)
    gray = rng.random((26, 33), dtype=np.float32)
    bank = rng.standard_normal((4, 1, 3, 3)).astype(np.float32)  # under 12 filters: one OpenCV call per map
    for padding in PADDINGS:
        for stride in (1, 2):
            kwargs = {"padding": padding, "stride": stride, "pad_mode": mode}
            try:
                ref = conv2d(gray, bank, method="direct", **kwargs)  # type: ignore[arg-type]
            except ShapeError:
                continue
            got = conv2d(gray, bank, **kwargs)  # type: ignore[arg-type]
            assert_agree(got, ref)
            assert got[..., 2].flags.c_contiguous  # maps stored one after another


@needs_opencv
def test_opencv_large_kernel_and_reference_scipy() -> None:
    rng = np.random.default_rng(31)
    x = rng.random((300, 280), dtype=np.float32)
    k = rng.standard_normal((31, 31)).astype(np.float32)
    got = conv2d(x, k, padding="same", pad_mode="symmetric", method="opencv")[..., 0]
    ref = ndimage.correlate(x.astype(np.float64), k.astype(np.float64), mode="reflect")
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5 * np.abs(ref).max())


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("stride", [1, 2, (1, 3)])
@pytest.mark.parametrize("dilation", [1, (2, 1)])
@pytest.mark.parametrize("groups", [1, 2])
def test_im2col_agrees_with_the_tap_walk(mode: str, stride: object, dilation: object, groups: int) -> None:
    rng = np.random.default_rng(groups)
    x = rng.random((45, 200, 4), dtype=np.float32)  # 200 columns: several bands, the last one short
    bank = rng.standard_normal((6, 4 // groups, 3, 2)).astype(np.float32)
    kwargs = {"stride": stride, "dilation": dilation, "padding": "same", "pad_mode": mode, "groups": groups}
    ref = conv2d(x, bank, method="direct", **kwargs)  # type: ignore[arg-type]
    assert_agree(conv2d(x, bank, method="im2col", **kwargs), ref)  # type: ignore[arg-type]
    assert_agree(conv2d(x, bank, **kwargs), ref)  # type: ignore[arg-type]  # auto: im2col


@pytest.mark.parametrize("stride", [1, 2, (1, 3)])
@pytest.mark.parametrize("dilation", [1, (2, 1), (1, 2)])
@pytest.mark.parametrize("groups", [1, 3])
def test_channel_last_im2col_agrees_with_the_tap_walk(
    stride: object, dilation: object, groups: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Filters over 8+ channels take the (H, W, C) im2col (one copy per kernel row); bands cut at the byte limit."""
    from featmap.core import gemm

    monkeypatch.setattr(gemm, "_HWC_BAND_BYTES", 20_000)  # a few rows per band, the last one short
    rng = np.random.default_rng(groups)
    x = rng.random((41, 37, 24), dtype=np.float32)
    bank = rng.standard_normal((9, 24 // groups, 3, 2)).astype(np.float32)
    kwargs = {"stride": stride, "dilation": dilation, "padding": "same", "groups": groups}
    ref = conv2d(x, bank, method="direct", **kwargs)  # type: ignore[arg-type]
    assert_agree(conv2d(x, bank, **kwargs), ref)  # type: ignore[arg-type]


def test_im2col_on_depthwise_and_on_a_gray_bank() -> None:
    rng = np.random.default_rng(4)
    x = rng.random((30, 31, 3), dtype=np.float32)
    k = rng.standard_normal((5, 5)).astype(np.float32)
    got = conv2d(x, k, method="im2col", padding="same", stride=2)
    assert_agree(got, conv2d(x, k, method="direct", padding="same", stride=2))
    gray = x[..., 0]
    bank = rng.standard_normal((16, 1, 3, 3)).astype(np.float32)  # 16 >= 12 filters: auto takes im2col
    assert_agree(conv2d(gray, bank, padding="same"), conv2d(gray, bank, padding="same", method="direct"))


def test_opencv_disabled_falls_back_to_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEATMAP_NO_OPENCV", "1")
    opencv.cache_clear()
    try:
        assert opencv() is None
        x = np.arange(36.0, dtype=np.float32).reshape(6, 6)
        out = conv2d(x, np.ones((3, 3)), padding="same", pad_mode="replicate")[..., 0]
        assert out[0, 0] == 0 + 0 + 1 + 0 + 0 + 1 + 6 + 6 + 7  # replicate: rows -1 and 0 are row 0
        with pytest.raises(SpecError, match="opencv was asked for"):
            conv2d(x, np.ones((3, 3)), method="opencv")
    finally:
        opencv.cache_clear()


def test_float32_gaussian_counts_as_rank_one() -> None:
    g64 = gaussian(size=15, sigma=2.5)
    assert rank1_factors(g64) is not None and rank1_factors(g64.astype(np.float32)) is not None
    noisy = g64 + 1e-4 * np.random.default_rng(0).standard_normal(g64.shape)
    assert rank1_factors(noisy.astype(np.float32)) is None  # rank 2 well above float32 rounding


def test_float64_kernel_with_a_small_second_component_is_not_rank_one() -> None:
    # Hypothesis found it: a 1e-9 second component was dropped as rounding, off by 2e-9 in a float64 conv
    k = np.array([[1.0, 1e-9], [1e-9, 1e-9]])
    assert rank1_factors(k) is None
    x = np.full((3, 3), 2.0)
    out = conv2d(x, k)[..., 0]
    np.testing.assert_allclose(out, 2.0 * k.sum(), rtol=0, atol=1e-15)


@needs_opencv
@settings(max_examples=150, deadline=None)
@given(
    hw=st.tuples(st.integers(1, 12), st.integers(1, 12)),
    khw=st.tuples(st.integers(1, 7), st.integers(1, 7)),
    stride=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    dilation=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    padding=st.one_of(st.sampled_from(["valid", "same", "full"]), st.tuples(*[st.integers(0, 6)] * 4)),
    mode=st.sampled_from(MODES),
    pad_value=st.sampled_from([0.0, -1.5]),
    channels=st.sampled_from([1, 3]),
    seed=st.integers(0, 2**16),
)
def test_opencv_agrees_with_direct_on_any_geometry(
    hw: tuple[int, int],
    khw: tuple[int, int],
    stride: tuple[int, int],
    dilation: tuple[int, int],
    padding: object,
    mode: str,
    pad_value: float,
    channels: int,
    seed: int,
) -> None:
    # Tiny images, kernels wider than the image, pads larger than it, every stride: each OpenCV route
    # (border rule, padded copy, row phases) against the reference, or both refuse the same geometry.
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((*hw, channels)).astype(np.float32)
    k = rng.standard_normal(khw).astype(np.float32)
    kwargs = {"stride": stride, "dilation": dilation, "padding": padding, "pad_mode": mode, "pad_value": pad_value}
    try:
        ref = conv2d(x, k, method="direct", **kwargs)  # type: ignore[arg-type]
    except ShapeError as exc:
        with pytest.raises(ShapeError) as again:
            conv2d(x, k, method="opencv", **kwargs)  # type: ignore[arg-type]
        assert str(again.value) == str(exc)
        return
    # an output that cancels far below the products' size (hypothesis found 0.0055 of a possible 36) is compared
    # at float32's rounding of the sum: there the direct reference itself is 3.5e-7 off float64
    got = conv2d(x, k, method="opencv", **kwargs)  # type: ignore[arg-type]
    assert_agree(got, ref, floor=float32_rounding(x, k) / 1e-5)
