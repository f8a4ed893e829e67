"""Kernel arithmetic shared by the engines: rank-1 factors (separable filters) and dilation by zero-spreading.

Both `featmap.core.engine` (numpy strategies) and `featmap.core.cvfilter` (OpenCV) import this module; it imports
neither, so the two engines no longer import each other.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["rank1_factors", "spread_kernel"]


def rank1_factors(kernel: NDArray[np.floating]) -> tuple[NDArray[np.float64], NDArray[np.float64]] | None:
    """``(column, row)`` with ``outer(column, row) == kernel`` if the kernel has rank 1, else None.

    "Equal" to the kernel's own precision: a float32 Gaussian, rounded element by element, still counts.
    Remembered per kernel (a batch asks for the same few kernels on every image).

    Examples
    --------
    >>> column, row = rank1_factors(np.array([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]))
    >>> column.tolist(), row.tolist()
    ([-1.0, -2.0, -1.0], [1.0, -0.0, -1.0])
    >>> rank1_factors(np.array([[0.0, 1.0], [1.0, 0.0]])) is None
    True
    """
    arr = np.ascontiguousarray(kernel)
    return _rank1_factors(arr.tobytes(), arr.shape, arr.dtype.str)


@lru_cache(maxsize=256)
def _rank1_factors(
    data: bytes, shape: tuple[int, ...], dtype: str
) -> tuple[NDArray[np.float64], NDArray[np.float64]] | None:
    kernel = np.frombuffer(data, dtype=dtype).reshape(shape)
    k64 = kernel.astype(np.float64)
    # The kernel's own precision: a float32 Gaussian's second singular value (~1e-8 of the first) is rounding, but
    # a float64 kernel's 1e-9 is a real second component (dropping it would err by 1e-9 of the input's scale).
    tolerance = 16 * float(np.finfo(kernel.dtype).eps) if kernel.dtype.kind == "f" else 1e-12
    s = np.linalg.svd(k64, compute_uv=False)
    if s[0] == 0 or (len(s) > 1 and s[1] > tolerance * s[0]):
        return None
    # Factor through the largest weight rather than the singular vectors: integer kernels (Sobel, box)
    # then factor exactly, e.g. [1, 2, 1] and [-1, 0, 1].
    p, q = np.unravel_index(np.argmax(np.abs(k64)), k64.shape)
    column, row = k64[:, q].copy(), k64[p, :] / k64[p, q]
    if not np.allclose(np.outer(column, row), k64, rtol=tolerance, atol=tolerance * np.abs(k64).max()):
        return None
    column.setflags(write=False)  # shared by every caller through the cache
    row.setflags(write=False)
    return column, row


def spread_kernel(kernel: NDArray[np.floating], dilation: tuple[int, int], dtype: Any) -> NDArray[np.floating]:
    """The kernel with ``dilation - 1`` zeros between its taps: a dilated correlation as a plain one.

    Examples
    --------
    >>> spread_kernel(np.ones((2, 2)), (1, 2), np.float32).tolist()
    [[1.0, 0.0, 1.0], [1.0, 0.0, 1.0]]
    """
    (kh, kw), (dh, dw) = kernel.shape, dilation
    spread = np.zeros(((kh - 1) * dh + 1, (kw - 1) * dw + 1), dtype=dtype)
    spread[::dh, ::dw] = kernel
    return spread
