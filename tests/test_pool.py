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
