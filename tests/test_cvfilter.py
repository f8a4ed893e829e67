"""featmap.core.cvfilter.band_filter: the OpenCV call made ready once gives `correlate`'s bits on every band."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from featmap.core.cvfilter import band_filter, correlate, opencv
from featmap.core.geometry import conv_geometry
from featmap.enums import PaddingMode

pytestmark = pytest.mark.skipif(opencv() is None, reason="OpenCV (opencv-python-headless) not importable")


def _kernel(rng: np.random.Generator, shape: tuple[int, int], separable: bool) -> np.ndarray:
    if separable:
        return np.outer(rng.standard_normal(shape[0]), rng.standard_normal(shape[1])).astype(np.float32)
    return rng.standard_normal(shape).astype(np.float32)


@settings(max_examples=200, deadline=None)
@given(
    rows=st.integers(8, 40),
    width=st.integers(7, 40),
    kernel=st.tuples(st.sampled_from([1, 2, 3, 4, 5, 7]), st.sampled_from([1, 2, 3, 4, 5, 7])),
    padding=st.sampled_from(["valid", "same", "full", (2, 0, 1, 3), (0, 1, 0, 0), (1, 1, 2, 0)]),
    mode=st.sampled_from(list(PaddingMode)),
    pad_value=st.sampled_from([0.0, 0.0, 0.0, 0.5]),
    separable=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_a_ready_filter_gives_correlates_bits_on_any_band(
    rows: int,
    width: int,
    kernel: tuple[int, int],
    padding,
    mode: PaddingMode,
    pad_value: float,
    separable: bool,
    seed: int,
) -> None:
    """Bands of any height from an image of any geometry (the whole image's padding): where `band_filter` makes a
    filter, it returns `correlate`'s values on the band bit for bit, written into the band's buffer."""
    rng = np.random.default_rng(seed)
    weights = _kernel(rng, kernel, separable)
    whole = conv_geometry((200, width), kernel, padding=padding)
    ready = band_filter(weights, whole, mode, pad_value, np.float32)
    band = rng.random((rows, width), dtype=np.float32)
    geometry = conv_geometry((rows, width), kernel, padding=padding)
    top, bottom, left, right = geometry.padding
    reaches = top + bottom < kernel[0] and left + right < kernel[1]
    if mode is PaddingMode.REFLECT and (max(top, bottom) >= rows or max(left, right) >= width):
        return  # refused before any filtering (`featmap.core.engine.check_padding`)
    assert (ready is not None) == (reaches and mode is not PaddingMode.CIRCULAR and pad_value == 0)
    if ready is None:
        return
    buffer = np.full_like(band, np.nan)
    got = ready(band, buffer)
    expected = correlate(band, weights, geometry, mode, pad_value)
    assert got.shape == expected.shape == geometry.out_hw
    np.testing.assert_array_equal(got.view(np.uint32), expected.view(np.uint32))
    assert np.shares_memory(got, buffer)  # written where the band loop wants it, no copy
    np.testing.assert_array_equal(ready(band).view(np.uint32), expected.view(np.uint32))  # and without a buffer


def test_sobel_and_laplacian_are_ready_filters_and_zero_kernels_are_not() -> None:
    """A Sobel kernel factors (sepFilter2D with its rank-1 factors), the 4-neighbour Laplacian does not
    (filter2D); a kernel of zeros makes none (`correlate` returns zeros without OpenCV)."""
    cv2 = opencv()
    same = conv_geometry((64, 64), (3, 3), padding="same")
    sobel = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], np.float32)
    laplacian = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], np.float32)
    separable = band_filter(sobel, same, PaddingMode.ZEROS, 0.0, np.float32)
    full_rank = band_filter(laplacian, same, PaddingMode.REFLECT, 0.0, np.float32)
    assert separable is not None and separable.function is cv2.sepFilter2D
    assert [k.ravel().tolist() for k in separable.kernels] == [[1.0, -0.0, -1.0], [-1.0, -2.0, -1.0]]  # row, column
    assert full_rank is not None and full_rank.function is cv2.filter2D and full_rank.anchor == (1, 1)
    assert full_rank.border == cv2.BORDER_REFLECT_101
    assert band_filter(np.zeros((3, 3), np.float32), same, PaddingMode.ZEROS, 0.0, np.float32) is None
    strided = conv_geometry((64, 64), (3, 3), stride=2, padding="same")
    assert band_filter(sobel, strided, PaddingMode.ZEROS, 0.0, np.float32) is None
