"""A PNG encoder for feature maps: the Up row filter and a fast deflate, streamed a band of rows at a time.

Feature maps are smooth or mostly flat, so the Up filter (each byte minus the one above) and a fast
deflate compress them well at a fraction of the usual cost. Level 1, the default, deflates with
ISA-L (the ``isal`` package) at its level 1, else with zlib's run-length strategy; level 0 stores;
2-9 are zlib's standard strategy at that level. Measured on a 512² pooled Sobel map, deflate alone:
ISA-L 0.60 ms, 128 KB; zlib run-length 2.1 ms, 117 KB; zlib level 6 5.8 ms, 122 KB.

**Same pixels, same bytes.** A streaming deflater's output depends on how its input is cut into calls, so
`PngStream` never hands the deflater the caller's bands: it copies the filtered rows into a staging buffer
and deflates exactly `DEFLATE_CHUNK` bytes per call (the last call takes the rest), and it cuts the
compressed stream into IDAT chunks of exactly `IDAT_SIZE` bytes (the last one shorter). Every boundary is a
function of the pixels' shape alone: whichever bands a caller streams, whichever process, order or back end
encodes the map, the file is the same (tests/test_png_determinism.py encodes maps in fresh processes with
different heap states and orders). `encode_png` is `PngStream` given the whole map as one band.

Examples
--------
>>> data = encode_png(np.array([[0, 255], [255, 0]], dtype=np.uint8))
>>> data[:8] == PNG_SIGNATURE, len(data) < 100
(True, True)
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from functools import cache
from types import ModuleType
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["DEFLATE_CHUNK", "FAST_LEVEL", "IDAT_SIZE", "PNG_SIGNATURE", "PngStream", "encode_png"]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FAST_LEVEL = 1
#: Filtered bytes per deflate call: fixed, so the stream depends on the pixels only (64 KiB costs the same
#: as one call for the whole map: 1.61 against 1.53 ms on a 512² map, measured).
DEFLATE_CHUNK = 1 << 16
#: Compressed bytes per IDAT chunk (the last one holds the rest).
IDAT_SIZE = 1 << 18
_FILTER_NONE, _FILTER_UP = 0, 2


def _chunk(kind: bytes, data: bytes | bytearray | memoryview) -> bytes:
    crc = zlib.crc32(data, zlib.crc32(kind))
    return struct.pack(">I", len(data)) + kind + bytes(data) + struct.pack(">I", crc)


@cache
def isal_zlib() -> ModuleType | None:
    """ISA-L's zlib-compatible module, or None when ``isal`` is not installed."""
    try:
        from isal import isal_zlib as module  # type: ignore[import-untyped,unused-ignore]
    except ImportError:
        return None
    return module


def _deflater(level: int) -> Any:
    """A zlib-format streaming compressor (header, deflate, Adler-32), as PNG's IDAT holds."""
    fast = isal_zlib() if level == FAST_LEVEL else None
    if fast is not None:
        return fast.compressobj(1)
    strategy = zlib.Z_RLE if level == FAST_LEVEL else zlib.Z_DEFAULT_STRATEGY
    return zlib.compressobj(level, zlib.DEFLATED, 15, 9, strategy)


def _check(dtype: np.dtype[Any], shape: tuple[int, ...], compress_level: int) -> None:
    if dtype not in (np.uint8, np.uint16) or len(shape) not in (2, 3) or 0 in shape:
        raise ValueError(f"PNG pixels must be non-empty uint8/uint16 (H, W) or (H, W, 3); got {dtype} {shape}")
    if len(shape) == 3 and shape[2] != 3:
        raise ValueError(f"PNG colour pixels must have 3 channels; got {shape[2]}")
    if not 0 <= compress_level <= 9:
        raise ValueError(f"compress_level must be 0-9; got {compress_level}")


