"""featmap.core.pool: hand-worked pools, TensorFlow 'same' semantics, PyTorch's count_include_pad."""

from __future__ import annotations

import numpy as np
import pytest

from featmap import global_pool, pool2d
from featmap.errors import ShapeError


def test_eight_by_eight_max_pool_two() -> None:
    x = np.arange(64, dtype=np.float32).reshape(8, 8)
    out = pool2d(x, 2)[..., 0]
    assert out.shape == (4, 4)
    np.testing.assert_array_equal(out, x[1::2, 1::2])  # the bottom-right of each block is the largest


def test_block_reduce_like_hand_example() -> None:
    x = np.arange(24, dtype=np.float64).reshape(4, 6)
    np.testing.assert_array_equal(pool2d(x, (2, 3), mode="avg")[..., 0], [[4, 7], [16, 19]])
    np.testing.assert_array_equal(pool2d(x, (2, 3), mode="min")[..., 0], [[0, 3], [12, 15]])


def test_overlapping_windows_stride() -> None:
    x = np.arange(25.0).reshape(5, 5)
    out = pool2d(x, 3, stride=2)[..., 0]
    np.testing.assert_array_equal(out, [[12, 14], [22, 24]])


def test_same_padding_never_lets_padding_win() -> None:
    x = -np.ones((3, 3))  # all negative: a zero pad would win a max
    out = pool2d(x, 2, padding="same", mode="max")
    assert out.shape == (2, 2, 1)
    assert np.all(out == -1)
    assert np.all(pool2d(np.ones((3, 3)), 2, padding="same", mode="min") == 1)


def test_same_average_excludes_padding_like_tensorflow() -> None:
    x = np.arange(9.0).reshape(3, 3)
    out = pool2d(x, 2, padding="same", mode="avg")[..., 0]
    # windows: [[0,1],[3,4]] -> 2; [[2],[5]] -> 3.5; [[6,7]] -> 6.5; [[8]] -> 8
    np.testing.assert_array_equal(out, [[2.0, 3.5], [6.5, 8.0]])
    pytorch = pool2d(x, 2, padding=(0, 1, 0, 1), mode="avg", count_include_pad=True)[..., 0]
    np.testing.assert_array_equal(pytorch, [[2.0, 7 / 4], [13 / 4, 2.0]])


def test_global_pool() -> None:
    x = np.arange(12.0).reshape(2, 3, 2)
    np.testing.assert_array_equal(global_pool(x, "avg").ravel(), [5.0, 6.0])
    np.testing.assert_array_equal(global_pool(x, "max").ravel(), [10.0, 11.0])
    assert global_pool(x.astype(np.float32), "min").dtype == np.float32


def test_padding_larger_than_half_window_is_refused() -> None:
    with pytest.raises(ShapeError, match="half the"):
        pool2d(np.ones((4, 4)), 2, padding=2)


def test_channels_pool_independently(rng: np.random.Generator) -> None:
    x = rng.random((6, 6, 3))
    out = pool2d(x, 3, mode="max")
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], pool2d(x[..., c], 3)[..., 0])


def _tap_fold(x: np.ndarray, size: tuple[int, int], kind: str) -> np.ndarray:
    """The tap-by-tap fold `pool_windows` walks for windows that tile ``x``: a copy of the first cell of every window,
    then numpy's maximum (minimum) with each further cell in row-major order (an independent reference)."""
    kh, kw = size
    ho, wo = x.shape[0] // kh, x.shape[1] // kw
    reduce = np.maximum if kind == "max" else np.minimum
    out = x[0 : ho * kh : kh, 0 : wo * kw : kw].copy()
    for i in range(kh):
        for j in range(kw):
            if i or j:
                reduce(out, x[i : ho * kh : kh, j : wo * kw : kw], out=out)
    return out


def _bits(x: np.ndarray) -> np.ndarray:
    return x.view(np.uint32 if x.dtype == np.float32 else np.uint64)


@pytest.mark.parametrize("kind", ["max", "min"])
@pytest.mark.parametrize("size", [(2, 2), (1, 2), (2, 1), (3, 2), (2, 3), (4, 4), (1, 1)])
@pytest.mark.parametrize("shape", [(8, 8, 1), (37, 61, 1), (9, 130, 3), (6, 5, 17), (257, 1030, 1)])
def test_tile_pool_is_the_tap_fold_to_the_bit(kind: str, size: tuple[int, int], shape: tuple[int, int, int]) -> None:
    """Signed zeros, NaNs of two payloads and ties everywhere: the grouped fold picks the cell the tap fold does."""
    from featmap.core.pool import tile_pool
    from featmap.enums import PoolKind

    rng = np.random.default_rng(sum(shape) * 7 + size[0] * 3 + size[1])
    choices = np.array([0.0, -0.0, 1.0, -1.0, 2.0, np.inf, -np.inf], dtype=np.float32)
    x = rng.choice(choices, size=shape).astype(np.float32)
    nan_a, nan_b = np.array([0x7FC00001, 0xFFC00002], dtype=np.uint32).view(np.float32)
    x.reshape(-1)[rng.choice(x.size, size=max(1, x.size // 50), replace=False)] = nan_a
    x.reshape(-1)[rng.choice(x.size, size=max(1, x.size // 50), replace=False)] = nan_b
    for values in (x, x.astype(np.float64), np.where(np.isnan(x), 0.0, x).astype(np.float32)):
        reference = _tap_fold(values, size, kind)
        fast = tile_pool(values, size, PoolKind(kind))
        assert fast.dtype == values.dtype
        np.testing.assert_array_equal(_bits(fast), _bits(reference))
        through = pool2d(values, size, mode=kind)  # pool_windows takes the tiling path
        np.testing.assert_array_equal(_bits(through), _bits(reference))


def test_tile_pool_writes_into_out_and_bands_large_maps() -> None:
    from featmap.core import pool as pool_module
    from featmap.enums import PoolKind

    x = np.random.default_rng(5).standard_normal((2000, 700, 1)).astype(np.float32)
    out = np.empty((1000, 350, 1), np.float32)
    assert pool_module.tile_pool(x, (2, 2), PoolKind.MAX, out=out) is out
    assert 2000 * 350 > pool_module.TILE_BAND_VALUES  # several bands
    np.testing.assert_array_equal(out, _tap_fold(x, (2, 2), "max"))
    np.testing.assert_array_equal(out[..., 0], x[:, :, 0].reshape(1000, 2, 350, 2).max(axis=(1, 3)))
