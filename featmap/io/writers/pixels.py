"""A feature map's PNG pixels: gray levels, or 8-bit RGB through a colormap; the one place float maps
become 8- or 16-bit pixels (`quantize`, `to_pixels`).

`map_pixels` picks the display range (`featmap.io.display`) and the colormap (`featmap.io.colormaps`), then
quantises a band of rows at a time, so a large map never has a full-size float copy. `pixel_bands` is that band
loop for gray levels with two reused band buffers (one float, one of levels), the writer's fast path.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from featmap.core.cvfilter import opencv
from featmap.core.ops import display_scale, row_bands, to_display
from featmap.enums import Normalize, parse_enum
from featmap.errors import SpecError
from featmap.frozen import frozen_dataclass
from featmap.io.colormaps import Colormap, choose_colormap
from featmap.io.display import DEFAULT_PERCENTILES, DisplayRange, display_range

__all__ = [
    "PIXEL_BAND_VALUES",
    "MapPixels",
    "colour_pixels",
    "map_pixels",
    "pixel_bands",
    "quantize",
    "quantize_into",
    "scale_for",
    "to_pixels",
]

#: Values per band of `pixel_bands` (256 KB of float32: the band and its levels stay in cache).
PIXEL_BAND_VALUES = 1 << 16


def quantize(values: NDArray[np.floating], bit_depth: int = 8) -> NDArray[np.unsignedinteger]:
    """Display values in [0, 1] (clipped) to the nearest 8- or 16-bit level.

    Examples
    --------
    >>> quantize(np.array([0.0, 0.5, 1.2])).tolist()
    [0, 128, 255]
    """
    if bit_depth not in (8, 16):
        raise SpecError("`bit_depth`", f"must be 8 or 16; got {bit_depth}")
    top = 255 if bit_depth == 8 else 65535
    scaled = np.clip(values, 0.0, 1.0)
    np.multiply(scaled, top, out=scaled)
    np.rint(scaled, out=scaled)
    return scaled.astype(np.uint8 if bit_depth == 8 else np.uint16)  # type: ignore[no-any-return]  # numpy stubs


def to_pixels(x: ArrayLike, normalize: str | Normalize = "minmax", bit_depth: int = 8) -> NDArray[np.unsignedinteger]:
    """``quantize(featmap.core.ops.normalize(x, normalize), bit_depth)``, exactly, a band of rows at a time: no
    full-size float copy.

    Examples
    --------
    >>> to_pixels(np.array([[-1.0, 0.0, 3.0]]), "minmax").tolist()
    [[0, 64, 255]]
    """
    kind = parse_enum(Normalize, normalize, "normalize")
    arr = np.asarray(x)
    if arr.dtype.kind != "f":
        arr = arr.astype(np.float32)
    low, span = display_scale(arr, kind)
    out = np.empty(arr.shape, dtype=np.uint8 if bit_depth == 8 else np.uint16)
    done = 0
    for band in pixel_bands(arr, kind, low, span, bit_depth):
        out[done : done + band.shape[0]] = band
        done += band.shape[0]
    return out


def pixel_bands(
    values: NDArray[np.floating], kind: Normalize, low: Any, span: Any, bit_depth: int = 8
) -> Iterator[NDArray[np.unsignedinteger]]:
    """``quantize(to_display(values, kind, low, span), bit_depth)`` a band of rows at a time, in order; each band
    is valid until the next one is asked for (two buffers are reused from band to band).

    ``(low, span)`` is `featmap.core.ops.display_scale`'s for ``values``. A float32 map stretched by min-max or
    percentiles is worked in place in a band buffer (`to_display` with ``out``, then `quantize_into`); min-max
    scaling needs no clip, as every ``(x - min) / (max - min)`` of the map's own range rounds into [0, 1].
    """
    if bit_depth not in (8, 16):
        raise SpecError("`bit_depth`", f"must be 8 or 16; got {bit_depth}")
    if values.dtype != np.float32 or span is None or kind not in (Normalize.MINMAX, Normalize.PERCENTILE):
        for rows in row_bands(values):
            yield quantize(to_display(values[rows], kind, low, span), bit_depth)
        return
    per_row = max(1, values.size // max(1, values.shape[0]))
    step = max(1, PIXEL_BAND_VALUES // per_row)
    scratch = np.empty((min(step, values.shape[0]), *values.shape[1:]), dtype=values.dtype)
    levels: NDArray[np.unsignedinteger] = np.empty(scratch.shape, dtype=np.uint8 if bit_depth == 8 else np.uint16)
    unit = kind is Normalize.MINMAX and bool(np.isfinite(span))  # a finite range: every value is finite too
    for start in range(0, values.shape[0], step):
        count = min(step, values.shape[0] - start)
        display = to_display(values[start : start + count], kind, low, span, out=scratch[:count])
        yield quantize_into(display, levels[:count], unit=unit)


def quantize_into(
    display: NDArray[np.floating], out: NDArray[np.unsignedinteger], *, unit: bool = False
) -> NDArray[np.unsignedinteger]:
    """`quantize` of ``display`` into ``out`` (uint8 or uint16, ``display``'s shape), overwriting ``display``;
    returns ``out``. ``unit=True`` says every value is already in [0, 1]: no clip (the same levels).

    8-bit levels of float32 values in [0, 1] come from OpenCV's ``convertScaleAbs`` at ``alpha=255`` (one pass):
    a single float32 product, rounded half to even and saturated, exactly numpy's ``rint(x * 255)``; checked on
    every float32 in [0, 1] through its vector and scalar loops, and by tests/test_png.py near every tie.

    Examples
    --------
    >>> quantize_into(np.array([0.0, 0.5, 1.2]), np.empty(3, np.uint8)).tolist()
    [0, 128, 255]
    """
    top = 255 if out.dtype == np.uint8 else 65535
    if not unit:
        np.clip(display, 0.0, 1.0, out=display)
    cv2 = opencv() if unit and out.dtype == np.uint8 and display.dtype == np.float32 else None
    small = display.ndim == 2 or (display.ndim == 3 and display.shape[2] <= 4)
    if cv2 is not None and small and display.flags.c_contiguous:
        plane = display if display.ndim == 2 or display.shape[2] > 1 else display[:, :, 0]
        target = out if out.ndim == plane.ndim else out[:, :, 0]
        written = cv2.convertScaleAbs(plane, dst=target, alpha=255)
        if not np.shares_memory(written, out):
            target[...] = written
        return out
    np.multiply(display, top, out=display)
    np.rint(display, out=display)
    np.copyto(out, display, casting="unsafe")
    return out


@frozen_dataclass
class MapPixels:
    """A map's pixels, the value range they show and the colormap (None: gray levels)."""

    pixels: NDArray[np.unsignedinteger]
    shown: DisplayRange
    colormap: Colormap | None


def scale_for(
    values: NDArray[np.floating],
    normalize: str | Normalize,
    colormap: str | None,
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
) -> tuple[DisplayRange, Colormap | None]:
    """The display range and colormap a map is drawn with (``colormap`` None: gray, no colormap)."""
    kind = parse_enum(Normalize, normalize, "normalize")
    chosen = None
    if colormap is not None:
        chosen = choose_colormap(colormap, float(values.min()), float(values.max()))
    centred = chosen is not None and chosen.diverging
    return display_range(values, kind, percentiles=percentiles, centred=centred), chosen


def colour_pixels(values: NDArray[np.floating], shown: DisplayRange, colormap: Colormap) -> NDArray[np.uint8]:
    """8-bit RGB ``(H, W, 3)`` of a one-channel map, a band of rows at a time."""
    plane = values[:, :, 0] if values.ndim == 3 else values
    out = np.empty((*plane.shape, 3), dtype=np.uint8)
    for rows in row_bands(plane):
        out[rows] = colormap.colours8(shown.positions(plane[rows]))
    return out


def map_pixels(
    values: NDArray[np.floating],
    normalize: str | Normalize = Normalize.MINMAX,
    *,
    bit_depth: int = 8,
    colormap: str | None = None,
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
) -> MapPixels:
    """The PNG pixels of a float map ``(H, W, C)``.

    Without ``colormap`` the gray (or ``--color`` RGB) levels `featmap.core.ops.to_pixels` makes, byte for
    byte as before; ``--normalize percentile`` maps the two percentiles to black and white. With a
    colormap (a name or ``auto``) a one-channel map becomes 8-bit RGB: position ``t`` in the display
    range → the colormap's entry ``min(floor(256 t), 255)``.
    """
    kind = parse_enum(Normalize, normalize, "normalize")
    channels = values.shape[2] if values.ndim == 3 else 1
    if colormap is not None and channels != 1:
        raise SpecError(
            "`colormap`", f"colours one-channel maps; this map has {channels}", "drop `color` or `colormap`"
        )
    if colormap is not None and bit_depth != 8:
        raise SpecError("`colormap`", "writes 8-bit RGB PNGs", "drop `bit_depth` 16 or `colormap`")
    shown, chosen = scale_for(values, kind, colormap, percentiles)
    if chosen is not None:
        return MapPixels(colour_pixels(values, shown, chosen), shown, chosen)
    if kind is not Normalize.PERCENTILE:
        return MapPixels(to_pixels(values, kind, bit_depth), shown, None)
    out = np.empty(values.shape, dtype=np.uint8 if bit_depth == 8 else np.uint16)
    for rows in row_bands(values):
        out[rows] = quantize(shown.positions(values[rows]), bit_depth)
    return MapPixels(out, shown, None)