class PngStream:
    """Encode one PNG of ``shape`` pixels, given as bands of rows in order, into ``sink`` (e.g. a file's
    ``write``): the signature and header at once, IDAT chunks as they fill, the end on `close`.

    Only one band of filtered rows, `DEFLATE_CHUNK` staged bytes and less than `IDAT_SIZE` compressed bytes
    are held at a time. Bands may have any number of rows; the bytes do not depend on them.
    """

    def __init__(
        self,
        sink: Callable[[bytes], object],
        shape: tuple[int, ...],
        dtype: np.dtype[Any] | type[np.unsignedinteger[Any]],
        compress_level: int = FAST_LEVEL,
    ) -> None:
        kind = np.dtype(dtype)
        _check(kind, shape, compress_level)
        self._sink = sink
        self._height, width = shape[0], shape[1]
        self._dtype = kind.newbyteorder(">")  # PNG is big-endian
        self._row_bytes = width * (3 if len(shape) == 3 else 1) * kind.itemsize
        self._previous: NDArray[np.uint8] | None = None  # the last row given, for the Up filter
        self._rows_done = 0
        self._filtered = np.empty((0, self._row_bytes + 1), dtype=np.uint8)  # reused between bands
        self._stage = np.empty(DEFLATE_CHUNK, dtype=np.uint8)
        self._staged = 0
        self._packer = _deflater(compress_level)
        self._pending = bytearray()
        color_type = 2 if len(shape) == 3 else 0
        header = struct.pack(">IIBBBBB", width, self._height, 8 * kind.itemsize, color_type, 0, 0, 0)
        sink(PNG_SIGNATURE + _chunk(b"IHDR", header))

    def write(self, band: NDArray[np.integer]) -> None:
        """Append rows ``band`` (``(rows, W)`` or ``(rows, W, 3)``, the stream's dtype)."""
        if band.shape[0] == 0:
            return
        if self._rows_done + band.shape[0] > self._height:
            raise ValueError(f"PNG has {self._height} rows; got {self._rows_done + band.shape[0]}")
        raw = np.ascontiguousarray(band.astype(self._dtype, copy=False)).view(np.uint8).reshape(band.shape[0], -1)
        if raw.shape[1] != self._row_bytes:
            raise ValueError(f"PNG rows have {self._row_bytes} bytes; got {raw.shape[1]}")
        count = raw.shape[0]
        if self._filtered.shape[0] < count:
            self._filtered = np.empty((count, self._row_bytes + 1), dtype=np.uint8)
        rows = self._filtered[:count]
        rows[:, 0] = _FILTER_UP
        if self._previous is None:
            rows[0, 0] = _FILTER_NONE
            rows[0, 1:] = raw[0]
        else:
            np.subtract(raw[0], self._previous, out=rows[0, 1:])  # modulo 256, as the Up filter is defined
        np.subtract(raw[1:], raw[:-1], out=rows[1:, 1:])
        self._previous = raw[-1].copy()
        self._rows_done += count
        self._feed(rows.reshape(-1))

    def _feed(self, data: NDArray[np.uint8]) -> None:
        start = 0
        while start < data.size:
            take = min(DEFLATE_CHUNK - self._staged, data.size - start)
            self._stage[self._staged : self._staged + take] = data[start : start + take]
            self._staged += take
            start += take
            if self._staged == DEFLATE_CHUNK:
                self._emit(self._packer.compress(self._stage.data))
                self._staged = 0

    def _emit(self, compressed: bytes) -> None:
        self._pending += compressed
        while len(self._pending) >= IDAT_SIZE:
            self._sink(_chunk(b"IDAT", memoryview(self._pending)[:IDAT_SIZE]))
            del self._pending[:IDAT_SIZE]

    def close(self) -> None:
        """Deflate the rest and write the last IDAT and IEND; every row must have been given."""
        if self._rows_done != self._height:
            raise ValueError(f"PNG has {self._height} rows; {self._rows_done} were given")
        self._emit(self._packer.compress(self._stage[: self._staged].data) + self._packer.flush())
        if self._pending:
            self._sink(_chunk(b"IDAT", self._pending))
        self._sink(_chunk(b"IEND", b""))


def encode_png(pixels: NDArray[np.integer], compress_level: int = FAST_LEVEL) -> bytes:
    """PNG file bytes of uint8/uint16 gray ``(H, W)`` or RGB ``(H, W, 3)`` pixels.

    ``compress_level`` is zlib's 0-9 (0 stores); `FAST_LEVEL` is ISA-L's level 1 (zlib's run-length
    strategy without ``isal``). The bytes are those `PngStream` writes for the same pixels.
    """
    _check(pixels.dtype, pixels.shape, compress_level)
    parts: list[bytes] = []
    stream = PngStream(parts.append, pixels.shape, pixels.dtype, compress_level)
    stream.write(pixels)
    stream.close()
    return b"".join(parts)
