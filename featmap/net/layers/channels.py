"""Layers of today's architectures that work along the channels: `LayerNorm` (ConvNeXt), `LayerScale`,
`Softmax`, a channel `Split` (ShuffleNet's chunk), `ChannelShuffle`, and `DropPath` (stochastic depth, nothing
at inference). Each states its plan and its forward pass; none counts MACs (the convention counts conv and
dense weights only).

In featmap's layout the channels are the last axis, so a layer norm "over the channels" (ConvNeXt's
``LayerNorm2d`` on ``N×C×H×W``) and one "over the last axis" (``nn.LayerNorm`` on ``N×H×W×C`` or on features)
are the same layer.

Examples
--------
>>> import numpy as np
>>> x = np.arange(12, dtype=np.float32).reshape(1, 2, 6)
>>> layer = ChannelShuffle(2)
>>> layer.forward(x, layer.plan(x.shape), {})[0, 0].tolist()
[0.0, 3.0, 1.0, 4.0, 2.0, 5.0]
>>> part = Split(chunks=2, index=1)
>>> part.plan((4, 4, 6)).out_shape
(4, 4, 3)
"""

from __future__ import annotations

import numpy as np

from featmap.errors import ShapeError, SpecError
from featmap.frozen import frozen_dataclass
from featmap.net.layers.base import DEFAULT_CONTEXT, Array, LayerPlan, RunContext, Shape, Weights, fmt_int
from featmap.net.layers.conv import positive

__all__ = ["ChannelShuffle", "DropPath", "LayerNorm", "LayerScale", "Softmax", "Split"]


