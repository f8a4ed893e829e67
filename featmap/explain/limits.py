"""The explain limits and the one check every input and kernel passes (pure numpy)."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from featmap.errors import ShapeError, SpecError

__all__ = ["MAX_CHANNELS", "MAX_SIDE", "Matrix", "check_matrix"]

#: Largest input (and kernel) side `explain` takes: a step-by-step view of more is unreadable.
MAX_SIDE = 64
#: Most input channels `explain` takes (an RGB crop is 3).
MAX_CHANNELS = 4

Matrix = NDArray[np.floating]


def check_matrix(values: ArrayLike, what: str) -> Matrix:
    """Return ``values`` as a finite float64 ``(H, W, C)`` array within the explain limits.

    A 2-D matrix is one channel; a 3-D one is ``(H, W, C)``.

    Examples
    --------
    >>> check_matrix([[1, 2], [3, 4]], "input").shape
    (2, 2, 1)
    """
    arr = np.asarray(values)
    if arr.dtype.kind not in "biuf":
        raise SpecError(what, f"must hold numbers; got {arr.dtype}", "give a numeric matrix")
    if arr.ndim == 2:
        arr = arr[:, :, np.newaxis]
    if arr.ndim != 3:
        raise ShapeError(what, f"must be a matrix (H, W) or (H, W, C); got shape {arr.shape}")
    if min(arr.shape) == 0:
        raise ShapeError(what, f"is empty (shape {arr.shape})", "give at least one number")
    if max(arr.shape[:2]) > MAX_SIDE or arr.shape[2] > MAX_CHANNELS:
        raise ShapeError(
            what,
            f"is {arr.shape[0]}×{arr.shape[1]}×{arr.shape[2]}, over explain's limit of "
            f"{MAX_SIDE}×{MAX_SIDE}×{MAX_CHANNELS}",
            "explain a smaller matrix or crop (featmap apply runs whole images)",
        )
    out = arr.astype(np.float64)
    if not np.all(np.isfinite(out)):
        raise SpecError(what, "holds NaN or infinity", "give finite numbers")
    return out
