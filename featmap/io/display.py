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
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from featmap.enums import Normalize, parse_enum
from featmap.errors import SpecError

__all__ = [
    "DEFAULT_PERCENTILES",
    "PERCENTILE_SAMPLE_LIMIT",
    "DisplayRange",
    "display_range",
    "parse_percentiles",
    "range_from_stats",
]

DEFAULT_PERCENTILES = (1.0, 99.0)
#: Maps with more values than this have their percentiles taken on an evenly strided sample of this size.
PERCENTILE_SAMPLE_LIMIT = 1 << 24


@dataclass(frozen=True)
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
        it holds the values, else to the nearest end)."""
        arr = np.abs(values) if self.absolute else values
        span = self.high - self.low
        if not span > 0:
            flat: NDArray[np.float32] = np.where(arr < self.low, 0.0, np.where(arr > self.high, 1.0, 0.5)).astype(
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
    """``"1,99"`` (or a pair) → ``(1.0, 99.0)``; `SpecError` unless ``0 <= low < high <= 100``.

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
        raise SpecError(
            "`percentiles`", f"{value!r} is not two percentiles LOW,HIGH", "e.g. 1,99 (0 <= LOW < HIGH <= 100)"
        )
    return parts[0], parts[1]


def _percentiles(values: NDArray[np.floating], bounds: tuple[float, float]) -> tuple[float, float]:
    flat = values.reshape(-1)
    if flat.size > PERCENTILE_SAMPLE_LIMIT:
        flat = flat[:: -(-flat.size // PERCENTILE_SAMPLE_LIMIT)]
    low, high = np.percentile(flat, bounds)
    return float(low), float(high)


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
        low, high = _percentiles(values, percentiles)
        method = f"percentiles {percentiles[0]:g}-{percentiles[1]:g}"
    if centred:
        peak = max(abs(low), abs(high))
        return DisplayRange(-peak, peak, method, centred=True)
    return DisplayRange(low, high, method)
