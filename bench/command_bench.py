"""Whole commands, timed as a user times them: ``featmap apply`` against a hand-tuned OpenCV script.

    python bench/command_bench.py                       # 200 JPEGs of 1024² per set, 3 alternating rounds
    python bench/command_bench.py --count 64 --rounds 5
    python bench/command_bench.py --big                 # also the 6000×4000 JPEG with 5 kernels

Two image sets, 1024² JPEGs at quality 90: *synthetic photos* (smooth shading, hard-edged shapes, texture and
sensor noise, made from a seed) and *crops* of the two sample photographs (bench/batch_bench.py's set).
Each row is a fresh process from start to exit (interpreter start-up, imports, pool start-up, the uneven end
of the work all count), run in alternating rounds so that a shared machine's drift hits every row alike; the
median of the rounds is kept, for wall time and for the CPU time (user and system, the command and every
process it started, at any depth: see `timed`). Rows per set:

- ``featmap apply photos/ -k sobel_x -k sobel_y -k laplacian_4 -k gaussian:size=5,sigma=1 --padding same
  --activation relu --pool max -q -o out -j N`` for N = 1, 2;
- the hand-tuned OpenCV script below with 1 and 2 processes, exactly as issue 22 describes it: a worker
  initializer ``cv2.setNumThreads(1)``, ``cv2.imread(GRAYSCALE)``, ``filter2D`` with a constant border, a 2×2
  max pool by four strided views, ReLU after the pool, min-max to uint8, ``cv2.imwrite`` at PNG level 1,
  ``multiprocessing.Pool(2)`` (one process: the initializer, then the same loop in the main process).

Ratios printed per set (the issue's targets in brackets): featmap -j 2 / script ×2 [≥ 2], -j 1 / script ×1
[≥ 2], CPU s per image featmap -j 1 / script ×1 [≤ 0.5], featmap's system time per image [≤ 1 ms], featmap
-j 2 / -j 1 scaling [≥ 1.85] beside the script's. ``--big`` adds the 6000×4000 JPEG with 5 kernels
(wall time and peak RSS, ``ru_maxrss`` of the command, beside the same command on a 256² crop of it: the
floor every run pays, so that the difference is the photo's own memory). Set ``FEATMAP_BENCH_PYTHONPATH`` to
time another checkout's featmap with the same script (``python -m featmap`` with that ``PYTHONPATH``). Every
command runs with Python's bytecode cache on, kept in the bench's temporary folder (an installed featmap is
byte-compiled; where ``PYTHONDONTWRITEBYTECODE`` is set, a checkout without ``__pycache__`` would compile ~100
modules in every process, the fork server's included), and each row runs once on two photos before the timed
rounds to fill it. Each run's output folder is set aside before the next run (`set_aside`), not deleted, so that
no command pays for the deletion of the previous one's files.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import batch_bench
import numpy as np
from PIL import Image

KERNEL_ARGS = "-k sobel_x -k sobel_y -k laplacian_4 -k gaussian:size=5,sigma=1".split()
FEATMAP = [*KERNEL_ARGS, *"--padding same --activation relu --pool max -q".split()]

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


def init():
    cv2.setNumThreads(1)


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
        init()
        for f in files:
            one((f, out))
    else:
        with Pool(processes, initializer=init) as pool:
            pool.map(one, [(f, out) for f in files], chunksize=4)
"""


@dataclass
class Run:
    wall: float
    user: float
    system: float
    peak_mb: float


def make_synthetic(folder: Path, count: int, size: int = 1024) -> None:
    """Photo-like JPEGs from a seed: smooth shading, hard-edged shapes, fine texture and sensor noise."""
    rng = np.random.default_rng(22)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    for i in range(count):
        coarse = rng.random((9, 9)).astype(np.float32)
        shade = np.asarray(Image.fromarray(coarse * 255).resize((size, size), Image.Resampling.BICUBIC))
        img = shade * 0.6 + 40
        for _ in range(12):
            cx, cy, r = rng.random(3) * (1, 1, 0.25)
            img[(xx - cx) ** 2 + (yy - cy) ** 2 < r * r] += rng.uniform(-60, 60)
        img += 8 * np.sin(xx * rng.uniform(40, 200)) * np.cos(yy * rng.uniform(40, 200))
        img += rng.normal(0, 4, img.shape).astype(np.float32)
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).convert("RGB").save(
            folder / f"syn{i:04d}.jpg", quality=90
        )


