"""Pooling layers: windowed max/avg/min (`Pool2d`, with ceil_mode and count_include_pad), global pooling and
PyTorch's adaptive average pooling; each with its plan and its forward pass.

Examples
--------
>>> import numpy as np
>>> layer = Pool2d("max", 2)
>>> x = np.arange(16, dtype=np.float32).reshape(4, 4, 1)
>>> layer.forward(x, layer.plan(x.shape), {})[..., 0].tolist()
[[5.0, 7.0], [13.0, 15.0]]
"""

from __future__ import annotations

import numpy as np

from featmap.core.geometry import PaddingArg, as_pair, conv_geometry
from featmap.core.pool import check_pool_padding, pool_windows
from featmap.enums import PoolKind, parse_enum
from featmap.frozen import frozen_dataclass
from featmap.net.layers.base import (
    DEFAULT_CONTEXT,
    Array,
    LayerPlan,
    RunContext,
    Shape,
    Weights,
    as_planes,
    explain_axes,
    from_planes,
    need_spatial,
    spatial_geometry,
    stride_notes,
)
from featmap.net.layers.conv import check_padding_form

__all__ = ["AdaptiveAvgPool2d", "GlobalPool2d", "Pool2d"]

_KIND = {"max": "MaxPool", "avg": "AvgPool", "min": "MinPool"}


@frozen_dataclass
class Pool2d:
    """Max, average or min pooling over ``size`` windows; ``stride`` defaults to ``size``."""

    kind: PoolKind = PoolKind.MAX
    size: tuple[int, int] = (2, 2)
    stride: tuple[int, int] | None = None
    padding: PaddingArg = "valid"
    count_include_pad: bool = False
    ceil_mode: bool = False
    name: str | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "kind", parse_enum(PoolKind, self.kind, "pool"))
        set_(self, "size", as_pair(self.size, "pool_size"))
        set_(self, "stride", self.size if self.stride is None else as_pair(self.stride, "pool_stride"))
        set_(self, "padding", check_padding_form(self.padding))

    def plan(self, in_shape: Shape, batch: int = 1) -> LayerPlan:
        """Output shape and window geometry (a ``ceil_mode`` window's extra reach shown as padding)."""
        need_spatial(in_shape, "pooling")
        n = len(in_shape) - 1
        stride = self.stride or self.size
        check_pool_padding(spatial_geometry(in_shape, self.size, stride, self.padding, (1, 1), pool=True))
        g = spatial_geometry(in_shape, self.size, stride, self.padding, (1, 1), pool=True, ceil_mode=self.ceil_mode)
        kind = _KIND[self.kind.value] + ("1d" if n == 1 else "2d")
        explain = explain_axes(g, n)
        if self.ceil_mode:
            explain.append("ceil_mode: a last partial window is kept (the extra reach is shown as padding)")
        return LayerPlan(
            kind,
            self.name or kind.lower(),
            in_shape,
            (*g.out_hw[:n], in_shape[-1]),
            geometry=g,
            field="window",
            kernel=g.kernel_hw[:n],
            stride=g.stride[:n],
            padding=g.padding[: 2 * n],
            detail="ceil" if self.ceil_mode else "",
            warnings=() if self.ceil_mode else stride_notes(g, n, kind),
            explain=tuple(explain),
        )

    def forward(self, x: Array, plan: LayerPlan, weights: Weights, context: RunContext = DEFAULT_CONTEXT) -> Array:
        """Pool on the plan's geometry; padded cells never win and are not counted (``count_include_pad``)."""
        assert plan.geometry is not None
        declared = spatial_geometry(plan.in_shape, self.size, self.stride or self.size, self.padding, (1, 1), pool=True)
        out = pool_windows(
            as_planes(x), plan.geometry, declared.padding, self.kind, count_include_pad=self.count_include_pad
        )
        return from_planes(out, plan.in_shape)


