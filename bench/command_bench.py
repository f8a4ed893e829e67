"""Whole commands, timed as a user times them: ``featmap apply`` against a hand-tuned OpenCV script.

    python bench/command_bench.py               # 200 JPEGs of 1024², 3 interleaved rounds, medians
    python bench/command_bench.py --count 64 --rounds 5

Each row is a fresh process from start to exit (interpreter start-up, imports, pool start-up, the uneven
end of the work all count), run in interleaved rounds so that a shared machine's drift hits every row
alike; the median of the rounds is kept. Rows:

- ``featmap apply photos/ -k sobel_x -k sobel_y -k laplacian_4 -k gaussian:size=5,sigma=1 --padding same
  --activation relu --pool max -j N -q -o out`` for N = 1, 2;
- the hand-tuned OpenCV script (bench/batch_bench.py's ``opencv_script``: gray decode, filter2D,
  strided max pool, imwrite level 1) as a whole script with 1 and 2 processes (``multiprocessing.Pool``);
- the same featmap command on 2 images with -j 1 and -j 2: the pool's start-up cost for a small batch.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import batch_bench

FEATMAP = [
    *("-k sobel_x -k sobel_y -k laplacian_4 -k gaussian:size=5,sigma=1".split()),
    *("--padding same --activation relu --pool max -q".split()),
]

OPENCV_SCRIPT = """
import sys
from multiprocessing import Pool
from pathlib import Path

import cv2
import numpy as np

KERNELS = {
    "sobel_x": np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], np.float32),
    "sobel_y": np.array([[-1, -2, -1], [0, 0, 0], [1, 2, 1]], np.float32),
    "laplacian_4": np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], np.float32),
    "gaussian_5": (lambda g: np.outer(g, g).astype(np.float32))(cv2.getGaussianKernel(5, 1.0)[:, 0]),
}


def one(args):
    f, out = args
    gray = cv2.imread(str(f), cv2.IMREAD_GRAYSCALE).astype(np.float32) * np.float32(1 / 255)
    folder = Path(out) / Path(f).stem
    folder.mkdir(parents=True, exist_ok=True)
    for name, k in KERNELS.items():
        r = cv2.filter2D(gray, -1, k, borderType=cv2.BORDER_CONSTANT)
        p = np.maximum(np.maximum(r[0::2, 0::2], r[0::2, 1::2]), np.maximum(r[1::2, 0::2], r[1::2, 1::2]))
        np.maximum(p, 0, out=p)
        p8 = cv2.normalize(p, None, 0, 255, cv2.NORM_MINMAX, cv2.CV_8U)
        cv2.imwrite(str(folder / f"{name}.png"), p8, [cv2.IMWRITE_PNG_COMPRESSION, 1])


if __name__ == "__main__":
    photos, out, processes = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    files = sorted(photos.glob("*.jpg"))
    if processes == 1:
        for f in files:
            one((f, out))
    else:
        with Pool(processes) as pool:
            pool.map(one, [(f, out) for f in files], chunksize=4)
"""


def timed(command: list[str], out: Path) -> float:
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    featmap = shutil.which("featmap") or str(Path(sys.executable).parent / "featmap")
    work = Path(tempfile.mkdtemp(prefix="featmap-command-bench-"))
    try:
        photos, small = work / "photos", work / "small"
        photos.mkdir()
        small.mkdir()
        batch_bench.make_photos(photos, args.count)
        for f in sorted(photos.glob("*.jpg"))[:2]:
            shutil.copy(f, small / f.name)
        script = work / "opencv_script.py"
        script.write_text(OPENCV_SCRIPT)
        out = work / "out"
        rows = {
            "featmap apply -j 1": [featmap, "apply", str(photos), *FEATMAP, "-j", "1", "-o", str(out)],
            "featmap apply -j 2": [featmap, "apply", str(photos), *FEATMAP, "-j", "2", "-o", str(out)],
            "OpenCV script, 1 process": [sys.executable, str(script), str(photos), str(out), "1"],
            "OpenCV script, 2 processes": [sys.executable, str(script), str(photos), str(out), "2"],
            "featmap apply 2 images -j 1": [featmap, "apply", str(small), *FEATMAP, "-j", "1", "-o", str(out)],
            "featmap apply 2 images -j 2": [featmap, "apply", str(small), *FEATMAP, "-j", "2", "-o", str(out)],
        }
        times: dict[str, list[float]] = {label: [] for label in rows}
        for _ in range(args.rounds):
            for label, command in rows.items():
                times[label].append(timed(command, out))
        median = {label: statistics.median(values) for label, values in times.items()}
        print(f"{args.count} JPEGs of 1024², whole commands, median of {args.rounds} interleaved rounds")
        for label, seconds in median.items():
            n = 2 if "2 images" in label else args.count
            spread = ", ".join(f"{t:.2f}" for t in times[label])
            print(f"  {label:32s} {seconds:6.2f} s  {n / seconds:6.1f} img/s   (runs: {spread})")
        ratio = median["OpenCV script, 2 processes"] / median["featmap apply -j 2"]
        print(f"featmap -j 2 / OpenCV script ×2 = {ratio:.2f}x (target 2)")
        print(
            f"featmap -j 2 / -j 1 = {median['featmap apply -j 1'] / median['featmap apply -j 2']:.2f}x; "
            f"OpenCV ×2 / ×1 = {median['OpenCV script, 1 process'] / median['OpenCV script, 2 processes']:.2f}x"
        )
        extra = median["featmap apply 2 images -j 2"] - median["featmap apply 2 images -j 1"]
        print(f"2 images: -j 2 costs {extra * 1000:+.0f} ms over -j 1 (target < 150 ms)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
