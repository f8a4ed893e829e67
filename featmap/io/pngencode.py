"""A PNG encoder for feature maps: the Up row filter and a fast deflate, given a band of rows at a time.

Feature maps are smooth or mostly flat, so the Up filter (each byte minus the one above) and a fast
deflate compress them well at a fraction of the usual cost. Level 1, the default, deflates with
ISA-L (the ``isal`` package) at its level 1, else with zlib's run-length strategy; level 0 stores;
2-9 are zlib's standard strategy at that level. Measured on a 512² pooled Sobel map, deflate alone:
ISA-L 0.60 ms, 128 KB; zlib run-length 2.1 ms, 117 KB; zlib level 6 5.8 ms, 122 KB.

**Same pixels, same bytes.** `PngStream` filters each band as it comes. A map of at most `STREAM_ABOVE` filtered
bytes (a byte per pixel and row more than the pixels: every 1024² crop's map) goes into one buffer holding the map's
filtered rows, deflated in one call when the stream closes. A larger map (the pooled maps of a 6000×4000 photo, 6 MB
each) is deflated as it comes, in pieces of exactly `DEFLATE_PIECE` bytes staged in a buffer whose bytes past a
piece are fixed (zeros past the last one), so that neither the filtered rows nor the compressed map are ever held
whole: a few MB less at the peak, at the same speed. Either way the compressed bytes are cut into IDAT chunks of
exactly `IDAT_SIZE` bytes (the last one shorter). Every cut is a function of the map's shape alone, never of the
caller's bands or of what a process's memory held, so the bytes are the same whichever process, thread, order, band
or back end (tests/test_png_determinism.py encodes maps of both kinds in fresh processes with different heap states
and orders, and in threads with other stacks, two at a time). A streamed map's bytes may differ from the one-call
stream of the same rows (ISA-L can end its blocks where its calls end; a 512² map in 4 KiB-1 MiB pieces gave the
one-call bytes, bigger maps were not checked), so a map's size alone decides which it gets. ISA-L's level-1
deflate, left alone, made a few maps in 10^4 differ between processes (issue 22: the same filtered rows, another
deflate stream; one map in ~12,000 of the 100-crop batch, and the one map of 15 that once came out different under
the full suite's load): its matcher hashes a history-less stream's third position from the address of its stream
state (`_IsalDeflater` says how, and how the stream here never starts without history); every map's bytes changed
once (7 Dec 2026, wave 6) for that. ``bench/png_determinism.py`` is
the long check. The buffers are kept per thread and reused by the next map, so a batch does not fault in fresh pages
per map. `encode_png` is `PngStream` given the whole map as one band.

Examples
--------
>>> data = encode_png(np.array([[0, 255], [255, 0]], dtype=np.uint8))
>>> data[:8] == PNG_SIGNATURE, len(data) < 100
(True, True)
"""

from __future__ import annotations

import struct
import threading
import weakref
import zlib
from collections.abc import Callable
from functools import cache
from types import ModuleType
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["DEFLATE_PIECE", "FAST_LEVEL", "IDAT_SIZE", "PNG_SIGNATURE", "STREAM_ABOVE", "PngStream", "encode_png"]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FAST_LEVEL = 1
#: Compressed bytes per IDAT chunk (the last one holds the rest).
IDAT_SIZE = 1 << 18
#: Filtered bytes of a map above which it is deflated as it comes, in `DEFLATE_PIECE` pieces (4 MiB: a 2048² map
#: or less keeps the one-call stream and its bytes).
STREAM_ABOVE = 1 << 22
#: Filtered bytes per deflate call of a streamed map (1 MiB: 6.2 ms for a 6 MB map against 5.3 in one call, warm).
DEFLATE_PIECE = 1 << 20
_PAST = 1 << 12  # staged bytes past a piece, kept zero
_FILTER_NONE, _FILTER_UP = 0, 2
_ZLIB_HEADER = b"\x78\x5e"  # deflate with a 32 KiB window, "fast" (ISA-L's level 1 writes this header)
_SCRATCH = threading.local()  # each thread's buffer of filtered rows, reused from map to map