def become_subreaper() -> bool:
    """Make this process the reaper of every orphan among its descendants (Linux ``PR_SET_CHILD_SUBREAPER``).

    ``os.wait4`` on a command counts the command and the children it waited for, not a child it left running: a
    process pool's helpers forked by multiprocessing's fork server are reaped by that server, which outlives the
    command's main process and is never waited for by it, so their CPU time was lost (``-j 2`` showed less CPU
    per image than ``-j 1``). As a subreaper this process inherits such orphans and reaps them itself
    (`timed`). False where it cannot be set (not Linux): the CPU of orphaned descendants is then not counted."""
    import ctypes
    import ctypes.util

    pr_set_child_subreaper = 36  # from <linux/prctl.h>
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        return bool(sys.platform.startswith("linux") and libc.prctl(pr_set_child_subreaper, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def set_aside(out: Path) -> None:
    """The previous run's output folder out of the next run's way, not deleted: its files emptied (their pages
    dropped, nothing left to write back) and the folder moved into ``trash`` beside it, which goes with the bench's
    temporary folder at the end.

    Deleting it here billed the next command for it. On ext4 without a journal (this 2-core VM's file system) a
    new inode skips, one by one, every inode of its block group freed in the last 30 s (the kernel's
    ``recently_deleted``, reading each one's deletion time), and a run's folders land in the groups the previous
    run's have just left: 200 crops, ``perf record -e cpu-clock:k`` of ``featmap apply -j 1``, 3 alternating
    pairs: 53-93 ms of ``recently_deleted`` after deleting the previous output, 13-39 ms (other processes'
    deletions) after moving it aside, 0.2-0.4 ms of system time an image."""
    if not out.exists():
        return
    for folder, _, names in os.walk(out):
        for name in names:
            os.truncate(os.path.join(folder, name), 0)
    trash = out.parent / "trash"
    trash.mkdir(exist_ok=True)
    out.rename(trash / str(time.monotonic_ns()))


def timed(command: list[str], out: Path, env: dict[str, str]) -> Run:
    """Wall time until the command exits; CPU time and peak RSS of the command and every process it started.

    The command's own ``wait4`` covers it and the children it reaped; then every orphan it left (reparented to
    this process by `become_subreaper`, e.g. a fork server and the helpers it reaped) is waited for until none
    is left, and their CPU times are added (their peak RSS joins the maximum)."""
    set_aside(out)
    start = time.perf_counter()
    # Run from the bench's own folder: ``python -m`` puts the working directory first on sys.path, so started in
    # a checkout it would import that checkout's featmap whatever FEATMAP_BENCH_PYTHONPATH says.
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, env=env, cwd=out.parent)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(command)}")
    user, system, peak = usage.ru_utime, usage.ru_stime, usage.ru_maxrss
    while True:  # the orphans: this process runs one command at a time, so any child left is this command's
        try:
            _, _, left = os.wait4(-1, 0)
        except ChildProcessError:
            break
        user, system, peak = user + left.ru_utime, system + left.ru_stime, max(peak, left.ru_maxrss)
    return Run(wall, user, system, peak / 1024)


def _median(runs: list[Run], field: str) -> float:
    return statistics.median(getattr(r, field) for r in runs)


def bench_set(
    label: str, photos: Path, count: int, rounds: int, work: Path, featmap: list[str], env: dict[str, str]
) -> None:
    script = work / "opencv_script.py"
    out = work / "out"
    rows = {
        "featmap -j 1": [*featmap, "apply", str(photos), *FEATMAP, "-j", "1", "-o", str(out)],
        "script x1": [sys.executable, str(script), str(photos), str(out), "1"],
        "featmap -j 2": [*featmap, "apply", str(photos), *FEATMAP, "-j", "2", "-o", str(out)],
        "script x2": [sys.executable, str(script), str(photos), str(out), "2"],
    }
    warm = work / "warm-up"  # fills the bytecode cache (see main) and the file cache, untimed
    if not warm.exists():
        warm.mkdir()
        for photo in sorted(photos.iterdir())[:2]:
            shutil.copy(photo, warm / photo.name)
    for command in rows.values():
        timed([str(warm) if arg == str(photos) else arg for arg in command], out, env)
    runs: dict[str, list[Run]] = {name: [] for name in rows}
    for i in range(rounds):
        order = list(rows) if i % 2 == 0 else list(reversed(rows))  # alternate which row goes first
        for name in order:
            runs[name].append(timed(rows[name], out, env))
    wall = {n: _median(r, "wall") for n, r in runs.items()}
    cpu = {n: statistics.median(x.user + x.system for x in r) / count for n, r in runs.items()}
    system = {n: _median(r, "system") / count for n, r in runs.items()}
    print(f"\n{label}: {count} JPEGs of 1024², whole commands, median of {rounds} alternating rounds")
    print(f"  {'row':14s} {'wall s':>7s} {'img/s':>7s} {'CPU ms/img':>11s} {'sys ms/img':>11s}   wall runs")
    for name in rows:
        spread = ", ".join(f"{r.wall:.2f}" for r in runs[name])
        print(
            f"  {name:14s} {wall[name]:7.2f} {count / wall[name]:7.1f} {cpu[name] * 1000:11.1f} "
            f"{system[name] * 1000:11.2f}   ({spread})"
        )
    print(f"  featmap -j 2 / script x2 = {wall['script x2'] / wall['featmap -j 2']:.2f}x   [target >= 2]")
    print(f"  featmap -j 1 / script x1 = {wall['script x1'] / wall['featmap -j 1']:.2f}x   [target >= 2]")
    print(f"  CPU s/img featmap -j 1 / script x1 = {cpu['featmap -j 1'] / cpu['script x1']:.2f}   [target <= 0.5]")
    print(
        f"  system ms/img featmap -j 1 {system['featmap -j 1'] * 1000:.2f}, -j 2 {system['featmap -j 2'] * 1000:.2f}"
        "   [target <= 1]"
    )
    print(
        f"  scaling -j 2 / -j 1 = {wall['featmap -j 1'] / wall['featmap -j 2']:.2f}x   [target >= 1.85]; "
        f"script x2 / x1 = {wall['script x1'] / wall['script x2']:.2f}x"
    )


