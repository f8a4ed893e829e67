"""featmap.explain: step records, hand-worked textbook examples, and equality with conv2d / pool2d."""

from __future__ import annotations

import numpy as np
import pytest

import featmap
from featmap.errors import ShapeError, SpecError
from featmap.explain import (
    MAX_SIDE,
    explain,
    format_number,
    pick_positions,
    terms_text,
    trace_conv,
    trace_pool,
)
from featmap.explain.examples import EXAMPLES, explain_example
from featmap.net.layers import Act, Conv2d, GlobalPool2d, Pool2d

# ----------------------------------------------------------------------------- the shipped examples, by hand

BINARY = [
    [1, 1, 1, 0, 0],
    [0, 1, 1, 1, 0],
    [0, 0, 1, 1, 1],
    [0, 0, 1, 1, 0],
    [0, 1, 1, 0, 0],
]


def test_example_valid_by_hand() -> None:
    # The kernel is the "X" [[1,0,1],[0,1,0],[1,0,1]]: out(r, c) = I[r][c] + I[r][c+2] + I[r+1][c+1]
    # + I[r+2][c] + I[r+2][c+2]. E.g. (0,0) = 1 + 1 + 1 + 0 + 1 = 4; (1,0) = 0 + 1 + 0 + 0 + 1 = 2;
    # (2,1) = I21 0 + I23 1 + I32 1 + I41 1 + I43 0 = 3.
    expected = [[4, 3, 4], [2, 4, 3], [2, 3, 4]]
    e = explain_example("valid")
    assert e.conv is not None and e.pool is None
    assert e.output.tolist() == expected
    assert e.conv.geometry.out_hw == (3, 3) and e.conv.geometry.padding == (0, 0, 0, 0)
    step = e.conv.step(0, 0)
    assert step.products[0].tolist() == [[1, 0, 1], [0, 1, 0], [0, 0, 1]]
    assert step.total == 4


def test_example_zero_padding_by_hand() -> None:
    # With one ring of zeros, out(r, c) = I(r, c) + I(r±1, c±1) (the four diagonal neighbours), 0 outside.
    # Row 0: (0,0) = 1 + I11 1 = 2; (0,1) = 1 + I10 0 + I12 1 = 2; (0,2) = 1 + 1 + 1 = 3; (0,3) = 0 + 1 + 0 = 1;
    #        (0,4) = 0 + I13 1 = 1.
    # Row 4: (4,0) = 0 + I31 0 = 0; (4,1) = 1 + I30 0 + I32 1 = 2; (4,2) = 1 + 0 + 1 = 2; (4,3) = 0 + 1 + 0 = 1;
    #        (4,4) = 0 + I33 1 = 1. The centre 3×3 is the "valid" example's output.
    expected = [
        [2, 2, 3, 1, 1],
        [1, 4, 3, 4, 1],
        [1, 2, 4, 3, 3],
        [1, 2, 3, 4, 1],
        [0, 2, 2, 1, 1],
    ]
    e = explain_example("zero-padding")
    assert e.conv is not None
    assert e.conv.padded.shape[:2] == (7, 7)
    assert e.conv.pad_mask.sum() == 7 * 7 - 5 * 5
    assert e.conv.pad_mask[0].all() and not e.conv.pad_mask[1:6, 1:6].any()
    assert e.output.tolist() == expected
    assert e.conv.axes[0].worked == "(5 − 3 + 2·1) / 1 + 1 = 4 / 1 + 1 = 5"


def test_example_stride_2_by_hand() -> None:
    # Kernel [[0,1,2],[2,2,0],[0,1,2]]; window of (r, c) starts at row 2r, column 2c.
    # (0,0): 3·1 + 2·2 + 0·2 + 0·2 + 1·1 + 2·2 = 3 + 4 + 0 + 0 + 1 + 4 = 12
    # (0,1): 1 + 0 + 2 + 6 + 2 + 6 = 17       (0,2): 0 + 2 + 2 + 4 + 0 + 2 = 10
    # (1,0): 1 + 4 + 4 + 0 + 0 + 0 = 9        (1,1): 2 + 6 + 0 + 4 + 0 + 2 = 14
    # (1,2): 0 + 2 + 4 + 2 + 3 + 4 = 15       (2,0): 0 + 0 + 2 + 6 + 1 + 4 = 13
    # (2,1): 0 + 2 + 2 + 0 + 3 + 0 = 7        (2,2): 3 + 4 + 4 + 4 + 1 + 6 = 22
    e = explain_example("stride-2")
    assert e.output.tolist() == [[12, 17, 10], [9, 14, 15], [13, 7, 22]]
    assert e.conv is not None
    assert e.conv.cells(1, 2) == ((2, 3, 4), (4, 5, 6))
    assert e.conv.axes[1].worked == "(7 − 3 + 2·0) / 2 + 1 = 4 / 2 + 1 = 3"
    assert e.conv.axes[0].unused == 0


