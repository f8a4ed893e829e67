"""The OpenCV fast path: 2-D cross-correlation with `cv2.filter2D`/`cv2.sepFilter2D`.

OpenCV (``opencv-python-headless``) is a dependency, but everything here is optional at run time:
`opencv` returns None when cv2 does not import or ``FEATMAP_NO_OPENCV=1`` is set, and
`featmap.core.engine` then uses the numpy reference. Both are tested to agree to 1e-5
(relative to the largest output) on every padding mode, stride and dilation.

How PyTorch's "pad, then valid correlation" maps onto OpenCV:

- ``filter2D`` reads outside the image through a border rule and puts the kernel's ``anchor`` on each
  output pixel, so an anchor of ``(left, top)`` makes its output start where the padded correlation
  does: ``zeros`` (value 0), ``reflect``, ``symmetric`` or ``replicate`` padding needs no padded copy.
  ``circular`` (filter2D has no wrap rule) and a non-zero pad value pad first (``copyMakeBorder``).
- Dilation spreads the kernel with zeros, which filter2D skips (it keeps only non-zero taps).
- A row stride sh splits the padded rows into sh phases, ``rows[p::sh]`` (views: no copy), each
  correlated with the kernel rows ``[p::sh]``; their sum is the output on kept rows only. OpenCV has no
  column stride, so kept columns are sliced from full rows. Zero padding survives the split (the border
  of a phase is zeros too); the other modes pad first.

`band_filter` makes one kernel ready to filter bands of an image's rows (the fused band path,
`featmap.run.fused`): the very call `correlate` would make on each band (same kernel arrays, anchor, border
and destination), worked out once per map rather than once per band.
"""

from __future__ import annotations

import os
from functools import cache
from types import ModuleType
from typing import Any

import numpy as np
from numpy.typing import NDArray

from featmap.core.geometry import ConvGeometry
from featmap.core.kernelmath import rank1_factors, spread_kernel
from featmap.enums import PaddingMode
from featmap.frozen import frozen_dataclass

__all__ = ["MAX_CHANNELS", "BandFilter", "band_filter", "correlate", "mix_channels", "opencv", "set_threads", "threads"]

# One filter2D call filters up to this many interleaved channels with the same kernel; copyMakeBorder's
# fill value has four entries.
MAX_CHANNELS = 4


@cache
def opencv() -> ModuleType | None:
    """The cv2 module, or None when it is not importable or ``FEATMAP_NO_OPENCV`` is set to 1."""
    if os.environ.get("FEATMAP_NO_OPENCV") == "1":
        return None
    try:
        import cv2
    except ImportError:
        return None
    return cv2


def set_threads(count: int) -> None:
    """Limit OpenCV's own thread pool (worker processes use 1); a no-op without OpenCV."""
    cv2 = opencv()
    if cv2 is not None:
        cv2.setNumThreads(count)


def threads() -> int:
    """OpenCV's thread count (0 without OpenCV)."""
    cv2 = opencv()
    return 0 if cv2 is None else int(cv2.getNumThreads())


def mix_channels(data: NDArray[np.float32], weights: NDArray[np.float32]) -> NDArray[np.float32] | None:
    """``sum_c data[..., c] * weights[c]`` for ``(H, W, C ≤ 4)`` float32 (`cv2.transform`), or None without
    OpenCV. Luma in one pass: 4x numpy's einsum, and no BLAS (whose threads would spin on the other core)."""
    cv2 = opencv()
    if cv2 is None or data.shape[2] > MAX_CHANNELS:
        return None
    return cv2.transform(data, weights.reshape(1, -1)).reshape(data.shape[:2])


def _border(cv2: Any, pad_mode: PaddingMode) -> int:
    return {
        PaddingMode.ZEROS: cv2.BORDER_CONSTANT,
        PaddingMode.REFLECT: cv2.BORDER_REFLECT_101,
        PaddingMode.SYMMETRIC: cv2.BORDER_REFLECT,
        PaddingMode.REPLICATE: cv2.BORDER_REPLICATE,
        PaddingMode.CIRCULAR: cv2.BORDER_WRAP,
    }[pad_mode]


