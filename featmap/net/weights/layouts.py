"""Layouts and names: Keras tensors to featmap's (PyTorch's) layout, flatten order, matching a file to a network."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from featmap.errors import ShapeError, SpecError
from featmap.net.weights._common import KINDS, Weights, shape_text, split_key

__all__ = ["match_weights", "reorder_flatten_columns", "to_torch_layout"]

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


def match_weights(
    expected: Mapping[str, tuple[int, ...]],
    found: Mapping[str, NDArray[Any]],
    *,
    layout: str = "torch",
    kinds: Mapping[str, str] | None = None,
    source: str = "weights",
) -> tuple[Weights, list[str]]:
    """The tensors a network needs, in ``expected`` order and PyTorch layout, and warnings.

    ``expected`` maps tensor names (the convention above) to PyTorch-layout shapes; ``found`` is what
    `load_weights` read from ``source``. With ``layout="keras"`` the Keras names and layouts are looked
    up and converted (``kinds`` maps layer keys to `KINDS`; the rank decides when it is absent).

    Raises `SpecError` for a missing tensor and `ShapeError` for a mis-shaped one, naming the layer, the
    expected and the found shape. The warnings name tensors the network does not use.

    Examples
    --------
    >>> w, warn = match_weights({"0.weight": (2, 3)}, {"0.weight": np.ones((2, 3)), "9.bias": np.ones(2)})
    >>> w["0.weight"].shape, warn
    ((2, 3), ['weights: 1 tensor not used by the network: 9.bias'])
    """
    kinds = kinds or {}
    if layout not in ("torch", "keras"):
        raise SpecError("`layout`", f"must be torch or keras; got {layout!r}")
    bn_layers = {split_key(k)[0] for k in expected if split_key(k)[1] == "running_mean"}
    out: Weights = {}
    used: set[str] = set()
    for key, shape in expected.items():
        layer, _ = split_key(key)
        kind = kinds.get(layer) or (
            "bn" if layer in bn_layers else {4: "conv", 3: "conv1d", 2: "dense"}.get(len(shape))
        )
        names = _file_names(key, len(shape), kind, layer in bn_layers) if layout == "keras" else [key]
        name = next((n for n in names if n in found), None)
        if name is None:
            near = [n for n in found if n.startswith(f"{layer}.")] or list(found)[:4]
            raise SpecError(
                f"{source}: layer `{layer or key}`",
                f"has no tensor `{names[0]}` (expected shape {shape_text(tuple(shape))})",
                f"the file has {', '.join(near) or 'no tensors'}; see README, 'weights files'",
            )
        array = np.asarray(found[name])
        converted = (
            to_torch_layout(array, kind, "keras")
            if layout == "keras" and kind and kind != "bn" and array.ndim == len(shape)
            else array
        )
        if converted.shape != tuple(shape):
            fix = "the weights are for another network; compare `featmap shape` with the one they came from"
            if (
                layout == "torch"
                and kind in ("conv", "dense", "conv1d")
                and array.ndim == len(shape)
                and to_torch_layout(array, kind, "keras").shape == tuple(shape)
            ):
                fix = "they look like Keras layout; declare the Keras layout"
            raise ShapeError(
                f"{source}: layer `{layer or key}`",
                f"tensor `{name}` has shape {shape_text(array.shape)}; expected {shape_text(tuple(shape))}"
                + (" (PyTorch layout)" if layout == "keras" else ""),
                fix,
            )
        out[key] = converted
        used.add(name)
    extra = [n for n in found if n not in used and not n.endswith("num_batches_tracked")]
    warnings = []
    if extra:
        shown = ", ".join(extra[:8]) + (f", … ({len(extra) - 8} more)" if len(extra) > 8 else "")
        warnings.append(
            f"{source}: {len(extra)} tensor{'s' if len(extra) > 1 else ''} not used by the network: {shown}"
        )
    return out, warnings
