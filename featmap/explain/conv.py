"""The step records of a convolution: padded input, windows, products, sums, bias, activation."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
from numpy.typing import ArrayLike, NDArray

from featmap.core.engine import window_taps
from featmap.core.geometry import ConvGeometry, PaddingArg, as_pair
from featmap.core.ops import pad
from featmap.enums import Activation, PaddingMode, parse_enum
from featmap.errors import ShapeError, SpecError
from featmap.explain.arithmetic import AxisArithmetic, axes_of, check_fits, positions_of, window_cells
from featmap.explain.limits import Matrix, check_matrix
from featmap.frozen import frozen_dataclass
from featmap.net.layers import Act, Conv2d

__all__ = ["ConvStep", "ConvTrace", "trace_conv"]


@frozen_dataclass(eq=False)
class ConvStep:
    """One output position of a convolution: the window, the products and how the value is made.

    ``window``, ``weights`` and ``products`` are ``(C, kh, kw)``; ``weights`` are the ones applied
    (turned 180° when the convolution is flipped). ``channel_sums`` are the per-channel sums.
    """

    position: tuple[int, int]
    rows: tuple[int, ...]
    cols: tuple[int, ...]
    window: Matrix
    weights: Matrix
    products: Matrix
    channel_sums: tuple[float, ...]
    total: float
    bias: float
    pre_activation: float
    value: float


@frozen_dataclass(eq=False)
class ConvTrace:
    """A convolution of one small matrix with one filter, every fact `featmap explain` shows.

    Attributes
    ----------
    input : ndarray (H, W, C)
    padded : ndarray (H + top + bottom, W + left + right, C)
        As `featmap.core.ops.pad` makes it for the engine.
    pad_mask : ndarray of bool (padded H, padded W)
        True on the cells the padding added.
    kernel : ndarray (C, kh, kw)
        As given; ``applied`` is what multiplies the windows (turned 180° when ``flip``).
    geometry : ConvGeometry
    axes : the output-size arithmetic for rows and columns
    sums : ndarray (H_out, W_out)
        Sum of the products at each position, before the bias.
    output : ndarray (H_out, W_out)
        After the bias and the activation; equals `featmap.conv2d` + `featmap.activate`.
    """

    input: Matrix
    padded: Matrix
    pad_mask: NDArray[np.bool_]
    kernel: Matrix
    applied: Matrix
    flip: bool
    bias: float
    activation: Activation
    slope: float
    pad_mode: PaddingMode
    pad_value: float
    geometry: ConvGeometry
    axes: tuple[AxisArithmetic, AxisArithmetic]
    sums: Matrix
    output: Matrix

    @property
    def positions(self) -> list[tuple[int, int]]:
        """Every output position, row by row."""
        return positions_of(self.geometry)

    def cells(self, r: int, c: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Padded-input rows and columns of the window of output ``(r, c)``."""
        return window_cells(self.geometry, r, c)

    def step(self, r: int, c: int) -> ConvStep:
        """The record of output position ``(r, c)``."""
        rows, cols = self.cells(r, c)
        window = np.moveaxis(self.padded[np.ix_(rows, cols)], 2, 0)
        products = window * self.applied
        total = float(self.sums[r, c])
        return ConvStep(
            (r, c),
            rows,
            cols,
            window,
            self.applied,
            products,
            tuple(float(s) for s in products.sum(axis=(1, 2))),
            total,
            self.bias,
            total + self.bias,
            float(self.output[r, c]),
        )