def test_example_max_pool_by_hand() -> None:
    # Windows: {1,1,5,6} -> 6, {2,4,7,8} -> 8, {3,2,1,2} -> 3, {1,0,3,4} -> 4.
    e = explain_example("max-pool")
    assert e.conv is None and e.pool is not None
    assert e.output.tolist() == [[6, 8], [3, 4]]
    assert [e.pool.step(r, c).winner for r, c in e.pool.positions] == [(1, 1), (1, 3), (2, 0), (3, 3)]


def test_example_avg_pool_by_hand() -> None:
    # (1+1+5+6)/4 = 13/4 = 3.25; (2+4+7+8)/4 = 21/4 = 5.25; (3+2+1+2)/4 = 2; (1+0+3+4)/4 = 2.
    e = explain_example("avg-pool")
    assert e.output.tolist() == [[3.25, 5.25], [2.0, 2.0]]
    assert e.pool is not None
    step = e.pool.step(0, 1)
    assert (step.total, step.count, step.winner) == (21.0, 4, None)


def test_example_rgb_by_hand() -> None:
    # Red kernel = identity diagonal, green = a plus with -1 centre, blue = [-1, 0, 1] columns; bias 1, ReLU.
    # (0,0): red 1 + 1 + 0 = 2; green 1 + 1 - 0 + 1 + 1 = 4; blue (0-2) + (0-2) + (1-0) = -3; 2 + 4 - 3 + 1 = 4
    # (0,1): red 0 + 1 + 1 = 2; green 0 + 0 - 1 + 0 + 0 = -1; blue -2 - 2 + 1 = -3; -2 + 1 = -1 -> relu 0
    # (1,0): red 0 + 1 + 1 = 2; green 0 + 0 - 1 + 0 + 0 = -1; blue -2 + 1 + 1 = 0; 1 + 1 = 2
    # (1,1): red 1 + 0 + 2 = 3; green 1 + 1 - 0 + 1 + 1 = 4; blue -2 + 1 + 1 = 0; 7 + 1 = 8
    e = explain_example("rgb")
    assert e.conv is not None
    assert e.conv.input.shape == (4, 4, 3) and e.conv.kernel.shape == (3, 3, 3)
    assert e.conv.sums.tolist() == [[3, -2], [1, 7]]
    assert e.output.tolist() == [[4, 0], [2, 8]]
    step = e.conv.step(0, 1)
    assert step.channel_sums == (2.0, -1.0, -3.0)
    assert (step.total, step.bias, step.pre_activation, step.value) == (-2.0, 1.0, -1.0, 0.0)


def test_every_example_is_tested_and_explains() -> None:
    assert set(EXAMPLES) == {"valid", "zero-padding", "stride-2", "max-pool", "avg-pool", "rgb"}
    with pytest.raises(SpecError, match="unknown example"):
        explain_example("nope")


# ----------------------------------------------------------------------------- one code path with the engine


CONV_CASES = [
    dict(stride=1, padding="valid"),
    dict(stride=2, padding="same", pad_mode="reflect"),
    dict(stride=(2, 1), padding=(1, 0, 2, 1), pad_mode="symmetric"),
    dict(padding="full", pad_mode="replicate", dilation=2),
    dict(padding=2, pad_mode="circular", flip=True),
    dict(padding=1, pad_mode="zeros", pad_value=0.5, stride=3),
]


