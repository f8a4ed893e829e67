"""A PNG encoder for feature maps: numpy's row filter and a fast deflate, no files.

Feature maps are smooth or mostly flat, so the Up filter (each byte minus the one above) and a fast
deflate compress them well at a fraction of the usual cost. Level 1, the default, deflates with
ISA-L (the ``isal`` package) at its level 1, else with zlib's run-length strategy; level 0 stores;
2-9 are zlib's standard strategy at that level. Measured on a 512² pooled Sobel map, deflate alone:
ISA-L 0.60 ms, 128 KB; zlib run-length 2.1 ms, 117 KB; zlib level 6 5.8 ms, 122 KB. Whole PNGs
(bench/batch_bench.py prints the table): this encoder at level 1 about 1.2 ms; OpenCV's imencode at its
default level 1 5.6 ms, 134 KB; Pillow at level 6 32 ms, 118 KB.

Examples
--------
>>> data = encode_png(np.array([[0, 255], [255, 0]], dtype=np.uint8))
>>> data[:8] == PNG_SIGNATURE, len(data) < 100
(True, True)
"""

from __future__ import annotations

import struct
import zlib
from functools import cache
from types import ModuleType

import numpy as np
from numpy.typing import NDArray

__all__ = ["FAST_LEVEL", "PNG_SIGNATURE", "encode_png"]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FAST_LEVEL = 1
_FILTER_NONE, _FILTER_UP = 0, 2


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


@cache
def isal_zlib() -> ModuleType | None:
    """ISA-L's zlib-compatible module, or None when ``isal`` is not installed."""
    try:
        from isal import isal_zlib as module  # type: ignore[import-untyped,unused-ignore]
    except ImportError:
        return None
    return module


def _deflate(rows: NDArray[np.uint8], level: int) -> bytes:
    """A zlib stream (header, deflate, Adler-32), as PNG's IDAT holds."""
    fast = isal_zlib() if level == FAST_LEVEL else None
    if fast is not None:
        return bytes(fast.compress(rows.data, 1))
    strategy = zlib.Z_RLE if level == FAST_LEVEL else zlib.Z_DEFAULT_STRATEGY
    packer = zlib.compressobj(level, zlib.DEFLATED, 15, 9, strategy)
    return packer.compress(rows.data) + packer.flush()


def encode_png(pixels: NDArray[np.integer], compress_level: int = FAST_LEVEL) -> bytes:
    """PNG file bytes of uint8/uint16 gray ``(H, W)`` or RGB ``(H, W, 3)`` pixels.

    ``compress_level`` is zlib's 0-9 (0 stores); `FAST_LEVEL` uses the run-length strategy.
    """
    if pixels.dtype not in (np.uint8, np.uint16) or pixels.ndim not in (2, 3) or pixels.size == 0:
        raise ValueError(
            f"PNG pixels must be non-empty uint8/uint16 (H, W) or (H, W, 3); got {pixels.dtype} {pixels.shape}"
        )
    if pixels.ndim == 3 and pixels.shape[2] != 3:
        raise ValueError(f"PNG colour pixels must have 3 channels; got {pixels.shape[2]}")
    if not 0 <= compress_level <= 9:
        raise ValueError(f"compress_level must be 0-9; got {compress_level}")
    height, width = pixels.shape[:2]
    samples = pixels.astype(pixels.dtype.newbyteorder(">"), copy=False)  # PNG is big-endian
    raw = np.ascontiguousarray(samples).view(np.uint8).reshape(height, -1)
    rows = np.empty((height, raw.shape[1] + 1), dtype=np.uint8)  # a filter-type byte, then the row
    rows[0, 0], rows[1:, 0] = _FILTER_NONE, _FILTER_UP
    rows[0, 1:] = raw[0]
    np.subtract(raw[1:], raw[:-1], out=rows[1:, 1:])  # modulo 256, as the Up filter is defined
    data = _deflate(rows, compress_level)
    color_type = 2 if pixels.ndim == 3 else 0
    header = struct.pack(">IIBBBBB", width, height, 8 * pixels.dtype.itemsize, color_type, 0, 0, 0)
    return PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", data) + _chunk(b"IEND", b"")