def _chunk(kind: bytes, data: bytes | bytearray | memoryview) -> bytes:
    crc = _crc32()(data, _crc32()(kind))
    return b"".join((struct.pack(">I", len(data)), kind, data, struct.pack(">I", crc)))


_IEND = b"\x00\x00\x00\x00IEND\xae\x42\x60\x82"  # the empty IEND chunk: its length, type and CRC-32


@cache
def _crc32() -> Callable[..., int]:
    """CRC-32 (PNG's and zlib's, the same polynomial and value): ISA-L's, ~30x zlib's on a map's IDAT, when
    ``isal`` is installed."""
    fast = isal_zlib()
    return zlib.crc32 if fast is None else fast.crc32


@cache
def isal_zlib() -> ModuleType | None:
    """ISA-L's zlib-compatible module, or None when ``isal`` is not installed."""
    try:
        from isal import isal_zlib as module  # type: ignore[import-untyped,unused-ignore]
    except ImportError:
        return None
    return module


def _deflate(data: memoryview, level: int) -> bytes:
    """A zlib-format stream (header, deflate, Adler-32) of ``data``, as PNG's IDAT holds, in one call."""
    return b"".join(_deflate_pieces(data, level))


def _deflate_pieces(data: memoryview, level: int) -> list[bytes]:
    """`_deflate`'s stream as the pieces the compressor hands out, in order (joined once, into the file's bytes)."""
    packer = _deflater(level)
    if isinstance(packer, _IsalDeflater):
        return [*packer.compress_pieces(data), packer.flush()]
    return [packer.compress(data), packer.flush()]


def _deflater(level: int) -> Any:
    """A streaming compressor of the zlib-format stream `_deflate` makes (level, library and strategy): its
    ``compress`` takes the data in pieces, ``flush`` ends the stream."""
    fast = isal_zlib() if level == FAST_LEVEL else None
    if fast is not None:
        return _IsalDeflater(fast)
    strategy = zlib.Z_RLE if level == FAST_LEVEL else zlib.Z_DEFAULT_STRATEGY
    return zlib.compressobj(level, zlib.DEFLATED, 15, 9, strategy)


class _IsalDeflater:
    """ISA-L's level-1 deflate as a zlib stream whose bytes depend on the data alone.

    ISA-L's level-1 matcher (igzip_icf_body_h1_gr_bt.asm, checked in python-isal 1.9.1's ISA-L and ISA-L's newest
    source) handles the first byte of a stream that has no history on its own, and there it hashes the stream's
    third position from a register that still holds the address of its stream state instead of from the data. That
    position is filed under a slot that depends on where the state lives (python-isal's ``compress`` keeps it on the
    C stack, ``compressobj`` in the heap; both move with address-space layout randomisation), so for a map whose
    first 4-byte groups recur early, one process in a few thousand misses or finds a match near the start and writes
    other bytes for the same filtered rows (issue 22: 1 map in ~12,000 of the 100-crop batch; both streams seen are
    made exactly by placing the state at such an address, and this scheme's bytes were the same at 8,192 addresses
    64 KiB apart). So the first byte goes into a stored deflate block of its own, and the rest to ISA-L as a raw
    deflate stream with that byte as its preset history: ISA-L then starts with history and never takes that path,
    and the decoder has the byte as the window a preset history stands for. The zlib header is the one ISA-L's level
    1 writes, the Adler-32 is taken as the pieces come (~1% of the deflate's time).
    """

    def __init__(self, fast: ModuleType) -> None:
        self._fast = fast
        self._packer: Any = None
        self._adler = 1

    def compress(self, data: memoryview) -> bytes:
        return b"".join(self.compress_pieces(data))

    def compress_pieces(self, data: memoryview) -> list[bytes]:
        """`compress`'s bytes as pieces (the first call's lead, then ISA-L's output as it comes)."""
        if len(data) == 0:
            return []
        self._adler = self._fast.adler32(data, self._adler)
        if self._packer is not None:
            return [bytes(self._packer.compress(data))]
        first = bytes(data[:1])
        self._packer = self._fast.compressobj(1, self._fast.DEFLATED, -15, 8, 0, first)
        return [_ZLIB_HEADER + _stored_block(first), bytes(self._packer.compress(data[1:]))]

    def flush(self) -> bytes:
        if self._packer is None:  # no data: a final empty stored block
            return _ZLIB_HEADER + b"\x01\x00\x00\xff\xff" + struct.pack(">I", self._adler)
        return bytes(self._packer.flush()) + struct.pack(">I", self._adler)


