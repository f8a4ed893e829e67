"""`Flatten` and the fully connected `Dense` layer, with their plans and forward passes.

Examples
--------
>>> import numpy as np
>>> layer = Dense(2)
>>> x = np.array([1.0, 2.0, 3.0], np.float32)
>>> w = {"weight": np.array([[1.0, 0.0, 0.0], [1.0, 1.0, 1.0]]), "bias": np.array([0.5, 0.0])}
>>> layer.forward(x, layer.plan(x.shape), w).tolist()
[1.5, 6.0]
"""

from __future__ import annotations

import math

import numpy as np

from featmap.core.gemm import pointwise
from featmap.frozen import frozen_dataclass
from featmap.net.layers.base import DEFAULT_CONTEXT, Array, LayerPlan, RunContext, Shape, Weights, fmt_int
from featmap.net.layers.conv import positive

__all__ = ["Dense", "Flatten"]


@frozen_dataclass
class Flatten:
    """Flatten everything into one axis. The shape is the same either way; the order of the values follows
    the run's weights layout (`RunContext`): channel-first as PyTorch for ``torch``, row-major over H, W, C for
    ``keras``."""

    name: str | None = None

    def plan(self, in_shape: Shape, batch: int = 1) -> LayerPlan:
        """``(H·W·C,)``; the receptive field is the whole input from here on."""
        out = (math.prod(in_shape),)
        return LayerPlan(
            "Flatten",
            self.name or "flatten",
            in_shape,
            out,
            field="all",
            explain=(f"{'·'.join(map(str, in_shape))} = {fmt_int(out[0])}",),
        )

    def forward(self, x: Array, plan: LayerPlan, weights: Weights, context: RunContext = DEFAULT_CONTEXT) -> Array:
        """The values in one row, channel-first (torch) or channel-last (keras)."""
        if context.layout == "torch" and x.ndim > 1:
            return np.moveaxis(x, -1, 0).reshape(-1)
        return x.reshape(-1)


@frozen_dataclass
class Dense:
    """A fully connected layer over the last axis; ``weight`` is ``(units, features)`` as PyTorch's Linear.

    On an ``H×W×C`` input it applies at every position (a 1×1 convolution); that is flagged as a likely missing
    ``flatten`` unless ``pointwise=True`` says it is meant (ConvNeXt's channel MLP).
    """

    units: int
    bias: bool = True
    name: str | None = None
    pointwise: bool = False

    def __post_init__(self) -> None:
        positive(self.units, "units")

    def plan(self, in_shape: Shape, batch: int = 1) -> LayerPlan:
        """``(*in_shape[:-1], units)``; parameters and MACs at every position of the leading axes."""
        features = in_shape[-1]
        out = (*in_shape[:-1], self.units)
        positions = math.prod(in_shape[:-1])
        params = features * self.units + (self.units if self.bias else 0)
        macs = features * self.units * positions * batch
        notes = (
            ()
            if len(in_shape) == 1 or self.pointwise
            else (
                f"Dense: applies to the last axis ({features}) at every one of {positions} positions; flatten first "
                "for a classifier",
            )
        )
        plus_bias = f" + {self.units}" if self.bias else ""
        weights: tuple[tuple[str, Shape], ...] = (("weight", (self.units, features)),)
        if self.bias:
            weights += (("bias", (self.units,)),)
        return LayerPlan(
            "Dense",
            self.name or "dense",
            in_shape,
            out,
            params=params,
            macs=macs,
            field="keep" if self.pointwise else "all",
            weights=weights,
            warnings=notes,
            explain=(
                f"params: {features}·{self.units}{plus_bias} = {fmt_int(params)}",
                f"MACs: {features}·{self.units}"
                + (f"·{positions}" if positions > 1 else "")
                + (f"·{batch}" if batch > 1 else "")
                + f" = {fmt_int(macs)}",
            ),
        )

    def forward(self, x: Array, plan: LayerPlan, weights: Weights, context: RunContext = DEFAULT_CONTEXT) -> Array:
        """``x @ weight.T + bias``; at every position of an ``H×W×C`` input one BLAS product over all positions
        (`featmap.core.gemm.pointwise`), not one per row."""
        weight = np.asarray(weights["weight"], dtype=x.dtype)
        bias = weights.get("bias")
        if x.ndim > 1:
            return pointwise(x, weight, None if bias is None else np.asarray(bias, dtype=x.dtype))
        out = np.matmul(x, weight.T)
        if bias is not None:
            out += np.asarray(bias, dtype=x.dtype)
        return out