@frozen_dataclass
class GlobalPool2d:
    """Global average, max or min pooling: every spatial axis becomes 1."""

    kind: PoolKind = PoolKind.AVG
    name: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", parse_enum(PoolKind, self.kind, "global pool"))

    def plan(self, in_shape: Shape, batch: int = 1) -> LayerPlan:
        """``(1, 1, C)`` (or ``(1, C)`` for 1-D); the receptive field is the whole input from here on."""
        need_spatial(in_shape, "global pooling")
        kind = f"Global{_KIND[self.kind.value]}"
        out = (1,) * (len(in_shape) - 1) + (in_shape[-1],)
        return LayerPlan(kind, self.name or kind.lower(), in_shape, out, field="all")

    def forward(self, x: Array, plan: LayerPlan, weights: Weights, context: RunContext = DEFAULT_CONTEXT) -> Array:
        """Reduce the spatial axes (the average in float64)."""
        axes = tuple(range(x.ndim - 1))
        if self.kind is PoolKind.MAX:
            return x.max(axis=axes, keepdims=True)
        if self.kind is PoolKind.MIN:
            return x.min(axis=axes, keepdims=True)
        return x.mean(axis=axes, keepdims=True, dtype=np.float64).astype(x.dtype)


def adaptive_bounds(size: int, out: int) -> tuple[np.ndarray, np.ndarray]:
    """PyTorch's adaptive windows along one axis: ``[floor(i·size/out), ceil((i+1)·size/out))``.

    Examples
    --------
    >>> [b.tolist() for b in adaptive_bounds(5, 3)]
    [[0, 1, 3], [2, 4, 5]]
    """
    i = np.arange(out)
    return (i * size) // out, -((-(i + 1) * size) // out)


def _adaptive_axis(x: np.ndarray, axis: int, out: int) -> np.ndarray:
    """Average each adaptive window along ``axis`` through a running sum (no loop over windows). One window over the
    whole axis (a global average) is the running sum's last value alone, added up a row at a time in the running
    sum's own order: the same bits, without the running sum's other values (0.25 → 0.02 ms on 7×7×512)."""
    if out == 1:
        rows = np.moveaxis(x, axis, 0)
        total = rows[0].astype(np.float64)
        for row in rows[1:]:
            total += row
        return np.expand_dims(total, axis) / x.shape[axis]
    start, stop = adaptive_bounds(x.shape[axis], out)
    shape = list(x.shape)
    shape[axis] = 1
    running = np.concatenate([np.zeros(shape), np.cumsum(x, axis=axis, dtype=np.float64)], axis=axis)
    sums = np.take(running, stop, axis=axis) - np.take(running, start, axis=axis)
    counts = (stop - start).reshape([-1 if a == axis else 1 for a in range(x.ndim)])
    return sums / counts


@frozen_dataclass
class AdaptiveAvgPool2d:
    """Average pooling to a fixed output size, as ``torch.nn.AdaptiveAvgPool2d``."""

    output: tuple[int, int] = (1, 1)
    name: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "output", as_pair(self.output, "adaptive pool output"))

    def plan(self, in_shape: Shape, batch: int = 1) -> LayerPlan:
        """``(*output, C)``; a window geometry when the input is a multiple of the output."""
        need_spatial(in_shape, "adaptive pooling", 2)
        out = (*self.output, in_shape[-1])
        if all(in_shape[a] % self.output[a] == 0 for a in (0, 1)):
            k = (in_shape[0] // self.output[0], in_shape[1] // self.output[1])
            g = conv_geometry((in_shape[0], in_shape[1]), k, stride=k)
            return LayerPlan(
                "AdaptiveAvgPool2d",
                self.name or "adaptiveavgpool",
                in_shape,
                out,
                geometry=g,
                field="window",
                explain=(f"window = stride = {k[0]}×{k[1]} (input ÷ output)",),
            )
        return LayerPlan(
            "AdaptiveAvgPool2d",
            self.name or "adaptiveavgpool",
            in_shape,
            out,
            field="all",
            explain=("windows of varying size (input not a multiple of the output)",),
        )

    def forward(self, x: Array, plan: LayerPlan, weights: Weights, context: RunContext = DEFAULT_CONTEXT) -> Array:
        """Average over PyTorch's adaptive windows, rows then columns."""
        rows = _adaptive_axis(x, 0, self.output[0])
        return _adaptive_axis(rows, 1, self.output[1]).astype(x.dtype)
