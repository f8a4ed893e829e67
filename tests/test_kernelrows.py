"""featmap.core.kernelrows: a stride-1 convolution as one BLAS product per kernel row, against a float64 tap walk
(paddings, dilations, non-square kernels, a constant pad value), to the bit against im2col on integer values (every
order of summing exact), in bands, only where it fits, and the engine's im2col where BLAS cannot be called."""

from __future__ import annotations

import numpy as np
import pytest

from featmap.core import gemm, kernelrows
from featmap.core.engine import correlate
from featmap.core.geometry import conv_geometry


def reference_conv(x: np.ndarray, bank: np.ndarray, quad: tuple[int, int, int, int], dilation: tuple[int, int],
                   value: float = 0.0) -> np.ndarray:  # fmt: skip
    """A stride-1 cross-correlation in float64, tap by tap over the padded input (``np.pad``)."""
    top, bottom, left, right = quad
    padded = np.pad(x.astype(np.float64), ((top, bottom), (left, right), (0, 0)), constant_values=value)
    n_out, _, kh, kw = bank.shape
    (dh, dw) = dilation
    ho, wo = padded.shape[0] - (kh - 1) * dh, padded.shape[1] - (kw - 1) * dw
    out = np.zeros((ho, wo, n_out))
    for i in range(kh):
        for j in range(kw):
            out += padded[i * dh : i * dh + ho, j * dw : j * dw + wo] @ bank[:, :, i, j].T.astype(np.float64)
    return out


@pytest.mark.parametrize(
    ("size", "channels", "filters", "kernel", "dilation", "padding", "value"),
    [
        ((21, 23), 64, 16, (3, 3), (1, 1), 1, 0.0),
        ((20, 20), 72, 8, (3, 5), (2, 1), (3, 1, 0, 4), -1.5),
        ((24, 21), 64, 32, (1, 3), (1, 3), (0, 0, 3, 3), 0.0),
        ((22, 20), 64, 8, (2, 2), (1, 1), "same", 0.0),
        ((20, 20), 64, 8, (3, 3), (1, 1), "valid", 0.0),
        ((7, 7), 128, 16, (3, 3), (1, 1), 1, 0.0),
        ((9, 9), 64, 8, (3, 3), (1, 1), (5, 0, 4, 0), 0.5),  # whole window rows and columns in the padding
    ],
)
def test_kernel_row_conv_equals_a_float64_tap_walk(size, channels, filters, kernel, dilation, padding, value) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(11)
    x = rng.standard_normal((*size, channels)).astype(np.float32)
    bank = rng.standard_normal((filters, channels, *kernel)).astype(np.float32)
    bias = rng.standard_normal(filters).astype(np.float32)
    g = conv_geometry(size, kernel, stride=(1, 1), padding=padding, dilation=dilation)
    gemm.workspace("kernel-rows", (64, 64, channels), np.dtype(np.float32)).fill(np.nan)  # stale workspace
    got = kernelrows.kernel_row_conv(x, bank, g, bias, value)
    if got is None:
        pytest.skip("numpy's BLAS is not an OpenBLAS whose cblas_sgemm featmap can call")
    want = reference_conv(x, bank, g.padding, dilation, value) + bias
    assert got.shape == want.shape == (*g.out_hw, filters) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-5 * np.abs(want).max())
    # integers: every partial sum exact in float32, so any order of summing gives the same bits as im2col's
    ints, int_bank = np.round(x * 4), np.round(bank * 2)
    exact = kernelrows.kernel_row_conv(ints, int_bank, g, None, round(value))
    assert exact is not None
    padded = gemm.constant_padded(ints, g.padding, round(value))
    assert exact.tobytes() == gemm.im2col_hwc(padded, int_bank, g).tobytes()


