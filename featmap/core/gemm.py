"""Convolutions of a network's inner layers, channel-last: pointwise (1×1) convolutions and dense layers over the
last axis, and filters over many channels through an im2col of one copy per kernel row, as BLAS products in
cache-sized bands; depthwise convolutions as one multiply and one add per tap over all channels at once, never
reading the zero padding. Each adds its bias while a band is in the cache; their temporaries come from a
per-thread `workspace`.

`featmap.core.engine.correlate` picks these for filters over many channels; a kernel bank on an image (a gray
or RGB picture) keeps the engine's other strategies.

Threads: the products run on numpy's BLAS (OpenBLAS in numpy's wheels), whose thread count `featmap.core.blas`
sets (``-j N`` means N cores: one BLAS thread per process of a batch); the depthwise passes are numpy's own, one
thread.

Examples
--------
>>> import numpy as np
>>> x = np.arange(12, dtype=np.float32).reshape(2, 2, 3)
>>> pointwise(x, np.array([[1, 0, 0], [1, 1, 1]], np.float32))[..., 1].tolist()
[[3.0, 12.0], [21.0, 30.0]]
"""

from __future__ import annotations

import math
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
from numpy.typing import NDArray

from featmap.core.geometry import ConvGeometry
from featmap.core.memo import freeze, remembered

__all__ = [
    "after_each_band",
    "constant_padded",
    "depthwise",
    "im2col_hwc",
    "matmul_rows",
    "pointwise",
    "result_array",
    "workspace",
]

Array = NDArray[np.floating]

# Bytes of the left operand per BLAS call: a band that stays in the L2 cache keeps OpenBLAS's kernel fed.
# Measured on a 3136×576 by 576×64 product, one thread: the whole 7 MB operand 17 GFLOP/s, bands of 0.6 MB and
# 2.4 MB 33 GFLOP/s.
_BAND_BYTES = 1 << 20
# Bytes of im2col windows per band: measured on VGG-16 blocks 1-2: 8 MB 103 ms, 2 MB 90 ms, 1 MB 89 ms (three convs).
_HWC_BAND_BYTES = 2 << 20
# Output values per depthwise band: fewer, longer numpy calls win over an accumulator that stays in L1. Measured
# on 112²×32 and 56²×144 3×3 (ms): 4096 values 3.2 / 2.6, 16384 1.7 / 2.0, 65536 1.2 / 1.6, 262144 2.2 / 2.5.
_DEPTHWISE_BAND_VALUES = 1 << 16


# Temporaries up to this many bytes (im2col windows, depthwise scratch and column phases) are kept per thread and
# reused from one call to the next: fresh ones page-faulted ~2,000 times per mobilenet_v2 run (4 ms of system time).
_WORKSPACE_BYTES = 16 << 20
_WORKSPACE = threading.local()


def workspace(name: str, shape: tuple[int, ...], dtype: np.dtype) -> NDArray[np.floating]:
    """An uninitialised ``shape`` array for a temporary called ``name``, reusing this thread's memory for it (a
    fresh array when larger than `_WORKSPACE_BYTES`). Valid until the next request for the same ``name``."""
    size = math.prod(shape) * dtype.itemsize
    if size > _WORKSPACE_BYTES:
        return np.empty(shape, dtype)
    buffers: dict[str, np.ndarray] = _WORKSPACE.__dict__.setdefault("buffers", {})
    held = buffers.get(name)
    if held is None or held.nbytes < size:
        held = buffers[name] = np.empty(max(size, 1 << 16), np.uint8)
    return held[:size].view(dtype).reshape(shape)


# Results (a layer's output, handed to the caller) up to this many bytes come from a per-thread pool of buffers, at
# most `_RESULTS_BYTES` in all, reused once no array uses them, inside `reused_results` (a network's final-output
# run): resnet18's page-faulted ~1,760 times a run on fresh ones (2-6 ms of system time under load), as glibc
# returned the freed memory to the system between layers. Elsewhere (every layer's output kept for the writers, a
# kernel bank's maps) results are plain arrays, so that the pool adds nothing to a command's peak memory.
_RESULT_BYTES = 16 << 20
_RESULTS_BYTES = 64 << 20
_RESULTS = threading.local()


@contextmanager
def reused_results() -> Iterator[None]:
    """Inside the block, this thread's `result_array` reuses the memory of earlier results no array uses any more."""
    with inside(_RESULTS):
        yield


