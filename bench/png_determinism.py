"""Same input, same bytes, checked the long way: one batch command run N times, each in a fresh process, and
every output file's bytes compared with the first run's.

    python bench/png_determinism.py                          # 40 runs of 100 synthetic 1024² JPEGs, -j 1
    python bench/png_determinism.py --runs 80 --jobs 2
    python bench/png_determinism.py --images /path/to/jpegs --runs 20

The command is issue 22's: ``featmap apply IMAGES -k sobel_x -k sobel_y -k laplacian_4 -k
gaussian:size=5,sigma=1 --padding same --activation relu --pool max -q -j N -o OUT``. A file that differs is
printed with what differs: its pixels, or only its deflate stream (the IDAT inflated, i.e. the filtered rows,
equal; the one-in-tens-of-thousands-of-maps fault `featmap.io.pngencode` guards against), or anything else.
The manifest is compared as a set of lines (``-j 2`` finishes images in any order). Set
``FEATMAP_BENCH_PYTHONPATH`` to check another checkout's featmap. Exit status 1 when any file differed.

This is a separate command, not a test: the fault it looks for was seen about once in 30-40 runs of 400 maps,
so a useful check takes minutes.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np

KERNELS = ["-k", "sobel_x", "-k", "sobel_y", "-k", "laplacian_4", "-k", "gaussian:size=5,sigma=1"]
OPTIONS = ["--padding", "same", "--activation", "relu", "--pool", "max", "-q"]


def digests(folder: Path) -> dict[str, str]:
    """Each file's SHA-256 by its path under ``folder``; the manifest's as a sorted set of lines."""
    out: dict[str, str] = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            if path.name == "manifest.jsonl":
                data = b"\n".join(sorted(data.splitlines()))
            out[str(path.relative_to(folder))] = hashlib.sha256(data).hexdigest()
    return out


def idat_and_header(data: bytes) -> tuple[bytes, bytes]:
    """A PNG's IHDR payload and its IDAT chunks' bytes joined (the zlib stream)."""
    at, header, idat = 8, b"", bytearray()
    while at + 8 <= len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        kind, payload = data[at + 4 : at + 8], data[at + 8 : at + 8 + length]
        if kind == b"IHDR":
            header = payload
        elif kind == b"IDAT":
            idat += payload
        at += 12 + length
    return header, bytes(idat)


def explain(first: Path, other: Path) -> str:
    """What differs between two versions of one output file."""
    if first.suffix != ".png":
        return "bytes differ"
    (head_a, idat_a), (head_b, idat_b) = idat_and_header(first.read_bytes()), idat_and_header(other.read_bytes())
    if head_a != head_b:
        return "PNG headers differ"
    rows_a, rows_b = zlib.decompress(idat_a), zlib.decompress(idat_b)
    if rows_a != rows_b:
        changed = np.count_nonzero(np.frombuffer(rows_a, np.uint8) != np.frombuffer(rows_b, np.uint8))
        return f"pixels differ ({changed} filtered bytes)"
    at = next(i for i, (a, b) in enumerate(zip(idat_a, idat_b, strict=False)) if a != b) if idat_a != idat_b else -1
    return f"same pixels, deflate stream differs: {len(idat_a)} vs {len(idat_b)} bytes, first at byte {at}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--count", type=int, default=100, help="synthetic images to make (without --images)")
    parser.add_argument("--images", type=Path, help="a folder of images instead of the synthetic set")
    args = parser.parse_args()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.environ.get("FEATMAP_BENCH_PYTHONPATH") or str(Path(__file__).resolve().parent.parent)
    work = Path(tempfile.mkdtemp(prefix="featmap-png-determinism-"))
    env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    try:
        images = args.images
        if images is None:
            from command_bench import make_synthetic

            images = work / "images"
            images.mkdir()
            make_synthetic(images, args.count)
        command = [sys.executable, "-m", "featmap", "apply", str(images), *KERNELS, *OPTIONS, "-j", str(args.jobs)]
        print(" ".join(command[1:]), "-o OUT")
        reference, bad_runs, bad_files = work / "run0", 0, 0
        started = time.perf_counter()
        for run in range(args.runs):
            out = work / f"run{min(run, 1)}"
            shutil.rmtree(out, ignore_errors=True)
            subprocess.run([*command, "-o", str(out)], env=env, check=True, stdout=subprocess.DEVNULL)
            if run == 0:
                first = digests(reference)
                print(f"run 0: {len(first)} files")
                continue
            now = digests(out)
            differ = sorted(name for name in first.keys() | now.keys() if first.get(name) != now.get(name))
            if differ:
                bad_runs += 1
                bad_files += len(differ)
            for name in differ:
                if name not in first or name not in now:
                    print(f"run {run}: {name}: {'missing' if name in first else 'extra'}")
                else:
                    print(f"run {run}: {name}: {explain(reference / name, out / name)}")
                    shutil.copy(out / name, work.parent / f"png-determinism-run{run}-{name.replace('/', '_')}")
        elapsed = time.perf_counter() - started
        print(
            f"{args.runs} runs ({elapsed:.0f} s): {bad_runs} with a differing file, {bad_files} files differed"
            f" of {(args.runs - 1) * len(first)} compared; load average at end: {os.getloadavg()[0]:.1f}"
        )
        if bad_runs:
            sys.exit(1)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