def _idat_chunk(pieces: list[bytes], size: int) -> list[bytes]:
    """The parts of one IDAT chunk holding the ``size`` compressed bytes ``pieces`` (left in their pieces)."""
    crc = _crc32()(b"IDAT")
    for piece in pieces:
        crc = _crc32()(piece, crc)
    return [struct.pack(">I", size), b"IDAT", *pieces, struct.pack(">I", crc)]


def _stored_block(data: bytes) -> bytes:
    """A deflate stored block, not the last one, of at most 65,535 bytes (it starts and ends on a byte boundary)."""
    return b"\x00" + struct.pack("<HH", len(data), len(data) ^ 0xFFFF) + data


def _scratch(size: int, user: object) -> NDArray[np.uint8]:
    """This thread's buffer of at least ``size`` bytes for ``user`` (grown by half again when too small), or a
    new one while another stream of this thread, not yet closed, holds it."""
    holder = getattr(_SCRATCH, "user", None)
    if holder is not None and holder() is not None:
        return np.empty(size, dtype=np.uint8)
    buffer: NDArray[np.uint8] | None = getattr(_SCRATCH, "buffer", None)
    if buffer is None or buffer.size < size:
        buffer = np.empty(max(size, 0 if buffer is None else buffer.size * 3 // 2), dtype=np.uint8)
        _SCRATCH.buffer = buffer
    _SCRATCH.user = weakref.ref(user)
    return buffer[:size]


def _release(user: object) -> None:
    holder = getattr(_SCRATCH, "user", None)
    if holder is not None and holder() is user:
        _SCRATCH.user = None


def _check(dtype: np.dtype[Any], shape: tuple[int, ...], compress_level: int) -> None:
    if dtype not in (np.uint8, np.uint16) or len(shape) not in (2, 3) or 0 in shape:
        raise ValueError(f"PNG pixels must be non-empty uint8/uint16 (H, W) or (H, W, 3); got {dtype} {shape}")
    if len(shape) == 3 and shape[2] != 3:
        raise ValueError(f"PNG colour pixels must have 3 channels; got {shape[2]}")
    if not 0 <= compress_level <= 9:
        raise ValueError(f"compress_level must be 0-9; got {compress_level}")


class PngStream:
    """Encode one PNG of ``shape`` pixels, given as bands of rows in order, into ``sink`` (e.g. a file's
    ``write``): the signature and header at once, the IDAT chunks as they fill (a map of more than `STREAM_ABOVE`
    filtered bytes) or on `close`, then the end.

    A small map's filtered rows are held (in this thread's reused buffer) until `close` deflates them in one call;
    a large one's go to the deflater in `DEFLATE_PIECE` pieces as they come. No band is kept. Bands may have any
    number of rows; the bytes do not depend on them.
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
        self._level = compress_level
        size = self._height * (self._row_bytes + 1)
        self._streamed = size > STREAM_ABOVE
        # streamed: the staged piece (and zeros past the last one) and the deflater; else the map's filtered rows
        self._stage = _scratch(DEFLATE_PIECE + _PAST if self._streamed else size, self)
        if self._streamed:
            self._stage[DEFLATE_PIECE:] = 0  # the bytes past a full piece: fixed, whatever the buffer held before
        self._staged = 0
        self._packer: Any = _deflater(compress_level) if self._streamed else None
        self._pending = bytearray()  # compressed bytes not yet in an IDAT chunk (streamed)
        self._band = np.empty((0, self._row_bytes + 1), dtype=np.uint8)  # a streamed band's filtered rows
        self._previous = np.empty(0, dtype=np.uint8)  # the last row given, for the Up filter
        self._rows_done = 0
        color_type = 2 if len(shape) == 3 else 0
        header = struct.pack(">IIBBBBB", width, self._height, 8 * kind.itemsize, color_type, 0, 0, 0)
        self._head = PNG_SIGNATURE + _chunk(b"IHDR", header)
        if self._streamed:
            sink(self._head)

    def write(self, band: NDArray[np.integer]) -> None:
        """Append rows ``band`` (``(rows, W)`` or ``(rows, W, 3)``, the stream's dtype)."""
        if band.shape[0] == 0:
            return
        done, count = self._rows_done, band.shape[0]
        if done + count > self._height:
            raise ValueError(f"PNG has {self._height} rows; got {done + count}")
        raw = np.ascontiguousarray(band.astype(self._dtype, copy=False)).view(np.uint8).reshape(count, -1)
        if raw.shape[1] != self._row_bytes:
            raise ValueError(f"PNG rows have {self._row_bytes} bytes; got {raw.shape[1]}")
        if not self._streamed:
            rows = self._stage.reshape(self._height, self._row_bytes + 1)[done : done + count]
        else:
            if self._band.shape[0] < count:
                self._band = np.empty((count, self._row_bytes + 1), dtype=np.uint8)
            rows = self._band[:count]
        rows[:, 0] = _FILTER_UP
        if done == 0:
            rows[0, 0] = _FILTER_NONE
            rows[0, 1:] = raw[0]
        else:  # the row above is the last one given: unfiltered, it is the sum of the filtered ones above it
            np.subtract(raw[0], self._previous, out=rows[0, 1:])  # modulo 256, as the Up filter is defined
        np.subtract(raw[1:], raw[:-1], out=rows[1:, 1:])
        self._previous = raw[-1].copy()
        self._rows_done += count
        if self._streamed:
            self._feed(rows.reshape(-1))

    def _feed(self, filtered: NDArray[np.uint8]) -> None:
        """Stage filtered bytes; deflate each full piece of `DEFLATE_PIECE` bytes (a fixed cut: same bytes out)."""
        at = 0
        while at < filtered.size:
            take = min(DEFLATE_PIECE - self._staged, filtered.size - at)
            self._stage[self._staged : self._staged + take] = filtered[at : at + take]
            self._staged += take
            at += take
            if self._staged == DEFLATE_PIECE:
                self._pending += self._packer.compress(self._stage[:DEFLATE_PIECE].data)
                self._staged = 0
                self._emit(final=False)

    def _emit(self, *, final: bool) -> None:
        """Write the pending compressed bytes as IDAT chunks of exactly `IDAT_SIZE` (all of them when ``final``)."""
        pending = self._pending
        cut = len(pending) if final else len(pending) - len(pending) % IDAT_SIZE
        view = memoryview(pending)
        for start in range(0, cut, IDAT_SIZE):
            self._sink(_chunk(b"IDAT", view[start : min(start + IDAT_SIZE, cut)]))
        view.release()
        del pending[:cut]

    def close(self) -> None:
        """Deflate what is left and write the last IDAT chunks and IEND; every row must have been given."""
        if self._rows_done != self._height:
            raise ValueError(f"PNG has {self._height} rows; {self._rows_done} were given")
        if self._streamed:
            self._stage[self._staged :] = 0  # what a deflater might read past the last piece: fixed
            self._pending += self._packer.compress(self._stage[: self._staged].data)
            self._pending += self._packer.flush()
            _release(self)
            self._emit(final=True)
        else:
            pieces = _deflate_pieces(self._stage.data, self._level)
            _release(self)
            size = sum(len(piece) for piece in pieces)
            if size <= IDAT_SIZE:  # the whole file at once: the compressed bytes copied once, one write
                self._sink(b"".join([self._head, *_idat_chunk(pieces, size), _IEND]))
                return
            self._sink(self._head)
            compressed = memoryview(b"".join(pieces))
            del pieces
            for start in range(0, size, IDAT_SIZE):
                self._sink(_chunk(b"IDAT", compressed[start : start + IDAT_SIZE]))
        self._sink(_IEND)


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
