"""A stride-1 convolution over many channels as one BLAS product per kernel row (`kernel_row_conv`), for runs whose
layer outputs no one looks at (`featmap.run.logits`, the final output alone, inside `kernel_row_sums`): its sums
are `featmap.core.gemm.im2col_hwc`'s, rounded in another order, on a third of im2col's copy.

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
from featmap.core.gemm import hwc_matrices, result_array, take_epilogue, workspace
from featmap.core.geometry import ConvGeometry
from featmap.core.memo import remembered

__all__ = ["kernel_row_conv", "kernel_row_sums", "kernel_rows_fit"]

Array = NDArray[np.floating]

# `kernel_row_conv` where it beats im2col: measured, one thread, load ~7, ms a conv (im2col_hwc / kernel rows):
# 56²×64 → 64 2.83 / 2.42, 28²×128 → 128 2.45 / 2.12, 14²×256 → 256 2.34 / 2.23, 7²×512 → 512 3.59 / 3.40,
# 224²×64 → 64 46.9 / 38.6; with stride 2 no faster (56²×64 → 128 1.25 / 1.33, 14²×256 → 512 1.75 / 1.84).
_KERNEL_ROWS_MIN_CHANNELS = 64
# Bytes of a band's kernel rows (`kernel_row_conv`): they stay in the L2 cache while BLAS reads them kh times.
_KERNEL_ROWS_BAND_BYTES = 2 << 20
_KERNEL_ROWS = threading.local()


@contextmanager
def kernel_row_sums() -> Iterator[None]:
    """Inside the block, this thread's stride-1 convolutions over many channels may run as `kernel_row_conv` (its
    sums rounded in another order than `im2col_hwc`'s: for a run whose layer outputs no one looks at, the final
    output alone)."""
    depth = _KERNEL_ROWS.__dict__.get("depth", 0)
    _KERNEL_ROWS.depth = depth + 1
    try:
        yield
    finally:
        _KERNEL_ROWS.depth = depth


def kernel_rows_fit(x: Array, g: ConvGeometry, groups: int) -> bool:
    """Whether `kernel_row_conv` may compute this convolution: inside `kernel_row_sums`, float32, one group, stride
    1, at least ``_KERNEL_ROWS_MIN_CHANNELS`` input channels."""
    return (
        bool(_KERNEL_ROWS.__dict__.get("depth"))
        and x.dtype == np.float32
        and groups == 1
        and tuple(g.stride) == (1, 1)
        and x.shape[2] >= _KERNEL_ROWS_MIN_CHANNELS
    )


def _window_rows(x: Array, g: ConvGeometry, first: int, count: int, into: Array, value: float) -> None:
    """``into[k]``, ``(W', kw, C)``: the window rows of padded row ``first + k`` for ``k < count``, read from the
    unpadded ``(H, W, C)`` input, ``value`` where a window reaches into the padding (no padded copy made)."""
    top, left, (h, w) = g.padding[0], g.padding[2], x.shape[:2]
    dw, wo, kw = g.dilation[1], g.out_hw[1], g.kernel_hw[1]
    lo, hi = min(count, max(0, top - first)), max(0, min(count, top + h - first))  # rows [lo, hi) are the input's
    into[:lo] = value
    into[max(hi, lo) : count] = value
    if lo >= hi:
        return
    source = x[first + lo - top : first + hi - top]
    for j in range(kw):
        shift = j * dw - left  # output column c's tap j reads input column c + shift
        c0, c1 = max(0, -shift), max(0, min(wo, w - shift))
        part = into[lo:hi, :, j]
        part[:, :c0] = value
        part[:, max(c1, c0) :] = value
        if c0 < c1:
            part[:, c0:c1] = source[:, c0 + shift : c1 + shift]


def kernel_row_conv(
    x: Array, bank: Array, g: ConvGeometry, bias: Array | None = None, pad_value: float = 0.0
) -> NDArray[np.floating] | None:
    """A stride-1 convolution of ``(H, W, C)`` (constant padding ``pad_value``) as one BLAS product per kernel row.

    Every padded row's window rows are copied once from the input, ``(W', kw·C)`` each (a window's row is ``kw·C``
    values: the copy is ``kw`` times the input, im2col's ``kh·kw``, and no padded copy is made). Read as one
    ``(rows·W', kw·C)`` matrix, output pixel ``q = r·W' + c``'s kernel row ``i`` is its row ``q + i·dh·W'``: kernel
    row ``i``'s operand is the matrix from row ``i·dh·W'`` on, times that row's ``kw·C × N`` slice of the bank, and
    BLAS sums the ``kh`` products into the result in place (`featmap.core.blas.sum_of_products`); then the bias, a
    cache-sized band of output rows at a time.

    The sum runs kernel row by kernel row, each row's ``kw·C`` terms summed by BLAS: `im2col_hwc`'s sum, rounded in
    another order. Returns ``(H', W', N)``, or None where BLAS cannot be called.
    """
    n_out, channels, kh, kw = bank.shape
    (dh, _), (ho, wo) = g.dilation, g.out_hw
    taps = kw * channels
    matrices = remembered("hwc/1", (bank,), lambda: hwc_matrices(bank, 1))[0].reshape(kh, taps, n_out)
    reach = (kh - 1) * dh  # padded rows below a band's last output row that its windows read
    band = max(1, min(ho, _KERNEL_ROWS_BAND_BYTES // (wo * taps * x.itemsize) - reach))
    held = workspace("kernel-rows", (band + reach, wo, kw, channels), x.dtype)
    result = result_array((ho, wo, n_out), x.dtype)
    flat = result.reshape(ho * wo, n_out)
    offsets = [i * dh * wo for i in range(kh)]
    shift = None if bias is None else np.asarray(bias, dtype=x.dtype)
    epilogue = None
    for r0 in range(0, ho, band):
        rows = min(band, ho - r0)
        _window_rows(x, g, r0, rows + reach, held, pad_value)
        target = flat[r0 * wo : (r0 + rows) * wo]
        if not sum_of_products(target, held[: rows + reach].reshape(-1, taps), offsets, matrices):
            return None  # (on the first band: numpy's BLAS is not one it can call)
        if shift is not None:
            target += shift
        if r0 == 0:
            epilogue = take_epilogue()
        if epilogue is not None:
            epilogue(target)
    return result
