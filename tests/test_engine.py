"""featmap.engine: every strategy equals the direct tap walk, on every padding mode, stride and dilation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from featmap import conv2d
from featmap.engine import _pick, rank1_factors
from featmap.errors import SpecError
from featmap.generators import gaussian
from featmap.shapes import conv_geometry

MODES = ["zeros", "reflect", "symmetric", "replicate", "circular"]


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
