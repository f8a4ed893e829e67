"""Seeded random weights, as PyTorch and Keras initialise a fresh layer."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import numpy as np
from numpy.typing import NDArray

from featmap.errors import ShapeError, SpecError
from featmap.net.weights._common import KINDS, check_size, shape_text, split_key

__all__ = ["init_weights"]


def _stream(seed: int, key: str) -> np.random.Generator:
    """A PCG64 stream of its own per tensor, from the seed and the tensor's name (not its position)."""
    digest = hashlib.sha256(key.encode()).digest()
    words = tuple(int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4))
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=words)))


def _fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """PyTorch's ``_calculate_fan_in_and_fan_out`` on the PyTorch-layout shape (O, I/groups, *kernel)."""
    receptive = int(np.prod(shape[2:], dtype=np.int64))
    return shape[1] * receptive, shape[0] * receptive


def init_weights(
    expected: Mapping[str, tuple[int, ...]],
    kinds: Mapping[str, str],
    method: str = "kaiming",
    seed: int = 0,
) -> dict[str, NDArray[np.float32]]:
    """Seeded random weights as PyTorch (``kaiming``) or Keras (``glorot``) initialise a fresh layer.

    ``expected`` maps tensor names to PyTorch-layout shapes; ``kinds`` maps layer keys (or tensor names)
    to `KINDS`. Fans are PyTorch's ``_calculate_fan_in_and_fan_out`` on (O, I/groups, kh, kw):
    fan_in = I/groups·kh·kw, fan_out = O·kh·kw (dense: in, out), equal to Keras' ``compute_fans`` on
    its (kh, kw, I/groups, O) kernel.

    - ``kaiming``, PyTorch's default for ``Conv1d/Conv2d/Linear``: ``kaiming_uniform_(a=√5)``, i.e. weight
      ~ U(±1/√fan_in), and bias ~ U(±1/√fan_in);
    - ``glorot``, Keras' default: weight ~ U(±√(6 / (fan_in + fan_out))) (``glorot_uniform``), bias 0.
      (A Keras ``DepthwiseConv2D`` with multiplier M > 1 counts (I + M)·kh·kw where this counts
      (1 + I·M)·kh·kw; the two agree for M = 1.)
    - batch norm, both: weight 1, bias 0, running mean 0, running variance 1.

    Each tensor draws from its own ``Generator(PCG64)`` seeded by ``seed`` and its name, so a tensor
    does not change when layers are added before it. Returns float32 arrays in ``expected`` order.
    """
    if method not in ("kaiming", "glorot"):
        raise SpecError("`init`", f"must be kaiming or glorot; got {method!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise SpecError("`seed`", f"must be a whole number >= 0; got {seed!r}")
    out: dict[str, NDArray[np.float32]] = {}
    total = 0
    for key, shape in expected.items():
        layer, suffix = split_key(key)
        shape = tuple(int(n) for n in shape)
        if any(n < 1 for n in shape):
            raise ShapeError(f"tensor `{key}`", f"has shape {shape_text(shape)}; every size must be >= 1")
        total += int(np.prod(shape, dtype=np.int64)) * 4
        check_size("initialisation", key, shape, total)
        kind = kinds.get(key) or kinds.get(layer)
        if kind not in KINDS:
            raise SpecError(f"tensor `{key}`", f"has layer kind {kind!r}", f"give one of {', '.join(KINDS)}")
        if kind == "bn":
            fill = {"weight": 1.0, "bias": 0.0, "running_mean": 0.0, "running_var": 1.0}.get(suffix)
            if fill is None:
                raise SpecError(
                    f"tensor `{key}`", "is not a batch-norm tensor", "use weight, bias, running_mean, running_var"
                )
            out[key] = np.full(shape, fill, dtype=np.float32)
            continue
        weight_shape = shape if suffix == "weight" else expected.get(f"{layer}.weight" if layer else "weight")
        if suffix not in ("weight", "bias") or weight_shape is None or len(weight_shape) < 2:
            raise SpecError(
                f"tensor `{key}`", f"is not a {kind} weight or bias with its weight", "name it KEY.weight / KEY.bias"
            )
        fan_in, fan_out = _fans(tuple(int(n) for n in weight_shape))
        if suffix == "bias" and method == "glorot":
            out[key] = np.zeros(shape, dtype=np.float32)
            continue
        bound = np.sqrt(6.0 / (fan_in + fan_out)) if method == "glorot" else 1.0 / np.sqrt(fan_in)
        out[key] = _stream(int(seed), key).uniform(-bound, bound, size=shape).astype(np.float32)
    return out
