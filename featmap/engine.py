"""How `featmap.ops.conv2d` computes a cross-correlation on an already padded input: the strategies
and the rule that picks one. Pure numpy/scipy.

Every strategy computes only the kept (strided) outputs, except ``fft``, which is chosen only where a
large kernel makes the full transform cheaper even after discarding the strided-out positions.

============  =================================================================  ==================
method        how                                                                 when ``auto``
============  =================================================================  ==================
direct        one pass per kernel tap over strided views, multiply-accumulate    small kernels, banks
separable     a rank-1 kernel as a column pass then a row pass (kh + kw passes)  rank 1, kh, kw > 1
fft           scipy.signal.fftconvolve in float64 on the whole plane, then slice kh·kw / stride² ≥ 100
============  =================================================================  ==================
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from numpy.typing import NDArray

from .errors import SpecError
from .shapes import ConvGeometry

__all__ = ["METHODS", "correlate", "rank1_factors", "window_taps"]

METHODS = ("auto", "direct", "separable", "fft")
# Taps per kept output from which the FFT wins; measured on 1024²: 9×9 direct 57 ms vs FFT 61 ms, 11×11 135 vs 47.
_FFT_MIN_WORK = 100


def window_taps(
    padded: NDArray[np.floating], geometry: ConvGeometry
) -> Iterator[tuple[int, int, NDArray[np.floating]]]:
    """Yield ``(i, j, view)`` for every kernel tap: the strided view of the padded input it multiplies.

    Each view has the output's shape ``(H_out, W_out, C)`` and is a view, not a copy, so a
    convolution or pooling costs one pass over the output per tap and never materialises the
    windows (no im2col).
    """
    (kh, kw), (sh, sw), (dh, dw) = geometry.kernel_hw, geometry.stride, geometry.dilation
    ho, wo = geometry.out_hw
    for i in range(kh):
        for j in range(kw):
            yield (
                i,
                j,
                padded[i * dh : i * dh + (ho - 1) * sh + 1 : sh, j * dw : j * dw + (wo - 1) * sw + 1 : sw],
            )


def rank1_factors(kernel: NDArray[np.floating]) -> tuple[NDArray[np.float64], NDArray[np.float64]] | None:
    """``(column, row)`` with ``outer(column, row) == kernel`` if the kernel has rank 1, else None."""
    k64 = kernel.astype(np.float64)
    s = np.linalg.svd(k64, compute_uv=False)
    if s[0] == 0 or (len(s) > 1 and s[1] > 1e-7 * s[0]):
        return None
    # Factor through the largest weight rather than the singular vectors: integer kernels (Sobel, box)
    # then factor exactly, e.g. [1, 2, 1] and [-1, 0, 1].
    p, q = np.unravel_index(np.argmax(np.abs(k64)), k64.shape)
    column, row = k64[:, q], k64[p, :] / k64[p, q]
    if not np.allclose(np.outer(column, row), k64, rtol=1e-9, atol=1e-12 * np.abs(k64).max()):
        return None
    return column, row


def _pick(kernel: NDArray[np.floating], geometry: ConvGeometry) -> str:
    kh, kw = geometry.kernel_hw
    work = kh * kw / (geometry.stride[0] * geometry.stride[1])
    if kh > 1 and kw > 1 and rank1_factors(kernel) is not None:
        return "separable"
    if work >= _FFT_MIN_WORK:
        return "fft"
    return "direct"


def _direct_plane(
    plane: NDArray[np.floating],
    kernel: NDArray[np.floating],
    g: ConvGeometry,
    out: NDArray[np.floating],
    scratch: NDArray[np.floating],
) -> None:
    out[...] = 0
    for i, j, view in window_taps(plane, g):
        if kernel[i, j] != 0:
            np.multiply(view, kernel[i, j], out=scratch)
            out += scratch


def _separable_plane(
    plane: NDArray[np.floating],
    kernel: NDArray[np.floating],
    g: ConvGeometry,
    out: NDArray[np.floating],
    scratch: NDArray[np.floating],
) -> None:
    factors = rank1_factors(kernel)
    assert factors is not None  # _pick checked; kept for type checkers
    column, row = (f.astype(plane.dtype) for f in factors)
    (kh, kw), (sh, sw), (dh, dw) = g.kernel_hw, g.stride, g.dilation
    ho, wo = g.out_hw
    rows = np.zeros((ho, plane.shape[1]), dtype=plane.dtype)  # the column pass, on kept rows only
    rows_scratch = np.empty_like(rows)
    for i in range(kh):
        np.multiply(plane[i * dh : i * dh + (ho - 1) * sh + 1 : sh], column[i], out=rows_scratch)
        rows += rows_scratch
    out[...] = 0
    for j in range(kw):
        np.multiply(rows[:, j * dw : j * dw + (wo - 1) * sw + 1 : sw], row[j], out=scratch)
        out += scratch


def _fft_plane(
    plane: NDArray[np.floating],
    kernel: NDArray[np.floating],
    g: ConvGeometry,
    out: NDArray[np.floating],
    scratch: NDArray[np.floating],
) -> None:
    from scipy.signal import fftconvolve  # type: ignore[import-untyped]  # scipy ships no stubs

    (kh, kw), (sh, sw), (dh, dw) = g.kernel_hw, g.stride, g.dilation
    dilated = np.zeros(((kh - 1) * dh + 1, (kw - 1) * dw + 1))
    dilated[::dh, ::dw] = kernel
    full = fftconvolve(plane.astype(np.float64), dilated[::-1, ::-1], mode="valid")
    ho, wo = g.out_hw
    out[...] = full[: (ho - 1) * sh + 1 : sh, : (wo - 1) * sw + 1 : sw]


_PLANE = {"direct": _direct_plane, "separable": _separable_plane, "fft": _fft_plane}


def correlate(
    padded: NDArray[np.floating], bank: NDArray[np.floating], geometry: ConvGeometry, groups: int, method: str = "auto"
) -> NDArray[np.floating]:
    """Cross-correlate a padded ``(Hp, Wp, C)`` input with ``(N, C/groups, kh, kw)``; result ``(H', W', N)``.

    ``method`` forces a strategy for filters that read one input channel each (gray images, depthwise);
    banks whose filters sum over several channels always use the direct tap walk with a matrix product.
    """
    if method not in METHODS:
        raise SpecError("`method`", f"unknown method {method!r}", f"use one of: {', '.join(METHODS)}")
    n_out, per_group, kh, kw = bank.shape
    ho, wo = geometry.out_hw
    per_out = n_out // groups
    if per_group == 1:
        result = np.empty((ho, wo, n_out), dtype=padded.dtype)
        plane_out = np.empty((ho, wo), dtype=padded.dtype)
        scratch = np.empty((ho, wo), dtype=padded.dtype)
        channel, plane = -1, padded[:, :, 0]
        for n in range(n_out):
            if n // per_out != channel:  # one contiguous channel at a time in memory
                channel = n // per_out
                plane = np.ascontiguousarray(padded[:, :, channel])
            kernel = bank[n, 0]
            how = _pick(kernel, geometry) if method == "auto" else method
            if how == "separable" and rank1_factors(kernel) is None:
                how = "direct"
            _PLANE[how](plane, kernel, geometry, plane_out, scratch)
            result[:, :, n] = plane_out
        return result
    out = np.zeros((ho, wo, groups, per_out), dtype=padded.dtype)
    taps = np.ascontiguousarray(bank.reshape(groups, per_out, per_group, kh, kw).transpose(3, 4, 0, 2, 1))
    scratch4 = np.empty_like(out)
    for i, j, view in window_taps(padded, geometry):
        tap = taps[i, j]  # (groups, C/groups, N/groups)
        if groups == 1:
            np.matmul(view, tap[0], out=scratch4[:, :, 0, :])
            out += scratch4
        else:
            out += np.einsum("hwgc,gcn->hwgn", view.reshape(ho, wo, groups, per_group), tap)
    return out.reshape(ho, wo, n_out)