def trace_conv(
    x: ArrayLike,
    weights: ArrayLike,
    bias: float | None = 0.0,
    *,
    stride: int | Sequence[int] = 1,
    padding: PaddingArg = "valid",
    pad_mode: str | PaddingMode = "zeros",
    pad_value: float = 0.0,
    dilation: int | Sequence[int] = 1,
    flip: bool = False,
    activation: str | Activation = "none",
    slope: float = 0.01,
    geometry: ConvGeometry | None = None,
    layer: Conv2d | None = None,
) -> ConvTrace:
    """Trace a cross-correlation (``flip=True``: convolution) of ``x`` with one filter.

    ``x`` is ``(H, W)`` or ``(H, W, C)``; ``weights`` is ``(kh, kw)`` for a one-channel input or
    ``(C, kh, kw)``, one slice per channel, summed over the channels as a CNN filter is. Options mean
    what they mean for `featmap.conv2d`; the output is `activate(conv2d(...) + bias)`. ``layer`` is the conv
    layer to trace (`featmap.net.layers.Conv2d`: its stride, padding, pad mode, dilation and flip; without one
    it is made from the options): its plan for this one filter places the windows (``geometry``, a plan's,
    overrides it), and the activation layer's forward pass (`featmap.net.layers.Act`) makes the output from the
    sums, which are the products of each window added in float64, as the steps show them.
    """
    arr = check_matrix(x, "input")
    w = np.asarray(weights)
    if w.ndim == 2:
        w = w[np.newaxis]
    if w.ndim != 3:
        raise ShapeError("kernel", f"must be (kh, kw) or (C, kh, kw); got shape {w.shape}")
    kernel = np.moveaxis(check_matrix(np.moveaxis(w, 0, -1), "kernel"), -1, 0)  # limits checked as (kh, kw, C)
    if kernel.shape[0] != arr.shape[2]:
        given = kernel.shape[0]
        raise ShapeError(
            "kernel",
            f"has {given} channel slice{'s' * (given != 1)} but the input has {arr.shape[2]} channel"
            f"{'s' * (arr.shape[2] != 1)}",
            "give one kernel slice per input channel (inline: slices split by `|`), or explain a gray input",
        )
    act = parse_enum(Activation, activation, "activation")
    bias = 0.0 if bias is None else bias  # None: no bias, as for conv2d
    if not np.isfinite(bias):
        raise SpecError("bias", f"must be a finite number; got {bias}")
    if layer is None:
        mode = parse_enum(PaddingMode, pad_mode, "pad_mode")
        pair_stride, pair_dilation = as_pair(stride, "stride"), as_pair(dilation, "dilation")
        layer = Conv2d(
            stride=pair_stride, padding=padding, pad_mode=mode, pad_value=pad_value, dilation=pair_dilation, flip=flip
        )
    one = replace(layer, filters=1, kernel=kernel.shape[1:], groups=1, depthwise=False, bank=None, name=None)
    g = geometry or one.plan(arr.shape).geometry
    assert g is not None  # a conv plan always has one
    check_fits(g, arr, kernel.shape[1:])
    mode, pad_value, flip = one.pad_mode, one.pad_value, one.flip
    padded = pad(arr, g.padding, mode, pad_value=pad_value)
    mask = np.ones(g.padded_hw, dtype=bool)
    top, _, left, _ = g.padding
    mask[top : top + arr.shape[0], left : left + arr.shape[1]] = False
    applied = kernel[:, ::-1, ::-1] if flip else kernel
    sums = np.zeros(g.out_hw, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow is refused below, in one message
        for i, j, view in window_taps(padded, g):
            sums += view @ applied[:, i, j]
        act_layer = Act(act, (("slope", slope),) if act is Activation.LEAKY_RELU else ())
        output = act_layer.forward(sums + bias, act_layer.plan(sums.shape), {})
    if not (np.all(np.isfinite(sums)) and np.all(np.isfinite(output))):
        raise SpecError("input", "values overflow: the sums are not finite", "use smaller numbers")
    return ConvTrace(
        arr,
        padded,
        mask,
        kernel,
        np.ascontiguousarray(applied),
        flip,
        float(bias),
        act,
        float(slope),
        mode,
        float(pad_value),
        g,
        axes_of(g),
        sums,
        output,
    )
