"""A PNG encoder for feature maps: numpy's row filter and zlib, no files.

Feature maps are smooth or mostly flat, so the Up filter (each byte minus the one above) and zlib's
run-length strategy compress them well at a fraction of the usual cost. Measured on a 512² pooled
Sobel map (bench/batch_bench.py prints the table): this encoder 2.4 ms, 114 KB; OpenCV's imencode with the
same filter and strategy 3.4 ms, 114 KB; with its defaults at level 1 5.6 ms, 134 KB; Pillow at level 6
32 ms, 118 KB. Level 0 stores, 1 (the default) is the run-length mode, 2-9 use zlib's standard
strategy at that level.

Examples
--------
>>> data = encode_png(np.array([[0, 255], [255, 0]], dtype=np.uint8))
>>> data[:8] == PNG_SIGNATURE, len(data) < 100
(True, True)
"""

from __future__ import annotations

import struct
import zlib

import numpy as np
from numpy.typing import NDArray

__all__ = ["FAST_LEVEL", "PNG_SIGNATURE", "encode_png"]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FAST_LEVEL = 1
_FILTER_NONE, _FILTER_UP = 0, 2


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


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
    strategy = zlib.Z_RLE if compress_level == FAST_LEVEL else zlib.Z_DEFAULT_STRATEGY
    packer = zlib.compressobj(compress_level, zlib.DEFLATED, 15, 9, strategy)
    data = packer.compress(rows.data) + packer.flush()
    color_type = 2 if pixels.ndim == 3 else 0
    header = struct.pack(">IIBBBBB", width, height, 8 * pixels.dtype.itemsize, color_type, 0, 0, 0)
    return PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", data) + _chunk(b"IEND", b"")
