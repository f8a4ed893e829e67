"""Float32 array writers: ``.npy`` and 32-bit float TIFF (one page per channel; opens in ImageJ/Fiji)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from featmap.errors import SpecError
from featmap.io.images import atomic_write
from featmap.io.writers import Writer

if TYPE_CHECKING:
    from featmap.net.records import LayerMaps, Map

__all__ = ["NpyWriter", "TiffWriter", "save_raw"]


def save_raw(path: str | os.PathLike[str], values: NDArray[np.floating], fmt: str = "npy") -> Path:
    """Write the float32 array as ``.npy`` or as a 32-bit float TIFF.

    A TIFF holds one page per channel and opens in ImageJ/Fiji.
    """
    arr = np.asarray(values, dtype=np.float32)
    if fmt == "npy":
        return atomic_write(path, lambda fh: np.save(fh, arr, allow_pickle=False))
    if fmt != "tiff":
        raise SpecError("`raw`", f"unknown raw format {fmt!r}", "use npy or tiff")
    from PIL import Image

    planes = [arr] if arr.ndim == 2 else [arr[:, :, c] for c in range(arr.shape[2])]
    pages = [Image.fromarray(np.ascontiguousarray(p)) for p in planes]  # float32 -> mode F
    return atomic_write(
        path, lambda fh: pages[0].save(fh, format="TIFF", save_all=len(pages) > 1, append_images=pages[1:])
    )


class _RawWriter(Writer):
    """Each map's float32 values beside its PNG; a network layer's whole output as one file (``all.npy``)."""

    manifest_key = "raw"

    def add(self, target: Path, fmap: Map) -> Path:
        return save_raw(self.path_for(target), fmap.values, self.name)

    def planned_paths(self, targets: Mapping[str, Path]) -> list[Path]:
        """Each map's file, and for a network's channel targets (``03-C3/007``) their layer's stack beside them
        (``all.npy``), so that an image that fails part-way leaves no stack behind."""
        stacks = {t.parent / f"all{self.suffix}": None for key, t in targets.items() if _is_channel(key)}
        return [*super().planned_paths(targets), *stacks]

    def add_layer(self, targets: Mapping[str, Path], layer: LayerMaps) -> list[Path | None]:
        """A network layer's stack at ``targets[layer.stack]``: as the layer made it in a ``.npy``; a TIFF's
        pages are 2-D, so there the maps side by side (a flat output as its one-row strip)."""
        if layer.output is None or layer.stack is None:
            return super().add_layer(targets, layer)
        values = layer.output.values
        if self.name == "tiff" and len(layer.maps) == 1:
            values = layer.maps[0].values  # the one plane: a flat output's strip
        elif self.name == "tiff" and values.ndim == 2:
            values = values[:, np.newaxis, :]  # a 1-D (L, C) output: its columns
        return [save_raw(self.path_for(targets[layer.stack]), values, self.name)]


def _is_channel(key: str) -> bool:
    """A network channel's target key: ``{folder}/{channel:03d}``."""
    folder, _, channel = key.rpartition("/")
    return bool(folder) and channel.isdigit()


class NpyWriter(_RawWriter):
    """Each map's float32 values as a ``.npy`` file beside its PNG."""

    name = "npy"
    suffix = ".npy"


class TiffWriter(_RawWriter):
    """Each map's float32 values as a float TIFF beside its PNG."""

    name = "tiff"
    suffix = ".tiff"
