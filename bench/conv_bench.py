"""Convolution, pooling and PNG micro-benchmarks: featmap against the peers installed here, in one run.

    python bench/conv_bench.py            # 2048×2048 float32, as in issue 5's table
    python bench/conv_bench.py --size 1024 --repeat 3

Peers: scipy.ndimage and numpy (always), OpenCV (``opencv-python-headless``, a featmap dependency),
PyTorch CPU (``pip install torch``) and Pillow when importable. Each cell is the median of
``--repeat`` runs in ms, every library at its default thread count. The last column is featmap's
time over a peer's, with issue 5's target for it (at most that ratio), or over the fastest peer.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from PIL import Image
from scipy import ndimage

from featmap import conv2d, pool2d
from featmap.io.pngencode import encode_png
from featmap.kernels.generators import gaussian

try:
    import cv2
except ImportError:  # optional peer
    cv2 = None
try:
    import torch
    import torch.nn.functional as F
except ImportError:  # optional peer
    torch = None

Work = Callable[[], object]


@dataclass
class Row:
    name: str
    ours: Work
    peers: dict[str, Work] = field(default_factory=dict)
    targets: list[tuple[str, float]] = field(default_factory=list)  # (peer, featmap/peer at most)


def timed(func: Work, repeat: int) -> float:
    func()  # warm up: first-call imports, caches, page faults of the inputs
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def single_kernel_rows(gray: np.ndarray, rgb: np.ndarray, rng: np.random.Generator, n: int) -> list[Row]:
    rows = []
    planes = [np.ascontiguousarray(rgb[..., c]) for c in range(3)]
    k15 = gaussian(size=15, sigma=2.5).astype(np.float32)
    kernels = {
        "3×3": rng.standard_normal((3, 3)).astype(np.float32),
        "5×5": rng.standard_normal((5, 5)).astype(np.float32),
        "separable Gaussian 15": k15,
        "31×31": rng.standard_normal((31, 31)).astype(np.float32),
    }
    for label, k in kernels.items():
        pad = k.shape[0] // 2
        col = k15[:, 7] / k15[:, 7].sum()
        separable = label.startswith("separable")
        for image, colour in ((gray, "gray"), (rgb, "RGB per channel")):
            peers: dict[str, Work] = {}
            if k.shape[0] <= 15 or n <= 1024:  # scipy's 31×31 takes seconds
                if separable:
                    peers["scipy"] = lambda image=image, col=col: ndimage.correlate1d(
                        ndimage.correlate1d(image, col, 0, mode="constant"), col, 1, mode="constant"
                    )
                elif image.ndim == 2:
                    peers["scipy"] = lambda k=k: ndimage.correlate(gray, k, mode="constant")
                else:
                    peers["scipy"] = lambda k=k: [ndimage.correlate(p, k, mode="constant") for p in planes]
            if cv2 is not None:
                if separable:
                    peers["opencv"] = lambda image=image, col=col: cv2.sepFilter2D(
                        image, -1, col, col, borderType=cv2.BORDER_CONSTANT
                    )
                else:
                    peers["opencv"] = lambda image=image, k=k: cv2.filter2D(
                        image, -1, k, borderType=cv2.BORDER_CONSTANT
                    )
            if torch is not None and (image.ndim == 2 or k.shape[0] <= 5 or n <= 1024):  # grouped large: minutes
                channels = 1 if image.ndim == 2 else 3
                xt = torch.from_numpy(np.ascontiguousarray(image.reshape(n, n, channels).transpose(2, 0, 1)))[None]
                wt = torch.from_numpy(np.repeat(k[None, None], channels, axis=0))
                peers["torch"] = lambda xt=xt, wt=wt, pad=pad, channels=channels: F.conv2d(
                    xt, wt, padding=pad, groups=channels
                )
            rows.append(
                Row(
                    f"{label}, {colour}",
                    lambda image=image, k=k: conv2d(image, k, padding="same"),
                    peers,
                    [("opencv", 1.5)],
                )
            )
    return rows


def stride_rows(gray: np.ndarray, rng: np.random.Generator) -> tuple[list[Row], list[tuple[str, str, str]]]:
    rows, pairs = [], []
    for size in (3, 7):
        k = rng.standard_normal((size, size)).astype(np.float32)
        peers: dict[str, Work] = {"scipy": lambda k=k: ndimage.correlate(gray, k, mode="constant")[::2, ::2]}
        if cv2 is not None:
            peers["opencv"] = lambda k=k: cv2.filter2D(gray, -1, k, borderType=cv2.BORDER_CONSTANT)[::2, ::2].copy()
        if torch is not None:
            xt = torch.from_numpy(gray)[None, None]
            peers["torch"] = lambda xt=xt, k=k, size=size: F.conv2d(
                xt, torch.from_numpy(k)[None, None], stride=2, padding=size // 2
            )
        one, two = f"{size}×{size}, gray, stride 1", f"{size}×{size}, gray, stride 2"
        if size != 3:
            rows.append(Row(one, lambda k=k: conv2d(gray, k, padding="same")))
        rows.append(Row(two, lambda k=k: conv2d(gray, k, stride=2, padding="same"), peers))
        pairs.append((f"{size}×{size}", one if size != 3 else "3×3, gray", two))
    return rows, pairs


def bank_rows(gray: np.ndarray, rgb: np.ndarray, rng: np.random.Generator, n: int) -> list[Row]:
    rows = []
    planes = [np.ascontiguousarray(rgb[..., c]) for c in range(3)]
    for count in (8, 32):
        for image, channels, colour in ((gray, 1, "gray"), (rgb, 3, "RGB")):
            bank = rng.standard_normal((count, channels, 3, 3)).astype(np.float32)
            sources = [gray] if channels == 1 else planes
            peers: dict[str, Work] = {}
            if cv2 is not None:
                peers["opencv loop"] = lambda bank=bank, sources=sources: [
                    sum(
                        cv2.filter2D(src, -1, bank[f, c], borderType=cv2.BORDER_CONSTANT)
                        for c, src in enumerate(sources)
                    )
                    for f in range(len(bank))
                ]
            if torch is not None:
                xt = torch.from_numpy(np.ascontiguousarray(image.reshape(n, n, channels).transpose(2, 0, 1)))[None]
                peers["torch"] = lambda xt=xt, bank=bank: F.conv2d(xt, torch.from_numpy(bank), padding=1)
            rows.append(
                Row(
                    f"bank of {count} 3×3, {colour} (true conv)",
                    lambda image=image, bank=bank: conv2d(image, bank, padding="same"),
                    peers,
                    [("torch", 1 / 3), ("opencv loop", 1 / 1.5)],
                )
            )
    return rows


def pool_and_png_rows(stack: np.ndarray, png: np.ndarray, n: int) -> list[Row]:
    def strided_views() -> object:
        return np.maximum(
            np.maximum(stack[0::2, 0::2], stack[0::2, 1::2]), np.maximum(stack[1::2, 0::2], stack[1::2, 1::2])
        )

    peers: dict[str, Work] = {
        "numpy strided views": strided_views,
        "numpy reshape-max": lambda: stack.reshape(n // 2, 2, n // 2, 2, 8).max(axis=(1, 3)),
    }
    if torch is not None:
        xs = torch.from_numpy(np.ascontiguousarray(stack.transpose(2, 0, 1)))[None]
        peers["torch"] = lambda: F.max_pool2d(xs, 2)
    rows = [Row("2×2 max pool, 8 maps", lambda: pool2d(stack, 2), peers, [("numpy strided views", 1.5)])]

    def pillow(level: int) -> object:
        buf = io.BytesIO()
        Image.fromarray(png).save(buf, format="PNG", compress_level=level)
        return buf

    peers = {"pillow level 1": lambda: pillow(1), "pillow level 6": lambda: pillow(6)}
    if cv2 is not None:
        peers["opencv imencode"] = lambda: cv2.imencode(".png", png)
    rows.append(Row("PNG encode, 8-bit map (level 1)", lambda: encode_png(png, 1), peers))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    run(args.size, args.repeat)


def run(n: int, repeat: int) -> None:
    if torch is not None:
        torch.set_num_threads(os.cpu_count() or 1)
    rng = np.random.default_rng(0)
    gray = rng.random((n, n), dtype=np.float32)
    rgb = rng.random((n, n, 3), dtype=np.float32)
    stack = rng.random((n, n, 8), dtype=np.float32)
    smooth = ndimage.gaussian_filter(gray, 4)  # a feature-map-like image: noise compresses like nothing real
    edges = np.abs(ndimage.sobel(smooth))
    png = np.uint8(np.rint(edges / edges.max() * 255))
    strides, pairs = stride_rows(gray, rng)
    rows = (
        single_kernel_rows(gray, rgb, rng, n)
        + strides
        + bank_rows(gray, rgb, rng, n)
        + pool_and_png_rows(stack, png, n)
    )

    peers_seen = ["scipy", "numpy"] + [name for name, mod in (("opencv", cv2), ("torch", torch)) if mod is not None]
    print(f"{n}×{n} float32, median of {repeat} (ms); peers: {', '.join(peers_seen)}")
    print(f"{'work':38s} {'featmap':>8s}  {'peers':58s} featmap / peer (issue 5's target)")
    times = {}
    for row in rows:
        mine = timed(row.ours, repeat)
        times[row.name] = mine
        measured = {label: timed(f, repeat) for label, f in row.peers.items()}
        peer_text = ", ".join(f"{label} {ms:.1f}" for label, ms in measured.items())
        verdicts = []
        for peer, limit in row.targets:
            if peer in measured:
                ratio = mine / measured[peer]
                verdicts.append(f"{ratio:.2f} of {peer} ({'ok' if ratio <= limit else 'MISS'} ≤{limit:.2f})")
        if not verdicts and measured:
            verdicts.append(f"{mine / min(measured.values()):.2f} of best")
        ratio_text = "; ".join(verdicts)
        print(f"{row.name:38s} {mine:8.1f}  {peer_text:58s} {ratio_text}")
    for label, one, two in pairs:
        ratio = times[two] / times[next(k for k in times if k.startswith(one))]
        print(f"stride 2 / stride 1, {label}: {ratio:.2f} ({'ok' if ratio <= 0.35 else 'MISS'} ≤0.35)")


if __name__ == "__main__":
    main()
