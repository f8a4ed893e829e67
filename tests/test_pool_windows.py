"""featmap.core.pool.pool_windows: a max or min pool whose windows overlap or are padded (resnet's 3×3/2 with a
pad of 1), folded window columns first, then window rows, picks the very cell the tap-by-tap fold picks: signed
zeros, infinities, ties and NaNs of two payloads, padded or not, strided, ceil mode, float32 and float64."""

from __future__ import annotations

import numpy as np
import pytest

from featmap.core.geometry import pool_geometry
from featmap.core.pool import pool_windows
from featmap.enums import PoolKind


def tap_fold(padded: np.ndarray, geometry, kind: PoolKind) -> np.ndarray:  # type: ignore[no-untyped-def]
    """The reference: every window's cells in row-major order, one ``np.maximum``/``np.minimum`` at a time."""
    reduce = np.maximum if kind is PoolKind.MAX else np.minimum
    (kh, kw), (dh, dw), (sh, sw), (ho, wo) = geometry.kernel_hw, geometry.dilation, geometry.stride, geometry.out_hw
    out = np.empty((ho, wo, padded.shape[2]), padded.dtype)
    for r in range(ho):
        for c in range(wo):
            cells = [padded[r * sh + i * dh, c * sw + j * dw] for i in range(kh) for j in range(kw)]
            acc = cells[0]
            for cell in cells[1:]:
                acc = reduce(acc, cell)
            out[r, c] = acc
    return out


def bits(a: np.ndarray) -> np.ndarray:
    return a.view(np.uint32 if a.dtype == np.float32 else np.uint64)


@pytest.mark.parametrize("kind", [PoolKind.MAX, PoolKind.MIN])
@pytest.mark.parametrize(
    ("size", "stride", "padding", "ceil_mode"),
    [((3, 3), (2, 2), 1, False), ((3, 3), (2, 2), 1, True), ((3, 3), (1, 1), "same", False),
     ((2, 3), (1, 2), "valid", False), ((3, 2), (2, 1), (1, 0, 1, 1), False), ((2, 2), (1, 1), "valid", True),
     ((1, 3), (1, 2), (0, 0, 1, 1), False), ((3, 1), (2, 1), (1, 1, 0, 0), False)],
)  # fmt: skip
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pool_windows_is_the_tap_fold_to_the_bit(kind, size, stride, padding, ceil_mode, dtype) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(size[0] * 31 + stride[0] * 7 + (dtype == np.float64))
    choices = np.array([0.0, -0.0, 1.0, -1.0, np.inf, -np.inf], dtype=np.float32)
    x = rng.choice(choices, size=(11, 13, 5)).astype(np.float32)
    nan_a, nan_b = np.array([0x7FC00001, 0xFFC00002], dtype=np.uint32).view(np.float32)
    x.reshape(-1)[rng.choice(x.size, size=x.size // 25, replace=False)] = nan_a
    x.reshape(-1)[rng.choice(x.size, size=x.size // 25, replace=False)] = nan_b
    x = x.astype(dtype)  # float64 keeps each NaN's sign and payload bits (widened)
    geometry = pool_geometry((11, 13), size, stride=stride, padding=padding, ceil_mode=ceil_mode)
    fill = -np.inf if kind is PoolKind.MAX else np.inf
    top, bottom, left, right = geometry.padding
    padded = np.pad(x, ((top, bottom), (left, right), (0, 0)), constant_values=fill)
    got = pool_windows(x, geometry, geometry.padding, kind)
    want = tap_fold(padded, geometry, kind)
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_array_equal(bits(got), bits(want))
    no_nan, padded_no_nan = (np.where(np.isnan(a), dtype(0), a) for a in (x, padded))
    got = pool_windows(no_nan, geometry, geometry.padding, kind)
    np.testing.assert_array_equal(bits(got), bits(tap_fold(padded_no_nan, geometry, kind)))


def test_resnet_stem_pool_by_hand() -> None:
    """3×3/2, pad 1, on 4×4: the padding never wins, even over -inf and -0."""
    x = np.array([[1, 5, 2, 0], [3, -1, 7, 4], [0, 2, 6, -2], [-5, 9, 1, 8]], np.float32)[..., None]
    x[0, 0, 0] = -np.inf
    geometry = pool_geometry((4, 4), 3, stride=2, padding=1)
    got = pool_windows(x, geometry, geometry.padding, PoolKind.MAX)[..., 0]
    assert got.tolist() == [[5.0, 7.0], [9.0, 9.0]]
    lone = np.full((1, 1, 1), -0.0, np.float32)
    one = pool_geometry((1, 1), 3, stride=2, padding=1)
    assert np.signbit(pool_windows(lone, one, one.padding, PoolKind.MAX)).all()  # -0, not the padding's -inf
