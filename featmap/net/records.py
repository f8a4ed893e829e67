"""The records a run makes and the writers read: one map's facts and values, one layer's output.

The executor (`featmap.run.executor`) and the kernel-bank pipeline (`featmap.run.pipeline`) produce them; the
writers (`featmap.io.writers`) and the renderers consume them. Facts and arrays only: no files, no printing.

The HTML report reads one `LayerRecord` per layer, whatever ran it: a network layer, or a kernel's map (a
one-layer network's channel) on the kernel page.

One map is what a writer takes (`Map`: its ``values`` and its facts, `MapFacts`: name, shape, parameters,
statistics), whatever made it: a kernel's map (`FeatureMap` with `MapInfo`) and one channel of a network layer's
output (`ChannelMap` with `ChannelInfo`) are both one. `LayerMaps` is the unit a run hands the writers: one layer
output's maps, with the layer's whole output when a network made it (for the writers that take a layer's stack).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import field
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from featmap.core.geometry import ConvGeometry
from featmap.frozen import frozen_dataclass
from featmap.net.layers import LayerPlan
from featmap.net.plan import PlanNode

__all__ = [
    "BandedFeatureMap",
    "ChannelInfo",
    "ChannelMap",
    "FeatureMap",
    "FeatureMaps",
    "LayerMaps",
    "LayerOutput",
    "LayerRecord",
    "Map",
    "MapBands",
    "MapFacts",
    "MapInfo",
    "MapStats",
    "StatsAccumulator",
]

Shape3 = tuple[int, int, int]
Array = NDArray[np.floating]


# Values per block of `MapStats.of`: a float64 copy of 256K values stays in the cache (measured on a 224×224×64
# map: 8.0 ms with row bands of 1M values, 4.7 ms with this).
_STATS_BLOCK = 1 << 18


@frozen_dataclass
class MapStats:
    """Summary statistics of one final map."""

    min: float
    max: float
    mean: float
    std: float

    @classmethod
    def of(cls, values: NDArray[np.floating]) -> MapStats:
        """Compute the statistics of ``values`` in float64 in one pass of cache-sized blocks (``np.std`` would
        make two float64 copies of the whole map): each block is shifted by the first block's mean, so the
        variance keeps float64's precision even when the mean is far larger than the spread. A NaN shows in
        ``min``/``max``, an infinity there too: a caller checks those for a finite map. `StatsAccumulator` gives
        the same statistics, bit for bit, for a map handed over a band at a time."""
        flat = values.reshape(-1)
        accumulator = StatsAccumulator(flat.size, flat.dtype)
        accumulator.add(flat)
        return accumulator.result()


class StatsAccumulator:
    """`MapStats.of` of a map of ``size`` values given a run of them at a time, in C order (the bands of a map too
    large to hold), to the bit.

    `MapStats.of` reads its values in blocks of `_STATS_BLOCK` (the last one shorter): per block its min and max,
    the sum and the sum of squares of its float64 values less the first block's mean. The same blocks are read here
    whatever runs the values come in: a run's whole blocks straight from it, the values of a block it leaves
    unfinished kept (in the map's dtype) until the next runs fill it, so each block's arithmetic sees the same
    values in the same order. Holds two blocks (3 MB for float32), whatever the map's size.

    Examples
    --------
    >>> values = np.arange(10, dtype=np.float32)
    >>> accumulator = StatsAccumulator(values.size, values.dtype)
    >>> for band in (values[:3], values[3:]):
    ...     accumulator.add(band)
    >>> accumulator.result() == MapStats.of(values)
    True
    """

    def __init__(self, size: int, dtype: np.dtype[Any]) -> None:
        self._size = size
        self._block = min(_STATS_BLOCK, size)
        self._dtype = dtype
        self._waiting: NDArray[np.floating] | None = None  # an unfinished block's values (made when one is left)
        self._count = 0  # values waiting
        self._given = 0
        self._part = np.empty(self._block, dtype=np.float64)  # made per map: a kept one would sit beside later maps
        self._shift: float | None = None
        self._total = self._squares = 0.0
        self._low: Any = None
        self._high: Any = None

    def add(self, values: NDArray[np.floating]) -> None:
        """The map's next values (any shape: read in C order)."""
        flat = values.reshape(-1)
        if self._given + flat.size > self._size:
            raise ValueError(f"the map has {self._size} values; got {self._given + flat.size}")
        self._given += flat.size
        at = 0
        if self._count:  # finish the waiting block first
            assert self._waiting is not None
            at = min(self._block - self._count, flat.size)
            self._waiting[self._count : self._count + at] = flat[:at]
            self._count += at
            if self._count < self._block:
                return
            self._take(self._waiting)
            self._count = 0
        while flat.size - at >= self._block:
            self._take(flat[at : at + self._block])
            at += self._block
        self._count = flat.size - at
        if self._count:
            if self._waiting is None:
                self._waiting = np.empty(self._block, dtype=self._dtype)
            self._waiting[: self._count] = flat[at:]

    def _take(self, block: NDArray[np.floating]) -> None:
        """One block's share (the first one sets the shift), as `MapStats.of` always computed it: a float32 block is
        converted to float64 once (exact), its mean taken from that copy (`_buffered_sum`), the same digits."""
        part = self._part[: block.size]
        with np.errstate(invalid="ignore", over="ignore"):
            if block.dtype == np.float32 and block.flags.c_contiguous:
                np.copyto(part, block)
                if self._shift is None:
                    self._shift = _buffered_sum(part) / block.size
                np.subtract(part, self._shift, out=part)
            else:
                if self._shift is None:
                    self._shift = float(block.mean(dtype=np.float64))
                np.subtract(block, self._shift, out=part, dtype=np.float64)  # exact cast, one rounding
            self._total += float(part.sum())
            self._squares += float(np.einsum("i,i->", part, part))  # no BLAS: its threads would spin
            low, high = np.minimum.reduce(block), np.maximum.reduce(block)
            self._low = low if self._low is None else np.minimum(self._low, low)
            self._high = high if self._high is None else np.maximum(self._high, high)

    def result(self) -> MapStats:
        """The statistics, once all ``size`` values have been added."""
        if self._given != self._size or self._size == 0:
            raise ValueError(f"the map has {self._size} values; {self._given} were given")
        if self._count:
            assert self._waiting is not None
            self._take(self._waiting[: self._count])
            self._count = 0
        assert self._shift is not None
        with np.errstate(invalid="ignore", over="ignore"):
            mean = self._total / self._size
            variance = max(self._squares / self._size - mean * mean, 0.0)
        return MapStats(float(self._low), float(self._high), self._shift + mean, float(np.sqrt(variance)))


def _buffered_sum(values: NDArray[np.float64]) -> float:
    """``add.reduce(float32 values, dtype=float64)`` from their float64 copy ``values``, to the bit: numpy converts
    a buffer of `numpy.getbufsize` values at a time, sums each pairwise and adds the sums in order."""
    size = np.getbufsize()
    whole = values.size // size * size
    total = 0.0
    for part in values[:whole].reshape(-1, size).sum(axis=1).tolist():
        total += part
    if whole < values.size:
        total += float(values[whole:].sum())
    return total


@frozen_dataclass
class MapInfo:
    """The facts about one map: how it was made, its shapes and statistics (no pixel data).

    Attributes
    ----------
    name : str
        The kernel's name, or ``magnitude`` / ``max`` for a combined map.
    kernel_size : (kh, kw)
    geometry : ConvGeometry
        Padding per side, output size and rows/cols dropped by the stride.
    conv_shape : (H, W, C)
        Shape after the convolution.
    shape : (H, W, C)
        Shape of the final map (after pooling, if any).
    pooled : bool
        Whether pooling was applied.
    params : int
        Weights plus biases of the filter, counted as a conv layer would (0 for a combined map).
    stats : MapStats
        Of the final map.
    combined_from : tuple of str
        The maps a combined map was made from; empty for a kernel's own map.
    """

    name: str
    kernel_size: tuple[int, int]
    geometry: ConvGeometry
    conv_shape: Shape3
    shape: Shape3
    pooled: bool
    params: int
    stats: MapStats
    combined_from: tuple[str, ...] = ()


@frozen_dataclass
class FeatureMap:
    """One final map, float32 ``(H, W, C)``, with its `MapInfo`."""

    values: NDArray[np.floating]
    info: MapInfo


class MapBands(Protocol):
    """A final map too large to keep, made again a band of rows at a time each time its values are read (the fused
    band path's second pass: `featmap.run.fused.FusedBands`)."""

    @property
    def shape(self) -> Shape3:
        """The map's ``(H, W, C)``."""
        ...

    @property
    def dtype(self) -> np.dtype[Any]:
        """Its values' dtype."""
        ...

    def bands(self) -> Iterator[Array]:
        """The map's rows in order, a band at a time, each valid until the next one is asked for."""
        ...


@frozen_dataclass
class BandedFeatureMap:
    """One kernel's final map as its bands (`MapBands`), with its `MapInfo` (statistics from a first pass over the
    bands, `StatsAccumulator`): what the PNG writer quantises into its file a band at a time, so the map is never
    held. `values` makes the whole map (a pass more) for a reader that needs it."""

    bands: MapBands
    info: MapInfo

    @property
    def values(self) -> Array:
        """The whole map, made band by band into a new array."""
        out = np.empty(self.bands.shape, dtype=self.bands.dtype)
        done = 0
        for band in self.bands.bands():
            out[done : done + band.shape[0]] = band
            done += band.shape[0]
        return out


@frozen_dataclass
class FeatureMaps:
    """Every map of one run, the input shape and the warnings the geometry raised."""

    input_shape: Shape3
    maps: tuple[FeatureMap, ...]
    warnings: tuple[str, ...] = ()


@frozen_dataclass
class LayerOutput:
    """One layer's output (a leaf layer, or a merge of branches) with its plan node and statistics."""

    node: PlanNode
    values: Array
    stats: MapStats


class MapFacts(Protocol):
    """What every writer may read about a map, whatever made it (`MapInfo`, `ChannelInfo`)."""

    @property
    def name(self) -> str:
        """The map's key among an image's targets (a kernel's name, ``03-C3/007`` for a network channel)."""
        ...

    @property
    def shape(self) -> tuple[int, ...]:
        """The map's ``(H, W, C)``."""
        ...

    @property
    def params(self) -> int:
        """The weights and biases that made it."""
        ...

    @property
    def stats(self) -> MapStats:
        """Statistics of what the map belongs to (the kernel's map; the network layer's whole output)."""
        ...


class Map(Protocol):
    """One map as the writers take it: float ``(H, W, C)`` values and their facts."""

    @property
    def values(self) -> NDArray[np.floating]:
        """The float map, ``(H, W, C)``."""
        ...

    @property
    def info(self) -> MapFacts:
        """Its facts."""
        ...


@frozen_dataclass
class ChannelInfo:
    """The facts of one channel of a network layer's output drawn as a map.

    Attributes
    ----------
    name : str
        ``{folder}/{channel:03d}`` (``03-C3/007``), the map's key among the image's targets.
    layer : str
        The layer's path in the plan (``features.0``).
    channel : int
    shape : (H, W, 1)
        The plane's shape (a flat output is a one-row strip ``(1, N, 1)``).
    params : int
        The layer's parameters.
    stats : MapStats
        Of the layer's whole output.
    """

    name: str
    layer: str
    channel: int
    shape: Shape3
    params: int
    stats: MapStats


@frozen_dataclass
class ChannelMap:
    """One channel of a network layer's output, ``(H, W, 1)``, with its `ChannelInfo`."""

    values: NDArray[np.floating]
    info: ChannelInfo


@frozen_dataclass
class LayerMaps:
    """One layer output as the writers take it: its maps in order, and the layer's whole output (a network layer;
    None for a kernel's map, which is a layer of its own). ``folder`` names the layer (its maps' folder or the
    kernel's name); ``stack`` is the key of the layer's whole-stack file among the targets a run hands the writers
    (``03-C3/all``), or None."""

    folder: str
    maps: tuple[Map, ...]
    output: LayerOutput | None = None
    stack: str | None = None


@frozen_dataclass
class LayerRecord:
    """One layer of a run as the report needs it, whatever ran it (a network layer; a kernel's map, with the
    activation and pooling drawn with it).

    ``sources`` are the indices of the records whose outputs the layer read (0 is the network's input, record
    ``i`` is ``records[i - 1]``); ``op`` says what the layer computes, with its parameters (``{"type": "conv",
    "pad_mode": "zeros", …}``, see `featmap.run.netreport.layer_op`); ``weights`` its tensors in PyTorch's layout;
    ``output`` its float32 output, or None when the page shows only its pictures (``thumbs``) and statistics;
    ``shape`` the shape written when steps after the layer go with its record (a kernel's pooled map; None: the
    plan's ``out_shape``).
    """

    index: int
    name: str
    path: str
    folder: str
    plan: LayerPlan
    op: Mapping[str, Any]
    sources: tuple[int, ...]
    weights: Mapping[str, NDArray[np.floating]] = field(default_factory=dict)
    output: NDArray[np.floating] | None = None
    thumbs: Mapping[str, Any] = field(default_factory=dict)
    stats: Mapping[str, float] = field(default_factory=dict)
    exact: bool = False
    shape: tuple[int, ...] | None = None
