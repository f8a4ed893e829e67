"""The PNG writer: feature maps to PNG files (pixels from `featmap.io.writers.pixels`, bytes from
`featmap.io.pngencode`)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import IO, TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from featmap.core.ops import display_scale
from featmap.enums import Normalize
from featmap.errors import SpecError
from featmap.io.images import atomic_write
from featmap.io.pngencode import PngStream, encode_png
from featmap.io.writers import Writer
from featmap.io.writers.pixels import pixel_bands, quantize, to_pixels
from featmap.net.records import BandedFeatureMap, FeatureMap

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

    from featmap.io.colormaps import Colormap
    from featmap.io.display import DisplayRange
    from featmap.io.outputs import OutputOptions
    from featmap.net.records import LayerMaps, Map

__all__ = ["THREADED_FROM", "PngWriter", "quantize", "save_png", "takes_bands", "to_pixels"]


#: A layer's channel maps are written on `channel_threads` from this many values a map (64²).
THREADED_FROM = 64 * 64


def save_png(
    path: str | os.PathLike[str],
    values: NDArray[np.floating] | NDArray[np.unsignedinteger],
    *,
    bit_depth: int = 8,
    compress_level: int = 1,
) -> Path:
    """Write values in [0, 1] (``(H, W)``, ``(H, W, 1)`` or ``(H, W, 3)``) as an 8- or 16-bit PNG.

    Float values outside [0, 1] are clipped: normalise first (`featmap.core.ops.normalize`), or pass the
    uint8/uint16 pixels `to_pixels` makes, which are written as they are. ``compress_level``
    is zlib's 0-9 (see `featmap.io.pngencode`: 1, the default, is the fast one).
    """
    if bit_depth not in (8, 16):
        raise SpecError("`bit_depth`", f"must be 8 or 16; got {bit_depth}")
    if not 0 <= compress_level <= 9:
        raise SpecError("`compress_level`", f"must be 0-9; got {compress_level}")
    arr = np.asarray(values)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 3 and arr.shape[2] != 3:
        raise SpecError("`values`", f"a PNG takes 1 or 3 channels; got {arr.shape[2]}")
    if arr.dtype in (np.uint8, np.uint16):
        if arr.dtype.itemsize * 8 != bit_depth:
            raise SpecError("`bit_depth`", f"is {bit_depth} but the pixels are {arr.dtype}", "pass float values")
        pixels = arr
    else:
        pixels = quantize(arr, bit_depth)
    encoded = encode_png(pixels, compress_level)  # featmap.io.pngencode: several times faster than Pillow's writer
    return atomic_write(path, lambda fh: fh.write(encoded))


class PngWriter(Writer):
    """Each map as an 8- or 16-bit PNG, scaled by ``options.normalize`` (the primary output); with
    ``options.colormap``, an 8-bit RGB PNG through that colormap (`featmap.io.writers.pixels`)."""

    name = "png"
    suffix = ".png"
    manifest_key = "png"

    def __init__(self, options: OutputOptions) -> None:
        super().__init__(options)
        #: The value range and colormap of each map drawn through `featmap.io.writers.pixels` (colormap or percentile).
        self.scales: dict[str, tuple[DisplayRange, Colormap | None]] = {}

    def add_layer(self, targets: Mapping[str, Path], layer: LayerMaps) -> list[Path | None]:
        """A layer's maps; a network layer's channels on `channel_threads` (each its own file), unless they are
        smaller than `THREADED_FROM` values each: handing a small map's PNG to a thread costs more than it saves."""
        height, width = layer.maps[0].info.shape[:2]
        if len(layer.maps) < 2 or height * width < THREADED_FROM:
            return super().add_layer(targets, layer)
        return list(channel_threads().map(lambda m: self.add(targets[m.info.name], m), layer.maps))

    def add(self, target: Path, fmap: Map) -> Path:
        out = self.options
        if isinstance(fmap, BandedFeatureMap) and takes_bands(out):
            return _stream_bands(self.path_for(target), fmap, out.normalize, out.bit_depth, out.png_compress)
        values = fmap.values
        if out.colormap is None and out.normalize is not Normalize.PERCENTILE and values.shape[-1] in (1, 3):
            extremes = _extremes(fmap)
            path = self.path_for(target)
            return _stream_scaled(path, values, out.normalize, out.bit_depth, out.png_compress, extremes)
        if out.colormap is None and out.normalize is not Normalize.PERCENTILE:
            pixels = to_pixels(fmap.values, out.normalize, out.bit_depth)
        else:
            from featmap.io.writers.pixels import map_pixels

            drawn = map_pixels(
                fmap.values, out.normalize, bit_depth=out.bit_depth, colormap=out.colormap, percentiles=out.percentiles
            )
            pixels = drawn.pixels
            self.scales[fmap.info.name] = (drawn.shown, drawn.colormap)
        return save_png(self.path_for(target), pixels, bit_depth=out.bit_depth, compress_level=out.png_compress)


