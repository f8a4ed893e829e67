"""Batch normalisation in inference form as arithmetic on weights: its per-channel affine (`bn_affine`), and the
same affine folded into the convolution before it (`fold_into_conv`), so that a run that does not look at the
convolution's own output (``featmap.forward(..., outputs="final")``) does one layer's work instead of two.

The fold is exact in real arithmetic: ``bn(conv(x)) = conv'(x)`` with ``W' = W · s`` and ``b' = b · s + t``
per output channel, ``s = γ / √(var + ε)`` and ``t = β − mean · s``. In float32 the two differ by rounding
(a product rounded once instead of twice), well within 1e-5 of the output's scale. The scale and shift are
worked out in float64; each folded weight is one product in the convolution's dtype.

Examples
--------
>>> import numpy as np
>>> bn = {"weight": np.array([2.0]), "bias": np.array([1.0]), "running_mean": np.array([3.0]),
...       "running_var": np.array([4.0 - 1e-5])}
>>> scale, shift = bn_affine(bn, 1e-5)
>>> scale.tolist(), shift.tolist()
([1.0], [-2.0])
>>> folded = fold_into_conv({"weight": np.ones((1, 1, 1, 1), np.float32)}, bn, 1e-5)
>>> float(folded["weight"][0, 0, 0, 0]), float(folded["bias"][0])
(1.0, -2.0)
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from numpy.typing import NDArray

from featmap.core.memo import freeze

__all__ = ["bn_affine", "fold_into_conv"]

Array = NDArray[np.floating]


def bn_affine(bn: Mapping[str, Array], eps: float) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """``(scale, shift)`` per channel of batch norm's inference form, in float64: ``y = x · scale + shift``."""
    scale = np.asarray(bn["weight"], np.float64) / np.sqrt(np.asarray(bn["running_var"], np.float64) + eps)
    shift = np.asarray(bn["bias"], np.float64) - np.asarray(bn["running_mean"], np.float64) * scale
    return scale, shift


def fold_into_conv(conv: Mapping[str, Array], bn: Mapping[str, Array], eps: float) -> dict[str, Array]:
    """The convolution's ``weight`` (``(N, C/groups, kh, kw)``, or a 1-D conv's ``(N, C/groups, k)``) and ``bias``
    with the batch norm after it folded in; a convolution without a bias gets one."""
    weight = np.asarray(conv["weight"])
    dtype = weight.dtype if weight.dtype.kind == "f" else np.dtype(np.float32)
    scale, shift = bn_affine(bn, eps)
    bias = conv.get("bias")
    with np.errstate(over="ignore", invalid="ignore"):  # damaged statistics: the run's finite check says where
        # one correctly rounded float32 product per weight (no float64 copy of a large bank)
        folded = weight.astype(dtype, copy=False) * scale.astype(dtype).reshape(-1, *([1] * (weight.ndim - 1)))
        offset = shift if bias is None else np.asarray(bias, np.float64) * scale + shift
    # read-only: the run remembers values made from these (`featmap.core.memo`) and need not re-read them
    return {"weight": freeze(folded), "bias": freeze(offset.astype(dtype))}
