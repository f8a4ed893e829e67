"""featmap.io.pngencode, the PNG encoder: every depth and colour type decodes (Pillow, OpenCV) to the pixels written."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from featmap.io import pngencode as png
from featmap.io.pngencode import PNG_SIGNATURE, encode_png


@pytest.fixture(params=["isal", "zlib"])
def deflate(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with ISA-L's deflate (when installed) and with zlib's."""
    if request.param == "zlib":
        monkeypatch.setattr(png, "isal_zlib", lambda: None)
    elif png.isal_zlib() is None:
        pytest.skip("isal not installed")
    return str(request.param)


def smooth(rng: np.random.Generator, shape: tuple[int, ...], top: int) -> np.ndarray:
    """A feature-map-like image: runs and ramps rather than noise."""
    ramp = np.cumsum(rng.random(shape), axis=1)
    return np.rint(ramp / ramp.max() * top)


@pytest.mark.parametrize("level", range(10))
@pytest.mark.parametrize("shape", [(1, 1), (5, 1), (1, 7), (37, 53)])
def test_gray_8bit_decodes_exactly(level: int, shape: tuple[int, int], rng: np.random.Generator, deflate: str) -> None:
    pixels = smooth(rng, shape, 255).astype(np.uint8)
    data = encode_png(pixels, level)
    assert data.startswith(PNG_SIGNATURE)
    decoded = Image.open(io.BytesIO(data))
    assert decoded.mode == "L" and decoded.size == (shape[1], shape[0])
    np.testing.assert_array_equal(np.asarray(decoded), pixels)


