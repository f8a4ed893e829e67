"""A numpy reference forward pass of featmap's ``lenet5`` preset, independent of featmap's own code.

Used by ``tools/train_lenet5_digits.py`` to check that the saved weights reproduce torch's logits, and by
``tests/test_lenet5_digits.py`` to check the shipped weights, data and samples. Convolutions are
cross-correlations computed with ``numpy.lib.stride_tricks.sliding_window_view`` + ``einsum`` in float64
(a different route from featmap's engines and from torch's).

Layout: images ``(N, H, W, C)``; weights as in ``featmap/net/models/lenet5-digits.npz`` (PyTorch layout,
``C1.weight`` is ``(6, 1, 5, 5)``). Layer keys follow featmap's weights convention (the layer's name, or
its 0-based index in the list when unnamed), so ``outputs["1"]`` is the tanh after C1.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import NDArray

#: featmap's lenet5 preset, layer by layer: (key, kind). Keys follow the weights naming convention.
LAYERS: tuple[tuple[str, str], ...] = (
    ("C1", "conv"),
    ("1", "tanh"),
    ("S2", "avgpool"),
    ("C3", "conv"),
    ("4", "tanh"),
    ("S4", "avgpool"),
    ("C5", "conv"),
    ("7", "tanh"),
    ("8", "flatten"),
    ("F6", "dense"),
    ("10", "tanh"),
    ("output", "dense"),
)

Array = NDArray[np.float64]


def correlate_valid(x: Array, weight: Array, bias: Array) -> Array:
    """Valid cross-correlation of ``x`` (N, H, W, C) with a PyTorch-layout bank (O, C, kh, kw), plus bias."""
    kh, kw = weight.shape[2:]
    windows = sliding_window_view(x, (kh, kw), axis=(1, 2))  # (N, H', W', C, kh, kw)
    return np.einsum("nhwcij,ocij->nhwo", windows, weight, optimize=True) + bias


def avgpool2(x: Array) -> Array:
    """2×2 average pooling, stride 2, of (N, H, W, C) with even H and W."""
    n, h, w, c = x.shape
    return x.reshape(n, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


def forward(weights: Mapping[str, NDArray[np.floating]], images: NDArray[np.floating]) -> dict[str, Array]:
    """Every layer's output for ``images`` (N, 32, 32, 1) in [0, 1], keyed as `LAYERS`; float64."""
    x: Array = np.asarray(images, dtype=np.float64)
    outputs: dict[str, Array] = {}
    for key, kind in LAYERS:
        if kind == "conv":
            x = correlate_valid(x, np.float64(weights[f"{key}.weight"]), np.float64(weights[f"{key}.bias"]))
        elif kind == "dense":
            x = x @ np.float64(weights[f"{key}.weight"]).T + np.float64(weights[f"{key}.bias"])
        elif kind == "tanh":
            x = np.tanh(x)
        elif kind == "avgpool":
            x = avgpool2(x)
        elif kind == "flatten":
            x = x.reshape(x.shape[0], -1)  # row-major over (H, W, C), featmap's order
        outputs[key] = x
    return outputs
