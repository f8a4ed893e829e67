"""Integer geometry of convolution and pooling: the one place output sizes and padding are worked out.

Every function here is pure integer arithmetic; ``ops`` and ``pool`` call it, and so does the
shape calculator.

Examples
--------
>>> conv_output_size(7, 3, stride=2)
3
>>> same_padding(7, 3, stride=2)
(1, 1)
>>> conv_geometry((7, 7), (3, 3), stride=3).dropped_hw
(1, 1)
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

from featmap.errors import ShapeError, SpecError
from featmap.frozen import frozen_dataclass

__all__ = [
    "ConvGeometry",
    "PaddingArg",
    "as_pair",
    "conv_geometry",
    "conv_macs",
    "conv_output_size",
    "conv_params",
    "pool_geometry",
    "pool_output_size",
    "resolve_padding",
    "same_padding",
    "strided_slice",
]

Pair = tuple[int, int]
Quad = tuple[int, int, int, int]
#: ``"valid"``, ``"same"``, ``"full"``, an int, ``(ph, pw)`` or ``(top, bottom, left, right)``.
PaddingArg = str | int | Sequence[int]


def _check_int(value: object, what: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise SpecError(f"`{what}`", f"must be a whole number; got {value!r}")
    if value < minimum:
        raise SpecError(f"`{what}`", f"must be >= {minimum}; got {value}")
    return int(value)


def as_pair(value: int | Sequence[int], what: str, *, minimum: int = 1) -> Pair:
    """Return ``value`` as a validated ``(rows, cols)`` pair.

    Examples
    --------
    >>> as_pair(2, "stride")
    (2, 2)
    >>> as_pair((2, 1), "stride")
    (2, 1)
    """
    if isinstance(value, (str, bytes)):
        raise SpecError(f"`{what}`", f"must be a number or a pair; got {value!r}")
    if isinstance(value, Sequence):
        if len(value) != 2:
            raise SpecError(f"`{what}`", f"must be one number or a pair; got {tuple(value)!r}")
        return (_check_int(value[0], what, minimum), _check_int(value[1], what, minimum))
    single = _check_int(value, what, minimum)
    return (single, single)


def strided_slice(start: int, count: int, step: int) -> slice:
    """The slice that takes ``count`` items, ``step`` apart, from ``start``: where a strided window's taps fall.

    This is the one statement of "which rows (or columns) does a kernel tap read": tap ``i`` of a kernel
    with dilation ``d`` reads ``strided_slice(i * d, out, stride)`` of the padded input.

    Examples
    --------
    >>> strided_slice(2, 3, 2)
    slice(2, 7, 2)
    >>> list(range(12))[strided_slice(1, 4, 3)]
    [1, 4, 7, 10]
    """
    return slice(start, start + (count - 1) * step + 1, step)


def _effective(kernel: int, dilation: int) -> int:
    return dilation * (kernel - 1) + 1


def conv_output_size(size: int, kernel: int, *, stride: int = 1, padding: int = 0, dilation: int = 1) -> int:
    """Output length along one axis: ``floor((size + padding - dilation*(kernel-1) - 1) / stride) + 1``.

    ``padding`` is the total added on both sides. Raises `ShapeError` when the dilated kernel is
    larger than the padded input.

    Examples
    --------
    >>> [conv_output_size(7, 3, stride=s) for s in (1, 2, 3)]
    [5, 3, 2]
    >>> conv_output_size(5, 3, padding=2)
    5
    """
    span = size + padding - _effective(kernel, dilation)
    if span < 0:
        raise ShapeError(
            "kernel",
            f"{_effective(kernel, dilation)}{' (dilated)' if dilation > 1 else ''} is larger than the padded "
            f"input {size + padding}",
            "use a smaller kernel or dilation, or more padding (e.g. `same`)",
        )
    return span // stride + 1


def _dropped(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """Rows (or columns) at the end that no window reaches because the stride does not fit."""
    return (size + padding - _effective(kernel, dilation)) % stride


def same_padding(size: int, kernel: int, *, stride: int = 1, dilation: int = 1) -> Pair:
    """``(before, after)`` padding for TensorFlow/Keras ``"same"``: output ``ceil(size / stride)``.

    The total is ``max((out - 1) * stride + dilation * (kernel - 1) + 1 - size, 0)``; the smaller half
    goes before (top/left).

    Examples
    --------
    >>> same_padding(5, 3)
    (1, 1)
    >>> same_padding(6, 3, stride=2)
    (0, 1)
    >>> same_padding(5, 4)
    (1, 2)
    """
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + _effective(kernel, dilation) - size, 0)
    return (total // 2, total - total // 2)


def resolve_padding(
    padding: PaddingArg,
    in_hw: Pair,
    kernel_hw: Pair,
    *,
    stride: Pair = (1, 1),
    dilation: Pair = (1, 1),
) -> Quad:
    """Return ``(top, bottom, left, right)`` for any padding form.

    Examples
    --------
    >>> resolve_padding("full", (5, 5), (3, 3))
    (2, 2, 2, 2)
    >>> resolve_padding((1, 2), (5, 5), (3, 3))
    (1, 1, 2, 2)
    >>> resolve_padding("same", (6, 6), (3, 3), stride=(2, 2))
    (0, 1, 0, 1)
    """
    if isinstance(padding, str):
        word = padding.strip().lower()
        if word == "valid":
            return (0, 0, 0, 0)
        if word == "same":
            top, bottom = same_padding(in_hw[0], kernel_hw[0], stride=stride[0], dilation=dilation[0])
            left, right = same_padding(in_hw[1], kernel_hw[1], stride=stride[1], dilation=dilation[1])
            return (top, bottom, left, right)
        if word == "full":
            ph = dilation[0] * (kernel_hw[0] - 1)
            pw = dilation[1] * (kernel_hw[1] - 1)
            return (ph, ph, pw, pw)
        raise SpecError(
            "`padding`",
            f"unknown padding {padding!r}",
            "use valid, same, full, N, (rows, cols) or (top, bottom, left, right)",
        )
    if isinstance(padding, Sequence):
        values = tuple(_check_int(v, "padding", 0) for v in padding)
        if len(values) == 2:
            return (values[0], values[0], values[1], values[1])
        if len(values) == 4:
            return values
        raise SpecError(
            "`padding`",
            f"takes 1, 2 or 4 numbers; got {len(values)}",
            "use N, (rows, cols) or (top, bottom, left, right)",
        )
    single = _check_int(padding, "padding", 0)
    return (single, single, single, single)


@frozen_dataclass
class ConvGeometry:
    """Where a sliding window goes over an ``(H, W)`` plane.

    Attributes
    ----------
    in_hw, kernel_hw, stride, dilation : pair of int
    padding : (top, bottom, left, right)
    out_hw : pair of int
        Output size.
    dropped_hw : pair of int
        Input rows and columns at the bottom/right (of the padded input) that no window reaches
        because the stride does not fit evenly; they are floored away as in PyTorch and Keras.
    """

    in_hw: Pair
    kernel_hw: Pair
    stride: Pair
    dilation: Pair
    padding: Quad
    out_hw: Pair
    dropped_hw: Pair

    @property
    def padded_hw(self) -> Pair:
        """Size of the padded input."""
        top, bottom, left, right = self.padding
        return (self.in_hw[0] + top + bottom, self.in_hw[1] + left + right)

    @property
    def fits(self) -> bool:
        """True when the stride uses every padded row and column."""
        return self.dropped_hw == (0, 0)

    @property
    def lost_hw(self) -> Pair:
        """Input rows and columns (not padding) that the stride leaves unused: the dropped ones beyond the
        bottom/right padding. ResNet's 7×7/s2/p3 stem on 224 drops one row, but it is padding: nothing lost.

        Examples
        --------
        >>> conv_geometry((224, 224), 7, stride=2, padding=3).lost_hw
        (0, 0)
        >>> conv_geometry((7, 7), 3, stride=3).lost_hw
        (1, 1)
        """
        return (max(self.dropped_hw[0] - self.padding[1], 0), max(self.dropped_hw[1] - self.padding[3], 0))

    def tap_rows(self, i: int) -> slice:
        """The padded input rows that kernel row ``i`` reads for every output row."""
        return strided_slice(i * self.dilation[0], self.out_hw[0], self.stride[0])

    def tap_cols(self, j: int) -> slice:
        """The padded input columns that kernel column ``j`` reads for every output column."""
        return strided_slice(j * self.dilation[1], self.out_hw[1], self.stride[1])

    def tap_slices(self, i: int, j: int) -> tuple[slice, slice]:
        """``(rows, cols)`` of the padded input that tap ``(i, j)`` multiplies: the output's shape.

        Examples
        --------
        >>> conv_geometry((7, 7), 3, stride=2, dilation=2).tap_slices(1, 2)
        (slice(2, 5, 2), slice(4, 7, 2))
        """
        return self.tap_rows(i), self.tap_cols(j)

    def dropped_text(self, axes: int = 2) -> str | None:
        """What the stride leaves unused of the input (padding aside), or None when every input row and
        column is used; ``axes=1`` for a 1-D input laid out as a column.

        Examples
        --------
        >>> conv_geometry((7, 7), 3, stride=3).dropped_text()
        'stride 3 leaves the last 1 row and 1 column'
        >>> conv_geometry((224, 224), 7, stride=2, padding=3).dropped_text() is None
        True
        """
        names = ("row", "column") if axes == 2 else ("sample",)
        parts = [f"{d} {names[a]}{'' if d == 1 else 's'}" for a, d in enumerate(self.lost_hw[:axes]) if d]
        if not parts:
            return None
        stride = self.stride[:axes]
        text = str(stride[0]) if len(set(stride)) == 1 else "×".join(map(str, stride))
        return f"stride {text} leaves the last {' and '.join(parts)}"


def conv_geometry(
    in_hw: Pair,
    kernel_hw: int | Sequence[int],
    *,
    stride: int | Sequence[int] = 1,
    padding: PaddingArg = "valid",
    dilation: int | Sequence[int] = 1,
) -> ConvGeometry:
    """Work out padding, output size and dropped rows/cols of a 2-D convolution.

    Examples
    --------
    >>> g = conv_geometry((32, 32), 5)
    >>> g.out_hw, g.padding
    ((28, 28), (0, 0, 0, 0))
    >>> conv_geometry((7, 7), 3, stride=3).dropped_hw
    (1, 1)
    """
    k = as_pair(kernel_hw, "kernel")
    s = as_pair(stride, "stride")
    d = as_pair(dilation, "dilation")
    size = as_pair(in_hw, "input size")
    pads = resolve_padding(padding, size, k, stride=s, dilation=d)
    total = (pads[0] + pads[1], pads[2] + pads[3])
    out = tuple(conv_output_size(size[a], k[a], stride=s[a], padding=total[a], dilation=d[a]) for a in (0, 1))
    dropped = tuple(_dropped(size[a], k[a], s[a], total[a], d[a]) for a in (0, 1))
    return ConvGeometry(size, k, s, d, pads, out, dropped)  # type: ignore[arg-type]  # pairs


def pool_geometry(
    in_hw: Pair,
    size: int | Sequence[int],
    *,
    stride: int | Sequence[int] | None = None,
    padding: PaddingArg = "valid",
    ceil_mode: bool = False,
) -> ConvGeometry:
    """Geometry of a pooling window; ``stride`` defaults to the window size (Keras).

    ``ceil_mode=True`` rounds the output size up, as PyTorch's ``ceil_mode``: a last, partial window
    is kept if it starts inside the input (or its left/top padding). The extra cells it reaches are
    added to the bottom/right padding.

    Examples
    --------
    >>> pool_geometry((8, 8), 2).out_hw
    (4, 4)
    >>> pool_geometry((5, 5), 2, padding="same").out_hw
    (3, 3)
    >>> g = pool_geometry((112, 112), 3, stride=2, ceil_mode=True)
    >>> g.out_hw, g.padding
    ((56, 56), (0, 1, 0, 1))
    """
    try:
        floor = conv_geometry(in_hw, size, stride=size if stride is None else stride, padding=padding)
    except ShapeError as exc:  # worded for a kernel: say window
        if exc.what != "kernel":
            raise
        raise ShapeError(
            "pool window", exc.problem.replace(" (dilated)", ""), "use a smaller pool size, or `same` padding"
        ) from None
    if not ceil_mode or floor.fits:
        return floor
    pads = list(floor.padding)
    out = list(floor.out_hw)
    for axis in (0, 1):
        k, s = floor.kernel_hw[axis], floor.stride[axis]
        before = pads[2 * axis]
        if floor.dropped_hw[axis] and out[axis] * s < floor.in_hw[axis] + before:
            pads[2 * axis + 1] += out[axis] * s + k - floor.padded_hw[axis]
            out[axis] += 1
    if tuple(out) == floor.out_hw:
        return floor
    return conv_geometry(in_hw, floor.kernel_hw, stride=floor.stride, padding=tuple(pads))


def pool_output_size(size: int, window: int, *, stride: int | None = None, padding: int = 0) -> int:
    """Output length of pooling along one axis (stride defaults to the window).

    Examples
    --------
    >>> pool_output_size(8, 2)
    4
    >>> pool_output_size(7, 3, stride=2)
    3
    """
    return conv_output_size(size, window, stride=window if stride is None else stride, padding=padding)


def conv_params(kernel_hw: Pair, in_channels: int, out_channels: int, *, groups: int = 1, bias: bool = True) -> int:
    """Trainable parameters of a convolution: ``kh*kw*C_in/groups*C_out`` (+ ``C_out`` biases).

    Examples
    --------
    >>> conv_params((5, 5), 3, 6)
    456
    """
    kh, kw = kernel_hw
    return kh * kw * (in_channels // groups) * out_channels + (out_channels if bias else 0)


def conv_macs(kernel_hw: Pair, in_channels: int, out_channels: int, out_hw: Pair, *, groups: int = 1) -> int:
    """Multiply-adds of a convolution's weights: ``kh*kw*C_in/groups*C_out*H_out*W_out`` (no bias term).

    Examples
    --------
    >>> conv_macs((5, 5), 3, 6, (28, 28))
    352800
    """
    kh, kw = kernel_hw
    return kh * kw * (in_channels // groups) * out_channels * out_hw[0] * out_hw[1]