@contextmanager
def inside(scope: threading.local) -> Iterator[None]:
    """Count this thread into ``scope`` for the block (``scope.depth`` > 0 inside; blocks nest)."""
    depth = scope.__dict__.get("depth", 0)
    scope.depth = depth + 1
    try:
        yield
    finally:
        scope.depth = depth


def result_array(shape: tuple[int, ...], dtype: np.dtype) -> NDArray[np.floating]:
    """An uninitialised ``shape`` array for a result that the caller keeps as long as it likes. Inside
    `reused_results`: memory of an earlier result of the same size that no array uses any more (its buffer's only
    references are the pool's), else new memory, kept in this thread's pool while the pool holds under
    `_RESULTS_BYTES`; elsewhere a plain array."""
    size = math.prod(shape) * dtype.itemsize
    if not 0 < size <= _RESULT_BYTES or not _RESULTS.__dict__.get("depth"):
        return np.empty(shape, dtype)
    pool: dict[int, list[np.ndarray]] = _RESULTS.__dict__.setdefault("pool", {})
    held = pool.setdefault(size, [])
    for buffer in held:
        # references: the list, this loop's name and getrefcount's argument; any array over it adds one (numpy
        # points every view at the array that owns the memory)
        if sys.getrefcount(buffer) == 3:
            return buffer.view(dtype).reshape(shape)
    buffer = np.empty(size, np.uint8)
    if sum(b.nbytes for sizes in pool.values() for b in sizes) + size <= _RESULTS_BYTES:
        held.append(buffer)
    return buffer.view(dtype).reshape(shape)


_EPILOGUE = threading.local()


@contextmanager
def after_each_band(epilogue: Callable[[NDArray[np.floating]], None]) -> Iterator[None]:
    """Inside the block, the first convolution result this thread's `featmap.core.kernelrows`, `im2col_hwc` or
    `featmap.core.engine`'s im2col makes with one group is handed to ``epilogue`` a band of output rows at a time, as
    a contiguous ``(pixels, N)`` view, once the band's sums and bias are in (while it is in the cache): every band of
    that result, or, where another strategy runs, none."""
    _EPILOGUE.epilogue = epilogue
    try:
        yield
    finally:
        _EPILOGUE.epilogue = None


def take_epilogue() -> Callable[[NDArray[np.floating]], None] | None:
    """The `after_each_band` epilogue waiting on this thread (then no longer waiting), or None."""
    epilogue = _EPILOGUE.__dict__.get("epilogue")
    _EPILOGUE.epilogue = None
    return epilogue


def constant_padded(x: Array, quad: tuple[int, int, int, int], value: float = 0.0) -> NDArray[np.floating]:
    """``(H, W, C)`` with ``(top, bottom, left, right)`` rows and columns of ``value`` around it (``np.pad``'s
    constant mode, the same values) in this thread's workspace: valid until the next call, for a temporary that
    `im2col_hwc` and `featmap.core.kernelrows` read (no allocation, four small fills instead of ``np.pad``'s Python)."""
    top, bottom, left, right = quad
    if not any(quad):
        return x
    h, w, c = x.shape
    out = workspace("constant-padded", (h + top + bottom, w + left + right, c), x.dtype)
    inner = out[top : top + h]
    for border in (out[:top], out[top + h :], inner[:, :left], inner[:, left + w :]):
        border.fill(value)
    inner[:, left : left + w] = x
    return out