def takes_bands(options: OutputOptions) -> bool:
    """Whether the writer quantises a map given as its bands (`featmap.net.records.BandedFeatureMap`) a band at a
    time, with no whole map: gray levels scaled by min-max (the range from the map's statistics) or a fixed rule;
    percentiles and colormaps need the whole map."""
    return options.colormap is None and options.normalize is not Normalize.PERCENTILE


@cache
def channel_threads() -> ThreadPoolExecutor:
    """The threads that write a layer's channel PNGs (one per core, at most two: the files are small). A layer's
    channels are independent files: numpy's reductions, the deflate and the file calls release the GIL, so two
    threads write them in about 0.6 of the time (VGG-16's 960 maps, measured). Made on first use: a kernel
    bank's command never asks for them, and need not import `concurrent.futures` (~1 ms of its start-up)."""
    from concurrent.futures import ThreadPoolExecutor

    return ThreadPoolExecutor(max_workers=max(1, min(2, os.cpu_count() or 1)), thread_name_prefix="featmap-png")


def _extremes(fmap: Map) -> tuple[float, float] | None:
    """A kernel's map's own min and max, from its statistics (a network channel's are its layer's), else None."""
    if isinstance(fmap, FeatureMap):
        return fmap.info.stats.min, fmap.info.stats.max
    return None


def _stream_scaled(
    path: Path,
    values: NDArray[np.floating],
    normalize: Normalize,
    bit_depth: int,
    compress_level: int,
    extremes: tuple[float, float] | None = None,
) -> Path:
    """`save_png` of `to_pixels`, a band of rows at a time from the float map to the file: the pixels and the
    PNG bytes are never held whole (the same bytes: `featmap.io.png.PngStream`). ``extremes``, the map's min and
    max when known (its statistics'), spare `display_scale` its two passes over the map: it reads only those."""
    arr = values if values.dtype.kind == "f" else values.astype(np.float32)
    low, span = display_scale(arr if extremes is None else np.array(extremes, dtype=arr.dtype), normalize)
    rows_of = arr[:, :, 0] if arr.ndim == 3 and arr.shape[2] == 1 else arr

    def write(handle: IO[bytes]) -> None:
        stream = PngStream(handle.write, rows_of.shape, np.uint8 if bit_depth == 8 else np.uint16, compress_level)
        for band in pixel_bands(rows_of, normalize, low, span, bit_depth):
            stream.write(band)
        stream.close()

    return atomic_write(path, write)


def _stream_bands(
    path: Path, fmap: BandedFeatureMap, normalize: Normalize, bit_depth: int, compress_level: int
) -> Path:
    """`_stream_scaled` of a map never held: its value range from its statistics (the same ``(low, span)``
    `display_scale` takes from the whole map: its min and max), its bands quantised into the file as they are
    made (the same pixels)."""
    source = fmap.bands
    height, width, channels = source.shape
    if channels not in (1, 3):
        raise ValueError(f"a map given as bands has one channel or three (RGB); got {channels}")
    stats = fmap.info.stats
    low, span = display_scale(np.array([stats.min, stats.max], dtype=source.dtype), normalize)
    shape = (height, width) if channels == 1 else (height, width, channels)

    def write(handle: IO[bytes]) -> None:
        stream = PngStream(handle.write, shape, np.uint8 if bit_depth == 8 else np.uint16, compress_level)
        for band in source.bands():
            for levels in pixel_bands(band[:, :, 0] if channels == 1 else band, normalize, low, span, bit_depth):
                stream.write(levels)
        stream.close()

    return atomic_write(path, write)
