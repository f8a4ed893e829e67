"""A resume as a user runs it: ``featmap apply DIR -r ... -o out --skip-existing`` where ``out/`` holds a
10⁶-line manifest (250,000 images × 4 kernels) and every output, and ``DIR`` the 250,000 inputs.

    python bench/resume_bench.py --fixture /tmp/fx                 # build once (minutes), then time
    python bench/resume_bench.py --fixture /tmp/fx --rounds 5
    FEATMAP_BENCH_PYTHONPATH=/other/checkout python bench/resume_bench.py --fixture /tmp/fx   # before/after

The fixture is made as a run would leave it: the template records and PNG bytes come from
`featmap.run.batch.process_image` on one small image; each input gets its own records (its resolved path,
its ``dNNNN/imgNNNNNNN/<kernel>.png``) and its own copies of the PNGs, and the index beside the manifest is
written by opening `featmap.io.outputs.Manifest` (a run's `Manifest.append` keeps it current the same way).
It is kept in ``--fixture`` and reused while its size matches ``--images``; ``--fresh`` rebuilds it.

Then, in alternating rounds (this checkout, and the one ``FEATMAP_BENCH_PYTHONPATH`` names if set): the
whole resume (every image skipped; the command must say 0 processed) at each ``--jobs`` (``-j 1``: one process;
``-j 2``: helper processes may share the check's stats), and the resume of a normal batch of
100 crops of ``/work/scratch/crops``-like JPEGs (made here) with every output there. Wall and CPU seconds
(user + system of the command), median and each round, and the load average are printed. Nothing is timed
inside featmap: only whole commands.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

#: Commands run from here, outside any checkout: ``python -m`` puts the working directory first on sys.path.
_OUTSIDE = tempfile.gettempdir()
KERNELS = ["sobel_x", "sobel_y", "laplacian_4", "gaussian:size=5,sigma=1"]
OPTIONS = ["--padding", "same", "--activation", "relu", "--pool", "max"]
PER_FOLDER = 1000


def build(root: Path, images: int) -> None:
    """``root/photos`` (the inputs) and ``root/out`` (their outputs and a manifest recording them)."""
    from featmap.io.discover import InputImage
    from featmap.io.outputs import Manifest
    from featmap.run.batch import process_image
    from featmap.run.jobs import make_job

    shutil.rmtree(root, ignore_errors=True)
    photos, out = root / "photos", root / "out"
    photos.mkdir(parents=True)
    rng = np.random.default_rng(0)
    sample = root / "sample.jpg"
    Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8)).save(sample, quality=90)
    jpeg = sample.read_bytes()
    job = make_job(KERNELS, padding="same", activation="relu", pool="max", out_dir=out)
    template = process_image(InputImage(sample, Path(), "sample"), job).records
    pngs = [(out / rec["png"]).read_bytes() for rec in template]
    shutil.rmtree(out)
    out.mkdir()
    start = time.perf_counter()
    real_photos = photos.resolve()
    with open(out / "manifest.jsonl", "w", encoding="utf-8") as manifest:
        for i in range(images):
            folder = f"d{i // PER_FOLDER:04d}"
            stem = f"img{i:07d}"
            if i % PER_FOLDER == 0:
                (photos / folder).mkdir()
            (photos / folder / f"{stem}.jpg").write_bytes(jpeg)
            (out / folder / stem).mkdir(parents=True)
            where = f"{real_photos}/{folder}/{stem}.jpg"
            lines = []
            for rec, data in zip(template, pngs, strict=True):
                name = rec["png"].rsplit("/", 1)[1]
                (out / folder / stem / name).write_bytes(data)
                lines.append(json.dumps({**rec, "input": where, "png": f"{folder}/{stem}/{name}"}, sort_keys=True))
            manifest.write("\n".join(lines) + "\n")
            if i and i % 50_000 == 0:
                print(f"  fixture: {i:,} images ({time.perf_counter() - start:.0f} s)", flush=True)
    Manifest(out)  # writes the index beside the manifest
    (root / "images.txt").write_text(str(images))
    size = (out / "manifest.jsonl").stat().st_size
    print(f"fixture: {images:,} images, {images * len(KERNELS):,} manifest lines, {size / 1e6:.0f} MB, "
          f"made in {time.perf_counter() - start:.0f} s")  # fmt: skip


def build_small(root: Path, count: int, env: dict[str, str]) -> tuple[Path, Path]:
    """``count`` 256² JPEGs and their outputs, made by featmap itself (the normal batch to resume)."""
    photos, out = root / "small", root / "small-out"
    if not (out / "manifest.jsonl").exists():
        shutil.rmtree(photos, ignore_errors=True)
        shutil.rmtree(out, ignore_errors=True)
        photos.mkdir(parents=True)
        rng = np.random.default_rng(1)
        for i in range(count):
            Image.fromarray(rng.integers(0, 256, (256, 256), dtype=np.uint8)).save(photos / f"p{i:03d}.jpg")
        subprocess.run(
            command(photos, out, recursive=False), env=env, check=True, stdout=subprocess.DEVNULL, cwd=_OUTSIDE
        )
    return photos, out


def command(photos: Path, out: Path, *, recursive: bool = True, jobs: int = 1) -> list[str]:
    kernels = [arg for k in KERNELS for arg in ("-k", k)]
    return [sys.executable, "-m", "featmap", "apply", str(photos), *(["-r"] if recursive else []), *kernels,
            *OPTIONS, "-j", str(jobs), "-q", "--skip-existing", "-o", str(out)]  # fmt: skip


def check(cmd: list[str], env: dict[str, str], images: int) -> None:
    """Run ``cmd`` once with ``--json`` (not timed): it must skip every image and process none."""
    done = subprocess.run([*cmd, "--json"], env=env, capture_output=True, text=True, cwd=_OUTSIDE)
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}): {done.stderr[-2000:]}")
    report = json.loads(done.stdout)
    if report["processed"] or report["failed"] or len(report["skipped"]) != images:
        raise SystemExit(f"not a whole resume: {len(report['processed'])} processed, {report['failed'][:3]} failed, "
                         f"{len(report['skipped'])} of {images} skipped")  # fmt: skip


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system, the operating system's account of the finished command) of
    ``cmd`` (the table on stdout discarded, as a user's terminal shows it). On a shared machine the CPU time is the
    steadier figure: the wall time also holds the time other programs had the cores."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=_OUTSIDE)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}): {done.stderr[-2000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fixture", type=Path, required=True, help="folder kept between runs")
    parser.add_argument("--images", type=int, default=250_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--fresh", action="store_true", help="rebuild the fixture")
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2], help="-j of the big resume's rows (default 1 2)")
    args = parser.parse_args()
    here = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}  # this checkout's featmap
    sides = {"this": here}
    if os.environ.get("FEATMAP_BENCH_PYTHONPATH"):
        sides["other"] = {**here, "PYTHONPATH": os.environ["FEATMAP_BENCH_PYTHONPATH"]}
    marker = args.fixture / "images.txt"
    if args.fresh or not marker.exists() or marker.read_text() != str(args.images):
        build(args.fixture, args.images)
    small, small_out = build_small(args.fixture, 100, here)
    # Each side resumes its own copy of the output folders (hard links: the same files), so that neither
    # rewrites the other's index (another version's index is read whole once and written anew).
    outs = {"this": (args.fixture / "out", small_out)}
    if "other" in sides:
        for folder in outs["this"]:
            if not folder.with_name(folder.name + "-other").exists():
                subprocess.run(["cp", "-al", str(folder), str(folder.with_name(folder.name + "-other"))], check=True)
        outs["other"] = (args.fixture / "out-other", small_out.with_name(small_out.name + "-other"))

    def big(jobs: int) -> Callable[[str], list[str]]:
        return lambda side: command(args.fixture / "photos", outs[side][0], jobs=jobs)

    def normal(side: str) -> list[str]:
        return command(small, outs[side][1], recursive=False)

    rows = {f"resume {args.images:,} images -j {jobs}": big(jobs) for jobs in args.jobs}
    rows["resume 100 images"] = normal
    counts = {row: args.images for row in rows} | {"resume 100 images": 100}
    for row, cmd in rows.items():  # an untimed run each: the check, and each side's index as it keeps it
        check(cmd("this"), here, counts[row])
        if "other" in sides:
            timed(cmd("other"), sides["other"])
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    runs: dict[tuple[str, str], list[tuple[float, float]]] = {(row, side): [] for row in rows for side in sides}
    for i in range(args.rounds):
        order = list(sides) if i % 2 == 0 else list(reversed(sides))
        for row, cmd in rows.items():
            for side in order:
                runs[row, side].append(timed(cmd(side), sides[side]))
    for column, name in ((0, "wall"), (1, "CPU (user + system)")):
        print(f"whole commands, {name} s, median of {args.rounds} alternating rounds (each round)")
        for (row, side), found in runs.items():
            values = [run[column] for run in found]
            spread = ", ".join(f"{v:.2f}" for v in values)
            print(f"  {row:30s} {side:6s} {statistics.median(values):7.2f}   ({spread})")
        if "other" in sides:
            for row in rows:
                other = statistics.median(run[column] for run in runs[row, "other"])
                ratio = other / statistics.median(run[column] for run in runs[row, "this"])
                print(f"  {row}: other / this = {ratio:.2f}x ({name})")
    print(f"load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
