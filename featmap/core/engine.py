"""How `featmap.core.ops.conv2d` computes a cross-correlation: padding, the strategies, and the rule that
picks one.

Filters that read one input channel each (a gray image, depthwise RGB) go to OpenCV when it is
importable (`featmap.core.cvfilter`), else to the numpy reference strategies; filters that sum over several
channels (a true RGB convolution, a bank of them) go to ``im2col``. Every strategy computes only the
kept (strided) outputs, except ``fft``, chosen only where a large kernel makes the full transform
cheaper even after discarding the strided-out positions.

============  =================================================================  ========================
method        how                                                                 when ``auto``
============  =================================================================  ========================
opencv        filter2D / sepFilter2D, stride by row phases (`featmap.core.cvfilter`)   one channel per filter
direct        one pass per kernel tap over strided views, multiply-accumulate    (numpy reference)
separable     a rank-1 kernel as a column pass then a row pass (kh + kw passes)  rank 1, no OpenCV
fft           scipy.signal.fftconvolve in float64 on the whole plane, then slice kh·kw / stride² ≥ 100
im2col        row bands of windows (cache-sized) times the bank, one BLAS call    several channels/filter
depthwise     one multiply-accumulate per tap over all channels (`core.gemm`)    groups = C ≥ 8
pointwise     the (H·W, C) input times the bank in row bands (`core.gemm`)       1×1, unpadded, C ≥ 8
kernel rows   one product per kernel row of the windows' rows, summed by BLAS     final-output runs:
              (`core.kernelrows`; another rounding order than im2col)         stride 1, C ≥ 64; stem
============  =================================================================  ========================
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from numpy.typing import NDArray

from featmap.core import cvfilter, gemm, kernelrows
from featmap.core.geometry import ConvGeometry, strided_slice
from featmap.core.kernelmath import rank1_factors, spread_kernel
from featmap.enums import PaddingMode
from featmap.errors import ShapeError, SpecError

__all__ = ["METHODS", "check_padding", "correlate", "pad_input", "window_taps"]

METHODS = ("auto", "direct", "separable", "fft", "opencv", "im2col")
# Output pixels per im2col band. Measured on 2048² RGB, 32 filters: 4096 px 268 ms, 16384 203, 32768 ~200,
# 65536 285 (fewer, longer copies win until the windows, 27 taps x 32768 x 4 B = 3.5 MB, leave the cache).
_BAND_PIXELS = 32768
# ...and at most this many bytes of windows per band, so that a conv over many channels (512 × 3×3 = 4,608 taps
# per pixel, deep in a ResNet) copies cache-sized bands too: measured on 4×4×512, 3×3 → 512, 4.4 s → 0.02 s.
_BAND_BYTES = 27 * _BAND_PIXELS * 4
# Filters over this many channels or more use the (H, W, C) im2col (`featmap.core.gemm.im2col_hwc`): one copy per
# kernel row instead of one per tap and channel.
_HWC_MIN_CHANNELS = 8
# A bank of this many single-channel filters (a gray image) is one im2col product rather than a filter per map;
# measured on 2048² gray, 3×3: 8 filters OpenCV 33-57 ms vs im2col 46-85; 32 filters 118-215 vs 78-91.
_IM2COL_MIN_FILTERS = 12
_NUMPY_MODE = {
    PaddingMode.REFLECT: "reflect",
    PaddingMode.SYMMETRIC: "symmetric",
    PaddingMode.REPLICATE: "edge",
    PaddingMode.CIRCULAR: "wrap",
}


def check_padding(hw: tuple[int, int], quad: tuple[int, int, int, int], pad_mode: PaddingMode) -> None:
    """Refuse ``reflect`` padding as large as the input, as PyTorch does."""
    top, bottom, left, right = quad
    if pad_mode is PaddingMode.REFLECT and (max(top, bottom) >= hw[0] or max(left, right) >= hw[1]):
        raise ShapeError(
            "`padding`",
            f"reflect padding {quad} needs an input larger than the pad; got {hw[0]}x{hw[1]}",
            "use pad mode symmetric, replicate or zeros, or less padding",
        )


def pad_input(
    arr: NDArray[np.floating], quad: tuple[int, int, int, int], pad_mode: PaddingMode, pad_value: float = 0.0
) -> NDArray[np.floating]:
    """Pad the rows and columns of ``(H, W, C)`` by ``(top, bottom, left, right)`` (numpy reference)."""
    check_padding((arr.shape[0], arr.shape[1]), quad, pad_mode)
    top, bottom, left, right = quad
    if not any(quad):
        return arr
    widths = ((top, bottom), (left, right), (0, 0))
    if pad_mode is PaddingMode.ZEROS:
        return np.pad(arr, widths, mode="constant", constant_values=pad_value)
    return np.pad(arr, widths, mode=_NUMPY_MODE[pad_mode])  # type: ignore[call-overload]  # mode is a valid literal


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
    kh, kw = geometry.kernel_hw
    for i in range(kh):
        rows = padded[geometry.tap_rows(i)]
        for j in range(kw):
            yield i, j, rows[:, geometry.tap_cols(j)]


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
    kh, kw = g.kernel_hw
    rows = np.zeros((g.out_hw[0], plane.shape[1]), dtype=plane.dtype)  # the column pass, on kept rows only
    rows_scratch = np.empty_like(rows)
    for i in range(kh):
        np.multiply(plane[g.tap_rows(i)], column[i], out=rows_scratch)
        rows += rows_scratch
    out[...] = 0
    for j in range(kw):
        np.multiply(rows[:, g.tap_cols(j)], row[j], out=scratch)
        out += scratch


def _fft_plane(
    plane: NDArray[np.floating],
    kernel: NDArray[np.floating],
    g: ConvGeometry,
    out: NDArray[np.floating],
    scratch: NDArray[np.floating],
) -> None:
    from scipy.signal import fftconvolve  # type: ignore[import-untyped]  # scipy ships no stubs

    dilated = spread_kernel(kernel, g.dilation, np.float64)
    full = fftconvolve(plane.astype(np.float64), dilated[::-1, ::-1], mode="valid")
    out[...] = full[g.tap_slices(0, 0)]


_PLANE = {"direct": _direct_plane, "separable": _separable_plane, "fft": _fft_plane}


def _walk_bank(
    padded: NDArray[np.floating], bank: NDArray[np.floating], g: ConvGeometry, groups: int
) -> NDArray[np.floating]:
    """The reference for filters over several channels: per tap, one matrix product over all pixels."""
    n_out, per_group, kh, kw = bank.shape
    ho, wo = g.out_hw
    per_out = n_out // groups
    out = np.zeros((ho, wo, groups, per_out), dtype=padded.dtype)
    taps = np.ascontiguousarray(bank.reshape(groups, per_out, per_group, kh, kw).transpose(3, 4, 0, 2, 1))
    scratch = np.empty_like(out)
    for i, j, view in window_taps(padded, g):
        tap = taps[i, j]  # (groups, C/groups, N/groups)
        if groups == 1:
            np.matmul(view, tap[0], out=scratch[:, :, 0, :])
            out += scratch
        else:
            out += np.einsum("hwgc,gcn->hwgn", view.reshape(ho, wo, groups, per_group), tap)
    return out.reshape(ho, wo, n_out)


def _im2col(
    padded: NDArray[np.floating],
    bank: NDArray[np.floating],
    g: ConvGeometry,
    groups: int,
    bias: NDArray[np.floating] | None = None,
) -> NDArray[np.floating]:
    """Filters over several channels: copy a band of output rows' windows (taps × pixels, cache-sized), then one
    matrix product with the bank per band, then ``bias`` while the band is in the cache. Returns ``(H', W', N)``.

    The input is first split into channel planes, one per column phase of the stride (phase ``p`` holds columns
    ``p, p + sw, …``), so that every tap's row is one contiguous run; planes and windows are this thread's reused
    temporaries (`featmap.core.gemm.workspace`: a resnet18 stem page-faulted ~1,700 times a run on fresh ones)."""
    n_out, per_group, kh, kw = bank.shape
    (sh, sw), (dh, dw) = g.stride, g.dilation
    ho, wo = g.out_hw
    per_out, taps = n_out // groups, per_group * kh * kw
    phases = []
    for p in range(min(sw, padded.shape[1])):
        columns = padded[:, p::sw]
        phase = gemm.workspace(f"im2col-plane{p}", (columns.shape[2], columns.shape[0], columns.shape[1]), padded.dtype)
        phase[...] = columns.transpose(2, 0, 1)
        phases.append(phase)
    result = gemm.result_array((ho * wo, n_out), padded.dtype)
    pixels = min(_BAND_PIXELS, _BAND_BYTES // (taps * padded.dtype.itemsize))
    band = max(1, min(ho, pixels // wo))
    windows = gemm.workspace("im2col", (taps, band * wo), padded.dtype)
    epilogue = gemm.take_epilogue() if groups == 1 else None
    for group in range(groups):
        weights = bank[group * per_out : (group + 1) * per_out].reshape(per_out, taps).T
        for r0 in range(0, ho, band):
            rows = min(band, ho - r0)
            t = 0
            for c in range(group * per_group, (group + 1) * per_group):
                for i in range(kh):
                    source_rows = strided_slice(r0 * sh + i * dh, rows, sh)
                    tap_rows = windows[t : t + kw, : rows * wo].reshape(kw, rows, wo)
                    for j in range(kw):  # tap (i, j): column j·dw + o·sw is column (j·dw)//sw + o of a phase
                        phase, first = phases[j * dw % sw], j * dw // sw
                        tap_rows[j] = phase[c, source_rows, first : first + wo]
                    t += kw
            target = result[r0 * wo : (r0 + rows) * wo, group * per_out : (group + 1) * per_out]
            np.matmul(windows[:, : rows * wo].T, weights, out=target)
            if bias is not None:  # while the band is in the cache
                target += bias[group * per_out : (group + 1) * per_out]
            if epilogue is not None:
                epilogue(target)
    return result.reshape(ho, wo, n_out)


def _shared_kernel(bank: NDArray[np.floating], channels: int) -> bool:
    """True for one 2-D kernel on every channel of a small image (depthwise): one OpenCV call does all."""
    return 1 < bank.shape[0] == channels <= cvfilter.MAX_CHANNELS and bool(np.all(bank == bank[0]))


def correlate(
    arr: NDArray[np.floating],
    bank: NDArray[np.floating],
    geometry: ConvGeometry,
    groups: int,
    pad_mode: PaddingMode = PaddingMode.ZEROS,
    pad_value: float = 0.0,
    method: str = "auto",
    bias: NDArray[np.floating] | None = None,
) -> NDArray[np.floating]:
    """Cross-correlate ``(H, W, C)``, padded as ``geometry`` and ``pad_mode`` say, with ``(N, C/groups, kh, kw)``,
    then add ``bias`` (``(N,)``, one value per filter) if given.

    Returns ``(H', W', N)``, possibly a view (per-channel filters store each map contiguously). ``method``
    forces a strategy (table above): ``opencv``, ``direct``, ``separable`` and ``fft`` for filters that
    read one channel, ``im2col`` (any bank) or ``direct`` for filters over several channels. The channel-last
    kernels (`featmap.core.gemm`) add the bias band by band, while it is in the cache.
    """
    if bias is not None:
        bias = np.asarray(bias, dtype=arr.dtype)
    out, biased = _correlate(arr, bank, geometry, groups, pad_mode, pad_value, method, bias)
    if bias is not None and not biased:
        out += bias  # the engine's output is fresh: no second full-size array
    return out


def _correlate(
    arr: NDArray[np.floating],
    bank: NDArray[np.floating],
    geometry: ConvGeometry,
    groups: int,
    pad_mode: PaddingMode,
    pad_value: float,
    method: str,
    bias: NDArray[np.floating] | None,
) -> tuple[NDArray[np.floating], bool]:
    """`correlate`'s output, and whether the strategy that made it added ``bias`` already."""
    if method not in METHODS:
        raise SpecError("`method`", f"unknown method {method!r}", f"use one of: {', '.join(METHODS)}")
    if method == "opencv" and cvfilter.opencv() is None:
        raise SpecError(
            "`method`", "opencv was asked for but cv2 does not import", "pip install opencv-python-headless"
        )
    check_padding((arr.shape[0], arr.shape[1]), geometry.padding, pad_mode)
    n_out, per_group, kh, kw = bank.shape
    channels = arr.shape[2]
    if method == "auto" and channels >= _HWC_MIN_CHANNELS:  # a network's inner layer, channel-last (core.gemm)
        if per_group == 1 and groups == channels:
            if pad_mode is PaddingMode.ZEROS and pad_value == 0:  # zeros that gemm.depthwise need not read
                return gemm.depthwise(arr, bank, geometry, bias), True
            padded = pad_input(arr, geometry.padding, pad_mode, pad_value)
            return gemm.depthwise(padded, bank, geometry, bias, padded=True), True
        if groups == 1 and kh == kw == 1 and not any(geometry.padding):
            return gemm.pointwise(arr, bank, bias, stride=geometry.stride), True
    bank_of_planes = method == "auto" and groups == 1 and n_out >= max(_IM2COL_MIN_FILTERS, kh * kw)
    if per_group > 1 or method == "im2col" or bank_of_planes:
        if per_group >= _HWC_MIN_CHANNELS and method != "direct" and pad_mode is PaddingMode.ZEROS:
            if method == "auto" and kernelrows.kernel_rows_fit(arr, geometry, groups):  # a final-output run's
                summed = kernelrows.kernel_row_conv(arr, bank, geometry, bias, pad_value)
                if summed is not None:
                    return summed, True
            padded = gemm.constant_padded(arr, geometry.padding, pad_value)  # a reused temporary
            return gemm.im2col_hwc(padded, bank, geometry, groups, bias), True
        if method == "auto" and pad_mode is PaddingMode.ZEROS and kernelrows.kernel_rows_fit(arr, geometry, groups):
            summed = kernelrows.kernel_row_conv(arr, bank, geometry, bias, pad_value)  # a final-output run's stem
            if summed is not None:
                return summed, True
        padded = pad_input(arr, geometry.padding, pad_mode, pad_value)
        if method == "direct":
            return _walk_bank(padded, bank, geometry, groups), False
        if per_group >= _HWC_MIN_CHANNELS:
            return gemm.im2col_hwc(padded, bank, geometry, groups, bias), True
        return _im2col(padded, bank, geometry, groups, bias), True
    use_opencv = method in ("auto", "opencv") and cvfilter.opencv() is not None
    if use_opencv and (channels == n_out == 1 or _shared_kernel(bank, channels)):
        source = arr[:, :, 0] if channels == 1 else arr
        out = cvfilter.correlate(source, bank[0, 0], geometry, pad_mode, pad_value)
        return out.reshape(out.shape[0], out.shape[1], n_out), False
    ho, wo = geometry.out_hw
    per_out = n_out // groups
    result = np.empty((n_out, ho, wo), dtype=arr.dtype)
    padded = arr if use_opencv else pad_input(arr, geometry.padding, pad_mode, pad_value)
    scratch = result[0] if use_opencv else np.empty((ho, wo), dtype=arr.dtype)  # the numpy strategies' temporary
    channel, plane = -1, padded[:, :, 0]
    for n in range(n_out):
        if n // per_out != channel:  # one contiguous channel at a time in memory
            channel = n // per_out
            plane = np.ascontiguousarray(padded[:, :, channel])
        kernel = bank[n, 0]
        if use_opencv:
            written = cvfilter.correlate(plane, kernel, geometry, pad_mode, pad_value, out=result[n])
            if not np.may_share_memory(written, result):  # OpenCV could not write in place
                result[n] = written
            continue
        how = _pick(kernel, geometry) if method == "auto" else method
        if how == "separable" and rank1_factors(kernel) is None:
            how = "direct"
        _PLANE[how](plane, kernel, geometry, result[n], scratch)
    return result.transpose(1, 2, 0), False
