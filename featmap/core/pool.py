"""Max, average and min pooling over windows of an ``(H, W, C)`` array, and global pooling.

Pooling walks the window taps as strided views (see `featmap.core.engine.window_taps`), so the work is
one pass over the output per window cell and no window copy is made. Max and min pooling of a few channels
whose windows tile the input (stride = size, no padding: the usual 2×2 pool of a kernel's map) take
`tile_pool`, a pass per window column into a small band and a pass per window row out of it, which picks the
very same cell of every window.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from featmap.core.engine import window_taps
from featmap.core.gemm import result_array, workspace
from featmap.core.geometry import ConvGeometry, PaddingArg, pool_geometry
from featmap.core.ops import as_float_image
from featmap.enums import PoolKind, parse_enum
from featmap.errors import ShapeError

__all__ = ["check_pool_padding", "global_pool", "pool2d", "pool_windows", "tile_pool", "tiles"]

#: Values of `tile_pool`'s band of column maxima (or minima): 1 MB of float32, in cache.
TILE_BAND_VALUES = 1 << 18
#: ... and at least this many output rows a band (a few wide bands, not many calls, for a many-channel map).
TILE_MIN_ROWS = 32
#: `pool_windows` tiles maps of at most this many channels. Then each tap is a strided gather of a few values per
#: cell and `tile_pool` gathers once (1024² gray, 2×2: 0.39 ms against 0.64); with many channels each tap reads
#: whole contiguous channel vectors and the tap fold is as fast or faster (56×56×256: 0.23 ms against 0.33).
TILE_MAX_CHANNELS = 4


def _cells_per_window(size: int, window: int, stride: int, before: int, out: int) -> NDArray[np.int64]:
    """How many real (unpadded) input cells each output window covers along one axis."""
    start = np.arange(out) * stride - before
    return np.minimum(start + window, size) - np.maximum(start, 0)


def pool2d(
    x: ArrayLike,
    size: int | Sequence[int],
    *,
    stride: int | Sequence[int] | None = None,
    padding: PaddingArg = "valid",
    mode: str | PoolKind = "max",
    count_include_pad: bool = False,
    ceil_mode: bool = False,
) -> NDArray[np.floating]:
    """Pool each channel of ``(H, W, C)`` over ``size`` windows.

    ``stride`` defaults to the window size (Keras). Padded cells never win a max or a min and are
    left out of an average's count (TensorFlow); ``count_include_pad=True`` counts them as zeros,
    PyTorch's ``AvgPool2d`` default. ``ceil_mode=True`` keeps a last partial window (PyTorch's
    ``ceil_mode``); its cells beyond the input are never counted.

    Examples
    --------
    >>> x = np.arange(16, dtype=np.float32).reshape(4, 4)
    >>> pool2d(x, 2)[..., 0]
    array([[ 5.,  7.],
           [13., 15.]], dtype=float32)
    >>> pool2d(np.ones((3, 3)), 2, padding="same", mode="avg")[..., 0].tolist()
    [[1.0, 1.0], [1.0, 1.0]]
    """
    arr = as_float_image(x)
    kind = parse_enum(PoolKind, mode, "pool mode")
    declared = pool_geometry((arr.shape[0], arr.shape[1]), size, stride=stride, padding=padding)
    geometry = pool_geometry((arr.shape[0], arr.shape[1]), size, stride=stride, padding=padding, ceil_mode=ceil_mode)
    check_pool_padding(declared)
    return pool_windows(arr, geometry, declared.padding, kind, count_include_pad=count_include_pad)


def check_pool_padding(declared: ConvGeometry) -> None:
    """Refuse pooling pads larger than half the window (a window could then hold no pixel), as PyTorch does."""
    kh, kw = declared.kernel_hw
    if max(declared.padding) and (max(declared.padding[:2]) > kh // 2 or max(declared.padding[2:]) > kw // 2):
        raise ShapeError(
            "`padding`",
            f"pooling pads of {declared.padding} exceed half the {kh}x{kw} window, so a window could hold no pixel",
            "pad at most half the window, or use `same`",
        )


def pool_windows(
    arr: NDArray[np.floating],
    geometry: ConvGeometry,
    declared_padding: tuple[int, int, int, int],
    kind: PoolKind,
    *,
    count_include_pad: bool = False,
) -> NDArray[np.floating]:
    """Pool ``(H, W, C)`` on a worked-out ``geometry`` (padding already including any ``ceil_mode`` reach);
    ``declared_padding`` is the padding asked for, which ``count_include_pad`` counts."""
    if kind is not PoolKind.AVG and tiles(geometry) and arr.shape[2] <= TILE_MAX_CHANNELS:
        return tile_pool(arr, geometry.kernel_hw, kind)
    top, bottom, left, right = geometry.padding
    (kh, kw), (h, w) = geometry.kernel_hw, geometry.in_hw
    fill = {PoolKind.MAX: -np.inf, PoolKind.MIN: np.inf, PoolKind.AVG: 0.0}[kind]
    padded = arr
    if any(geometry.padding):  # into this thread's reused temporary: a fresh one page-faults every call
        rows, cols, channels = arr.shape
        padded = workspace("pool-padded", (rows + top + bottom, cols + left + right, channels), arr.dtype)
        padded[top : top + rows, left : left + cols] = arr
        inner = padded[top : top + rows]
        for border in (padded[:top], padded[top + rows :], inner[:, :left], inner[:, left + cols :]):
            border.fill(fill)
    if kind is not PoolKind.AVG:
        return _columns_then_rows(padded, geometry, kind)
    taps = window_taps(padded, geometry)
    _, _, first = next(taps)
    out = result_array(first.shape, first.dtype)
    out[...] = first
    reduce: np.ufunc = {PoolKind.MAX: np.maximum, PoolKind.MIN: np.minimum, PoolKind.AVG: np.add}[kind]
    for _, _, view in taps:
        reduce(out, view, out=out)
    if kind is PoolKind.AVG:
        ho, wo = geometry.out_hw
        (sh, sw), (dt, db, dl, dr) = geometry.stride, declared_padding
        if count_include_pad:  # PyTorch: declared padding counts, cells past it (ceil_mode) do not
            rows = _cells_per_window(h + dt + db, kh, sh, 0, ho)
            cols = _cells_per_window(w + dl + dr, kw, sw, 0, wo)
        else:
            rows = _cells_per_window(h, kh, sh, top, ho)
            cols = _cells_per_window(w, kw, sw, left, wo)
        out /= np.outer(rows, cols).astype(out.dtype)[:, :, np.newaxis]
    return out


def _columns_then_rows(padded: NDArray[np.floating], geometry: ConvGeometry, kind: PoolKind) -> NDArray[np.floating]:
    """Max or min pooling of the padded input: each window's columns folded first, over every padded row a window
    reads (into this thread's reused temporary), then its rows: ``kh + kw - 2`` passes instead of the tap fold's
    ``kh·kw - 1`` (resnet18's 3×3/2 pool of 112²×64: 1.43 → 1.15 ms). The cells are folded in the tap fold's
    order, grouped by window row, so the result is the tap fold's to the bit, NaNs and signed zeros included (see
    `tile_pool`; tests/test_pool.py checks it against the tap-by-tap fold)."""
    reduce: np.ufunc = np.maximum if kind is PoolKind.MAX else np.minimum
    (kh, kw), (ho, wo), channels = geometry.kernel_hw, geometry.out_hw, padded.shape[2]
    source = padded[: geometry.tap_rows(kh - 1).stop]  # the rows some window reads
    column_taps = [source[:, geometry.tap_cols(j)] for j in range(kw)]
    columns = column_taps[0]
    if kw > 1:
        columns = workspace("pool-columns", (source.shape[0], wo, channels), padded.dtype)
        _fold_views(reduce, column_taps, columns)
    out = result_array((ho, wo, channels), padded.dtype)
    _fold_views(reduce, [columns[geometry.tap_rows(i)] for i in range(kh)], out)
    return out


def _fold_views(reduce: np.ufunc, views: Sequence[NDArray[np.floating]], into: NDArray[np.floating]) -> None:
    """``into = reduce(...reduce(reduce(views[0], views[1]), views[2])...)``, in that order."""
    if len(views) == 1:
        np.copyto(into, views[0])
        return
    reduce(views[0], views[1], out=into)
    for more in views[2:]:
        reduce(into, more, out=into)


def tiles(geometry: ConvGeometry) -> bool:
    """Whether a pool's windows tile its input: stride = window size and no padding (the unused last rows and
    columns of a floor pool are simply not read)."""
    return tuple(geometry.stride) == tuple(geometry.kernel_hw) and not any(geometry.padding)


def tile_pool(
    arr: NDArray[np.floating],
    size: tuple[int, int],
    kind: PoolKind,
    *,
    out: NDArray[np.floating] | None = None,
) -> NDArray[np.floating]:
    """Max or min pooling of ``(H, W, C)`` over ``size`` windows that tile it (stride = size, valid, floor), into
    ``out`` when given (``(H // kh, W // kw, C)``, ``arr``'s dtype) and returned.

    Each window's columns are reduced first, a band of rows at a time into a small buffer (``C`` values per
    cell, `TILE_BAND_VALUES` a band), then its rows: the window's cells in the order `pool_windows` walks
    them, grouped by row. The result is `pool_windows`' to the bit, signed zeros and NaNs included: numpy's
    maximum (minimum) returns its first argument when it is a NaN, else the second when that is a NaN or not
    smaller (larger), the same in its vector and scalar loops (x86; ARM's fmax treats -0 < +0 and is
    order-free), so a fold picks the first NaN, else the last cell holding the extreme, however the cells are
    grouped, as long as their order is kept (tests/test_pool.py checks it against the tap-by-tap fold).

    Examples
    --------
    >>> x = np.arange(16, dtype=np.float32).reshape(4, 4, 1)
    >>> tile_pool(x, (2, 2), PoolKind.MAX)[..., 0].tolist()
    [[5.0, 7.0], [13.0, 15.0]]
    """
    kh, kw = size
    ho, wo, channels = arr.shape[0] // kh, arr.shape[1] // kw, arr.shape[2]
    result = np.empty((ho, wo, channels), dtype=arr.dtype) if out is None else out
    reduce, step, column_taps, row_taps = _tile_plan(kh, kw, kind, wo, channels)
    columns = None if kh == 1 else _columns_buffer((min(step, ho) * kh, wo, channels), arr.dtype)
    for start in range(0, ho, step):
        stop = min(start + step, ho)
        source = arr[start * kh : stop * kh]
        target = result[start:stop]
        if columns is None:
            _fold(reduce, target, source, column_taps)
        else:
            band = columns[: (stop - start) * kh]
            _fold(reduce, band, source, column_taps)
            _fold(reduce, target, band, row_taps)
    return result


_Taps = tuple[tuple[slice, ...], ...]


@lru_cache(maxsize=64)
def _tile_plan(kh: int, kw: int, kind: PoolKind, wo: int, channels: int) -> tuple[np.ufunc, int, _Taps, _Taps]:
    """`tile_pool`'s ufunc, output rows a band, and the index of each window column (of a band of rows) and of each
    window row (of the column band), worked out once per pool and map width (the band loop pools band after band)."""
    reduce: np.ufunc = np.maximum if kind is PoolKind.MAX else np.minimum
    step = max(TILE_MIN_ROWS, TILE_BAND_VALUES // max(1, kh * wo * channels))
    column_taps = tuple((slice(None), slice(j, wo * kw, kw)) for j in range(kw))
    row_taps = tuple((slice(i, None, kh),) for i in range(kh))
    return reduce, step, column_taps, row_taps


_SCRATCH = threading.local()  # each thread's band of column maxima, reused from call to call (fresh pages fault)
_KEPT_VALUES = 1 << 20  # a larger band is made for its call only


def _columns_buffer(shape: tuple[int, int, int], dtype: np.dtype[Any]) -> NDArray[np.floating]:
    size = shape[0] * shape[1] * shape[2]
    if size > _KEPT_VALUES:
        return np.empty(shape, dtype=dtype)
    kept: NDArray[np.floating] | None = getattr(_SCRATCH, dtype.char, None)  # char: a C field (name is Python code)
    if kept is None or kept.size < size:
        kept = np.empty(max(size, 1 << 16), dtype=dtype)
        setattr(_SCRATCH, dtype.char, kept)
    return kept[:size].reshape(shape)


def _fold(reduce: np.ufunc, into: NDArray[np.floating], source: NDArray[np.floating], taps: _Taps) -> None:
    """``into = reduce(...reduce(reduce(source[taps[0]], source[taps[1]]), source[taps[2]])...)``, in that order."""
    _fold_views(reduce, [source[tap] for tap in taps], into)


def global_pool(x: ArrayLike, mode: str | PoolKind = "avg") -> NDArray[np.floating]:
    """Reduce H and W to 1: global average, max or min pooling; result ``(1, 1, C)``.

    Examples
    --------
    >>> global_pool(np.arange(6.0).reshape(2, 3), "avg").ravel().tolist()
    [2.5]
    """
    arr = as_float_image(x)
    kind = parse_enum(PoolKind, mode, "pool mode")
    if kind is PoolKind.MAX:
        return arr.max(axis=(0, 1), keepdims=True)
    if kind is PoolKind.MIN:
        return arr.min(axis=(0, 1), keepdims=True)
    return arr.mean(axis=(0, 1), keepdims=True, dtype=np.float64).astype(arr.dtype)
