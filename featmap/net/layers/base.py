"""What every layer kind shares: the `LayerPlan` it works out once per input shape, the run context of its
forward pass, and the spatial helpers (1-D inputs as a column, the size formula spelled out).

A layer kind is a frozen dataclass with two methods side by side, as Keras states ``compute_output_shape``
and ``call`` in one file:

- ``plan(in_shape, batch=1) -> LayerPlan``: integer geometry and cost, no arrays;
- ``forward(x, plan, weights, context) -> ndarray``: the layer on an array, reading the same plan.

Examples
--------
>>> from featmap.net.layers import Conv2d
>>> plan = Conv2d(6, 5).plan((32, 32, 1))
>>> plan.out_shape, plan.params, plan.weights
((28, 28, 6), 156, (('weight', (6, 1, 5, 5)), ('bias', (6,))))
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import NDArray

from featmap.core.geometry import ConvGeometry, PaddingArg, conv_geometry, pool_geometry
from featmap.errors import ShapeError
from featmap.frozen import frozen_dataclass

__all__ = [
    "DEFAULT_CONTEXT",
    "Array",
    "LayerPlan",
    "RunContext",
    "Shape",
    "Weights",
    "explain_axes",
    "fmt_int",
    "need_spatial",
    "spatial_geometry",
    "stride_notes",
]

Shape = tuple[int, ...]
Array = NDArray[np.floating]
Weights = Mapping[str, Array]


@frozen_dataclass
class LayerPlan:
    """One layer's geometry and cost on one input shape, worked out once and read by the table, the warnings,
    the executor and the explainer.

    Attributes
    ----------
    kind : str
        The layer's type as the table shows it (``Conv2d``, ``MaxPool2d``, ``relu``…).
    name : str
        The layer's own name, or a default for its kind.
    in_shape, out_shape : tuple of int
        ``(H, W, C)``, ``(L, C)`` or ``(N,)``.
    params, non_trainable, macs : int
        Trainable parameters, running statistics (batch norm), multiply-adds (× batch).
    geometry : ConvGeometry or None
        Where a sliding window goes (conv, pooling): padding per side, output size, unused rows.
    field : {"keep", "window", "all"}
        What the layer does to the receptive field: nothing, a window step (``geometry``), or it sees
        the whole input from here on (flatten, dense, global pooling).
    kernel, stride, padding, dilation : tuple of int or None
        For display, on the input's spatial axes (padding as top, bottom, left, right).
    groups : int
        Convolution groups.
    weights : tuple of (name, shape)
        The tensors the forward pass needs, in PyTorch's layout (``weight`` (O, I/groups, kh, kw), ``bias``).
    detail, warnings, explain : str, tuple of str, tuple of str
        A short note for the table, geometry warnings, and the formulas with the numbers put in.
    """

    kind: str
    name: str
    in_shape: Shape
    out_shape: Shape
    params: int = 0
    non_trainable: int = 0
    macs: int = 0
    geometry: ConvGeometry | None = None
    field: str = "keep"
    kernel: tuple[int, ...] | None = None
    stride: tuple[int, ...] | None = None
    padding: tuple[int, ...] | None = None
    dilation: tuple[int, ...] | None = None
    groups: int = 1
    weights: tuple[tuple[str, Shape], ...] = ()
    detail: str = ""
    warnings: tuple[str, ...] = ()
    explain: tuple[str, ...] = ()

    @property
    def weight_shapes(self) -> dict[str, Shape]:
        """``{"weight": shape, "bias": shape, …}``."""
        return dict(self.weights)


@frozen_dataclass
class RunContext:
    """Choices of a forward pass that are not the layer's own.

    ``layout="torch"`` flattens ``(H, W, C)`` in PyTorch's channel-first order, so that a dense layer's
    PyTorch weights apply unchanged after ``flatten``; ``"keras"`` flattens row-major over H, W, C as
    Keras does.
    """

    layout: str = "torch"


#: The context a forward pass gets when none is given.
DEFAULT_CONTEXT = RunContext()


def fmt_int(n: int) -> str:
    """``1,234,567``."""
    return f"{n:,}"


def need_spatial(shape: Shape, what: str, dims: int | None = None) -> None:
    """Refuse a flat input where a layer needs ``H×W×C`` (``dims=2``) or ``L×C`` (``dims=1``)."""
    if len(shape) < 2 or (dims is not None and len(shape) != dims + 1):
        wanted = {2: "HxWxC", 1: "LxC"}.get(dims or 0, "HxWxC or LxC")
        given = "×".join(map(str, shape))
        if len(shape) == 2 and dims == 2:  # H×W without channels (32x32): the input lacks its C
            fix = f"give the channels too, e.g. {shape[0]}x{shape[1]}x1 (gray) or {shape[0]}x{shape[1]}x3 (RGB)"
        elif len(shape) == 1:
            fix = "check the input shape, or remove the flatten/dense before it"
        else:
            fix = "check the input shape"
        raise ShapeError("", f"{what} needs a {wanted} input but gets {given}", fix)


def spatial_geometry(
    shape: Shape,
    kernel: Sequence[int],
    stride: Sequence[int],
    padding: PaddingArg,
    dilation: Sequence[int],
    *,
    pool: bool = False,
    ceil_mode: bool = False,
) -> ConvGeometry:
    """The window geometry on the spatial axes of ``shape``; a 1-D input ``(L, C)`` is a column of width 1."""
    pad: object
    if len(shape) == 2:
        pad = padding
        if isinstance(padding, int):
            pad = (padding, padding, 0, 0)
        elif isinstance(padding, tuple) and len(padding) == 2:
            pad = (padding[0], padding[1], 0, 0)
        in_hw, k, s, d = (shape[0], 1), (kernel[0], 1), (stride[0], 1), (dilation[0], 1)
    else:
        pad, in_hw = padding, (shape[0], shape[1])
        k, s, d = (kernel[0], kernel[-1]), (stride[0], stride[-1]), (dilation[0], dilation[-1])
    if pool:
        return pool_geometry(in_hw, k, stride=s, padding=pad, ceil_mode=ceil_mode)
    return conv_geometry(in_hw, k, stride=s, padding=pad, dilation=d)


def stride_notes(g: ConvGeometry, axes: int, what: str) -> tuple[str, ...]:
    """``("Conv2d: stride 3 leaves the last 1 row and 1 column unused",)`` or ``()``."""
    text = g.dropped_text(axes)
    return () if text is None else (f"{what}: {text} unused",)


def explain_axes(g: ConvGeometry, axes: int) -> list[str]:
    """The output-size formula per axis with the numbers put in (one line when both axes agree)."""
    lines: list[str] = []
    labels = ("H", "W") if axes == 2 else ("L",)
    for a in range(axes):
        if (
            a == 1
            and g.in_hw[0] == g.in_hw[1]
            and g.padding[:2] == g.padding[2:]
            and g.kernel_hw[0] == g.kernel_hw[1]
            and g.stride[0] == g.stride[1]
            and g.dilation[0] == g.dilation[1]
        ):
            lines[-1] = lines[-1].replace("H:", "H, W:", 1)
            break
        pads = g.padding[2 * a] + g.padding[2 * a + 1]
        lines.append(
            f"{labels[a]}: floor(({g.in_hw[a]} + {pads} - {g.dilation[a]}·({g.kernel_hw[a]} - 1) - 1)"
            f" / {g.stride[a]}) + 1"
            f" = {g.out_hw[a]}"
        )
    return lines


def as_planes(x: Array) -> Array:
    """A 1-D ``(L, C)`` array as ``(L, 1, C)`` so that the 2-D kernels run it; ``(H, W, C)`` unchanged."""
    return x[:, np.newaxis, :] if x.ndim == 2 else x


def from_planes(y: Array, like: Shape) -> Array:
    """Undo `as_planes` for an input shaped ``like``."""
    return y[:, 0, :] if len(like) == 2 else y


def numel(shape: Shape) -> int:
    """The number of values in ``shape``."""
    return math.prod(shape)
