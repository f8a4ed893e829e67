"""featmap.run.pipeline: conv → activation → pool per kernel, combined maps, warnings and strict mode."""

from __future__ import annotations

import numpy as np
import pytest

from featmap import activate, conv2d, pool2d
from featmap.core.pool import global_pool
from featmap.errors import ShapeError
from featmap.kernels import Kernel, KernelBank, KernelLibrary
from featmap.net.layers import Act, Conv2d, GlobalPool2d, Pool2d
from featmap.run.pipeline import iter_feature_maps, run

LIB = KernelLibrary(use_env=False)


def test_each_stage_equals_the_ops(rng: np.random.Generator) -> None:
    x = rng.random((20, 18, 1), dtype=np.float32)
    bank = LIB.bank(["sobel_x", "box_3"])
    conv = Conv2d(stride=2, padding="same", pad_mode="reflect")
    fm = run(x, bank, conv, Act("relu"), Pool2d("max", 2))
    for got, kernel in zip(fm.maps, bank, strict=True):
        ref = conv2d(x, kernel.weights, stride=2, padding="same", pad_mode="reflect")
        np.testing.assert_array_equal(got.values, pool2d(np.maximum(ref, 0), 2))
        assert got.info.conv_shape == (10, 9, 1)
        assert got.info.shape == (5, 4, 1)
        assert got.info.params == 9
        assert got.info.stats.max == pytest.approx(float(got.values.max()))
    assert fm.warnings == (
        "max pool 2x2: stride 2 leaves the last 1 column of the padded 10x9 input unused "
        "(floored, as PyTorch and Keras do)",
    )


@pytest.mark.parametrize("pool_kind", ["max", "min", "avg"])
@pytest.mark.parametrize(
    "act",
    [
        Act("none"),
        Act("relu"),
        Act("relu6"),
        Act("abs"),
        Act("sigmoid"),
        Act("tanh"),
        Act("leaky_relu", (("slope", 0.2),)),
        Act("leaky_relu", (("slope", -0.5),)),
    ],
    ids=lambda a: f"{a.kind.value}{dict(a.params).get('slope', '')}",
)
def test_pooling_order_never_changes_a_map(pool_kind: str, act: Act, rng: np.random.Generator) -> None:
    # max/min pooling runs before a non-decreasing activation (fewer pixels to activate); the map must be
    # exactly what activate-then-pool gives, and for abs, avg and a negative slope that order is kept.
    x = rng.standard_normal((23, 17, 1)).astype(np.float32) * 4
    bank = LIB.bank(["laplacian_4"])
    for pool in (Pool2d(pool_kind, 3, stride=2, padding="same"), GlobalPool2d(pool_kind)):
        got = run(x, bank, Conv2d(padding="same"), act, pool).maps[0].values
        activated = activate(conv2d(x, LIB["laplacian_4"].weights, padding="same"), act.kind, **dict(act.params))
        if isinstance(pool, Pool2d):
            ref = pool2d(activated, 3, stride=2, padding="same", mode=pool_kind)
        else:
            ref = global_pool(activated, pool_kind)
        np.testing.assert_array_equal(got, ref)


def test_magnitude_of_sobel_pair(rng: np.random.Generator) -> None:
    x = rng.random((12, 12, 1), dtype=np.float32)
    maps = run(x, LIB.bank(["sobel_x", "sobel_y"]), Conv2d(padding=1), combine="magnitude").maps
    assert [m.info.name for m in maps] == ["sobel_x", "sobel_y", "magnitude"]
    expect = np.sqrt(maps[0].values ** 2 + maps[1].values ** 2)
    np.testing.assert_allclose(maps[2].values, expect, rtol=1e-6)
    assert maps[2].info.combined_from == ("sobel_x", "sobel_y")


def test_max_over_compass_set(rng: np.random.Generator) -> None:
    x = rng.random((10, 10, 1), dtype=np.float32)
    maps = run(x, LIB.bank(["kirsch"]), combine="max").maps
    assert len(maps) == 9
    np.testing.assert_array_equal(maps[-1].values, np.max([m.values for m in maps[:-1]], axis=0))


def test_combine_is_before_activation() -> None:
    x = np.zeros((5, 5, 1), np.float32)
    x[:, 3:] = 1.0  # a rising edge: sobel_x positive, and its mirror negative
    bank = KernelBank((Kernel("up", [[-1, 0, 1]]), Kernel("down", [[1, 0, -1]])))
    maps = run(x, bank, Conv2d(), Act("relu"), combine="magnitude").maps
    assert maps[1].values.max() == 0  # relu removed the negative response
    assert maps[2].values.max() == pytest.approx(np.sqrt(2))  # but the magnitude saw both (+1 and -1)