def _eps(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise SpecError("`eps`", f"must be a number in [0, 1); got {value!r}")
    return float(value)


@frozen_dataclass
class LayerNorm:
    """Layer normalisation over the channels (the last axis): ``(x - mean) / sqrt(var + eps) · weight + bias``
    at every position, with the biased variance as PyTorch; 2C trainable parameters.

    ``eps`` is PyTorch's default 1e-5; ConvNeXt uses 1e-6.
    """

    eps: float = 1e-5
    name: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "eps", _eps(self.eps))

    def plan(self, in_shape: Shape, batch: int = 1) -> LayerPlan:
        """The same shape; a scale and a shift per channel."""
        channels = in_shape[-1]
        return LayerPlan(
            "LayerNorm",
            self.name or "layernorm",
            in_shape,
            in_shape,
            params=2 * channels,
            weights=(("weight", (channels,)), ("bias", (channels,))),
            detail=f"eps={self.eps:g}",
            explain=(f"params: 2·{channels} (scale, shift over the {channels} channels at each position)",),
        )

    def forward(self, x: Array, plan: LayerPlan, weights: Weights, context: RunContext = DEFAULT_CONTEXT) -> Array:
        """Normalise each position's channel vector, then scale and shift (statistics in float64), a band of
        positions at a time so that the float64 temporaries stay in the cache (each position's arithmetic is the
        same whatever the band)."""
        channels = x.shape[-1]
        flat = np.asarray(x).reshape(-1, channels)
        out = np.empty(flat.shape, dtype=x.dtype)
        scale = np.asarray(weights["weight"], np.float64)
        shift = np.asarray(weights["bias"], np.float64)
        band = max(1, _LAYERNORM_BAND_VALUES // max(1, channels))
        for start in range(0, flat.shape[0], band):
            rows = slice(start, start + band)
            wide = flat[rows].astype(np.float64)
            mean = wide.mean(axis=-1, keepdims=True)
            centred = np.subtract(wide, mean, out=wide)
            var = np.mean(centred * centred, axis=-1, keepdims=True)
            centred /= np.sqrt(var + self.eps)
            centred *= scale
            centred += shift
            out[rows] = centred
        return out.reshape(x.shape)


# Values per LayerNorm band: its float64 temporaries (~3 of them) stay in the L2 cache.
_LAYERNORM_BAND_VALUES = 1 << 15


@frozen_dataclass
class LayerScale:
    """A learned per-channel scale (ConvNeXt's ``layer_scale``, CaiT's LayerScale): ``x · weight``; C parameters."""

    name: str | None = None

    def plan(self, in_shape: Shape, batch: int = 1) -> LayerPlan:
        """The same shape; one factor per channel."""
        channels = in_shape[-1]
        return LayerPlan(
            "LayerScale",
            self.name or "layerscale",
            in_shape,
            in_shape,
            params=channels,
            weights=(("weight", (channels,)),),
            explain=(f"params: {channels} (one factor per channel)",),
        )

    def forward(self, x: Array, plan: LayerPlan, weights: Weights, context: RunContext = DEFAULT_CONTEXT) -> Array:
        """Multiply each channel by its factor."""
        return x * np.asarray(weights["weight"], dtype=x.dtype).reshape(-1)


@frozen_dataclass
class Softmax:
    """Softmax over the channels (the last axis): ``exp(x - max) / sum(exp(x - max))``; no parameters."""

    name: str | None = None

    def plan(self, in_shape: Shape, batch: int = 1) -> LayerPlan:
        """The same shape."""
        return LayerPlan("Softmax", self.name or "softmax", in_shape, in_shape, detail="over channels")

    def forward(self, x: Array, plan: LayerPlan, weights: Weights, context: RunContext = DEFAULT_CONTEXT) -> Array:
        """Probabilities over the last axis at every position."""
        shifted = np.exp(x - x.max(axis=-1, keepdims=True))
        shifted /= shifted.sum(axis=-1, keepdims=True)
        return shifted


@frozen_dataclass
class Split:
    """One part of the channels: the ``index``-th of ``chunks`` chunks as ``torch.chunk`` cuts them (each
    ``ceil(C / chunks)`` wide, the last one what remains), or of explicit ``sizes`` that add up to C.

    A branch that starts with a split takes its part of its block's input (ShuffleNet: ``chunk:2/0`` and
    ``chunk:2/1`` in two branches merged by ``concat``).
    """

    index: int = 0
    chunks: int | None = None
    sizes: tuple[int, ...] | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        if (self.chunks is None) == (self.sizes is None):
            raise SpecError("`split`", "give either chunks or sizes", "e.g. chunk:2/0 or split:16,48/1")
        if self.chunks is not None:
            positive(self.chunks, "chunks")
        else:
            sizes = tuple(self.sizes or ())
            for size in sizes:
                positive(size, "split size")
            object.__setattr__(self, "sizes", sizes)
        parts = self.chunks if self.chunks is not None else len(self.sizes or ())
        if isinstance(self.index, bool) or not isinstance(self.index, int) or not 0 <= self.index < parts:
            raise SpecError("`index`", f"must be 0 to {parts - 1}; got {self.index!r}")

    def bounds(self, channels: int) -> tuple[int, int]:
        """``(start, stop)`` of the part on ``channels`` input channels, or a `ShapeError`."""
        if self.chunks is not None:
            width = -(-channels // self.chunks)
            parts = [min(width, channels - k * width) for k in range(self.chunks) if k * width < channels]
        else:
            parts = list(self.sizes or ())
            if sum(parts) != channels:
                raise ShapeError(
                    "",
                    f"split sizes {'+'.join(map(str, parts))} = {sum(parts)} but the input has {channels} channels",
                    "make the sizes add up to the channels",
                )
        if self.index >= len(parts):
            raise ShapeError("", f"{channels} channels give only {len(parts)} chunks", "use fewer chunks")
        start = sum(parts[: self.index])
        return start, start + parts[self.index]

    def plan(self, in_shape: Shape, batch: int = 1) -> LayerPlan:
        """The input with only the part's channels."""
        start, stop = self.bounds(in_shape[-1])
        return LayerPlan(
            "Split",
            self.name or "split",
            in_shape,
            (*in_shape[:-1], stop - start),
            detail=f"channels {start}:{stop}",
            explain=(f"channels {start} to {stop - 1} of {in_shape[-1]}",),
        )

    def forward(self, x: Array, plan: LayerPlan, weights: Weights, context: RunContext = DEFAULT_CONTEXT) -> Array:
        """A view of the part's channels."""
        start, stop = self.bounds(x.shape[-1])
        return x[..., start:stop]


@frozen_dataclass
class ChannelShuffle:
    """ShuffleNet's channel shuffle: C channels seen as ``groups × C/groups``, transposed; no parameters.

    Output channel ``j·groups + i`` is input channel ``i·C/groups + j``, as ``torchvision``'s
    ``channel_shuffle``.
    """

    groups: int = 2
    name: str | None = None

    def __post_init__(self) -> None:
        positive(self.groups, "groups")

    def plan(self, in_shape: Shape, batch: int = 1) -> LayerPlan:
        """The same shape; the groups must divide the channels."""
        channels = in_shape[-1]
        if channels % self.groups:
            raise ShapeError(
                "", f"{self.groups} groups do not divide {channels} channels", "change the groups or the channels"
            )
        return LayerPlan(
            "ChannelShuffle",
            self.name or "shuffle",
            in_shape,
            in_shape,
            detail=f"groups={self.groups}",
            explain=(f"{channels} channels as {self.groups}×{fmt_int(channels // self.groups)}, transposed",),
        )

    def forward(self, x: Array, plan: LayerPlan, weights: Weights, context: RunContext = DEFAULT_CONTEXT) -> Array:
        """Reshape, swap the two channel axes, reshape back."""
        lead, channels = x.shape[:-1], x.shape[-1]
        grouped = x.reshape(*lead, self.groups, channels // self.groups)
        return np.ascontiguousarray(np.swapaxes(grouped, -1, -2)).reshape(*lead, channels)


@frozen_dataclass
class DropPath:
    """Stochastic depth (drop-path): drops a whole residual branch at random in training; nothing at inference,
    no parameters."""

    rate: float = 0.0
    name: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.rate, bool) or not isinstance(self.rate, (int, float)) or not 0 <= self.rate < 1:
            raise SpecError("`droppath`", f"rate must be in [0, 1); got {self.rate!r}")

    def plan(self, in_shape: Shape, batch: int = 1) -> LayerPlan:
        """The same shape."""
        return LayerPlan("DropPath", self.name or "droppath", in_shape, in_shape, detail=f"p={self.rate:g}")

    def forward(self, x: Array, plan: LayerPlan, weights: Weights, context: RunContext = DEFAULT_CONTEXT) -> Array:
        """The input unchanged (inference)."""
        return x