@pytest.mark.parametrize("level", [0, 1, 9])
def test_16bit_and_colour_decode_exactly(level: int, rng: np.random.Generator, deflate: str) -> None:
    gray16 = smooth(rng, (23, 31), 65535).astype(np.uint16)
    gray16[0, :3] = [0, 1, 65535]  # both bytes of a sample, in PNG's big-endian order
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(encode_png(gray16, level)))), gray16)
    rgb8 = smooth(rng, (19, 17, 3), 255).astype(np.uint8)
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(encode_png(rgb8, level)))), rgb8)
    rgb16 = smooth(rng, (19, 17, 3), 65535).astype(np.uint16)
    decoded = cv2.imdecode(np.frombuffer(encode_png(rgb16, level), np.uint8), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(decoded[:, :, ::-1], rgb16)


def test_levels_trade_size(deflate: str) -> None:
    blocks = np.add.outer(np.arange(128) // 16, np.arange(128) // 16)  # flat regions, as a pooled map has
    pixels = (blocks * 17).astype(np.uint8)
    sizes = {level: len(encode_png(pixels, level)) for level in (0, 1, 9)}
    assert sizes[0] > pixels.size  # stored: every byte plus a filter byte per row
    assert sizes[1] < sizes[0] / 2 and sizes[9] < sizes[0] / 2


@pytest.mark.parametrize(
    ("pixels", "level", "message"),
    [
        (np.zeros((2, 2), np.float32), 1, "uint8/uint16"),
        (np.zeros((2, 2, 4), np.uint8), 1, "3 channels"),
        (np.zeros((0, 2), np.uint8), 1, "non-empty"),
        (np.zeros((2, 2), np.uint8), 10, "0-9"),
    ],
)
def test_refuses_what_png_cannot_hold(pixels: np.ndarray, level: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        encode_png(pixels, level)


@pytest.mark.parametrize("bands", [[37], [7, 30], [1, 1, 1, 34], [36, 1]])
def test_streamed_bands_give_the_whole_map_bytes(bands: list[int], rng: np.random.Generator, deflate: str) -> None:
    pixels = smooth(rng, (37, 2000), 255).astype(np.uint8)  # 74 KB of rows: more than one deflate call
    parts: list[bytes] = []
    stream = png.PngStream(parts.append, pixels.shape, np.uint8)
    start = 0
    for rows in bands:
        stream.write(pixels[start : start + rows])
        start += rows
    stream.close()
    assert b"".join(parts) == encode_png(pixels)


def test_large_map_is_cut_into_fixed_idat_chunks(rng: np.random.Generator, deflate: str) -> None:
    pixels = rng.integers(0, 65536, (300, 600, 3)).astype(np.uint16)  # noise: ~1 MB compressed
    data = encode_png(pixels)
    sizes, at = [], 8
    while at < len(data):
        length = int.from_bytes(data[at : at + 4], "big")
        if data[at + 4 : at + 8] == b"IDAT":
            sizes.append(length)
        at += 12 + length
    assert len(sizes) > 2 and set(sizes[:-1]) == {png.IDAT_SIZE} and 0 < sizes[-1] <= png.IDAT_SIZE
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(decoded[:, :, ::-1], pixels)


@pytest.mark.parametrize("level", [0, 1, 6])
def test_large_map_is_deflated_as_it_comes_and_decodes_exactly(
    level: int, rng: np.random.Generator, deflate: str
) -> None:
    """A map of more than STREAM_ABOVE filtered bytes goes to the deflater in DEFLATE_PIECE pieces as its bands
    come: it decodes to its pixels (Pillow and OpenCV), its IDAT chunks are cut at IDAT_SIZE, and any bands give
    the same bytes (pieces and chunks are cut at fixed offsets, never where a band ends)."""
    height, width = 1100, 4001  # 4.4 MB of filtered rows: 4 full pieces and a short one
    assert height * (width + 1) > png.STREAM_ABOVE
    pixels = smooth(rng, (height, width), 255).astype(np.uint8)
    pixels[::97] = rng.integers(0, 256, (pixels[::97].shape), dtype=np.uint8)  # some noise: many IDAT chunks
    data = encode_png(pixels, level)
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(data))), pixels)
    np.testing.assert_array_equal(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED), pixels)
    sizes = [size for _, size in _idat_offsets(data)]
    assert len(sizes) > 1 and set(sizes[:-1]) == {png.IDAT_SIZE} and 0 < sizes[-1] <= png.IDAT_SIZE
    for bands in ([1, 1099], [64] * 17 + [12], [550, 549, 1]):
        parts: list[bytes] = []
        stream = png.PngStream(parts.append, pixels.shape, np.uint8, level)
        start = 0
        for rows in bands:
            stream.write(pixels[start : start + rows])
            start += rows
        stream.close()
        assert b"".join(parts) == data, bands


def test_small_map_keeps_the_one_call_stream(rng: np.random.Generator, deflate: str) -> None:
    """At most STREAM_ABOVE filtered bytes: the rows are deflated in one call, as `encode_png` always did (the bytes
    of every map a 1024² image makes are unchanged)."""
    import zlib

    height = png.STREAM_ABOVE // 2048
    pixels = smooth(rng, (height, 2047), 255).astype(np.uint8)  # exactly STREAM_ABOVE filtered bytes
    data = encode_png(pixels)
    idat = b"".join(data[at + 8 : at + 8 + size] for at, size in _idat_offsets(data))
    filtered = np.empty((height, 2048), np.uint8)
    filtered[:, 0], filtered[0, 0] = 2, 0
    filtered[0, 1:] = pixels[0]
    np.subtract(pixels[1:], pixels[:-1], out=filtered[1:, 1:])
    assert zlib.decompress(idat) == filtered.tobytes()
    assert idat == png._deflate(memoryview(filtered.reshape(-1)), png.FAST_LEVEL)


def _idat_offsets(data: bytes) -> list[tuple[int, int]]:
    found, at = [], 8
    while at < len(data):
        length = int.from_bytes(data[at : at + 4], "big")
        if data[at + 4 : at + 8] == b"IDAT":
            found.append((at, length))
        at += 12 + length
    return found


