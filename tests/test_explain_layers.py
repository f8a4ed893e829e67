"""featmap.explain traces through the layer objects `featmap apply` runs: windows from their plans, values from
their forward passes, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from featmap.explain import explain, trace_conv, trace_pool
from featmap.net.layers import Act, Conv2d, Pool2d


@pytest.mark.parametrize(
    "layer",
    [
        Pool2d("max", 3, 2, ceil_mode=True),  # the plan's extra reach: options alone cannot say it
        Pool2d("avg", 2, 1, "same"),
        Pool2d("min", (2, 3), (1, 2), (1, 0, 1, 1)),
    ],
)
def test_a_pool_trace_is_the_layers_plan_and_forward(layer: Pool2d, rng: np.random.Generator) -> None:
    x = np.round(rng.standard_normal((7, 8, 1)) * 4) / 4
    plan = layer.plan(x.shape)
    trace = trace_pool(x, layer=layer)
    assert trace.geometry == plan.geometry
    np.testing.assert_array_equal(trace.output, layer.forward(x, plan, {})[:, :, 0])
    for r, c in trace.positions:
        step = trace.step(r, c)
        assert step.count == int(step.real.sum())
        if layer.kind.value == "avg":
            assert step.value == pytest.approx(step.total / step.count)


def test_a_conv_trace_takes_its_windows_from_the_layers_plan(rng: np.random.Generator) -> None:
    x = rng.standard_normal((9, 8, 2))
    k = rng.standard_normal((2, 3, 2))
    layer = Conv2d(stride=(2, 1), padding="same", pad_mode="reflect", dilation=(1, 2), flip=True)
    trace = trace_conv(x, k, 0.5, activation="leaky_relu", slope=0.2, layer=layer)
    one = Conv2d(1, (3, 2), stride=(2, 1), padding="same", pad_mode="reflect", dilation=(1, 2), flip=True)
    plan = one.plan(x.shape)
    assert trace.geometry == plan.geometry and trace.flip and trace.pad_mode.value == "reflect"
    forward = one.forward(x, plan, {"weight": k[np.newaxis], "bias": np.array([0.5])})[:, :, 0]
    np.testing.assert_allclose(trace.sums + 0.5, forward, rtol=1e-12, atol=1e-12)
    act = Act("leaky_relu", (("slope", 0.2),))
    np.testing.assert_array_equal(trace.output, act.forward(trace.sums + 0.5, act.plan(trace.sums.shape), {}))


def test_explain_runs_the_apply_layers() -> None:
    x = [[1, 5, 2, 0], [3, 2, 8, 1], [0, 1, 4, 4]]
    pool = Pool2d("max", 2, ceil_mode=True)
    e = explain(x, [[1, 0], [0, -1]], conv=Conv2d(padding="same"), act=Act("relu"), pool=pool)
    assert e.conv is not None and e.pool is not None
    assert e.conv.output.tolist() == [[0.0, 0.0, 1.0, 0.0], [2.0, 0.0, 4.0, 1.0], [0.0, 1.0, 4.0, 4.0]]
    assert e.output.tolist() == [[2.0, 4.0], [1.0, 4.0]]  # ceil mode keeps the last, partial row of windows
