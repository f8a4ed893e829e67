"""Which values a picture maps: a map's display range for each ``--normalize`` mode, percentiles included.

A `DisplayRange` says which value goes to the bottom of a colour scale (``low``) and which to the top
(``high``); `DisplayRange.positions` turns values into positions in [0, 1] (values outside are clipped).
This is the numeric half of drawing a map; quantising positions to pixels is the PNG writers' job.
No files, no printing.

Examples
--------
>>> x = np.arange(101, dtype=np.float32)
>>> r = display_range(x, "percentile", percentiles=(1, 99))
>>> r.low, r.high, r.text()
(1.0, 99.0, '1 to 99 (percentiles 1-99)')
>>> r.positions(np.array([0.0, 50.0, 200.0], np.float32)).tolist()
[0.0, 0.5, 1.0]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from featmap.core.ops import DEFAULT_PERCENTILES, PERCENTILE_SAMPLE_LIMIT, percentile_range
from featmap.enums import Normalize, parse_enum
from featmap.errors import OptionError, SpecError
from featmap.frozen import frozen_dataclass
from featmap.io.colormaps import AUTO, Colormap, choose_colormap

__all__ = [
    "DEFAULT_PERCENTILES",
    "PERCENTILE_SAMPLE_LIMIT",
    "SCALES",
    "DisplayRange",
    "LayerScale",
    "display_range",
    "layer_scale",
    "parse_percentiles",
    "range_from_stats",
]


@frozen_dataclass
class DisplayRange:
    """The values mapped to the two ends of a scale, and how they were chosen.

    ``absolute`` maps ``|x|`` instead of ``x`` (``--normalize abs``). ``method`` is the
    normalisation's name (``minmax``, ``percentiles 1-99``, ``symmetric``…) and ``centred`` says
    the range was made symmetric about 0 (a diverging colormap).
    """

    low: float
    high: float
    method: str
    absolute: bool = False
    centred: bool = False

    def positions(self, values: NDArray[np.floating]) -> NDArray[np.float32]:
        """``(x - low) / (high - low)`` clipped to [0, 1], in float32 (a flat range maps to 0.5 when
        it holds the values, else to the nearest end; a flat range at 0 that is not centred maps 0 to 0,
        the bottom of a sequential scale, so a dead channel is drawn as the colour of 0)."""
        arr = np.abs(values) if self.absolute else values
        span = self.high - self.low
        if not span > 0:
            held = 0.0 if self.low == 0 and not self.centred else 0.5  # an all-0 map: the colour of 0
            flat: NDArray[np.float32] = np.where(arr < self.low, 0.0, np.where(arr > self.high, 1.0, held)).astype(
                np.float32
            )
            return flat
        out: NDArray[np.float32] = np.subtract(arr, np.float32(self.low), dtype=np.float32)
        out *= np.float32(1.0 / span)
        np.clip(out, 0.0, 1.0, out=out)
        return out

    def text(self) -> str:
        """``low to high (method)``, the caption every picture and table carries."""
        what = "|x| " if self.absolute else ""
        return f"{what}{self.low:.4g} to {self.high:.4g} ({self.method})"


def parse_percentiles(value: str | Sequence[float]) -> tuple[float, float]:
    """``"1,99"`` (or a pair) → ``(1.0, 99.0)``; `OptionError` (a usage error) unless ``0 <= low < high <= 100``.

    Examples
    --------
    >>> parse_percentiles("0.5, 99.5")
    (0.5, 99.5)
    """
    try:
        parts = [float(v) for v in value.split(",")] if isinstance(value, str) else [float(v) for v in value]
    except ValueError:
        parts = []
    if len(parts) != 2 or not all(np.isfinite(parts)) or not 0 <= parts[0] < parts[1] <= 100:
        raise OptionError(
            "`percentiles`", f"{value!r} is not two percentiles LOW,HIGH", "e.g. 1,99 (0 <= LOW < HIGH <= 100)"
        )
    return parts[0], parts[1]


def range_from_stats(low: float, high: float, normalize: str | Normalize) -> DisplayRange:
    """The range a gray ``minmax``, ``clip``, ``abs`` or ``symmetric`` PNG maps, from the map's min and max alone.

    Examples
    --------
    >>> range_from_stats(-2.0, 1.0, "symmetric").text()
    '-2 to 2 (symmetric)'
    """
    kind = parse_enum(Normalize, normalize, "normalize")
    if kind is Normalize.PERCENTILE:
        raise SpecError("normalize", "percentile ranges need the map's values", "use display_range")
    return display_range(np.array([low, high], dtype=np.float64), kind)


def display_range(
    values: NDArray[np.floating],
    normalize: str | Normalize = Normalize.MINMAX,
    *,
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
    centred: bool = False,
) -> DisplayRange:
    """The range of ``values`` a picture maps, for a ``--normalize`` mode.

    ``minmax``: min..max; ``percentile``: the two percentiles (linear interpolation, numpy's default);
    ``clip``: 0..1; ``symmetric``: -m..m with m = max|x|; ``abs``: |x| over 0..max|x|. ``centred``
    (a diverging colormap) widens minmax and percentile ranges to -m..m about 0, so 0 sits at the centre.
    """
    kind = parse_enum(Normalize, normalize, "normalize")
    if values.size == 0:
        raise SpecError("values", "are empty")
    if kind is Normalize.CLIP:
        return DisplayRange(0.0, 1.0, "clip")
    low, high = float(values.min()), float(values.max())
    if kind is Normalize.ABS:
        return DisplayRange(0.0, max(abs(low), abs(high)), "abs", absolute=True)
    if kind is Normalize.SYMMETRIC:
        peak = max(abs(low), abs(high))
        return DisplayRange(-peak, peak, "symmetric", centred=True)
    method = "minmax"
    if kind is Normalize.PERCENTILE:
        low, high = percentile_range(values, percentiles)
        method = f"percentiles {percentiles[0]:g}-{percentiles[1]:g}"
    if centred:
        peak = max(abs(low), abs(high))
        return DisplayRange(-peak, peak, method, centred=True)
    return DisplayRange(low, high, method)


#: ``--scale``: one range for all of a layer's channels (the default), or one per channel.
SCALES = ("per-layer", "per-channel")
#: A layer's percentiles are taken on at most this many of its values (an even stride through each channel).
LAYER_SAMPLE_LIMIT = 1 << 22


@frozen_dataclass
class LayerScale:
    """How one layer's channels are drawn: ONE colormap, and one range (``per-layer``) or one per channel.

    The colormap is diverging, centred at 0, when the layer holds a negative value (``auto``), sequential
    only for a layer with none; every range of a diverging map is ``-m..m``, so 0 is its centre colour in
    every channel. `ranges` has one entry per channel (all equal under ``per-layer``).
    """

    colormap: Colormap
    ranges: tuple[DisplayRange, ...]
    scale: str = "per-layer"

    def range_of(self, channel: int) -> DisplayRange:
        """The range channel ``channel`` is drawn with."""
        return self.ranges[channel]

    def text(self) -> str:
        """``RdBu_r, -2.1 to 2.1 (percentiles 1-99), one scale for the layer``: what a caption says."""
        if self.scale == "per-layer" or len(self.ranges) == 1:
            return f"{self.colormap.name}, {self.ranges[0].text()}" + (
                ", one scale for the layer" if len(self.ranges) > 1 else ""
            )
        return f"{self.colormap.name}, one range per channel ({self.ranges[0].method})"


def _sample(channel: NDArray[np.floating], limit: int) -> NDArray[np.floating]:
    flat = channel.reshape(-1)
    return flat if flat.size <= limit else flat[:: -(-flat.size // limit)]


def layer_scale(
    channels: Sequence[NDArray[np.floating]],
    normalize: str | Normalize = Normalize.PERCENTILE,
    colormap: str | None = AUTO,
    *,
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
    scale: str = "per-layer",
) -> LayerScale:
    """The colormap and range(s) of a layer whose channels are ``channels`` (each any shape, one channel).

    ``colormap`` ``auto``/None picks `featmap.io.colormaps.DIVERGING_DEFAULT` when any value of the layer
    is negative (never with ``abs``) and `featmap.io.colormaps.SEQUENTIAL_DEFAULT` otherwise; a sequential
    map on a non-negative layer starts at 0 (``minmax`` and ``percentile`` ranges are ``0..high``), so 0 is
    the colour of 0 there too. Percentiles over a layer are taken on the values of all its channels
    (at most `LAYER_SAMPLE_LIMIT`, evenly strided). ``scale`` is ``per-layer`` or ``per-channel``.

    Examples
    --------
    >>> a = np.array([[-2.0, 1.0]]); b = np.array([[0.5, 0.0]])
    >>> s = layer_scale([a, b], "minmax")
    >>> s.colormap.name, s.ranges[0].text(), s.ranges[1] == s.ranges[0]
    ('RdBu_r', '-2 to 2 (minmax)', True)
    >>> layer_scale([b], "minmax").ranges[0].text()
    '0 to 0.5 (minmax)'
    """
    if scale not in SCALES:
        raise SpecError("`scale`", f"unknown scale {scale!r}", "use per-layer or per-channel")
    if not channels:
        raise SpecError("values", "a layer needs at least one channel")
    kind = parse_enum(Normalize, normalize, "normalize")
    lows = [float(np.min(c)) for c in channels]
    highs = [float(np.max(c)) for c in channels]
    auto = colormap is None or colormap.strip().lower() == AUTO
    negative = min(lows) < 0 and kind is not Normalize.ABS
    if auto:
        chosen = choose_colormap(None, -1.0 if negative else 0.0, 1.0)
    else:
        chosen = choose_colormap(colormap, min(lows), max(highs))
    centred = chosen.diverging
    anchored = auto and not negative and kind in (Normalize.MINMAX, Normalize.PERCENTILE)

    def one(values: NDArray[np.floating]) -> DisplayRange:
        shown = display_range(values, kind, percentiles=percentiles, centred=centred)
        if anchored and shown.low > 0:
            shown = DisplayRange(0.0, shown.high, shown.method)
        return shown

    if scale == "per-channel":
        return LayerScale(chosen, tuple(one(c) for c in channels), scale)
    if kind is Normalize.PERCENTILE:
        limit = max(1, LAYER_SAMPLE_LIMIT // len(channels))
        pooled = np.concatenate([_sample(np.asarray(c), limit) for c in channels])
    else:
        pooled = np.array([min(lows), max(highs)], dtype=np.float64)
    shown = one(pooled)
    return LayerScale(chosen, (shown,) * len(channels), scale)
