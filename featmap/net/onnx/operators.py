"""ONNX operators → featmap layers, one node at a time (the graph's forks and joins are `featmap.net.onnx.graph`'s).

Each mapper gets the node, the shape featmap has at its data input (``H×W×C``, ``L×C`` or ``N``), the layout
of the ONNX tensor there (``nchw``, or ``nhwc`` after a Transpose to channels last), and the graph's constants;
it returns featmap layers and the layout after them, or raises `Unsupported` with the reason.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from featmap.enums import Activation, PoolKind
from featmap.net.layers import (
    Act,
    BatchNorm,
    ChannelShuffle,
    Conv2d,
    Dense,
    Flatten,
    GlobalPool2d,
    LayerNorm,
    LayerScale,
    LayerSpec,
    Pool2d,
    Softmax,
    Split,
)

__all__ = ["MERGES", "OPERATORS", "Context", "Unsupported", "map_node"]

Shape = tuple[int, ...]


class Unsupported(Exception):
    """A node featmap cannot express, with the reason."""


@dataclass
class Context:
    """What a mapper may read: the initializers' shapes, the small constants' values, and the next nodes."""

    shapes: Mapping[str, Shape]
    values: Mapping[str, np.ndarray]
    next_node: Callable[[Any], Any]
    evaluate: Callable[[str], np.ndarray | None] = lambda name: None
    #: A stored tensor too large to be kept with the graph (an index table), read from the file; None if not one.
    read: Callable[[str], np.ndarray | None] = lambda name: None

    def shape(self, name: str) -> Shape:
        if name not in self.shapes:
            raise Unsupported(f"input {name!r} is computed, not a weight")
        return self.shapes[name]

    def value(self, name: str) -> np.ndarray:
        """A constant input, or one computed from shapes (``Shape`` → ``Gather`` → ``Concat``…)."""
        if name in self.values:
            return self.values[name]
        found = self.evaluate(name)
        if found is None:
            found = self.read(name)
        if found is None:
            raise Unsupported(f"input {name!r} is not a constant")
        return found


#: Nodes that join branches: the featmap merge each becomes.
MERGES = {"Add": "add", "Sum": "add", "Mul": "mul", "Concat": "concat"}


def attrs(node: Any) -> dict[str, Any]:
    """A node's attributes as Python values."""
    if not node.attribute:
        return {}
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _text(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


def _spatial(shape: Shape, op: str) -> None:
    if len(shape) != 3:
        raise Unsupported(f"{op} on a {len(shape)}-axis tensor (featmap maps 2-D images)")


def _padding(a: Mapping[str, Any], kernel: Sequence[int], stride: Sequence[int], shape: Shape) -> Any:
    """featmap's padding (top, bottom, left, right or a word) from ``pads``/``auto_pad``."""
    auto = _text(a.get("auto_pad", "NOTSET"))
    if auto == "VALID":
        return "valid"
    if auto == "SAME_UPPER":
        return "same"  # featmap's same puts the extra row at the bottom, as SAME_UPPER
    if auto == "SAME_LOWER":
        pads = []
        for axis in (0, 1):
            out = -(-shape[axis] // stride[axis])
            total = max((out - 1) * stride[axis] + kernel[axis] - shape[axis], 0)
            pads += [total - total // 2, total // 2]
        return tuple(pads)
    pads = list(a.get("pads", [0, 0, 0, 0]))
    if len(pads) != 4:
        raise Unsupported(f"pads {pads} (featmap maps 2-D windows)")
    top, left, bottom, right = pads
    return (top, bottom, left, right)


def _conv(node: Any, shape: Shape, layout: str, ctx: Context) -> list[LayerSpec]:
    _spatial(shape, "Conv")
    a = attrs(node)
    weight = ctx.shape(node.input[1])
    if len(weight) != 4:
        raise Unsupported(f"a {len(weight) - 2}-D convolution (featmap maps 2-D)")
    kernel = tuple(a.get("kernel_shape", weight[2:]))
    stride = tuple(a.get("strides", (1, 1)))
    dilation = tuple(a.get("dilations", (1, 1)))
    groups = int(a.get("group", 1))
    bias = len(node.input) > 2 and bool(node.input[2])
    padding = _padding(a, [d * (k - 1) + 1 for d, k in zip(dilation, kernel, strict=True)], stride, shape)
    return [Conv2d(weight[0], kernel, stride, padding, dilation=dilation, groups=groups, bias=bias)]


def _dense(units: int, bias: bool, shape: Shape, layout: str) -> Dense:
    if len(shape) == 3 and layout != "nhwc":
        raise Unsupported("a matrix product over the width axis of an N×C×H×W tensor")
    return Dense(units, bias=bias, pointwise=len(shape) > 1)


def _gemm(node: Any, shape: Shape, layout: str, ctx: Context) -> list[LayerSpec]:
    a = attrs(node)
    if a.get("transA", 0) or a.get("alpha", 1.0) != 1.0 or a.get("beta", 1.0) != 1.0:
        raise Unsupported("transA, alpha or beta other than PyTorch's Linear")
    weight = ctx.shape(node.input[1])
    units = weight[0] if a.get("transB", 0) else weight[1]
    return [_dense(units, len(node.input) > 2 and bool(node.input[2]), shape, layout)]


def _matmul(node: Any, shape: Shape, layout: str, ctx: Context) -> list[LayerSpec]:
    weight = ctx.shape(node.input[1])
    if len(weight) != 2:
        raise Unsupported("a matrix product with a computed or batched right-hand side")
    bias = False
    follower = ctx.next_node(node)
    if follower is not None and follower.op_type == "Add":
        other = [name for name in follower.input if name != node.output[0]]
        if len(other) == 1 and ctx.shapes.get(other[0]) in ((weight[1],),):
            bias = True  # MatMul + Add of a vector: one Linear; the Add is folded in
    return [_dense(weight[1], bias, shape, layout)]


def _pool(node: Any, shape: Shape, layout: str, ctx: Context) -> list[LayerSpec]:
    _spatial(shape, node.op_type)
    a = attrs(node)
    if any(d != 1 for d in a.get("dilations", (1, 1))):
        raise Unsupported("dilated pooling")
    kernel = tuple(a["kernel_shape"])
    stride = tuple(a.get("strides", (1, 1)))
    kind = PoolKind.MAX if node.op_type == "MaxPool" else PoolKind.AVG
    return [
        Pool2d(
            kind,
            kernel,
            stride,
            _padding(a, kernel, stride, shape),
            count_include_pad=bool(a.get("count_include_pad", 0)),
            ceil_mode=bool(a.get("ceil_mode", 0)),
        )
    ]


def _global(node: Any, shape: Shape, layout: str, ctx: Context) -> list[LayerSpec]:
    _spatial(shape, node.op_type)
    return [GlobalPool2d(PoolKind.MAX if node.op_type == "GlobalMaxPool" else PoolKind.AVG)]


def _reduce_mean(node: Any, shape: Shape, layout: str, ctx: Context) -> list[LayerSpec]:
    a = attrs(node)
    axes = a.get("axes")
    if axes is None and len(node.input) > 1:
        axes = ctx.value(node.input[1]).tolist()
    spatial = {2, 3, -1, -2} if layout == "nchw" else {1, 2, -2, -3}
    if len(shape) != 3 or axes is None or len(axes) != 2 or not set(axes) <= spatial:
        raise Unsupported(f"a mean over axes {axes} (featmap maps the mean over H and W)")
    layers: list[LayerSpec] = [GlobalPool2d(PoolKind.AVG)]
    return layers + ([] if a.get("keepdims", 1) else [Flatten()])


def _activation(name: str) -> Callable[[Any, Shape, str, Context], list[LayerSpec]]:
    def make(node: Any, shape: Shape, layout: str, ctx: Context) -> list[LayerSpec]:
        return [Act(Activation(name))]

    return make


def _leaky(node: Any, shape: Shape, layout: str, ctx: Context) -> list[LayerSpec]:
    return [Act(Activation.LEAKY_RELU, (("slope", float(attrs(node).get("alpha", 0.01))),))]


def _hardsigmoid(node: Any, shape: Shape, layout: str, ctx: Context) -> list[LayerSpec]:
    a = attrs(node)
    if not math.isclose(a.get("alpha", 0.2), 1 / 6, rel_tol=1e-6) or not math.isclose(a.get("beta", 0.5), 0.5):
        raise Unsupported("a hard sigmoid other than PyTorch's (alpha 1/6, beta 0.5)")
    return [Act(Activation.HARDSIGMOID)]


def _clip(node: Any, shape: Shape, layout: str, ctx: Context) -> list[LayerSpec]:
    a = attrs(node)
    low, high = a.get("min"), a.get("max")
    if len(node.input) > 1 and node.input[1]:
        low = float(ctx.value(node.input[1]))
    if len(node.input) > 2 and node.input[2]:
        high = float(ctx.value(node.input[2]))
    if low == 0 and high == 6:
        return [Act(Activation.RELU6)]
    if low == 0 and (high is None or math.isinf(high)):
        return [Act(Activation.RELU)]
    raise Unsupported(f"a clip to [{low}, {high}] (featmap maps ReLU and ReLU6)")


def _float32(value: float) -> float:
    """An attribute stored as float32 (``1e-3`` reads 0.0010000000475) back to the decimal it was written as."""
    return float(f"{value:.7g}")


def _batchnorm(node: Any, shape: Shape, layout: str, ctx: Context) -> list[LayerSpec]:
    return [BatchNorm(eps=_float32(attrs(node).get("epsilon", 1e-5)))]


def _layernorm(node: Any, shape: Shape, layout: str, ctx: Context) -> list[LayerSpec]:
    axis = attrs(node).get("axis", -1)
    if axis != -1 and axis != len(shape):
        raise Unsupported(f"a layer norm over axis {axis} (featmap normalises the channels)")
    if len(shape) == 3 and layout != "nhwc":
        raise Unsupported("a layer norm over the width axis of an N×C×H×W tensor")
    return [LayerNorm(eps=_float32(attrs(node).get("epsilon", 1e-5)))]


def _softmax(node: Any, shape: Shape, layout: str, ctx: Context) -> list[LayerSpec]:
    axis = attrs(node).get("axis", -1)
    channel_axes = {1} if layout == "nchw" and len(shape) == 3 else {-1, len(shape)}
    if axis not in channel_axes:
        raise Unsupported(f"a softmax over axis {axis} (featmap's is over the channels)")
    return [Softmax()]


def _flatten(node: Any, shape: Shape, layout: str, ctx: Context) -> list[LayerSpec]:
    if attrs(node).get("axis", 1) != 1:
        raise Unsupported("a flatten that keeps more than the batch axis")
    return [] if len(shape) == 1 else [Flatten()]


def restrides(node: Any, follower: Any, shape: Shape, layout: str, ctx: Context) -> bool:
    """Whether ``node`` (a Reshape to ``[-1]``) and ``follower`` (a Gather of every element in order, shaped as the
    tensor was) give the tensor back unchanged: torch's dynamo export of ``as_strided`` (ConvNeXt's head)."""
    if follower is None or follower.op_type != "Gather" or attrs(follower).get("axis", 0) != 0 or len(shape) != 3:
        return False
    if [int(v) for v in ctx.value(node.input[1]).reshape(-1)] != [-1]:
        return False
    indices = ctx.value(follower.input[1])
    h, w, c = shape
    as_onnx = (1, c, h, w) if layout == "nchw" else (1, h, w, c)
    return tuple(indices.shape) == as_onnx and np.array_equal(indices.reshape(-1), np.arange(indices.size))


def _reshape(node: Any, shape: Shape, layout: str, ctx: Context) -> list[LayerSpec]:
    if restrides(node, ctx.next_node(node), shape, layout, ctx):
        return []
    target = [int(v) for v in ctx.value(node.input[1]).reshape(-1)]
    if len(target) == 2 and target[1] in (-1, math.prod(shape)):
        return [] if len(shape) == 1 else [Flatten()]
    if len(target) == 5 and len(shape) == 3 and layout == "nchw":  # ShuffleNet: N, g, C/g, H, W → transpose
        follower = ctx.next_node(node)
        after = ctx.next_node(follower) if follower is not None else None
        perm = attrs(follower).get("perm") if follower is not None and follower.op_type == "Transpose" else None
        if perm == [0, 2, 1, 3, 4] and after is not None and after.op_type == "Reshape":
            return [ChannelShuffle(target[1])]
    raise Unsupported(f"a reshape to {target}")


def _transpose(node: Any, shape: Shape, layout: str, ctx: Context) -> list[LayerSpec]:
    perm = list(attrs(node).get("perm", []))
    if len(shape) == 3 and perm in ([0, 2, 3, 1], [0, 3, 1, 2]):
        return []  # featmap is channels-last already: only the layout changes (see LAYOUT_AFTER)
    raise Unsupported(f"a transpose {perm}")


def _scale(node: Any, shape: Shape, layout: str, ctx: Context) -> list[LayerSpec]:
    """Mul by a per-channel weight: a layer scale (ConvNeXt)."""
    weights = [name for name in node.input if name in ctx.shapes]
    if len(weights) != 1:
        raise Unsupported("an element-wise product with a computed tensor outside a gate")
    channels = shape[-1]
    size = math.prod(ctx.shapes[weights[0]])
    if size != channels:
        raise Unsupported(f"a product with a constant of {size} values on {channels} channels")
    return [LayerScale()]


def _slice(node: Any, shape: Shape, layout: str, ctx: Context) -> list[LayerSpec]:
    """A slice of the channels with constant bounds (a chunk, as exported by PyTorch): a `Split` part."""
    a = attrs(node)
    if len(node.input) > 1:
        starts, ends = ctx.value(node.input[1]).tolist(), ctx.value(node.input[2]).tolist()
        axes = ctx.value(node.input[3]).tolist() if len(node.input) > 3 and node.input[3] else list(range(len(starts)))
        steps = ctx.value(node.input[4]).tolist() if len(node.input) > 4 and node.input[4] else [1] * len(starts)
    else:
        starts, ends, axes, steps = a["starts"], a["ends"], a.get("axes", list(range(len(a["starts"])))), [1]
    channel_axes = {1, -3} if layout == "nchw" and len(shape) == 3 else {len(shape), -1}
    if len(axes) != 1 or axes[0] not in channel_axes or steps != [1]:
        raise Unsupported(f"a slice along axes {axes} (featmap slices channels)")
    channels = shape[-1]
    start, stop = (min(max(v + channels if v < 0 else v, 0), channels) for v in (starts[0], ends[0]))
    if stop <= start:
        raise Unsupported("an empty slice")
    sizes = tuple(s for s in (start, stop - start, channels - stop) if s)
    return [Split(1 if start else 0, sizes=sizes)]


def _nothing(node: Any, shape: Shape, layout: str, ctx: Context) -> list[LayerSpec]:
    return []


def _concat_one(node: Any, shape: Shape, layout: str, ctx: Context) -> list[LayerSpec]:
    """A concat of a single tensor (``torch.cat([x])``) is that tensor."""
    return []


OPERATORS: dict[str, Callable[[Any, Shape, str, Context], list[LayerSpec]]] = {
    "Conv": _conv,
    "Gemm": _gemm,
    "MatMul": _matmul,
    "MaxPool": _pool,
    "AveragePool": _pool,
    "GlobalAveragePool": _global,
    "GlobalMaxPool": _global,
    "ReduceMean": _reduce_mean,
    "Relu": _activation("relu"),
    "Sigmoid": _activation("sigmoid"),
    "Tanh": _activation("tanh"),
    "Abs": _activation("abs"),
    "HardSwish": _activation("hardswish"),
    "Gelu": _activation("gelu"),
    "LeakyRelu": _leaky,
    "HardSigmoid": _hardsigmoid,
    "Clip": _clip,
    "BatchNormalization": _batchnorm,
    "LayerNormalization": _layernorm,
    "Softmax": _softmax,
    "Flatten": _flatten,
    "Reshape": _reshape,
    "Transpose": _transpose,
    "Mul": _scale,
    "Slice": _slice,
    "Concat": _concat_one,
    "Dropout": _nothing,
    "Identity": _nothing,
}

#: Operators whose output is channels-last (``nhwc``) or back to ``nchw``, by their ``perm``.
LAYOUT_AFTER = {(0, 2, 3, 1): "nhwc", (0, 3, 1, 2): "nchw"}


def map_node(node: Any, shape: Shape, layout: str, ctx: Context) -> tuple[list[LayerSpec], str]:
    """The featmap layers for one node and the layout after it; `Unsupported` when there are none."""
    mapper = OPERATORS.get(node.op_type)
    if node.domain not in ("", "ai.onnx"):
        raise Unsupported(f"an operator of the {node.domain!r} domain, not standard ONNX")
    if mapper is None:
        raise Unsupported("no featmap layer for this operator")
    layers = mapper(node, shape, layout, ctx)
    if node.op_type == "Transpose":
        layout = LAYOUT_AFTER.get(tuple(attrs(node).get("perm", ())), layout)
    return layers, layout
