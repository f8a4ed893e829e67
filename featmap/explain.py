"""Step records of a convolution and a pooling on a small matrix: what `featmap explain` shows.

Pure: numpy only, no files, no printing. The records come from the engine's own pieces: the geometry
from `featmap.shapes.conv_geometry` / `pool_geometry` (padding per side, output size, rows a stride
leaves unused), the padding from `featmap.ops.pad`, the windows from `featmap.engine.window_taps` (the
one slice formula) and the activation from `featmap.ops.activate`; the tests check that every output
equals `featmap.conv2d` / `featmap.pool2d`.

Examples
--------
>>> t = trace_conv([[1, 2, 0], [0, 1, 2], [2, 0, 1]], [[1, 0], [0, 1]])
>>> t.output.tolist()
[[2.0, 4.0], [0.0, 2.0]]
>>> t.step(0, 1).products.ravel().tolist()
[2.0, 0.0, 0.0, 2.0]
>>> t.axes[0].worked
'(3 − 2 + 2·0) / 1 + 1 = 1 / 1 + 1 = 2'
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .engine import window_taps
from .enums import Activation, PaddingMode, PoolKind, parse_enum
from .errors import ShapeError, SpecError
from .layers import Act, Conv2d, GlobalPool2d, Pool2d
from .ops import activate, pad
from .shapes import ConvGeometry, PaddingArg, conv_geometry, pool_geometry

__all__ = [
    "MAX_CHANNELS",
    "MAX_SIDE",
    "AxisArithmetic",
    "ConvStep",
    "ConvTrace",
    "Explanation",
    "PoolStep",
    "PoolTrace",
    "check_matrix",
    "format_number",
    "pick_positions",
    "terms_text",
    "explain",
    "trace_conv",
    "trace_pool",
]

#: Largest input (and kernel) side `explain` takes: a step-by-step view of more is unreadable.
MAX_SIDE = 64
#: Most input channels `explain` takes (an RGB crop is 3).
MAX_CHANNELS = 4

Matrix = NDArray[np.floating]


def check_matrix(values: ArrayLike, what: str) -> Matrix:
    """Return ``values`` as a finite float64 ``(H, W, C)`` array within the explain limits.

    A 2-D matrix is one channel; a 3-D one is ``(H, W, C)``.

    Examples
    --------
    >>> check_matrix([[1, 2], [3, 4]], "input").shape
    (2, 2, 1)
    """
    arr = np.asarray(values)
    if arr.dtype.kind not in "biuf":
        raise SpecError(what, f"must hold numbers; got {arr.dtype}", "give a numeric matrix")
    if arr.ndim == 2:
        arr = arr[:, :, np.newaxis]
    if arr.ndim != 3:
        raise ShapeError(what, f"must be a matrix (H, W) or (H, W, C); got shape {arr.shape}")
    if min(arr.shape) == 0:
        raise ShapeError(what, f"is empty (shape {arr.shape})", "give at least one number")
    if max(arr.shape[:2]) > MAX_SIDE or arr.shape[2] > MAX_CHANNELS:
        raise ShapeError(
            what,
            f"is {arr.shape[0]}×{arr.shape[1]}×{arr.shape[2]}, over explain's limit of "
            f"{MAX_SIDE}×{MAX_SIDE}×{MAX_CHANNELS}",
            "explain a smaller matrix or crop (featmap apply runs whole images)",
        )
    out = arr.astype(np.float64)
    if not np.all(np.isfinite(out)):
        raise SpecError(what, "holds NaN or infinity", "give finite numbers")
    return out


def _check_fits(g: ConvGeometry, arr: Matrix, kernel_hw: tuple[int, ...]) -> None:
    """Refuse a geometry planned for another input or kernel size."""
    if g.in_hw != arr.shape[:2] or g.kernel_hw != tuple(kernel_hw):
        raise ShapeError(
            "geometry",
            f"is planned for a {g.in_hw} input and {g.kernel_hw} kernel; got {arr.shape[:2]} and {tuple(kernel_hw)}",
            "plan the layer on this input",
        )


@dataclass(frozen=True)
class AxisArithmetic:
    """The output-size formula along one axis, with its numbers.

    ``unused`` counts the rows (or columns) at the end of the padded input that no window reaches
    because the stride does not fit; they start at padded index ``padded - unused``.
    """

    axis: str
    size: int
    kernel: int
    dilation: int
    pad_before: int
    pad_after: int
    stride: int
    out: int
    unused: int

    @property
    def padded(self) -> int:
        """Input length with the padding."""
        return self.size + self.pad_before + self.pad_after

    @property
    def span(self) -> int:
        """The length the kernel's dilated extent covers: ``dilation * (kernel - 1) + 1``."""
        return self.dilation * (self.kernel - 1) + 1

    def _pad_terms(self) -> tuple[str, str]:
        if self.pad_before == self.pad_after:
            return "2P", f"2·{self.pad_before}"
        return "P₁ + P₂", f"{self.pad_before} + {self.pad_after}"

    @property
    def formula(self) -> str:
        """The rule in symbols (``(N − F + 2P) / S + 1``, floored)."""
        pads, _ = self._pad_terms()
        kernel = "F" if self.dilation == 1 else "(D·(F − 1) + 1)"
        return f"(N − {kernel} + {pads}) / S + 1"

    @property
    def worked(self) -> str:
        """The rule with the numbers put in, floored where the stride does not divide."""
        _, pads = self._pad_terms()
        kernel = str(self.kernel) if self.dilation == 1 else f"({self.dilation}·({self.kernel} − 1) + 1)"
        reach = self.padded - self.span
        quotient = f"{reach} / {self.stride}" if reach % self.stride == 0 else f"⌊{reach} / {self.stride}⌋"
        return f"({self.size} − {kernel} + {pads}) / {self.stride} + 1 = {quotient} + 1 = {self.out}"

    @property
    def note(self) -> str | None:
        """What the stride leaves unused, or None when every padded row (column) is reached."""
        if not self.unused:
            return None
        word = self.axis[:-1] if self.unused == 1 else self.axis
        first = self.padded - self.unused
        where = f"index {first}" if self.unused == 1 else f"indices {first}–{self.padded - 1}"
        return (
            f"{self.reach_text()} leaves {self.unused} {word} unused (padded {where}): floored, as PyTorch and Keras do"
        )

    def reach_text(self) -> str:
        """``"stride 2 over 8 − 3 = 5"``: why the stride does not fit."""
        return f"stride {self.stride} over {self.padded} − {self.span} = {self.padded - self.span}"


