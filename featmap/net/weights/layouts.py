"""Layouts and names: Keras tensors to featmap's (PyTorch's) layout and names, flatten order (matching a file to a
network: `featmap.net.weights.matching`)."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from featmap.errors import ShapeError, SpecError
from featmap.net.weights._common import KINDS, shape_text, split_key

__all__ = ["reorder_flatten_columns", "to_torch_layout"]

_KERAS_NAMES = {"running_mean": ("moving_mean",), "running_var": ("moving_variance",)}


def to_torch_layout(array: NDArray[Any], kind: str, layout: str = "keras") -> NDArray[Any]:
    """One tensor of a ``kind`` layer from ``layout`` to featmap's (PyTorch's) layout.

    Keras → PyTorch: conv (kh, kw, I, O) → (O, I, kh, kw); depthwise (kh, kw, I, M) → (I·M, 1, kh, kw)
    (output channel i·M + m, as both libraries order them); conv1d (k, I, O) → (O, I, k); dense
    (in, out) → (out, in); 1-D tensors (biases, batch norm) unchanged. ``layout="torch"`` returns it as is.

    Examples
    --------
    >>> to_torch_layout(np.arange(6).reshape(2, 3), "dense", "keras").tolist()
    [[0, 3], [1, 4], [2, 5]]
    """
    if layout not in ("torch", "keras"):
        raise SpecError("`layout`", f"must be torch or keras; got {layout!r}")
    if kind not in KINDS:
        raise SpecError("`kind`", f"must be one of {', '.join(KINDS)}; got {kind!r}")
    a = np.asarray(array)
    if layout == "torch" or a.ndim <= 1:
        return a
    want = {"conv": 4, "depthwise": 4, "conv1d": 3, "dense": 2}.get(kind)
    if a.ndim != want:
        raise ShapeError(f"{kind} weight", f"has shape {shape_text(a.shape)}; a Keras {kind} weight is {want}-D")
    if kind == "depthwise":
        kh, kw, c, m = a.shape
        return np.ascontiguousarray(a.reshape(kh, kw, c * m).transpose(2, 0, 1)[:, None])
    return np.ascontiguousarray(a.transpose(*range(a.ndim - 1, -1, -1)) if kind != "conv" else a.transpose(3, 2, 0, 1))


def reorder_flatten_columns(weight: NDArray[Any], hwc: tuple[int, int, int]) -> NDArray[Any]:
    """A PyTorch dense weight (out, C·H·W) that follows ``flatten`` of an H×W×C map → featmap's (H, W, C) order.

    Examples
    --------
    >>> reorder_flatten_columns(np.arange(4).reshape(1, 4), (1, 2, 2)).tolist()  # columns c0w0 c0w1 c1w0 c1w1
    [[0, 2, 1, 3]]
    """
    h, w, c = hwc
    a = np.asarray(weight)
    if a.ndim != 2 or a.shape[1] != h * w * c:
        raise ShapeError(
            "dense weight", f"has shape {shape_text(a.shape)}; expected (out, {h * w * c}) for {h}×{w}×{c}"
        )
    return np.ascontiguousarray(a.reshape(a.shape[0], c, h, w).transpose(0, 2, 3, 1).reshape(a.shape[0], -1))


def _file_names(key: str, ndim: int, kind: str | None, is_bn: bool) -> list[str]:
    """Names a tensor may have in a Keras-layout file, most specific first (its PyTorch name last)."""
    layer, suffix = split_key(key)
    if suffix == "weight":
        keras = ["gamma"] if ndim == 1 else ["depthwise_kernel", "kernel"] if kind == "depthwise" else ["kernel"]
    elif suffix == "bias":
        keras = ["beta"] if is_bn else ["bias"]
    else:
        keras = list(_KERAS_NAMES.get(suffix, ()))
    return [f"{layer}.{n}" if layer else n for n in keras] + [key]
