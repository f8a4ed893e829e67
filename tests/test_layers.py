"""featmap.net.layers: each kind's forward pass against an independent implementation or a hand-worked case, and
its plan against the forward pass."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from featmap.errors import ShapeError, SpecError
from featmap.kernels import Kernel, KernelBank
from featmap.net.layers import (
    Act,
    AdaptiveAvgPool2d,
    BatchNorm,
    Conv1d,
    Conv2d,
    Dense,
    Dropout,
    Flatten,
    GlobalPool2d,
    Parallel,
    Pool2d,
    RunContext,
    Sequential,
)
from featmap.net.layers.pooling import adaptive_bounds

RNG = np.random.default_rng(7)


def _run(layer, x, weights=None, context=None):
    plan = layer.plan(x.shape)
    out = layer.forward(x, plan, weights or {}, context or RunContext())
    assert out.shape == plan.out_shape  # the plan states what the forward pass makes
    return out


def test_conv_is_scipy_correlate_plus_bias():
    x = RNG.standard_normal((9, 11, 1)).astype(np.float32)
    w = RNG.standard_normal((1, 1, 3, 3)).astype(np.float32)
    out = _run(Conv2d(1, 3), x, {"weight": w, "bias": np.array([0.5], np.float32)})
    full = ndimage.correlate(x[:, :, 0].astype(np.float64), w[0, 0].astype(np.float64), mode="constant")
    np.testing.assert_allclose(out[:, :, 0], full[1:-1, 1:-1] + 0.5, rtol=1e-5, atol=1e-5)


def test_conv_stride_padding_keeps_the_kept_positions_of_stride_one():
    x = RNG.standard_normal((10, 10, 2)).astype(np.float32)
    w = RNG.standard_normal((3, 2, 3, 3)).astype(np.float32)
    dense = _run(Conv2d(3, 3, padding=1), x, {"weight": w})
    strided = _run(Conv2d(3, 3, stride=2, padding=1), x, {"weight": w})
    np.testing.assert_allclose(strided, dense[::2, ::2], rtol=1e-5, atol=1e-5)


def test_grouped_conv_is_two_separate_convs():
    x = RNG.standard_normal((7, 7, 4)).astype(np.float32)
    w = RNG.standard_normal((6, 2, 3, 3)).astype(np.float32)
    both = _run(Conv2d(6, 3, groups=2), x, {"weight": w})
    first = _run(Conv2d(3, 3), x[:, :, :2], {"weight": w[:3]})
    second = _run(Conv2d(3, 3), x[:, :, 2:], {"weight": w[3:]})
    np.testing.assert_allclose(both, np.concatenate([first, second], axis=2), rtol=1e-5, atol=1e-5)


def test_conv1d_is_numpy_correlate():
    x = RNG.standard_normal((12, 1)).astype(np.float32)
    w = RNG.standard_normal((1, 1, 4)).astype(np.float32)
    out = _run(Conv1d(1, 4), x, {"weight": w})
    np.testing.assert_allclose(out[:, 0], np.correlate(x[:, 0], w[0, 0], mode="valid"), rtol=1e-5, atol=1e-5)


def test_bank_2d_kernel_on_rgb_sums_equal_slices():
    sobel = Kernel("sx", [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]])
    layer = Conv2d(bank=KernelBank((sobel,)), padding="same")
    assert (layer.filters, layer.kernel, layer.bias) == (1, (3, 3), False)
    x = RNG.random((6, 6, 3)).astype(np.float32)
    out = _run(layer, x, layer.bank_weights(3))
    # correlation is linear: one kernel on every slice, summed, is the kernel on the sum of the channels
    expected = ndimage.correlate(x.sum(axis=2).astype(np.float64), sobel.weights.astype(np.float64), mode="constant")
    np.testing.assert_allclose(out[:, :, 0], expected, rtol=1e-5, atol=1e-5)


def test_depthwise_bank_filters_each_channel_apart():
    box = Kernel("box", np.ones((3, 3)) / 9, bias=0.25)
    delta = Kernel("delta", [[0, 0, 0], [0, 1, 0], [0, 0, 0]])
    layer = Conv2d(bank=KernelBank((box, delta)), depthwise=True, padding="same")
    x = RNG.random((5, 5, 2)).astype(np.float32)
    plan = layer.plan(x.shape)
    assert plan.out_shape == (5, 5, 4) and plan.groups == 2
    out = layer.forward(x, plan, layer.bank_weights(2))
    # filter c·2 + n is kernel n on channel c
    np.testing.assert_allclose(out[:, :, 1], x[:, :, 0], rtol=1e-6)
    np.testing.assert_allclose(out[:, :, 3], x[:, :, 1], rtol=1e-6)
    box0 = ndimage.correlate(x[:, :, 0].astype(np.float64), np.ones((3, 3)) / 9, mode="constant") + 0.25
    np.testing.assert_allclose(out[:, :, 0], box0, rtol=1e-5, atol=1e-6)


def test_bank_of_mixed_sizes_is_refused():
    with pytest.raises(SpecError, match="one size"):
        Conv2d(bank=KernelBank((Kernel("a", np.ones((3, 3))), Kernel("b", np.ones((5, 5))))))


def test_max_pool_and_avg_pool_by_hand():
    x = np.arange(16, dtype=np.float32).reshape(4, 4, 1)
    assert _run(Pool2d("max", 2), x)[:, :, 0].tolist() == [[5, 7], [13, 15]]
    assert _run(Pool2d("avg", 2), x)[:, :, 0].tolist() == [[2.5, 4.5], [10.5, 12.5]]


def test_pool_padding_over_half_the_window_is_refused():
    with pytest.raises(ShapeError, match="exceed half"):
        Pool2d("max", 2, 1, 2).plan((8, 8, 1))


def test_adaptive_bounds_are_pytorchs():
    # torch: start = floor(i·5/3), end = ceil((i+1)·5/3): [0,2) [1,4) [3,5)
    start, stop = adaptive_bounds(5, 3)
    assert list(zip(start.tolist(), stop.tolist(), strict=True)) == [(0, 2), (1, 4), (3, 5)]


def test_adaptive_avg_pool_by_hand():
    x = np.arange(5, dtype=np.float32).reshape(5, 1, 1) * np.ones((5, 2, 1), np.float32)
    out = _run(AdaptiveAvgPool2d((3, 1)), x)
    assert out[:, 0, 0].tolist() == [0.5, 2.0, 3.5]


def test_global_pool():
    x = np.arange(12, dtype=np.float32).reshape(2, 3, 2)
    assert _run(GlobalPool2d("avg"), x).ravel().tolist() == [5.0, 6.0]
    assert _run(GlobalPool2d("max"), x).ravel().tolist() == [10.0, 11.0]


def test_batch_norm_inference_formula():
    x = RNG.standard_normal((3, 3, 2)).astype(np.float32)
    w = {
        "weight": np.array([2.0, 0.5]),
        "bias": np.array([1.0, -1.0]),
        "running_mean": np.array([0.3, -0.2]),
        "running_var": np.array([4.0, 0.25]),
    }
    out = _run(BatchNorm(eps=0.0), x, w)
    expected = (x - w["running_mean"]) / np.sqrt(w["running_var"]) * w["weight"] + w["bias"]
    np.testing.assert_allclose(out, expected, rtol=1e-5)


def test_flatten_order_follows_the_layout():
    x = np.arange(8, dtype=np.float32).reshape(2, 2, 2)  # (H, W, C)
    torch_order = _run(Flatten(), x, context=RunContext("torch"))
    keras_order = _run(Flatten(), x, context=RunContext("keras"))
    assert torch_order.tolist() == [0, 2, 4, 6, 1, 3, 5, 7]  # channel 0's plane, then channel 1's
    assert keras_order.tolist() == list(range(8))


def test_dense_and_activation_and_dropout():
    x = np.array([1.0, -2.0], np.float32)
    out = _run(Dense(3), x, {"weight": np.array([[1, 0], [0, 1], [1, 1]], np.float32), "bias": np.ones(3)})
    assert out.tolist() == [2.0, -1.0, 0.0]
    assert _run(Act("relu"), out).tolist() == [2.0, 0.0, 0.0]
    assert _run(Dropout(0.3), out).tolist() == out.tolist()


def test_parallel_add_and_concat():
    add = Parallel((Sequential(), Sequential()), "add")
    a, b = np.ones((2, 2, 3), np.float32), np.full((2, 2, 3), 2.0, np.float32)
    assert add.merge([a, b]).ravel().tolist() == [3.0] * 12
    with pytest.raises(ShapeError, match="cannot add"):
        add.merge_shape([(2, 2, 3), (2, 2, 4)])
    cat = Parallel((Sequential(), Sequential()), "concat")
    assert cat.merge_shape([(2, 2, 3), (2, 2, 4)]) == (2, 2, 7)


def test_plans_state_weight_shapes_in_pytorch_layout():
    assert Conv2d(8, (3, 5), groups=2).plan((9, 9, 4)).weight_shapes == {"weight": (8, 2, 3, 5), "bias": (8,)}
    assert Dense(10, bias=False).plan((84,)).weight_shapes == {"weight": (10, 84)}
    assert set(BatchNorm().plan((4, 4, 3)).weight_shapes) == {"weight", "bias", "running_mean", "running_var"}


@pytest.mark.parametrize("mode", ["add", "mul"])
@pytest.mark.parametrize("branches", [2, 3])
def test_merge_equals_a_copy_then_in_place_ops_to_the_bit(mode: str, branches: int) -> None:
    """The first two branches combined in one pass: the same values as a copy of the first and in-place ops, NaN,
    infinities, signed zeros and a float64 branch (cast as the in-place op casts) included."""
    rng = np.random.default_rng(branches)
    outs = [rng.standard_normal((5, 6, 4)).astype(np.float32) for _ in range(branches)]
    outs[0].flat[:3] = [np.nan, 0.0, -0.0]
    outs[1].flat[:4] = [1.0, -0.0, np.inf, -np.inf]
    outs[-1] = outs[-1].astype(np.float64)
    with np.errstate(invalid="ignore"):  # inf · 0, inf − inf: NaN on both sides
        want = outs[0].copy()
        for out in outs[1:]:
            if mode == "mul":
                want *= out
            else:
                want += out
        got = Parallel(tuple(Sequential() for _ in outs), mode).merge(outs)
        assert got.dtype == want.dtype and got.tobytes() == want.tobytes()
        if mode == "mul":  # a gate broadcast over the first branch
            gate = rng.standard_normal((1, 1, 4)).astype(np.float32)
            gated = Parallel((Sequential(), Sequential()), "mul").merge([outs[0], gate])
            assert gated.tobytes() == (outs[0] * gate).tobytes()