def _axes(g: ConvGeometry) -> tuple[AxisArithmetic, AxisArithmetic]:
    return tuple(  # type: ignore[return-value]  # two axes
        AxisArithmetic(
            name,
            g.in_hw[a],
            g.kernel_hw[a],
            g.dilation[a],
            g.padding[2 * a],
            g.padding[2 * a + 1],
            g.stride[a],
            g.out_hw[a],
            g.dropped_hw[a],
        )
        for a, name in enumerate(("rows", "columns"))
    )


def _window_indices(g: ConvGeometry, r: int, c: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Padded-input rows and columns the window of output ``(r, c)`` reads (dilation included)."""
    if not (0 <= r < g.out_hw[0] and 0 <= c < g.out_hw[1]):
        raise ShapeError(
            "position",
            f"({r}, {c}) is outside the {g.out_hw[0]}×{g.out_hw[1]} output",
            f"use rows 0–{g.out_hw[0] - 1} and columns 0–{g.out_hw[1] - 1}",
        )
    (kh, kw), (sh, sw), (dh, dw) = g.kernel_hw, g.stride, g.dilation
    return tuple(r * sh + i * dh for i in range(kh)), tuple(c * sw + j * dw for j in range(kw))


def _positions(g: ConvGeometry) -> list[tuple[int, int]]:
    return [(r, c) for r in range(g.out_hw[0]) for c in range(g.out_hw[1])]


@dataclass(frozen=True, eq=False)
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


@dataclass(frozen=True, eq=False)
class ConvTrace:
    """A convolution of one small matrix with one filter, every fact `featmap explain` shows.

    Attributes
    ----------
    input : ndarray (H, W, C)
    padded : ndarray (H + top + bottom, W + left + right, C)
        As `featmap.ops.pad` makes it for the engine.
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
        return _positions(self.geometry)

    def cells(self, r: int, c: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Padded-input rows and columns of the window of output ``(r, c)``."""
        return _window_indices(self.geometry, r, c)

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


def _activate(values: Matrix, activation: Activation, slope: float) -> Matrix:
    if activation is Activation.LEAKY_RELU:
        return activate(values, activation, slope=slope)
    return activate(values, activation)


def trace_conv(
    x: ArrayLike,
    weights: ArrayLike,
    bias: float = 0.0,
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
) -> ConvTrace:
    """Trace a cross-correlation (``flip=True``: convolution) of ``x`` with one filter.

    ``x`` is ``(H, W)`` or ``(H, W, C)``; ``weights`` is ``(kh, kw)`` for a one-channel input or
    ``(C, kh, kw)``, one slice per channel, summed over the channels as a CNN filter is. Options mean
    what they mean for `featmap.conv2d`; the output is `activate(conv2d(...) + bias)`. ``geometry`` is a
    layer plan's (`featmap.layers.Conv2d.plan`); without one it is worked out from the options.
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
            "give one kernel slice per input channel (slices split by `|`)",
        )
    act = parse_enum(Activation, activation, "activation")
    mode = parse_enum(PaddingMode, pad_mode, "pad_mode")
    if not np.isfinite(bias):
        raise SpecError("bias", f"must be a finite number; got {bias}")
    g = geometry or conv_geometry(arr.shape[:2], kernel.shape[1:], stride=stride, padding=padding, dilation=dilation)
    _check_fits(g, arr, kernel.shape[1:])
    padded = pad(arr, g.padding, mode, value=pad_value)
    mask = np.ones(g.padded_hw, dtype=bool)
    top, _, left, _ = g.padding
    mask[top : top + arr.shape[0], left : left + arr.shape[1]] = False
    applied = kernel[:, ::-1, ::-1] if flip else kernel
    sums = np.zeros(g.out_hw, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow is refused below, in one message
        for i, j, view in window_taps(padded, g):
            sums += view @ applied[:, i, j]
        output = _activate(sums + bias, act, slope)
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
        _axes(g),
        sums,
        output,
    )


@dataclass(frozen=True, eq=False)
class PoolStep:
    """One pooled position: the window (NaN on padding), the winner or the average and its count."""

    position: tuple[int, int]
    rows: tuple[int, ...]
    cols: tuple[int, ...]
    window: Matrix
    real: NDArray[np.bool_]
    winner: tuple[int, int] | None
    total: float
    count: int
    value: float


@dataclass(frozen=True, eq=False)
class PoolTrace:
    """Max, average or min pooling of one channel: padded input (NaN on padding), geometry, output.

    Padded cells never win and are not counted in an average (featmap's and TensorFlow's rule), so
    ``output`` equals `featmap.pool2d`.
    """

    input: Matrix
    padded: Matrix
    pad_mask: NDArray[np.bool_]
    kind: PoolKind
    geometry: ConvGeometry
    axes: tuple[AxisArithmetic, AxisArithmetic]
    counts: NDArray[np.int64]
    output: Matrix
    global_pool: bool = False

    @property
    def positions(self) -> list[tuple[int, int]]:
        """Every output position, row by row."""
        return _positions(self.geometry)

    def cells(self, r: int, c: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Padded-input rows and columns of the window of output ``(r, c)``."""
        return _window_indices(self.geometry, r, c)

    def step(self, r: int, c: int) -> PoolStep:
        """The record of output position ``(r, c)``."""
        rows, cols = self.cells(r, c)
        window = self.padded[np.ix_(rows, cols)][:, :, 0]
        real = ~self.pad_mask[np.ix_(rows, cols)]
        value = float(self.output[r, c])
        winner = None
        if self.kind is not PoolKind.AVG:
            hits = np.argwhere(real & (window == value))  # the first in reading order, as np.argmax picks
            winner = (rows[int(hits[0][0])], cols[int(hits[0][1])])
        total = float(window[real].sum())
        return PoolStep((r, c), rows, cols, window, real, winner, total, int(self.counts[r, c]), value)


def trace_pool(
    x: ArrayLike,
    size: int | Sequence[int] = 2,
    *,
    stride: int | Sequence[int] | None = None,
    padding: PaddingArg = "valid",
    mode: str | PoolKind = "max",
    global_pool: bool = False,
    geometry: ConvGeometry | None = None,
) -> PoolTrace:
    """Trace max, average or min pooling of a one-channel ``x``; ``stride`` defaults to ``size``.

    ``global_pool=True`` pools the whole plane into one value (``size`` is then ignored). ``geometry`` is a
    layer plan's (`featmap.layers.Pool2d.plan`); without one it is worked out from the options.
    """
    arr = check_matrix(x, "input")
    if arr.shape[2] != 1:
        raise ShapeError(
            "input",
            f"has {arr.shape[2]} channels; pooling is explained one channel at a time",
            "give a 2-D matrix (or a gray crop)",
        )
    kind = parse_enum(PoolKind, mode, "pool")
    if global_pool:
        size, stride, padding = arr.shape[:2], 1, "valid"
    g = geometry or pool_geometry(arr.shape[:2], size, stride=stride, padding=padding)
    _check_fits(g, arr, g.kernel_hw)
    top, _, left, _ = g.padding
    mask = np.ones(g.padded_hw, dtype=bool)
    mask[top : top + arr.shape[0], left : left + arr.shape[1]] = False
    padded = np.full((*g.padded_hw, 1), np.nan)
    padded[~mask] = arr.reshape(-1, 1)
    fill = {PoolKind.MAX: -np.inf, PoolKind.MIN: np.inf, PoolKind.AVG: 0.0}[kind]
    filled = np.where(mask[:, :, np.newaxis], fill, padded)
    reduce: np.ufunc = {PoolKind.MAX: np.maximum, PoolKind.MIN: np.minimum, PoolKind.AVG: np.add}[kind]
    out = np.full(g.out_hw, fill)
    cells = np.zeros(g.out_hw)
    real_cells = (~mask[:, :, np.newaxis]).astype(np.float64)
    for (_, _, view), (_, _, real) in zip(window_taps(filled, g), window_taps(real_cells, g), strict=True):
        reduce(out, view[:, :, 0], out=out)
        cells += real[:, :, 0]
    counts = cells.astype(np.int64)
    if np.any(counts == 0):
        raise ShapeError(
            "padding",
            f"pooling pads of {g.padding} leave a {g.kernel_hw[0]}×{g.kernel_hw[1]} window with no input cell",
            "pad at most half the window, or use `same`",
        )
    if kind is PoolKind.AVG:
        out = out / counts
    return PoolTrace(arr, padded, mask, kind, g, _axes(g), counts, out, global_pool)


@dataclass(frozen=True, eq=False)
class Explanation:
    """What `featmap explain` shows: a convolution, a pooling, or a convolution then a pooling.

    ``source`` says where the input came from (inline, a file, an image crop, an example).
    """

    source: str
    conv: ConvTrace | None
    pool: PoolTrace | None
    kernel_name: str = ""
    title: str = ""

    @property
    def output(self) -> Matrix:
        """The final matrix (after pooling when there is one)."""
        if self.pool is not None:
            return self.pool.output
        if self.conv is None:
            raise SpecError("explain", "nothing was explained", "give a kernel, a pooling, or both")
        return self.conv.output


def explain(
    x: ArrayLike,
    weights: ArrayLike | None = None,
    *,
    conv: Conv2d | None = None,
    bias: float = 0.0,
    act: Act | None = None,
    pool: Pool2d | GlobalPool2d | None = None,
    strict: bool = False,
    source: str = "input",
    kernel_name: str = "",
    title: str = "",
) -> Explanation:
    """Explain ``x`` through the layers `featmap apply` runs: a conv (with ``weights``), then a pool.

    The layer objects are the ones `featmap apply` builds from the same options; ``strict`` refuses a
    stride that leaves input rows or columns unused, as ``--strict`` does.

    Examples
    --------
    >>> e = explain([[1, 5], [3, 2]], pool=Pool2d("max", 2))
    >>> e.output.tolist(), e.pool.step(0, 0).winner
    ([[5.0]], (0, 1))
    """
    if weights is None and pool is None:
        raise SpecError("explain", "nothing to explain", "give a kernel, a pooling, or both")
    conv_trace = None
    if weights is not None:
        activation = act or Act()
        layer = conv or Conv2d()
        geometry = None
        if np.ndim(weights) in (2, 3):  # the layer's own plan places the windows (other shapes: trace_conv refuses)
            kh, kw = np.shape(weights)[-2:]
            kernel_hw = (int(kh), int(kw))
            planned = replace(layer, filters=1, kernel=kernel_hw, groups=1, depthwise=False, bank=None)
            geometry = planned.plan(check_matrix(x, "input").shape).geometry
        conv_trace = trace_conv(
            x,
            weights,
            bias,
            stride=layer.stride,
            padding=layer.padding,
            pad_mode=layer.pad_mode,
            pad_value=layer.pad_value,
            dilation=layer.dilation,
            flip=layer.flip,
            activation=activation.kind,
            slope=float(dict(activation.params).get("slope", 0.01)),
            geometry=geometry,
        )
        _check_strict(conv_trace.axes, "conv", strict)
    pool_trace = None
    if pool is not None:
        source_map = conv_trace.output if conv_trace is not None else check_matrix(x, "input")
        if isinstance(pool, GlobalPool2d):
            pool_trace = trace_pool(source_map, mode=pool.kind, global_pool=True)
        else:
            plan = pool.plan(np.atleast_3d(source_map).shape)
            pool_trace = trace_pool(
                source_map, pool.size, stride=pool.stride, padding=pool.padding, mode=pool.kind, geometry=plan.geometry
            )
        _check_strict(pool_trace.axes, "pool", strict)
    return Explanation(source, conv_trace, pool_trace, kernel_name, title)


def _check_strict(axes: tuple[AxisArithmetic, AxisArithmetic], what: str, strict: bool) -> None:
    for axis in axes:
        if strict and axis.unused:
            raise ShapeError(
                what,
                f"{axis.reach_text()} leaves {axis.unused} {axis.axis} unused",
                "change the stride or padding, or drop --strict",
            )


def format_number(value: float) -> str:
    """A matrix entry as a learner reads it: ``4``, ``-0.5``, ``0.7843``, ``1.235e+07``; ``–`` for no value.

    Examples
    --------
    >>> [format_number(v) for v in (4.0, -0.5, 2 / 3, 12345678.9, float("nan"))]
    ['4', '-0.5', '0.6667', '1.235e+07', '–']
    """
    if not np.isfinite(value):
        return "–" if np.isnan(value) else ("∞" if value > 0 else "-∞")
    if value == 0:
        return "0"
    if float(value).is_integer() and abs(value) < 1e9:
        return str(int(value))
    if 1e-4 <= abs(value) < 1e6:
        return f"{value:.4f}".rstrip("0").rstrip(".")
    return f"{value:.3e}"


def terms_text(values: Iterable[float], limit: int = 27) -> str:
    """``"1 + 0 - 2"``: the terms of a sum, or ``"sum of N products"`` beyond ``limit`` terms.

    Examples
    --------
    >>> terms_text([1.0, 0.0, -2.0])
    '1 + 0 - 2'
    """
    numbers = [float(v) for v in values]
    if len(numbers) > limit:
        return f"sum of {len(numbers)} products"
    text = format_number(numbers[0])
    for v in numbers[1:]:
        text += f" - {format_number(-v)}" if v < 0 else f" + {format_number(v)}"
    return text


def pick_positions(
    explanation: Explanation, at: tuple[int, int] | None, steps: int | None
) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """The conv and pool positions to show in detail: ``(conv_positions, pool_positions)``.

    ``at`` is a position of the final output: with a conv then a pool it selects the pooled cell and
    the conv positions inside its window. Otherwise the first ``steps`` positions of each stage (all
    when ``steps`` is None).

    Examples
    --------
    >>> from featmap.layers import Pool2d
    >>> e = explain([[1, 2, 3, 4]] * 4, [[1]], pool=Pool2d("max", 2))
    >>> pick_positions(e, (0, 1), None)
    ([(0, 2), (0, 3), (1, 2), (1, 3)], [(0, 1)])
    """
    conv, pool = explanation.conv, explanation.pool
    if at is None:
        first = slice(None) if steps is None else slice(0, steps)
        return (conv.positions[first] if conv else [], pool.positions[first] if pool else [])
    if pool is None:
        if conv is not None:
            conv.cells(*at)  # refuses a position outside the output
        return [at], []
    rows, cols = pool.cells(*at)
    if conv is None:
        return [], [at]
    top, _, left, _ = pool.geometry.padding
    inside = [(r - top, c - left) for r in rows for c in cols if not pool.pad_mask[r, c]]
    return inside, [at]
