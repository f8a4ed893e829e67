"""Same map, same PNG bytes: in fresh processes whose heaps hold different leftovers, in any order, whole or
streamed in bands of any size, with ISA-L's deflate and zlib's (issue 22, item 3); small maps deflated in one
call and a large one deflated in pieces as it comes (`featmap.io.pngencode.STREAM_ABOVE`)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from featmap.io import pngencode as png

# A child process: fill and free heap blocks of a given byte (what a busy helper's heap looks like), then
# encode the maps in the given order, whole or in bands, and print each map's digest.
_CHILD = r"""
import ctypes, hashlib, json, sys
import numpy as np
fill, order, band, deflater = int(sys.argv[1]), json.loads(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
blocks = [libc.malloc(size) for size in (1 << 12, 1 << 16, 1 << 18, 3 << 20)]
for block, size in zip(blocks, (1 << 12, 1 << 16, 1 << 18, 3 << 20)):
    ctypes.memset(block, fill, size)
for block in blocks[::2]:
    libc.free(ctypes.c_void_p(block))
junk = [np.full(int(n), fill, np.uint8) for n in np.linspace(1000, 900_000, 1 + fill % 7)]
del junk[::2]
from featmap.io import pngencode as png
if deflater == "zlib":
    png.isal_zlib = lambda: None
sys.path.insert(0, sys.argv[5])
from test_png_determinism import maps
all_maps = maps()
digests = {}
for i in order:
    pixels = all_maps[i]
    if band == 0:
        data = png.encode_png(pixels)
    else:
        parts = []
        stream = png.PngStream(parts.append, pixels.shape, pixels.dtype)
        for start in range(0, pixels.shape[0], band):
            stream.write(pixels[start : start + band])
        stream.close()
        data = b"".join(parts)
    digests[i] = hashlib.sha256(data).hexdigest()
print(json.dumps(digests))
"""


def maps() -> list[np.ndarray]:
    """Feature-map-like pixels: ramps, flat regions with edges, sparse peaks, noise, 16-bit and RGB."""
    rng = np.random.default_rng(22)
    out: list[np.ndarray] = []
    for h, w in [(512, 512), (37, 1001), (300, 299), (1, 5000)]:
        ramp = np.cumsum(rng.integers(-2, 3, (h, w)), axis=1)
        out.append((ramp % 256).astype(np.uint8))
        blocks = (np.add.outer(np.arange(h) // 9, np.arange(w) // 13) * 37 % 256).astype(np.uint8)
        out.append(blocks)
        sparse = np.zeros((h, w), np.uint8)
        sparse[rng.integers(0, h, 50), rng.integers(0, w, 50)] = 255
        out.append(sparse)
    out.append(rng.integers(0, 256, (400, 700), dtype=np.uint8))
    out.append(rng.integers(0, 65536, (130, 170), dtype=np.uint16))
    out.append((np.cumsum(rng.integers(0, 3, (200, 230, 3)), axis=1) % 256).astype(np.uint8))
    # streamed (more than STREAM_ABOVE filtered bytes): deflated in fixed pieces as the bands come
    big = (np.cumsum(rng.integers(-2, 3, (1500, 3000)), axis=1) % 256).astype(np.uint8)
    big[::50] = rng.integers(0, 256, (30, 3000), dtype=np.uint8)
    out.append(big)
    return out


def _child(fill: int, order: list[int], band: int, deflater: str) -> dict[int, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MALLOC_PERTURB_", "GLIBC_TUNABLES")}
    env["MALLOC_PERTURB_"] = str(fill)  # malloc hands out blocks filled with this byte's complement
    env["GLIBC_TUNABLES"] = f"glibc.malloc.mmap_threshold={1 << (16 + fill % 9)}"  # large blocks from the heap too
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(fill), json.dumps(order), str(band), deflater, os.path.dirname(__file__)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=True,
    )
    return {int(k): v for k, v in json.loads(done.stdout).items()}


@pytest.mark.parametrize("deflater", ["isal", "zlib"])
def test_same_bytes_in_fresh_processes_any_order_and_bands(deflater: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if deflater == "isal" and png.isal_zlib() is None:
        pytest.skip("isal not installed")
    if deflater == "zlib":
        monkeypatch.setattr(png, "isal_zlib", lambda: None)
    made = maps()
    assert made[-1].size + made[-1].shape[0] > png.STREAM_ABOVE >= made[0].size + made[0].shape[0]  # both kinds
    here = {i: hashlib.sha256(png.encode_png(m)).hexdigest() for i, m in enumerate(made)}
    count = len(here)
    forward, backward = list(range(count)), list(reversed(range(count)))
    shuffled = [int(i) for i in np.random.default_rng(5).permutation(count)]
    runs = [(1, forward, 0), (170, backward, 7), (255, shuffled, 64), (3, forward, 1000)]
    for fill, order, band in runs:
        assert _child(fill, order, band, deflater) == here, (fill, band)


def _encode_in_thread(pixels: np.ndarray, stack_size: int, depth: int) -> str:
    """The digest of ``pixels``' PNG made in a new thread with ``stack_size`` bytes of stack, ``depth`` Python
    frames down (ISA-L's one-call deflate keeps its ~82 KB stream state on the calling thread's C stack)."""
    result: list[str] = []

    def down(level: int) -> None:
        if level:
            down(level - 1)
        else:
            result.append(hashlib.sha256(png.encode_png(pixels)).hexdigest())

    previous = threading.stack_size(stack_size)
    try:
        worker = threading.Thread(target=down, args=(depth,))
        worker.start()
        worker.join()
    finally:
        threading.stack_size(previous)
    return result[0]


@pytest.mark.parametrize("deflater", ["isal", "zlib"])
def test_same_bytes_in_any_thread_stack_and_concurrency(deflater: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Same bytes from the main thread, from threads with small and large stacks at different depths (where the
    deflater's state and the thread's reused buffer of filtered rows live), and from two threads encoding
    different maps at once while a third keeps taking the GIL (the deflate releases it mid-map)."""
    if deflater == "isal" and png.isal_zlib() is None:
        pytest.skip("isal not installed")
    if deflater == "zlib":
        monkeypatch.setattr(png, "isal_zlib", lambda: None)
    made = maps()
    here = [hashlib.sha256(png.encode_png(m)).hexdigest() for m in made]
    for stack_size, depth in [(256 << 10, 3), (8 << 20, 150)]:
        assert [_encode_in_thread(m, stack_size, depth) for m in made] == here, (stack_size, depth)
    stop = threading.Event()
    busy = threading.Thread(target=lambda: [sum(range(200)) for _ in iter(stop.is_set, True)])
    busy.start()
    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            for seed in range(3):
                order = [int(i) for i in np.random.default_rng(seed).permutation(len(made))]
                digests = pool.map(lambda i: hashlib.sha256(png.encode_png(made[i])).hexdigest(), order)
                got = dict(zip(order, digests, strict=True))
                assert [got[i] for i in range(len(made))] == here
    finally:
        stop.set()
        busy.join()


def _zlib_stream(data: bytes) -> bytes:
    """A PNG's IDAT chunks' bytes joined."""
    at, out = 8, bytearray()
    while at < len(data):
        length = int.from_bytes(data[at : at + 4], "big")
        if data[at + 4 : at + 8] == b"IDAT":
            out += data[at + 8 : at + 8 + length]
        at += 12 + length
    return bytes(out)


def test_isal_never_starts_a_stream_without_history() -> None:
    """ISA-L's level-1 matcher files a history-less stream's third position under a slot taken from the address
    of its stream state (`featmap.io.pngencode._IsalDeflater`), so its bytes differ between processes for ~1 map
    in 10^4: every ISA-L stream, one-call or streamed, starts with its first byte in a stored block of its own,
    the rest deflated with that byte as history, and decodes to the filtered rows with a right Adler-32."""
    if png.isal_zlib() is None:
        pytest.skip("isal not installed")
    for pixels in (maps()[0], maps()[-1]):  # one call and streamed
        stream = _zlib_stream(png.encode_png(pixels))
        assert stream[:2] == b"\x78\x5e"  # deflate, 32 KiB window, fast: ISA-L level 1's header
        assert stream[2:8] == b"\x00\x01\x00\xfe\xff\x00"  # stored, not last, 1 byte: row 0's filter type (None)
        rows = np.concatenate([np.zeros((pixels.shape[0], 1), np.uint8), pixels.reshape(pixels.shape[0], -1)], 1)
        rows[1:, 0] = 2  # the Up filter below row 0
        rows[1:, 1:] = pixels.reshape(pixels.shape[0], -1)[1:] - pixels.reshape(pixels.shape[0], -1)[:-1]
        assert zlib.decompress(stream) == rows.tobytes()  # zlib checks the Adler-32 too
        inflater = zlib.decompressobj(-15, zdict=b"\x00")  # the rest alone, with the first byte as history
        assert inflater.decompress(stream[8:-4]) == rows.tobytes()[1:] and inflater.eof
