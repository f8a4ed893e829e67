"""A stride-1 convolution over many channels, or an RGB stem's wide strided one, as one BLAS product per kernel row
(`kernel_row_conv`), for runs whose layer outputs no one looks at (`featmap.run.logits`, the final output alone,
inside `kernel_row_sums`): its sums are `featmap.core.gemm.im2col_hwc`'s, rounded in another order, on a third of
im2col's copy.

Examples
--------
>>> import numpy as np
>>> from featmap.core.geometry import conv_geometry
>>> out = kernel_row_conv(np.ones((3, 3, 64), np.float32), np.ones((1, 64, 3, 3), np.float32),
...                       conv_geometry((3, 3), 3, padding=1))
>>> out is None or out[..., 0].tolist() == [[256.0, 384.0, 256.0], [384.0, 576.0, 384.0], [256.0, 384.0, 256.0]]
True
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from numpy.typing import NDArray

from featmap.core.blas import sum_of_products
from featmap.core.gemm import constant_padded, hwc_matrices, inside, result_array, take_epilogue, workspace
from featmap.core.geometry import ConvGeometry
from featmap.core.memo import remembered

__all__ = ["kernel_row_conv", "kernel_row_sums", "kernel_rows_fit"]

Array = NDArray[np.floating]

# `kernel_row_conv` where it beats im2col: measured, one thread, load ~7, ms a conv (im2col_hwc / kernel rows):
# 56²×64 → 64 2.83 / 2.42, 28²×128 → 128 2.45 / 2.12, 14²×256 → 256 2.34 / 2.23, 7²×512 → 512 3.59 / 3.40,
# 224²×64 → 64 46.9 / 38.6; with stride 2 no faster (56²×64 → 128 1.25 / 1.33, 14²×256 → 512 1.75 / 1.84).
_KERNEL_ROWS_MIN_CHANNELS = 64
# ...and an RGB stem (few channels, a wide kernel, any stride): resnet18's 7×7/2 on 224²×3, 3.40 -> 2.98 ms.
_STEM_MAX_CHANNELS = 4
_STEM_MIN_KERNEL = 5
# Bytes of a band's kernel rows (`kernel_row_conv`): they stay in the L2 cache while BLAS reads them kh times.
_KERNEL_ROWS_BAND_BYTES = 2 << 20
_KERNEL_ROWS = threading.local()


@contextmanager
def kernel_row_sums() -> Iterator[None]:
    """Inside the block, this thread's convolutions that `kernel_rows_fit` may run as `kernel_row_conv` (its
    sums rounded in another order than `im2col_hwc`'s: for a run whose layer outputs no one looks at, the final
    output alone)."""
    with inside(_KERNEL_ROWS):
        yield


def kernel_rows_fit(x: Array, g: ConvGeometry, groups: int) -> bool:
    """Whether `kernel_row_conv` may compute this convolution: inside `kernel_row_sums`, float32, one group, and
    either stride 1 over at least ``_KERNEL_ROWS_MIN_CHANNELS`` input channels or an RGB stem's wide kernel
    (``_STEM_*``)."""
    if not (_KERNEL_ROWS.__dict__.get("depth") and x.dtype == np.float32 and groups == 1):
        return False
    if tuple(g.stride) == (1, 1):
        return bool(x.shape[2] >= _KERNEL_ROWS_MIN_CHANNELS)
    return bool(x.shape[2] <= _STEM_MAX_CHANNELS and g.kernel_hw[1] >= _STEM_MIN_KERNEL)


def _window_rows(x: Array, g: ConvGeometry, rows: range, into: Array, value: float) -> None:
    """``into[k]``, ``(W', kw, C)``: the window rows of padded row ``rows[k]``, read from the unpadded ``(H, W, C)``
    input, ``value`` where a window reaches into the padding (no padded copy made)."""
    top, left, (h, w) = g.padding[0], g.padding[2], x.shape[:2]
    sw, dw, wo, kw = g.stride[1], g.dilation[1], g.out_hw[1], g.kernel_hw[1]
    step, count = rows.step, len(rows)
    lo = min(count, max(0, -((rows.start - top) // step)))  # the first row that is the input's, and past the last
    hi = max(lo, min(count, -((rows.start - top - h) // step)))
    into[:lo] = value
    into[hi:count] = value
    if lo >= hi:
        return
    source = x[rows[lo] - top : rows[hi - 1] - top + 1 : step]
    for j in range(kw):
        shift = j * dw - left  # output column c's tap j reads input column c·sw + shift
        c0 = min(wo, max(0, -(shift // sw)))
        c1 = max(c0, min(wo, -((shift - w) // sw)))
        part = into[lo:hi, :, j]
        part[:, :c0] = value
        part[:, c1:] = value
        if c0 < c1:
            part[:, c0:c1] = source[:, c0 * sw + shift : (c1 - 1) * sw + shift + 1 : sw]


def _padded_window_rows(padded: Array, g: ConvGeometry, rows: range, into: Array) -> None:
    """``into[k]``, ``(W', kw, C)``: the window rows of padded row ``rows[k]`` of ``padded`` (C-contiguous), where a
    window row is ``kw·C`` consecutive values (no column dilation): one copy of an overlapping strided view, runs of
    ``kw·C`` values, where `_window_rows` copies a tap at a time in runs of ``C`` (an RGB stem's 3: 0.98 → 0.25 ms
    on 224²×3, 7×7/2)."""
    count, (wo, kw, c) = len(rows), into.shape[1:]
    source = padded[rows.start : rows.start + (count - 1) * rows.step + 1 : rows.step]
    item = padded.itemsize
    windows = np.lib.stride_tricks.as_strided(
        source, (count, wo, kw * c), (source.strides[0], g.stride[1] * c * item, item), writeable=False
    )
    np.copyto(into.reshape(count, wo, kw * c), windows)


def kernel_row_conv(
    x: Array, bank: Array, g: ConvGeometry, bias: Array | None = None, pad_value: float = 0.0
) -> NDArray[np.floating] | None:
    """A convolution of ``(H, W, C)`` (constant padding ``pad_value``) as one BLAS product per kernel row.

    Every padded row's window rows are copied once from the input, ``(W', kw·C)`` each (a window's row is ``kw·C``
    values: with stride 1 the copy is ``kw`` times the input, im2col's ``kh·kw``; no padded copy is made), the rows
    of each phase of the row stride together. Read as one ``(rows·W', kw·C)`` matrix, output pixel ``q = r·W' + c``'s
    kernel row ``i`` is its row ``q + o_i·W'``, ``o_i`` where that kernel row's padded rows start: kernel row ``i``'s
    operand is the matrix from row ``o_i·W'`` on, times that row's ``kw·C × N`` slice of the bank, and BLAS sums the
    ``kh`` products into the result in place (`featmap.core.blas.sum_of_products`); then the bias, a cache-sized
    band of output rows at a time.

    The sum runs kernel row by kernel row, each row's ``kw·C`` terms summed by BLAS: `im2col_hwc`'s sum, rounded in
    another order. Returns ``(H', W', N)``, or None where BLAS cannot be called.
    """
    n_out, channels, kh, kw = bank.shape
    (sh, _), (dh, _), (ho, wo) = g.stride, g.dilation, g.out_hw
    taps = kw * channels
    matrices = remembered("hwc/1", (bank,), lambda: hwc_matrices(bank, 1))[0].reshape(kh, taps, n_out)
    # kernel row i reads padded rows r·sh + i·dh: phase (i·dh) % sh of the row stride, from its row (i·dh) // sh on
    phases = sorted({i * dh % sh for i in range(kh)})
    beyond = {p: max(i * dh // sh for i in range(kh) if i * dh % sh == p) for p in phases}
    band = max(1, min(ho, _KERNEL_ROWS_BAND_BYTES // (wo * taps * x.itemsize * len(phases)) - max(beyond.values())))
    held = workspace("kernel-rows", (band * len(phases) + sum(beyond.values()), wo, kw, channels), x.dtype)
    result = result_array((ho, wo, n_out), x.dtype)
    flat = result.reshape(ho * wo, n_out)
    shift = None if bias is None else np.asarray(bias, dtype=x.dtype)
    epilogue = None
    # few channels (an RGB stem): window rows from a padded copy, kw·C values a run; else straight from the input
    padded = constant_padded(x, g.padding, pad_value) if channels <= _STEM_MAX_CHANNELS and g.dilation[1] == 1 else None
    if padded is not None and not padded.flags.c_contiguous:  # (no padding: the input itself, maybe a view)
        padded = np.ascontiguousarray(padded)
    for r0 in range(0, ho, band):
        rows = min(band, ho - r0)
        starts, at = {}, 0
        for p in phases:  # phase p's rows of the band: r0·sh + p, then every sh-th
            count = rows + beyond[p]
            span = range(r0 * sh + p, r0 * sh + p + count * sh, sh)
            if padded is not None:
                _padded_window_rows(padded, g, span, held[at : at + count])
            else:
                _window_rows(x, g, span, held[at : at + count], pad_value)
            starts[p], at = at, at + count
        offsets = [(starts[i * dh % sh] + i * dh // sh) * wo for i in range(kh)]
        target = flat[r0 * wo : (r0 + rows) * wo]
        if not sum_of_products(target, held[:at].reshape(-1, taps), offsets, matrices):
            return None  # (on the first band: numpy's BLAS is not one it can call)
        if shift is not None:
            target += shift
        if r0 == 0:
            epilogue = take_epilogue()
        if epilogue is not None:
            epilogue(target)
    return result
