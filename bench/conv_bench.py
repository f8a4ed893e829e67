"""Convolution and pooling micro-benchmarks: featmap against the peers installed here, in one run.

    python bench/conv_bench.py            # 2048×2048 float32, as in the issue's table
    python bench/conv_bench.py --size 1024

Peers: scipy.ndimage (always), OpenCV (``pip install opencv-python-headless``) and PyTorch CPU
(``pip install torch``) when importable. Each cell is the median of ``--repeat`` runs, in ms; the ratio
column is featmap's time over the fastest peer's (below 1 means featmap is faster).
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import time
from collections.abc import Callable

import numpy as np
from PIL import Image
from scipy import ndimage

from featmap import conv2d, pool2d
from featmap.generators import gaussian

try:
    import cv2
except ImportError:  # optional peer
    cv2 = None
try:
    import torch
    import torch.nn.functional as F
except ImportError:  # optional peer
    torch = None


def timed(func: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    n, rep = args.size, args.repeat
    if torch is not None:
        torch.set_num_threads(os.cpu_count() or 1)
    rng = np.random.default_rng(0)
    gray = rng.random((n, n), dtype=np.float32)
    rgb = rng.random((n, n, 3), dtype=np.float32)
    k3 = rng.standard_normal((3, 3)).astype(np.float32)
    k31 = rng.standard_normal((31, 31)).astype(np.float32)
    g15 = gaussian(size=15, sigma=2.5).astype(np.float32)
    bank = rng.standard_normal((32, 3, 3, 3)).astype(np.float32)
    stack = rng.random((n, n, 8), dtype=np.float32)
    smooth = ndimage.gaussian_filter(gray, 4)  # a feature-map-like image: noise compresses like nothing real
    edges = np.abs(ndimage.sobel(smooth))
    png = np.uint8(np.rint(edges / edges.max() * 255))

    def t_gray(k: np.ndarray) -> object:
        return torch.from_numpy(gray)[None, None], torch.from_numpy(k)[None, None]

    rows: list[tuple[str, Callable[[], object], dict[str, Callable[[], object]]]] = []
    peers: dict[str, Callable[[], object]]

    peers = {"scipy": lambda: ndimage.correlate(gray, k3, mode="constant")}
    if cv2 is not None:
        peers["opencv"] = lambda: cv2.filter2D(gray, -1, k3, borderType=cv2.BORDER_CONSTANT)
    if torch is not None:
        x, w = t_gray(k3)
        peers["torch"] = lambda x=x, w=w: F.conv2d(x, w, padding=1)
    rows.append(("3×3, gray, stride 1", lambda: conv2d(gray, k3, padding="same"), peers))

    peers = {"scipy": lambda: [ndimage.correlate(rgb[..., c], k3, mode="constant") for c in range(3)]}
    if cv2 is not None:
        peers["opencv"] = lambda: cv2.filter2D(rgb, -1, k3, borderType=cv2.BORDER_CONSTANT)
    if torch is not None:
        xr = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))[None]
        wr = torch.from_numpy(np.repeat(k3[None, None], 3, axis=0))
        peers["torch"] = lambda: F.conv2d(xr, wr, padding=1, groups=3)
    rows.append(("3×3, RGB per channel", lambda: conv2d(rgb, k3, padding="same"), peers))

    peers = {"scipy": lambda: ndimage.correlate(gray, k31, mode="constant")} if n <= 1024 else {}
    if cv2 is not None:
        peers["opencv"] = lambda: cv2.filter2D(gray, -1, k31, borderType=cv2.BORDER_CONSTANT)
    if torch is not None:
        x, w = t_gray(k31)
        peers["torch"] = lambda x=x, w=w: F.conv2d(x, w, padding=15)
    rows.append(("31×31, gray", lambda: conv2d(gray, k31, padding="same"), peers))

    col = g15[:, 7] / g15[:, 7].sum()
    peers = {
        "scipy": lambda: ndimage.correlate1d(
            ndimage.correlate1d(gray, col, 0, mode="constant"), col, 1, mode="constant"
        )
    }
    if cv2 is not None:
        peers["opencv"] = lambda: cv2.sepFilter2D(gray, -1, col, col, borderType=cv2.BORDER_CONSTANT)
    if torch is not None:
        x, w = t_gray(g15)
        peers["torch"] = lambda x=x, w=w: F.conv2d(x, w, padding=7)
    rows.append(("separable Gaussian 15, gray", lambda: conv2d(gray, g15, padding="same"), peers))

    peers = {"scipy": lambda: ndimage.correlate(gray, k3, mode="constant")[::2, ::2]}
    if cv2 is not None:
        peers["opencv"] = lambda: cv2.filter2D(gray, -1, k3, borderType=cv2.BORDER_CONSTANT)[::2, ::2]
    if torch is not None:
        x, w = t_gray(k3)
        peers["torch"] = lambda x=x, w=w: F.conv2d(x, w, stride=2, padding=1)
    rows.append(("3×3, gray, stride 2", lambda: conv2d(gray, k3, stride=2, padding="same"), peers))

    flipped = np.ascontiguousarray(bank[:, :, ::-1, ::-1])
    peers = {}
    if n <= 1024:
        peers["scipy"] = lambda: [
            sum(ndimage.correlate(rgb[..., c], flipped[f, c], mode="constant") for c in range(3)) for f in range(32)
        ]
    if cv2 is not None:
        peers["opencv"] = lambda: [
            sum(
                cv2.filter2D(np.ascontiguousarray(rgb[..., c]), -1, flipped[f, c], borderType=cv2.BORDER_CONSTANT)
                for c in range(3)
            )
            for f in range(32)
        ]
    if torch is not None:
        xr = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))[None]
        wb = torch.from_numpy(flipped)
        peers["torch"] = lambda: F.conv2d(xr, wb, padding=1)
    rows.append(("bank of 32 3×3 on RGB (true conv)", lambda: conv2d(rgb, bank, padding="same", flip=True), peers))

    def strided_view_pool() -> object:
        return stack.reshape(n // 2, 2, n // 2, 2, 8).max(axis=(1, 3))

    peers = {"numpy reshape-max": strided_view_pool}
    if torch is not None:
        xs = torch.from_numpy(np.ascontiguousarray(stack.transpose(2, 0, 1)))[None]
        peers["torch"] = lambda: F.max_pool2d(xs, 2)
    rows.append(("2×2 max pool, 8 maps", lambda: pool2d(stack, 2), peers))

    def encode(level: int) -> object:
        buf = io.BytesIO()
        Image.fromarray(png).save(buf, format="PNG", compress_level=level)
        return buf

    peers = {"pillow level 6": lambda: encode(6)}
    if cv2 is not None:
        peers["opencv imencode"] = lambda: cv2.imencode(".png", png)
    rows.append(("PNG encode, 8-bit (featmap: level 1)", lambda: encode(1), peers))

    print(
        f"{n}×{n} float32, median of {rep}; peers: scipy" + (", opencv" if cv2 else "") + (", torch" if torch else "")
    )
    print(f"{'work':40s} {'featmap':>9s}   peers (ms)                                   ratio")
    times = {}
    for name, ours, peer_funcs in rows:
        mine = timed(ours, rep)
        times[name] = mine
        measured = {label: timed(f, rep) for label, f in peer_funcs.items()}
        best = min(measured.values()) if measured else float("nan")
        peer_text = ", ".join(f"{label} {ms:.1f}" for label, ms in measured.items())
        print(f"{name:40s} {mine:9.1f}   {peer_text:45s} {mine / best:6.2f}")
    print(f"stride 2 / stride 1 time: {times['3×3, gray, stride 2'] / times['3×3, gray, stride 1']:.2f}")


if __name__ == "__main__":
    main()
