"""A feature map's PNG pixels: gray levels, or 8-bit RGB through a colormap; the one place float maps
become 8- or 16-bit pixels (`quantize`, `to_pixels`).

`map_pixels` picks the display range (`featmap.io.display`) and the colormap (`featmap.io.colormaps`), then
quantises a band of rows at a time, so a large map never has a full-size float copy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from featmap.core.ops import display_scale, row_bands, to_display
from featmap.enums import Normalize, parse_enum
from featmap.errors import SpecError
from featmap.io.colormaps import Colormap, choose_colormap
from featmap.io.display import DEFAULT_PERCENTILES, DisplayRange, display_range

__all__ = ["MapPixels", "colour_pixels", "map_pixels", "quantize", "scale_for", "to_pixels"]


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
    for rows in row_bands(arr):
        out[rows] = quantize(to_display(arr[rows], kind, low, span), bit_depth)
    return out


@dataclass(frozen=True)
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