def matmul_rows(a: Array, weight_t: Array, out: Array, bias: Array | None = None) -> Array:
    """``out = a @ weight_t (+ bias)`` for ``a`` ``(M, K)`` in bands of rows (each band's product, then its bias,
    while the band is in the cache). ``a`` may be any 2-D view; ``out`` is ``(M, N)``."""
    m, k = a.shape
    band = max(16, _BAND_BYTES // max(1, k * a.dtype.itemsize))
    for r0 in range(0, m, band):
        rows = slice(r0, min(m, r0 + band))
        np.matmul(a[rows], weight_t, out=out[rows])
        if bias is not None:
            out[rows] += bias
    return out


def pointwise(
    x: Array, weight: Array, bias: Array | None = None, *, stride: tuple[int, int] = (1, 1)
) -> NDArray[np.floating]:
    """A 1×1 convolution (or a dense layer at every position): ``(..., C)`` times ``weight`` ``(N, C)`` (PyTorch's
    layout, a 1×1 bank's ``(N, C, 1, 1)`` accepted) plus ``bias``, ``(..., N)`` out; ``stride`` on ``(H, W, C)``
    keeps every stride-th row and column."""
    weight = weight.reshape(weight.shape[0], -1)
    if stride != (1, 1):
        x = x[:: stride[0], :: stride[1]]
    lead, channels = x.shape[:-1], x.shape[-1]
    a = x.reshape(-1, channels)  # a copy only for a strided view
    out = result_array((a.shape[0], weight.shape[0]), x.dtype)
    weight_t = weight.astype(x.dtype, copy=False).T
    matmul_rows(a, weight_t, out, None if bias is None else bias.astype(x.dtype, copy=False))
    return out.reshape(*lead, weight.shape[0])


def hwc_matrices(bank: Array, groups: int) -> list[NDArray[np.floating]]:
    """Each group's filters as the (kh·kw·C/groups, N/groups) matrix of `im2col_hwc`'s product."""
    n_out = bank.shape[0]
    per_out = n_out // groups
    return [
        freeze(np.ascontiguousarray(bank[g * per_out : (g + 1) * per_out].transpose(2, 3, 1, 0).reshape(-1, per_out)))
        for g in range(groups)
    ]


def _window_rows(padded: Array, g: ConvGeometry, channels: slice) -> Callable[[int, int], Array]:
    """``rows(first, count)``: the ``(count, W', kw, C)`` window rows starting on padded rows ``first``,
    ``first + sh``, … (one kernel row of ``count`` output rows). With no column dilation a window's row is ``kw·C``
    contiguous values of the padded row: one strided view of the whole input, made once (a view costs ~10 µs to
    make, a slice of it ~0.3), sliced per call; with dilation, the row's taps stacked (a copy)."""
    source = padded[:, :, channels]
    (sh, sw), dw, kw = g.stride, g.dilation[1], g.kernel_hw[1]
    if dw != 1:
        return lambda first, count: np.stack(
            [source[first : first + (count - 1) * sh + 1 : sh, g.tap_cols(j)] for j in range(kw)], axis=2
        )
    s_row, s_col, s_chan = source.strides
    every = np.lib.stride_tricks.as_strided(
        source, (source.shape[0], g.out_hw[1], kw, source.shape[2]), (s_row, sw * s_col, s_col, s_chan), writeable=False
    )
    return lambda first, count: every[first : first + (count - 1) * sh + 1 : sh]


def im2col_hwc(
    padded: Array, bank: Array, g: ConvGeometry, groups: int = 1, bias: Array | None = None
) -> NDArray[np.floating]:
    """Filters over many channels (a CNN's inner layers) on the padded ``(H, W, C)`` input: a band of output rows'
    windows as a ``(pixels, kh·kw·C)`` matrix, built with one copy per kernel row (each window row is ``kw·C``
    values), times the bank laid out ``(kh, kw, C) × N`` (worked out once per weights), then the bias while the
    band is in the cache. Returns ``(H', W', N)``."""
    n_out, per_group, kh, kw = bank.shape
    ho, wo = g.out_hw
    sh, dh = g.stride[0], g.dilation[0]
    per_out, taps = n_out // groups, per_group * kh * kw
    result = result_array((ho, wo, n_out), padded.dtype)
    flat = result.reshape(ho * wo, n_out)
    pixels = max(wo, _HWC_BAND_BYTES // (taps * padded.dtype.itemsize))
    band = max(1, min(ho, pixels // wo))
    windows = workspace("windows", (band, wo, kh, kw, per_group), padded.dtype)
    matrices = remembered(f"hwc/{groups}", (bank,), lambda: hwc_matrices(bank, groups))  # once per weights
    shift = None if bias is None else np.asarray(bias, dtype=padded.dtype)
    epilogue = take_epilogue() if groups == 1 else None
    for group in range(groups):
        channels = slice(group * per_group, (group + 1) * per_group)
        outs = slice(group * per_out, (group + 1) * per_out)
        window_rows = _window_rows(padded, g, channels)
        for r0 in range(0, ho, band):
            rows = min(band, ho - r0)
            for i in range(kh):  # kernel row i of output rows r0 .. r0 + rows - 1: padded rows (r0 + o)·sh + i·dh
                windows[:rows, :, i] = window_rows(r0 * sh + i * dh, rows)
            target = flat[r0 * wo : (r0 + rows) * wo, outs]
            np.matmul(windows[:rows].reshape(rows * wo, taps), matrices[group], out=target)
            if shift is not None:
                target += shift[outs]
            if epilogue is not None:
                epilogue(target)
    return result


def _tap_tiles(bank: Array, width: int, dtype: np.dtype) -> NDArray[np.floating]:
    """``tiles[i, j]``: tap ``(i, j)``'s weights of every output channel repeated ``width`` times, the layout of an
    output row ``(W', C·m)``, so that one tap over a band is one long product (no per-pixel broadcast)."""
    n_out, _, kh, kw = bank.shape
    taps = bank.reshape(n_out, kh, kw).transpose(1, 2, 0).astype(dtype)
    return freeze(np.ascontiguousarray(np.tile(taps, (1, 1, width))))


def _tap_span(first: int, stride: int, size: int, count: int) -> tuple[int, int]:
    """Outputs ``[lo, hi)`` (of ``count``) whose tap reads a real input: ``0 <= o·stride + first < size``."""
    return max(0, -(first // stride)), min(count, (size - 1 - first) // stride + 1)


def depthwise(
    x: Array, bank: Array, geometry: ConvGeometry, bias: Array | None = None, *, padded: bool = False
) -> NDArray[np.floating]:
    """Each channel of the ``(H, W, C)`` input cross-correlated with its own filters (+ ``bias``): ``bank`` is
    ``(C·m, 1, kh, kw)``, filter ``c·m + k`` reading channel ``c`` (PyTorch's depthwise layout, ``groups=C``).

    ``x`` is the unpadded input, its padding zeros that are never read (a tap skips the outputs whose window
    reaches into it), or, ``padded=True``, an input already padded as ``geometry`` says (other padding modes).

    Every tap is one multiply and one add over a band of output rows (cache-sized), each a single long
    contiguous run per row: the tap's weights are laid out as an output row, a column stride reads from one of
    ``stride`` column phases of the input. The sum runs over the taps in row-major order, as the tap walk does,
    then the bias, in the band. Returns ``(H', W', C·m)``.
    """
    n_out, _, kh, kw = bank.shape
    if n_out != x.shape[2]:  # a channel multiplier: filter c·m + k reads channel c
        x = np.repeat(x, n_out // x.shape[2], axis=2)
    ho, wo = geometry.out_hw
    (sh, sw), (dh, dw) = geometry.stride, geometry.dilation
    top, left = (0, 0) if padded else (geometry.padding[0], geometry.padding[2])
    height = x.shape[0]
    phases = [x]
    if sw > 1:  # each column phase contiguous, so that a tap reads one run per row
        phases = [workspace(f"phase{p}", x[:, p::sw].shape, x.dtype) for p in range(sw)]
        for p, columns in enumerate(phases):
            columns[...] = x[:, p::sw]
    tiles = remembered(f"depthwise/{wo}/{x.dtype.str}", (bank,), lambda: _tap_tiles(bank, wo, x.dtype))
    row_spans = [_tap_span(i * dh - top, sh, height, ho) for i in range(kh)]
    col_taps = []  # (phase, column offset in it, first and last output column) of each kernel column
    for j in range(kw):
        phase, offset = (j * dw - left) % sw, (j * dw - left) // sw
        col_taps.append((phase, offset, max(0, -offset), min(wo, phases[phase].shape[1] - offset)))
    out = result_array((ho, wo * n_out), x.dtype)
    band = max(1, min(ho, _DEPTHWISE_BAND_VALUES // max(1, wo * n_out)))
    scratch = workspace("depthwise", (band, wo * n_out), x.dtype)
    shift = None if bias is None else np.tile(np.asarray(bias, dtype=x.dtype), wo)
    for r0 in range(0, ho, band):
        r1 = min(ho, r0 + band)
        started = False
        for i in range(kh):
            a, b = max(r0, row_spans[i][0]), min(r1, row_spans[i][1])
            if a >= b:
                continue
            first_row = a * sh + i * dh - top
            rows = slice(first_row, first_row + (b - a - 1) * sh + 1, sh)
            for j in range(kw):
                phase, offset, c0, c1 = col_taps[j]
                if c0 >= c1:
                    continue
                source = phases[phase][rows, c0 + offset : c1 + offset].reshape(b - a, -1)
                acc = out[a:b, c0 * n_out : c1 * n_out]
                tile = tiles[i, j, : (c1 - c0) * n_out]
                if not started and (a, b, c0, c1) != (r0, r1, 0, wo):
                    out[r0:r1] = 0  # the first tap does not reach every output of the band
                    started = True
                if started:
                    tmp = scratch[: b - a, : (c1 - c0) * n_out]
                    np.multiply(source, tile, out=tmp)
                    acc += tmp
                else:
                    np.multiply(source, tile, out=acc)
                    started = True
        if not started:  # every window of the band lies in the padding
            out[r0:r1] = 0
        if shift is not None:
            out[r0:r1] += shift
    return out.reshape(ho, wo, n_out)
