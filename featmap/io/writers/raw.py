"""Float32 array writers: ``.npy`` and 32-bit float TIFF (one page per channel; opens in ImageJ/Fiji)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from featmap.errors import SpecError
from featmap.io.images import atomic_write
from featmap.io.writers import Writer

if TYPE_CHECKING:
    from featmap.net.records import FeatureMap

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


class NpyWriter(Writer):
    """Each map's float32 values as a ``.npy`` file beside its PNG."""

    name = "npy"
    suffix = ".npy"
    manifest_key = "raw"

    def add(self, target: Path, fmap: FeatureMap) -> Path:
        return save_raw(self.path_for(target), fmap.values, "npy")


class TiffWriter(Writer):
    """Each map's float32 values as a float TIFF beside its PNG."""

    name = "tiff"
    suffix = ".tiff"
    manifest_key = "raw"

    def add(self, target: Path, fmap: FeatureMap) -> Path:
        return save_raw(self.path_for(target), fmap.values, "tiff")