@pytest.mark.parametrize("options", CONV_CASES)
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("activation", ["none", "relu", "leaky_relu", "tanh"])
def test_trace_conv_equals_conv2d(options: dict, channels: int, activation: str, rng: np.random.Generator) -> None:
    x = rng.normal(size=(9, 8, channels))
    k = rng.normal(size=(channels, 3, 2)) if channels > 1 else rng.normal(size=(3, 2))
    trace = trace_conv(x, k, 0.25, activation=activation, slope=0.2, **options)
    conv = featmap.conv2d(x, k if channels > 1 else k[np.newaxis], 0.25, **options)[:, :, 0]
    expected = featmap.activate(conv, activation, **({"slope": 0.2} if activation == "leaky_relu" else {}))
    np.testing.assert_allclose(trace.output, expected, rtol=1e-10, atol=1e-10)
    for r, c in trace.positions[:: max(1, len(trace.positions) // 5)]:
        step = trace.step(r, c)
        np.testing.assert_allclose(step.products, step.window * step.weights)
        assert step.total == pytest.approx(float(step.products.sum()))
        assert step.value == trace.output[r, c]


@pytest.mark.parametrize("mode", ["max", "avg", "min"])
@pytest.mark.parametrize(("size", "stride", "padding"), [(2, None, "valid"), (3, 2, "same"), ((2, 3), (1, 2), "same")])
def test_trace_pool_equals_pool2d(
    mode: str, size: object, stride: object, padding: str, rng: np.random.Generator
) -> None:
    x = rng.normal(size=(7, 6))
    trace = trace_pool(x, size, stride=stride, padding=padding, mode=mode)
    expected = featmap.pool2d(x, size, stride=stride, padding=padding, mode=mode)[:, :, 0]
    np.testing.assert_allclose(trace.output, expected, rtol=1e-12)
    for r, c in trace.positions:
        step = trace.step(r, c)
        real = step.window[step.real]
        assert step.count == real.size
        if mode == "avg":
            assert step.value == pytest.approx(real.mean())
        else:
            assert (
                step.winner is not None
                and x[step.winner[0] - trace.geometry.padding[0], step.winner[1] - trace.geometry.padding[2]]
                == step.value
            )


def test_conv_then_pool_follows_apply_order(rng: np.random.Generator) -> None:
    x = rng.normal(size=(8, 8))
    k = rng.normal(size=(3, 3))
    e = explain(x, k, conv=Conv2d(padding="same"), bias=-0.1, act=Act("relu"), pool=Pool2d("avg", 2))
    expected = featmap.pool2d(featmap.activate(featmap.conv2d(x, k, -0.1, padding="same"), "relu"), 2, mode="avg")
    np.testing.assert_allclose(e.output, expected[:, :, 0], rtol=1e-12)
    g = explain(x, k, pool=GlobalPool2d("max"))
    assert g.output.shape == (1, 1) and g.output[0, 0] == pytest.approx(featmap.conv2d(x, k).max())


# ----------------------------------------------------------------------------- step facts


def test_dilated_window_cells_and_flip() -> None:
    x = np.arange(25.0).reshape(5, 5)
    k = np.array([[1.0, 2.0], [3.0, 4.0]])
    trace = trace_conv(x, k, dilation=2, flip=True)
    assert trace.cells(0, 1) == ((0, 2), (1, 3))
    step = trace.step(0, 1)
    assert step.weights[0].tolist() == [[4, 3], [2, 1]]  # turned 180°
    assert step.window[0].tolist() == [[1, 3], [11, 13]]
    assert step.total == 4 * 1 + 3 * 3 + 2 * 11 + 1 * 13  # 48


def test_unused_rows_are_counted_and_named() -> None:
    trace = trace_conv(np.ones((8, 7)), np.ones((3, 3)), stride=2)
    rows, cols = trace.axes
    # rows: (8 - 3) / 2 = 2.5, floored: 3 outputs, padded row 7 unreached; columns: (7 - 3) / 2 = 2, fits.
    assert (rows.out, rows.unused, cols.out, cols.unused) == (3, 1, 3, 0)
    assert rows.worked == "(8 − 3 + 2·0) / 2 + 1 = ⌊5 / 2⌋ + 1 = 3"
    assert rows.note is not None and "1 row unused (padded index 7)" in rows.note
    assert cols.note is None
    with pytest.raises(ShapeError, match="leaves 1 rows unused"):
        explain(np.ones((8, 7)), np.ones((3, 3)), conv=Conv2d(stride=2), strict=True)


def test_asymmetric_padding_and_dilation_formula() -> None:
    trace = trace_conv(np.ones((6, 6)), np.ones((3, 3)), padding=(0, 1, 2, 0), dilation=(1, 2))
    assert trace.axes[0].formula == "(N − F + P₁ + P₂) / S + 1"
    assert trace.axes[0].worked == "(6 − 3 + 0 + 1) / 1 + 1 = 4 / 1 + 1 = 5"
    assert trace.axes[1].formula == "(N − (D·(F − 1) + 1) + P₁ + P₂) / S + 1"
    assert trace.axes[1].worked == "(6 − (2·(3 − 1) + 1) + 2 + 0) / 1 + 1 = 3 / 1 + 1 = 4"


def test_pool_padding_is_not_counted() -> None:
    # 3×3 input, 2×2 windows with `same` padding: one padded row and column at the bottom/right.
    trace = trace_pool([[1, 2, 3], [4, 5, 6], [7, 8, 9]], 2, padding="same", mode="avg")
    assert trace.geometry.padding == (0, 1, 0, 1)
    assert trace.output.tolist() == [[3.0, 4.5], [7.5, 9.0]]  # (1+2+4+5)/4, (3+6)/2, (7+8)/2, 9/1
    corner = trace.step(1, 1)
    assert corner.count == 1 and corner.real.tolist() == [[True, False], [False, False]]
    assert np.isnan(corner.window[1, 1])
    assert trace_pool([[1, 2, 3], [4, 5, 6], [7, 8, 9]], 2, padding="same").step(1, 1).winner == (2, 2)


def test_pick_positions() -> None:
    e = explain(np.ones((4, 4)), np.ones((1, 1)), pool=Pool2d("max", 2))
    assert pick_positions(e, None, 2) == ([(0, 0), (0, 1)], [(0, 0), (0, 1)])
    assert pick_positions(e, (1, 0), 3) == ([(2, 0), (2, 1), (3, 0), (3, 1)], [(1, 0)])
    assert len(pick_positions(e, None, None)[0]) == 16
    with pytest.raises(ShapeError, match=r"\(2, 0\) is outside the 2×2 output"):
        pick_positions(e, (2, 0), None)


def test_formatting_helpers() -> None:
    assert [format_number(v) for v in (0.0, -0.0, 3.0, 0.125, -1 / 3)] == ["0", "0", "3", "0.125", "-0.3333"]
    assert terms_text([2.0, -3.0, 0.5]) == "2 - 3 + 0.5"
    assert terms_text([1.0] * 30) == "sum of 30 products"


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("x", "k", "error", "message"),
    [
        (np.ones((2, 2)), np.ones((3, 3)), ShapeError, "larger than the padded input"),
        (np.ones((4, 4, 3)), np.ones((3, 3)), ShapeError, "has 1 channel slice but the input has 3 channels"),
        (np.ones((MAX_SIDE + 1, 4)), np.ones((3, 3)), ShapeError, "over explain's limit of 64×64×4"),
        (np.ones((4, 4, 5)), np.ones((5, 3, 3)), ShapeError, "over explain's limit"),
        (np.array([[1.0, np.nan]]), np.ones((1, 1)), SpecError, "NaN or infinity"),
        (np.zeros((0, 3)), np.ones((1, 1)), ShapeError, "is empty"),
        (np.array([["a", "b"]]), np.ones((1, 1)), SpecError, "must hold numbers"),
        (np.full((3, 3), 1e300), np.full((1, 1), 1e300), SpecError, "overflow"),
    ],
)
def test_bad_input_raises_featmap_errors(x: np.ndarray, k: np.ndarray, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        trace_conv(x, k)


def test_pool_refuses_several_channels_and_empty_windows() -> None:
    with pytest.raises(ShapeError, match="one channel at a time"):
        trace_pool(np.ones((4, 4, 3)), 2)
    with pytest.raises(ShapeError, match="no input cell"):
        trace_pool(np.ones((4, 4)), 2, padding=(2, 0, 0, 0))
    with pytest.raises(SpecError, match="nothing to explain"):
        explain(np.ones((2, 2)))


@pytest.mark.parametrize("options", CONV_CASES)
def test_explain_equals_the_layers_plan_and_forward(options: dict, rng: np.random.Generator) -> None:
    """The explanation and the network executor read the same layer objects and plans."""
    x = rng.normal(size=(9, 8, 2)).astype(np.float32)
    k = rng.normal(size=(2, 3, 2)).astype(np.float32)
    conv = Conv2d(filters=1, kernel=(3, 2), **options)
    pool = Pool2d("max", 2, padding="same")
    e = explain(x, k, conv=conv, bias=0.5, pool=pool)
    conv_plan = conv.plan(x.shape)
    assert e.conv is not None and e.conv.geometry == conv_plan.geometry
    mapped = conv.forward(x, conv_plan, {"weight": k[np.newaxis], "bias": np.array([0.5], dtype=np.float32)})
    pool_plan = pool.plan(mapped.shape)
    assert e.pool is not None and e.pool.geometry == pool_plan.geometry
    np.testing.assert_allclose(e.output, pool.forward(mapped, pool_plan, {})[:, :, 0], rtol=1e-5, atol=1e-5)


def test_the_explain_package_stays_pure() -> None:
    import subprocess
    import sys

    code = "import sys, featmap.explain; print(sorted(m for m in ('rich', 'PIL', 'click', 'yaml') if m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]"
