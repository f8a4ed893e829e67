"""Padding, 2-D convolution (cross-correlation, as in CNNs), activations and display normalisation,
on ``(H, W, C)`` arrays.

Pure numpy: no files, no printing. Geometry comes from `featmap.core.geometry`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from featmap.core.engine import correlate, pad_input
from featmap.core.geometry import PaddingArg, as_pair, conv_geometry, resolve_padding
from featmap.core.kernelmath import rank1_factors
from featmap.enums import Activation, Normalize, PaddingMode, parse_enum
from featmap.errors import ShapeError, SpecError

__all__ = [
    "DEFAULT_PERCENTILES",
    "PERCENTILE_SAMPLE_LIMIT",
    "activate",
    "as_float_image",
    "conv2d",
    "display_scale",
    "percentile_range",
    "normalize",
    "pad",
    "row_bands",
    "separable",
    "to_display",
]

DEFAULT_PERCENTILES = (1.0, 99.0)
#: Maps with more values than this have their percentiles taken on an evenly strided sample of this size.
PERCENTILE_SAMPLE_LIMIT = 1 << 24


def as_float_image(x: ArrayLike, what: str = "x") -> NDArray[np.floating]:
    """Return ``x`` as a float ``(H, W, C)`` array: float64 stays float64, anything else is float32.

    A 2-D array is taken as one channel.

    Examples
    --------
    >>> as_float_image(np.ones((2, 3), dtype=np.uint8)).shape
    (2, 3, 1)
    """
    arr = np.asarray(x)
    if arr.dtype.kind not in "biuf":
        raise SpecError(f"`{what}`", f"must be numeric; got dtype {arr.dtype}")
    if arr.ndim == 2:
        arr = arr[:, :, np.newaxis]
    if arr.ndim != 3:
        raise ShapeError(f"`{what}`", f"must be (H, W) or (H, W, C); got shape {arr.shape}", "pass one image at a time")
    if arr.shape[0] == 0 or arr.shape[1] == 0 or arr.shape[2] == 0:
        raise ShapeError(f"`{what}`", f"is empty; got shape {arr.shape}")
    dtype = np.float64 if arr.dtype == np.float64 else np.float32
    return arr.astype(dtype, copy=False)


def pad(
    x: ArrayLike,
    padding: PaddingArg,
    pad_mode: str | PaddingMode = "zeros",
    *,
    pad_value: float = 0.0,
    kernel_hw: int | Sequence[int] = 1,
    stride: int | Sequence[int] = 1,
    dilation: int | Sequence[int] = 1,
) -> NDArray[np.floating]:
    """Pad the rows and columns of an ``(H, W, C)`` array.

    ``padding`` takes every form `featmap.core.geometry.resolve_padding` does; ``"same"`` and ``"full"``
    need ``kernel_hw`` (and ``stride``, ``dilation``). ``pad_mode`` is a `PaddingMode` or an alias, and
    ``pad_value`` the fill of ``zeros`` padding: the names `conv2d` uses.

    Examples
    --------
    >>> pad(np.array([[1.0, 2.0, 3.0]]), (0, 0, 2, 2), "reflect")[0, :, 0].tolist()
    [3.0, 2.0, 1.0, 2.0, 3.0, 2.0, 1.0]
    >>> pad(np.array([[1.0, 2.0, 3.0]]), (0, 0, 2, 2), "symmetric")[0, :, 0].tolist()
    [2.0, 1.0, 1.0, 2.0, 3.0, 3.0, 2.0]
    """
    arr = as_float_image(x)
    border = parse_enum(PaddingMode, pad_mode, "pad_mode")
    quad = resolve_padding(
        padding,
        (arr.shape[0], arr.shape[1]),
        as_pair(kernel_hw, "kernel"),
        stride=as_pair(stride, "stride"),
        dilation=as_pair(dilation, "dilation"),
    )
    return pad_input(arr, quad, border, pad_value)


def _as_bank(weights: ArrayLike, channels: int, groups: int, dtype: np.dtype[Any]) -> tuple[NDArray[np.floating], int]:
    """Return the filter bank as ``(N, C/groups, kh, kw)`` and the effective groups."""
    bank = np.asarray(weights)
    if bank.dtype.kind not in "biuf":
        raise SpecError("`weights`", f"must be numeric; got dtype {bank.dtype}")
    bank = bank.astype(dtype, copy=False)
    if not np.all(np.isfinite(bank)):
        raise SpecError("`weights`", "contain NaN or infinity", "give finite numbers")
    if bank.ndim == 2:  # one 2-D kernel for every channel: depthwise
        if groups not in (1, channels):
            raise ShapeError(
                "`groups`",
                f"a 2-D kernel filters each channel on its own (groups={channels}); got groups={groups}",
                "pass a (N, C/groups, kh, kw) bank for other groupings",
            )
        return np.broadcast_to(bank, (channels, 1, *bank.shape)), channels
    if bank.ndim == 3:  # one filter across all channels
        bank = bank[np.newaxis]
    if bank.ndim != 4:
        raise ShapeError(
            "`weights`",
            f"must be (kh, kw), (C, kh, kw) or (N, C/groups, kh, kw); got shape {bank.shape}",
        )
    if min(bank.shape) == 0:
        raise ShapeError("`weights`", f"is empty; got shape {bank.shape}")
    if groups < 1 or channels % groups or bank.shape[0] % groups:
        raise ShapeError(
            "`groups`",
            f"must divide both the input channels ({channels}) and the filters ({bank.shape[0]}); got {groups}",
        )
    if bank.shape[1] != channels // groups:
        raise ShapeError(
            "`weights`",
            f"expect {bank.shape[1] * groups} input channels (shape {bank.shape}, groups={groups}) "
            f"but the input has {channels}",
            "match the image's channels (gray: 1, RGB: 3) or change `groups`",
        )
    return bank, groups


def conv2d(
    x: ArrayLike,
    weights: ArrayLike,
    bias: ArrayLike | None = None,
    *,
    stride: int | Sequence[int] = 1,
    padding: PaddingArg = "valid",
    pad_mode: str | PaddingMode = "zeros",
    pad_value: float = 0.0,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
    flip: bool = False,
    method: str = "auto",
) -> NDArray[np.floating]:
    """Cross-correlate ``(H, W, C)`` with a filter bank, as ``torch.nn.functional.conv2d`` does.

    The kernel is not flipped (CNN convention); ``flip=True`` gives true convolution
    (``scipy.ndimage.convolve``). Only the kept output positions are computed: a stride of 2 does a
    quarter of the work of a stride of 1.

    Parameters
    ----------
    x : array_like, shape (H, W, C) or (H, W)
        Input; float64 stays float64, anything else is computed in float32.
    weights : array_like, shape (N, C/groups, kh, kw), (C, kh, kw) or (kh, kw)
        PyTorch's layout. ``(kh, kw)`` filters every channel on its own (depthwise, N = C);
        ``(C, kh, kw)`` is one filter summed over the channels (N = 1).
    bias : array_like, shape (N,) or scalar, optional
        Added after the sum.
    stride, dilation : int or (int, int)
    padding : "valid", "same", "full", int, (ph, pw) or (top, bottom, left, right)
        ``"same"`` follows TensorFlow/Keras for every stride: output ``ceil(H / stride)``, the
        smaller half of the padding on top/left.
    pad_mode : {"zeros", "reflect", "symmetric", "replicate", "circular"} or an alias
        ``zeros`` fills with ``pad_value``.
    groups : int
        Input and output channels split into this many independent groups.
    flip : bool
        Rotate the kernel 180° first: true convolution.
    method : {"auto", "opencv", "direct", "separable", "fft", "im2col"}
        How to compute it (see `featmap.core.engine`); ``auto`` picks per filter: OpenCV where it is
        installed for filters that read one channel, im2col + BLAS for filters over several. All
        agree to float32 precision.

    Returns
    -------
    ndarray, shape (H_out, W_out, N)

    Examples
    --------
    >>> x = np.arange(16, dtype=np.float32).reshape(4, 4)
    >>> conv2d(x, np.ones((2, 2)), stride=2)[..., 0]
    array([[10., 18.],
           [42., 50.]], dtype=float32)
    """
    arr = as_float_image(x)
    bank, groups = _as_bank(weights, arr.shape[2], groups, arr.dtype)
    n_out, per_group, kh, kw = bank.shape
    if flip:
        bank = bank[:, :, ::-1, ::-1]
    border = parse_enum(PaddingMode, pad_mode, "pad_mode")
    geometry = conv_geometry((arr.shape[0], arr.shape[1]), (kh, kw), stride=stride, padding=padding, dilation=dilation)
    result = correlate(arr, bank, geometry, groups, border, pad_value, method)
    if bias is not None:
        b = np.asarray(bias, dtype=arr.dtype)
        if b.ndim > 1 or (b.ndim == 1 and b.shape[0] not in (1, n_out)):
            raise ShapeError("`bias`", f"must be a scalar or have {n_out} values; got shape {b.shape}")
        result += b
    return result


def activate(
    x: ArrayLike, name: str | Activation = "none", *, out: NDArray[np.floating] | None = None, **params: float
) -> NDArray[np.floating]:
    """Apply an element-wise activation; returns a new array of the same dtype, or ``out``.

    ``leaky_relu`` takes ``slope`` (default 0.01). ``out=x`` activates a float array in place (the
    pipeline does, to keep one copy of a large map).

    Examples
    --------
    >>> activate(np.array([-2.0, 0.5]), "relu").tolist()
    [0.0, 0.5]
    >>> activate(np.array([-2.0, 0.5]), "leaky_relu", slope=0.1).tolist()
    [-0.2, 0.5]
    """
    kind = parse_enum(Activation, name, "activation")
    allowed = {"slope"} if kind is Activation.LEAKY_RELU else set()
    unknown = set(params) - allowed
    if unknown:
        raise SpecError(
            "`activation`",
            f"{kind.value} takes no parameter {', '.join(sorted(unknown))}",
            "only leaky_relu takes `slope`",
        )
    arr = np.asarray(x)
    if arr.dtype.kind != "f":
        arr = arr.astype(np.float32)
    result = np.empty_like(arr) if out is None else out
    if kind in (Activation.SILU, Activation.HARDSWISH, Activation.GELU) and np.shares_memory(result, arr):
        arr = arr.copy()  # these read x again after writing the gate into ``result``
    if kind is Activation.NONE:
        np.copyto(result, arr)
    elif kind is Activation.RELU:
        np.maximum(arr, 0, out=result)
    elif kind is Activation.LEAKY_RELU:
        np.copyto(result, arr)
        np.multiply(arr, arr.dtype.type(params.get("slope", 0.01)), out=result, where=arr < 0)
    elif kind is Activation.RELU6:
        np.clip(arr, 0, 6, out=result)
    elif kind is Activation.ABS:
        np.abs(arr, out=result)
    elif kind in (Activation.SIGMOID, Activation.SILU):  # the logistic function as 0.5 (1 + tanh(x / 2))
        _sigmoid(arr, result)
        if kind is Activation.SILU:  # x · sigmoid(x)
            np.multiply(result, arr, out=result)
    elif kind in (Activation.HARDSIGMOID, Activation.HARDSWISH):  # relu6(x + 3) / 6, times x for hardswish
        np.add(arr, 3.0, out=result)
        np.clip(result, 0.0, 6.0, out=result)
        result /= 6.0
        if kind is Activation.HARDSWISH:
            np.multiply(result, arr, out=result)
    elif kind is Activation.GELU:  # exact form, x · Φ(x) = x · (1 + erf(x / √2)) / 2, as PyTorch's default
        from scipy.special import erf  # type: ignore[import-untyped]  # scipy ships no stubs

        np.multiply(arr, 1 / np.sqrt(2.0), out=result)
        erf(result, out=result)
        result += 1.0
        result *= 0.5
        np.multiply(result, arr, out=result)
    else:
        np.tanh(arr, out=result)
    return result


def _sigmoid(arr: NDArray[np.floating], result: NDArray[np.floating]) -> None:
    """The logistic function into ``result``, without overflow for large ``|x|``."""
    np.multiply(arr, 0.5, out=result)
    np.tanh(result, out=result)
    result += 1.0
    result *= 0.5


# Rows per band for whole-map passes, so temporaries stay near a million values whatever the map's size.
_BAND_VALUES = 1 << 20


def row_bands(arr: NDArray[Any]) -> Iterator[slice]:
    """Slices of ``arr``'s first axis holding about a million values each.

    Examples
    --------
    >>> [(b.start, b.stop) for b in row_bands(np.zeros((3_000, 1_000)))]
    [(0, 1048), (1048, 2096), (2096, 3000)]
    """
    per_row = max(1, arr.size // max(1, arr.shape[0]))
    step = max(1, _BAND_VALUES // per_row)
    for start in range(0, arr.shape[0], step):
        yield slice(start, min(start + step, arr.shape[0]))


def percentile_range(values: NDArray[np.floating], bounds: tuple[float, float]) -> tuple[float, float]:
    """The two percentiles ``bounds`` of ``values`` (numpy's linear interpolation; a strided sample of
    `PERCENTILE_SAMPLE_LIMIT` values for larger maps)."""
    flat = values.reshape(-1)
    if flat.size > PERCENTILE_SAMPLE_LIMIT:
        flat = flat[:: -(-flat.size // PERCENTILE_SAMPLE_LIMIT)]
    low, high = np.percentile(flat, bounds)
    return float(low), float(high)


def display_scale(arr: NDArray[np.floating], kind: Normalize) -> tuple[Any, Any]:
    """``(low, span)`` of the map for ``kind``: display value = (x - low) / span (of |x| for ``abs``)."""
    if kind is Normalize.CLIP:
        return None, None
    if kind is Normalize.MINMAX:
        low, high = arr.min(), arr.max()
        return (low, high - low) if high - low > 0 else (None, None)
    if kind is Normalize.PERCENTILE:  # mapped like minmax between the default percentiles
        low, high = percentile_range(arr, DEFAULT_PERCENTILES)
        return (low, high - low) if high > low else (None, None)
    peak = max(abs(arr.min()), abs(arr.max()))  # max |x| without an |x| temporary
    return None, peak


def to_display(
    band: NDArray[np.floating], kind: Normalize, low: Any, span: Any, out: NDArray[np.floating] | None = None
) -> NDArray[np.floating]:
    """Display values of ``band`` for ``kind`` and `display_scale`'s ``(low, span)``; ``(band - low) / span`` is
    written into ``out`` when it is given (the result's dtype and shape), the same values with no temporary."""
    if out is not None and kind in (Normalize.MINMAX, Normalize.PERCENTILE) and span is not None:
        np.subtract(band, low, out=out)
        return np.divide(out, span, out=out)
    if kind in (Normalize.MINMAX, Normalize.PERCENTILE):
        return np.clip(band, 0, 1) if span is None else (band - low) / span
    if kind is Normalize.CLIP:
        return np.clip(band, 0, 1)
    if kind is Normalize.ABS:
        return np.abs(band) / span if span > 0 else np.zeros_like(band)
    return 0.5 + band / (2 * span) if span > 0 else np.full_like(band, 0.5)


def normalize(x: ArrayLike, mode: str | Normalize = "minmax") -> NDArray[np.floating]:
    """Map a feature map to [0, 1] for display; one scale for all its channels.

    ``minmax`` stretches min..max (a constant map keeps its value, clipped); ``clip`` keeps values
    and clips to [0, 1]; ``abs`` shows ``|x| / max|x|``; ``symmetric`` puts 0 at mid-gray,
    ``0.5 + x / (2 max|x|)``, for signed edge maps.

    Examples
    --------
    >>> normalize(np.array([-2.0, 0.0, 2.0]), "symmetric").tolist()
    [0.0, 0.5, 1.0]
    >>> normalize(np.array([1.0, 3.0]), "minmax").tolist()
    [0.0, 1.0]
    """
    kind = parse_enum(Normalize, mode, "normalize")
    arr = np.asarray(x)
    if arr.dtype.kind != "f":
        arr = arr.astype(np.float32)
    return to_display(arr, kind, *display_scale(arr, kind))


def separable(kernel: ArrayLike) -> bool:
    """True when a 2-D kernel is an outer product of a column and a row (rank 1), as the engine decides.

    Examples
    --------
    >>> separable([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]])
    True
    >>> separable([[0, 1, 0], [1, -4, 1], [0, 1, 0]])
    False
    >>> from featmap.kernels import parametric_kernel
    >>> separable(parametric_kernel("gaussian:size=5,sigma=1.2").weights)
    True
    """
    arr = np.asarray(kernel)
    if arr.dtype.kind != "f":
        arr = arr.astype(np.float64)
    # Keep a float32 kernel float32: the rank test's tolerance is the kernel's own precision (a float32
    # Gaussian's second singular value is ~1e-8 of the first, rounding, not a second component).
    return arr.ndim == 2 and rank1_factors(arr) is not None