def test_colour_image_depthwise_and_per_channel_kernel(rng: np.random.Generator) -> None:
    x = rng.random((8, 8, 3), dtype=np.float32)
    depthwise = run(x, LIB.bank(["box_3"])).maps[0]
    assert depthwise.info.shape == (6, 6, 3) and depthwise.info.params == 27
    rgb_sum = Kernel("sum", np.ones((3, 1, 1)), bias=0.5)
    summed = run(x, KernelBank((rgb_sum,))).maps[0]
    np.testing.assert_allclose(summed.values[..., 0], x.sum(axis=2) + 0.5, rtol=1e-6)
    assert summed.info.params == 4
    with pytest.raises(ShapeError, match="pass `color`"):
        run(x[..., :1], KernelBank((rgb_sum,)))


def test_global_pool_and_strict() -> None:
    x = np.ones((7, 7, 1), np.float32)
    fm = run(x, LIB.bank(["box_3"]), pool=GlobalPool2d("avg"))
    assert fm.maps[0].info.shape == (1, 1, 1) and fm.maps[0].values[0, 0, 0] == pytest.approx(1.0)
    assert run(x, LIB.bank(["box_3"]), Conv2d(stride=3)).warnings
    with pytest.raises(ShapeError, match="stride 3 leaves the last 1 row and 1 column"):
        run(x, LIB.bank(["box_3"]), Conv2d(stride=3), strict=True)


def test_combine_refuses_maps_of_different_shapes() -> None:
    with pytest.raises(ShapeError, match="`padding` same"):
        list(iter_feature_maps(np.ones((9, 9, 1), np.float32), LIB.bank(["box_3", "box_5"]), combine="max"))


def test_map_stats_match_numpy_over_many_bands(monkeypatch: pytest.MonkeyPatch, rng: np.random.Generator) -> None:
    import featmap.core.ops as ops
    from featmap.run.pipeline import MapStats

    monkeypatch.setattr(ops, "_BAND_VALUES", 64)
    for values in (
        rng.standard_normal((41, 23, 1)).astype(np.float32) * 5 + 100,  # a large mean: cancellation would show
        rng.random((3, 17, 11)).astype(np.float32).transpose(1, 2, 0),
    ):
        stats = MapStats.of(values)
        reference = values.astype(np.float64)
        assert (stats.min, stats.max) == (float(values.min()), float(values.max()))
        assert stats.mean == pytest.approx(reference.mean(), rel=1e-12)
        assert stats.std == pytest.approx(reference.std(), rel=1e-9)


def _stats_reference(values: np.ndarray, block: int) -> tuple[float, float, float, float]:
    """MapStats.of's arithmetic written out step by step (a float64 copy of each block, then the shift subtracted)."""
    flat = values.reshape(-1)
    block = min(block, flat.size)
    shift = float(flat[:block].mean(dtype=np.float64))
    total = squares = 0.0
    with np.errstate(invalid="ignore", over="ignore"):
        for start in range(0, flat.size, block):
            part = flat[start : start + block].astype(np.float64)
            part -= shift
            total += float(part.sum())
            squares += float(np.einsum("i,i->", part, part))
        mean = total / flat.size
        variance = max(squares / flat.size - mean * mean, 0.0)
    return float(values.min()), float(values.max()), shift + mean, float(np.sqrt(variance))


@pytest.mark.parametrize("block", [1 << 18, 1000])
def test_map_stats_are_the_stepwise_float64_arithmetic_to_the_bit(
    block: int, monkeypatch: pytest.MonkeyPatch, rng: np.random.Generator
) -> None:
    """Every digit the manifest prints: the same float64 operations in the same blocks, whatever buffer holds them."""
    import featmap.net.records as records
    from featmap.net.records import MapStats

    monkeypatch.setattr(records, "_STATS_BLOCK", block)
    spiky = rng.standard_normal((300, 301, 1)).astype(np.float32) * 1e-3 + 7
    spiky[5, 7] = np.inf
    nan = rng.random((64, 70, 1)).astype(np.float32)
    nan[3, 3] = np.nan
    for values in (
        rng.standard_normal((512, 512, 1)).astype(np.float32) * 3 + 1e4,
        rng.random((700, 333, 1)).astype(np.float32),
        rng.random((41, 23, 1)) * 5 - 2,  # float64
        rng.random((3, 170, 110)).astype(np.float32).transpose(1, 2, 0),  # a strided view
        np.zeros((9, 9, 1), np.float32),
        spiky,
        nan,
    ):
        got = MapStats.of(values)
        expected = _stats_reference(values, block)
        assert [repr(v) for v in (got.min, got.max, got.mean, got.std)] == [repr(v) for v in expected]


def test_a_conv_with_its_own_filters_is_refused_not_ignored():
    from featmap.errors import SpecError

    with pytest.raises(SpecError, match="kernel bank supplies them"):
        run(np.ones((6, 6, 1), np.float32), LIB.bank(["box_3"]), Conv2d(filters=64, kernel=(3, 3)))
