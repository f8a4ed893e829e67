"""featmap.net.layers.pooling's adaptive average: a window over a whole axis (a global average) added up a row at a
time gives the running sum's very bits (against the running-sum formula written out here), with ±0, ±inf, NaN,
one channel, long axes and float64; other output sizes against a window-by-window float64 mean."""

from __future__ import annotations

import numpy as np
import pytest

from featmap.net.layers.pooling import AdaptiveAvgPool2d, _adaptive_axis, adaptive_bounds


def running_sum_average(x: np.ndarray, axis: int, out: int) -> np.ndarray:
    """Each window's average as the difference of two values of a float64 running sum, divided by its length."""
    start, stop = adaptive_bounds(x.shape[axis], out)
    shape = list(x.shape)
    shape[axis] = 1
    running = np.concatenate([np.zeros(shape), np.cumsum(x, axis=axis, dtype=np.float64)], axis=axis)
    sums = np.take(running, stop, axis=axis) - np.take(running, start, axis=axis)
    return sums / (stop - start).reshape([-1 if a == axis else 1 for a in range(x.ndim)])


@pytest.mark.parametrize("shape", [(7, 7, 512), (1, 1, 3), (13, 9, 1), (40, 3, 2), (2, 150, 5)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_global_average_has_the_running_sums_bits(shape: tuple[int, int, int], dtype: type) -> None:
    rng = np.random.default_rng(sum(shape))
    x = (rng.standard_normal(shape) * 10.0 ** rng.integers(-3, 4, shape)).astype(dtype)
    x.reshape(-1)[:: max(1, x.size // 7)] = -0.0
    for axis in (0, 1):
        assert _adaptive_axis(x, axis, 1).tobytes() == running_sum_average(x, axis, 1).tobytes()
    pooled = AdaptiveAvgPool2d((1, 1)).forward(x, None, {})  # type: ignore[arg-type]
    want = running_sum_average(running_sum_average(x, 0, 1), 1, 1).astype(dtype)
    assert pooled.shape == (1, 1, shape[2]) and pooled.tobytes() == want.tobytes()
    special = x.copy()
    special[0, 0, 0], special[-1, -1, -1] = np.inf, np.nan
    if shape[2] > 1 and shape[0] > 1:
        special[0, 0, 1], special[1, 0, 1] = np.inf, -np.inf  # inf - inf: NaN
    with np.errstate(invalid="ignore"):  # inf - inf (both ways warn alike: numpy's accumulate and add)
        got, want = _adaptive_axis(special, 0, 1), running_sum_average(special, 0, 1)
    assert np.array_equal(got, want, equal_nan=True)
    assert np.array_equal(np.signbit(got), np.signbit(want))
    assert np.array_equal(_adaptive_axis(np.full((3, 2, 2), -0.0), 0, 1), np.full((1, 2, 2), -0.0))
    assert np.signbit(_adaptive_axis(np.full((3, 2, 2), -0.0), 0, 1)).all()


@pytest.mark.parametrize(("size", "out"), [((7, 7), (2, 3)), ((10, 5), (3, 1)), ((5, 12), (1, 5))])
def test_adaptive_windows_average_by_hand(size: tuple[int, int], out: tuple[int, int]) -> None:
    x = np.random.default_rng(3).standard_normal((*size, 4)).astype(np.float32)
    got = AdaptiveAvgPool2d(out).forward(x, None, {})  # type: ignore[arg-type]
    (r0, r1), (c0, c1) = adaptive_bounds(size[0], out[0]), adaptive_bounds(size[1], out[1])
    for i in range(out[0]):
        for j in range(out[1]):
            want = x[r0[i] : r1[i], c0[j] : c1[j]].astype(np.float64).mean(axis=(0, 1))
            np.testing.assert_allclose(got[i, j], want, rtol=1e-6)
