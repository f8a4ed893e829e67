"""End-to-end batch benchmark: featmap vs a plain Pillow + scipy loop, measured in the same run.

Work per image (issue 4's recipe): decode a 1024×1024 JPEG, convert to gray, apply sobel_x, sobel_y,
laplacian_4 and gaussian_5 (zero padding, 'valid' like scipy's default crop is not used: 'same'),
ReLU, 2×2 max pool, min-max normalise, write 8-bit PNGs.

    python bench/batch_bench.py                # 200 images
    python bench/batch_bench.py --count 40     # quicker

Prints images/s for featmap with -j 1 and -j <cores>, the hand-written loop (Pillow's default PNG
level 6, as such scripts use, and level 1), the ratios, the time split per stage, and the PNG
compression trade-off behind featmap's default level.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps
from scipy import ndimage

from featmap.batch import ApplyJob, OutputOptions, run_batch
from featmap.discover import discover
from featmap.images import load_image, save_png
from featmap.kernels import KernelLibrary
from featmap.layers import Act, Conv2d, Pool2d
from featmap.ops import activate, conv2d, normalize
from featmap.pool import pool2d

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
KERNELS = ["sobel_x", "sobel_y", "laplacian_4", "gaussian_5"]


def make_photos(folder: Path, count: int, size: int = 1024) -> None:
    """Realistic 1024² JPEGs: crops, flips and turns of the two sample photographs, upscaled."""
    sources = [Image.open(SAMPLES / name).convert("RGB") for name in ("coffee.png", "camera.png")]
    rng = np.random.default_rng(0)
    for i in range(count):
        im = sources[i % 2]
        w, h = im.size
        cw, ch = int(w * rng.uniform(0.6, 1.0)), int(h * rng.uniform(0.6, 1.0))
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        crop = im.crop((x, y, x + cw, y + ch)).resize((size, size), Image.Resampling.BICUBIC)
        if i % 3 == 1:
            crop = ImageOps.mirror(crop)
        crop.save(folder / f"photo{i:04d}.jpg", quality=90)


def plain_loop(files: list[Path], out: Path, compress: int | None) -> float:
    """What people write by hand: Pillow decode + scipy.ndimage.correlate + numpy, one image at a time."""
    lib = KernelLibrary()
    weights = [lib[name].weights.astype(np.float64) for name in KERNELS]
    start = time.perf_counter()
    for f in files:
        gray = np.asarray(Image.open(f).convert("L"), dtype=np.float64) / 255.0
        for name, k in zip(KERNELS, weights, strict=True):
            r = np.maximum(ndimage.correlate(gray, k, mode="constant"), 0)
            h, w = r.shape[0] // 2 * 2, r.shape[1] // 2 * 2
            p = r[:h, :w].reshape(h // 2, 2, w // 2, 2).max(axis=(1, 3))
            lo, hi = p.min(), p.max()
            img = Image.fromarray(np.uint8(np.rint((p - lo) / (hi - lo or 1) * 255)))
            target = out / f"{f.stem}_{name}.png"
            img.save(target) if compress is None else img.save(target, compress_level=compress)
    return time.perf_counter() - start


def featmap_batch(folder: Path, out: Path, jobs: int) -> float:
    lib = KernelLibrary()
    job = ApplyJob(
        lib.bank(KERNELS),
        Conv2d(padding="same"),
        Act("relu"),
        Pool2d("max", 2),
        output=OutputOptions(out, png_compress=1),
    )
    items, _, _ = discover([folder])
    start = time.perf_counter()
    report = run_batch(items, job, jobs=jobs)
    assert not report.failed, report.failed
    return time.perf_counter() - start


def stage_split(files: list[Path], out: Path) -> dict[str, float]:
    """Per-stage seconds per image for featmap's pipeline, run in this process."""
    lib = KernelLibrary()
    bank = lib.bank(KERNELS)
    t = dict.fromkeys(("decode + gray", "convolution", "relu + pool", "normalise", "png write"), 0.0)
    for f in files:
        a = time.perf_counter()
        img = load_image(f).pixels
        t["decode + gray"] += time.perf_counter() - a
        for k in bank:
            a = time.perf_counter()
            c = conv2d(img, k.weights, padding="same")
            b = time.perf_counter()
            p = pool2d(activate(c, "relu"), 2)
            d = time.perf_counter()
            n = normalize(p)
            e = time.perf_counter()
            save_png(out / f"{f.stem}_{k.name}.png", n, compress_level=1)
            t["convolution"] += b - a
            t["relu + pool"] += d - b
            t["normalise"] += e - d
            t["png write"] += time.perf_counter() - e
    return {key: value / len(files) for key, value in t.items()}


def png_levels(files: list[Path]) -> list[tuple[int, float, int]]:
    """(level, ms per 512² map, bytes) for a typical pooled edge map."""
    img = load_image(files[0]).pixels
    sobel = [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]
    pooled = pool2d(activate(conv2d(img, sobel, padding="same"), "relu"), 2)
    m = np.uint8(np.rint(normalize(pooled)[..., 0] * 255))
    rows = []
    for level in (0, 1, 3, 6, 9):
        buf = io.BytesIO()
        start = time.perf_counter()
        for _ in range(5):
            buf = io.BytesIO()
            Image.fromarray(m).save(buf, format="PNG", compress_level=level)
        rows.append((level, (time.perf_counter() - start) / 5 * 1000, buf.tell()))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="featmap-bench-"))
    try:
        photos = work / "photos"
        photos.mkdir()
        make_photos(photos, args.count)
        files = sorted(photos.glob("*.jpg"))
        n = len(files)
        print(f"{n} JPEGs of 1024×1024, kernels {', '.join(KERNELS)}, same padding, ReLU, 2×2 max pool, 8-bit PNG")
        results = {}
        for label, run in (
            ("featmap -j 1", lambda: featmap_batch(photos, work / "f1", 1)),
            (f"featmap -j {args.jobs}", lambda: featmap_batch(photos, work / "fj", args.jobs)),
            ("plain Pillow+scipy loop (PNG level 6)", lambda: plain_loop(files, _fresh(work / "p6"), None)),
            ("plain Pillow+scipy loop (PNG level 1)", lambda: plain_loop(files, _fresh(work / "p1"), 1)),
        ):
            seconds = run()
            results[label] = n / seconds
            print(f"  {label:40s} {n / seconds:7.2f} img/s  ({seconds:.1f} s)")
        base = results["plain Pillow+scipy loop (PNG level 6)"]
        one, many = results["featmap -j 1"], results[f"featmap -j {args.jobs}"]
        print(
            f"ratios: featmap -j 1 / plain = {one / base:.2f}x; featmap -j {args.jobs} / plain = {many / base:.2f}x; "
            f"-j {args.jobs} / -j 1 = {many / one:.2f}x"
        )
        split = stage_split(files[: min(n, 20)], _fresh(work / "split"))
        total = sum(split.values())
        print("featmap per-stage time per image (one process):")
        for key, value in split.items():
            print(f"  {key:15s} {value * 1000:7.1f} ms  {value / total:5.1%}")
        print("PNG zlib level for a 512×512 map (Pillow): level, ms, bytes")
        for level, ms, size in png_levels(files):
            print(f"  {level}  {ms:6.1f} ms  {size:8d}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _fresh(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


if __name__ == "__main__":
    main()
