"""Layers that keep the shape: activations (`Act`), batch normalisation in inference form (`BatchNorm`) and
`Dropout` (nothing at inference); each with its plan and its forward pass.

Examples
--------
>>> import numpy as np
>>> layer = BatchNorm()
>>> x = np.array([[[1.0, 2.0]]], np.float32)
>>> w = {"weight": np.array([2.0, 1.0]), "bias": np.array([0.0, 1.0]),
...      "running_mean": np.array([1.0, 0.0]), "running_var": np.array([1.0, 4.0])}
>>> layer.forward(x, layer.plan(x.shape), w).round(4).tolist()
[[[0.0, 2.0]]]
"""

from __future__ import annotations

from dataclasses import field

from featmap.core.ops import activate
from featmap.enums import Activation, parse_enum
from featmap.errors import SpecError
from featmap.frozen import frozen_dataclass
from featmap.net.fold import bn_affine
from featmap.net.layers.base import DEFAULT_CONTEXT, Array, LayerPlan, RunContext, Shape, Weights

__all__ = ["Act", "BatchNorm", "Dropout"]


@frozen_dataclass
class Act:
    """An element-wise activation with its parameters (``leaky_relu`` takes ``slope``)."""

    kind: Activation = Activation.NONE
    params: tuple[tuple[str, float], ...] = field(default_factory=tuple)
    name: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", parse_enum(Activation, self.kind, "activation"))
        object.__setattr__(self, "params", tuple(sorted(dict(self.params).items())))

    def plan(self, in_shape: Shape, batch: int = 1) -> LayerPlan:
        """The same shape; no parameters."""
        kind = self.kind.value
        return LayerPlan(kind, self.name or kind.lower(), in_shape, in_shape)

    def forward(self, x: Array, plan: LayerPlan, weights: Weights, context: RunContext = DEFAULT_CONTEXT) -> Array:
        """The activation, element by element."""
        return activate(x, self.kind, out=None, **dict(self.params))


@frozen_dataclass
class BatchNorm:
    """Batch normalisation over the channels: 2C trainable (scale, shift), 2C running statistics.

    The forward pass is the inference form, ``(x - running_mean) / sqrt(running_var + eps) · weight + bias``
    (``eps`` 1e-5 as PyTorch; Keras uses 1e-3).
    """

    name: str | None = None
    eps: float = 1e-5

    def __post_init__(self) -> None:
        if isinstance(self.eps, bool) or not isinstance(self.eps, (int, float)) or not 0 <= self.eps < 1:
            raise SpecError("`eps`", f"must be a number in [0, 1); got {self.eps!r}")

    def plan(self, in_shape: Shape, batch: int = 1) -> LayerPlan:
        """The same shape; 2C trainable and 2C running statistics."""
        channels = in_shape[-1]
        vector = (channels,)
        return LayerPlan(
            "BatchNorm",
            self.name or "bn",
            in_shape,
            in_shape,
            params=2 * channels,
            non_trainable=2 * channels,
            weights=(("weight", vector), ("bias", vector), ("running_mean", vector), ("running_var", vector)),
            explain=(f"params: 2·{channels} (scale, shift) trainable + 2·{channels} (running mean, var) not",),
        )

    def forward(self, x: Array, plan: LayerPlan, weights: Weights, context: RunContext = DEFAULT_CONTEXT) -> Array:
        """Normalise each channel with its running statistics, then scale and shift."""
        dtype = x.dtype
        scale, shift = bn_affine(weights, self.eps)
        out = x * scale.astype(dtype)
        out += shift.astype(dtype)
        return out


@frozen_dataclass
class Dropout:
    """Dropout; changes nothing at inference and has no parameters."""

    rate: float = 0.5
    name: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.rate, bool) or not isinstance(self.rate, (int, float)) or not 0 <= self.rate < 1:
            raise SpecError("`dropout`", f"rate must be in [0, 1); got {self.rate!r}")

    def plan(self, in_shape: Shape, batch: int = 1) -> LayerPlan:
        """The same shape; no parameters."""
        return LayerPlan("Dropout", self.name or "dropout", in_shape, in_shape, detail=f"p={self.rate:g}")

    def forward(self, x: Array, plan: LayerPlan, weights: Weights, context: RunContext = DEFAULT_CONTEXT) -> Array:
        """The input unchanged (inference)."""
        return x
