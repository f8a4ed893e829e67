"""Convolutions of a network's inner layers, channel-last: pointwise (1×1) convolutions and dense layers over the
last axis as BLAS products in cache-sized bands, and depthwise convolutions as one multiply-accumulate per tap
over all channels at once.

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

import numpy as np
from numpy.typing import NDArray

from featmap.core.geometry import ConvGeometry, strided_slice

__all__ = ["depthwise", "matmul_rows", "pointwise"]

Array = NDArray[np.floating]

# Bytes of the left operand per BLAS call: a band that stays in the L2 cache keeps OpenBLAS's kernel fed.
# Measured on a 3136×576 by 576×64 product, one thread: the whole 7 MB operand 17 GFLOP/s, bands of 0.6 MB and
# 2.4 MB 33 GFLOP/s.
_BAND_BYTES = 1 << 20
# Output values per depthwise band: the accumulator and its scratch stay in the L2 cache over all the taps.
_DEPTHWISE_BAND_VALUES = 1 << 15


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
    out = np.empty((a.shape[0], weight.shape[0]), dtype=x.dtype)
    weight_t = weight.astype(x.dtype, copy=False).T
    matmul_rows(a, weight_t, out, None if bias is None else bias.astype(x.dtype, copy=False))
    return out.reshape(*lead, weight.shape[0])


def depthwise(padded: Array, bank: Array, geometry: ConvGeometry) -> NDArray[np.floating]:
    """Each channel of the padded ``(H, W, C)`` input cross-correlated with its own filters: ``bank`` is
    ``(C·m, 1, kh, kw)``, filter ``c·m + k`` reading channel ``c`` (PyTorch's depthwise layout, ``groups=C``).

    Every tap is one multiply-accumulate over a band of output rows and all channels (a strided view, no
    copy), the band's accumulator staying in the cache over the ``kh·kw`` taps. Returns ``(H', W', C·m)``.
    """
    n_out, _, kh, kw = bank.shape
    channels = padded.shape[2]
    mult = n_out // channels
    ho, wo = geometry.out_hw
    sh, dh = geometry.stride[0], geometry.dilation[0]
    # taps[i, j] is a (C, m) block of weights, broadcast along a band's rows and columns
    taps = np.ascontiguousarray(bank.reshape(channels, mult, kh, kw).transpose(2, 3, 0, 1), dtype=padded.dtype)
    out = np.empty((ho, wo, channels, mult), dtype=padded.dtype)
    band = max(1, min(ho, _DEPTHWISE_BAND_VALUES // max(1, wo * n_out)))
    scratch = np.empty((band, wo, channels, mult), dtype=padded.dtype)
    for r0 in range(0, ho, band):
        rows = min(band, ho - r0)
        acc, tmp = out[r0 : r0 + rows], scratch[:rows]
        first = True
        for i in range(kh):
            source = padded[strided_slice(r0 * sh + i * dh, rows, sh)]
            for j in range(kw):
                view = source[:, geometry.tap_cols(j), :, np.newaxis]
                if first:
                    np.multiply(view, taps[i, j], out=acc)
                    first = False
                else:
                    np.multiply(view, taps[i, j], out=tmp)
                    acc += tmp
    return out.reshape(ho, wo, n_out)
