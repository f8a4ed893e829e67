"""The per-map work of a batch, in process, on one core: featmap's stages against the OpenCV script's own.

    python bench/map_bench.py                   # 20 crops of the sample photographs, 5 repeats
    python bench/map_bench.py --count 40 --repeat 7
    FEATMAP_BENCH_PYTHONPATH=../other python bench/map_bench.py   # also another checkout's featmap, alternated

What `bench/command_bench.py` times as whole commands, taken apart: per 1024² JPEG crop (bench/batch_bench.py's
set), four kernels (sobel_x, sobel_y, laplacian_4, gaussian 5) with same padding, ReLU and a 2×2 max pool.

- **maps**: featmap's conv → activation → pool with each map's statistics (`iter_feature_maps`), against the
  script's ``filter2D`` (constant border) → max of four strided views → ReLU (no statistics);
- **png**: featmap's PNG writer from the float map to the file (min-max to 8 bits, Up filter, ISA-L deflate at
  level 1, atomic write), against the script's ``cv2.normalize`` to uint8 and ``cv2.imwrite`` at level 1.

Each figure is CPU time per image (``time.process_time``; OpenCV on one thread), the sum over images of each
image's minimum over ``--repeat`` runs, so a shared machine's bursts drop out. Ratios: featmap / script per stage;
with ``FEATMAP_BENCH_PYTHONPATH`` the same featmap rows run in a child process on that checkout, in alternating
rounds with this one, and ``this / other`` is printed per stage (the median of the rounds).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import batch_bench
import cv2
import numpy as np

KERNELS = ("sobel_x", "sobel_y", "laplacian_4", "gaussian:size=5,sigma=1")


def per_image_min(images: list[object], stage: Callable[[int, object], object], repeat: int) -> float:
    """Milliseconds of CPU per image: each image's fastest of ``repeat`` runs, averaged."""
    best = [float("inf")] * len(images)
    for _ in range(repeat):
        for i, image in enumerate(images):
            start = time.process_time()
            stage(i, image)
            best[i] = min(best[i], time.process_time() - start)
    return sum(best) / len(best) * 1000


def featmap_rows(photos: list[Path], out: Path, repeat: int) -> dict[str, float]:
    """featmap's two stages on ``photos`` (gray float32, as the batch loads them)."""
    from featmap.io.images import load_image
    from featmap.io.outputs import OutputOptions
    from featmap.io.writers.png import PngWriter
    from featmap.kernels import KernelLibrary
    from featmap.net.layers import Act, Conv2d, Pool2d
    from featmap.run.pipeline import iter_feature_maps

    bank = KernelLibrary().bank(KERNELS)
    images = [load_image(p).pixels for p in photos]
    layers = (Conv2d(padding="same"), Act("relu"), Pool2d("max", 2))
    maps = [list(iter_feature_maps(image, bank, *layers)) for image in images]
    writer = PngWriter(OutputOptions(out_dir=out))

    def write(i: int, image: object) -> None:
        for fmap in maps[i]:
            writer.add(out / f"{i}" / fmap.info.name, fmap)

    return {
        "maps": per_image_min(images, lambda i, image: list(iter_feature_maps(image, bank, *layers)), repeat),
        "png": per_image_min(images, write, repeat),
    }


def script_rows(photos: list[Path], out: Path, repeat: int) -> dict[str, float]:
    """The hand-tuned OpenCV script's per-map work (bench/command_bench.py's script), stage by stage."""
    kernels = [
        np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], np.float32),
        np.array([[-1, -2, -1], [0, 0, 0], [1, 2, 1]], np.float32),
        np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], np.float32),
        (lambda g: np.outer(g, g).astype(np.float32))(cv2.getGaussianKernel(5, 1.0)[:, 0]),
    ]
    images = [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE).astype(np.float32) * np.float32(1 / 255) for p in photos]

    def maps_of(gray: np.ndarray) -> list[np.ndarray]:
        found = []
        for k in kernels:
            r = cv2.filter2D(gray, -1, k, borderType=cv2.BORDER_CONSTANT)
            p = np.maximum(np.maximum(r[0::2, 0::2], r[0::2, 1::2]), np.maximum(r[1::2, 0::2], r[1::2, 1::2]))
            np.maximum(p, 0, out=p)
            found.append(p)
        return found

    pooled = [maps_of(gray) for gray in images]

    def encode(i: int, gray: object) -> None:
        folder = out / f"{i}"
        folder.mkdir(parents=True, exist_ok=True)
        for name, p in zip(KERNELS, pooled[i], strict=True):
            p8 = cv2.normalize(p, None, 0, 255, cv2.NORM_MINMAX, cv2.CV_8U)
            cv2.imwrite(str(folder / f"{name}.png"), p8, [cv2.IMWRITE_PNG_COMPRESSION, 1])

    return {
        "maps": per_image_min(images, lambda i, gray: maps_of(gray), repeat),  # type: ignore[arg-type]
        "png": per_image_min(images, encode, repeat),
    }


def child_rows(pythonpath: str, count: int, repeat: int) -> dict[str, float]:
    """featmap's rows measured by another checkout, in a fresh process."""
    env = {**os.environ, "PYTHONPATH": pythonpath}
    command = [sys.executable, __file__, "--count", str(count), "--repeat", str(repeat), "--featmap-only"]
    done = subprocess.run(command, env=env, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=20, help="crops (1024² JPEGs)")
    parser.add_argument("--repeat", type=int, default=5, help="runs of each image (its minimum is kept)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds against FEATMAP_BENCH_PYTHONPATH")
    parser.add_argument("--featmap-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    from featmap.core.blas import one_thread

    with tempfile.TemporaryDirectory() as folder, one_thread():
        batch_bench.make_photos(Path(folder), args.count)
        photos = sorted(Path(folder).glob("*.jpg"))
        out = Path(folder) / "out"
        if args.featmap_only:
            print(json.dumps(featmap_rows(photos, out, args.repeat)))
            return
        other = os.environ.get("FEATMAP_BENCH_PYTHONPATH")
        ours, theirs, script = [], [], []
        for _ in range(args.rounds if other else 1):
            ours.append(featmap_rows(photos, out, args.repeat))
            script.append(script_rows(photos, out, args.repeat))
            if other:
                theirs.append(child_rows(other, args.count, args.repeat))
    print(f"per-map work, {args.count} crops of 1024² × 4 kernels, CPU ms per image (per-image minimum of "
          f"{args.repeat}), one thread, median of {len(ours)} round(s):")  # fmt: skip
    for stage in ("maps", "png"):
        mine = statistics.median(r[stage] for r in ours)
        peer = statistics.median(r[stage] for r in script)
        line = f"  {stage:5s} featmap {mine:6.2f}   script {peer:6.2f}   featmap/script {mine / peer:.2f}"
        if theirs:
            before = statistics.median(r[stage] for r in theirs)
            ratios = statistics.median(a[stage] / b[stage] for a, b in zip(ours, theirs, strict=True))
            line += f"   other checkout {before:6.2f}   this/other {ratios:.3f}"
        print(line)


if __name__ == "__main__":
    main()