def bench_big(work: Path, rounds: int, featmap: list[str], env: dict[str, str]) -> None:
    folder = work / "big"
    folder.mkdir()
    photo = folder / "big.jpg"
    small = folder / "small.jpg"
    # Made in a child process: a process started from this one reports at least this one's peak RSS as its own
    # (Linux keeps the high-water mark across exec), so this one stays small. The 256² JPEG shows the command's
    # floor (interpreter, imports, OpenCV's start-up): the big photo's own memory is the difference.
    make = (
        "import numpy as np, sys; from PIL import Image; rng = np.random.default_rng(3); "
        "small = Image.fromarray((rng.random((60, 40, 3)) * 255).astype(np.uint8)); "
        "base = np.asarray(small.resize((6000, 4000), Image.Resampling.BICUBIC), np.float32); "
        "base += rng.normal(0, 6, base.shape).astype(np.float32); "
        "Image.fromarray(np.clip(base, 0, 255).astype(np.uint8)).save(sys.argv[1], quality=90); "
        "Image.fromarray(np.clip(base[:256, :256], 0, 255).astype(np.uint8)).save(sys.argv[2], quality=90)"
    )
    subprocess.run([sys.executable, "-c", make, str(photo), str(small)], check=True)
    options = [*KERNEL_ARGS, "-k", "laplacian_8", "--padding", "same", "--activation", "relu", "--pool", "max", "-q"]
    rows = {
        name: [*featmap, "apply", str(path), *options, "-o", str(work / "out")]
        for name, path in (("big", photo), ("floor", small))
    }
    runs: dict[str, list[Run]] = {name: [] for name in rows}
    timed(rows["floor"], work / "out", env)  # untimed: fills the bytecode cache, as the sets' first runs do
    for i in range(rounds):
        for name in list(rows) if i % 2 == 0 else list(reversed(rows)):  # alternate which goes first
            runs[name].append(timed(rows[name], work / "out", env))
    big, floor = _median(runs["big"], "peak_mb"), _median(runs["floor"], "peak_mb")
    print(f"\n6000×4000 JPEG, 5 kernels, whole command, median of {rounds}:")
    cpu = statistics.median(r.user + r.system for r in runs["big"])
    print(f"  wall {_median(runs['big'], 'wall'):.2f} s, CPU {cpu:.2f} s, peak RSS {big:.0f} MB   [target <= 150 MB]")
    print(
        f"  the same command on a 256² crop of it: peak RSS {floor:.0f} MB (the floor: interpreter, imports, "
        f"OpenCV's start-up); the big photo's own {big - floor:.0f} MB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--big", action="store_true", help="also the 6000×4000 JPEG with 5 kernels")
    parser.add_argument("--sets", default="synthetic,crops", help="comma-separated: synthetic, crops")
    args = parser.parse_args()
    env = dict(os.environ)
    # This checkout's featmap, or the one FEATMAP_BENCH_PYTHONPATH names (commands run outside any checkout).
    env["PYTHONPATH"] = os.environ.get("FEATMAP_BENCH_PYTHONPATH") or str(Path(__file__).resolve().parent.parent)
    featmap = [sys.executable, "-m", "featmap"]
    if not become_subreaper():
        print("note: not a subreaper (not Linux): the CPU of a command's orphaned processes is not counted")
    sets = [name for name in args.sets.split(",") if name]
    if any(name not in ("synthetic", "crops") for name in sets):
        parser.error(f"--sets {args.sets!r}: name synthetic, crops or both, comma-separated (or none, with --big)")
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    work = Path(tempfile.mkdtemp(prefix="featmap-command-bench-"))
    env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")  # bytecode as an installed featmap has it (see the docstring)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    try:
        (work / "opencv_script.py").write_text(OPENCV_SCRIPT)
        for name in sets:
            photos = work / name
            photos.mkdir()
            if name == "synthetic":
                make_synthetic(photos, args.count)
            else:
                batch_bench.make_photos(photos, args.count)
            bench_set(f"{name} photos", photos, args.count, args.rounds, work, featmap, env)
        if args.big:
            bench_big(work, args.rounds, featmap, env)
        print(f"load average at end: {os.getloadavg()[0]:.1f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