def test_stream_refuses_wrong_rows() -> None:
    stream = png.PngStream(lambda _: None, (2, 3), np.uint8)
    with pytest.raises(ValueError, match="3 bytes"):
        stream.write(np.zeros((1, 4), np.uint8))
    with pytest.raises(ValueError, match="2 rows"):
        stream.write(np.zeros((3, 3), np.uint8))
    stream.write(np.zeros((1, 3), np.uint8))
    with pytest.raises(ValueError, match="1 were given"):
        stream.close()


def test_streams_open_at_once_in_one_thread_keep_their_own_rows(rng: np.random.Generator, deflate: str) -> None:
    """The filtered rows live in a per-thread buffer reused from map to map; a second stream opened before the
    first closes gets its own, and a buffer grown by a large map serves a small one after: same bytes."""
    big = rng.integers(0, 256, (300, 400), dtype=np.uint8)
    small = np.cumsum(rng.integers(0, 3, (40, 50)), axis=1).astype(np.uint8)
    alone = {name: encode_png(pixels) for name, pixels in (("big", big), ("small", small))}
    parts: dict[str, list[bytes]] = {"big": [], "small": []}
    first = png.PngStream(parts["big"].append, big.shape, np.uint8)
    second = png.PngStream(parts["small"].append, small.shape, np.uint8)
    for start in range(0, 300, 64):  # interleaved bands
        first.write(big[start : start + 64])
        second.write(small[start // 8 : start // 8 + 8])
    second.write(small[(300 // 64 + 1) * 8 :])
    first.close()
    second.close()
    assert {name: b"".join(chunks) for name, chunks in parts.items()} == alone
    assert encode_png(small) == alone["small"] and encode_png(big) == alone["big"]  # the grown buffer reused
    decoded = cv2.imdecode(np.frombuffer(alone["small"], np.uint8), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(decoded, small)


def test_chunk_crc_is_zlibs_crc32() -> None:
    """The CRC of every chunk (ISA-L's where installed) is zlib's CRC-32 of the chunk type and data, as PNG defines."""
    import struct
    import zlib

    from featmap.io import pngencode

    data = np.random.default_rng(3).integers(0, 256, 300_001, dtype=np.uint8).tobytes()
    for kind, body in ((b"IDAT", data), (b"IEND", b""), (b"IDAT", memoryview(data)[7:70_000])):
        chunk = pngencode._chunk(kind, body)
        assert chunk[:8] == struct.pack(">I", len(body)) + kind and chunk[8:-4] == bytes(body)
        assert struct.unpack(">I", chunk[-4:])[0] == zlib.crc32(bytes(body), zlib.crc32(kind))


def test_a_small_maps_file_is_written_at_once(rng: np.random.Generator, deflate: str) -> None:
    """A map of one IDAT chunk reaches its sink in one piece (one write of the file), the bytes `encode_png` gives:
    its chunks' CRCs are zlib's over the compressed pieces, the IEND chunk the one PNG defines."""
    import zlib

    pixels = smooth(rng, (300, 257), 255).astype(np.uint8)
    parts: list[bytes] = []
    stream = png.PngStream(parts.append, pixels.shape, np.uint8)
    stream.write(pixels[:100])
    stream.write(pixels[100:])
    assert parts == []  # nothing before the end
    stream.close()
    assert len(parts) == 1 and parts[0] == encode_png(pixels)
    at = 8
    while at < len(parts[0]):  # every chunk's CRC-32 over its type and data
        length = int.from_bytes(parts[0][at : at + 4], "big")
        body = parts[0][at + 4 : at + 8 + length]
        assert int.from_bytes(parts[0][at + 8 + length : at + 12 + length], "big") == zlib.crc32(body)
        at += 12 + length
    assert parts[0].endswith(png._chunk(b"IEND", b""))
    np.testing.assert_array_equal(cv2.imdecode(np.frombuffer(parts[0], np.uint8), cv2.IMREAD_UNCHANGED), pixels)