def test_kernel_row_conv_in_bands_equals_one_band(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(12)
    x = rng.standard_normal((30, 9, 64)).astype(np.float32)
    bank = rng.standard_normal((8, 64, 3, 3)).astype(np.float32)
    g = conv_geometry((30, 9), (3, 3), stride=(1, 1), padding=1, dilation=(2, 1))
    whole = kernelrows.kernel_row_conv(x, bank, g)
    if whole is None:
        pytest.skip("numpy's BLAS is not an OpenBLAS whose cblas_sgemm featmap can call")
    whole = whole.copy()
    monkeypatch.setattr(kernelrows, "_KERNEL_ROWS_BAND_BYTES", 9 * 3 * 64 * 4 * 7)  # 3 output rows a band
    banded = kernelrows.kernel_row_conv(x, bank, g)
    assert banded is not None and banded.tobytes() == whole.tobytes()


def test_kernel_row_conv_runs_only_inside_kernel_row_sums_where_it_fits() -> None:
    x = np.ones((20, 20, 64), np.float32)
    same = conv_geometry((20, 20), (3, 3), stride=(1, 1), padding=1)
    assert not kernelrows.kernel_rows_fit(x, same, 1)
    with kernelrows.kernel_row_sums():
        assert kernelrows.kernel_rows_fit(x, same, 1)
        assert not kernelrows.kernel_rows_fit(x, conv_geometry((20, 20), (3, 3), stride=(2, 2), padding=1), 1)
        assert not kernelrows.kernel_rows_fit(x[:, :, :32], same, 1)  # few channels: im2col is as fast
        assert not kernelrows.kernel_rows_fit(x.astype(np.float64), same, 1)
        assert not kernelrows.kernel_rows_fit(x, same, 2)
    assert not kernelrows.kernel_rows_fit(x, same, 1)


def test_correlate_falls_back_to_im2col_where_blas_cannot_be_called(monkeypatch: pytest.MonkeyPatch) -> None:
    from featmap.core import blas

    rng = np.random.default_rng(4)
    x = rng.standard_normal((24, 24, 64)).astype(np.float32)
    bank = rng.standard_normal((16, 64, 3, 3)).astype(np.float32)
    g = conv_geometry((24, 24), (3, 3), stride=(1, 1), padding=1)
    plain = correlate(x, bank, g, 1)
    monkeypatch.setattr(blas, "_sgemm", lambda: None)
    with kernelrows.kernel_row_sums():
        assert kernelrows.kernel_row_conv(x, bank, g) is None
        assert correlate(x, bank, g, 1).tobytes() == plain.tobytes()


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "padding", "value"),
    [
        ((30, 27), (7, 7), (2, 2), 3, 0.0),
        ((17, 19), (5, 5), (2, 3), (2, 1, 0, 2), -0.5),
        ((12, 9), (5, 6), (3, 1), 0, 0.0),
    ],
)
def test_a_strided_rgb_stem_by_kernel_rows_equals_a_float64_tap_walk(size, kernel, stride, padding, value) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(13)
    x = rng.standard_normal((*size, 3)).astype(np.float32)
    bank = rng.standard_normal((16, 3, *kernel)).astype(np.float32)
    g = conv_geometry(size, kernel, stride=stride, padding=padding)
    with kernelrows.kernel_row_sums():
        assert kernelrows.kernel_rows_fit(x, g, 1)
    got = kernelrows.kernel_row_conv(x, bank, g, None, value)
    if got is None:
        pytest.skip("numpy's BLAS is not an OpenBLAS whose cblas_sgemm featmap can call")
    ho, wo = g.out_hw
    want = reference_conv(x, bank, g.padding, (1, 1), value)[:: stride[0], :: stride[1]][:ho, :wo]
    assert got.shape == want.shape == (ho, wo, 16)
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-5 * np.abs(want).max())
    ints, int_bank = np.round(x * 4), np.round(bank * 2)  # exact sums: the engine's im2col to the bit
    exact = kernelrows.kernel_row_conv(ints, int_bank, g, None, round(value))
    assert exact is not None
    plain = correlate(ints, int_bank, g, 1, pad_value=round(value))
    assert exact.tobytes() == np.ascontiguousarray(plain).tobytes()


@pytest.mark.parametrize(
    ("size", "channels", "kernel", "stride", "padding", "value"),
    [
        ((30, 27), 3, (7, 7), (2, 2), 3, 0.0),
        ((17, 19), 4, (5, 5), (2, 3), (2, 1, 0, 2), -0.5),
        ((12, 9), 1, (5, 6), (3, 1), 0, 0.0),
        ((11, 14), 2, (6, 5), (1, 2), (4, 4, 5, 5), 1.5),  # windows wholly in the padding
    ],
)
def test_a_stems_window_rows_from_a_padded_copy_equal_the_tap_by_tap_copy(  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch, size, channels, kernel, stride, padding, value
) -> None:
    """Few channels: the window rows are copied from a padded copy, kw·C values a run; the same bits as copying a
    tap at a time from the unpadded input (the products and their order are the same)."""
    rng = np.random.default_rng(14)
    x = rng.standard_normal((*size, channels + 1)).astype(np.float32)[..., :channels]  # a view, not contiguous
    bank = rng.standard_normal((8, channels, *kernel)).astype(np.float32)
    g = conv_geometry(size, kernel, stride=stride, padding=padding)
    gemm.workspace("constant-padded", (64, 64, channels), np.dtype(np.float32)).fill(np.nan)  # stale workspace
    padded = kernelrows.kernel_row_conv(x, bank, g, None, value)
    if padded is None:
        pytest.skip("numpy's BLAS is not an OpenBLAS whose cblas_sgemm featmap can call")
    padded = padded.copy()
    monkeypatch.setattr(kernelrows, "constant_padded", lambda *_: None)  # the tap-by-tap copy
    tapwise = kernelrows.kernel_row_conv(x, bank, g, None, value)
    assert tapwise is not None and padded.tobytes() == tapwise.tobytes()