def _filter(
    cv2: Any,
    src: NDArray[np.floating],
    kernel: NDArray[np.floating],
    anchor: tuple[int, int],
    border: int,
    dst: NDArray[np.floating] | None = None,
) -> NDArray[np.floating]:
    """filter2D, or sepFilter2D when the kernel is an outer product of a column and a row; into ``dst``
    when it is given and has the source's shape."""
    if dst is None or dst.shape != src.shape or not dst.flags.c_contiguous:
        dst = None
    factors = rank1_factors(kernel) if min(kernel.shape) > 1 else None
    if factors is not None:
        column, row = factors
        out = cv2.sepFilter2D(src, -1, row, column, dst=dst, anchor=anchor, borderType=border)
    else:
        out = cv2.filter2D(src, -1, kernel, dst=dst, anchor=anchor, borderType=border)
    return out.reshape(out.shape[:2] + src.shape[2:])  # cv2 drops a trailing channel axis of 1


def _by_row_phases(
    cv2: Any,
    src: NDArray[np.floating],
    spread: NDArray[np.floating],
    geometry: ConvGeometry,
    border: int,
    top: int,
    left: int,
    dst: NDArray[np.floating] | None = None,
) -> NDArray[np.floating] | None:
    """Correlate on kept rows only: for each phase p of the stride, input rows ``p - top :: sh`` with kernel
    rows ``p :: sh``, the missing top rows supplied by filter2D's border through the anchor. None when an
    anchor or the output would fall outside what filter2D can place."""
    sh, ho = geometry.stride[0], geometry.out_hw[0]
    kept_cols = geometry.tap_cols(0)  # the columns a stride keeps of each full-width filtered row
    if left >= spread.shape[1] or kept_cols.stop > src.shape[1]:
        return None
    out: NDArray[np.floating] | None = None
    for phase in range(min(sh, spread.shape[0])):
        rows = spread[phase::sh]
        if not rows.any():
            continue
        first = phase - top  # the input row of this phase's first padded row
        lead = max(0, -(first // sh))  # phase rows above the input: the border's
        view = src[first + lead * sh :: sh]
        if lead >= len(rows) or len(view) < ho:
            return None
        part = _filter(cv2, view, rows, (left, lead), border, dst if sh == 1 else None)[:ho]
        if out is None:
            out = part
        else:
            out += part
    if out is None:  # an all-zero kernel
        return np.zeros((ho, geometry.out_hw[1]) + src.shape[2:], dtype=src.dtype)
    return out[:, kept_cols]


def correlate(
    src: NDArray[np.floating],
    kernel: NDArray[np.floating],
    geometry: ConvGeometry,
    pad_mode: PaddingMode,
    pad_value: float = 0.0,
    out: NDArray[np.floating] | None = None,
) -> NDArray[np.floating]:
    """Cross-correlate ``(H, W)`` or ``(H, W, C ≤ 4)`` with one 2-D kernel, each channel on its own.

    The caller checks the padding (`featmap.core.engine.check_padding`) and that OpenCV is available.
    Returns ``(H_out, W_out)`` or ``(H_out, W_out, C)``, possibly a view; written into ``out``
    (and ``out`` returned) where OpenCV can write there directly, which saves a copy.
    """
    cv2 = opencv()
    assert cv2 is not None, "caller checks featmap.core.cvfilter.opencv()"
    sh = geometry.stride[0]
    top, bottom, left, right = geometry.padding
    spread = spread_kernel(kernel, geometry.dilation, src.dtype)
    border = _border(cv2, pad_mode)
    # filter2D's own border rule stands in for the padding when it has the mode (no wrap, fill 0) and, with a
    # row stride, when every sh-th row of the padded input is the border's too: only zeros are.
    if pad_mode is not PaddingMode.CIRCULAR and pad_value == 0 and (sh == 1 or pad_mode is PaddingMode.ZEROS):
        result = _by_row_phases(cv2, src, spread, geometry, border, top, left, out)
        if result is not None:
            return result
    padded = src
    if any(geometry.padding):
        fill = (pad_value,) * MAX_CHANNELS if pad_mode is PaddingMode.ZEROS else 0
        padded = cv2.copyMakeBorder(src, top, bottom, left, right, border, value=fill)
        padded = padded.reshape(padded.shape[:2] + src.shape[2:])
    result = _by_row_phases(cv2, padded, spread, geometry, cv2.BORDER_CONSTANT, 0, 0)
    assert result is not None, "a padded input always fits"
    return result


@frozen_dataclass(eq=False)
class BandFilter:
    """One 2-D kernel made ready to filter bands of an image's rows as `correlate` filters them, stride 1 and no
    dilation, OpenCV's border standing in for the padding: ``sepFilter2D`` with the kernel's rank-1 factors, or
    ``filter2D``, at the anchor of the image's top and left padding (see `band_filter`)."""

    function: Any  #: cv2.sepFilter2D or cv2.filter2D
    kernels: tuple[NDArray[np.floating], ...]  #: (row, column) factors, or the kernel itself
    anchor: tuple[int, int]
    border: int
    rows_lost: int  #: filtered rows past the last output row: kernel height - 1 - (top + bottom padding)
    columns: int  #: output columns, the first ones of each filtered row

    def __call__(self, src: NDArray[np.floating], dst: NDArray[np.floating] | None = None) -> NDArray[np.floating]:
        """``correlate(src, kernel, geometry_of_src, ...)`` for a 2-D ``src`` of the image's width (a view); written
        into ``dst`` (then a view of it) when it has the source's shape and is contiguous, as `correlate` does."""
        if dst is None or dst.shape != src.shape or not dst.flags.c_contiguous:
            dst = None
        out = self.function(src, -1, *self.kernels, dst=dst, anchor=self.anchor, borderType=self.border)
        return out[: src.shape[0] - self.rows_lost, : self.columns]


def band_filter(
    kernel: NDArray[np.floating], geometry: ConvGeometry, pad_mode: PaddingMode, pad_value: float, dtype: Any
) -> BandFilter | None:
    """``kernel`` made ready (`BandFilter`) to filter ``dtype`` bands of rows of the image ``geometry`` describes
    (the whole image's: its padding, stride and width), or None where `correlate` would take another road on such a
    band: a stride or dilation, circular padding or a pad value (padded first), padding past the kernel's reach (no
    anchor places it), an all-zero kernel (no filtering at all), or no OpenCV.

    Examples
    --------
    >>> from featmap.core.geometry import conv_geometry
    >>> kernel = np.array([[1.0, 2.0, 1.0]] * 3, np.float32)
    >>> geometry = conv_geometry((8, 5), (3, 3), padding="same")
    >>> band = np.arange(30, dtype=np.float32).reshape(6, 5)
    >>> ready = band_filter(kernel, geometry, PaddingMode.ZEROS, 0.0, np.float32)
    >>> band_geometry = conv_geometry((6, 5), (3, 3), padding="same")
    >>> bool(ready is None or (ready(band) == correlate(band, kernel, band_geometry, PaddingMode.ZEROS)).all())
    True
    """
    cv2 = opencv()
    top, bottom, left, right = geometry.padding
    kh, kw = kernel.shape
    if cv2 is None or tuple(geometry.stride) != (1, 1) or tuple(geometry.dilation) != (1, 1):
        return None
    if pad_mode is PaddingMode.CIRCULAR or pad_value != 0 or top >= kh or left >= kw:
        return None
    if top + bottom > kh - 1 or left + right > kw - 1:  # more output rows or columns than input ones
        return None
    spread = spread_kernel(kernel, (1, 1), dtype)  # as `correlate` hands it to OpenCV
    if not spread.any():
        return None
    factors = rank1_factors(spread) if min(spread.shape) > 1 else None
    function, kernels = (cv2.filter2D, (spread,)) if factors is None else (cv2.sepFilter2D, factors[::-1])
    return BandFilter(function, kernels, (left, top), _border(cv2, pad_mode), kh - 1 - top - bottom, geometry.out_hw[1])
